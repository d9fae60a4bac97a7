//! nnU-Net's optimizer recipe: SGD with PyTorch's Nesterov semantics (no dampening, first buffer = gradient,
//! coupled weight decay on every parameter), poly learning-rate schedule set once per epoch.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};

/// `SGD(lr, momentum, nesterov=True, weight_decay)` as nnUNetTrainer configures it. Gradient clipping is done
/// globally by [`nnunet_core::Network::step`] (burn's own clipping is per tensor).
pub fn sgd(momentum: f64, weight_decay: f64) -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig { momentum, dampening: 0.0, nesterov: true }))
        .with_weight_decay(if weight_decay > 0.0 { Some(WeightDecayConfig { penalty: weight_decay as f32 }) } else { None })
        .init()
}

/// `AdamW(lr, weight_decay, eps, betas=(0.9, 0.999))` with PyTorch's semantics (decoupled weight decay, bias-corrected
/// moments, `eps` added to the square root): MedNeXt's optimizer.
pub fn adamw(weight_decay: f64, eps: f64) -> ModuleOptimizer {
    AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.999).with_epsilon(eps as f32).with_weight_decay(weight_decay as f32).init()
}

/// The optimizer a trainer configuration asks for.
pub fn optimizer(cfg: &nnunet_core::TrainerConfig) -> ModuleOptimizer {
    match cfg.optimizer {
        nnunet_core::OptimizerKind::Sgd => sgd(cfg.momentum, cfg.weight_decay),
        nnunet_core::OptimizerKind::AdamW => adamw(cfg.weight_decay, cfg.adam_eps),
    }
}

/// `PolyLRScheduler`: `initial · (1 − epoch/max_epochs)^0.9`.
pub fn poly_lr(initial: f64, epoch: usize, max_epochs: usize) -> f64 {
    initial * (1.0 - epoch as f64 / max_epochs as f64).powf(0.9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor, TensorData};

    /// Two AdamW steps equal PyTorch's `AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-4, weight_decay=3e-5)` on
    /// `loss = sum(w * x)`, computed by hand from PyTorch's update rule.
    #[test]
    fn adamw_follows_pytorch() {
        let dev = Device::default().autodiff();
        let mut lin: Linear = LinearConfig::new(1, 1).with_bias(false).init(&dev);
        lin.weight = burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.5f32], [1, 1]), &dev));
        let mut opt = adamw(3e-5, 1e-4);
        let x = Tensor::<2>::from_data(TensorData::new(vec![2.0f32], [1, 1]), &dev);
        let (mut w, mut m, mut v) = (0.5f64, 0.0f64, 0.0f64);
        for step in 1..=2 {
            let loss = lin.forward(x.clone()).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &lin);
            lin = opt.step(0.1, lin, grads);
            // PyTorch: w *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr * m_hat / (sqrt(v_hat) + eps)
            let g = 2.0;
            w *= 1.0 - 0.1 * 3e-5;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let (mh, vh) = (m / (1.0 - 0.9f64.powi(step)), v / (1.0 - 0.999f64.powi(step)));
            w -= 0.1 * mh / (vh.sqrt() + 1e-4);
            let got = lin.weight.val().into_data().convert::<f32>().iter::<f32>().next().unwrap() as f64;
            assert!((got - w).abs() < 1e-5, "step {step}: {got} vs {w}");
        }
    }

    #[test]
    fn poly_lr_matches_spec() {
        for (e, want) in [(0, 1.0e-2), (250, 7.719e-3), (500, 5.359e-3), (750, 2.872e-3), (900, 1.259e-3), (999, 1.995e-5)] {
            let lr = poly_lr(1e-2, e, 1000);
            assert!((lr - want).abs() / want < 1e-3, "epoch {e}: {lr} vs {want}");
        }
    }

    /// Two SGD steps equal PyTorch's `SGD(lr=0.1, momentum=0.99, nesterov=True, weight_decay=3e-5)` on
    /// `loss = sum(w * x)`: values computed by hand from PyTorch's update rule.
    #[test]
    fn sgd_follows_pytorch_nesterov() {
        let dev = Device::default().autodiff();
        let mut lin: Linear = LinearConfig::new(1, 1).with_bias(false).init(&dev);
        lin.weight = burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.5f32], [1, 1]), &dev));
        let mut opt = sgd(0.99, 3e-5);
        let x = Tensor::<2>::from_data(TensorData::new(vec![2.0f32], [1, 1]), &dev);
        let mut w = 0.5f64;
        let mut buf = 0.0f64;
        for step in 0..2 {
            let loss = lin.forward(x.clone()).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &lin);
            lin = opt.step(0.1, lin, grads);
            // PyTorch: g = 2 + wd*w; buf = g (first) else 0.99*buf + g; w -= lr*(g + 0.99*buf)
            let g = 2.0 + 3e-5 * w;
            buf = if step == 0 { g } else { 0.99 * buf + g };
            w -= 0.1 * (g + 0.99 * buf);
            let got = lin.weight.val().into_data().convert::<f32>().iter::<f32>().next().unwrap() as f64;
            assert!((got - w).abs() < 1e-5, "step {step}: {got} vs {w}");
        }
        assert!(lin.num_params() == 1);
    }
}

#[cfg(test)]
mod clip_tests {
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor, TensorData};
    use nnunet_core::network::clip_global_norm;

    /// Global clipping as PyTorch's clip_grad_norm_: the norm over ALL parameters (weight and bias together).
    #[test]
    fn clipping_uses_the_total_norm() {
        let dev = Device::default().autodiff();
        let mut lin: Linear = LinearConfig::new(2, 1).init(&dev);
        lin.weight = Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.0f32, 0.0], [2, 1]), &dev));
        let x = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0], [1, 2]), &dev);
        // d/dW = [3, 4], d/db = 1 -> total norm sqrt(26)
        let loss = lin.forward(x).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &lin);
        let norm = clip_global_norm(&lin, &mut grads, Some(1.3));
        let gw = grads.get::<2>(lin.weight.id).unwrap().into_data().convert::<f32>();
        let gw: Vec<f32> = gw.iter::<f32>().collect();
        let gb: Vec<f32> = grads.get::<1>(lin.bias.as_ref().unwrap().id).unwrap().into_data().convert::<f32>().iter::<f32>().collect();
        let total = (gw.iter().map(|v| v * v).sum::<f32>() + gb[0] * gb[0]).sqrt();
        assert!((norm - (9.0f64 + 16.0 + 1.0).sqrt()).abs() < 1e-5, "norm {norm}");
        assert!((total as f64 - 1.3 * norm / (norm + 1e-6)).abs() < 1e-5, "clipped norm {total}");
        // below the threshold nothing changes
        let loss = lin.forward(Tensor::<2>::from_data(TensorData::new(vec![0.1f32, 0.0], [1, 2]), &dev)).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &lin);
        let n = clip_global_norm(&lin, &mut grads, Some(12.0));
        let gb: Vec<f32> = grads.get::<1>(lin.bias.as_ref().unwrap().id).unwrap().into_data().convert::<f32>().iter::<f32>().collect();
        assert!(n < 12.0 && (gb[0] - 1.0).abs() < 1e-6);
    }
}
