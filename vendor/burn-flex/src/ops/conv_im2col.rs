//! Weight gradient of 3D convolutions and transposed convolutions (1D/2D keep burn's default).
//!
//! (nnunet-rs patch, see vendor/README.md.) burn's default `conv3d_weight_backward` computes the gradient as a
//! convolution of the batch-swapped input with the batch-swapped output gradient used as the kernel: a kernel the
//! size of the feature map, with the batch size (often 2) as its channel count. This backend's im2col then copies
//! runs of two values at a time, and the weight gradient costs about three forward passes. Here it is the textbook
//! product instead:
//!
//! `dW[g][co, (ci, k)] = Σ_n Σ_tile grad[n, co, tile] · cols[n, (ci, k), tile]ᵀ`
//!
//! with `cols` the im2col of the input over a tile of output positions, built row by row straight from the NCDHW
//! input (each row is contiguous over the tile), and one accumulating gemm per tile. The work equals one forward
//! pass. The transposed convolution's weight gradient is the same sum with the roles of input and output gradient
//! exchanged (`weight_grad`).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use super::matmul::GemmScalar;
use crate::{FlexTensor, Layout};

/// Elements of one im2col tile (rows × tile length); about 8 MB of f32.
const TILE_ELEMS: usize = 1 << 21;

/// Geometry of one weight-gradient sum.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WeightGradGeometry {
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
    geo: WeightGradGeometry,
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

fn parallelism(work: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    if work >= 1 << 16 {
        return gemm::Parallelism::Rayon(0);
    }
    let _ = work;
    gemm::Parallelism::None
}

/// Rows `(c, kd, kh, kw)` of the im2col matrix for output positions `s0..s0 + len` (flattened over `[od, oh, ow]`),
/// each row contiguous: `cols[r * len + t]`.
#[allow(clippy::too_many_arguments)]
fn fill_cols<T: GemmScalar + Send + Sync>(
    cols: &mut [T],
    len: usize,
    s0: usize,
    x: &[T],
    [id, ih, iw]: [usize; 3],
    [oh, ow]: [usize; 2],
    geo: &WeightGradGeometry,
) {
    let [kd, kh, kw] = geo.kernel;
    let k_len = kd * kh * kw;
    let in_spatial = id * ih * iw;
    let fill_row = |r: usize, row: &mut [T]| {
        let c = r / k_len;
        let k = r % k_len;
        let (a, b, e) = (k / (kh * kw), (k / kw) % kh, k % kw);
        let off = [
            (a * geo.dilation[0]) as isize - geo.padding[0] as isize,
            (b * geo.dilation[1]) as isize - geo.padding[1] as isize,
            (e * geo.dilation[2]) as isize - geo.padding[2] as isize,
        ];
        let xc = &x[c * in_spatial..(c + 1) * in_spatial];
        let mut t = 0;
        while t < len {
            let pos = s0 + t;
            let (zd, rem) = (pos / (oh * ow), pos % (oh * ow));
            let (zh, zw0) = (rem / ow, rem % ow);
            let run = (ow - zw0).min(len - t);
            let dst = &mut row[t..t + run];
            let pd = (zd * geo.stride[0]) as isize + off[0];
            let ph = (zh * geo.stride[1]) as isize + off[1];
            if pd < 0 || pd >= id as isize || ph < 0 || ph >= ih as isize {
                dst.fill(T::zero());
            } else {
                let line = &xc[(pd as usize * ih + ph as usize) * iw..][..iw];
                let sw = geo.stride[2] as isize;
                for (j, v) in dst.iter_mut().enumerate() {
                    let pw = (zw0 + j) as isize * sw + off[2];
                    *v = if pw >= 0 && pw < iw as isize {
                        line[pw as usize]
                    } else {
                        T::zero()
                    };
                }
            }
            t += run;
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        cols.par_chunks_mut(len)
            .enumerate()
            .for_each(|(r, row)| fill_row(r, row));
    }
    #[cfg(not(feature = "rayon"))]
    for (r, row) in cols.chunks_mut(len).enumerate() {
        fill_row(r, row);
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
    geo: WeightGradGeometry,
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
    geo: WeightGradGeometry,
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
    let geo = WeightGradGeometry {
        kernel: [weight_shape[2], weight_shape[3], weight_shape[4]],
        stride,
        padding,
        dilation,
        groups,
    };
    dispatch(grid, sampled, geo, weight_shape)
}
