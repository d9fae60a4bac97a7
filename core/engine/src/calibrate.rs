//! `nnunet calibrate-vram`: measure the real peak memory of a few training steps of a configuration's network
//! and report it next to the architecture's memory proxy, so that planners' budgets (proxy units) can be related to
//! bytes for every architecture.
//!
//! The steps are real training steps (forward, deep-supervised DC+CE / DC+BCE, backward, clipping, SGD) on random
//! inputs of the plans' batch and patch size; only the data are synthetic.

use crate::loss::{DcAndBce, DcAndCe};
use crate::optim::sgd;
use crate::train::{Batch, StepContext, train_step};
use burn::tensor::Device;
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::{Loss, LossSettings, memory};
use std::time::Instant;

/// What to measure.
pub struct CalibrationRequest {
    pub network_class: String,
    pub spec: NetworkSpec,
    /// Patch size (2 or 3 axes).
    pub patch: Vec<usize>,
    pub batch_size: usize,
    pub steps: usize,
    pub settings: LossSettings,
    /// Base (non-autodiff) device.
    pub device: Device,
    /// The backend's autocast (fp16/bf16 steps); `None` measures fp32 steps.
    pub mixed_precision: Option<std::sync::Arc<dyn nnunet_core::MixedPrecision>>,
    pub seed: u64,
}

/// The measurement. Byte figures are deltas over the memory in use before the network was built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Calibration {
    pub network_class: String,
    pub patch_size: Vec<usize>,
    pub batch_size: usize,
    pub num_parameters: usize,
    /// The architecture's memory proxy for one sample of the patch.
    pub memory_proxy_per_sample: f64,
    /// Peak live heap bytes during build + steps (None without the counting allocator).
    pub peak_allocated_bytes: Option<u64>,
    /// Peak resident bytes during build + steps (None where the OS does not say).
    pub peak_reserved_bytes: Option<u64>,
    /// `peak_allocated_bytes / (proxy × batch)`: bytes per proxy unit.
    pub allocated_bytes_per_proxy_unit: Option<f64>,
    pub step_seconds: Vec<f64>,
    pub measured_on: String,
    pub precision: String,
}

fn target_shape(patch5: [usize; 5], stride: &[usize]) -> [usize; 5] {
    let s: Vec<usize> = if stride.len() == 2 { vec![1, stride[0], stride[1]] } else { stride.to_vec() };
    let mut out = patch5;
    out[1] = 1;
    for i in 0..3 {
        out[2 + i] = ((patch5[2 + i] as f64) / s[i] as f64).round().max(1.0) as usize;
    }
    out
}

/// Build the network and run `steps` training steps, measuring peak memory.
pub fn calibrate(req: &CalibrationRequest) -> Result<Calibration, String> {
    let arch = nnunet_core::registry::architectures().map_err(|e| e.to_string())?.get(&req.network_class).map_err(|e| e.to_string())?;
    let arch = (arch.make)();
    let proxy = arch.memory_proxy(&NetworkSpec { deep_supervision: false, ..req.spec.clone() }, &req.patch).map_err(|e| e.to_string())?;
    let strides =
        if req.spec.deep_supervision { arch.output_strides(&req.spec).map_err(|e| e.to_string())? } else { vec![vec![1; req.patch.len()]] };
    let patch5 = match req.patch[..] {
        [y, x] => [req.batch_size, req.spec.in_channels, 1, y, x],
        [z, y, x] => [req.batch_size, req.spec.in_channels, z, y, x],
        _ => return Err(format!("patch {:?} must have 2 or 3 axes", req.patch)),
    };
    // synthetic batch: normal image, uniformly random labels (regions: any label of the region list)
    let mut rng = nnunet_augment::Rng::new(req.seed);
    let n: usize = patch5.iter().product();
    let image: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let n_labels = match &req.settings.regions {
        Some(r) => r.len() + 1,
        None => req.spec.out_channels,
    } as i16;
    let targets = strides
        .iter()
        .map(|s| {
            let shape = target_shape(patch5, s);
            let m: usize = shape.iter().product();
            ((0..m).map(|_| (rng.uniform(0.0, n_labels as f64) as i16).min(n_labels - 1)).collect(), shape)
        })
        .collect();
    let batch = Batch { image, image_shape: patch5, targets };

    let probe = memory::MemoryProbe::for_device(&req.device);
    let base = probe.current();
    probe.reset_peak();
    req.device.seed(req.seed);
    let dev = req.device.clone().autodiff();
    let mut net = arch.build(&req.spec, &dev).map_err(|e| e.to_string())?;
    let mut optim = sgd(0.99, 3e-5);
    let loss: Box<dyn Loss> = if req.settings.regions.is_some() { Box::new(DcAndBce) } else { Box::new(DcAndCe) };
    let precision = nnunet_core::Precision::of(req.mixed_precision.as_deref());
    let scaler = std::sync::Mutex::new(nnunet_core::GradScaler::default());
    let ctx = StepContext {
        loss: loss.as_ref(),
        settings: &req.settings,
        deep_supervision: req.spec.deep_supervision,
        grad_clip: Some(12.0),
        ds_weighting: nnunet_core::DsWeighting::NnUNetV2,
        mixed: req.mixed_precision.as_deref(),
        scaler: (precision == nnunet_core::Precision::Fp16).then_some(&scaler),
    };
    let mut step_seconds = Vec::with_capacity(req.steps);
    for _ in 0..req.steps.max(1) {
        let t0 = Instant::now();
        let v = train_step(net.as_mut(), &mut optim, 1e-2, &batch, &ctx, &dev);
        if !v.is_finite() {
            return Err(format!("training step produced a non-finite loss ({v})"));
        }
        step_seconds.push(t0.elapsed().as_secs_f64());
    }
    // what this configuration adds: peak over the run minus what was there before it (on CUDA nothing, as with
    // torch.cuda.reset_peak_memory_stats before a measurement)
    let peak = probe.peak();
    let above = |p: Option<u64>, b: Option<u64>| p.map(|p| p.saturating_sub(b.unwrap_or(0)));
    let peak_alloc = above(peak.allocated, base.allocated);
    let peak_res = above(peak.reserved, base.reserved);
    Ok(Calibration {
        network_class: req.network_class.clone(),
        patch_size: req.patch.clone(),
        batch_size: req.batch_size,
        num_parameters: net.num_params(),
        memory_proxy_per_sample: proxy,
        peak_allocated_bytes: peak_alloc,
        peak_reserved_bytes: peak_res,
        allocated_bytes_per_proxy_unit: peak_alloc.map(|b| b as f64 / (proxy * req.batch_size as f64)),
        step_seconds,
        measured_on: probe.measured_on().into(),
        precision: precision.describe().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_shapes_follow_output_strides() {
        assert_eq!(target_shape([2, 1, 16, 32, 24], &[2, 4, 4]), [2, 1, 8, 8, 6]);
        assert_eq!(target_shape([2, 1, 1, 32, 24], &[2, 2]), [2, 1, 1, 16, 12]);
    }
}
