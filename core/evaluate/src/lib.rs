//! nnU-Net's evaluation (`nnunetv2/evaluation/evaluate_predictions.py`) and postprocessing
//! (`nnunetv2/postprocessing/remove_connected_components.py`), version 2.8.1.
//!
//! * [`evaluate_folder`] = `nnUNetv2_evaluate_folder`, [`evaluate_simple`] = `nnUNetv2_evaluate_simple`, both on
//!   [`compute_metrics_on_folder`]; `summary.json` is byte-identical to nnU-Net's ([`summary_to_string`]).
//! * [`determine_postprocessing`] = `nnUNetv2_determine_postprocessing`, [`apply_postprocessing_to_folder`] =
//!   `nnUNetv2_apply_postprocessing`.
//!
//! Architecture invariant: no burn, no terminal, no environment variables.

/// Connected components (shared with the cascade's augmentation; they live in nnunet-data).
pub use nnunet_data::components;
pub mod error;
pub mod evaluate;
pub mod postprocessing;
pub mod summary;

pub use error::{EvalError, Result};
pub use evaluate::{
    compute_metrics, compute_metrics_arrays, compute_metrics_on_folder, evaluate_folder, evaluate_simple, labels_or_regions_from_dataset,
};
pub use postprocessing::{
    PostprocessingOutcome, PostprocessingStep, PpTarget, apply_postprocessing, apply_postprocessing_to_folder, determine_postprocessing,
    read_postprocessing_file, read_postprocessing_json, remove_all_but_largest_component_from_segmentation,
};
pub use summary::{CaseMetrics, CaseResult, LabelOrRegion, MeanMetrics, Summary, read_summary, save_summary_json, summary_to_string};
