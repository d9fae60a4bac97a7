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
        }
    }
}

/// A named trainer: how it changes the default recipe.
pub trait TrainerPreset: Send + Sync {
    /// Apply this preset to `cfg` (which starts as [`TrainerConfig::default`]).
    fn apply(&self, cfg: &mut TrainerConfig);
}
