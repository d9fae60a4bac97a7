//! STU-Net (Huang et al. 2023, "STU-Net: Scalable and Transferable Medical Image Segmentation Models",
//! uni-medical/STU-Net) in burn, registered as the architecture `STUNet`.
//!
//! * [`STUNet`]: the network (sizes small/base/large/huge or explicit `dims`/`depth`, any number of stages,
//!   per-stage pool and conv kernels, 2D as 3D with a singleton axis); field names are PyTorch's state-dict keys,
//!   parameter counts and outputs equal PyTorch's (tests with fixtures).
//! * [`STUNetKwargs`]: the plans' `arch_kwargs` (see [`kwargs`] for every key).
//! * [`STUNetArch`]: the [`Architecture`] (configure from a planner topology as `STUNetTrainer.process_plans`
//!   does, memory proxy, build, describe, deep-supervision output strides, pretrained-weight transfer that
//!   re-initialises the heads).

pub mod analysis;
pub mod blocks;
pub mod kwargs;
pub mod stunet;

pub use analysis::{conv_feature_map_size, param_count};
pub use kwargs::{STUNetKwargs, Size};
pub use stunet::STUNet;

use burn::tensor::{Device, Tensor};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::network::{NamedParam, Network, NetworkModule, boxed};
use nnunet_core::topology::Topology;
use nnunet_core::{Architecture, ArchitectureError};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The registry name.
pub const NAME: &str = "STUNet";

/// Prefix of the segmentation heads' parameter paths (kept freshly initialised by [`STUNetArch::transfer_pretrained`]).
pub const HEADS: &str = "seg_outputs.";

impl NetworkModule for STUNet {
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        STUNet::forward(self, x)
    }
}

/// The `STUNet` architecture.
pub struct STUNetArch;

impl Architecture for STUNetArch {
    /// [`conv_feature_map_size`]: every conv's output elements for one sample (all heads only with deep
    /// supervision), the scale of nnU-Net's `compute_conv_feature_map_size`.
    fn memory_proxy(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<f64, ArchitectureError> {
        let kw = STUNetKwargs::parse(&spec.arch_kwargs)?;
        let p = kw.lift_patch(patch)?;
        Ok(conv_feature_map_size(&kw, p, spec.out_channels, spec.deep_supervision)? as f64)
    }

    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>, ArchitectureError> {
        let kw = STUNetKwargs::parse(&spec.arch_kwargs)?;
        Ok(boxed(STUNet::new(&kw, spec.in_channels, spec.out_channels, spec.deep_supervision, device)))
    }

    /// [`STUNetKwargs::configure`]: size small, six stages, kernel 3 everywhere, the topology's first five
    /// downsamplings padded with stride-1 stages (`STUNetTrainer.process_plans`).
    fn configure(&self, topology: &Topology) -> Option<Map<String, Value>> {
        STUNetKwargs::configure(topology)
    }

    fn describe(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<Vec<String>, ArchitectureError> {
        let kw = STUNetKwargs::parse(&spec.arch_kwargs)?;
        let sizes = kw.stage_sizes(kw.lift_patch(patch)?)?;
        let nd = kw.ndim;
        let show = |v: &[usize; 3]| v[3 - nd..].iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x");
        let n = kw.n_stages();
        let size = kw.size.map_or_else(|| "custom".to_string(), |s| s.name().to_string());
        let mut lines = vec![format!("STU-Net size {size}, dims {:?}, depth {:?}, {}D", kw.dims, kw.depth, nd)];
        for (s, size) in sizes.iter().enumerate() {
            let (cin, stride) = if s == 0 { (spec.in_channels, [1, 1, 1]) } else { (kw.dims[s - 1], kw.pool_op_kernel_sizes[s - 1]) };
            lines.push(format!(
                "context {s}     {} x BasicResBlock {} -> {}, kernel {}, stride {}  out ({}, {})",
                kw.depth[s],
                cin,
                kw.dims[s],
                show(&kw.conv_kernel_sizes[s]),
                show(&stride),
                kw.dims[s],
                show(size)
            ));
        }
        for u in 0..n - 1 {
            let l = n - 2 - u;
            lines.push(format!(
                "upsample {u}    nearest x{} + conv 1x1 {} -> {}, concat skip {l}  out ({}, {})",
                show(&kw.pool_op_kernel_sizes[l]),
                kw.dims[l + 1],
                kw.dims[l],
                2 * kw.dims[l],
                show(&sizes[l])
            ));
            let head = if l == 0 {
                format!("  head seg_outputs.{u} ({}, {})  <- full-resolution output", spec.out_channels, show(&sizes[0]))
            } else if spec.deep_supervision {
                format!("  head seg_outputs.{u} ({}, {})", spec.out_channels, show(&sizes[l]))
            } else {
                String::new()
            };
            lines.push(format!(
                "localization {u} {} x BasicResBlock, kernel {}  out ({}, {}){head}",
                kw.depth[l],
                show(&kw.conv_kernel_sizes[l]),
                kw.dims[l],
                show(&sizes[l])
            ));
        }
        Ok(lines)
    }

    /// STU-Net's fine-tuning rule (the pretrained model may have other classes): every parameter except the heads
    /// (`seg_outputs.*`) must exist in `source` with the same shape and is copied; the heads keep their fresh
    /// initialisation.
    fn transfer_pretrained(&self, target: &mut dyn Network, source: &[NamedParam]) -> Option<Result<Vec<String>, ArchitectureError>> {
        let theirs: HashMap<&str, &NamedParam> = source.iter().map(|p| (p.path.as_str(), p)).collect();
        let mut problems = Vec::new();
        for p in target.named_parameters().iter().filter(|p| !p.path.starts_with(HEADS)) {
            match theirs.get(p.path.as_str()) {
                None => problems.push(format!("{} is missing in the pretrained weights", p.path)),
                Some(s) if s.shape != p.shape => {
                    problems.push(format!("{}: pretrained shape {:?}, this network {:?}", p.path, s.shape, p.shape))
                }
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            let n = problems.len();
            problems.truncate(8);
            return Some(Err(ArchitectureError::Other(format!(
                "STUNet: the pretrained weights do not fit this network ({n} problems): {}",
                problems.join("; ")
            ))));
        }
        let mut copied = Vec::new();
        target.replace_parameters(&mut |path, _| {
            if path.starts_with(HEADS) {
                return None;
            }
            let s = theirs.get(path)?;
            copied.push(path.to_string());
            Some(s.values.clone())
        });
        Some(Ok(copied))
    }

    /// Cumulative strides of the decoder stages' outputs (full resolution first, then stages 1..n-2): STU-Net
    /// supervises every decoder stage, not the bottleneck.
    fn output_strides(&self, spec: &NetworkSpec) -> Result<Vec<Vec<usize>>, ArchitectureError> {
        let kw = STUNetKwargs::parse(&spec.arch_kwargs)?;
        let cum = kw.cumulative_strides();
        Ok(cum[..kw.n_stages() - 1].iter().map(|s| s[3 - kw.ndim..].to_vec()).collect())
    }
}

nnunet_core::register_architecture!(
    NAME,
    "STU-Net (uni-medical/STU-Net): residual U-Net, sizes small/base/large/huge (S/B/L/H), nearest upsampling, concat skips",
    || Box::new(STUNetArch)
);
