//! Training logs of the nnU-Net v2 re-implementation (training spec §2.11, ADR 0003). No burn, no terminal.
//!
//! * [`tensorboard`]: TensorBoard event files with scalar summaries ([`tensorboard::EventWriter`]), written
//!   by hand (TFRecord framing with masked CRC32C, hand-encoded `Event` protobuf), plus a decoder for tests.
//! * [`progress`]: nnU-Net's `progress.png` (losses + pseudo Dice on a twin axis, epoch duration, learning
//!   rate), drawn with `plotters` and a bundled font; no system C libraries.
//! * [`training_log`]: nnU-Net's `training_log_YYYY_M_D_HH_MM_SS.txt` with `print_to_log_file`'s line format.

pub mod overlay;
pub mod progress;
pub mod tensorboard;
pub mod training_log;

pub use progress::{ProgressCurves, render_progress_png, write_progress_png};
pub use tensorboard::{EventWriter, event_file_name};
pub use training_log::{LogTime, TrainingLog};
