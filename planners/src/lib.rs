//! nnU-Net experiment planners: `ExperimentPlanner`, `ResEncUNetPlanner`, `nnUNetPlannerResEncM/L/XL`.
//!
//! All five are presets ([`PlannerConstants`]) of one search ([`plan_experiment`]) that reproduces
//! nnU-Net 2.8.1's plans JSON (planning spec §4–§6). Planners are pure: no file or environment access.

pub mod experiment;
pub mod numeric;

pub use experiment::{
    ConfigurationPlan, DataIdentifiers, MedianShape, PlannerConstants, ShrinkRule, compute_new_shape, fullres_target_spacing,
    normalization_scheme, plan_experiment, transpose_from_spacing,
};

use nnunet_core::planner::PlanOutput;
use nnunet_core::{PlanContext, PlanError, Planner};

/// A planner defined by its constants. The five nnU-Net planners are values of this type.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetPlanner {
    pub constants: PlannerConstants,
}

impl PresetPlanner {
    pub const fn new(constants: PlannerConstants) -> Self {
        Self { constants }
    }

    /// `ExperimentPlanner` (plans `nnUNetPlans`, PlainConvUNet).
    pub const fn experiment_planner() -> Self {
        Self::new(PlannerConstants::DEFAULT)
    }

    /// `ResEncUNetPlanner` (plans `nnUNetResEncUNetPlans`).
    pub const fn res_enc_unet_planner() -> Self {
        Self::new(PlannerConstants::RES_ENC)
    }

    /// `nnUNetPlannerResEncM` (plans `nnUNetResEncUNetMPlans`, 8 GB).
    pub const fn res_enc_m() -> Self {
        Self::new(PlannerConstants::RES_ENC_M)
    }

    /// `nnUNetPlannerResEncL` (plans `nnUNetResEncUNetLPlans`, 24 GB).
    pub const fn res_enc_l() -> Self {
        Self::new(PlannerConstants::RES_ENC_L)
    }

    /// `nnUNetPlannerResEncXL` (plans `nnUNetResEncUNetXLPlans`, 40 GB).
    pub const fn res_enc_xl() -> Self {
        Self::new(PlannerConstants::RES_ENC_XL)
    }

    /// The preset registered under nnU-Net's class name `name`.
    pub fn by_name(name: &str) -> Option<Self> {
        [Self::experiment_planner(), Self::res_enc_unet_planner(), Self::res_enc_m(), Self::res_enc_l(), Self::res_enc_xl()]
            .into_iter()
            .find(|p| p.constants.class_name == name)
    }
}

impl Planner for PresetPlanner {
    fn default_plans_name(&self) -> &str {
        self.constants.default_plans_name
    }

    fn plan(&self, ctx: &PlanContext<'_>) -> Result<PlanOutput, PlanError> {
        plan_experiment(&self.constants, ctx)
    }

    fn default_gpu_memory_target_gb(&self) -> f64 {
        self.constants.default_gpu_memory_target_gb
    }
}

nnunet_core::register_planner!(
    "ExperimentPlanner",
    "nnU-Net default planner: PlainConvUNet, 8 GB reference, batch capped at 5% of the dataset (nnUNetPlans)",
    || Box::new(PresetPlanner::experiment_planner())
);
nnunet_core::register_planner!(
    "ResEncUNetPlanner",
    "residual-encoder U-Net planner, 8 GB reference, 5% dataset cap (nnUNetResEncUNetPlans)",
    || Box::new(PresetPlanner::res_enc_unet_planner())
);
nnunet_core::register_planner!(
    "nnUNetPlannerResEncM",
    "ResEnc preset M: residual-encoder U-Net for ~8 GB GPUs (nnUNetResEncUNetMPlans)",
    || Box::new(PresetPlanner::res_enc_m())
);
nnunet_core::register_planner!(
    "nnUNetPlannerResEncL",
    "ResEnc preset L: residual-encoder U-Net for ~24 GB GPUs (nnUNetResEncUNetLPlans)",
    || Box::new(PresetPlanner::res_enc_l())
);
nnunet_core::register_planner!(
    "nnUNetPlannerResEncXL",
    "ResEnc preset XL: residual-encoder U-Net for ~40 GB GPUs (nnUNetResEncUNetXLPlans)",
    || Box::new(PresetPlanner::res_enc_xl())
);
