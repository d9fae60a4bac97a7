//! Raw-data handling for the nnU-Net v2 re-implementation: image I/O, dataset integrity checks and
//! fingerprint extraction (planning spec §1–§3). No burn, no terminal output, no environment reads.
//!
//! # Public API (what the CLI calls)
//!
//! ```no_run
//! use nnunet_data::{Dataset, extract_fingerprint, verify_dataset_integrity, write_fingerprint};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::path::Path::new("/raw/Dataset004_Hippocampus");
//! let env = |k: &str| std::env::var(k).ok();
//! // all problems at once (Err(IntegrityReport) lists every file and what is wrong)
//! let warnings = verify_dataset_integrity(dir, 8, &env, &|done, total| { let _ = (done, total); })?;
//! let ds = Dataset::open_with_env(dir, &env)?;
//! let reader_name = ds.image_reader_writer(); // e.g. "SimpleITKIO", for the plans
//! let fp = extract_fingerprint(&ds, 8, &|_done, _total| {})?;
//! write_fingerprint(&std::path::Path::new("/pre/Dataset004_Hippocampus/dataset_fingerprint.json"), &fp)?;
//! # let _ = (warnings, reader_name); Ok(()) }
//! ```
//!
//! * [`Dataset`]: `dataset.json` + canonical case list + chosen reader/writer ([`ImageReaderWriter`]).
//! * [`verify_dataset_integrity`]: `Ok(warnings)` or `Err(IntegrityReport)` with every problem.
//! * [`extract_fingerprint`]: nnU-Net 2.8.1's fingerprint, bit-identical (MT19937 sampling, numpy
//!   float32 statistics); [`write_fingerprint`] writes the JSON text nnU-Net writes.
//! * Image I/O: [`io::SimpleItkIo`] (NIfTI `.nii.gz`), [`io::NibabelIo`] (`.nii`, `.nii.gz`),
//!   [`natural::NaturalImage2DIo`] (`.png`, `.bmp`, `.tif`); [`nifti`] reads/writes NIfTI-1 directly.
//!   Not implemented: `Tiff3DIO`, the `*WithReorient` readers, `.nrrd`/`.mha`/`.gipl`.
//! * Building blocks used by preprocessing: [`crop::crop_to_nonzero`], [`rng::Mt19937`] (numpy's
//!   legacy `RandomState`), [`stats`] (numpy-exact float32 reductions).

pub mod crop;
pub mod dataset;
pub mod error;
pub mod fingerprint;
pub mod integrity;
pub mod io;
pub mod natural;
pub mod nifti;
pub mod rng;
pub mod stats;

pub use dataset::{Case, Dataset};
pub use error::DataError;
pub use fingerprint::{extract_fingerprint, write_fingerprint};
pub use integrity::{IntegrityReport, Problem, verify_dataset_integrity};
pub use io::{ImageData, ImageProperties, ImageReaderWriter, determine_reader_writer};
pub use nifti::SitkGeometry;
