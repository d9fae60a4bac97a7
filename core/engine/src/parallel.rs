//! Data-parallel training on the devices of one machine (`nnUNetv2_train -num_gpus N`), with the semantics of
//! nnU-Net's DDP run in one process:
//!
//! - the plans' batch is split over the replicas as nnU-Net's `_set_batch_size_and_oversample` does, each replica with
//!   its own data stream, batch size and foreground-oversampling share ([`shards`]);
//! - each replica computes its loss on its part of the batch; the batch Dice (when the plans ask for it) uses the sums
//!   of the whole batch, exchanged between replicas ([`nnunet_core::DiceExchange`], nnU-Net's `AllGatherGrad`);
//! - the replicas' gradients are averaged (DDP's all-reduce), clipped to the global norm and applied once.
//!
//! The master network lives on the first device and holds the optimizer state; every step forks it onto the other
//! devices (a parameter copy per replica, no optimizer state there), so checkpoints and resuming are the single-device
//! ones. Replicas run on one thread each.

use crate::train::{Batch, DiceCounts, StepContext, apply_step, forward_backward, train_step, validation_step};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use nnunet_core::{DiceExchange, LossSettings, Network};

/// One replica's share of the plans' batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shard {
    pub batch_size: usize,
    pub oversample_foreground_percent: f64,
}

/// nnU-Net's `_set_batch_size_and_oversample` for `world` replicas: the batch split as evenly as possible (the first
/// replicas take the remainder), and each replica's oversampling share chosen so that the global batch oversamples
/// exactly the last `round(batch * percent)`-ish samples the single-GPU data loader would.
pub fn shards(global_batch_size: usize, world: usize, oversample_foreground_percent: f64) -> Result<Vec<Shard>, String> {
    if world == 0 {
        return Err("the number of devices must be at least 1".into());
    }
    if global_batch_size < world {
        return Err(format!(
            "Cannot run DDP if the batch size is smaller than the number of GPUs... Duh. (batch size {global_batch_size}, {world} devices)"
        ));
    }
    let sizes: Vec<usize> = (0..world)
        .map(|i| {
            let b = global_batch_size / world;
            if b * world + i < global_batch_size { b + 1 } else { b }
        })
        .collect();
    let threshold = 1.0 - oversample_foreground_percent;
    // Python's round() on the positions: banker's rounding
    let first_oversampled = round_half_even(global_batch_size as f64 * threshold);
    let oversample: Vec<bool> = (0..global_batch_size).map(|i| (i as f64) >= first_oversampled).collect();
    let mut low = 0usize;
    Ok(sizes
        .iter()
        .map(|&b| {
            let high = low + b;
            let p = if (high as f64) / (global_batch_size as f64) < threshold {
                0.0
            } else if (low as f64) / (global_batch_size as f64) > threshold {
                1.0
            } else {
                oversample[low..high].iter().filter(|&&o| o).count() as f64 / b as f64
            };
            low = high;
            Shard { batch_size: b, oversample_foreground_percent: p }
        })
        .collect())
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - x.signum() } else { r }
}

/// The data stream seed of replica `rank` (rank 0 keeps the run's seed, so one device is the single-device run).
pub fn replica_seed(seed: u64, rank: usize) -> u64 {
    seed.wrapping_add((rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The loss settings of each replica: the same settings, each with its end of one Dice exchange.
fn replica_settings(s: &LossSettings, world: usize) -> Vec<LossSettings> {
    DiceExchange::group(world).into_iter().map(|ex| LossSettings { exchange: Some(ex), ..s.clone() }).collect()
}

/// Runs `f(rank, replica network, its settings)` for every replica, rank 0 (the master itself) on this thread and the
/// others on scoped threads with forks of the master on their devices; returns the results in rank order. A replica
/// that panics releases the others from the Dice exchange and the panic is propagated.
fn on_replicas<T: Send>(
    master: &dyn Network,
    devices: &[Device],
    settings: &LossSettings,
    f: &(dyn Fn(usize, &dyn Network, &LossSettings) -> T + Sync),
) -> Vec<T> {
    let world = devices.len();
    let settings = replica_settings(settings, world);
    let forks: Vec<Box<dyn Network>> = devices[1..].iter().map(|d| master.fork(d)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = forks
            .into_iter()
            .zip(&settings[1..])
            .enumerate()
            .map(|(i, (net, s))| scope.spawn(move || run_guarded(s, || f(i + 1, net.as_ref(), s))))
            .collect();
        let first = run_guarded(&settings[0], || f(0, master, &settings[0]));
        let mut out = vec![first];
        for h in handles {
            match h.join() {
                Ok(v) => out.push(v),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

fn run_guarded<T>(s: &LossSettings, f: impl FnOnce() -> T) -> T {
    struct AbortOnPanic<'a>(&'a LossSettings);
    impl Drop for AbortOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking()
                && let Some(ex) = &self.0.exchange
            {
                ex.abort();
            }
        }
    }
    let _guard = AbortOnPanic(s);
    f()
}

/// One data-parallel training step: replica `r` trains on `batches[r]` on `devices[r]` (autodiff devices, the
/// master's first). Returns the mean of the replicas' loss values (what nnU-Net logs under DDP).
pub fn train_step_parallel(
    master: &mut dyn Network,
    optim: &mut ModuleOptimizer,
    lr: f64,
    batches: &[Batch],
    ctx: &StepContext<'_>,
    devices: &[Device],
) -> f64 {
    assert_eq!(batches.len(), devices.len(), "one batch per replica");
    if devices.len() == 1 {
        return train_step(master, optim, lr, &batches[0], ctx, &devices[0]);
    }
    let world = devices.len() as f64;
    let scale = ctx.loss_scale();
    let results = on_replicas(&*master, devices, ctx.settings, &|r, net, settings| {
        // DDP averages the replicas' gradients: each loss is divided by the number of replicas
        forward_backward(net, &batches[r], &StepContext { settings, ..*ctx }, &devices[r], world, scale)
    });
    let mut values = Vec::with_capacity(results.len());
    let mut acc = None;
    for (v, g) in results {
        values.push(v);
        match &mut acc {
            None => acc = Some(g),
            Some(a) => master.accumulate_gradients(a, g),
        }
    }
    apply_step(master, optim, lr, acc.expect("at least one replica"), ctx, scale);
    values.iter().sum::<f64>() / world
}

/// One data-parallel validation step: the replicas' mean loss and their summed Dice counts.
pub fn validation_step_parallel(master: &dyn Network, batches: &[Batch], ctx: &StepContext<'_>, devices: &[Device]) -> (f64, DiceCounts) {
    assert_eq!(batches.len(), devices.len(), "one batch per replica");
    if devices.len() == 1 {
        return validation_step(master, &batches[0], ctx, &devices[0]);
    }
    let results = on_replicas(master, devices, ctx.settings, &|r, net, settings| {
        let c = StepContext { settings, ..*ctx };
        validation_step(net, &batches[r], &c, &devices[r])
    });
    let mut counts = DiceCounts::default();
    let mut loss = 0.0;
    for (l, c) in &results {
        loss += l;
        counts.add(c);
    }
    (loss / results.len() as f64, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::DcAndCe;
    use nnunet_arch_unet as _;
    use nnunet_core::architecture::NetworkSpec;
    use nnunet_core::{DsWeighting, NamedParam};
    use serde_json::json;

    fn net(dev: &Device) -> Box<dyn Network> {
        let kwargs = json!({
            "n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [1, 1],
            "n_conv_per_stage_decoder": [1], "conv_bias": true, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": true}, "dropout_op": null, "dropout_op_kwargs": null,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}
        });
        let spec =
            NetworkSpec { arch_kwargs: kwargs.as_object().unwrap().clone(), in_channels: 1, out_channels: 3, deep_supervision: true };
        let arch = nnunet_core::registry::architectures().unwrap().get("PlainConvUNet").unwrap();
        let mut n = (arch.make)().build(&spec, dev).unwrap();
        // deterministic weights, independent of the (process-wide) random generator other tests use concurrently
        let mut k = 0usize;
        n.replace_parameters(&mut |_, shape| {
            let len: usize = shape.iter().product();
            Some(
                (0..len)
                    .map(|i| {
                        k += 1;
                        (((i * 31 + k * 17) % 23) as f32 - 11.0) / 40.0
                    })
                    .collect(),
            )
        });
        n
    }

    /// A deterministic batch of `b` samples (8³ patch) with labels 0..3 and the 4³ deep-supervision target.
    fn batch(samples: std::ops::Range<usize>) -> Batch {
        let b = samples.len();
        let mut image = Vec::new();
        let (mut full, mut half) = (Vec::new(), Vec::new());
        for s in samples {
            for v in 0..512usize {
                let (z, y, x) = (v / 64, (v / 8) % 8, v % 8);
                image.push(((v * 7 + s * 13) % 17) as f32 / 8.0 - 1.0);
                full.push((((z + s) / 3 + (x * y) % 2) % 3) as i16);
                if z % 2 == 0 && y % 2 == 0 && x % 2 == 0 {
                    half.push((((z + s) / 3 + (x * y) % 2) % 3) as i16);
                }
            }
        }
        Batch { image, image_shape: [b, 1, 8, 8, 8], targets: vec![(full, [b, 1, 8, 8, 8]), (half, [b, 1, 4, 4, 4])] }
    }

    fn params_after_one_step(batches: &[Batch], batch_dice: bool) -> (f64, Vec<NamedParam>) {
        let dev = Device::default().autodiff();
        let mut master = net(&dev);
        let mut optim = crate::optim::optimizer(&nnunet_core::TrainerConfig::default());
        let settings = LossSettings { batch_dice, ..Default::default() };
        let ctx = StepContext::fp32(&DcAndCe, &settings, true, Some(12.0), DsWeighting::NnUNetV2);
        let devices = vec![dev; batches.len()];
        let loss = train_step_parallel(master.as_mut(), &mut optim, 0.01, batches, &ctx, &devices);
        (loss, master.named_parameters())
    }

    fn max_diff(a: &[NamedParam], b: &[NamedParam]) -> f32 {
        a.iter().zip(b).flat_map(|(p, q)| p.values.iter().zip(&q.values).map(|(x, y)| (x - y).abs())).fold(0.0, f32::max)
    }

    #[test]
    fn two_replicas_take_the_step_of_the_whole_batch_on_one_device() {
        for batch_dice in [true, false] {
            let (l1, one) = params_after_one_step(&[batch(0..4)], batch_dice);
            let (l2, two) = params_after_one_step(&[batch(0..2), batch(2..4)], batch_dice);
            let (_, untouched) = params_after_one_step(&[batch(0..4)], batch_dice);
            assert_eq!(max_diff(&one, &untouched), 0.0, "the step is deterministic");
            let d = max_diff(&one, &two);
            assert!(d < 2e-6, "batch_dice {batch_dice}: parameters differ by {d}");
            let step = max_diff(&one, &params_after_one_step(&[batch(0..1)], batch_dice).1);
            assert!(step > 1e-4, "the steps compared must be distinguishable ({step})");
            // the logged loss is nnU-Net's DDP mean of the replicas' losses (each with the global batch Dice), which for
            // an even split is the whole batch's loss
            assert!((l1 - l2).abs() < 1e-5, "batch_dice {batch_dice}: logged loss {l1} vs {l2}");
        }
    }

    #[test]
    fn validation_counts_are_summed_over_replicas() {
        let dev = Device::default().autodiff();
        let master = net(&dev);
        let settings = LossSettings { batch_dice: true, ..Default::default() };
        let ctx = StepContext::fp32(&DcAndCe, &settings, true, None, DsWeighting::NnUNetV2);
        let (l1, c1) = validation_step_parallel(master.as_ref(), &[batch(0..4)], &ctx, std::slice::from_ref(&dev));
        let (l2, c2) = validation_step_parallel(master.as_ref(), &[batch(0..2), batch(2..4)], &ctx, &[dev.clone(), dev]);
        assert_eq!(c1, c2);
        assert!((l1 - l2).abs() < 1e-5, "validation loss {l1} vs {l2}");
    }

    fn split(b: usize, w: usize, p: f64) -> Vec<(usize, f64)> {
        shards(b, w, p).unwrap().into_iter().map(|s| (s.batch_size, s.oversample_foreground_percent)).collect()
    }

    #[test]
    fn batch_and_oversampling_as_nnunet_distributes_them() {
        // values printed by nnU-Net 2.8.1's _set_batch_size_and_oversample code run rank by rank
        assert_eq!(split(2, 2, 0.33), vec![(1, 0.0), (1, 1.0)]);
        assert_eq!(split(5, 2, 0.33), vec![(3, 0.0), (2, 1.0)]);
        assert_eq!(split(8, 4, 0.33), vec![(2, 0.0), (2, 0.0), (2, 0.5), (2, 1.0)]);
        assert_eq!(split(7, 3, 0.33), vec![(3, 0.0), (2, 0.0), (2, 1.0)]);
        assert_eq!(split(4, 1, 0.33), vec![(4, 0.25)]);
        assert_eq!(split(2, 1, 0.33), vec![(2, 0.5)]);
        assert_eq!(split(12, 8, 0.33), [vec![(2, 0.0); 4], vec![(1, 1.0); 4]].concat());
        // round(1.5) == 2 in Python (half to even)
        assert_eq!(split(3, 3, 0.5), vec![(1, 0.0), (1, 0.0), (1, 1.0)]);
        assert!(shards(1, 2, 0.33).unwrap_err().contains("batch size is smaller than the number of GPUs"));
    }

    #[test]
    fn replica_seeds_differ_and_rank_zero_keeps_the_seed() {
        assert_eq!(replica_seed(12345, 0), 12345);
        assert_ne!(replica_seed(12345, 1), replica_seed(12345, 2));
    }
}
