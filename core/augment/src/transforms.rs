//! The per-sample transforms of nnU-Net's pipeline (batchgeneratorsv2 semantics), except the spatial transform
//! (`spatial.rs`).

use crate::rng::{RandomScalar, Rng};
use crate::tensor::{Sample, Tensor, round_half_even};

/// One augmentation step, applied to one sample.
pub trait Transform: Send + Sync {
    /// batchgeneratorsv2 class name (used to find / remove transforms in a [`crate::Pipeline`])
    fn name(&self) -> &'static str;
    /// probability that the transform runs on a sample (`RandomTransform`'s `apply_probability`), 1 otherwise
    fn probability(&self) -> f64 {
        1.0
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng);
}

/// `RandomTransform(transform, apply_probability)`.
pub struct RandomApply {
    pub p: f64,
    pub inner: Box<dyn Transform>,
}

impl RandomApply {
    pub fn new(p: f64, inner: impl Transform + 'static) -> Self {
        RandomApply { p, inner: Box::new(inner) }
    }
}

impl Transform for RandomApply {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn probability(&self) -> f64 {
        self.p
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        if rng.uniform01() < self.p {
            self.inner.apply(sample, rng);
        }
    }
}

/// channels (indices) selected with probability `p` each (`torch.rand(c) < p`)
fn pick_channels(c: usize, p: f64, rng: &mut Rng) -> Vec<usize> {
    (0..c).filter(|_| rng.uniform01() < p).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// GaussianNoiseTransform

/// `GaussianNoiseTransform(noise_variance, p_per_channel, synchronize_channels)`: adds `N(0, σ²)` noise where σ is
/// drawn from `noise_variance` (the parameter is a standard deviation despite its name).
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianNoiseTransform {
    pub noise_variance: RandomScalar,
    pub p_per_channel: f64,
    pub synchronize_channels: bool,
}

impl Transform for GaussianNoiseTransform {
    fn name(&self) -> &'static str {
        "GaussianNoiseTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let idx = pick_channels(sample.image.channels, self.p_per_channel, rng);
        if idx.is_empty() {
            return;
        }
        let sigmas: Vec<f32> = if self.synchronize_channels {
            vec![self.noise_variance.sample(rng) as f32; idx.len()]
        } else {
            idx.iter().map(|_| self.noise_variance.sample(rng) as f32).collect()
        };
        let mut noise = vec![0f32; sample.image.numel_spatial()];
        for (&c, &s) in idx.iter().zip(&sigmas) {
            rng.fill_normal_f32(&mut noise, s);
            for (x, n) in sample.image.channel_mut(c).iter_mut().zip(&noise) {
                *x += *n;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// GaussianBlurTransform

/// `_round_to_nearest_odd(sigma * truncate + 0.5)`
pub fn blur_kernel_size(sigma: f64, truncate: f64) -> usize {
    let n = sigma * truncate + 0.5;
    let r = round_half_even(n) as i64;
    let k = if r.rem_euclid(2) == 1 {
        r
    } else if n - r as f64 >= 0.0 {
        r + 1
    } else {
        r - 1
    };
    k.max(1) as usize
}

/// `_build_kernel(sigma, truncate)`: normalized Gaussian on integer offsets (f32, like torch)
pub fn blur_kernel(sigma: f64, truncate: f64) -> Vec<f32> {
    let k = blur_kernel_size(sigma, truncate);
    let half = (k as f64 - 1.0) * 0.5;
    let sigma32 = sigma as f32;
    let pdf: Vec<f32> = (0..k)
        .map(|i| {
            let x = (i as f64 - half) as f32;
            (-0.5f32 * (x / sigma32).powi(2)).exp()
        })
        .collect();
    let sum: f32 = pdf.iter().sum();
    pdf.iter().map(|v| v / sum).collect()
}

/// reflect index (mirror without repeating the edge); valid for any `i` when `n > 1`
#[inline]
fn reflect(i: isize, n: isize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut j = i.rem_euclid(period);
    if j >= n {
        j = period - j;
    }
    j as usize
}

/// 1-D convolution of every line along `axis` of a `(z, y, x)` volume with reflect padding.
pub fn blur_axis(vol: &mut [f32], shape: [usize; 3], axis: usize, kernel: &[f32]) {
    let n = shape[axis];
    let stride: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let r = (kernel.len() / 2) as isize;
    let mut line = vec![0f32; n + 2 * r as usize];
    for o in 0..outer {
        for i in 0..stride {
            let base = o * n * stride + i;
            for (j, l) in line.iter_mut().enumerate() {
                *l = vol[base + reflect(j as isize - r, n as isize) * stride];
            }
            for t in 0..n {
                let mut acc = 0f32;
                for (k, w) in kernel.iter().enumerate() {
                    acc += line[t + k] * w;
                }
                vol[base + t * stride] = acc;
            }
        }
    }
}

/// `GaussianBlurTransform(blur_sigma, synchronize_channels, synchronize_axes, p_per_channel)`
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianBlurTransform {
    pub blur_sigma: RandomScalar,
    pub synchronize_channels: bool,
    pub synchronize_axes: bool,
    pub p_per_channel: f64,
    /// spatial axes of the `(z, y, x)` tensor that are blurred (3D: all; 2D data: `[1, 2]`)
    pub axes: Vec<usize>,
    /// kernel truncation in σ (6 in batchgeneratorsv2's `blur_dimension`)
    pub truncate: f64,
}

impl Transform for GaussianBlurTransform {
    fn name(&self) -> &'static str {
        "GaussianBlurTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let idx = pick_channels(sample.image.channels, self.p_per_channel, rng);
        let dims = self.axes.len();
        let draw = |rng: &mut Rng| -> Vec<f64> {
            if self.synchronize_axes {
                vec![self.blur_sigma.sample(rng); dims]
            } else {
                (0..dims).map(|_| self.blur_sigma.sample(rng)).collect()
            }
        };
        let sync = if self.synchronize_channels { Some(draw(rng)) } else { None };
        let shape = sample.image.shape;
        for &c in &idx {
            let sig = match &sync {
                Some(s) => s.clone(),
                None => draw(rng),
            };
            let vol = sample.image.channel_mut(c);
            for (&axis, &s) in self.axes.iter().zip(&sig) {
                blur_axis(vol, shape, axis, &blur_kernel(s, self.truncate));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// MultiplicativeBrightnessTransform / ContrastTransform

/// `MultiplicativeBrightnessTransform(multiplier_range, synchronize_channels, p_per_channel)`
#[derive(Clone, Debug, PartialEq)]
pub struct MultiplicativeBrightnessTransform {
    pub multiplier_range: RandomScalar,
    pub synchronize_channels: bool,
    pub p_per_channel: f64,
}

impl Transform for MultiplicativeBrightnessTransform {
    fn name(&self) -> &'static str {
        "MultiplicativeBrightnessTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let idx = pick_channels(sample.image.channels, self.p_per_channel, rng);
        let sync = if self.synchronize_channels { Some(self.multiplier_range.sample(rng)) } else { None };
        for &c in &idx {
            let m = sync.unwrap_or_else(|| self.multiplier_range.sample(rng)) as f32;
            sample.image.channel_mut(c).iter_mut().for_each(|x| *x *= m);
        }
    }
}

fn mean_f32(x: &[f32]) -> f32 {
    (x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64) as f32
}

/// unbiased standard deviation (torch `std()`)
fn std_f32(x: &[f32], mean: f32) -> f32 {
    let m = mean as f64;
    let ss: f64 = x.iter().map(|&v| (v as f64 - m).powi(2)).sum();
    (ss / (x.len() as f64 - 1.0)).sqrt() as f32
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)))
}

/// `x ← (x − mean)·m + mean`, optionally clamped to the channel's original `[min, max]`.
pub fn apply_contrast(x: &mut [f32], m: f32, preserve_range: bool) {
    let mean = mean_f32(x);
    let (mn, mx) = min_max(x);
    for v in x.iter_mut() {
        let t = (*v - mean) * m + mean;
        *v = if preserve_range { t.clamp(mn, mx) } else { t };
    }
}

/// `ContrastTransform(contrast_range, preserve_range, synchronize_channels, p_per_channel)`
#[derive(Clone, Debug, PartialEq)]
pub struct ContrastTransform {
    pub contrast_range: RandomScalar,
    pub preserve_range: bool,
    pub synchronize_channels: bool,
    pub p_per_channel: f64,
}

impl Transform for ContrastTransform {
    fn name(&self) -> &'static str {
        "ContrastTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let idx = pick_channels(sample.image.channels, self.p_per_channel, rng);
        if idx.is_empty() {
            return;
        }
        let sync = if self.synchronize_channels { Some(self.contrast_range.sample(rng)) } else { None };
        let ms: Vec<f32> = idx.iter().map(|_| sync.unwrap_or_else(|| self.contrast_range.sample(rng)) as f32).collect();
        for (&c, &m) in idx.iter().zip(&ms) {
            apply_contrast(sample.image.channel_mut(c), m, self.preserve_range);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// SimulateLowResolutionTransform

/// torch `nearest-exact` source index: `min(floor((o + 0.5) · in/out), in − 1)`
#[inline]
pub fn nearest_exact_index(o: usize, in_size: usize, out_size: usize) -> usize {
    let scale = in_size as f32 / out_size as f32;
    (((o as f64 + 0.5) * scale as f64) as f32).floor().min((in_size - 1) as f32) as usize
}

/// `interpolate(mode='nearest-exact')` of every channel of a tensor to `out_shape`.
pub fn resize_nearest_exact<T: Copy + Default>(t: &Tensor<T>, out_shape: [usize; 3]) -> Tensor<T> {
    if out_shape == t.shape {
        return t.clone();
    }
    let idx: Vec<Vec<usize>> =
        (0..3).map(|d| (0..out_shape[d]).map(|o| nearest_exact_index(o, t.shape[d], out_shape[d])).collect()).collect();
    let [_, sy, sx] = t.shape;
    let mut out = Tensor::filled(T::default(), t.channels, out_shape);
    let mut o = 0;
    for c in 0..t.channels {
        let src = t.channel(c);
        for &z in &idx[0] {
            for &y in &idx[1] {
                let row = &src[(z * sy + y) * sx..(z * sy + y + 1) * sx];
                for &x in &idx[2] {
                    out.data[o] = row[x];
                    o += 1;
                }
            }
        }
    }
    out
}

/// source index and weights of torch's linear upsampling (`align_corners=False`) for one output index
#[inline]
fn linear_src(o: usize, in_size: usize, out_size: usize) -> (usize, usize, f32, f32) {
    let scale = in_size as f32 / out_size as f32;
    let real = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
    let i0 = real as usize;
    let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
    let l1 = (real - i0 as f32).clamp(0.0, 1.0);
    (i0, i1, 1.0 - l1, l1)
}

/// `interpolate(mode='(tri)linear', align_corners=False)` of one `(z, y, x)` volume to `out_shape`.
pub fn resize_linear(src: &[f32], in_shape: [usize; 3], out_shape: [usize; 3]) -> Vec<f32> {
    let lz: Vec<_> = (0..out_shape[0]).map(|o| linear_src(o, in_shape[0], out_shape[0])).collect();
    let ly: Vec<_> = (0..out_shape[1]).map(|o| linear_src(o, in_shape[1], out_shape[1])).collect();
    let lx: Vec<_> = (0..out_shape[2]).map(|o| linear_src(o, in_shape[2], out_shape[2])).collect();
    let [_, sy, sx] = in_shape;
    let at = |z: usize, y: usize, x: usize| src[(z * sy + y) * sx + x];
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for &(z0, z1, t0, t1) in &lz {
        for &(y0, y1, h0, h1) in &ly {
            for &(x0, x1, w0, w1) in &lx {
                let v = t0 * (h0 * (w0 * at(z0, y0, x0) + w1 * at(z0, y0, x1)) + h1 * (w0 * at(z0, y1, x0) + w1 * at(z0, y1, x1)))
                    + t1 * (h0 * (w0 * at(z1, y0, x0) + w1 * at(z1, y0, x1)) + h1 * (w0 * at(z1, y1, x0) + w1 * at(z1, y1, x1)));
                out.push(v);
            }
        }
    }
    out
}

/// Downsamples one channel volume by `factors` (nearest-exact to `round(shape·f)`) and upsamples it back
/// (linear). Axes with factor 1 are untouched.
pub fn simulate_low_resolution(vol: &mut [f32], shape: [usize; 3], factors: [f64; 3]) {
    let small: [usize; 3] = std::array::from_fn(|d| (round_half_even(shape[d] as f64 * factors[d]) as usize).max(1));
    if small == shape {
        return;
    }
    let t = Tensor { data: vol.to_vec(), channels: 1, shape };
    let down = resize_nearest_exact(&t, small);
    let up = resize_linear(&down.data, small, shape);
    vol.copy_from_slice(&up);
}

/// `SimulateLowResolutionTransform(scale, synchronize_channels, synchronize_axes, ignore_axes, p_per_channel)`
#[derive(Clone, Debug, PartialEq)]
pub struct SimulateLowResolutionTransform {
    pub scale: RandomScalar,
    pub synchronize_channels: bool,
    pub synchronize_axes: bool,
    /// spatial axes of the `(z, y, x)` tensor that are resampled (others keep factor 1: 2D data and dummy-2D
    /// exclude axis 0)
    pub axes: Vec<usize>,
    pub p_per_channel: f64,
}

impl Transform for SimulateLowResolutionTransform {
    fn name(&self) -> &'static str {
        "SimulateLowResolutionTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let idx = pick_channels(sample.image.channels, self.p_per_channel, rng);
        let n = self.axes.len();
        let draw = |rng: &mut Rng| -> Vec<f64> {
            // the factor goes through a float32 tensor in batchgeneratorsv2
            let f = |v: f64| v as f32 as f64;
            if self.synchronize_axes { vec![f(self.scale.sample(rng)); n] } else { (0..n).map(|_| f(self.scale.sample(rng))).collect() }
        };
        let sync = if self.synchronize_channels { Some(draw(rng)) } else { None };
        let factors: Vec<Vec<f64>> = idx.iter().map(|_| sync.clone().unwrap_or_else(|| draw(rng))).collect();
        let shape = sample.image.shape;
        for (&c, f) in idx.iter().zip(&factors) {
            let mut fac = [1.0; 3];
            for (&a, &v) in self.axes.iter().zip(f) {
                fac[a] = v;
            }
            simulate_low_resolution(sample.image.channel_mut(c), shape, fac);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// GammaTransform

/// The gamma operation of batchgeneratorsv2's `GammaTransform` on one channel.
pub fn apply_gamma(x: &mut [f32], gamma: f32, invert: bool, retain_stats: bool) {
    if invert {
        x.iter_mut().for_each(|v| *v = -*v);
    }
    let (mean, std) = if retain_stats {
        let m = mean_f32(x);
        (m, std_f32(x, m))
    } else {
        (0.0, 0.0)
    };
    let (mn, mx) = min_max(x);
    let rnge = mx - mn;
    let denom = rnge.max(1e-7);
    for v in x.iter_mut() {
        *v = ((*v - mn) / denom).powf(gamma) * rnge + mn;
    }
    if retain_stats {
        let mh = mean_f32(x);
        let sh = std_f32(x, mh);
        let f = std / sh.max(1e-7);
        x.iter_mut().for_each(|v| *v = (*v - mh) * f + mean);
    }
    if invert {
        x.iter_mut().for_each(|v| *v = -*v);
    }
}

/// `GammaTransform(gamma, p_invert_image, synchronize_channels, p_per_channel, p_retain_stats)`
#[derive(Clone, Debug, PartialEq)]
pub struct GammaTransform {
    pub gamma: RandomScalar,
    pub p_invert_image: f64,
    pub synchronize_channels: bool,
    pub p_per_channel: f64,
    pub p_retain_stats: f64,
}

impl Transform for GammaTransform {
    fn name(&self) -> &'static str {
        "GammaTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let idx = pick_channels(sample.image.channels, self.p_per_channel, rng);
        if idx.is_empty() {
            return;
        }
        let retain: Vec<bool> = idx.iter().map(|_| rng.uniform01() < self.p_retain_stats).collect();
        let invert: Vec<bool> = idx.iter().map(|_| rng.uniform01() < self.p_invert_image).collect();
        let sync = if self.synchronize_channels { Some(self.gamma.sample(rng)) } else { None };
        let gammas: Vec<f32> = idx.iter().map(|_| sync.unwrap_or_else(|| self.gamma.sample(rng)) as f32).collect();
        for (k, &c) in idx.iter().enumerate() {
            apply_gamma(sample.image.channel_mut(c), gammas[k], invert[k], retain[k]);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// MirrorTransform

/// flips every channel of `t` along the given spatial axes (0, 1, 2 of `(z, y, x)`)
pub fn flip<T: Copy>(t: &mut Tensor<T>, axes: &[usize]) {
    let [sz, sy, sx] = t.shape;
    for c in 0..t.channels {
        let v = t.channel_mut(c);
        if axes.contains(&2) {
            v.chunks_exact_mut(sx).for_each(|row| row.reverse());
        }
        if axes.contains(&1) {
            for z in 0..sz {
                let plane = &mut v[z * sy * sx..(z + 1) * sy * sx];
                for y in 0..sy / 2 {
                    let (a, b) = plane.split_at_mut((sy - 1 - y) * sx);
                    a[y * sx..(y + 1) * sx].swap_with_slice(&mut b[..sx]);
                }
            }
        }
        if axes.contains(&0) {
            let p = sy * sx;
            for z in 0..sz / 2 {
                let (a, b) = v.split_at_mut((sz - 1 - z) * p);
                a[z * p..(z + 1) * p].swap_with_slice(&mut b[..p]);
            }
        }
    }
}

/// `MirrorTransform(allowed_axes)`: each allowed axis flipped with probability 0.5 (image and segmentation).
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorTransform {
    /// spatial axes of the `(z, y, x)` tensor (2D data: nnU-Net's axes 0, 1 are 1, 2 here)
    pub axes: Vec<usize>,
}

impl Transform for MirrorTransform {
    fn name(&self) -> &'static str {
        "MirrorTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let axes: Vec<usize> = self.axes.iter().copied().filter(|_| rng.uniform01() < 0.5).collect();
        if axes.is_empty() {
            return;
        }
        flip(&mut sample.image, &axes);
        flip(&mut sample.seg, &axes);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// MaskImageTransform / RemoveLabelTransform / ConvertSegmentationToRegionsTransform / DownsampleSegForDSTransform

/// `MaskImageTransform(apply_to_channels, channel_idx_in_seg, set_outside_to)`: image channels set to
/// `set_outside_to` where `seg[channel_idx_in_seg] < 0`.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskImageTransform {
    pub apply_to_channels: Vec<usize>,
    pub channel_idx_in_seg: usize,
    pub set_outside_to: f32,
}

impl Transform for MaskImageTransform {
    fn name(&self) -> &'static str {
        "MaskImageTransform"
    }
    fn apply(&self, sample: &mut Sample, _rng: &mut Rng) {
        let n = sample.seg.numel_spatial();
        let seg = &sample.seg.data[self.channel_idx_in_seg * n..(self.channel_idx_in_seg + 1) * n];
        for &c in &self.apply_to_channels {
            for (x, &s) in sample.image.channel_mut(c).iter_mut().zip(seg) {
                if s < 0 {
                    *x = self.set_outside_to;
                }
            }
        }
    }
}

/// `RemoveLabelTransform(label_value, set_to)` on every segmentation channel.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoveLabelTransform {
    pub label_value: i16,
    pub set_to: i16,
}

impl Transform for RemoveLabelTransform {
    fn name(&self) -> &'static str {
        "RemoveLabelTransform"
    }
    fn apply(&self, sample: &mut Sample, _rng: &mut Rng) {
        for v in sample.seg.data.iter_mut() {
            if *v == self.label_value {
                *v = self.set_to;
            }
        }
    }
}

/// `ConvertSegmentationToRegionsTransform(regions, channel_in_seg)`: one 0/1 channel per region
/// (`seg ∈ region`); nnU-Net appends the ignore label as a last one-label region.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertSegmentationToRegionsTransform {
    pub regions: Vec<Vec<i16>>,
    pub channel_in_seg: usize,
}

impl Transform for ConvertSegmentationToRegionsTransform {
    fn name(&self) -> &'static str {
        "ConvertSegmentationToRegionsTransform"
    }
    fn apply(&self, sample: &mut Sample, _rng: &mut Rng) {
        let n = sample.seg.numel_spatial();
        let src = sample.seg.channel(self.channel_in_seg);
        let mut out = Vec::with_capacity(self.regions.len() * n);
        for r in &self.regions {
            out.extend(src.iter().map(|v| r.contains(v) as i16));
        }
        sample.seg = Tensor { data: out, channels: self.regions.len(), shape: sample.seg.shape };
    }
}

/// DS target shape for a scale (`round(shape · s)` per axis, half to even)
pub fn ds_shape(shape: [usize; 3], scale: &[f64; 3]) -> [usize; 3] {
    std::array::from_fn(|d| round_half_even(shape[d] as f64 * scale[d]) as usize)
}

/// `DownsampleSegForDSTransform(ds_scales)`: one nearest-exact resized segmentation per scale, written to
/// `sample.targets` (a scale of all ones keeps the tensor).
#[derive(Clone, Debug, PartialEq)]
pub struct DownsampleSegForDSTransform {
    /// per scale, the factor of each `(z, y, x)` axis (2D data: 1 for axis 0)
    pub ds_scales: Vec<[f64; 3]>,
}

impl Transform for DownsampleSegForDSTransform {
    fn name(&self) -> &'static str {
        "DownsampleSegForDSTransform"
    }
    fn apply(&self, sample: &mut Sample, _rng: &mut Rng) {
        sample.targets = self
            .ds_scales
            .iter()
            .map(|s| {
                if s.iter().all(|&v| v == 1.0) {
                    sample.seg.clone()
                } else {
                    resize_nearest_exact(&sample.seg, ds_shape(sample.seg.shape, s))
                }
            })
            .collect();
    }
}
