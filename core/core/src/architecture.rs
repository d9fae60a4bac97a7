//! The `Architecture` trait: a network family that builds from a configuration's
//! `architecture.arch_kwargs` and tells planners how much memory a patch costs.
//!
//! Architecture invariant: networks return logits (full resolution first, then the deep-supervision
//! outputs), never softmax/sigmoid.

pub use crate::network::Network;
use burn::tensor::Device;
use serde_json::{Map, Value};

/// What a network is built from: the plans' `arch_kwargs` plus the channel counts.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    pub arch_kwargs: Map<String, Value>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub deep_supervision: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArchitectureError {
    #[error("architecture kwargs: {0}")]
    Kwargs(String),
    #[error("{0}")]
    Other(String),
}

/// A network family. Two required methods; `configure` has a default.
pub trait Architecture: Send + Sync {
    /// Memory proxy for one sample of `patch` (nnU-Net's feature-map element count for the built-in
    /// networks). Planners compare it against their budget, so every architecture must give one.
    fn memory_proxy(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<f64, ArchitectureError>;

    /// Build the network on `device`.
    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>, ArchitectureError>;

    /// Derive this architecture's kwargs from a planner topology (stages, strides, kernels, features).
    /// `None` means "use the planner's kwargs unchanged".
    fn configure(&self, _topology: &crate::topology::Topology) -> Option<Map<String, Value>> {
        None
    }

    /// Human-readable layer summary for `nnunet summary`: one line per stage with its output shape for
    /// `patch` (channels first, no batch axis). Empty by default.
    fn describe(&self, _spec: &NetworkSpec, _patch: &[usize]) -> Result<Vec<String>, ArchitectureError> {
        Ok(Vec::new())
    }
}
