//! One training/validation step of nnUNetTrainer on any [`Network`]: deep-supervised loss, SGD with global
//! gradient clipping, and the pseudo-Dice statistics of validation (training spec §2.2, §2.9).

use crate::loss::{deep_supervised, flatten, flatten_int, region_targets};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use nnunet_core::{GradScaler, Loss, LossSettings, MixedPrecision, Network};
use std::sync::Mutex;

/// A batch as the data pipeline produces it: image `(b, c, z, y, x)` and one label map per deep-supervision
/// scale (full resolution first), each `(b, 1, z', y', x')`. 2D batches have `z = 1`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub image: Vec<f32>,
    pub image_shape: [usize; 5],
    pub targets: Vec<(Vec<i16>, [usize; 5])>,
}

/// The data pipeline's batch (2D batches `(b, c, y, x)` get `z = 1`).
impl From<nnunet_augment::Batch> for Batch {
    fn from(b: nnunet_augment::Batch) -> Batch {
        let five = |s: &[usize]| -> [usize; 5] { if s.len() == 4 { [s[0], s[1], 1, s[2], s[3]] } else { [s[0], s[1], s[2], s[3], s[4]] } };
        Batch { image_shape: five(&b.image_shape), image: b.image, targets: b.targets.into_iter().map(|(t, s)| (t, five(&s))).collect() }
    }
}

impl Batch {
    pub fn image_tensor(&self, dev: &Device) -> Tensor<5> {
        Tensor::from_data(TensorData::new(self.image.clone(), self.image_shape), dev)
    }

    pub fn target_tensors(&self, dev: &Device) -> Vec<Tensor<5, Int>> {
        self.targets
            .iter()
            .map(|(t, s)| Tensor::from_data(TensorData::new(t.iter().map(|&v| v as i64).collect::<Vec<i64>>(), *s), dev))
            .collect()
    }
}

/// Hard true/false positives/negatives per foreground class (or region), summed over batch and voxels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiceCounts {
    pub tp: Vec<f64>,
    pub fp: Vec<f64>,
    pub fn_: Vec<f64>,
}

impl DiceCounts {
    pub fn add(&mut self, o: &DiceCounts) {
        if self.tp.is_empty() {
            *self = o.clone();
            return;
        }
        for i in 0..self.tp.len() {
            self.tp[i] += o.tp[i];
            self.fp[i] += o.fp[i];
            self.fn_[i] += o.fn_[i];
        }
    }

    /// `2tp / (2tp + fp + fn)` per class; NaN when the denominator is 0.
    pub fn dice(&self) -> Vec<f64> {
        (0..self.tp.len())
            .map(|i| {
                let d = 2.0 * self.tp[i] + self.fp[i] + self.fn_[i];
                if d == 0.0 { f64::NAN } else { 2.0 * self.tp[i] / d }
            })
            .collect()
    }

    /// nanmean of the per-class Dice (nnU-Net's `mean_fg_dice`).
    pub fn mean_fg_dice(&self) -> f64 {
        let v: Vec<f64> = self.dice().into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
    }
}

/// The parts of a run a step needs.
pub struct StepContext<'a> {
    pub loss: &'a dyn Loss,
    pub settings: &'a LossSettings,
    pub deep_supervision: bool,
    pub grad_clip: Option<f64>,
    pub ds_weighting: nnunet_core::DsWeighting,
    /// Autocast of the backend for fp16/bf16 training; `None` trains in fp32.
    pub mixed: Option<&'a dyn MixedPrecision>,
    /// fp16's dynamic loss scale (PyTorch's GradScaler); `None` otherwise.
    pub scaler: Option<&'a Mutex<GradScaler>>,
}

impl<'a> StepContext<'a> {
    /// fp32 training (no autocast, no loss scaling).
    pub fn fp32(
        loss: &'a dyn Loss,
        settings: &'a LossSettings,
        deep_supervision: bool,
        grad_clip: Option<f64>,
        ds_weighting: nnunet_core::DsWeighting,
    ) -> StepContext<'a> {
        StepContext { loss, settings, deep_supervision, grad_clip, ds_weighting, mixed: None, scaler: None }
    }

    /// Run `f` under the context's autocast (if any) on this thread.
    pub fn under_autocast<T>(&self, f: impl FnOnce() -> T) -> T {
        match self.mixed {
            None => f(),
            Some(m) => {
                let mut f = Some(f);
                let mut out = None;
                m.autocast(&mut || out = Some((f.take().expect("called once"))()));
                out.expect("autocast ran the step")
            }
        }
    }

    /// The loss scale of this step (fp16), read once so that every replica uses the same.
    pub fn loss_scale(&self) -> Option<f64> {
        self.scaler.map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).scale)
    }
}

fn outputs_for_loss(outs: Vec<Tensor<5>>, ds: bool) -> Vec<Tensor<5>> {
    // the losses run in fp32 whatever precision the network computed in (nnU-Net's losses are fp32 under autocast)
    let outs = if ds { outs } else { outs.into_iter().take(1).collect() };
    outs.into_iter().map(nnunet_core::precision::as_f32).collect()
}

/// Forward, deep-supervised loss and backward of one (replica's) batch under the context's autocast; the loss is divided
/// by `world` (data-parallel averaging) and multiplied by `loss_scale` (fp16) before backward. Returns the loss value
/// and the gradients.
pub fn forward_backward(
    net: &dyn Network,
    batch: &Batch,
    ctx: &StepContext<'_>,
    dev: &Device,
    world: f64,
    loss_scale: Option<f64>,
) -> (f64, GradientsParams) {
    ctx.under_autocast(|| {
        let outs = outputs_for_loss(net.forward(batch.image_tensor(dev)), ctx.deep_supervision);
        let targets = batch.target_tensors(dev);
        let n = outs.len().min(targets.len());
        let loss = deep_supervised(ctx.loss, &outs[..n], &targets[..n], ctx.settings, ctx.ds_weighting);
        let value = loss.clone().into_scalar::<f32>() as f64;
        let mut l = loss;
        if world != 1.0 {
            l = l.div_scalar(world);
        }
        if let Some(s) = loss_scale {
            l = l.mul_scalar(s);
        }
        (value, net.backward(l))
    })
}

/// Apply summed gradients (clipping, loss-scale bookkeeping, optimizer step). Returns the gradient norm.
pub fn apply_step(
    net: &mut dyn Network,
    optim: &mut ModuleOptimizer,
    lr: f64,
    grads: GradientsParams,
    ctx: &StepContext<'_>,
    loss_scale: Option<f64>,
) -> f64 {
    let norm = net.apply_gradients(optim, lr, grads, ctx.grad_clip, loss_scale);
    if let Some(s) = ctx.scaler {
        s.lock().unwrap_or_else(|e| e.into_inner()).update(!norm.is_finite());
    }
    norm
}

/// Forward, deep-supervised loss, backward, clipping and one SGD step. Returns the loss value.
pub fn train_step(net: &mut dyn Network, optim: &mut ModuleOptimizer, lr: f64, batch: &Batch, ctx: &StepContext<'_>, dev: &Device) -> f64 {
    let scale = ctx.loss_scale();
    let (value, grads) = forward_backward(&*net, batch, ctx, dev, 1.0, scale);
    apply_step(net, optim, lr, grads, ctx, scale);
    value
}

/// Validation step: loss (no gradient step) and hard Dice counts of the full-resolution output (under autocast, as
/// nnU-Net validates).
pub fn validation_step(net: &dyn Network, batch: &Batch, ctx: &StepContext<'_>, dev: &Device) -> (f64, DiceCounts) {
    ctx.under_autocast(|| {
        let x = batch.image_tensor(dev);
        let targets = batch.target_tensors(dev);
        let outs = outputs_for_loss(net.forward(x), ctx.deep_supervision);
        let n = outs.len().min(targets.len());
        let loss = deep_supervised(ctx.loss, &outs[..n], &targets[..n], ctx.settings, ctx.ds_weighting).into_scalar::<f32>() as f64;
        let logits = flatten(outs[0].clone().detach());
        let target = flatten_int(targets[0].clone());
        (loss, dice_counts(logits, target, ctx.settings))
    })
}

/// Hard counts: argmax (softmax training, background dropped) or `sigmoid > 0.5` (regions); ignore voxels masked.
pub fn dice_counts(logits: Tensor<3>, target: Tensor<3, Int>, s: &LossSettings) -> DiceCounts {
    let c = logits.dims()[1];
    let (mask, target) = match s.ignore_label {
        Some(i) => {
            let ig = target.clone().equal_elem(i);
            (Some(ig.clone().bool_not().float()), target.mask_fill(ig, 0))
        }
        None => (None, target),
    };
    let (pred, gt) = match &s.regions {
        Some(regions) => (logits.greater_elem(0.0).float(), region_targets(&target, regions)),
        None => {
            let am = logits.argmax(1); // (b, 1, n)
            let pred: Vec<Tensor<3>> = (1..c).map(|k| am.clone().equal_elem(k as i64).float()).collect();
            let gt: Vec<Tensor<3>> = (1..c).map(|k| target.clone().equal_elem(k as i64).float()).collect();
            (Tensor::cat(pred, 1), Tensor::cat(gt, 1))
        }
    };
    let (pred, gt) = match mask {
        Some(m) => (pred * m.clone(), gt * m),
        None => (pred, gt),
    };
    let sum = |t: Tensor<3>| -> Vec<f64> {
        let v = t.sum_dim(2).sum_dim(0).into_data().convert::<f32>();
        v.iter::<f32>().map(|x| x as f64).collect()
    };
    let tp = sum(pred.clone() * gt.clone());
    let fp = sum(pred.clone() * gt.clone().neg().add_scalar(1.0));
    let fn_ = sum(pred.neg().add_scalar(1.0) * gt);
    DiceCounts { tp, fp, fn_ }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_counts_of_argmax() {
        let dev = Device::default();
        // 3 classes, 4 voxels; argmax = [0, 1, 2, 1]; target = [0, 1, 2, 2]
        let logits =
            Tensor::<3>::from_data(TensorData::new(vec![5.0f32, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 5.0, 0.0, 0.0, 5.0, 0.0], [1, 3, 4]), &dev);
        let target = Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 2], [1, 1, 4]), &dev);
        let c = dice_counts(logits, target, &LossSettings::default());
        assert_eq!(c.tp, vec![1.0, 1.0]);
        assert_eq!(c.fp, vec![1.0, 0.0]);
        assert_eq!(c.fn_, vec![0.0, 1.0]);
        let d = c.dice();
        assert!((d[0] - 2.0 / 3.0).abs() < 1e-12 && (d[1] - 2.0 / 3.0).abs() < 1e-12);
        let empty = DiceCounts { tp: vec![0.0], fp: vec![0.0], fn_: vec![0.0] };
        assert!(empty.dice()[0].is_nan() && empty.mean_fg_dice().is_nan());
    }
}
