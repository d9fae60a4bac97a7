//! Closed forms over [`STUNetKwargs`]: the parameter count (without building the network; STU-Net-H has about
//! 1.46e9 parameters) and the conv feature-map size (the memory proxy planners budget, on the scale of
//! dynamic-network-architectures' `compute_conv_feature_map_size`).

use crate::kwargs::STUNetKwargs;
use nnunet_core::ArchitectureError;

/// Parameters of a `BasicResBlock(cin, cout, k, use_1x1conv)`: two k-convs with bias, two InstanceNorm affines,
/// and the optional 1×1 projection with bias.
fn block_params(cin: u64, cout: u64, k: u64, proj: bool) -> u64 {
    let convs = cin * cout * k + cout + cout * cout * k + cout;
    let norms = 4 * cout;
    convs + norms + if proj { cin * cout + cout } else { 0 }
}

/// Parameters of an STU-Net built from `kw`, as PyTorch's `sum(p.numel() for p in model.parameters())` counts
/// them. Every head counts, with or without deep supervision (STU-Net always builds them).
pub fn param_count(kw: &STUNetKwargs, in_channels: usize, n_classes: usize) -> u64 {
    let n = kw.n_stages();
    let d = |s: usize| kw.dims[s] as u64;
    let k = |s: usize| kw.conv_kernel_sizes[s].iter().product::<usize>() as u64;
    let depth = |s: usize| kw.depth[s] as u64;
    let stage = |cin: u64, s: usize| block_params(cin, d(s), k(s), true) + (depth(s) - 1) * block_params(d(s), d(s), k(s), false);
    let mut total = stage(in_channels as u64, 0);
    total += (1..n).map(|s| stage(d(s - 1), s)).sum::<u64>();
    for l in 0..n - 1 {
        total += d(l + 1) * d(l) + d(l); // upsample layer into stage l: 1x1 conv with bias
        total += stage(2 * d(l), l); // decoder stage l
        total += d(l) * n_classes as u64 + n_classes as u64; // head
    }
    total
}

/// Sum over every conv STU-Net runs of its output element count for one sample of spatial size `patch`
/// (3D-lifted): per residual block `conv1`, `conv2` and the projection `conv3` (first block of each stage), the
/// upsampling layers' 1×1 convs at the upsampled size (where PyTorch runs them), and the heads (all of them with
/// deep supervision, else only the full-resolution one).
pub fn conv_feature_map_size(
    kw: &STUNetKwargs,
    patch: [usize; 3],
    n_classes: usize,
    deep_supervision: bool,
) -> Result<u64, ArchitectureError> {
    let sizes = kw.stage_sizes(patch)?;
    let n = kw.n_stages();
    let vol = |s: usize| sizes[s].iter().map(|&x| x as u64).product::<u64>();
    let d = |s: usize| kw.dims[s] as u64;
    // a stage of `depth` blocks: 2 convs each, plus the first block's projection
    let stage = |s: usize| (2 * kw.depth[s] as u64 + 1) * d(s) * vol(s);
    let mut total: u64 = (0..n).map(stage).sum();
    for l in 0..n - 1 {
        total += d(l) * vol(l) + stage(l); // upsampling conv into stage l, decoder stage l
    }
    total += n_classes as u64 * if deep_supervision { (0..n - 1).map(vol).sum::<u64>() } else { vol(0) };
    Ok(total)
}
