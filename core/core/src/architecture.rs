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

impl NetworkSpec {
    /// The network a resolved plans configuration asks for: `(network_class_name, spec)`. Input channels are the
    /// dataset's image channels plus, for a cascade stage (`previous_stage`), one per foreground label (the one-hot
    /// previous segmentation); outputs are the label manager's segmentation heads.
    pub fn from_configuration(
        cfg: &Map<String, Value>,
        dataset_json: &nnunet_schema::DatasetJson,
        deep_supervision: bool,
    ) -> Result<(String, NetworkSpec), String> {
        let arch = cfg.get("architecture").and_then(Value::as_object).ok_or("the configuration has no 'architecture'")?;
        let class = arch.get("network_class_name").and_then(Value::as_str).ok_or("architecture lacks 'network_class_name'")?;
        let arch_kwargs = arch.get("arch_kwargs").and_then(Value::as_object).cloned().ok_or("architecture lacks 'arch_kwargs'")?;
        let lm = dataset_json.label_manager().map_err(|e| format!("dataset.json: {e}"))?;
        let mut in_channels = dataset_json.channels().len();
        if in_channels == 0 {
            return Err("dataset.json has no channel_names".into());
        }
        if cfg.get("previous_stage").is_some() {
            in_channels += lm.foreground_labels().len();
        }
        Ok((class.to_string(), NetworkSpec { arch_kwargs, in_channels, out_channels: lm.num_segmentation_heads(), deep_supervision }))
    }
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

    /// Initialise `target` (built by this architecture) from a pretrained network's parameters (`-pretrained_weights`).
    /// `None` (the default) applies nnU-Net's `load_pretrained_weights` rule: every parameter except those whose path
    /// contains `.seg_layers.` must exist in `source` with the same shape and is copied. An architecture returns
    /// `Some` to use its own rule (MedNeXt: UpKern when kernel sizes differ). Ok = the transferred paths.
    fn transfer_pretrained(
        &self,
        _target: &mut dyn Network,
        _source: &[crate::network::NamedParam],
    ) -> Option<Result<Vec<String>, ArchitectureError>> {
        None
    }

    /// Cumulative downsampling factor per axis of each output of the network with deep supervision on, full
    /// resolution (all ones) first; the engine downsamples the targets to these scales. The default is nnU-Net's rule
    /// for U-Net-style kwargs: the cumulative products of `arch_kwargs.strides`, without the last (bottleneck) stage.
    fn output_strides(&self, spec: &NetworkSpec) -> Result<Vec<Vec<usize>>, ArchitectureError> {
        default_output_strides(&spec.arch_kwargs)
    }
}

/// nnU-Net's deep-supervision scales rule over U-Net-style `arch_kwargs.strides` (one entry per stage, stage 0
/// first): cumulative products of the stage strides, the last (bottleneck) stage dropped.
pub fn default_output_strides(kwargs: &Map<String, Value>) -> Result<Vec<Vec<usize>>, ArchitectureError> {
    let strides: Vec<Vec<usize>> = kwargs
        .get("strides")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| ArchitectureError::Kwargs("arch_kwargs lack per-axis 'strides'".into()))?;
    let mut cum = vec![1usize; strides.first().map_or(0, Vec::len)];
    let mut out = Vec::with_capacity(strides.len());
    for s in &strides {
        if s.len() != cum.len() {
            return Err(ArchitectureError::Kwargs(format!("arch_kwargs 'strides': {s:?} has not {} axes", cum.len())));
        }
        cum.iter_mut().zip(s).for_each(|(c, &x)| *c *= x);
        out.push(cum.clone());
    }
    out.pop();
    Ok(out)
}
