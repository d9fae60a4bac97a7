//! nnU-Net's losses (training spec §2.3): `DC_and_CE_loss` for label training, `DC_and_BCE_loss` for regions,
//! both with the ignore label, and the deep-supervision weighting as a wrapper over any [`Loss`].

use burn::tensor::activation::{log_softmax, sigmoid, softmax};
use burn::tensor::{Int, Tensor};
use nnunet_core::Loss;
use nnunet_core::loss::LossSettings;

const SMOOTH: f64 = 1e-5;

/// Masks `(b, 1, n)` of annotated voxels and the target with the ignore label replaced by 0.
fn ignore_mask(target: Tensor<3, Int>, ignore: Option<i64>) -> (Option<Tensor<3>>, Tensor<3, Int>) {
    match ignore {
        None => (None, target),
        Some(i) => {
            let is_ignored = target.clone().equal_elem(i);
            let mask = is_ignored.clone().bool_not().float();
            (Some(mask), target.mask_fill(is_ignored, 0))
        }
    }
}

/// One-hot `(b, c, n)` of a label map `(b, 1, n)`.
fn one_hot(target: &Tensor<3, Int>, c: usize) -> Tensor<3> {
    let chans: Vec<Tensor<3>> = (0..c).map(|k| target.clone().equal_elem(k as i64).float()).collect();
    Tensor::cat(chans, 1)
}

/// Soft Dice per class (MemoryEfficientSoftDiceLoss): `(2I + s) / max(P + G + s, 1e-8)`, sums over voxels (and
/// the batch when `batch_dice`). Returns `-mean(dc)`.
///
/// In a data-parallel step with `batch_dice` (`s.exchange`), the sums are those of the global batch: this replica's
/// (with gradient) plus the other replicas' (constants), as nnU-Net's `AllGatherGrad`. Its backward sums the
/// gradient over the replicas, so the returned value keeps the Dice value but carries `world ×` its gradient.
fn soft_dice(p: Tensor<3>, y: Tensor<3>, mask: Option<&Tensor<3>>, s: &LossSettings) -> Tensor<1> {
    let (p, y) = match mask {
        Some(m) => (p * m.clone(), y * m.clone()),
        None => (p, y),
    };
    let (i, ps, gs) = ((p.clone() * y.clone()).sum_dim(2), p.sum_dim(2), y.sum_dim(2)); // (b, c, 1)
    let (i, ps, gs) = if s.batch_dice { (i.sum_dim(0), ps.sum_dim(0), gs.sum_dim(0)) } else { (i, ps, gs) };
    let ratio = |i: Tensor<3>, ps: Tensor<3>, gs: Tensor<3>| {
        let dc = i.mul_scalar(2.0).add_scalar(SMOOTH) / (ps + gs).add_scalar(SMOOTH).clamp_min(1e-8);
        dc.mean().neg()
    };
    match (&s.exchange, s.batch_dice) {
        (Some(ex), true) if ex.world() > 1 => {
            // one round for the three sums, (1, c, 1) each
            let others = gathered_others(ex, Tensor::cat(vec![i.clone(), ps.clone(), gs.clone()], 0));
            let [_, c, _] = others.dims();
            let part = |k: usize| others.clone().slice([k..k + 1, 0..c, 0..1]);
            let (i, ps, gs) = (i + part(0), ps + part(1), gs + part(2));
            let v = ratio(i, ps, gs);
            let w = ex.world() as f64;
            v.clone().mul_scalar(w) - v.detach().mul_scalar(w - 1.0)
        }
        _ => ratio(i, ps, gs),
    }
}

/// The sum of the other replicas' values of `t` (a constant on `t`'s device).
fn gathered_others(ex: &nnunet_core::DiceExchange, t: Tensor<3>) -> Tensor<3> {
    let (dims, device) = (t.dims(), t.device());
    let local = t.detach().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 sums");
    // a failed replica leaves the others nothing to wait for: fail this one too, the step reports it
    let all = ex.all_gather(local.clone()).expect("data-parallel replica failed");
    let mut others = vec![0f32; local.len()];
    for (r, v) in all.iter().enumerate() {
        if r != ex.rank() {
            others.iter_mut().zip(v).for_each(|(o, x)| *o += x);
        }
    }
    Tensor::from_data(burn::tensor::TensorData::new(others, dims), &device)
}

/// `DC_and_CE_loss`: cross entropy + (−soft Dice without background), softmax over channels.
#[derive(Debug, Default, Clone, Copy)]
pub struct DcAndCe;

impl Loss for DcAndCe {
    fn forward(&self, logits: Tensor<3>, target: Tensor<3, Int>, s: &LossSettings) -> Tensor<1> {
        let c = logits.dims()[1];
        let (mask, target) = ignore_mask(target, s.ignore_label);
        let y = one_hot(&target, c);
        let logp = log_softmax(logits.clone(), 1);
        let ce_vox = (logp * y.clone()).sum_dim(1).neg(); // (b, 1, n)
        let ce = match &mask {
            None => ce_vox.mean(),
            Some(m) => {
                let n = m.clone().sum();
                // no annotated voxel at all: CE contributes 0
                (ce_vox * m.clone()).sum() / n.clamp_min(1.0)
            }
        };
        let p = softmax(logits, 1);
        let [b, _, n] = p.dims();
        let (p_fg, y_fg) = if c > 1 { (p.slice([0..b, 1..c, 0..n]), y.slice([0..b, 1..c, 0..n])) } else { (p, y) };
        ce + soft_dice(p_fg, y_fg, mask.as_ref(), s)
    }
}

/// `DC_and_BCE_loss` for region-based training: BCE with logits + (−soft Dice on sigmoid, all region channels).
#[derive(Debug, Default, Clone, Copy)]
pub struct DcAndBce;

/// Region masks `(b, R, n)`: channel r is 1 where the label is in `regions[r]`.
pub fn region_targets(target: &Tensor<3, Int>, regions: &[Vec<i64>]) -> Tensor<3> {
    let chans: Vec<Tensor<3>> = regions
        .iter()
        .map(|r| r.iter().map(|&l| target.clone().equal_elem(l).float()).reduce(|a, b| a + b).expect("non-empty region").clamp_max(1.0))
        .collect();
    Tensor::cat(chans, 1)
}

impl Loss for DcAndBce {
    fn forward(&self, logits: Tensor<3>, target: Tensor<3, Int>, s: &LossSettings) -> Tensor<1> {
        let regions = s.regions.as_deref().unwrap_or(&[]);
        let (mask, target) = ignore_mask(target, s.ignore_label);
        let y = region_targets(&target, regions);
        // numerically stable BCE with logits: max(x,0) - x*y + log(1 + exp(-|x|))
        let bce = logits.clone().clamp_min(0.0) - logits.clone() * y.clone() + logits.clone().abs().neg().exp().add_scalar(1.0).log();
        let bce = match &mask {
            None => bce.mean(),
            // nnU-Net sums over region channels here and divides by the voxel count of one channel
            Some(m) => (bce * m.clone()).sum() / m.clone().sum().clamp_min(1e-8),
        };
        bce + soft_dice(sigmoid(logits), y, mask.as_ref(), s)
    }
}

/// Flatten `(b, c, z, y, x)` to `(b, c, n)`.
pub fn flatten(x: Tensor<5>) -> Tensor<3> {
    let [b, c, d, h, w] = x.dims();
    x.reshape([b, c, d * h * w])
}

/// Flatten a label map `(b, 1, z, y, x)` to `(b, 1, n)`.
pub fn flatten_int(x: Tensor<5, Int>) -> Tensor<3, Int> {
    let [b, c, d, h, w] = x.dims();
    x.reshape([b, c, d * h * w])
}

/// Deep-supervised loss: `Σ w_i · loss(outputs[i], targets[i])`, skipping zero weights.
pub fn deep_supervised(
    loss: &dyn Loss,
    outputs: &[Tensor<5>],
    targets: &[Tensor<5, Int>],
    s: &LossSettings,
    weighting: nnunet_core::DsWeighting,
) -> Tensor<1> {
    assert_eq!(outputs.len(), targets.len(), "one target per output");
    let w = weighting.weights(outputs.len());
    let mut total: Option<Tensor<1>> = None;
    for ((o, t), wi) in outputs.iter().zip(targets).zip(w) {
        if wi == 0.0 {
            continue;
        }
        let l = loss.forward(flatten(o.clone()), flatten_int(t.clone()), s).mul_scalar(wi);
        total = Some(match total {
            None => l,
            Some(a) => a + l,
        });
    }
    total.expect("at least one output with non-zero weight")
}

nnunet_core::register_loss!(
    "DC_and_CE_loss",
    "nnU-Net's default: cross entropy + (-soft Dice, background excluded), batch Dice per plans, ignore label",
    || Box::new(DcAndCe)
);

nnunet_core::register_loss!(
    "DC_and_BCE_loss",
    "Region training: BCE with logits + (-soft Dice on sigmoid over all regions), ignore label",
    || Box::new(DcAndBce)
);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn dev() -> Device {
        Device::default()
    }

    /// Reference values computed with nnU-Net 2.8.1's DC_and_CE_loss (PyTorch) on the same tensors.
    #[test]
    fn dc_and_ce_matches_reference() {
        let logits = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, -0.5, 0.2, 0.3, 2.0, -1.0, -0.7, 0.1, 1.5, 0.0, 0.4, -0.2], [1, 3, 4]),
            &dev(),
        );
        let target = Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 2], [1, 1, 4]), &dev());
        let s = LossSettings { batch_dice: false, ..Default::default() };
        let v = DcAndCe.forward(logits.clone(), target.clone(), &s).into_scalar::<f32>();
        assert!((v - REF_DC_CE).abs() < 1e-5, "{v} vs {REF_DC_CE}");
        // ignore label 2: two voxels masked
        let s = LossSettings { batch_dice: true, ignore_label: Some(2), ..Default::default() };
        let logits2 = logits.slice([0..1, 0..2, 0..4]);
        let v = DcAndCe.forward(logits2, target, &s).into_scalar::<f32>();
        assert!((v - REF_DC_CE_IGNORE).abs() < 1e-5, "{v} vs {REF_DC_CE_IGNORE}");
    }

    #[test]
    fn dc_and_bce_matches_reference() {
        let logits = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, -0.5, 0.2, 0.3, 2.0, -1.0, -0.7, 0.1], [1, 2, 4]), &dev());
        let target = Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 2], [1, 1, 4]), &dev());
        let s = LossSettings { batch_dice: true, regions: Some(vec![vec![1, 2], vec![2]]), ..Default::default() };
        let v = DcAndBce.forward(logits, target, &s).into_scalar::<f32>();
        assert!((v - REF_DC_BCE).abs() < 1e-5, "{v} vs {REF_DC_BCE}");
    }

    // nnU-Net 2.8.1 / PyTorch on the same tensors: tests/fixtures/scripts/loss_reference.py
    const REF_DC_CE: f32 = 1.090_306_3;
    const REF_DC_CE_IGNORE: f32 = 0.785_570_1;
    const REF_DC_BCE: f32 = 0.452_604_35;
}
