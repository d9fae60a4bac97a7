//! The `Planner` trait: fingerprint + dataset.json + budget → plans. Pure: no I/O, no device.

use crate::Architecture;
use nnunet_schema::{DatasetJson, Fingerprint, Plans};

/// Everything a planner may look at. Built by the CLI from files; planners never touch the disk.
pub struct PlanContext<'a> {
    /// `DatasetXXX_Name`.
    pub dataset_name: &'a str,
    pub dataset_json: &'a DatasetJson,
    pub fingerprint: &'a Fingerprint,
    /// Reader/writer class name written to the plans (`SimpleITKIO`, `NaturalImage2DIO`, ...).
    pub image_reader_writer: &'a str,
    /// `-gpu_memory_target` in GB; `None` = the planner's default.
    pub gpu_memory_target_gb: Option<f64>,
    /// `-overwrite_plans_name`; `None` = the planner's default plans name.
    pub plans_name: Option<&'a str>,
    /// `-overwrite_target_spacing`, untransposed array axis order.
    pub overwrite_target_spacing: Option<&'a [f64]>,
    /// `-preprocessor_name`; `None` = `DefaultPreprocessor`.
    pub preprocessor_name: Option<&'a str>,
    /// The architecture whose memory proxy budgets the search; `None` = the planner's own network.
    pub architecture: Option<(&'a str, &'a dyn Architecture)>,
    /// An existing plans file of the same name: its configurations not produced by this run are kept (nnU-Net's
    /// `save_plans` behaviour).
    pub existing_plans: Option<&'a Plans>,
}

impl<'a> PlanContext<'a> {
    /// A context with every optional input at its default.
    pub fn new(dataset_name: &'a str, dataset_json: &'a DatasetJson, fingerprint: &'a Fingerprint, image_reader_writer: &'a str) -> Self {
        Self {
            dataset_name,
            dataset_json,
            fingerprint,
            image_reader_writer,
            gpu_memory_target_gb: None,
            plans_name: None,
            overwrite_target_spacing: None,
            preprocessor_name: None,
            architecture: None,
            existing_plans: None,
        }
    }
}

/// A planner's result: the plans and the messages nnU-Net would print (warnings, dropped configs).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutput {
    pub plans: Plans,
    /// The plans identifier (file stem) the plans are written under.
    pub plans_name: String,
    pub messages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("invalid planning input: {0}")]
    Invalid(String),
    #[error("planning failed: {0}")]
    Failed(String),
}

/// An experiment planner. Two required methods; everything else has a default.
pub trait Planner: Send + Sync {
    /// The plans identifier written when `-overwrite_plans_name` is not given (`nnUNetPlans`, ...).
    fn default_plans_name(&self) -> &str;

    /// Plan every configuration.
    fn plan(&self, ctx: &PlanContext<'_>) -> Result<PlanOutput, PlanError>;

    /// GPU memory target in GB used when `-gpu_memory_target` is not given.
    fn default_gpu_memory_target_gb(&self) -> f64 {
        8.0
    }
}
