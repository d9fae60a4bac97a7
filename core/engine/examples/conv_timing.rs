//! Time one 3×3×3 convolution (padding 1, C → C channels) forward and its input gradient (the transposed
//! convolution autodiff runs for it), best of `reps`, on the default backend (flex).
//! `cargo run --release -p nnunet-engine --example conv_timing -- [channels] [DxHxW] [batch] [stride] [reps]`
//! `benches/conv_vs_torch.py` times the same calls in PyTorch (docs/benchmarks.md, "Forward convolutions").

use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let c = arg(1, 32);
    let p: Vec<usize> = args
        .get(2)
        .map(|s| s.split('x').map(|v| v.parse().unwrap()).collect())
        .unwrap_or(vec![40, 56, 40]);
    let (n, s, reps) = (arg(3, 2), arg(4, 1), arg(5, 5));
    let dev = Device::default();
    let x = Tensor::<5>::random([n, c, p[0], p[1], p[2]], Distribution::Normal(0.0, 1.0), &dev);
    let w = Tensor::<5>::random([c, c, 3, 3, 3], Distribution::Normal(0.0, 0.1), &dev);
    let opt = ConvOptions::new([s; 3], [1; 3], [1; 3], 1);
    let y = conv3d(x.clone(), w.clone(), None, opt.clone());
    let out = y.dims();
    let g = Tensor::<5>::random(out, Distribution::Normal(0.0, 1.0), &dev);
    // The transposed convolution that gives the input's shape back (burn's autodiff pads the output like this).
    let pad_out: [usize; 3] = std::array::from_fn(|i| (p[i] + 2 - 3) % s);
    let topt = ConvTransposeOptions::new([s; 3], [1; 3], pad_out, [1; 3], 1);
    let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
    for _ in 0..reps {
        let t = Instant::now();
        let y = conv3d(x.clone(), w.clone(), None, opt.clone());
        let _ = y.into_data();
        fwd = fwd.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let dx = conv_transpose3d(g.clone(), w.clone(), None, topt.clone());
        let _ = dx.into_data();
        bwd = bwd.min(t.elapsed().as_secs_f64());
    }
    let flop = 2.0 * (c * c * 27 * out[0] * out[2] * out[3] * out[4]) as f64;
    println!(
        "C={c} {p:?} batch {n} stride {s}: forward {:.1} ms ({:.1} GFLOP/s), input gradient {:.1} ms ({:.1} GFLOP/s)",
        fwd * 1e3,
        flop / fwd / 1e9,
        bwd * 1e3,
        flop / bwd / 1e9
    );
}
