//! Convolution gradients on every compiled backend (flex; LibTorch too with `--features tch`) against sums written
//! out by hand. The weight gradients of both backends are our patches (vendor/README.md), so this checks them on
//! every shape the networks use: 3×3×3 and 1×3×3 kernels, stride 1 and 2, padding 0 and 1, 1×1×1 skips, depthwise
//! (MedNeXt), grouped, and transposed convolutions with kernel = stride (the decoders) and with overlap.

use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

/// Each compiled backend's autodiff device, and on LibTorch each of its ways to compute convolution gradients
/// (PyTorch's `convolution_backward`, burn's formulas; ADR 0015). `set` switches the way process-wide, so the tests
/// of this binary run one at a time on the lock `serial()` returns.
#[allow(clippy::type_complexity)]
fn devices() -> Vec<(&'static str, Device, fn())> {
    #[allow(unused_mut)]
    let mut d: Vec<(&'static str, Device, fn())> = vec![("flex", Device::flex().autodiff(), || {})];
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    {
        use nnunet_core::{ConvolutionBackward, set_convolution_backward};
        let cpu = Device::new(burn::backend::LibTorchDevice::Cpu).autodiff();
        d.push(("LibTorch convolution_backward", cpu.clone(), || {
            set_convolution_backward(ConvolutionBackward::LibTorch)
        }));
        d.push(("LibTorch burn's formulas", cpu, || {
            set_convolution_backward(ConvolutionBackward::BurnDefault)
        }));
    }
    d
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn values(t: Tensor<5>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn dims(t: &Tensor<5>) -> [usize; 5] {
    t.dims()
}

/// `dW[co, ci, k] = Σ_n Σ_o g[n, co, o] · x[n, g·cin + ci, o·s + k·d − p]` (grid = output gradient).
#[allow(clippy::too_many_arguments)]
fn naive_weight_grad(
    grid: &[f32],
    gs: [usize; 5],
    sampled: &[f32],
    ss: [usize; 5],
    k: [usize; 3],
    s: [usize; 3],
    p: [usize; 3],
    d: [usize; 3],
    groups: usize,
) -> Vec<f32> {
    let (cg, cs) = (gs[1] / groups, ss[1] / groups);
    let mut out = vec![0f64; gs[1] * cs * k[0] * k[1] * k[2]];
    for n in 0..gs[0] {
        for co in 0..gs[1] {
            let grp = co / cg;
            for ci in 0..cs {
                for a in 0..k[0] {
                    for b in 0..k[1] {
                        for c in 0..k[2] {
                            let mut acc = 0f64;
                            for z in 0..gs[2] {
                                for y in 0..gs[3] {
                                    for x in 0..gs[4] {
                                        let pz = (z * s[0] + a * d[0]) as isize - p[0] as isize;
                                        let py = (y * s[1] + b * d[1]) as isize - p[1] as isize;
                                        let px = (x * s[2] + c * d[2]) as isize - p[2] as isize;
                                        if pz < 0
                                            || py < 0
                                            || px < 0
                                            || pz >= ss[2] as isize
                                            || py >= ss[3] as isize
                                            || px >= ss[4] as isize
                                        {
                                            continue;
                                        }
                                        let gv = grid[(((n * gs[1] + co) * gs[2] + z) * gs[3] + y)
                                            * gs[4]
                                            + x];
                                        let sv = sampled[(((n * ss[1] + grp * cs + ci) * ss[2]
                                            + pz as usize)
                                            * ss[3]
                                            + py as usize)
                                            * ss[4]
                                            + px as usize];
                                        acc += gv as f64 * sv as f64;
                                    }
                                }
                            }
                            out[(((co * cs + ci) * k[0] + a) * k[1] + b) * k[2] + c] += acc;
                        }
                    }
                }
            }
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 2e-5 * scale,
            "{what}: element {i}: got {g}, want {w} (scale {scale})"
        );
    }
}

struct Case {
    name: &'static str,
    x: [usize; 5],
    cout: usize,
    k: [usize; 3],
    s: [usize; 3],
    p: [usize; 3],
    d: [usize; 3],
    groups: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "3x3x3 stride 1",
        x: [2, 3, 7, 9, 6],
        cout: 4,
        k: [3, 3, 3],
        s: [1, 1, 1],
        p: [1, 1, 1],
        d: [1, 1, 1],
        groups: 1,
    },
    Case {
        name: "3x3x3 stride 2 (encoder)",
        x: [2, 3, 8, 9, 7],
        cout: 5,
        k: [3, 3, 3],
        s: [2, 2, 2],
        p: [1, 1, 1],
        d: [1, 1, 1],
        groups: 1,
    },
    Case {
        name: "1x3x3 stride 1x2x2 (2D as 3D)",
        x: [1, 2, 1, 10, 9],
        cout: 3,
        k: [1, 3, 3],
        s: [1, 2, 2],
        p: [0, 1, 1],
        d: [1, 1, 1],
        groups: 1,
    },
    Case {
        name: "1x1x1 (skip)",
        x: [2, 4, 5, 6, 3],
        cout: 6,
        k: [1, 1, 1],
        s: [1, 1, 1],
        p: [0, 0, 0],
        d: [1, 1, 1],
        groups: 1,
    },
    Case {
        name: "1x1x1 stride 2 (strided skip)",
        x: [2, 4, 5, 6, 3],
        cout: 6,
        k: [1, 1, 1],
        s: [2, 2, 2],
        p: [0, 0, 0],
        d: [1, 1, 1],
        groups: 1,
    },
    Case {
        name: "3x3x3 no padding, anisotropic stride",
        x: [1, 2, 9, 7, 8],
        cout: 3,
        k: [3, 3, 3],
        s: [1, 2, 3],
        p: [0, 0, 0],
        d: [1, 1, 1],
        groups: 1,
    },
    Case {
        name: "dilated",
        x: [1, 2, 9, 9, 9],
        cout: 2,
        k: [3, 3, 3],
        s: [1, 1, 1],
        p: [2, 2, 2],
        d: [2, 2, 2],
        groups: 1,
    },
    Case {
        name: "depthwise 5x5x5 (MedNeXt)",
        x: [2, 4, 6, 7, 5],
        cout: 4,
        k: [5, 5, 5],
        s: [1, 1, 1],
        p: [2, 2, 2],
        d: [1, 1, 1],
        groups: 4,
    },
    Case {
        name: "grouped",
        x: [1, 6, 5, 4, 6],
        cout: 4,
        k: [3, 3, 3],
        s: [1, 1, 1],
        p: [1, 1, 1],
        d: [1, 1, 1],
        groups: 2,
    },
];

#[test]
fn conv3d_weight_and_input_gradients_match_the_written_out_sums() {
    let _serial = serial();
    for (backend, dev, set) in devices() {
        set();
        for c in CASES {
            let x = Tensor::<5>::random(c.x, Distribution::Normal(0.0, 1.0), &dev).require_grad();
            let w = Tensor::<5>::random(
                [c.cout, c.x[1] / c.groups, c.k[0], c.k[1], c.k[2]],
                Distribution::Normal(0.0, 1.0),
                &dev,
            )
            .require_grad();
            let b =
                Tensor::<1>::random([c.cout], Distribution::Normal(0.0, 1.0), &dev).require_grad();
            let y = conv3d(
                x.clone(),
                w.clone(),
                Some(b.clone()),
                ConvOptions::new(c.s, c.p, c.d, c.groups),
            );
            let r = Tensor::<5>::random(dims(&y), Distribution::Normal(0.0, 1.0), &dev);
            let grads = (y * r.clone()).sum().backward();
            let (xv, rv) = (values(x.clone().inner()), values(r.clone().inner()));
            let want = naive_weight_grad(&rv, dims(&r), &xv, c.x, c.k, c.s, c.p, c.d, c.groups);
            assert_close(
                &format!("{backend} {}: weight", c.name),
                &values(w.grad(&grads).unwrap()),
                &want,
            );
            // bias: Σ over batch and positions of the output gradient
            let [n, co, od, oh, ow] = dims(&r);
            let want_b: Vec<f32> = (0..co)
                .map(|o| {
                    (0..n)
                        .map(|i| {
                            rv[(i * co + o) * od * oh * ow..][..od * oh * ow]
                                .iter()
                                .map(|v| *v as f64)
                                .sum::<f64>()
                        })
                        .sum::<f64>() as f32
                })
                .collect();
            assert_close(
                &format!("{backend} {}: bias", c.name),
                &b.grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap(),
                &want_b,
            );
            // input: the adjoint, checked through <dx, e> = <r, conv(e)> for a random e
            let e = Tensor::<5>::random(c.x, Distribution::Normal(0.0, 1.0), &dev).inner();
            let lhs = (x.grad(&grads).unwrap() * e.clone())
                .sum()
                .into_scalar::<f32>();
            let ce = conv3d(
                e,
                w.clone().inner(),
                None,
                ConvOptions::new(c.s, c.p, c.d, c.groups),
            );
            let rhs = (ce * r.inner()).sum().into_scalar::<f32>();
            assert!(
                (lhs - rhs).abs() <= 1e-4 * rhs.abs().max(1.0),
                "{backend} {}: input gradient adjoint {lhs} vs {rhs}",
                c.name
            );
        }
    }
}

#[test]
fn conv_transpose3d_weight_gradients_match_the_written_out_sums() {
    let _serial = serial();
    for (backend, dev, set) in devices() {
        set();
        // (x shape, c_out per group, kernel, stride, padding, padding_out, groups)
        type TransposedCase = ([usize; 5], usize, [usize; 3], [usize; 3], [usize; 3], [usize; 3], usize);
        let cases: &[TransposedCase] = &[
            (
                [2, 6, 3, 4, 5],
                3,
                [2, 2, 2],
                [2, 2, 2],
                [0, 0, 0],
                [0, 0, 0],
                1,
            ), // the decoders' upsampling
            (
                [1, 4, 1, 5, 4],
                2,
                [1, 2, 2],
                [1, 2, 2],
                [0, 0, 0],
                [0, 0, 0],
                1,
            ), // 2D as 3D
            (
                [1, 3, 4, 3, 4],
                2,
                [3, 3, 3],
                [2, 2, 2],
                [1, 1, 1],
                [1, 0, 1],
                1,
            ), // overlapping, output padding
            (
                [2, 4, 3, 3, 2],
                3,
                [2, 2, 2],
                [2, 2, 2],
                [0, 0, 0],
                [0, 0, 0],
                2,
            ), // grouped
        ];
        for &(xs, co_per, k, s, p, po, groups) in cases {
            let x = Tensor::<5>::random(xs, Distribution::Normal(0.0, 1.0), &dev).require_grad();
            let w = Tensor::<5>::random(
                [xs[1], co_per, k[0], k[1], k[2]],
                Distribution::Normal(0.0, 1.0),
                &dev,
            )
            .require_grad();
            let y = conv_transpose3d(
                x.clone(),
                w.clone(),
                None,
                ConvTransposeOptions::new(s, p, po, [1, 1, 1], groups),
            );
            let r = Tensor::<5>::random(dims(&y), Distribution::Normal(0.0, 1.0), &dev);
            let grads = (y * r.clone()).sum().backward();
            // dW[ci, co, k] = Σ_n Σ_i x[n, ci, i] · r[n, g·co_per + co, i·s + k − p]: the conv sum with x as the grid
            let want = naive_weight_grad(
                &values(x.clone().inner()),
                xs,
                &values(r.clone().inner()),
                dims(&r),
                k,
                s,
                p,
                [1, 1, 1],
                groups,
            );
            assert_close(
                &format!("{backend} transposed {xs:?} k {k:?} s {s:?} groups {groups}"),
                &values(w.grad(&grads).unwrap()),
                &want,
            );
        }
    }
}

#[test]
fn weight_gradient_of_a_known_case() {
    // 1 channel, 1×1×3 input [1, 2, 3], kernel 1×1×3 with padding 1, output gradient all ones:
    // dW[k] = Σ_o x[o + k − 1] = [1 + 2, 1 + 2 + 3, 2 + 3]
    let _serial = serial();
    for (backend, dev, set) in devices() {
        set();
        let x = Tensor::<5>::from_data(TensorData::new(vec![1f32, 2., 3.], [1, 1, 1, 1, 3]), &dev);
        let w = Tensor::<5>::zeros([1, 1, 1, 1, 3], &dev).require_grad();
        let y = conv3d(
            x,
            w.clone(),
            None,
            ConvOptions::new([1, 1, 1], [0, 0, 1], [1, 1, 1], 1),
        );
        let grads = y.sum().backward();
        assert_eq!(
            values(w.grad(&grads).unwrap()),
            vec![3.0, 6.0, 5.0],
            "{backend}"
        );
    }
}
