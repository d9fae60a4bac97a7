//! The cascade-only transforms of nnU-Net's `get_training_transforms` / `get_validation_transforms` for a
//! configuration with a `previous_stage` (`is_cascaded`), with batchgeneratorsv2's semantics:
//!
//! * [`MoveSegAsOneHotToDataTransform`]: segmentation channel 1 (the previous stage's segmentation, cropped and
//!   augmented spatially together with the target) becomes one image channel per foreground label;
//! * [`ApplyRandomBinaryOperatorTransform`]: per one-hot channel a random dilation / erosion / closing / opening with
//!   a ball (2D data: disk) of random radius, computed like batchgeneratorsv2's FFT convolution (zero padding, `same`
//!   output, skimage's `ball` / `disk` footprints for float radii);
//! * [`RemoveRandomConnectedComponentFromOneHotEncodingTransform`]: per one-hot channel, one random connected
//!   component (full connectivity, skimage's `label` default) smaller than a fraction of the patch is erased.
//!
//! Samples are `(c, z, y, x)`; 2D data is `(c, 1, y, x)` and uses disks in the `(y, x)` plane.

use crate::rng::{RandomScalar, Rng};
use crate::tensor::{Sample, Tensor};
use crate::transforms::Transform;

// ---------------------------------------------------------------------------------------------------------------
// MoveSegAsOneHotToDataTransform

/// `MoveSegAsOneHotToDataTransform(source_channel_idx, all_labels, remove_channel_from_source)`: appends one image
/// channel per label of `all_labels` (1 where segmentation channel `source_channel_idx` equals the label, else 0) and
/// optionally removes that segmentation channel.
#[derive(Clone, Debug, PartialEq)]
pub struct MoveSegAsOneHotToDataTransform {
    pub source_channel_idx: usize,
    /// nnU-Net passes the dataset's foreground labels
    pub all_labels: Vec<i16>,
    pub remove_channel_from_source: bool,
}

impl Transform for MoveSegAsOneHotToDataTransform {
    fn name(&self) -> &'static str {
        "MoveSegAsOneHotToDataTransform"
    }
    fn apply(&self, sample: &mut Sample, _rng: &mut Rng) {
        let n = sample.seg.numel_spatial();
        let src = sample.seg.channel(self.source_channel_idx);
        let img = &mut sample.image;
        img.data.reserve(self.all_labels.len() * n);
        for &l in &self.all_labels {
            img.data.extend(src.iter().map(|&s| if s == l { 1.0f32 } else { 0.0 }));
        }
        img.channels += self.all_labels.len();
        if self.remove_channel_from_source {
            let seg = &mut sample.seg;
            let k = self.source_channel_idx;
            seg.data.drain(k * n..(k + 1) * n);
            seg.channels -= 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// structuring elements and binary morphology

/// A structuring element (footprint) `(kz, ky, kx)` in C order; disks have `kz = 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strel {
    pub shape: [usize; 3],
    pub mask: Vec<bool>,
}

/// skimage `ball(radius)` (`strict_radius=True`) for a float radius: `int(2r + 1)` points per axis on
/// `np.mgrid[-r:r:(2r+1)j]` (evenly spaced from −r to r), inside where `x² + y² + z² ≤ r²`.
pub fn ball(radius: f64) -> Strel {
    let n = 2.0 * radius + 1.0;
    let m = (n as usize).max(1);
    // numpy: (stop - start) / (size - 1), coordinates index * step + start
    let step = if m != 1 { (radius - -radius) / (m - 1) as f64 } else { 1.0 };
    let c: Vec<f64> = (0..m).map(|i| i as f64 * step + -radius).collect();
    let r2 = radius * radius;
    let mut mask = Vec::with_capacity(m * m * m);
    for z in &c {
        for y in &c {
            for x in &c {
                mask.push(x * x + y * y + z * z <= r2);
            }
        }
    }
    Strel { shape: [m; 3], mask }
}

/// skimage `disk(radius)` (`strict_radius=True`) for a float radius: `np.arange(-r, r + 1)` on both axes (numpy's
/// arange: `ceil(2r + 1)` values `-r + i·δ` with `δ = (-r + 1) - (-r)`), inside where `x² + y² ≤ r²`. Shape
/// `(1, k, k)`.
pub fn disk(radius: f64) -> Strel {
    let start = -radius;
    let stop = radius + 1.0;
    let len = ((stop - start) / 1.0).ceil().max(0.0) as usize;
    let second = start + 1.0;
    let delta = second - start;
    let l: Vec<f64> = (0..len)
        .map(|i| {
            if i == 0 {
                start
            } else if i == 1 {
                second
            } else {
                start + i as f64 * delta
            }
        })
        .collect();
    let r2 = radius * radius;
    let mut mask = Vec::with_capacity(len * len);
    for y in &l {
        for x in &l {
            mask.push(x * x + y * y <= r2);
        }
    }
    Strel { shape: [1, len, len], mask }
}

/// batchgeneratorsv2's `binary_dilation_torch` (`round(fft_conv(x, strel, padding='same')) > 0`): voxel `p` is set
/// iff some footprint element `j` has `x[p + j − ⌊(k − 1)/2⌋]` set (cross-correlation; outside the volume counts as
/// unset). `x` and the result are 0/1 bytes of a `(z, y, x)` volume.
pub fn binary_dilation(x: &[u8], shape: [usize; 3], strel: &Strel) -> Vec<u8> {
    let [nz, ny, nx] = shape;
    assert_eq!(x.len(), nz * ny * nx, "volume length does not match its shape");
    let [kz, ky, kx] = strel.shape;
    let pad = [(kz.max(1) - 1) / 2, (ky.max(1) - 1) / 2, (kx.max(1) - 1) / 2];
    // per footprint row (dz, dy): the runs [a, b] of set elements along x
    let mut rows: Vec<(usize, usize, usize, usize)> = Vec::new();
    for dz in 0..kz {
        for dy in 0..ky {
            let row = &strel.mask[(dz * ky + dy) * kx..(dz * ky + dy + 1) * kx];
            let mut a = 0;
            while a < kx {
                if !row[a] {
                    a += 1;
                    continue;
                }
                let mut b = a;
                while b + 1 < kx && row[b + 1] {
                    b += 1;
                }
                rows.push((dz, dy, a, b));
                a = b + 1;
            }
        }
    }
    let mut out = vec![0u8; x.len()];
    if rows.is_empty() || x.is_empty() {
        return out;
    }
    // prefix counts of set voxels per x line
    let lines = nz * ny;
    let mut prefix = vec![0u32; lines * (nx + 1)];
    for l in 0..lines {
        let p = &mut prefix[l * (nx + 1)..(l + 1) * (nx + 1)];
        for i in 0..nx {
            p[i + 1] = p[i] + x[l * nx + i] as u32;
        }
    }
    let mut runs: Vec<(usize, usize)> = rows.iter().map(|r| (r.2, r.3)).collect();
    runs.sort_unstable();
    runs.dedup();
    let mut run_vol = vec![0u8; x.len()];
    for (a, b) in runs {
        // run_vol[z, y, x] = any(x[z, y, x + a − px ..= x + b − px])
        for l in 0..lines {
            let p = &prefix[l * (nx + 1)..(l + 1) * (nx + 1)];
            let dst = &mut run_vol[l * nx..(l + 1) * nx];
            for (i, d) in dst.iter_mut().enumerate() {
                let lo = i as isize + a as isize - pad[2] as isize;
                let hi = (i as isize + b as isize - pad[2] as isize).min(nx as isize - 1);
                let lo = lo.max(0);
                *d = (lo <= hi && p[hi as usize + 1] > p[lo as usize]) as u8;
            }
        }
        for &(dz, dy, _, _) in rows.iter().filter(|r| (r.2, r.3) == (a, b)) {
            for z in 0..nz {
                let sz = z as isize + dz as isize - pad[0] as isize;
                if sz < 0 || sz >= nz as isize {
                    continue;
                }
                for y in 0..ny {
                    let sy = y as isize + dy as isize - pad[1] as isize;
                    if sy < 0 || sy >= ny as isize {
                        continue;
                    }
                    let src = &run_vol[(sz as usize * ny + sy as usize) * nx..][..nx];
                    let dst = &mut out[(z * ny + y) * nx..][..nx];
                    for (o, s) in dst.iter_mut().zip(src) {
                        *o |= *s;
                    }
                }
            }
        }
    }
    out
}

/// `binary_erosion_torch`: `¬dilation(¬x)` (outside the volume therefore counts as set: borders do not erode).
pub fn binary_erosion(x: &[u8], shape: [usize; 3], strel: &Strel) -> Vec<u8> {
    let inv: Vec<u8> = x.iter().map(|&v| 1 - v).collect();
    binary_dilation(&inv, shape, strel).into_iter().map(|v| 1 - v).collect()
}

/// One of batchgeneratorsv2's binary operators (`any_of_these` of `ApplyRandomBinaryOperatorTransform`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOperator {
    Dilation,
    Erosion,
    /// dilation, then erosion
    Closing,
    /// erosion, then dilation
    Opening,
}

impl BinaryOperator {
    /// nnU-Net's default set, in batchgeneratorsv2's order.
    pub const ALL: [BinaryOperator; 4] =
        [BinaryOperator::Dilation, BinaryOperator::Erosion, BinaryOperator::Closing, BinaryOperator::Opening];

    /// Applies the operator to a 0/1 `(z, y, x)` volume.
    pub fn apply(self, x: &[u8], shape: [usize; 3], strel: &Strel) -> Vec<u8> {
        match self {
            BinaryOperator::Dilation => binary_dilation(x, shape, strel),
            BinaryOperator::Erosion => binary_erosion(x, shape, strel),
            BinaryOperator::Closing => binary_erosion(&binary_dilation(x, shape, strel), shape, strel),
            BinaryOperator::Opening => binary_dilation(&binary_erosion(x, shape, strel), shape, strel),
        }
    }
}

/// Resolves Python-style channel indices (negative = from the end) against `channels`.
fn resolve(idx: isize, channels: usize) -> usize {
    let c = if idx < 0 { channels as isize + idx } else { idx };
    assert!(c >= 0 && (c as usize) < channels, "channel index {idx} out of range for {channels} channels");
    c as usize
}

/// A random permutation of `v` (`np.random.shuffle`) and its entries kept with probability `p` each
/// (`torch.rand(n) < p`), in permuted order.
fn shuffled_subset(v: &[isize], p: f64, rng: &mut Rng) -> Vec<isize> {
    let mut order = v.to_vec();
    for i in (1..order.len()).rev() {
        let j = rng.choice(i + 1);
        order.swap(i, j);
    }
    let keep: Vec<bool> = order.iter().map(|_| rng.uniform01() < p).collect();
    order.iter().zip(&keep).filter(|(_, k)| **k).map(|(c, _)| *c).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// ApplyRandomBinaryOperatorTransform

/// `ApplyRandomBinaryOperatorTransform(channel_idx, any_of_these, strel_size, p_per_label)`: the channels are
/// visited in random order, each with probability `p_per_label`; a visited channel gets a random operator with a ball
/// (2D data: disk) of radius `strel_size`; voxels it adds are cleared in the other channels of `channel_idx`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyRandomBinaryOperatorTransform {
    /// image channels (negative: from the end, as nnU-Net's `list(range(-len(foreground_labels), 0))`)
    pub channel_idx: Vec<isize>,
    pub operators: Vec<BinaryOperator>,
    pub strel_size: RandomScalar,
    pub p_per_label: f64,
    /// 2D data (`(c, 1, y, x)`): disks instead of balls
    pub two_d: bool,
}

impl ApplyRandomBinaryOperatorTransform {
    /// nnU-Net's cascade setting: the last `num_labels` channels, all four operators, radius `U(1, 8)`, 0.5 per label.
    pub fn nnunet(num_labels: usize, two_d: bool) -> Self {
        ApplyRandomBinaryOperatorTransform {
            channel_idx: (-(num_labels as isize)..0).collect(),
            operators: BinaryOperator::ALL.to_vec(),
            strel_size: RandomScalar::Uniform(1.0, 8.0),
            p_per_label: 0.5,
            two_d,
        }
    }

    /// `_apply_to_image` with drawn parameters: `(channel, operator, radius)` in application order.
    pub fn apply_with(&self, image: &mut Tensor<f32>, params: &[(isize, BinaryOperator, f64)]) {
        let shape = image.shape;
        let others: Vec<usize> = self.channel_idx.iter().map(|&c| resolve(c, image.channels)).collect();
        for &(a, op, s) in params {
            let a = resolve(a, image.channels);
            let work: Vec<u8> = image.channel(a).iter().map(|&v| (v != 0.0) as u8).collect();
            let strel = if self.two_d { disk(s) } else { ball(s) };
            let result = op.apply(&work, shape, &strel);
            for &oc in others.iter().filter(|&&oc| oc != a) {
                let ch = image.channel_mut(oc);
                for ((v, &r), &w) in ch.iter_mut().zip(&result).zip(&work) {
                    if r == 1 && w == 0 {
                        *v = 0.0;
                    }
                }
            }
            for (v, &r) in image.channel_mut(a).iter_mut().zip(&result) {
                *v = r as f32;
            }
        }
    }

    /// `get_parameters`: channels in random order kept with `p_per_label`, then one operator and one radius each.
    pub fn draw(&self, rng: &mut Rng) -> Vec<(isize, BinaryOperator, f64)> {
        let picked = shuffled_subset(&self.channel_idx, self.p_per_label, rng);
        let ops: Vec<BinaryOperator> = picked.iter().map(|_| self.operators[rng.choice(self.operators.len())]).collect();
        let sizes: Vec<f64> = picked.iter().map(|_| self.strel_size.sample(rng)).collect();
        picked.into_iter().zip(ops).zip(sizes).map(|((c, o), s)| (c, o, s)).collect()
    }
}

impl Transform for ApplyRandomBinaryOperatorTransform {
    fn name(&self) -> &'static str {
        "ApplyRandomBinaryOperatorTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        if self.operators.is_empty() {
            return;
        }
        let params = self.draw(rng);
        self.apply_with(&mut sample.image, &params);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// connected components / RemoveRandomConnectedComponentFromOneHotEncodingTransform

pub use nnunet_data::components::label_components;

/// `RemoveRandomConnectedComponentFromOneHotEncodingTransform(channel_idx, fill_with_other_class_p,
/// dont_do_if_covers_more_than_x_percent, p_per_label)`: the channels are visited in random order, each with
/// probability `p_per_label`; one component of a visited channel, chosen uniformly among those with fewer than
/// `dont_do_if_covers_more_than_x_percent` × (voxels of the patch) voxels, is cleared (and with probability
/// `fill_with_other_class_p` set in another random channel of `channel_idx`).
#[derive(Clone, Debug, PartialEq)]
pub struct RemoveRandomConnectedComponentFromOneHotEncodingTransform {
    /// image channels (negative: from the end)
    pub channel_idx: Vec<isize>,
    pub fill_with_other_class_p: f64,
    /// a fraction (nnU-Net: 0.15), despite the name
    pub dont_do_if_covers_more_than_x_percent: f64,
    pub p_per_label: f64,
}

impl RemoveRandomConnectedComponentFromOneHotEncodingTransform {
    /// nnU-Net's cascade setting: the last `num_labels` channels, no refill, components < 15 %, 0.5 per label.
    pub fn nnunet(num_labels: usize) -> Self {
        RemoveRandomConnectedComponentFromOneHotEncodingTransform {
            channel_idx: (-(num_labels as isize)..0).collect(),
            fill_with_other_class_p: 0.0,
            dont_do_if_covers_more_than_x_percent: 0.15,
            p_per_label: 0.5,
        }
    }

    /// Components of channel `c` of `image` that may be removed (labels as in [`label_components`]).
    pub fn removable_components(&self, image: &Tensor<f32>, c: usize) -> (Vec<u32>, Vec<u32>) {
        let work: Vec<u8> = image.channel(c).iter().map(|&v| (v != 0.0) as u8).collect();
        let (lab, sizes) = label_components(&work, image.shape);
        let limit = image.numel_spatial() as f64 * self.dont_do_if_covers_more_than_x_percent;
        let valid = sizes.iter().enumerate().filter(|(_, s)| (**s as f64) < limit).map(|(i, _)| i as u32 + 1).collect();
        (lab, valid)
    }
}

impl RemoveRandomConnectedComponentFromOneHotEncodingTransform {
    /// `_apply_to_image` for the drawn channels (`apply_to_channels`, in order): the random parts (component, refill)
    /// are drawn from `rng`.
    pub fn apply_to_channels(&self, img: &mut Tensor<f32>, apply_to_channels: &[isize], rng: &mut Rng) {
        for &a in apply_to_channels {
            let a = resolve(a, img.channels);
            if img.channel(a).iter().all(|&v| v == 0.0) {
                continue;
            }
            let (lab, valid) = self.removable_components(img, a);
            if valid.is_empty() {
                continue;
            }
            let comp = valid[rng.choice(valid.len())];
            for (v, &l) in img.channel_mut(a).iter_mut().zip(&lab) {
                if l == comp {
                    *v = 0.0;
                }
            }
            if rng.uniform01() < self.fill_with_other_class_p {
                let other: Vec<usize> = self.channel_idx.iter().map(|&c| resolve(c, img.channels)).filter(|&c| c != a).collect();
                if !other.is_empty() {
                    let oc = other[rng.choice(other.len())];
                    for (v, &l) in img.channel_mut(oc).iter_mut().zip(&lab) {
                        if l == comp {
                            *v = 1.0;
                        }
                    }
                }
            }
        }
    }
}

impl Transform for RemoveRandomConnectedComponentFromOneHotEncodingTransform {
    fn name(&self) -> &'static str {
        "RemoveRandomConnectedComponentFromOneHotEncodingTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let picked = shuffled_subset(&self.channel_idx, self.p_per_label, rng);
        self.apply_to_channels(&mut sample.image, &picked, rng);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// wiring into the pipelines

/// The cascade part of `get_training_transforms` (after `RemoveLabelTransform`): the previous stage's segmentation
/// (segmentation channel 1) moved to the image as one-hot `foreground_labels`, then `RandomTransform(
/// ApplyRandomBinaryOperatorTransform, 0.4)` and `RandomTransform(RemoveRandomConnectedComponentFrom…, 0.2)`.
pub fn push_training_transforms(t: &mut crate::Pipeline, foreground_labels: &[i16], two_d: bool) {
    push_validation_transforms(t, foreground_labels);
    let n = foreground_labels.len();
    t.push(crate::transforms::RandomApply::new(0.4, ApplyRandomBinaryOperatorTransform::nnunet(n, two_d)));
    t.push(crate::transforms::RandomApply::new(0.2, RemoveRandomConnectedComponentFromOneHotEncodingTransform::nnunet(n)));
}

/// The cascade part of `get_validation_transforms`: only the one-hot move.
pub fn push_validation_transforms(t: &mut crate::Pipeline, foreground_labels: &[i16]) {
    t.push(MoveSegAsOneHotToDataTransform {
        source_channel_idx: 1,
        all_labels: foreground_labels.to_vec(),
        remove_channel_from_source: true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ball_and_disk_sizes_follow_skimage() {
        assert_eq!(ball(1.0).shape, [3, 3, 3]);
        assert_eq!(ball(1.0).mask.iter().filter(|&&b| b).count(), 7);
        assert_eq!(ball(1.5).shape, [4, 4, 4]);
        assert_eq!(ball(7.9).shape, [16, 16, 16]);
        assert_eq!(disk(1.0).shape, [1, 3, 3]);
        assert_eq!(disk(1.3).shape, [1, 4, 4]);
    }

    #[test]
    fn dilation_of_a_point_is_the_footprint() {
        let shape = [7, 7, 7];
        let mut x = vec![0u8; 343];
        x[(3 * 7 + 3) * 7 + 3] = 1;
        let s = ball(2.0);
        let d = binary_dilation(&x, shape, &s);
        // the footprint is symmetric and odd: the dilated point equals it, centred
        for z in 0..5 {
            for y in 0..5 {
                for xx in 0..5 {
                    assert_eq!(d[((z + 1) * 7 + y + 1) * 7 + xx + 1] == 1, s.mask[(z * 5 + y) * 5 + xx]);
                }
            }
        }
        assert_eq!(d.iter().map(|&v| v as usize).sum::<usize>(), s.mask.iter().filter(|&&b| b).count());
        // erosion of the dilation gives the point back; borders do not erode
        assert_eq!(binary_erosion(&d, shape, &s), x);
        assert_eq!(binary_erosion(&[1u8; 343], shape, &s), vec![1u8; 343]);
    }

    #[test]
    fn components_use_full_connectivity() {
        // two voxels touching at a corner are one component; a separate one is another
        let shape = [3, 3, 5];
        let at = |z: usize, y: usize, x: usize| (z * 3 + y) * 5 + x;
        let mut x = vec![0u8; 45];
        for (z, y, xx) in [(0, 0, 0), (1, 1, 1), (2, 2, 2), (0, 0, 4)] {
            x[at(z, y, xx)] = 1;
        }
        let (lab, sizes) = label_components(&x, shape);
        assert_eq!(sizes, vec![3, 1]);
        assert_eq!((lab[at(0, 0, 0)], lab[at(0, 0, 4)], lab[at(1, 1, 1)], lab[at(2, 2, 2)]), (1, 2, 1, 1));
    }

    #[test]
    fn one_hot_moves_to_the_image() {
        let shape = [1, 2, 2];
        let img = Tensor::new(vec![0.5; 4], 1, shape);
        let seg = Tensor::new(vec![0, 1, 2, 0, /* prev */ 2, 0, 1, 3], 2, shape);
        let mut s = Sample::new(img, seg);
        MoveSegAsOneHotToDataTransform { source_channel_idx: 1, all_labels: vec![1, 2], remove_channel_from_source: true }
            .apply(&mut s, &mut Rng::new(0));
        assert_eq!(s.image.channels, 3);
        assert_eq!(s.image.data, vec![0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!((s.seg.channels, s.seg.data.clone()), (1, vec![0, 1, 2, 0]));
    }
}
