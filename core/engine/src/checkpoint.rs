//! Checkpoints. Training writes nnU-Net's own `checkpoint_{latest,best,final}.pth` ([`crate::pth`], ADR 0007): the
//! network weights, the optimizer state, the grad scaler, the logging lists, the epoch and best EMA, and under a key
//! of its own ([`crate::pth::OUR_KEY`]) the data stream's random state. Versions before it wrote a folder per
//! checkpoint (`checkpoint_final/`: `network.bpk`, `optimizer.bpk`, `checkpoint.json`); those folders are still
//! read ([`Stored::Folder`]), and a training that writes a checkpoint of the same name removes the folder.

use burn::optim::ModuleOptimizer;
use nnunet_core::Network;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Per-epoch lists, as nnU-Net's logger keeps them. NaN (e.g. the pseudo Dice of an epoch without foreground) is
/// written as JSON `null` and read back as NaN.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingLog {
    #[serde(deserialize_with = "floats_or_nan")]
    pub mean_fg_dice: Vec<f64>,
    #[serde(deserialize_with = "floats_or_nan")]
    pub ema_fg_dice: Vec<f64>,
    #[serde(deserialize_with = "nested_floats_or_nan")]
    pub dice_per_class_or_region: Vec<Vec<f64>>,
    #[serde(deserialize_with = "floats_or_nan")]
    pub train_losses: Vec<f64>,
    #[serde(deserialize_with = "floats_or_nan")]
    pub val_losses: Vec<f64>,
    #[serde(deserialize_with = "floats_or_nan")]
    pub lrs: Vec<f64>,
    #[serde(deserialize_with = "floats_or_nan")]
    pub epoch_start_timestamps: Vec<f64>,
    #[serde(deserialize_with = "floats_or_nan")]
    pub epoch_end_timestamps: Vec<f64>,
}

fn floats_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v: Vec<Option<f64>> = Deserialize::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

fn nested_floats_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
    let v: Vec<Vec<Option<f64>>> = Deserialize::deserialize(d)?;
    Ok(v.into_iter().map(|r| r.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()).collect())
}

/// A checkpoint's metadata: nnU-Net's checkpoint dictionary apart from the tensors (and `checkpoint.json` of a
/// checkpoint folder of earlier versions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Epoch to resume from (last finished + 1; the final checkpoint stores num_epochs).
    pub current_epoch: usize,
    pub best_ema: Option<f64>,
    pub logging: TrainingLog,
    pub trainer_name: String,
    pub plans_name: String,
    pub configuration: String,
    pub fold: String,
    pub network_class_name: String,
    pub inference_allowed_mirroring_axes: Option<Vec<usize>>,
    /// The data pipeline's random state: batches are a pure function of `(seed, batch index)`, so the seed and the
    /// next batch indices are the whole state (absent in checkpoints of older versions: derived from the epoch).
    #[serde(default)]
    pub rng: Option<RngState>,
    /// Whether the network was built with its deep-supervision outputs (some architectures, e.g. MedNeXt, only have
    /// those heads' parameters then); inference builds the same network and uses the full-resolution output.
    #[serde(default)]
    pub deep_supervision: Option<bool>,
    /// fp16 training's loss scale (nnU-Net saves its `grad_scaler` state too); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_scaler: Option<nnunet_core::GradScaler>,
}

/// Random state of a training run at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub next_train_batch: u64,
    pub next_val_batch: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Read `checkpoint.json` of a checkpoint folder.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let p = dir.join("checkpoint.json");
    let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
    serde_json::from_str(&text).map_err(|e| io(&p, e))
}

/// Load parameters (and optimizer state, when given) from a checkpoint folder.
pub fn load(
    dir: &Path,
    net: &mut dyn Network,
    optim: Option<ModuleOptimizer>,
) -> Result<(CheckpointMeta, Option<ModuleOptimizer>), CheckpointError> {
    let meta = read_meta(dir)?;
    net.load_file(&dir.join("network.bpk")).map_err(|e| io(dir, e))?;
    let optim = match optim {
        Some(o) if dir.join("optimizer.bpk").exists() => Some(o.load(dir.join("optimizer.bpk")).map_err(|e| io(dir, format!("{e:?}")))?),
        other => other,
    };
    Ok((meta, optim))
}

/// nnU-Net's resume order for `--c`: final, else latest, else best (each the `.pth`, else a folder of an earlier
/// version); `None` = start fresh.
pub fn resume_candidate(fold_dir: &Path) -> Option<Stored> {
    ["checkpoint_final", "checkpoint_latest", "checkpoint_best"].iter().find_map(|n| Stored::locate(fold_dir, n))
}

/// A checkpoint as stored on disk: a PyTorch `.pth` file (nnU-Net's format, written by Python nnU-Net and by this
/// tool, see [`crate::pth`]), or a checkpoint folder written by an earlier version of this tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Folder(PathBuf),
    Pth(PathBuf),
}

impl Stored {
    /// Checkpoint `name` (`checkpoint_final`, with or without nnU-Net's `.pth` suffix) of `fold_dir`: the `.pth`
    /// file when it exists, else a folder of that name (earlier versions; they wrote the `.pth` of `best` and `final`
    /// beside it with the same contents); `None` when neither exists.
    pub fn locate(fold_dir: &Path, name: &str) -> Option<Stored> {
        let stem = name.strip_suffix(".pth").unwrap_or(name);
        let folder = fold_dir.join(stem);
        let file = fold_dir.join(format!("{stem}.pth"));
        if file.is_file() {
            Some(Stored::Pth(file))
        } else if folder.join("checkpoint.json").is_file() {
            Some(Stored::Folder(folder))
        } else {
            None
        }
    }

    /// A checkpoint named by a path: a folder with `checkpoint.json` (or a file inside one), or a `.pth` file.
    pub fn at(path: &Path) -> Option<Stored> {
        if path.is_file() && path.extension().is_some_and(|e| e == "pth") {
            return Some(Stored::Pth(path.to_path_buf()));
        }
        let dir = if path.is_file() { path.parent()?.to_path_buf() } else { path.to_path_buf() };
        dir.join("checkpoint.json").is_file().then_some(Stored::Folder(dir))
    }

    pub fn path(&self) -> &Path {
        match self {
            Stored::Folder(p) | Stored::Pth(p) => p,
        }
    }

    /// Read the checkpoint: its metadata now, the network's parameters on [`Opened::load_network`] (a `.pth` file is
    /// read once, whole).
    pub fn open(&self) -> Result<Opened, CheckpointError> {
        match self {
            Stored::Folder(d) => Ok(Opened::Folder(d.clone(), Box::new(read_meta(d)?))),
            Stored::Pth(p) => {
                crate::pth::read_nnunet_checkpoint(p).map(|c| Opened::Pth(p.clone(), Box::new(c))).map_err(|e| io(p, e.message))
            }
        }
    }

    /// The checkpoint's metadata.
    pub fn read_meta(&self) -> Result<CheckpointMeta, CheckpointError> {
        self.open().map(|o| o.meta().clone())
    }

    /// Load the network's parameters (not the optimizer state); returns the metadata.
    pub fn load_network(&self, net: &mut dyn Network) -> Result<CheckpointMeta, CheckpointError> {
        let opened = self.open()?;
        opened.load_network(net)?;
        Ok(opened.meta().clone())
    }
}

/// A checkpoint read by [`Stored::open`].
pub enum Opened {
    Folder(PathBuf, Box<CheckpointMeta>),
    Pth(PathBuf, Box<crate::pth::NnunetCheckpoint>),
}

impl Opened {
    pub fn meta(&self) -> &CheckpointMeta {
        match self {
            Opened::Folder(_, m) => m,
            Opened::Pth(_, c) => &c.meta,
        }
    }

    /// Put the checkpoint's parameters into `net`.
    pub fn load_network(&self, net: &mut dyn Network) -> Result<(), CheckpointError> {
        match self {
            Opened::Folder(d, _) => net.load_file(&d.join("network.bpk")).map_err(|e| io(d, e)),
            Opened::Pth(p, c) => crate::pth::load_state_dict(net, &c.weights).map(|_| ()).map_err(|e| io(p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log with NaN (an epoch without foreground: pseudo Dice NaN) survives checkpoint.json (JSON has no NaN).
    #[test]
    fn nan_in_the_log_reads_back() {
        let log = TrainingLog {
            mean_fg_dice: vec![f64::NAN, 0.5],
            dice_per_class_or_region: vec![vec![f64::NAN, 0.25]],
            train_losses: vec![-0.1],
            ..Default::default()
        };
        let text = serde_json::to_string(&log).unwrap();
        assert!(text.contains("null"), "{text}");
        let back: TrainingLog = serde_json::from_str(&text).unwrap();
        assert!(back.mean_fg_dice[0].is_nan() && back.mean_fg_dice[1] == 0.5);
        assert!(back.dice_per_class_or_region[0][0].is_nan() && back.dice_per_class_or_region[0][1] == 0.25);
        assert_eq!(back.train_losses, vec![-0.1]);
    }
}
