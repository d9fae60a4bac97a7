//! Trainer presets. nnU-Net's trainer *variants* (`nnUNetTrainer_250epochs`, `nnUNetTrainerNoMirroring`, ...)
//! are named presets that patch one [`TrainerConfig`] — no subclass per tweak.

use serde::{Deserialize, Serialize};

/// The nnUNetTrainer recipe's hyper-parameters (training spec §2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    pub num_epochs: usize,
    pub num_iterations_per_epoch: usize,
    pub num_val_iterations_per_epoch: usize,
    pub initial_lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub oversample_foreground_percent: f64,
    pub grad_clip_norm: f64,
    pub enable_deep_supervision: bool,
    /// Mirroring axes allowed at training and inference; `None` = all spatial axes.
    pub mirror_axes: Option<Vec<usize>>,
    pub disable_mirroring: bool,
    /// Training-time augmentation on (off for `nnUNetTrainerNoDA`).
    pub data_augmentation: bool,
    pub save_every: usize,
    pub loss: String,
    /// The optimizer (nnU-Net: SGD with Nesterov momentum; MedNeXt's recipe: AdamW).
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// AdamW's epsilon (MedNeXt: 1e-4); unused by SGD.
    #[serde(default = "default_adam_eps")]
    pub adam_eps: f64,
    /// How the deep-supervision outputs are weighted.
    #[serde(default)]
    pub ds_weighting: DsWeighting,
}

fn default_adam_eps() -> f64 {
    1e-8
}

/// The optimizer of a training run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// `SGD(lr, momentum, nesterov=True, weight_decay)` (nnUNetTrainer).
    #[default]
    Sgd,
    /// `AdamW(lr, weight_decay, eps, betas=(0.9, 0.999))` with PyTorch's decoupled weight decay.
    AdamW,
}

/// Deep-supervision loss weights for `n` outputs (full resolution first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DsWeighting {
    /// nnU-Net v2: `1/2^i`, the lowest-resolution output weighted 0, normalised.
    #[default]
    NnUNetV2,
    /// MedNeXt's v1 trainers: `1/2^i` over one more (phantom) level that gets weight 0, so every real output
    /// contributes; normalised (5 outputs: 0.516, 0.258, 0.129, 0.065, 0.032).
    MedNeXtV1,
}

impl DsWeighting {
    /// The normalised weights of `n` outputs.
    pub fn weights(self, n: usize) -> Vec<f64> {
        if n <= 1 {
            return vec![1.0; n];
        }
        let mut w: Vec<f64> = (0..n).map(|i| 1.0 / 2f64.powi(i as i32)).collect();
        if self == DsWeighting::NnUNetV2 {
            w[n - 1] = 0.0;
        }
        let s: f64 = w.iter().sum();
        w.iter().map(|x| x / s).collect()
    }
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            num_epochs: 1000,
            num_iterations_per_epoch: 250,
            num_val_iterations_per_epoch: 50,
            initial_lr: 1e-2,
            weight_decay: 3e-5,
            momentum: 0.99,
            oversample_foreground_percent: 0.33,
            grad_clip_norm: 12.0,
            enable_deep_supervision: true,
            mirror_axes: None,
            disable_mirroring: false,
            data_augmentation: true,
            save_every: 50,
            loss: "DC_and_CE_loss".to_string(),
            optimizer: OptimizerKind::Sgd,
            adam_eps: default_adam_eps(),
            ds_weighting: DsWeighting::NnUNetV2,
        }
    }
}

/// A named trainer: how it changes the default recipe.
pub trait TrainerPreset: Send + Sync {
    /// Apply this preset to `cfg` (which starts as [`TrainerConfig::default`]).
    fn apply(&self, cfg: &mut TrainerConfig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_supervision_weights() {
        let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(&DsWeighting::NnUNetV2.weights(5), &[0.533333, 0.266667, 0.133333, 0.066667, 0.0]));
        // MedNeXt's trainer: 6 fake levels, the last zeroed, normalised by 1.9375
        assert!(close(&DsWeighting::MedNeXtV1.weights(5), &[0.516129, 0.258065, 0.129032, 0.064516, 0.032258]));
        let w = DsWeighting::NnUNetV2.weights(3);
        assert!((w[0] - 2.0 / 3.0).abs() < 1e-12 && (w[1] - 1.0 / 3.0).abs() < 1e-12 && w[2] == 0.0);
        assert_eq!(DsWeighting::NnUNetV2.weights(1), vec![1.0]);
    }

    #[test]
    fn older_configs_deserialize_with_nnunet_defaults() {
        let mut v = serde_json::to_value(TrainerConfig::default()).unwrap();
        for k in ["optimizer", "adam_eps", "ds_weighting"] {
            v.as_object_mut().unwrap().remove(k);
        }
        let c: TrainerConfig = serde_json::from_value(v).unwrap();
        assert_eq!(c, TrainerConfig::default());
    }
}
