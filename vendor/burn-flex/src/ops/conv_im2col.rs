//! 3D convolutions as im2col · gemm straight from the NCDHW tensors: the forward convolution and the weight gradients
//! of convolutions and transposed convolutions (1D/2D keep upstream's paths).
//!
//! (nnunet-rs patch, see vendor/README.md.) Both sums are products with the im2col matrix `cols[(ci, k), o]` of the
//! input over a tile of output positions `o`, built row by row straight from the NCDHW input (each row is contiguous
//! over the tile, so it is a few slice copies per output line):
//!
//! - forward: `out[n, co, tile] = W[co, (ci, k)] · cols[n, (ci, k), tile]`, the gemm writing straight into the
//!   output. Upstream's tiled path first converts the input to NHWC on one thread, zero-fills a new im2col buffer of
//!   512 positions × (ci, k) per tile (1.7 MB for 32 channels and a 3³ kernel, more than the L2 cache), and scatters
//!   each tile's result from a second buffer: for a 32-channel 3³ convolution at 40×56×40, batch 2, on 2 cores it took
//!   187 ms where this path takes 114–136 ms (ADR 0016).
//! - weight gradient: `dW[g][co, (ci, k)] = Σ_n Σ_tile grad[n, co, tile] · cols[n, (ci, k), tile]ᵀ`, one
//!   accumulating gemm per tile. burn's default computes it as a convolution of the batch-swapped input with the
//!   batch-swapped output gradient used as the kernel: a kernel the size of the feature map, with the batch size
//!   (often 2) as its channel count; this backend's im2col then copies runs of two values at a time, and the weight
//!   gradient costs about three forward passes. Here the work equals one forward pass. The transposed convolution's
//!   weight gradient is the same sum with the roles of input and output gradient exchanged (`weight_grad`).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use super::matmul::GemmScalar;
use crate::{FlexTensor, Layout};

/// Elements of one im2col tile (rows × tile length); about 8 MB of f32.
const TILE_ELEMS: usize = 1 << 21;

/// Geometry of one convolution (symmetric padding).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Im2colGeometry {
    /// Kernel extent per axis.
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub dilation: [usize; 3],
    pub groups: usize,
}

/// `out[c_grid, c_sampled / groups, k]` with `out = Σ_n Σ_o grid[n, c_grid, o] · sampled[n, c_sampled, o·s + k·d − p]`,
/// out-of-range positions of `sampled` counting as zero. `grid`: `[N, Cg, O...]`, `sampled`: `[N, Cs, I...]`, both
/// contiguous. For a convolution, `grid` is the output gradient and `sampled` the input; for a transposed
/// convolution, `grid` is the input and `sampled` the output gradient.
fn weight_grad_sum<T: GemmScalar + Send + Sync>(
    grid: &[T],
    grid_shape: [usize; 5],
    sampled: &[T],
    sampled_shape: [usize; 5],
    geo: Im2colGeometry,
) -> Vec<T> {
    let [n_batch, c_grid, od, oh, ow] = grid_shape;
    let [n_batch2, c_sampled, id, ih, iw] = sampled_shape;
    assert_eq!(n_batch, n_batch2, "weight gradient: batch sizes differ");
    let g = geo.groups;
    assert!(
        g > 0 && c_grid % g == 0 && c_sampled % g == 0,
        "weight gradient: channels not divisible by groups"
    );
    let (cg_per, cs_per) = (c_grid / g, c_sampled / g);
    let [kd, kh, kw] = geo.kernel;
    let k_len = kd * kh * kw;
    let rows = cs_per * k_len;
    let spatial = od * oh * ow;
    let in_spatial = id * ih * iw;
    let mut out = vec![T::zero(); c_grid * rows];
    if spatial == 0 || rows == 0 || cg_per == 0 {
        return out;
    }
    let tile = (TILE_ELEMS / rows).clamp(64, 4096).min(spatial);
    let mut cols = vec![T::zero(); rows * tile];
    for n in 0..n_batch {
        for grp in 0..g {
            let x_base = (n * c_sampled + grp * cs_per) * in_spatial;
            let g_base = (n * c_grid + grp * cg_per) * spatial;
            let mut s0 = 0;
            while s0 < spatial {
                let len = tile.min(spatial - s0);
                fill_cols(
                    &mut cols[..rows * len],
                    len,
                    s0,
                    &sampled[x_base..x_base + cs_per * in_spatial],
                    [id, ih, iw],
                    [oh, ow],
                    &geo,
                    true,
                );
                let dst = &mut out[grp * cg_per * rows..(grp + 1) * cg_per * rows];
                // dst[cg_per, rows] (+)= grid[cg_per, len] · colsᵀ[len, rows]
                unsafe {
                    gemm::gemm(
                        cg_per,
                        rows,
                        len,
                        dst.as_mut_ptr(),
                        1,
                        rows as isize,
                        n > 0 || s0 > 0, // accumulate onto what earlier tiles and batch items wrote
                        grid[g_base + s0..].as_ptr(),
                        1,
                        spatial as isize,
                        cols.as_ptr(),
                        len as isize,
                        1,
                        T::one(),
                        T::one(),
                        false,
                        false,
                        false,
                        parallelism(cg_per * rows * len),
                    );
                }
                s0 += len;
            }
        }
    }
    out
}

/// Elements of one forward im2col tile: 2^18 f32 are 1 MiB (the L2 cache of the machine measured), e.g. 303
/// positions for 32 channels and a 3³ kernel. On a 2-core AVX2 machine 2^18 ran the U-Nets' 3³ convolutions 1.0–1.25×
/// faster than 2^16 and 2^14 (docs/benchmarks.md, "Convolutions on the CPU").
const FWD_TILE_ELEMS: usize = 1 << 18;

/// Output pointer shared by the tile tasks: each task writes its own `[channels, tile]` block.
#[derive(Clone, Copy)]
struct OutPtr<T>(*mut T);
unsafe impl<T> Send for OutPtr<T> {}
unsafe impl<T> Sync for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// The element at `offset` (a method, so that closures capture the `Sync` wrapper and not its raw pointer).
    ///
    /// # Safety
    /// `offset` lies inside the allocation.
    unsafe fn at(&self, offset: usize) -> *mut T {
        unsafe { self.0.add(offset) }
    }
}

/// The forward 3D convolution `[N, Cin, D, H, W] * [Cout, Cin / groups, kd, kh, kw] → [N, Cout, od, oh, ow]`
/// (symmetric padding, any stride, dilation and groups): per batch item and tile of output positions, the im2col
/// rows of each group, then one gemm writing the tile's `[Cout / groups, tile]` block into the output. Tiles run in
/// parallel; where there are fewer tiles than threads (deep, small layers) the rows and the gemm are parallel instead.
pub(crate) fn conv3d_forward<T: GemmScalar + burn_backend::ElementAdd + Send + Sync>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &burn_backend::ops::ConvOptions<3>,
    dtype: DType,
) -> FlexTensor {
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let [n_batch, c_in, id, ih, iw] = dims5(&x);
    let [c_out, cpg, kd, kh, kw] = dims5(&weight);
    let g = options.groups;
    assert!(
        g > 0 && c_in == cpg * g && c_out % g == 0,
        "conv3d: {c_in} input channels, weight {:?}, {g} groups",
        [c_out, cpg, kd, kh, kw]
    );
    let geo = Im2colGeometry {
        kernel: [kd, kh, kw],
        stride: options.stride,
        padding: options.padding_begin(),
        dilation: options.dilation,
        groups: g,
    };
    let in_dims = [id, ih, iw];
    let [od, oh, ow]: [usize; 3] = core::array::from_fn(|i| {
        burn_backend::ops::conv::calculate_conv_output_size(
            geo.kernel[i],
            geo.stride[i],
            geo.padding[i],
            geo.dilation[i],
            in_dims[i],
        )
    });
    let spatial = od * oh * ow;
    let in_spatial = id * ih * iw;
    let rows = cpg * kd * kh * kw;
    let out_per = c_out / g;
    let mut out = vec![T::zero(); n_batch * c_out * spatial];
    if spatial > 0 && rows > 0 && out_per > 0 {
        let tile = fwd_tile(rows).min(spatial);
        let tiles = spatial.div_ceil(tile);
        let tasks = n_batch * tiles;
        let (xs, ws): (&[T], &[T]) = (x.storage(), weight.storage());
        let dst = OutPtr(out.as_mut_ptr());
        let run = |cols: &mut [T], task: usize, parallel: bool| {
            let (n, s0) = (task / tiles, (task % tiles) * tile);
            let len = tile.min(spatial - s0);
            for grp in 0..g {
                let x_base = (n * c_in + grp * cpg) * in_spatial;
                fill_cols(
                    &mut cols[..rows * len],
                    len,
                    s0,
                    &xs[x_base..x_base + cpg * in_spatial],
                    in_dims,
                    [oh, ow],
                    &geo,
                    parallel,
                );
                // out[n, grp·out_per.., s0..s0 + len] = W[grp][out_per, rows] · cols[rows, len]
                // Safety: the block (rows n·Cout + grp·out_per + [0, out_per), columns s0 + [0, len)) is this task's
                // alone, and `out` outlives every task.
                unsafe {
                    gemm::gemm(
                        out_per,
                        len,
                        rows,
                        dst.at((n * c_out + grp * out_per) * spatial + s0),
                        1,
                        spatial as isize,
                        false,
                        ws[grp * out_per * rows..].as_ptr(),
                        1,
                        rows as isize,
                        cols.as_ptr(),
                        1,
                        len as isize,
                        T::zero(),
                        T::one(),
                        false,
                        false,
                        false,
                        if parallel {
                            parallelism(out_per * len * rows)
                        } else {
                            gemm::Parallelism::None
                        },
                    );
                }
            }
        };
        #[cfg(feature = "rayon")]
        if tasks >= rayon::current_num_threads() {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each_init(
                || vec![T::zero(); rows * tile],
                |cols, task| run(cols, task, false),
            );
        } else {
            let mut cols = vec![T::zero(); rows * tile];
            (0..tasks).for_each(|task| run(&mut cols, task, true));
        }
        #[cfg(not(feature = "rayon"))]
        {
            let mut cols = vec![T::zero(); rows * tile];
            (0..tasks).for_each(|task| run(&mut cols, task, false));
        }
    }
    if let Some(bias) = bias {
        let bias = bias.to_contiguous();
        super::conv_common::add_bias(&mut out, bias.storage::<T>(), n_batch, c_out, spatial);
    }
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::from(vec![n_batch, c_out, od, oh, ow])),
        dtype,
    )
}

/// Whether [`conv_transpose3d_as_forward`] computes this transposed convolution: stride 1, no output padding, and a
/// padding no larger than the dilated kernel's reach (`p ≤ d·(k − 1)`). The input gradient of a stride-1 convolution
/// is a transposed convolution with the convolution's own padding, so every "same"-padded one (`p = d·(k − 1) / 2`,
/// as in the U-Nets) qualifies.
pub(crate) fn transpose_runs_as_forward(
    w_shape: &[usize],
    options: &burn_backend::ops::ConvTransposeOptions<3>,
) -> bool {
    w_shape.len() == 5
        && options.stride == [1, 1, 1]
        && options.padding_out == [0, 0, 0]
        && (0..3).all(|i| options.padding[i] <= options.dilation[i] * w_shape[2 + i].saturating_sub(1))
}

/// A stride-1 transposed convolution (`x`: `[N, Cin, ...]`, `weight`: `[Cin, Cout / groups, kd, kh, kw]`) as the
/// forward convolution of `x` with the flipped kernel `w'[g·Cout/g + co, ci, k] = w[g·Cin/g + ci, co, K − 1 − k]`
/// and padding `d·(k − 1) − p`: both are `out[co, o] = Σ_ci Σ_k w[ci, co, k] · x[ci, o + p − k·d]`.
pub(crate) fn conv_transpose3d_as_forward<T: GemmScalar + burn_backend::ElementAdd + Send + Sync>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &burn_backend::ops::ConvTransposeOptions<3>,
    dtype: DType,
) -> FlexTensor {
    let weight = weight.to_contiguous();
    let [c_in, cout_g, kd, kh, kw] = dims5(&weight);
    let g = options.groups;
    assert!(g > 0 && c_in % g == 0, "conv_transpose3d: {c_in} input channels, {g} groups");
    let cin_g = c_in / g;
    let k_len = kd * kh * kw;
    let w: &[T] = weight.storage();
    let mut flipped = vec![T::zero(); w.len()];
    for grp in 0..g {
        for co in 0..cout_g {
            for ci in 0..cin_g {
                let dst = ((grp * cout_g + co) * cin_g + ci) * k_len;
                let src = ((grp * cin_g + ci) * cout_g + co) * k_len;
                for k in 0..k_len {
                    flipped[dst + k] = w[src + k_len - 1 - k];
                }
            }
        }
    }
    let flipped = FlexTensor::new(
        Bytes::from_elems(flipped),
        Layout::contiguous(Shape::from(vec![g * cout_g, cin_g, kd, kh, kw])),
        dtype,
    );
    let kernel = [kd, kh, kw];
    let padding: [usize; 3] = core::array::from_fn(|i| options.dilation[i] * (kernel[i] - 1) - options.padding[i]);
    let fwd = burn_backend::ops::ConvOptions::new([1, 1, 1], padding, options.dilation, g);
    conv3d_forward::<T>(x, flipped, bias, &fwd, dtype)
}

/// Positions per forward tile for `rows` im2col rows ([`FWD_TILE_ELEMS`]).
fn fwd_tile(rows: usize) -> usize {
    (FWD_TILE_ELEMS / rows).clamp(32, 4096)
}

fn parallelism(work: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    if work >= 1 << 16 {
        return gemm::Parallelism::Rayon(0);
    }
    let _ = work;
    gemm::Parallelism::None
}

/// Rows `(c, kd, kh, kw)` of the im2col matrix for output positions `s0..s0 + len` (flattened over `[od, oh, ow]`),
/// each row contiguous: `cols[r * len + t]`. Every element is written (zero where the kernel reads padding). The
/// copies are planned once per kernel offset ([`plan_runs`]) and then made for every channel; the channels are
/// filled in parallel when `parallel` (the caller's gemm is then the only other work).
#[allow(clippy::too_many_arguments)]
fn fill_cols<T: GemmScalar + Send + Sync>(
    cols: &mut [T],
    len: usize,
    s0: usize,
    x: &[T],
    in_dims: [usize; 3],
    out_hw: [usize; 2],
    geo: &Im2colGeometry,
    parallel: bool,
) {
    let k_len = geo.kernel.iter().product::<usize>();
    let in_spatial = in_dims.iter().product::<usize>();
    let mut runs = Vec::new();
    let mut starts = Vec::with_capacity(k_len + 1);
    for k in 0..k_len {
        starts.push(runs.len());
        plan_runs(k, s0, len, in_dims, out_hw, geo, &mut runs);
    }
    starts.push(runs.len());
    let fill_channel = |c: usize, rows: &mut [T]| {
        let xc = &x[c * in_spatial..(c + 1) * in_spatial];
        for (k, row) in rows.chunks_mut(len).enumerate() {
            for run in &runs[starts[k]..starts[k + 1]] {
                run.copy(row, xc, geo.stride[2]);
            }
        }
    };
    #[cfg(feature = "rayon")]
    if parallel {
        use rayon::prelude::*;
        cols.par_chunks_mut(k_len * len)
            .enumerate()
            .for_each(|(c, rows)| fill_channel(c, rows));
        return;
    }
    let _ = parallel;
    for (c, rows) in cols.chunks_mut(k_len * len).enumerate() {
        fill_channel(c, rows);
    }
}

/// One output line's part of an im2col row: `row[t..t + len]`, of which `[j0, j1)` reads the input plane from
/// `src` on with the w stride and the rest is padding (zero).
struct Run {
    t: usize,
    len: usize,
    j0: usize,
    j1: usize,
    src: usize,
}

impl Run {
    #[inline]
    fn copy<T: GemmScalar>(&self, row: &mut [T], xc: &[T], sw: usize) {
        let dst = &mut row[self.t..self.t + self.len];
        dst[..self.j0].fill(T::zero());
        dst[self.j1..].fill(T::zero());
        let n = self.j1 - self.j0;
        if n == 0 {
            return;
        }
        if sw == 1 {
            dst[self.j0..self.j1].copy_from_slice(&xc[self.src..self.src + n]);
        } else {
            for (j, v) in dst[self.j0..self.j1].iter_mut().enumerate() {
                *v = xc[self.src + j * sw];
            }
        }
    }
}

/// The [`Run`]s of kernel offset `k = (kd, kh, kw)` (flattened) for output positions `s0..s0 + len`.
#[allow(clippy::too_many_arguments)]
fn plan_runs(
    k: usize,
    s0: usize,
    len: usize,
    [id, ih, iw]: [usize; 3],
    [oh, ow]: [usize; 2],
    geo: &Im2colGeometry,
    runs: &mut Vec<Run>,
) {
    let [_, kh, kw] = geo.kernel;
    let (a, b, e) = (k / (kh * kw), (k / kw) % kh, k % kw);
    let off = [
        (a * geo.dilation[0]) as isize - geo.padding[0] as isize,
        (b * geo.dilation[1]) as isize - geo.padding[1] as isize,
        (e * geo.dilation[2]) as isize - geo.padding[2] as isize,
    ];
    let sw = geo.stride[2] as isize;
    let mut t = 0;
    while t < len {
        let pos = s0 + t;
        let (zd, rem) = (pos / (oh * ow), pos % (oh * ow));
        let (zh, zw0) = (rem / ow, rem % ow);
        let run = (ow - zw0).min(len - t);
        let pd = (zd * geo.stride[0]) as isize + off[0];
        let ph = (zh * geo.stride[1]) as isize + off[1];
        let (mut j0, mut j1, mut src) = (0, 0, 0);
        if pd >= 0 && pd < id as isize && ph >= 0 && ph < ih as isize {
            // Output columns j whose input column (zw0 + j)·sw + off lies inside the line: [j0, j1).
            let first = zw0 as isize * sw + off[2];
            j0 = if first >= 0 { 0 } else { ((-first + sw - 1) / sw) as usize }.min(run);
            j1 = if (iw as isize) > first {
                (((iw as isize - first) + sw - 1) / sw) as usize
            } else {
                0
            }
            .clamp(j0, run);
            src = (pd as usize * ih + ph as usize) * iw + (first + j0 as isize * sw).max(0) as usize;
        }
        runs.push(Run { t, len: run, j0, j1, src });
        t += run;
    }
}

fn dims5(t: &FlexTensor) -> [usize; 5] {
    let s = t.layout().shape();
    assert_eq!(s.num_dims(), 5, "weight gradient: expected a 5-D tensor");
    [s[0], s[1], s[2], s[3], s[4]]
}

fn typed<T: GemmScalar + Send + Sync>(
    grid: FlexTensor,
    sampled: FlexTensor,
    geo: Im2colGeometry,
    out_shape: [usize; 5],
    dtype: DType,
) -> FlexTensor {
    let (grid, sampled) = (grid.to_contiguous(), sampled.to_contiguous());
    let out = weight_grad_sum::<T>(
        grid.storage(),
        dims5(&grid),
        sampled.storage(),
        dims5(&sampled),
        geo,
    );
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::from(out_shape.to_vec())),
        dtype,
    )
}

/// Dispatch on dtype: f32/f64 natively, half types through f32.
fn dispatch(
    grid: FlexTensor,
    sampled: FlexTensor,
    geo: Im2colGeometry,
    out_shape: [usize; 5],
) -> FlexTensor {
    use super::module::{cast_from_f32, cast_to_f32};
    use burn_std::{bf16, f16};
    match grid.dtype() {
        DType::F32 => typed::<f32>(grid, sampled, geo, out_shape, DType::F32),
        DType::F64 => typed::<f64>(grid, sampled, geo, out_shape, DType::F64),
        DType::F16 => {
            let r = typed::<f32>(
                cast_to_f32(grid, f16::to_f32),
                cast_to_f32(sampled, f16::to_f32),
                geo,
                out_shape,
                DType::F32,
            );
            cast_from_f32(r, f16::from_f32)
        }
        DType::BF16 => {
            let r = typed::<f32>(
                cast_to_f32(grid, bf16::to_f32),
                cast_to_f32(sampled, bf16::to_f32),
                geo,
                out_shape,
                DType::F32,
            );
            cast_from_f32(r, bf16::from_f32)
        }
        dtype => panic!("conv weight gradient: unsupported dtype {dtype:?}"),
    }
}

/// The weight gradient `[C_grid, C_sampled / groups, kd, kh, kw]` (`weight_shape`) of a convolution (`grid` = output
/// gradient, `sampled` = input; symmetric padding) or of a transposed convolution (`grid` = input, `sampled` = output
/// gradient): the same sum, see [`weight_grad_sum`].
pub(crate) fn weight_grad(
    grid: FlexTensor,
    sampled: FlexTensor,
    weight_shape: [usize; 5],
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
    groups: usize,
) -> FlexTensor {
    let geo = Im2colGeometry {
        kernel: [weight_shape[2], weight_shape[3], weight_shape[4]],
        stride,
        padding,
        dilation,
        groups,
    };
    dispatch(grid, sampled, geo, weight_shape)
}
