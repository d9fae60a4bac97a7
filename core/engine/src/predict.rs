//! nnU-Net's sliding-window inference (training spec §4.2–4.3): tile starts with step size, Gaussian importance
//! weighting (σ = patch/8, peak 10, scipy's truncation radius), mirroring test-time augmentation averaged in logit
//! space, padding of images smaller than the patch.

use burn::tensor::{Device, Tensor, TensorData};
use nnunet_augment::tensor::{round_f64_to_f16, round_to_f16};
use nnunet_core::Network;

/// Tile starts along one axis: `n = ceil((size − patch)/(patch·step)) + 1` tiles, first at 0, last flush with the
/// end, `round_half_even(k·(size − patch)/(n − 1))`.
pub fn tile_starts(size: usize, patch: usize, step: f64) -> Vec<usize> {
    assert!(size >= patch, "image smaller than the patch must be padded first");
    let target = patch as f64 * step;
    let n = ((size - patch) as f64 / target).ceil() as usize + 1;
    if n <= 1 {
        return vec![0];
    }
    let actual = (size - patch) as f64 / (n - 1) as f64;
    (0..n).map(|k| (actual * k as f64).round_ties_even() as usize).collect()
}

/// The Gaussian importance map of a tile `[z, y, x]` (C order) as nnU-Net's `compute_gaussian(patch, 1/8,
/// value_scaling_factor=10, dtype=torch.float16)`: σ = patch/8, scipy's truncation radius, normalised in float64 to
/// a peak of 10, rounded to float16, and zeros (underflow) replaced by the smallest non-zero value. `spatial_dims = 2`
/// ignores axis 0 (2D networks see `[1, y, x]` tiles). The values are float16 numbers held as f32.
pub fn gaussian_importance(patch: [usize; 3], spatial_dims: usize) -> Vec<f32> {
    let axis = |d: usize| -> Vec<f64> {
        let p = patch[d];
        if spatial_dims == 2 && d == 0 {
            return vec![1.0; p];
        }
        let sigma = p as f64 / 8.0;
        let c = (p / 2) as f64;
        let radius = (4.0 * sigma + 0.5) as i64;
        (0..p)
            .map(|i| {
                let off = i as f64 - c;
                if off.abs() as i64 > radius { 0.0 } else { (-off * off / (2.0 * sigma * sigma)).exp() }
            })
            .collect()
    };
    let (a, b, c) = (axis(0), axis(1), axis(2));
    let mut g = Vec::with_capacity(patch.iter().product());
    for x in &a {
        for y in &b {
            for z in &c {
                g.push(x * y * z);
            }
        }
    }
    let max = g.iter().cloned().fold(0.0f64, f64::max);
    let g16: Vec<f32> = g.iter().map(|v| round_f64_to_f16(v / (max / 10.0))).collect();
    let min_pos = g16.iter().cloned().filter(|v| *v > 0.0).fold(f32::MAX, f32::min);
    g16.into_iter().map(|v| if v > 0.0 { v } else { min_pos }).collect()
}

/// Settings of one sliding-window prediction.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    /// Patch `[z, y, x]`; 2D networks use `[1, y, x]`.
    pub patch: [usize; 3],
    pub spatial_dims: usize,
    pub step_size: f64,
    /// Mirroring axes of the network's spatial axes (3D: 0,1,2; 2D: 0,1); empty = no TTA.
    pub mirror_axes: Vec<usize>,
    pub num_heads: usize,
}

/// The mirrorings of test-time augmentation in nnU-Net's order (`itertools.combinations` of 1, 2, … axes).
fn non_empty_subsets(axes: &[usize]) -> Vec<Vec<usize>> {
    let mut subsets: Vec<Vec<usize>> =
        (1..(1u32 << axes.len())).map(|m| axes.iter().enumerate().filter(|(i, _)| m & (1 << i) != 0).map(|(_, a)| *a).collect()).collect();
    subsets.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    subsets
}

/// Logits `(heads, z, y, x)` of `image` `(c, z, y, x)`, averaged over mirrorings and weighted by the Gaussian.
///
/// As nnU-Net's `_internal_predict_sliding_window_return_logits`, the weighted logits and the weights are summed in
/// float16 buffers (each tile's fp32 logits times the fp16 Gaussian, added in fp32 and rounded to fp16, tiles in
/// nnU-Net's order) and divided in float16: the returned values are float16 numbers (held as f32), as nnU-Net's.
pub fn predict_logits(net: &dyn Network, image: &[f32], shape: [usize; 4], sw: &SlidingWindow, dev: &Device) -> Vec<f32> {
    let [c, z, y, x] = shape;
    // pad to at least the patch, centred
    let sp = [z, y, x];
    let padded: [usize; 3] = std::array::from_fn(|d| sp[d].max(sw.patch[d]));
    let below: [usize; 3] = std::array::from_fn(|d| (padded[d] - sp[d]) / 2);
    let mut img = vec![0f32; c * padded.iter().product::<usize>()];
    for ch in 0..c {
        for i in 0..z {
            for j in 0..y {
                let src = ((ch * z + i) * y + j) * x;
                let dst = ((ch * padded[0] + i + below[0]) * padded[1] + j + below[1]) * padded[2] + below[2];
                img[dst..dst + x].copy_from_slice(&image[src..src + x]);
            }
        }
    }
    let starts: Vec<Vec<usize>> = (0..3)
        .map(|d| if sw.spatial_dims == 2 && d == 0 { (0..padded[0]).collect() } else { tile_starts(padded[d], sw.patch[d], sw.step_size) })
        .collect();
    let g = gaussian_importance(sw.patch, sw.spatial_dims);
    let vox = padded.iter().product::<usize>();
    let mut acc = vec![0f32; sw.num_heads * vox];
    let mut wacc = vec![0f32; vox];
    let [pz, py, px] = sw.patch;
    let subsets = non_empty_subsets(&sw.mirror_axes);
    let flip_dim = |a: usize| if sw.spatial_dims == 2 { a + 3 } else { a + 2 };
    let mut tile = vec![0f32; c * pz * py * px];
    for &s0 in &starts[0] {
        for &s1 in &starts[1] {
            for &s2 in &starts[2] {
                for ch in 0..c {
                    for i in 0..pz {
                        for j in 0..py {
                            let src = ((ch * padded[0] + s0 + i) * padded[1] + s1 + j) * padded[2] + s2;
                            let dst = ((ch * pz + i) * py + j) * px;
                            tile[dst..dst + px].copy_from_slice(&img[src..src + px]);
                        }
                    }
                }
                let t = Tensor::<5>::from_data(TensorData::new(tile.clone(), [1, c, pz, py, px]), dev);
                // fp32 accumulation whatever precision the network computed in (autocast)
                let mut pred = nnunet_core::precision::as_f32(net.forward(t.clone()).swap_remove(0));
                for sub in &subsets {
                    let dims: Vec<usize> = sub.iter().map(|&a| flip_dim(a)).collect();
                    let flip = |mut x: Tensor<5>| {
                        for &d in &dims {
                            x = x.flip([d]);
                        }
                        x
                    };
                    pred = pred + flip(nnunet_core::precision::as_f32(net.forward(flip(t.clone())).swap_remove(0)));
                }
                let pred = pred.div_scalar((subsets.len() + 1) as f32);
                let data = pred.into_data().convert::<f32>();
                let p: Vec<f32> = data.iter::<f32>().collect();
                for h in 0..sw.num_heads {
                    for i in 0..pz {
                        for j in 0..py {
                            for k in 0..px {
                                let gi = (i * py + j) * px + k;
                                let dst = ((s0 + i) * padded[1] + s1 + j) * padded[2] + s2 + k;
                                let a = &mut acc[h * vox + dst];
                                *a = round_to_f16(*a + p[((h * pz + i) * py + j) * px + k] * g[gi]);
                                if h == 0 {
                                    wacc[dst] = round_to_f16(wacc[dst] + g[gi]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // normalise and crop the padding away
    let mut out = vec![0f32; sw.num_heads * z * y * x];
    for h in 0..sw.num_heads {
        for i in 0..z {
            for j in 0..y {
                for k in 0..x {
                    let src = ((i + below[0]) * padded[1] + j + below[1]) * padded[2] + k + below[2];
                    out[((h * z + i) * y + j) * x + k] = round_to_f16(acc[h * vox + src] / wacc[src]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_starts_match_nnunet() {
        assert_eq!(tile_starts(110, 64, 0.5), vec![0, 23, 46]);
        assert_eq!(tile_starts(100, 64, 0.5), vec![0, 18, 36]);
        assert_eq!(tile_starts(129, 64, 0.5), vec![0, 22, 43, 65]);
        assert_eq!(tile_starts(200, 128, 0.5), vec![0, 36, 72]);
        assert_eq!(tile_starts(300, 128, 0.5), vec![0, 57, 115, 172]);
        assert_eq!(tile_starts(64, 64, 0.5), vec![0]);
    }

    #[test]
    fn gaussian_matches_spec_vector() {
        let g = gaussian_importance([40, 56, 40], 3);
        let at = |i: usize, j: usize, k: usize| g[(i * 56 + j) * 40 + k];
        assert_eq!(at(20, 28, 20), 10.0);
        // float16 values: 3.3546e-3 → 0.0033550262, and 3.7751e-10 underflows to 0 and becomes the smallest value
        assert_eq!(at(0, 28, 20), nnunet_augment::tensor::round_to_f16(3.3546e-3));
        assert_eq!(at(0, 0, 0), g.iter().cloned().fold(f32::MAX, f32::min));
        assert!(at(0, 0, 0) > 0.0 && at(0, 0, 0) < 1e-5, "{}", at(0, 0, 0));
    }

    /// Every value equals nnU-Net's `compute_gaussian` (float16; tests/fixtures/gaussian/make.py).
    #[test]
    fn gaussian_equals_nnunet_float16_map() {
        let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gaussian/gaussian.json");
        let want: std::collections::BTreeMap<String, Vec<f32>> = serde_json::from_str(&std::fs::read_to_string(d).unwrap()).unwrap();
        for (tile, dims, patch) in [("6x8x5", 3, [6, 8, 5]), ("12x16x10", 3, [12, 16, 10]), ("32x32", 2, [1, 32, 32])] {
            assert_eq!(gaussian_importance(patch, dims), want[tile], "{tile}");
        }
    }

    #[test]
    fn subsets_in_itertools_order() {
        let s = non_empty_subsets(&[0, 1, 2]);
        assert_eq!(s, vec![vec![0], vec![1], vec![2], vec![0, 1], vec![0, 2], vec![1, 2], vec![0, 1, 2]]);
    }

    #[test]
    fn subsets_of_mirror_axes() {
        assert_eq!(non_empty_subsets(&[0, 1, 2]).len(), 7);
        assert_eq!(non_empty_subsets(&[0, 1]).len(), 3);
        assert!(non_empty_subsets(&[]).is_empty());
    }
}
