//! Choosing an architecture for a run without editing JSON: `--arch NAME [--arch-config JSON]`.
//!
//! The plans' configuration keeps its patch, batch, spacing and topology; only its `architecture` entry is
//! replaced: the selected architecture derives its kwargs from the configuration's topology
//! ([`Architecture::configure`]) and the user's `--arch-config` keys override them. Planners budget a selected
//! architecture through [`Configured`], which applies the same overrides inside the planner's search.

use crate::Architecture;
use crate::architecture::{ArchitectureError, NetworkSpec};
use crate::registry::{Entry, RegistryError};
use crate::topology::Topology;
use serde_json::{Map, Value, json};

/// A resolved `--arch` / `--arch-config` pair.
pub struct ArchSelection {
    /// The registry entry (its `name` is what plans record as `network_class_name`).
    pub entry: &'static Entry<dyn Architecture>,
    /// User overrides of the architecture's kwargs (`--arch-config`), in the order given.
    pub overrides: Map<String, Value>,
}

impl std::fmt::Debug for ArchSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchSelection").field("name", &self.entry.name).field("overrides", &self.overrides).finish()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectionError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("--arch-config must be a JSON object, e.g. '{{\"size\": \"L\", \"kernel_size\": 3}}': {0}")]
    Config(String),
    #[error("configuration '{configuration}': {msg}")]
    Configuration { configuration: String, msg: String },
    #[error("architecture '{name}' cannot derive its kwargs from the plans' topology (Architecture::configure returned None)")]
    NoConfigure { name: String },
}

/// The short name of a registry name: its last `.`-separated segment
/// (`dynamic_network_architectures.architectures.unet.ResidualEncoderUNet` → `ResidualEncoderUNet`).
pub fn short_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

impl ArchSelection {
    /// Resolve `name` (a registry name or alias, e.g. `ResidualEncoderUNet`) and parse `config_json`.
    pub fn resolve(name: &str, config_json: Option<&str>) -> Result<Self, SelectionError> {
        let reg = crate::registry::architectures()?;
        let entry = reg.get(name)?;
        let overrides = match config_json {
            None => Map::new(),
            Some(s) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m,
                Ok(other) => return Err(SelectionError::Config(format!("got {other}"))),
                Err(e) => return Err(SelectionError::Config(e.to_string())),
            },
        };
        Ok(Self { entry, overrides })
    }

    /// A file-name-safe tag naming the architecture and its overrides, e.g. `MedNeXt_sizeL_kernel_size3`. Results
    /// folders of runs with a selected architecture append it to the trainer name (`nnUNetTrainer+MedNeXt_sizeL`),
    /// the way MedNeXt's own trainers (`nnUNetTrainerV2_MedNeXt_L_kernel3`) name the architecture in the trainer.
    pub fn tag(&self) -> String {
        let mut t = short_name(self.entry.name).to_string();
        for (k, v) in &self.overrides {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".into(),
                other => format!("{:08x}", fnv1a(other.to_string().as_bytes()) as u32),
            };
            t.push('_');
            t.push_str(k);
            t.push_str(&v);
        }
        t.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' { c } else { '-' }).collect()
    }

    /// The architecture wrapped so that `configure` applies the overrides (what planners are given).
    pub fn configured(&self) -> Configured {
        Configured { inner: (self.entry.make)(), overrides: self.overrides.clone() }
    }

    /// The `architecture` entry of a resolved plans configuration `cfg` with this architecture selected: its
    /// kwargs are derived from the configuration's topology, then overridden by `--arch-config`.
    pub fn architecture_for(&self, configuration: &str, cfg: &Map<String, Value>) -> Result<Map<String, Value>, SelectionError> {
        let err = |msg: String| SelectionError::Configuration { configuration: configuration.to_string(), msg };
        let arch = cfg.get("architecture").and_then(Value::as_object).ok_or_else(|| err("has no 'architecture'".into()))?;
        let kwargs = arch.get("arch_kwargs").and_then(Value::as_object).ok_or_else(|| err("architecture lacks 'arch_kwargs'".into()))?;
        let patch: Vec<usize> = cfg
            .get("patch_size")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| err("lacks a valid 'patch_size'".into()))?;
        let topology = topology_from_kwargs(kwargs, &patch).map_err(err)?;
        let new_kwargs =
            self.configured().configure(&topology).ok_or_else(|| SelectionError::NoConfigure { name: self.entry.name.into() })?;
        let requires: Vec<Value> = arch
            .get("_kw_requires_import")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter(|k| k.as_str().is_some_and(|k| new_kwargs.contains_key(k))).cloned().collect())
            .unwrap_or_default();
        let mut out = Map::new();
        out.insert("network_class_name".into(), json!(self.entry.name));
        out.insert("arch_kwargs".into(), Value::Object(new_kwargs));
        out.insert("_kw_requires_import".into(), Value::Array(requires));
        Ok(out)
    }

    /// Replace the `architecture` of configuration `configuration` in `plans` (resolving inheritance first; the
    /// override is written into the configuration itself, which takes precedence over its parents).
    pub fn apply_to_plans(&self, plans: &mut nnunet_schema::Plans, configuration: &str) -> Result<(), SelectionError> {
        let cfg = nnunet_schema::plans::resolve_configuration(plans, configuration)
            .map_err(|e| SelectionError::Configuration { configuration: configuration.to_string(), msg: e.to_string() })?;
        let arch = self.architecture_for(configuration, &cfg)?;
        let confs = plans.0.get_mut("configurations").and_then(Value::as_object_mut).expect("resolve_configuration found it");
        let entry = confs.get_mut(configuration).and_then(Value::as_object_mut).expect("resolve_configuration found it");
        entry.insert("architecture".into(), Value::Object(arch));
        Ok(())
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// The planner topology recorded in U-Net-style `arch_kwargs` (`strides`, `kernel_sizes`, `features_per_stage`) for
/// `patch`. Scalar strides/kernels (allowed by dynamic-network-architectures) are expanded to every axis.
pub fn topology_from_kwargs(kwargs: &Map<String, Value>, patch: &[usize]) -> Result<Topology, String> {
    let dim = patch.len();
    let per_stage = |key: &str| -> Result<Vec<Vec<usize>>, String> {
        let v =
            kwargs.get(key).and_then(Value::as_array).ok_or_else(|| format!("arch_kwargs lack '{key}' (needed to derive a topology)"))?;
        v.iter()
            .map(|s| match s {
                Value::Number(n) => n.as_u64().map(|x| vec![x as usize; dim]).ok_or_else(|| format!("arch_kwargs '{key}': bad entry {s}")),
                Value::Array(_) => {
                    let a: Vec<usize> = serde_json::from_value(s.clone()).map_err(|_| format!("arch_kwargs '{key}': bad entry {s}"))?;
                    if a.len() != dim { Err(format!("arch_kwargs '{key}': entry {s} has not {dim} axes like the patch")) } else { Ok(a) }
                }
                _ => Err(format!("arch_kwargs '{key}': bad entry {s}")),
            })
            .collect()
    };
    let strides = per_stage("strides")?;
    let kernel_sizes = per_stage("kernel_sizes")?;
    let features_per_stage: Vec<usize> = match kwargs.get("features_per_stage") {
        Some(Value::Array(a)) => {
            serde_json::from_value(Value::Array(a.clone())).map_err(|_| "arch_kwargs 'features_per_stage' must be integers")?
        }
        Some(Value::Number(n)) => vec![n.as_u64().ok_or("bad features_per_stage")? as usize; strides.len()],
        _ => return Err("arch_kwargs lack 'features_per_stage' (needed to derive a topology)".into()),
    };
    if kernel_sizes.len() != strides.len() || features_per_stage.len() != strides.len() {
        return Err(format!(
            "arch_kwargs: {} strides, {} kernel_sizes and {} features_per_stage entries differ",
            strides.len(),
            kernel_sizes.len(),
            features_per_stage.len()
        ));
    }
    Ok(Topology { strides, kernel_sizes, features_per_stage, patch_size: patch.to_vec() })
}

/// An architecture with `--arch-config` overrides applied to whatever its `configure` derives.
pub struct Configured {
    inner: Box<dyn Architecture>,
    overrides: Map<String, Value>,
}

impl Architecture for Configured {
    fn memory_proxy(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<f64, ArchitectureError> {
        self.inner.memory_proxy(spec, patch)
    }

    fn build(&self, spec: &NetworkSpec, device: &burn::tensor::Device) -> Result<Box<dyn crate::Network>, ArchitectureError> {
        self.inner.build(spec, device)
    }

    fn configure(&self, topology: &Topology) -> Option<Map<String, Value>> {
        let mut m = self.inner.configure(topology)?;
        for (k, v) in &self.overrides {
            m.insert(k.clone(), v.clone());
        }
        Some(m)
    }

    fn describe(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<Vec<String>, ArchitectureError> {
        self.inner.describe(spec, patch)
    }

    fn output_strides(&self, spec: &NetworkSpec) -> Result<Vec<Vec<usize>>, ArchitectureError> {
        self.inner.output_strides(spec)
    }

    fn transfer_pretrained(
        &self,
        target: &mut dyn crate::Network,
        source: &[crate::NamedParam],
    ) -> Option<Result<Vec<String>, ArchitectureError>> {
        self.inner.transfer_pretrained(target, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_from_unet_kwargs() {
        let kw = json!({"strides": [[1, 1], [2, 2], [2, 2]], "kernel_sizes": [[3, 3], [3, 3], [3, 3]], "features_per_stage": [4, 8, 16]});
        let t = topology_from_kwargs(kw.as_object().unwrap(), &[32, 24]).unwrap();
        assert_eq!(t.strides, vec![vec![1, 1], vec![2, 2], vec![2, 2]]);
        assert_eq!(t.features_per_stage, vec![4, 8, 16]);
        let kw = json!({"strides": [1, 2], "kernel_sizes": 3, "features_per_stage": [4, 8]});
        assert!(topology_from_kwargs(kw.as_object().unwrap(), &[8, 8, 8]).unwrap_err().contains("kernel_sizes"));
        let kw = json!({"strides": [1, 2], "kernel_sizes": [3, 3], "features_per_stage": [4, 8]});
        let t = topology_from_kwargs(kw.as_object().unwrap(), &[8, 8, 8]).unwrap();
        assert_eq!(t.strides[1], vec![2, 2, 2]);
        let kw = json!({"strides": [[1, 1]], "kernel_sizes": [[3, 3]], "features_per_stage": [4]});
        assert!(topology_from_kwargs(kw.as_object().unwrap(), &[8, 8, 8]).unwrap_err().contains("axes"));
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"), "ResidualEncoderUNet");
        assert_eq!(short_name("MedNeXt"), "MedNeXt");
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
