//! The framework's core: small traits (Planner, Architecture, Trainer presets, Loss) and the
//! registries that built-in and third-party crates fill through `inventory`.
//!
//! Registry names are nnU-Net's own strings (`ExperimentPlanner`, `nnUNetPlannerResEncM`,
//! `nnUNetTrainer`, `dynamic_network_architectures.architectures.unet.ResidualEncoderUNet`, ...).
//! A crate registers a component with one macro ([`register_planner!`], [`register_architecture!`],
//! [`register_trainer!`], [`register_loss!`]); the CLI lists them with `nnunet list`.

pub mod architecture;
pub mod loss;
pub mod memory;
pub mod probe;
pub mod network;
pub mod planner;
pub mod precision;
pub mod registry;
pub mod selection;
pub mod topology;
pub mod trainer;

pub use architecture::{Architecture, ArchitectureError};
pub use loss::{DiceExchange, Loss, LossSettings};
pub use network::{NamedParam, Network, NetworkModule, TorchKey, boxed};
pub use planner::{PlanContext, PlanError, Planner};
pub use precision::{GradScaler, MixedPrecision, Precision};
pub use registry::{Entry, Kind, Registry, RegistryError};
pub use trainer::{DsWeighting, OptimizerKind, TrainerConfig, TrainerPreset};

/// Re-exported so that the registration macros work in crates that do not depend on inventory.
#[doc(hidden)]
pub use inventory;

/// Version of this crate; part of the dynamic-plugin fingerprint.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The device network weights are initialised on (then moved to the training device), so a seed gives the same
/// initial weights on every backend — nnU-Net likewise builds its network on the CPU and moves it. The pure-Rust CPU
/// backend when compiled, else `fallback`.
pub fn initialisation_device(fallback: &burn::tensor::Device) -> burn::tensor::Device {
    #[cfg(feature = "flex")]
    {
        let _ = fallback;
        burn::tensor::Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    fallback.clone()
}

/// How the LibTorch backend computes convolution gradients (the patched burn-tch, ADR 0015): `Auto` (PyTorch's own
/// `convolution_backward` on CUDA, burn's formulas on the CPU), or one way everywhere.
// burn marks burn-tch deprecated (ADR 0012 says why we use it anyway)
#[cfg(feature = "tch")]
#[allow(deprecated)]
pub use burn_tch::{ConvolutionBackward, convolution_backward_mode, set_convolution_backward};

/// Backends compiled into this build, e.g. `["flex"]`.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push("flex");
    }
    if cfg!(feature = "tch") {
        v.push("tch (LibTorch)");
    }
    v
}
