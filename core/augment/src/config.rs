//! Trainer-level geometry: enlarged sampling patch, rotation range, dummy-2D, mirror axes, DS scales, oversampling.

use crate::tensor::round_half_even;

/// nnU-Net `ANISO_THRESHOLD`
pub const ANISO_THRESHOLD: f64 = 3.0;

fn rot_x(a: f64) -> [[f64; 3]; 3] {
    [[1.0, 0.0, 0.0], [0.0, a.cos(), -a.sin()], [0.0, a.sin(), a.cos()]]
}
fn rot_y(a: f64) -> [[f64; 3]; 3] {
    [[a.cos(), 0.0, a.sin()], [0.0, 1.0, 0.0], [-a.sin(), 0.0, a.cos()]]
}
fn rot_z(a: f64) -> [[f64; 3]; 3] {
    [[a.cos(), -a.sin(), 0.0], [a.sin(), a.cos(), 0.0], [0.0, 0.0, 1.0]]
}

fn row_times(v: &[f64; 3], m: &[[f64; 3]; 3]) -> [f64; 3] {
    let mut o = [0.0; 3];
    for (j, oj) in o.iter_mut().enumerate() {
        *oj = v[0] * m[0][j] + v[1] * m[1][j] + v[2] * m[2][j];
    }
    o
}

/// nnU-Net `get_patch_size(final_patch_size, rot_x, rot_y, rot_z, scale_range)`: the enlarged patch the loader
/// crops so that rotation/scaling never needs data from outside it. Angles are the maximum absolute angle of each
/// range (radians), capped at 90°.
pub fn get_patch_size(final_patch_size: &[usize], rot: [f64; 3], scale_range: (f64, f64)) -> Vec<usize> {
    let cap = 90.0 / 360.0 * 2.0 * std::f64::consts::PI;
    let [rx, ry, rz] = rot.map(|a| a.abs().min(cap));
    let mut out: Vec<f64> = final_patch_size.iter().map(|&v| v as f64).collect();
    if final_patch_size.len() == 3 {
        let v = [out[0], out[1], out[2]];
        for m in [rot_x(rx), rot_y(ry), rot_z(rz)] {
            let r = row_times(&v, &m);
            for d in 0..3 {
                out[d] = out[d].max(r[d].abs());
            }
        }
    } else if final_patch_size.len() == 2 {
        let (c, s) = (rx.cos(), rx.sin());
        // row vector times [[c, -s], [s, c]]
        let r = [out[0] * c + out[1] * s, -out[0] * s + out[1] * c];
        for d in 0..2 {
            out[d] = out[d].max(r[d].abs());
        }
    } else {
        panic!("get_patch_size: patch must be 2D or 3D");
    }
    let mn = scale_range.0.min(scale_range.1);
    out.iter().map(|v| (v / mn) as usize).collect()
}

/// What `nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct DaSetup {
    /// rotation range (radians), used for every axis
    pub rotation: (f64, f64),
    pub do_dummy_2d: bool,
    /// enlarged sampling patch (same length as the patch)
    pub initial_patch_size: Vec<usize>,
    pub mirror_axes: Vec<usize>,
}

/// `configure_rotation_dummyDA_mirroring_and_inital_patch_size` for a configuration's patch size (2 or 3 entries).
pub fn configure_da(patch_size: &[usize]) -> DaSetup {
    let deg = |d: f64| d / 360.0 * 2.0 * std::f64::consts::PI;
    let (rotation, do_dummy_2d, mirror_axes) = match patch_size.len() {
        2 => {
            let mx = *patch_size.iter().max().unwrap() as f64;
            let mn = *patch_size.iter().min().unwrap() as f64;
            let r = if mx / mn > 1.5 { (deg(-15.0), deg(15.0)) } else { (deg(-180.0), deg(180.0)) };
            (r, false, vec![0, 1])
        }
        3 => {
            let mx = *patch_size.iter().max().unwrap() as f64;
            let dummy = mx / patch_size[0] as f64 > ANISO_THRESHOLD;
            let r = if dummy { (deg(-180.0), deg(180.0)) } else { (deg(-30.0), deg(30.0)) };
            (r, dummy, vec![0, 1, 2])
        }
        _ => panic!("configure_da: patch must be 2D or 3D"),
    };
    let a = rotation.0.abs().max(rotation.1.abs());
    let mut initial_patch_size = get_patch_size(patch_size, [a, a, a], (0.85, 1.25));
    if do_dummy_2d {
        initial_patch_size[0] = patch_size[0];
    }
    DaSetup { rotation, do_dummy_2d, initial_patch_size, mirror_axes }
}

/// `_get_deep_supervision_scales`: `(1 / cumprod(pool_op_kernel_sizes, axis=0))[:-1]`.
pub fn deep_supervision_scales(pool_op_kernel_sizes: &[Vec<usize>]) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    let mut cum: Vec<f64> = vec![1.0; pool_op_kernel_sizes.first().map_or(0, |v| v.len())];
    for k in pool_op_kernel_sizes {
        for (c, &s) in cum.iter_mut().zip(k) {
            *c *= s as f64;
        }
        out.push(cum.iter().map(|c| 1.0 / c).collect::<Vec<f64>>());
    }
    out.pop();
    out
}

/// How the loader decides which samples of a batch are forced to contain foreground.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Oversampling {
    /// nnU-Net default: sample `j` is forced iff `j >= round(batch_size * (1 - percent))` (half to even)
    LastPercent(f64),
    /// `probabilistic_oversampling=True`: each sample forced with probability `p`
    Probabilistic(f64),
}

impl Default for Oversampling {
    fn default() -> Self {
        Oversampling::LastPercent(0.33)
    }
}

/// `_oversample_last_XX_percent`: is sample `j` of a batch of `batch_size` forced to contain foreground?
pub fn is_forced_foreground(j: usize, batch_size: usize, percent: f64) -> bool {
    (j as f64) >= round_half_even(batch_size as f64 * (1.0 - percent))
}
