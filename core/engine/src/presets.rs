//! nnU-Net's trainer and its variants as presets of one [`TrainerConfig`] (training spec §2.1, §2.15):
//! `-tr nnUNetTrainer_250epochs` works without a subclass per tweak.

use nnunet_core::{TrainerConfig, TrainerPreset};

/// A preset = a function that patches the default recipe.
pub struct Preset(pub fn(&mut TrainerConfig));

impl TrainerPreset for Preset {
    fn apply(&self, cfg: &mut TrainerConfig) {
        (self.0)(cfg)
    }
}

macro_rules! epochs_preset {
    ($name:literal, $n:expr) => {
        nnunet_core::register_trainer!(
            $name,
            concat!("nnUNetTrainer with ", stringify!($n), " epochs (poly LR stretched accordingly)"),
            || { Box::new(Preset(|c| c.num_epochs = $n)) }
        );
    };
}

nnunet_core::register_trainer!(
    "nnUNetTrainer",
    "nnU-Net's recipe: 1000 epochs x 250 iterations, SGD Nesterov 0.99, lr 1e-2 poly 0.9, DC+CE, deep supervision, full augmentation",
    || Box::new(Preset(|_| {}))
);
epochs_preset!("nnUNetTrainer_1epoch", 1);
epochs_preset!("nnUNetTrainer_5epochs", 5);
epochs_preset!("nnUNetTrainer_10epochs", 10);
epochs_preset!("nnUNetTrainer_20epochs", 20);
epochs_preset!("nnUNetTrainer_50epochs", 50);
epochs_preset!("nnUNetTrainer_100epochs", 100);
epochs_preset!("nnUNetTrainer_250epochs", 250);
epochs_preset!("nnUNetTrainer_500epochs", 500);
epochs_preset!("nnUNetTrainer_750epochs", 750);
epochs_preset!("nnUNetTrainer_2000epochs", 2000);
epochs_preset!("nnUNetTrainer_4000epochs", 4000);
epochs_preset!("nnUNetTrainer_8000epochs", 8000);
nnunet_core::register_trainer!(
    "nnUNetTrainerNoDeepSupervision",
    "nnUNetTrainer without deep supervision (single output and target)",
    || { Box::new(Preset(|c| c.enable_deep_supervision = false)) }
);
nnunet_core::register_trainer!(
    "nnUNetTrainerNoMirroring",
    "nnUNetTrainer without mirroring augmentation and without mirroring TTA",
    || {
        Box::new(Preset(|c| {
            c.disable_mirroring = true;
            c.mirror_axes = Some(vec![]);
        }))
    }
);
nnunet_core::register_trainer!("nnUNetTrainer_onlyMirror01", "nnUNetTrainer mirroring only axes 0 and 1 (training and TTA)", || {
    Box::new(Preset(|c| c.mirror_axes = Some(vec![0, 1])))
});
nnunet_core::register_trainer!(
    "nnUNetTrainerNoDA",
    "nnUNetTrainer without data augmentation (patch = sampling patch, no mirroring TTA)",
    || {
        Box::new(Preset(|c| {
            c.data_augmentation = false;
            c.disable_mirroring = true;
            c.mirror_axes = Some(vec![]);
        }))
    }
);

nnunet_core::register_trainer!(
    "nnUNetTrainerSmoke",
    "Not nnU-Net's: 5 epochs x 80 iterations, 10 validation iterations; a minutes-long end-to-end check of a setup on the CPU",
    || Box::new(Preset(|c| {
        c.num_epochs = 5;
        c.num_iterations_per_epoch = 80;
        c.num_val_iterations_per_epoch = 10;
    }))
);

nnunet_core::register_trainer!(
    "nnUNetTrainerDebug",
    "Not nnU-Net's: 3 epochs x 10 iterations, 2 validation iterations, checkpoint_latest every epoch; a whole run in seconds",
    || Box::new(Preset(|c| {
        c.num_epochs = 3;
        c.num_iterations_per_epoch = 10;
        c.num_val_iterations_per_epoch = 2;
        c.save_every = 1;
    }))
);

nnunet_core::register_trainer!(
    "nnUNetTrainerMedNeXt",
    "MedNeXt's v1 recipe (spec 1.7) with nnU-Net v2's pipeline: AdamW lr 1e-3, wd 3e-5, eps 1e-4, poly LR, every deep-supervision output weighted; use with --arch MedNeXt",
    || Box::new(Preset(|c| {
        c.optimizer = nnunet_core::OptimizerKind::AdamW;
        c.initial_lr = 1e-3;
        c.weight_decay = 3e-5;
        c.adam_eps = 1e-4;
        c.ds_weighting = nnunet_core::DsWeighting::MedNeXtV1;
    }))
);

/// The configuration of trainer `name` (registry lookup + preset).
pub fn trainer_config(name: &str) -> Result<TrainerConfig, nnunet_core::RegistryError> {
    let preset = nnunet_core::registry::trainers()?.create(name)?;
    let mut cfg = TrainerConfig::default();
    preset.apply(&mut cfg);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_patch_the_recipe() {
        assert_eq!(trainer_config("nnUNetTrainer").unwrap(), TrainerConfig::default());
        assert_eq!(trainer_config("nnUNetTrainer_250epochs").unwrap().num_epochs, 250);
        assert_eq!(trainer_config("nnUNetTrainer_1epoch").unwrap().num_epochs, 1);
        assert!(!trainer_config("nnUNetTrainerNoDeepSupervision").unwrap().enable_deep_supervision);
        let m = trainer_config("nnUNetTrainerMedNeXt").unwrap();
        assert_eq!(
            (m.optimizer, m.initial_lr, m.adam_eps, m.ds_weighting),
            (nnunet_core::OptimizerKind::AdamW, 1e-3, 1e-4, nnunet_core::DsWeighting::MedNeXtV1)
        );
        let e = trainer_config("nnUNetTrainer_250epoch").unwrap_err().to_string();
        assert!(e.contains("Did you mean"), "{e}");
    }
}
