//! The one place that links every built-in component crate.
//!
//! `inventory` registrations live in the crates that define the components; a crate that nothing
//! references is not linked and its registrations vanish silently. Depending on this crate (the CLI does)
//! guarantees they are all present; `tests/registered.rs` fails if one goes missing.

use nnunet_arch_mednext as _;
use nnunet_arch_stunet as _;
use nnunet_arch_unet as _;
use nnunet_engine as _;
use nnunet_planners as _;

/// The built-in component names per kind that must be registered (checked by this crate's test and by
/// `nnunet list`'s integration test).
pub const EXPECTED: &[(nnunet_core::Kind, &str, &str)] = &[
    (nnunet_core::Kind::Planner, "ExperimentPlanner", "nnunet_planners"),
    (nnunet_core::Kind::Planner, "ResEncUNetPlanner", "nnunet_planners"),
    (nnunet_core::Kind::Planner, "nnUNetPlannerResEncM", "nnunet_planners"),
    (nnunet_core::Kind::Planner, "nnUNetPlannerResEncL", "nnunet_planners"),
    (nnunet_core::Kind::Planner, "nnUNetPlannerResEncXL", "nnunet_planners"),
    (nnunet_core::Kind::Trainer, "nnUNetTrainer", "nnunet_engine"),
    (nnunet_core::Kind::Trainer, "nnUNetTrainer_250epochs", "nnunet_engine"),
    (nnunet_core::Kind::Trainer, "nnUNetTrainerNoDeepSupervision", "nnunet_engine"),
    (nnunet_core::Kind::Loss, "DC_and_CE_loss", "nnunet_engine"),
    (nnunet_core::Kind::Loss, "DC_and_BCE_loss", "nnunet_engine"),
    (nnunet_core::Kind::Architecture, "dynamic_network_architectures.architectures.unet.PlainConvUNet", "nnunet_arch_unet"),
    (nnunet_core::Kind::Architecture, "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet", "nnunet_arch_unet"),
    (nnunet_core::Kind::Architecture, "MedNeXt", "nnunet_arch_mednext"),
    (nnunet_core::Kind::Architecture, "STUNet", "nnunet_arch_stunet"),
    (nnunet_core::Kind::Trainer, "nnUNetTrainerDebug", "nnunet_engine"),
];
