//! Time the pieces of one training step on the CPU backend: forward, loss, backward + SGD.
//! `cargo run --release -p nnunet-engine --example step_timing -- [features] [patch]`

use burn::tensor::{Device, Distribution, Int, Tensor};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::topology::Topology;
use nnunet_core::{Architecture, LossSettings};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let f0: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4);
    let p: Vec<usize> = args.get(2).map(|s| s.split('x').map(|v| v.parse().unwrap()).collect()).unwrap_or(vec![24, 32, 24]);
    let dev = Device::default().autodiff();
    let t = Topology {
        strides: vec![vec![1, 1, 1], vec![2, 2, 2], vec![2, 2, 2]],
        kernel_sizes: vec![vec![3, 3, 3]; 3],
        features_per_stage: vec![f0, 2 * f0, 4 * f0],
        patch_size: p.clone(),
    };
    let arch = nnunet_arch_unet::UNetArchitecture(nnunet_arch_unet::Encoder::Plain);
    let spec = NetworkSpec { arch_kwargs: arch.configure(&t).unwrap(), in_channels: 1, out_channels: 3, deep_supervision: true };
    let mut net = arch.build(&spec, &dev).unwrap();
    let mut optim = nnunet_engine::optim::sgd(0.99, 3e-5);
    let x = Tensor::<5>::random([2, 1, p[0], p[1], p[2]], Distribution::Normal(0.0, 1.0), &dev);
    let y = Tensor::<5, Int>::zeros([2, 1, p[0], p[1], p[2]], &dev);
    let targets = vec![y.clone(), y.slice([0..2, 0..1, 0..p[0] / 2, 0..p[1] / 2, 0..p[2] / 2])];
    let s = LossSettings::default();
    for i in 0..6 {
        let t0 = Instant::now();
        let outs = net.forward(x.clone());
        let _ = outs[0].clone().sum().into_scalar::<f32>();
        let t1 = Instant::now();
        let loss = nnunet_engine::loss::deep_supervised(&nnunet_engine::loss::DcAndCe, &outs, &targets, &s, nnunet_core::DsWeighting::NnUNetV2);
        let _ = loss.clone().into_scalar::<f32>();
        let t2 = Instant::now();
        net.step(&mut optim, 0.01, loss, Some(12.0));
        let t3 = Instant::now();
        println!("step {i}: forward {:.1} ms, loss {:.1} ms, backward+step {:.1} ms", (t1 - t0).as_secs_f64() * 1e3, (t2 - t1).as_secs_f64() * 1e3, (t3 - t2).as_secs_f64() * 1e3);
    }
}
