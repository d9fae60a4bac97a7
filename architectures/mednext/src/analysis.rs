//! Closed forms over [`MedNeXtKwargs`]: the parameter count (without building the network) and the
//! conv feature-map size (the memory proxy planners budget, on the scale of dynamic-network-architectures'
//! `compute_conv_feature_map_size`).

use crate::kwargs::MedNeXtKwargs;

/// Parameters of a MedNeXt built from `kw`, as PyTorch's `sum(p.numel() for p in model.parameters())` counts
/// them (including the 1-element `dummy_tensor`).
pub fn param_count(kw: &MedNeXtKwargs, in_channels: usize, n_classes: usize, deep_supervision: bool) -> u64 {
    let k = |l: usize| kw.kernel(l).iter().product::<usize>() as u64;
    let c = |l: usize| kw.channels(l) as u64;
    let e = |i: usize| kw.exp_r[i] as u64;
    // depthwise conv1 (+bias), GroupNorm affine, expansion 1x1 (+bias), compression 1x1 to `cout` (+bias)
    let core = |cin: u64, cout: u64, e: u64, k: u64| cin * k + cin + 2 * cin + e * cin * cin + e * cin + e * cin * cout + cout;
    let block = |l: usize, i: usize| core(c(l), c(l), e(i), k(l));
    let res = |cin: u64, cout: u64| if kw.do_res_up_down { cin * cout + cout } else { 0 };
    let out = |l: usize| c(l) * n_classes as u64 + n_classes as u64;

    let mut n = in_channels as u64 * c(0) + c(0); // stem
    for l in 0..4 {
        n += kw.block_counts[l] as u64 * block(l, l);
        n += core(c(l), c(l + 1), e(l + 1), k(l + 1)) + res(c(l), c(l + 1)); // down_l
        n += kw.block_counts[8 - l] as u64 * block(l, 8 - l);
        n += core(c(l + 1), c(l), e(8 - l), k(l + 1)) + res(c(l + 1), c(l)); // up_l
    }
    n += kw.block_counts[4] as u64 * block(4, 4);
    n += out(0) + 1; // out_0, dummy_tensor
    if deep_supervision {
        n += (1..5).map(out).sum::<u64>();
    }
    n
}

/// Sum over every conv and transposed conv of MedNeXt (stem, each block's depthwise, expansion and compression
/// convs, the down/up blocks' residual convs, and the heads: `out_0`, plus `out_1..out_4` with deep
/// supervision) of its output element count for one sample of spatial size `patch` (3D-lifted). An up block's
/// convs are counted at their unpadded size `s·(n-1)+1` per axis, as they run.
pub fn conv_feature_map_size(
    kw: &MedNeXtKwargs,
    patch: [usize; 3],
    n_classes: usize,
    deep_supervision: bool,
) -> Result<u64, nnunet_core::ArchitectureError> {
    let sizes = kw.level_sizes(patch)?;
    let vol = |l: usize| sizes[l].iter().map(|&x| x as u64).product::<u64>();
    // the up block into level l runs at s·(n_{l+1} - 1) + 1 voxels per axis before its pad
    let up_vol = |l: usize| (0..3).map(|a| (kw.strides[l][a] * (sizes[l + 1][a] - 1) + 1) as u64).product::<u64>();
    let c = |l: usize| kw.channels(l) as u64;
    let e = |i: usize| kw.exp_r[i] as u64;
    let rd = u64::from(kw.do_res_up_down);

    let mut n = c(0) * vol(0); // stem
    for l in 0..5 {
        // encoder blocks (bottleneck for l = 4): conv1 c, conv2 e·c, conv3 c
        n += kw.block_counts[l] as u64 * (2 + e(l)) * c(l) * vol(l);
    }
    for l in 0..4 {
        // down_l: conv1 c_l, conv2 e·c_l, conv3 c_{l+1}, res_conv c_{l+1}, all at level l+1
        n += ((1 + e(l + 1)) * c(l) + (1 + rd) * c(l + 1)) * vol(l + 1);
        // up_l: conv1 c_{l+1}, conv2 e·c_{l+1}, conv3 c_l, res_conv c_l, at the unpadded size
        n += ((1 + e(8 - l)) * c(l + 1) + (1 + rd) * c(l)) * up_vol(l);
        // decoder blocks of level l
        n += kw.block_counts[8 - l] as u64 * (2 + e(8 - l)) * c(l) * vol(l);
    }
    n += n_classes as u64 * vol(0);
    if deep_supervision {
        n += (1..5).map(|l| n_classes as u64 * vol(l)).sum::<u64>();
    }
    Ok(n)
}
