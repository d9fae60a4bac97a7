//! MedNeXt v1 (Roy et al. 2023, MIC-DKFZ/MedNeXt) in burn, registered as the architecture `MedNeXt`.
//!
//! * [`MedNeXt`]: the network (sizes S/B/M/L, any odd kernel, 2D as 3D with a singleton axis, per-level
//!   strides 1 or 2 and per-axis kernels for anisotropic data); field names are PyTorch's state-dict keys and
//!   parameter counts equal PyTorch's (training spec §1.7).
//! * [`MedNeXtKwargs`]: the plans' `arch_kwargs` (see [`kwargs`] for every key).
//! * [`MedNeXtArch`]: the [`Architecture`] (configure from a planner topology, memory proxy, build, describe,
//!   deep-supervision output strides).
//! * [`upkern()`] / [`upkern_network`] / [`upkern_record`]: UpKern, the kernel-3 → kernel-5 initialisation.

pub mod analysis;
pub mod blocks;
pub mod kwargs;
pub mod mednext;
pub mod upkern;

pub use analysis::{conv_feature_map_size, param_count};
pub use kwargs::{MedNeXtKwargs, Size};
pub use mednext::MedNeXt;
pub use upkern::{UpKernSummary, upkern, upkern_network, upkern_record};

use burn::tensor::{Device, Tensor};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::network::{NamedParam, Network, NetworkModule, boxed};
use nnunet_core::topology::Topology;
use nnunet_core::{Architecture, ArchitectureError};
use serde_json::{Map, Value};

/// The registry name.
pub const NAME: &str = "MedNeXt";

impl NetworkModule for MedNeXt {
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        MedNeXt::forward(self, x)
    }
}

/// The `MedNeXt` architecture.
pub struct MedNeXtArch;

impl Architecture for MedNeXtArch {
    /// [`conv_feature_map_size`]: every conv's output elements for one sample (heads `out_1..out_4` only
    /// with deep supervision), the scale of nnU-Net's `compute_conv_feature_map_size`.
    fn memory_proxy(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<f64, ArchitectureError> {
        let kw = MedNeXtKwargs::parse(&spec.arch_kwargs)?;
        let p = kw.lift_patch(patch)?;
        Ok(conv_feature_map_size(&kw, p, spec.out_channels, spec.deep_supervision)? as f64)
    }

    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>, ArchitectureError> {
        let kw = MedNeXtKwargs::parse(&spec.arch_kwargs)?;
        Ok(boxed(MedNeXt::new(&kw, spec.in_channels, spec.out_channels, spec.deep_supervision, device)))
    }

    /// [`MedNeXtKwargs::configure`]: size S, kernel 3, the topology's first four downsamplings (padded with
    /// stride-1 levels), per-level kernel axes from the topology's kernels.
    fn configure(&self, topology: &Topology) -> Option<Map<String, Value>> {
        MedNeXtKwargs::configure(topology)
    }

    fn describe(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<Vec<String>, ArchitectureError> {
        let kw = MedNeXtKwargs::parse(&spec.arch_kwargs)?;
        let sizes = kw.level_sizes(kw.lift_patch(patch)?)?;
        let d = kw.dims;
        let show = |v: &[usize; 3]| v[3 - d..].iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x");
        let c = |l: usize| kw.channels(l);
        let (e, bc) = (&kw.exp_r, &kw.block_counts);
        let size = kw.size.map_or_else(|| "custom".to_string(), |s| s.name().to_string());
        let mut lines = vec![format!(
            "MedNeXt v1 size {size}, kernel {}, exp_r {:?}, block_counts {:?}, {}D",
            kw.kernel_size, kw.exp_r, kw.block_counts, kw.dims
        )];
        lines.push(format!("stem          conv 1x1 {} -> {}  out ({}, {})", spec.in_channels, c(0), c(0), show(&sizes[0])));
        for l in 0..4 {
            lines.push(format!(
                "encoder {l}     {} x MedNeXtBlock exp {}, kernel {}  out ({}, {})",
                bc[l],
                e[l],
                show(&kw.kernel(l)),
                c(l),
                show(&sizes[l])
            ));
            lines.push(format!(
                "down {l}        DownBlock stride {}, kernel {}, exp {}  out ({}, {})",
                show(&kw.strides[l]),
                show(&kw.kernel(l + 1)),
                e[l + 1],
                c(l + 1),
                show(&sizes[l + 1])
            ));
        }
        let ds = |l: usize| {
            if spec.deep_supervision { format!("  head out_{l} ({}, {})", spec.out_channels, show(&sizes[l])) } else { String::new() }
        };
        lines.push(format!(
            "bottleneck    {} x MedNeXtBlock exp {}, kernel {}  out ({}, {}){}",
            bc[4],
            e[4],
            show(&kw.kernel(4)),
            c(4),
            show(&sizes[4]),
            ds(4)
        ));
        for l in (0..4).rev() {
            lines.push(format!(
                "up {l}          UpBlock stride {}, kernel {}, exp {}, + skip  out ({}, {})",
                show(&kw.strides[l]),
                show(&kw.kernel(l + 1)),
                e[8 - l],
                c(l),
                show(&sizes[l])
            ));
            let head = if l == 0 {
                format!("  head out_0 ({}, {})  <- full-resolution output", spec.out_channels, show(&sizes[0]))
            } else {
                ds(l)
            };
            lines.push(format!(
                "decoder {l}     {} x MedNeXtBlock exp {}, kernel {}  out ({}, {}){head}",
                bc[8 - l],
                e[8 - l],
                show(&kw.kernel(l)),
                c(l),
                show(&sizes[l])
            ));
        }
        Ok(lines)
    }

    /// `-pretrained_weights` from a MedNeXt whose kernel size differs (k3 → k5): UpKern (spec §1.7; MedNeXt's
    /// `-resample_weights`). Same kernels: `None`, i.e. nnU-Net's rule.
    fn transfer_pretrained(&self, target: &mut dyn Network, source: &[NamedParam]) -> Option<Result<Vec<String>, ArchitectureError>> {
        let theirs: std::collections::HashMap<&str, &[usize]> = source.iter().map(|p| (p.path.as_str(), p.shape.as_slice())).collect();
        let kernel_differs = target.named_parameters().iter().any(|p| {
            theirs
                .get(p.path.as_str())
                .is_some_and(|s| s.len() == p.shape.len() && s.len() > 2 && s[..2] == p.shape[..2] && s[2..] != p.shape[2..])
        });
        if !kernel_differs {
            return None;
        }
        Some(upkern::upkern_network(source, target).map(|s| s.copied.into_iter().chain(s.resized.into_iter().map(|(p, _, _)| p)).collect()))
    }

    /// All five outputs' cumulative strides (full resolution first, the bottleneck's last): unlike nnU-Net's
    /// U-Nets, MedNeXt supervises the bottleneck output too.
    fn output_strides(&self, spec: &NetworkSpec) -> Result<Vec<Vec<usize>>, ArchitectureError> {
        let kw = MedNeXtKwargs::parse(&spec.arch_kwargs)?;
        Ok(kw.cumulative_strides().iter().map(|s| s[3 - kw.dims..].to_vec()).collect())
    }
}

nnunet_core::register_architecture!(
    NAME,
    "MedNeXt v1 (MIC-DKFZ/MedNeXt): ConvNeXt-style blocks, sizes S/B/M/L, kernel 3/5, additive skips, UpKern",
    || Box::new(MedNeXtArch)
);
