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
//!
//! # Preprocessing (`nnUNetv2_preprocess`, `nnunet export-preprocessed`)
//!
//! ```no_run
//! use nnunet_data::{Dataset, PreprocessOptions, export_preprocessed, preprocess_dataset};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let raw = std::path::Path::new("/raw/Dataset004_Hippocampus");
//! let pre = std::path::Path::new("/pre/Dataset004_Hippocampus");
//! let mut ds = Dataset::open_with_env(raw, &|k: &str| std::env::var(k).ok())?;
//! // nnU-Net takes the labels from the preprocessed copy of dataset.json; replace ds.json to do the same
//! ds.json = nnunet_schema::json::read_json(&pre.join("dataset.json"))?;
//! let plans: nnunet_schema::Plans = nnunet_schema::json::read_json(&pre.join("nnUNetPlans.json"))?;
//! let opts = PreprocessOptions { threads: 4, ..Default::default() }; // -np
//! let summary = preprocess_dataset(&ds, &plans, "3d_fullres", pre, &opts, &|done, total| { let _ = (done, total); })?;
//! // summary.output_dir == /pre/Dataset004_Hippocampus/nnUNetPlans_3d_fullres (ADR 0005 format)
//! export_preprocessed(&summary.output_dir, std::path::Path::new("/tmp/export"), 4, &|_, _| {})?;
//! # Ok(()) }
//! ```
//!
//! * [`preprocess_dataset`]: one configuration of a plans file → `<pre>/<data_identifier>/` (written to a temp
//!   sibling, swapped in at the end) and `<pre>/gt_segmentations/`. A configuration missing from the plans is an
//!   error ([`DataError::Preprocess`]; nnU-Net prints "Configuration … not found … Skipping." — the CLI decides).
//! * [`preprocess_case`] / [`preprocess_case_arrays`]: nnU-Net's `run_case` / `run_case_npy` (also for inference:
//!   pass no seg) with a [`PreprocessConfig`] from [`PreprocessConfig::from_plans`].
//! * [`NormalizationRegistry`]: the schemes by nnU-Net class name; register custom [`Normalization`]s there.
//! * [`resample`]: `resample_data_or_seg_to_shape`, skimage `resize`, `resize_segmentation` (also what inference
//!   needs to resample logits/segmentations back). [`class_locations`]: the oversampling locations.
//! * [`storage`]: the on-disk format (ADR 0005: `.npy` + JSON properties), `read_case`, `list_cases`,
//!   `open_case` + `npy::NpyFile::read_box` for patch reads without loading a case; [`export_preprocessed`] writes nnU-Net-style
//!   `<case>_data.npy` / `_seg.npy` / `_properties.json`.
//!
//! * Building blocks used by preprocessing: [`crop::crop_to_nonzero`], [`rng::Mt19937`] (numpy's
//!   legacy `RandomState`), [`stats`] (numpy-exact float32 reductions).

pub mod blosc2;
pub mod convert;
pub mod class_locations;
pub mod components;
pub mod crop;
pub mod dataset;
pub mod error;
pub mod fingerprint;
pub mod integrity;
pub mod io;
pub mod natural;
pub mod nifti;
pub mod normalize;
pub mod pickle;
pub mod npy;
pub mod preprocess;
pub mod resample;
pub mod rng;
pub mod splits;
pub mod stats;
pub mod storage;

pub use dataset::{Case, Dataset};
pub use error::DataError;
pub use fingerprint::{extract_fingerprint, write_fingerprint};
pub use integrity::{IntegrityReport, Problem, verify_dataset_integrity};
pub use io::{ImageData, ImageProperties, ImageReaderWriter, determine_reader_writer};
pub use nifti::SitkGeometry;
pub use normalize::{Normalization, NormalizationRegistry};
pub use preprocess::{
    CaseProperties, PreprocessConfig, PreprocessOptions, PreprocessSummary, PreprocessedCase, preprocess_case, preprocess_case_arrays,
    preprocess_dataset,
};
pub use storage::export_preprocessed;
