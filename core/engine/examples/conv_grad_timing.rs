//! Time a 3x3x3 convolution's forward, its input gradient, and its weight gradient both as burn's default formula
//! (a convolution of the batch-swapped tensors) and as the backend's autodiff computes it (vendor/README.md).
//! `cargo run --release -p nnunet-engine --example conv_grad_timing -- [channels] [DxHxW] [batch]`
//! With `--features tch`, `TIMING_TCH=1` times LibTorch's CPU backend instead, and `TIMING_CONV_BACKWARD=libtorch|burn`
//! chooses how LibTorch's autodiff computes the gradients (ADR 0015; default: burn's formulas on the CPU).

use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let c: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(32);
    let p: Vec<usize> = args
        .get(2)
        .map(|s| s.split('x').map(|v| v.parse().unwrap()).collect())
        .unwrap_or(vec![40, 56, 40]);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    let dev = if std::env::var_os("TIMING_TCH").is_some() {
        Device::new(burn::backend::LibTorchDevice::Cpu)
    } else {
        Device::default()
    };
    #[cfg(not(feature = "tch"))]
    let dev = Device::default();
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    match std::env::var("TIMING_CONV_BACKWARD").as_deref() {
        Ok("libtorch") => nnunet_core::set_convolution_backward(nnunet_core::ConvolutionBackward::LibTorch),
        Ok("burn") => nnunet_core::set_convolution_backward(nnunet_core::ConvolutionBackward::BurnDefault),
        _ => {}
    }
    let x = Tensor::<5>::random(
        [n, c, p[0], p[1], p[2]],
        Distribution::Normal(0.0, 1.0),
        &dev,
    );
    let w = Tensor::<5>::random([c, c, 3, 3, 3], Distribution::Normal(0.0, 0.1), &dev);
    let g = Tensor::<5>::random(
        [n, c, p[0], p[1], p[2]],
        Distribution::Normal(0.0, 1.0),
        &dev,
    );
    let opt = ConvOptions::new([1, 1, 1], [1, 1, 1], [1, 1, 1], 1);
    for _ in 0..3 {
        let t = Instant::now();
        let y = conv3d(x.clone(), w.clone(), None, opt.clone());
        let _ = y.clone().sum().into_scalar::<f32>();
        let fwd = ms(t);
        let t = Instant::now();
        let dx = conv_transpose3d(
            g.clone(),
            w.clone(),
            None,
            ConvTransposeOptions::new([1, 1, 1], [1, 1, 1], [0, 0, 0], [1, 1, 1], 1),
        );
        let _ = dx.sum().into_scalar::<f32>();
        let bx = ms(t);
        // burn's default weight gradient: a convolution of the swapped input with the swapped output gradient.
        let t = Instant::now();
        let dw = conv3d(
            x.clone().swap_dims(0, 1),
            g.clone().swap_dims(0, 1),
            None,
            ConvOptions::new([1, 1, 1], [1, 1, 1], [1, 1, 1], 1),
        )
        .swap_dims(0, 1);
        let _ = dw.clone().sum().into_scalar::<f32>();
        let bw = ms(t);
        // What the backend's autodiff runs for the weight gradient (x not requiring a gradient).
        let ad = dev.clone().autodiff();
        let (xa, wa) = (
            Tensor::<5>::from_data(x.to_data(), &ad),
            Tensor::<5>::from_data(w.to_data(), &ad).require_grad(),
        );
        let ga = Tensor::<5>::from_data(g.to_data(), &ad);
        let y = conv3d(xa, wa.clone(), None, opt.clone());
        let _ = y.clone().sum().into_scalar::<f32>();
        let t = Instant::now();
        let grads = (y * ga).sum().backward();
        let dw2 = Tensor::<5>::from_data(wa.grad(&grads).unwrap().to_data(), &dev);
        let _ = dw2.clone().sum().into_scalar::<f32>();
        let bw2 = ms(t);
        let diff = (dw - dw2).abs().max().into_scalar::<f32>();
        println!(
            "forward {fwd:.1} ms, input grad {bx:.1} ms, weight grad (burn) {bw:.1} ms, weight grad (backend autodiff) {bw2:.1} ms, max |diff| {diff:.2e}"
        );
    }
}
