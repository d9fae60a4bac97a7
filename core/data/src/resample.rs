//! nnU-Net's resampling (planning spec §7.3): `resample_data_or_seg_to_shape` with separate-z handling,
//! skimage's `resize(mode='edge', anti_aliasing=False, clip=True)` and batchgenerators'
//! `resize_segmentation`.
//!
//! `skimage.transform.resize` is `scipy.ndimage.zoom(x, out/in, order, mode='nearest', grid_mode=True)`
//! followed by clipping to the input's `[min, max]`. scipy evaluates, for output index `k` along an axis,
//! the B-spline of degree `order` at input coordinate `(k + 0.5)·(in/out) − 0.5`; for `order ≥ 2` the
//! input is first padded by 12 edge values per side and prefiltered (B-spline coefficients, reflect
//! boundary initialisation); taps past the (padded) edge are clamped. The tensor-product spline is
//! separable, so it is computed here as one 1-D pass per axis (pad, prefilter, interpolate each line):
//! mathematically the same operator, equal to scipy up to floating-point summation order.
//!
//! Segmentations (order ≥ 1) follow the batchgenerators of the nnU-Net 2.8.1 reference environment: per-label
//! indicators are interpolated and the voxel takes the arg-max label, exact ties going to the nearest-neighbour
//! label (the spec's older `indicator >= 0.5` rule differs on ~0.001 % of voxels).

/// Number of edge values scipy pads per side before the spline prefilter (`_prepad_for_spline_filter`).
const NPAD: usize = 12;

/// `compute_new_shape`: `int(round(old_spacing / new_spacing * old_shape))` per axis (ties to even).
pub fn compute_new_shape(old_shape: &[usize], old_spacing: &[f64], new_spacing: &[f64]) -> Vec<usize> {
    old_shape.iter().zip(old_spacing).zip(new_spacing).map(|((&k, &i), &j)| (i / j * k as f64).round_ties_even() as usize).collect()
}

/// Options of `resample_data_or_seg_to_shape` (the plans' `resampling_fn_*_kwargs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResampleOptions {
    pub is_seg: bool,
    pub order: usize,
    pub order_z: usize,
    pub force_separate_z: Option<bool>,
    pub separate_z_anisotropy_threshold: f64,
}

impl Default for ResampleOptions {
    fn default() -> Self {
        Self { is_seg: false, order: 3, order_z: 0, force_separate_z: None, separate_z_anisotropy_threshold: 3.0 }
    }
}

fn max_of(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// `get_lowres_axis`: indices where `max(sp) / sp == 1`.
fn lowres_axes(sp: &[f64]) -> Vec<usize> {
    let m = max_of(sp);
    (0..sp.len()).filter(|&i| m / sp[i] == 1.0).collect()
}

fn anisotropic(sp: &[f64], threshold: f64) -> bool {
    let mn = sp.iter().copied().fold(f64::INFINITY, f64::min);
    max_of(sp) / mn > threshold
}

/// `determine_do_sep_z_and_axis`: `Some(axis)` when resampling separately along `axis`.
pub fn separate_z_axis(force_separate_z: Option<bool>, current_spacing: &[f64], new_spacing: &[f64], threshold: f64) -> Option<usize> {
    let axes = match force_separate_z {
        Some(true) => lowres_axes(current_spacing),
        Some(false) => return None,
        None if anisotropic(current_spacing, threshold) => lowres_axes(current_spacing),
        None if anisotropic(new_spacing, threshold) => lowres_axes(new_spacing),
        None => return None,
    };
    if axes.len() == 1 { Some(axes[0]) } else { None }
}

/// Filter poles of the B-spline prefilter (`get_filter_poles`).
#[allow(clippy::excessive_precision)] // exact decimal values of the closed-form poles, as scipy's ni_splines.c lists them
fn poles(order: usize) -> &'static [f64] {
    match order {
        2 => &[-0.171_572_875_253_809_9],
        3 => &[-0.267_949_192_431_122_7],
        4 => &[-0.361_341_225_900_220_17, -0.013_725_429_297_339_121],
        5 => &[-0.430_575_347_099_973_8, -0.043_096_288_203_264_654],
        _ => &[],
    }
}

/// scipy's `get_spline_interpolation_weights(x, order)`.
fn spline_weights(x: f64, order: usize, w: &mut [f64]) {
    let x = x - if order & 1 == 1 { x.floor() } else { (x + 0.5).floor() };
    let mut y = x;
    let mut z = 1.0 - x;
    match order {
        0 => {}
        1 => w[0] = 1.0 - x,
        2 => {
            w[1] = 0.75 - x * x;
            let y = 0.5 - x;
            w[0] = 0.5 * y * y;
        }
        3 => {
            w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
            w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
            w[0] = z * z * z / 6.0;
        }
        4 => {
            let t = x * x;
            w[2] = t * (t * 0.25 - 0.625) + 115.0 / 192.0;
            y = 1.0 + x;
            w[1] = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
            w[3] = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
            let y = 0.5 - x;
            let t = y * y;
            w[0] = t * t / 24.0;
        }
        5 => {
            let t = y * y;
            w[2] = t * (t * (0.25 - y / 12.0) - 0.5) + 0.55;
            let t = z * z;
            w[3] = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55;
            y += 1.0;
            w[1] = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
            z += 1.0;
            w[4] = z * (z * (z * (z * (z / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
            let y = 1.0 - x;
            let t = y * y;
            w[0] = y * t * t / 120.0;
        }
        _ => unreachable!("spline order > 5"),
    }
    w[order] = 1.0;
    for i in 0..order {
        w[order] -= w[i];
    }
}

/// In-place B-spline prefilter of one line (`apply_filter` with `NI_EXTEND_NEAREST`, i.e. the
/// reflect initialisation). Lines of length 1 are left alone like scipy does.
fn spline_prefilter(c: &mut [f64], order: usize) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let ps = poles(order);
    let mut gain = 1.0;
    for &z in ps {
        gain *= (1.0 - z) * (1.0 - 1.0 / z);
    }
    for v in c.iter_mut() {
        *v *= gain;
    }
    for &z in ps {
        // _init_causal_reflect
        let z_n = z.powi(n as i32);
        let c0 = c[0];
        let mut zi = z;
        c[0] += z_n * c[n - 1];
        for i in 1..n {
            c[0] += zi * (c[i] + z_n * c[n - 1 - i]);
            zi *= z;
        }
        c[0] *= z / (1.0 - z_n * z_n);
        c[0] += c0;
        for i in 1..n {
            c[i] += z * c[i - 1];
        }
        // _init_anticausal_reflect
        c[n - 1] *= z / (z - 1.0);
        for i in (0..n - 1).rev() {
            c[i] = z * (c[i + 1] - c[i]);
        }
    }
}

/// Precomputed taps and weights of a 1-D zoom from `n_in` to `n_out` samples.
#[derive(Debug, Clone)]
struct AxisPlan {
    order: usize,
    n_in: usize,
    /// Edge padding applied to each line before prefiltering (0 for orders 0 and 1).
    pad: usize,
    /// `n_out × (order + 1)` indices into the padded line.
    taps: Vec<usize>,
    weights: Vec<f64>,
}

impl AxisPlan {
    /// `zoom` is the factor scipy uses (`in/out` for resize, `old/new` for map_coordinates).
    fn new(n_in: usize, n_out: usize, order: usize) -> Self {
        assert!(order <= 5, "spline order must be 0..=5");
        assert!(n_in > 0, "cannot resample an empty axis");
        let zoom = n_in as f64 / n_out as f64;
        let pad = if order > 1 { NPAD } else { 0 };
        let len = (n_in + 2 * pad) as i64;
        let k = order + 1;
        let mut taps = Vec::with_capacity(n_out * k);
        let mut weights = vec![0.0; n_out * k];
        for o in 0..n_out {
            let cc = (o as f64 + 0.5) * zoom - 0.5 + pad as f64;
            let start = if order & 1 == 1 { cc.floor() as i64 } else { (cc + 0.5).floor() as i64 } - (order / 2) as i64;
            for t in 0..k as i64 {
                taps.push((start + t).clamp(0, len - 1) as usize);
            }
            if order > 0 {
                spline_weights(cc, order, &mut weights[o * k..(o + 1) * k]);
            } else {
                weights[o] = 1.0;
            }
        }
        Self { order, n_in, pad, taps, weights }
    }

    fn n_out(&self) -> usize {
        self.taps.len() / (self.order + 1)
    }

    /// Resample one line. `buf` is scratch space (reused between calls).
    #[inline]
    fn apply(&self, line: &[f64], out: &mut [f64], buf: &mut Vec<f64>) {
        let k = self.order + 1;
        let src: &[f64] = if self.pad > 0 {
            buf.clear();
            buf.extend(std::iter::repeat_n(line[0], self.pad));
            buf.extend_from_slice(line);
            buf.extend(std::iter::repeat_n(line[self.n_in - 1], self.pad));
            spline_prefilter(buf, self.order);
            buf
        } else {
            line
        };
        if k == 1 {
            for (o, &t) in out.iter_mut().zip(&self.taps) {
                *o = src[t];
            }
            return;
        }
        for (o, (taps, w)) in out.iter_mut().zip(self.taps.chunks_exact(k).zip(self.weights.chunks_exact(k))) {
            let mut acc = 0.0;
            for (&t, &w) in taps.iter().zip(w) {
                acc += src[t] * w;
            }
            *o = acc;
        }
    }
}

/// Resample a C-contiguous array of `shape` along `axis` to `n_out` samples with spline `order`
/// (scipy semantics, mode 'nearest', pixel-centre alignment). Returns the new array.
pub fn resample_axis(data: &[f64], shape: &[usize], axis: usize, n_out: usize, order: usize) -> Vec<f64> {
    let n_in = shape[axis];
    assert_eq!(data.len(), shape.iter().product::<usize>());
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let plan = AxisPlan::new(n_in, n_out, order);
    let mut out = vec![0.0; outer * n_out * inner];
    let mut buf = Vec::with_capacity(n_in + 2 * NPAD);
    if inner == 1 {
        for (src, dst) in data.chunks_exact(n_in).zip(out.chunks_exact_mut(n_out)) {
            plan.apply(src, dst, &mut buf);
        }
        return out;
    }
    let mut line = vec![0.0; n_in];
    let mut res = vec![0.0; n_out];
    for o in 0..outer {
        let sbase = o * n_in * inner;
        let dbase = o * n_out * inner;
        for i in 0..inner {
            for (j, l) in line.iter_mut().enumerate() {
                *l = data[sbase + j * inner + i];
            }
            plan.apply(&line, &mut res, &mut buf);
            for (j, &r) in res.iter().enumerate() {
                out[dbase + j * inner + i] = r;
            }
        }
    }
    debug_assert_eq!(plan.n_out(), n_out);
    out
}

fn min_max(a: &[f64]) -> (f64, f64) {
    a.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Zoom along every axis whose size changes (no clipping). Axes that keep their size are not touched
/// (scipy evaluates them at integer positions, which reproduces the input).
fn zoom_axes(data: Vec<f64>, shape: &[usize], new_shape: &[usize], order: usize, skip_axis: Option<usize>) -> Vec<f64> {
    let mut cur = data;
    let mut cur_shape = shape.to_vec();
    for a in 0..shape.len() {
        if Some(a) == skip_axis || cur_shape[a] == new_shape[a] {
            continue;
        }
        cur = resample_axis(&cur, &cur_shape, a, new_shape[a], order);
        cur_shape[a] = new_shape[a];
    }
    cur
}

/// `skimage.transform.resize(x, new_shape, order, mode='edge', anti_aliasing=False, clip=True)` for a
/// float64 array (any rank ≥ 1), C order.
pub fn resize(data: &[f64], shape: &[usize], new_shape: &[usize], order: usize) -> Vec<f64> {
    assert_eq!(shape.len(), new_shape.len());
    if shape == new_shape {
        return data.to_vec();
    }
    let mut out = zoom_axes(data.to_vec(), shape, new_shape, order, None);
    let (lo, hi) = min_max(data);
    for v in &mut out {
        *v = v.clamp(lo, hi);
    }
    out
}

/// Sorted unique values (NaN-free input).
fn unique_sorted(a: &[f64]) -> Vec<f64> {
    let mut u: Vec<f64> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for &v in a {
        if seen.insert(v.to_bits()) {
            u.push(v);
        }
    }
    u.sort_by(f64::total_cmp);
    u
}

/// batchgenerators' `_resample_seg_by_argmax` with `seg_tiebreak='nearest'`: every label's indicator is
/// interpolated (`score(label)`), the per-voxel winner is the label with the largest score (strictly
/// larger: ties keep the earlier, smaller label), except where the nearest-neighbour label `nn` shares
/// the top score — then the nearest-neighbour label wins. `labels` ascending.
fn seg_by_argmax(labels: &[f64], score: impl Fn(f64) -> Vec<f64>, nn: &[f64]) -> Vec<f64> {
    let n = nn.len();
    if labels.len() == 1 {
        return vec![labels[0]; n];
    }
    let last = labels.len() - 1;
    // index of the nearest-neighbour label (-1 if not a label)
    let nn_idx: Vec<i32> = nn
        .iter()
        .map(|v| {
            let i = labels.partition_point(|l| l < v).min(last);
            if labels[i] == *v { i as i32 } else { -1 }
        })
        .collect();
    let mut win = vec![0i32; n];
    let mut best = score(labels[0]);
    let mut nn_top: Vec<bool> = nn_idx.iter().zip(&best).map(|(&k, &b)| k == 0 && b > 0.0).collect();
    for (i, &label) in labels.iter().enumerate().skip(1) {
        let sc = score(label);
        let i = i as i32;
        for v in 0..n {
            let is_nn = nn_idx[v] == i;
            let s = sc[v];
            if is_nn && s == best[v] && s > 0.0 {
                nn_top[v] = true;
            }
            if s > best[v] {
                nn_top[v] = is_nn;
                win[v] = i;
                best[v] = s;
            }
        }
    }
    (0..n).map(|v| if nn_top[v] { labels[nn_idx[v] as usize] } else { labels[win[v] as usize] }).collect()
}

fn indicator(seg: &[f64], label: f64) -> Vec<f64> {
    seg.iter().map(|&s| if s == label { 1.0 } else { 0.0 }).collect()
}

/// batchgenerators' `resize_segmentation(seg, new_shape, order)` (the version shipped with the nnU-Net
/// 2.8.1 reference environment): order 0 is a plain nearest resize; otherwise each unique value
/// (ascending, including `-1`) is resized as a float indicator (mode edge, clip) and the voxel takes the
/// label with the largest indicator, exact ties settled by the nearest-neighbour label
/// ([`seg_by_argmax`]). Older batchgenerators assigned `label where indicator >= 0.5` instead.
pub fn resize_segmentation(seg: &[f64], shape: &[usize], new_shape: &[usize], order: usize) -> Vec<f64> {
    if order == 0 || seg.is_empty() {
        return resize(seg, shape, new_shape, 0);
    }
    let nn = resize(seg, shape, new_shape, 0);
    seg_by_argmax(&unique_sorted(seg), |l| resize(&indicator(seg, l), shape, new_shape, order), &nn)
}

/// Per-slice clipping along `axis` to each input slice's `[min, max]` (skimage clips each 2-D resize).
fn clip_per_slice(out: &mut [f64], out_shape: &[usize; 3], input: &[f64], in_shape: &[usize; 3], axis: usize) {
    let n_sl = in_shape[axis];
    let mut lo = vec![f64::INFINITY; n_sl];
    let mut hi = vec![f64::NEG_INFINITY; n_sl];
    let idx_of = |shape: &[usize; 3], i: usize| -> usize {
        match axis {
            0 => i / (shape[1] * shape[2]),
            1 => (i / shape[2]) % shape[1],
            _ => i % shape[2],
        }
    };
    for (i, &v) in input.iter().enumerate() {
        let s = idx_of(in_shape, i);
        lo[s] = lo[s].min(v);
        hi[s] = hi[s].max(v);
    }
    for (i, v) in out.iter_mut().enumerate() {
        let s = idx_of(out_shape, i);
        *v = v.clamp(lo[s], hi[s]);
    }
}

/// In-plane resize of every slice along `axis` (order `order`, per-slice clip), as nnU-Net's
/// separate-z loop does with `resize` (data) — shape along `axis` unchanged.
fn resize_slices(data: &[f64], shape: [usize; 3], new_shape: [usize; 3], axis: usize, order: usize) -> Vec<f64> {
    let mut tmp = new_shape;
    tmp[axis] = shape[axis];
    if tmp == shape {
        return data.to_vec();
    }
    let mut out = zoom_axes(data.to_vec(), &shape, &tmp, order, Some(axis));
    clip_per_slice(&mut out, &tmp, data, &shape, axis);
    out
}

/// Round half to even, like `np.round`.
fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// One channel of `resample_data_or_seg`. Input/output f64, C order `(d0, d1, d2)`.
fn resample_channel(
    x: &[f64],
    shape: [usize; 3],
    new_shape: [usize; 3],
    is_seg: bool,
    axis: Option<usize>,
    order: usize,
    order_z: usize,
) -> Vec<f64> {
    let Some(a) = axis else {
        return if is_seg { resize_segmentation(x, &shape, &new_shape, order) } else { resize(x, &shape, &new_shape, order) };
    };
    let mut tmp = new_shape;
    tmp[a] = shape[a];
    let here = if is_seg {
        if tmp == shape {
            x.to_vec()
        } else {
            // nnU-Net resizes slice by slice with per-slice unique labels; on the whole stack a label
            // absent from a slice scores 0 there and never wins or ties, so the result is the same
            let nn = resize_slices(x, shape, new_shape, a, 0);
            seg_by_argmax(&unique_sorted(x), |l| resize_slices(&indicator(x, l), shape, new_shape, a, order), &nn)
        }
    } else {
        resize_slices(x, shape, new_shape, a, order)
    };
    if shape[a] == new_shape[a] {
        return here;
    }
    if !is_seg || order_z == 0 {
        return resample_axis(&here, &tmp, a, new_shape[a], order_z);
    }
    let n: usize = new_shape.iter().product();
    let mut out = vec![0.0; n];
    let mut mask = vec![0.0; here.len()];
    for label in unique_sorted(&here) {
        for (m, &s) in mask.iter_mut().zip(&here) {
            *m = if s == label { 1.0 } else { 0.0 };
        }
        let r = resample_axis(&mask, &tmp, a, new_shape[a], order_z);
        for (o, &v) in out.iter_mut().zip(&r) {
            if np_round(v) > 0.5 {
                *o = label;
            }
        }
    }
    out
}

/// nnU-Net's `resample_data_or_seg_to_shape(data, new_shape, current_spacing, new_spacing, **opts)` for a
/// `(channels, d0, d1, d2)` float32 array. Returns the input unchanged when the shape does not change;
/// otherwise computes in float64 and rounds the result to float32 (labels are exact either way).
pub fn resample_data_or_seg_to_shape(
    data: &[f32],
    channels: usize,
    shape: [usize; 3],
    new_shape: [usize; 3],
    current_spacing: &[f64],
    new_spacing: &[f64],
    opts: &ResampleOptions,
) -> Vec<f32> {
    resample_data_or_seg_to_shape_as(data, channels, shape, new_shape, current_spacing, new_spacing, opts, |v| v as f32)
}

/// [`resample_data_or_seg_to_shape`] with the float64 results rounded by `round` (nnU-Net's output keeps the
/// input's dtype: float16 for the logits of its predictor).
#[allow(clippy::too_many_arguments)]
pub fn resample_data_or_seg_to_shape_as(
    data: &[f32],
    channels: usize,
    shape: [usize; 3],
    new_shape: [usize; 3],
    current_spacing: &[f64],
    new_spacing: &[f64],
    opts: &ResampleOptions,
    round: fn(f64) -> f32,
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    assert_eq!(data.len(), channels * n, "data length does not match channels × shape");
    if shape == new_shape {
        return data.to_vec();
    }
    let axis = separate_z_axis(opts.force_separate_z, current_spacing, new_spacing, opts.separate_z_anisotropy_threshold);
    let mut out = Vec::with_capacity(channels * new_shape.iter().product::<usize>());
    for c in 0..channels {
        let x: Vec<f64> = data[c * n..(c + 1) * n].iter().map(|&v| v as f64).collect();
        let r = resample_channel(&x, shape, new_shape, opts.is_seg, axis, opts.order, opts.order_z);
        out.extend(r.iter().map(|&v| round(v)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_shape_rounds_half_to_even() {
        assert_eq!(compute_new_shape(&[5, 3], &[1.0, 1.0], &[2.0, 2.0]), vec![2, 2]);
        assert_eq!(compute_new_shape(&[34, 10], &[5.0, 1.0], &[2.5, 1.0]), vec![68, 10]);
    }

    #[test]
    fn separate_z_decision() {
        assert_eq!(separate_z_axis(None, &[5.0, 0.8, 0.8], &[2.5, 0.8, 0.8], 3.0), Some(0));
        assert_eq!(separate_z_axis(None, &[1.0, 1.0, 1.0], &[1.0, 1.0, 4.0], 3.0), Some(2));
        assert_eq!(separate_z_axis(None, &[1.0, 1.0, 1.0], &[1.0, 1.0, 2.0], 3.0), None);
        // two low-resolution axes: no separate z
        assert_eq!(separate_z_axis(None, &[0.24, 1.25, 1.25], &[1.0, 1.0, 1.0], 3.0), None);
        assert_eq!(separate_z_axis(Some(false), &[5.0, 0.8, 0.8], &[2.5, 0.8, 0.8], 3.0), None);
        assert_eq!(separate_z_axis(Some(true), &[1.0, 1.0, 1.2], &[1.0, 1.0, 1.0], 3.0), Some(2));
    }

    #[test]
    fn weights_sum_to_one() {
        let mut w = [0.0; 6];
        for order in 1..=5 {
            for x in [0.0, 0.25, 0.5, 3.7, -1.3] {
                spline_weights(x, order, &mut w);
                let s: f64 = w[..=order].iter().sum();
                assert!((s - 1.0).abs() < 1e-12);
            }
        }
    }
}
