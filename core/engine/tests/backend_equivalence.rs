//! The same network, weights, batch and step on every compiled backend give the same numbers (flex is the reference).
//! Only meaningful with a second backend: `cargo test -p nnunet-engine --features tch --test backend_equivalence`
//! (LibTorch; see docs/gpu.md). Without it the tests compare flex with itself and check the harness.

use burn::tensor::{Device, Int, Tensor, TensorData};
use nnunet_arch_unet as _;
use nnunet_core::{DsWeighting, LossSettings, Network};
use nnunet_engine::loss::DcAndCe;
use nnunet_engine::train::{Batch, StepContext, train_step};
use common::spec;
use serde_json::json;

mod common;

fn other() -> Device {
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    return Device::new(burn::backend::LibTorchDevice::Cpu);
    #[cfg(not(feature = "tch"))]
    Device::flex()
}

/// The network on `dev` with deterministic weights (not from any backend's random generator).
fn net(class: &str, dev: &Device) -> Box<dyn Network> {
    let arch = nnunet_core::registry::architectures().unwrap().get(class).unwrap();
    let mut n = (arch.make)().build(&spec(class), dev).unwrap();
    let mut k = 0usize;
    n.replace_parameters(&mut |_, shape| {
        let len: usize = shape.iter().product();
        Some(
            (0..len)
                .map(|i| {
                    k += 1;
                    (((i * 31 + k * 17) % 23) as f32 - 11.0) / 30.0
                })
                .collect(),
        )
    });
    n
}

fn batch() -> Batch {
    let (b, z, y, x) = (2usize, 16usize, 16usize, 16usize);
    let mut image = Vec::new();
    let (mut full, mut t2, mut t4) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..b {
        for v in 0..z * y * x {
            let (k, j, i) = (v / (y * x), (v / x) % y, v % x);
            image.push(((v * 7 + s * 13) % 17) as f32 / 8.0 - 1.0 + (k as f32) / 16.0);
            let l = (((k + s) / 5 + (i * j) % 2) % 3) as i16;
            full.push(l);
            if k % 2 == 0 && j % 2 == 0 && i % 2 == 0 {
                t2.push(l);
            }
            if k % 4 == 0 && j % 4 == 0 && i % 4 == 0 {
                t4.push(l);
            }
        }
    }
    Batch {
        image,
        image_shape: [b, 1, z, y, x],
        targets: vec![(full, [b, 1, z, y, x]), (t2, [b, 1, z / 2, y / 2, x / 2]), (t4, [b, 1, z / 4, y / 4, x / 4])],
    }
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

fn logits(n: &dyn Network, dev: &Device) -> Vec<Vec<f32>> {
    let b = batch();
    n.forward(b.image_tensor(dev)).into_iter().map(|t| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()).collect()
}

#[test]
fn forward_loss_and_one_step_agree_across_backends() {
    for class in ["PlainConvUNet", "ResidualEncoderUNet"] {
        let (fx, ot) = (Device::flex(), other());
        let (a, b) = (logits(net(class, &fx).as_ref(), &fx), logits(net(class, &ot).as_ref(), &ot));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let d = max_rel_diff(x, y);
            assert!(d < 1e-4, "{class}: output {i} differs by {d} (relative to its largest value)");
        }
        for batch_dice in [false, true] {
            let settings = LossSettings { batch_dice, ..Default::default() };
            let ctx = StepContext::fp32(&DcAndCe, &settings, true, Some(12.0), DsWeighting::NnUNetV2);
            let mut params = Vec::new();
            let mut losses = Vec::new();
            for dev in [Device::flex().autodiff(), other().autodiff()] {
                let mut n = net(class, &dev);
                let mut optim = nnunet_engine::optim::optimizer(&nnunet_core::TrainerConfig::default());
                let mut l = Vec::new();
                for _ in 0..3 {
                    l.push(train_step(n.as_mut(), &mut optim, 0.01, &batch(), &ctx, &dev));
                }
                losses.push(l);
                params.push(n.named_parameters());
            }
            for (la, lb) in losses[0].iter().zip(&losses[1]) {
                assert!(
                    (la - lb).abs() < 1e-4 * la.abs().max(1.0),
                    "{class} batch_dice {batch_dice}: losses {:?} vs {:?}",
                    losses[0],
                    losses[1]
                );
            }
            for (p, q) in params[0].iter().zip(&params[1]) {
                let d = max_rel_diff(&p.values, &q.values);
                assert!(d < 1e-3, "{class} batch_dice {batch_dice}: {} differs by {d} after 3 steps", p.path);
            }
        }
    }
}

#[test]
fn loss_building_blocks_agree_across_backends() {
    // the operations the losses and the Dice counts use, on tensors that exercise ties and masks
    for dev in [Device::flex(), other()] {
        let v: Vec<f32> = (0..2 * 3 * 8).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
        let t = Tensor::<3>::from_data(TensorData::new(v, [2, 3, 8]), &dev);
        let am: Vec<i64> = t.clone().argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(am, vec![1, 0, 2, 1, 0, 0, 2, 1, 1, 0, 0, 2, 1, 0, 2, 1], "argmax on {dev:?}");
        let lab = Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 1], [1, 1, 4]), &dev);
        let masked: Vec<i64> =
            lab.clone().mask_fill(lab.clone().equal_elem(1), 0).into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(masked, vec![0, 0, 2, 0], "mask_fill on {dev:?}");
    }
}

#[test]
fn initialisation_has_the_same_statistics_on_every_backend() {
    // each backend draws its own random numbers; the distributions (He-normal weights, zero biases, unit norms) must match
    let stats = |dev: &Device| -> Vec<(String, f64, f64, usize)> {
        dev.seed(3);
        let arch = nnunet_core::registry::architectures().unwrap().get("PlainConvUNet").unwrap();
        let mut s = spec("PlainConvUNet");
        s.arch_kwargs.insert("features_per_stage".into(), json!([16, 32, 64]));
        let n = (arch.make)().build(&s, dev).unwrap();
        n.named_parameters()
            .into_iter()
            .map(|p| {
                let m = p.values.iter().map(|&v| v as f64).sum::<f64>() / p.values.len() as f64;
                let sd = (p.values.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / p.values.len() as f64).sqrt();
                (p.path, m, sd, p.values.len())
            })
            .collect()
    };
    let (a, b) = (stats(&Device::flex()), stats(&other()));
    // six standard errors of the sample mean / standard deviation: a wrong scale fails, sampling noise does not
    for ((path, ma, sa, n), (_, mb, sb, _)) in a.iter().zip(&b) {
        let (s, n) = (sa.max(*sb), *n as f64);
        assert!((sa - sb).abs() <= 6.0 * s / (2.0 * n).sqrt() + 1e-6, "{path}: std {sa} vs {sb} over {n} values");
        assert!((ma - mb).abs() <= 6.0 * s / n.sqrt() + 1e-6, "{path}: mean {ma} vs {mb} (std {s}, {n} values)");
    }
}

/// LibTorch's autocast (bf16 and fp16 on the CPU here; fp16 is nnU-Net's choice on CUDA) trains like fp32 within
/// half precision, with fp32 weights and fp32 losses; fp16 runs the dynamic loss scale.
#[cfg(feature = "tch")]
#[test]
fn autocast_steps_track_fp32_steps() {
    use burn::tensor::DType;
    use nnunet_core::precision::libtorch::Autocast;
    use nnunet_core::{GradScaler, MixedPrecision, Precision};
    use std::sync::Mutex;
    let dev = other().autodiff();
    let settings = LossSettings::default();
    let run = |mixed: Option<&dyn MixedPrecision>, scaler: Option<&Mutex<GradScaler>>| -> (Vec<f64>, Vec<nnunet_core::NamedParam>) {
        let mut n = net("PlainConvUNet", &dev);
        let mut optim = nnunet_engine::optim::optimizer(&nnunet_core::TrainerConfig::default());
        let ctx = StepContext { mixed, scaler, ..StepContext::fp32(&DcAndCe, &settings, true, Some(12.0), DsWeighting::NnUNetV2) };
        let l = (0..5).map(|_| train_step(n.as_mut(), &mut optim, 0.01, &batch(), &ctx, &dev)).collect();
        (l, n.named_parameters())
    };
    let (fp32, p32) = run(None, None);
    let bf16 = Autocast::new(false, Precision::Bf16).unwrap();
    // the network really computes in bf16 under autocast
    let probe = net("PlainConvUNet", &dev);
    let mut dtype = None;
    bf16.autocast(&mut || dtype = Some(probe.forward(batch().image_tensor(&dev))[0].dtype()));
    assert_eq!(dtype, Some(DType::BF16));
    assert_eq!(probe.forward(batch().image_tensor(&dev))[0].dtype(), DType::F32, "autocast is off again after the scope");
    let (lb, pb) = run(Some(&bf16), None);
    for (a, b) in fp32.iter().zip(&lb) {
        assert!((a - b).abs() < 0.02 * a.abs(), "bf16 {lb:?} vs fp32 {fp32:?}");
    }
    assert!(lb.iter().zip(&fp32).any(|(a, b)| a != b), "bf16 must differ from fp32 somewhere: {lb:?}");
    assert!(pb.iter().all(|p| p.values.iter().all(|v| v.is_finite())));
    assert_eq!(pb.len(), p32.len());
    let fp16 = Autocast::new(false, Precision::Fp16).unwrap();
    let scaler = Mutex::new(GradScaler::default());
    let (lh, _) = run(Some(&fp16), Some(&scaler));
    for (a, b) in fp32.iter().zip(&lh) {
        assert!((a - b).abs() < 0.02 * a.abs(), "fp16 {lh:?} vs fp32 {fp32:?}");
    }
    let s = *scaler.lock().unwrap();
    // every step either grew the tracker or halved the scale
    assert!(s.scale <= 65536.0 && (s.growth_tracker as usize) <= 5, "{s:?}");
}

/// Sliding-window prediction under autocast (as nnU-Net predicts on cuda) agrees with fp32 within half precision.
#[cfg(feature = "tch")]
#[test]
fn prediction_under_autocast_tracks_fp32() {
    use nnunet_core::precision::libtorch::Autocast;
    use nnunet_core::{MixedPrecision, Precision};
    use nnunet_engine::predict::{SlidingWindow, predict_logits};
    let dev = other();
    let n = net("PlainConvUNet", &dev);
    let b = batch();
    let image = &b.image[..16 * 16 * 16];
    let sw = SlidingWindow { patch: [16, 16, 16], spatial_dims: 3, step_size: 0.5, mirror_axes: vec![0, 2], num_heads: 3 };
    let fp32 = predict_logits(n.as_ref(), image, [1, 16, 16, 16], &sw, &dev);
    let bf16 = Autocast::new(false, Precision::Bf16).unwrap();
    let mut half = Vec::new();
    bf16.autocast(&mut || half = predict_logits(n.as_ref(), image, [1, 16, 16, 16], &sw, &dev));
    // Compared in the tile's centre: nnU-Net's float16 sums (ADR 0014) quantise the Gaussian-weighted logits near the
    // tile's corners, where the weights are ~1e-5 or underflow, into float16's subnormal range, so there a 1 % change of
    // a logit can move the normalised value by tens of percent (in nnU-Net's predictor too); the centre stays in
    // float16's normal range.
    let centre = |v: &[f32]| -> Vec<f32> {
        let mut c = Vec::new();
        for h in 0..3 {
            for i in 4..12 {
                for j in 4..12 {
                    c.extend_from_slice(&v[((h * 16 + i) * 16 + j) * 16 + 4..][..8]);
                }
            }
        }
        c
    };
    let d = max_rel_diff(&centre(&fp32), &centre(&half));
    assert!(d > 0.0 && d < 0.05, "bf16 prediction differs from fp32 by {d} (relative to its largest logit)");
}

