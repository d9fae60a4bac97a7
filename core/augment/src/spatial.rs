//! batchgeneratorsv2 `SpatialTransform` as nnU-Net configures it: rotation + scaling about the patch center, then a
//! crop to the final patch; no elastic deformation. Image: (tri/bi)linear `grid_sample` (zeros padding,
//! `align_corners=False`). Segmentation: `border_mode_seg='constant'`, `padding_value_seg=-1`: the segmentation is
//! padded with the label −1 and every label's one-hot mask (×1000) is interpolated linearly, rounded to float16,
//! the per-voxel argmax taken (ties → lowest label), and voxels whose top score is shared by the nearest neighbour's
//! label take the nearest neighbour (`seg_tiebreak='nearest'`, batchgeneratorsv2 ≥ 0.3.6).

use crate::rng::{RandomScalar, Rng};
use crate::sampler::crop_and_pad;
use crate::tensor::{Sample, Tensor, round_to_f16};
use crate::transforms::Transform;

/// Which axes the spatial transform acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpatialDims {
    /// full 3D transform of `(z, y, x)`
    Three,
    /// in-plane transform of `(y, x)`, identical for every index of axis 0 (2D configurations, where axis 0 has
    /// size 1, and dummy-2D augmentation, where nnU-Net folds axis 0 into the channels)
    Two,
}

/// How voxels with a shared top score are settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegTiebreak {
    /// nearest neighbour's label when it is one of the tied labels (batchgeneratorsv2 ≥ 0.3.6 default)
    Nearest,
    /// the lowest tied label (plain argmax)
    Lowest,
}

/// Parameters drawn for one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpatialParams {
    /// rotation angles (radians) about axis 0, 1, 2 (3D); 2D uses `angles[2]` only
    pub angles: [f64; 3],
    pub scales: [f64; 3],
    /// false: no interpolation, a plain center crop
    pub transformed: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SpatialTransform {
    /// output patch `(z, y, x)`; with [`SpatialDims::Two`] entry 0 is ignored (axis 0 is kept)
    pub patch_size: [usize; 3],
    pub dims: SpatialDims,
    pub p_rotation: f64,
    pub rotation: RandomScalar,
    pub p_scaling: f64,
    pub scaling: RandomScalar,
    pub p_synchronize_scaling_across_axes: f64,
    pub padding_value_image: f32,
    pub padding_value_seg: i16,
    pub seg_tiebreak: SegTiebreak,
}

impl SpatialTransform {
    /// nnU-Net's training configuration (`get_training_transforms`).
    pub fn nnunet(patch_size: [usize; 3], dims: SpatialDims, rotation: (f64, f64)) -> Self {
        SpatialTransform {
            patch_size,
            dims,
            p_rotation: 0.2,
            rotation: RandomScalar::Uniform(rotation.0, rotation.1),
            p_scaling: 0.2,
            scaling: RandomScalar::Uniform(0.7, 1.4),
            p_synchronize_scaling_across_axes: 1.0,
            padding_value_image: 0.0,
            padding_value_seg: -1,
            seg_tiebreak: SegTiebreak::Nearest,
        }
    }

    pub fn sample_params(&self, rng: &mut Rng) -> SpatialParams {
        let do_rotation = rng.uniform01() < self.p_rotation;
        let do_scale = rng.uniform01() < self.p_scaling;
        let _do_deform = rng.uniform01() < 0.0;
        let dim = match self.dims {
            SpatialDims::Three => 3,
            SpatialDims::Two => 2,
        };
        let mut angles = [0.0; 3];
        if do_rotation {
            // angles per spatial dim; 2D uses the last one
            let a: Vec<f64> = (0..dim).map(|_| self.rotation.sample(rng)).collect();
            if dim == 3 {
                angles = [a[0], a[1], a[2]];
            } else {
                angles[2] = a[1];
            }
        }
        let mut scales = [1.0; 3];
        if do_scale {
            if rng.uniform01() <= self.p_synchronize_scaling_across_axes {
                scales = [self.scaling.sample(rng); 3];
            } else {
                for s in scales.iter_mut().take(dim) {
                    *s = self.scaling.sample(rng);
                }
            }
        }
        SpatialParams { angles, scales, transformed: do_rotation || do_scale }
    }

    /// the affine matrix (acting on column vectors in axis order) as batchgeneratorsv2 builds it, cast to f32
    pub fn affine(&self, p: &SpatialParams) -> [[f32; 3]; 3] {
        let m: [[f64; 3]; 3] = match self.dims {
            SpatialDims::Three => {
                let [a0, a1, a2] = p.angles;
                let rx = [[1.0, 0.0, 0.0], [0.0, a0.cos(), -a0.sin()], [0.0, a0.sin(), a0.cos()]];
                let ry = [[a1.cos(), 0.0, a1.sin()], [0.0, 1.0, 0.0], [-a1.sin(), 0.0, a1.cos()]];
                let rz = [[a2.cos(), -a2.sin(), 0.0], [a2.sin(), a2.cos(), 0.0], [0.0, 0.0, 1.0]];
                let s = [[p.scales[0], 0.0, 0.0], [0.0, p.scales[1], 0.0], [0.0, 0.0, p.scales[2]]];
                matmul(&matmul(&matmul(&rz, &ry), &rx), &s)
            }
            SpatialDims::Two => {
                let a = p.angles[2];
                // embedded: axes (1, 2) = 2D axes (0, 1)
                let (c, s) = (a.cos(), a.sin());
                [[1.0, 0.0, 0.0], [0.0, c * p.scales[0], -s * p.scales[1]], [0.0, s * p.scales[0], c * p.scales[1]]]
            }
        };
        m.map(|r| r.map(|v| v as f32))
    }

    /// output spatial shape for an input of shape `s`
    pub fn output_shape(&self, s: [usize; 3]) -> [usize; 3] {
        match self.dims {
            SpatialDims::Three => self.patch_size,
            SpatialDims::Two => [s[0], self.patch_size[1], self.patch_size[2]],
        }
    }

    /// Applies the transform with given parameters.
    pub fn apply_with(&self, sample: &mut Sample, p: &SpatialParams) {
        let s = sample.image.shape;
        let out_shape = self.output_shape(s);
        if !p.transformed {
            let mut start = [0i64; 3];
            for d in 0..3 {
                start[d] = (s[d] / 2) as i64 - (out_shape[d] / 2) as i64;
            }
            if self.dims == SpatialDims::Two {
                start[0] = 0;
            }
            sample.image = crop_and_pad(&sample.image, start, out_shape, self.padding_value_image);
            sample.seg = crop_and_pad(&sample.seg, start, out_shape, self.padding_value_seg);
            return;
        }
        let grid = Grid::new(self.dims, self.affine(p), s, out_shape);
        let (image, seg) = grid.sample_all(&sample.image, self.padding_value_image, &sample.seg, self.padding_value_seg, self.seg_tiebreak);
        sample.image = image;
        sample.seg = seg;
    }
}

impl Transform for SpatialTransform {
    fn name(&self) -> &'static str {
        "SpatialTransform"
    }
    fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        let p = self.sample_params(rng);
        self.apply_with(sample, &p);
    }
}

fn matmul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut o = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            o[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    o
}

/// `floor` without a libm call (exact for |x| < 2^31)
#[inline(always)]
fn ffloor(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x { t - 1.0 } else { t }
}

/// round half to even (`nearbyint` in the default rounding mode) without a libm call, exact for |x| < 2^22
#[inline(always)]
fn fround_even(x: f32) -> f32 {
    const M: f32 = 12_582_912.0; // 1.5 · 2^23
    if x.abs() < 4_194_304.0 { (x + M) - M } else { x }
}

/// The sampling grid: output voxel → input pixel coordinates, computed in f32 like torch.
struct Grid {
    dims: SpatialDims,
    a: [[f32; 3]; 3],
    in_shape: [usize; 3],
    out_shape: [usize; 3],
    half_out: [f32; 3],
    half_in: [f32; 3],
}

/// Up to 8 interpolation corners: flat in-slice offset (−1 = out of bounds) and weight.
struct Corners {
    n: usize,
    off: [isize; 8],
    w: [f32; 8],
    /// nearest neighbour offset (−1 = out of bounds)
    nn: isize,
}

impl Grid {
    fn new(dims: SpatialDims, a: [[f32; 3]; 3], in_shape: [usize; 3], out_shape: [usize; 3]) -> Self {
        Grid {
            dims,
            a,
            in_shape,
            out_shape,
            half_out: out_shape.map(|p| (p as f32 - 1.0) / 2.0),
            half_in: in_shape.map(|s| (s as f64 / 2.0) as f32),
        }
    }

    /// normalized grid coordinates (grid_sample units, axis order) of output voxel `i`
    #[inline]
    fn normalized(&self, i: [usize; 3]) -> [f32; 3] {
        let g = [i[0] as f32 - self.half_out[0], i[1] as f32 - self.half_out[1], i[2] as f32 - self.half_out[2]];
        let a = &self.a;
        match self.dims {
            SpatialDims::Three => {
                let mut o = [0f32; 3];
                for j in 0..3 {
                    o[j] = (g[0] * a[j][0] + g[1] * a[j][1] + g[2] * a[j][2]) / self.half_in[j];
                }
                o
            }
            SpatialDims::Two => {
                let o1 = (g[1] * a[1][1] + g[2] * a[1][2]) / self.half_in[1];
                let o2 = (g[1] * a[2][1] + g[2] * a[2][2]) / self.half_in[2];
                [0.0, o1, o2]
            }
        }
    }

    /// `grid_sampler_unnormalize` (align_corners=False): 3D generic kernel `((g + 1) * size - 1) / 2`, 2D vectorized
    /// kernel `(g + 1) * (size / 2) - 0.5`
    #[inline]
    fn pixel(&self, gn: [f32; 3]) -> [f32; 3] {
        match self.dims {
            SpatialDims::Three => std::array::from_fn(|d| ((gn[d] + 1.0) * self.in_shape[d] as f32 - 1.0) / 2.0),
            SpatialDims::Two => [0.0, (gn[1] + 1.0) * self.half_in[1] - 0.5, (gn[2] + 1.0) * self.half_in[2] - 0.5],
        }
    }

    /// Interpolation corners of input pixel coordinate `c` within one input volume (3D) or slice (2D).
    #[inline]
    fn corners(&self, c: [f32; 3]) -> Corners {
        let [sz, sy, sx] = self.in_shape.map(|v| v as isize);
        let inb = |z: isize, y: isize, x: isize| z >= 0 && z < sz && y >= 0 && y < sy && x >= 0 && x < sx;
        match self.dims {
            SpatialDims::Three => {
                let [iz, iy, ix] = c;
                let (x0, y0, z0) = (ffloor(ix), ffloor(iy), ffloor(iz));
                let (x1, y1, z1) = (x0 + 1.0, y0 + 1.0, z0 + 1.0);
                let w = [
                    (x1 - ix) * (y1 - iy) * (z1 - iz),
                    (ix - x0) * (y1 - iy) * (z1 - iz),
                    (x1 - ix) * (iy - y0) * (z1 - iz),
                    (ix - x0) * (iy - y0) * (z1 - iz),
                    (x1 - ix) * (y1 - iy) * (iz - z0),
                    (ix - x0) * (y1 - iy) * (iz - z0),
                    (x1 - ix) * (iy - y0) * (iz - z0),
                    (ix - x0) * (iy - y0) * (iz - z0),
                ];
                let (xa, ya, za) = (x0 as isize, y0 as isize, z0 as isize);
                let mut off = [-1isize; 8];
                for (k, o) in off.iter_mut().enumerate() {
                    let (z, y, x) = (za + (k as isize >> 2), ya + ((k as isize >> 1) & 1), xa + (k as isize & 1));
                    if inb(z, y, x) {
                        *o = (z * sy + y) * sx + x;
                    }
                }
                let (nz, ny, nx) = (fround_even(iz) as isize, fround_even(iy) as isize, fround_even(ix) as isize);
                let nn = if inb(nz, ny, nx) { (nz * sy + ny) * sx + nx } else { -1 };
                Corners { n: 8, off, w, nn }
            }
            SpatialDims::Two => {
                let [_, iy, ix] = c;
                let (x0, y0) = (ffloor(ix), ffloor(iy));
                let we = ix - x0;
                let e = 1.0 - we;
                let n = iy - y0;
                let s = 1.0 - n;
                let mut w = [0f32; 8];
                w[..4].copy_from_slice(&[s * e, s * we, n * e, n * we]);
                let (xa, ya) = (x0 as isize, y0 as isize);
                let mut off = [-1isize; 8];
                for (k, o) in off.iter_mut().take(4).enumerate() {
                    let (y, x) = (ya + (k as isize >> 1), xa + (k as isize & 1));
                    if inb(0, y, x) {
                        *o = y * sx + x;
                    }
                }
                let (ny, nx) = (fround_even(iy) as isize, fround_even(ix) as isize);
                let nn = if inb(0, ny, nx) { ny * sx + nx } else { -1 };
                Corners { n: 4, off, w, nn }
            }
        }
    }

    /// number of independent input volumes per channel and the voxels of each (3D: 1 × whole volume; 2D: one per
    /// axis-0 slice)
    fn slices(&self) -> (usize, usize, usize) {
        let [sz, sy, sx] = self.in_shape;
        let [oz, oy, ox] = self.out_shape;
        match self.dims {
            SpatialDims::Three => (1, sz * sy * sx, oz * oy * ox),
            SpatialDims::Two => (sz, sy * sx, oy * ox),
        }
    }

    fn out_plane(&self) -> [usize; 3] {
        match self.dims {
            SpatialDims::Three => self.out_shape,
            SpatialDims::Two => [1, self.out_shape[1], self.out_shape[2]],
        }
    }

    /// visits every output voxel of one slice in C order with its corners
    #[inline]
    fn for_each(&self, mut f: impl FnMut(usize, &Corners)) {
        let [pz, py, px] = self.out_plane();
        let mut o = 0;
        for i0 in 0..pz {
            for i1 in 0..py {
                for i2 in 0..px {
                    let c = self.corners(self.pixel(self.normalized([i0, i1, i2])));
                    f(o, &c);
                    o += 1;
                }
            }
        }
    }

    /// `_may_reach_outside`: whether any bilinear kernel of the grid reaches outside the input (a conservative
    /// check on the extreme grid values, which of a linear map over a box lie at its corners)
    fn may_reach_outside(&self) -> bool {
        let axes: &[usize] = match self.dims {
            SpatialDims::Three => &[0, 1, 2],
            SpatialDims::Two => &[1, 2],
        };
        let bound = axes.iter().map(|&d| 1.0 - 1.0 / self.in_shape[d] as f64).fold(f64::INFINITY, f64::min);
        let [pz, py, px] = self.out_plane();
        let mut gmin = f32::INFINITY;
        let mut gmax = f32::NEG_INFINITY;
        for k in 0..8 {
            let i = [if k & 4 != 0 { pz - 1 } else { 0 }, if k & 2 != 0 { py - 1 } else { 0 }, if k & 1 != 0 { px - 1 } else { 0 }];
            let g = self.normalized(i);
            for &d in axes {
                gmin = gmin.min(g[d]);
                gmax = gmax.max(g[d]);
            }
        }
        !(-(gmin as f64) <= bound && (gmax as f64) <= bound)
    }

    /// image: grid_sample with zeros padding on (img − pad), then + pad; segmentation: see the module docs
    fn sample_all(
        &self,
        img: &Tensor<f32>,
        pad_img: f32,
        seg: &Tensor<i16>,
        pad: i16,
        tiebreak: SegTiebreak,
    ) -> (Tensor<f32>, Tensor<i16>) {
        let (nslices, in_n, out_n) = self.slices();
        let nvol_img = img.channels * nslices;
        let mut out_img = Tensor::filled(0f32, img.channels, self.out_shape);
        let nvol = seg.channels * nslices;
        let reach = self.may_reach_outside();
        // sorted label set per volume (per channel in 3D, per channel and slice in 2D, as after nnU-Net's reshape)
        let sets: Vec<Vec<i16>> = (0..nvol)
            .map(|v| {
                let mut present = [false; 65536];
                let mut labels = Vec::new();
                for &l in &seg.data[v * in_n..(v + 1) * in_n] {
                    let i = (l as i32 + 32768) as usize;
                    if !present[i] {
                        present[i] = true;
                        labels.push(l);
                    }
                }
                if reach && !present[(pad as i32 + 32768) as usize] {
                    labels.push(pad);
                }
                labels.sort_unstable();
                labels
            })
            .collect();
        let mut out = Tensor::filled(0i16, seg.channels, self.out_shape);
        const SCALE: f32 = 1000.0;
        self.for_each(|o, c| {
            for v in 0..nvol_img {
                let src = &img.data[v * in_n..(v + 1) * in_n];
                let mut acc = 0f32;
                for k in 0..c.n {
                    if c.off[k] >= 0 {
                        acc += (src[c.off[k] as usize] - pad_img) * c.w[k];
                    }
                }
                out_img.data[v * out_n + o] = acc + pad_img;
            }
            for (v, labels) in sets.iter().enumerate() {
                let dst = &mut out.data[v * out_n + o];
                if labels.len() == 1 {
                    *dst = labels[0];
                    continue;
                }
                let src = &seg.data[v * in_n..(v + 1) * in_n];
                // fast path: every corner inside with the same label (its score ≈ 1000, no tie possible)
                if c.off[..c.n].iter().all(|&o| o >= 0) {
                    let l0 = src[c.off[0] as usize];
                    if c.off[1..c.n].iter().all(|&o| src[o as usize] == l0) {
                        *dst = l0;
                        continue;
                    }
                }
                // raw (pre-f16) interpolated scores of the labels found at the corners, in corner order
                let mut labs = [0i16; 9];
                let mut sums = [0f32; 9];
                let mut m = 0;
                let mut pad_sum = 0f32;
                for k in 0..c.n {
                    if c.off[k] < 0 {
                        continue;
                    }
                    let l = src[c.off[k] as usize];
                    let t = SCALE * c.w[k];
                    if reach && l != pad {
                        pad_sum += -SCALE * c.w[k];
                    }
                    match labs[..m].iter().position(|&x| x == l) {
                        Some(j) => sums[j] += t,
                        None => {
                            labs[m] = l;
                            sums[m] = t;
                            m += 1;
                        }
                    }
                }
                if reach {
                    // the padding label's indicator is 1 outside: sample (ind − 1)·1000 with zeros padding, add 1000
                    let ps = pad_sum + SCALE;
                    match labs[..m].iter().position(|&x| x == pad) {
                        Some(j) => sums[j] = ps,
                        None => {
                            labs[m] = pad;
                            sums[m] = ps;
                            m += 1;
                        }
                    }
                }
                let score = |u: i16| -> f32 { labs[..m].iter().position(|&x| x == u).map_or(0.0, |j| round_to_f16(sums[j])) };
                let nn_label = if c.nn >= 0 { src[c.nn as usize] } else { pad };
                if labels.len() == 2 {
                    let hi = score(labels[1]);
                    *dst = if hi > 0.5 * SCALE {
                        labels[1]
                    } else if hi == 0.5 * SCALE && tiebreak == SegTiebreak::Nearest {
                        nn_label
                    } else {
                        labels[0]
                    };
                    continue;
                }
                let mut best = f32::NEG_INFINITY;
                let mut winner = labels[0];
                for j in 0..m {
                    let s = round_to_f16(sums[j]);
                    if s > best || (s == best && labs[j] < winner) {
                        best = s;
                        winner = labs[j];
                    }
                }
                if tiebreak == SegTiebreak::Nearest && labels.binary_search(&nn_label).is_ok() && score(nn_label) == best {
                    winner = nn_label;
                }
                *dst = winner;
            }
        });
        (out_img, out)
    }
}
