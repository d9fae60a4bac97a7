//! The engine: nnU-Net's training recipe (losses, optimizer, schedule), trainer presets, and the training loop.

pub mod loss;
pub mod optim;
pub mod train;
pub mod parallel;
pub mod checkpoint;
pub mod predict;
pub mod inference;
pub use nnunet_data::pickle;
pub mod ensemble;
pub mod model_selection;
pub mod presets;
pub mod run;
pub mod cases;
pub mod model_sharing;
pub mod calibrate;
pub mod cascade;
pub mod pretrained;
pub mod pth;
pub mod zip;
