//! nnU-Net's `nnUNetPredictor` (training spec §4): a trained model folder
//! (`<Trainer>__<Plans>__<Configuration>/` with `plans.json`, `dataset.json`, `fold_F/<checkpoint>/`) applied to a
//! folder of raw images.
//!
//! Flow per case: read the channel files → preprocess exactly like training ([`nnunet_data::preprocess_case_arrays`];
//! cascade: the previous stage's segmentation is preprocessed like a label map and its foreground labels appended
//! one-hot) → sliding-window logits ([`crate::predict::predict_logits`], Gaussian weighting, mirror TTA) averaged over
//! the folds in logit space → export ([`export_case`]): resample the logits back to the cropped shape with the plans'
//! `resampling_fn_probabilities`, argmax (regions: sigmoid > 0.5 in `regions_class_order`), revert the crop into
//! `shape_before_cropping` at `bbox_used_for_cropping`, `transpose_backward`, write with the input's geometry.
//! `save_probabilities` also writes `<case>.npz` (`probabilities`, float32, `(C, *original shape)`), `<case>.pkl`
//! (the properties, as nnU-Net pickles them) and `<case>.json` (the same properties as JSON).
//!
//! Pipeline: `preprocessing_workers` threads read and preprocess, the calling thread runs the network, and
//! `export_workers` threads export. A case that cannot be read, preprocessed or exported is reported in
//! [`PredictReport::failed`] and skipped; the others complete. No printing: progress goes to a callback.
//!
//! ```no_run
//! use nnunet_engine::inference::{PredictOptions, Predictor};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = burn::tensor::Device::default();
//! let model = std::path::Path::new("/results/Dataset004_Hippocampus/nnUNetTrainer__nnUNetPlans__3d_fullres");
//! let predictor = Predictor::from_model_folder(model, Some(&["0".to_string()]), "checkpoint_final.pth", &dev)?;
//! let report = predictor.predict_from_folder(
//!     std::path::Path::new("/in"),
//!     std::path::Path::new("/out"),
//!     &PredictOptions::default(),
//!     &|_event| {},
//! )?;
//! assert!(report.failed.is_empty());
//! # Ok(()) }
//! ```

use crate::checkpoint;
use crate::predict::{SlidingWindow, predict_logits};
use burn::tensor::Device;
use nnunet_core::Network;
use nnunet_core::architecture::NetworkSpec;
use nnunet_data::crop::BBox;
use nnunet_data::io::{ImageReaderWriter, determine_reader_writer, reader_writer_by_name};
use nnunet_data::preprocess::{CaseProperties, PreprocessConfig, preprocess_case_arrays, transpose_spatial};
use nnunet_data::resample::ResampleOptions;
use nnunet_data::{NormalizationRegistry, PreprocessedCase};
use nnunet_schema::{DatasetJson, LabelManager, Plans};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why a prediction run could not start (problems of single cases are reported in [`PredictReport::failed`]).
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The model folder (plans, dataset.json, folds, checkpoints, network) is not usable.
    #[error("model folder {path}: {message}")]
    Model { path: PathBuf, message: String },
    /// The input/output folders or the options are not usable.
    #[error("{0}")]
    Input(String),
}

fn model_err(path: &Path, m: impl std::fmt::Display) -> InferenceError {
    InferenceError::Model { path: path.to_path_buf(), message: m.to_string() }
}

/// `checkpoint_final.pth` → `checkpoint_final` (the folder name earlier versions used; see [`checkpoint::Stored`]).
pub fn checkpoint_folder_name(name: &str) -> &str {
    name.strip_suffix(".pth").unwrap_or(name)
}

/// nnU-Net's `auto_detect_available_folds`: `fold_*` folders except `fold_all` that hold the checkpoint, as fold
/// names (`"0"`, `"1"`, …) sorted like nnU-Net (by folder name).
pub fn auto_detect_folds(model_dir: &Path, checkpoint_name: &str) -> Vec<String> {
    let chk = checkpoint_folder_name(checkpoint_name);
    let mut names: Vec<String> = std::fs::read_dir(model_dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("fold_") && n != "fold_all")
                .filter(|n| checkpoint::Stored::locate(&model_dir.join(n), chk).is_some())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.into_iter().map(|n| n["fold_".len()..].to_string()).collect()
}

/// What the export of one case needs besides its logits (plans- and dataset-level, shared by all cases).
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub transpose_forward: [usize; 3],
    pub transpose_backward: [usize; 3],
    /// The configuration's spacing (2 entries for 2-D configurations).
    pub configuration_spacing: Vec<f64>,
    /// `resampling_fn_probabilities_kwargs`.
    pub resampling: ResampleOptions,
    pub label_manager: LabelManager,
    /// The logits are float16, as nnU-Net's predictor returns them: resampling keeps that dtype (float64
    /// arithmetic, float16 result). `false`: float32 logits (the export function called on float32 data).
    pub float16_logits: bool,
}

/// One exported case in original array order.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedCase {
    /// Labels `(z, y, x)` in the input image's array order.
    pub segmentation: Vec<u16>,
    pub shape: [usize; 3],
    /// `(C, z, y, x)` float32 probabilities when requested.
    pub probabilities: Option<Vec<f32>>,
}

/// Insert `a` `(channels, cropped)` into an array of `(channels, full)` at `bbox`; voxels outside are `fill[c]`.
pub fn revert_crop<T: Copy>(a: &[T], channels: usize, cropped: [usize; 3], full: [usize; 3], bbox: &BBox, fill: &[T]) -> Vec<T> {
    let n_full: usize = full.iter().product();
    let n_crop: usize = cropped.iter().product();
    assert_eq!(a.len(), channels * n_crop, "array does not match channels × cropped shape");
    assert!(fill.len() >= channels, "one fill value per channel");
    for d in 0..3 {
        assert_eq!(bbox[d][1] - bbox[d][0], cropped[d], "bbox does not match the cropped shape on axis {d}");
        assert!(bbox[d][1] <= full[d], "bbox exceeds the full shape on axis {d}");
    }
    let mut out = Vec::with_capacity(channels * n_full);
    for (c, &f) in fill.iter().enumerate().take(channels) {
        out.extend(std::iter::repeat_n(f, n_full));
        for i in 0..cropped[0] {
            for j in 0..cropped[1] {
                let src = ((c * cropped[0] + i) * cropped[1] + j) * cropped[2];
                let dst = c * n_full + ((bbox[0][0] + i) * full[1] + bbox[1][0] + j) * full[2] + bbox[2][0];
                out[dst..dst + cropped[2]].copy_from_slice(&a[src..src + cropped[2]]);
            }
        }
    }
    out
}

/// Segmentation of `(heads, n)` logits: argmax over channels (first maximum wins, like torch), or for regions
/// `sigmoid > 0.5` per region written in `regions_class_order` order (later regions overwrite earlier ones).
pub fn segmentation_from_logits(logits: &[f32], heads: usize, lm: &LabelManager) -> Vec<u16> {
    let n = logits.len() / heads.max(1);
    match (&lm.regions, &lm.regions_class_order) {
        (Some(_), order) => {
            let mut seg = vec![0u16; n];
            for h in 0..heads {
                let label = order.as_ref().and_then(|o| o.get(h)).copied().unwrap_or(h as i64 + 1) as u16;
                for (s, &l) in seg.iter_mut().zip(&logits[h * n..(h + 1) * n]) {
                    if sigmoid(l) > 0.5 {
                        *s = label;
                    }
                }
            }
            seg
        }
        (None, _) => (0..n)
            .map(|v| {
                let mut best = 0usize;
                let mut bv = logits[v];
                for h in 1..heads {
                    let x = logits[h * n + v];
                    if x > bv {
                        bv = x;
                        best = h;
                    }
                }
                best as u16
            })
            .collect(),
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// nnU-Net's `apply_inference_nonlin` on `(heads, n)` float32 logits: softmax over channels, or sigmoid (regions).
pub fn probabilities_from_logits(logits: &[f32], heads: usize, regions: bool) -> Vec<f32> {
    if regions {
        return logits.iter().map(|&x| sigmoid(x)).collect();
    }
    let n = logits.len() / heads.max(1);
    let mut out = vec![0f32; logits.len()];
    for v in 0..n {
        let max = (0..heads).map(|h| logits[h * n + v]).fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for h in 0..heads {
            let e = (logits[h * n + v] - max).exp();
            out[h * n + v] = e;
            sum += e;
        }
        for h in 0..heads {
            out[h * n + v] /= sum;
        }
    }
    out
}

/// nnU-Net's `convert_predicted_logits_to_segmentation_with_correct_shape`: `logits` `(heads, *shape)` in the
/// preprocessed (transposed, cropped, resampled) space → segmentation (and probabilities) in the input's array order.
pub fn export_case(
    logits: &[f32],
    heads: usize,
    shape: [usize; 3],
    props: &CaseProperties,
    s: &ExportSettings,
    want_probabilities: bool,
) -> ExportedCase {
    let tf = s.transpose_forward;
    let sp = props.image.spacing;
    let spacing_transposed = [sp[tf[0]], sp[tf[1]], sp[tf[2]]];
    let current: Vec<f64> = if s.configuration_spacing.len() == 3 {
        s.configuration_spacing.clone()
    } else {
        let mut v = vec![spacing_transposed[0]];
        v.extend(&s.configuration_spacing);
        v
    };
    let cropped = props.shape_after_cropping_and_before_resampling;
    // the resampled logits keep their dtype (nnU-Net's predictor: float16)
    let round: fn(f64) -> f32 = if s.float16_logits { nnunet_augment::tensor::round_f64_to_f16 } else { |v| v as f32 };
    let logits =
        nnunet_data::resample::resample_data_or_seg_to_shape_as(logits, heads, shape, cropped, &current, &spacing_transposed, &s.resampling, round);
    let regions = s.label_manager.has_regions();
    let full = props.shape_before_cropping;
    let bbox = &props.bbox_used_for_cropping;
    let tb = s.transpose_backward;
    let (probabilities, seg) = if want_probabilities {
        let p = probabilities_from_logits(&logits, heads, regions);
        drop(logits);
        let seg = if regions {
            // convert_probabilities_to_segmentation: probability > 0.5 per region
            let n = p.len() / heads.max(1);
            let mut seg = vec![0u16; n];
            let order = s.label_manager.regions_class_order.clone().unwrap_or_default();
            for h in 0..heads {
                let label = order.get(h).copied().unwrap_or(h as i64 + 1) as u16;
                for (o, &v) in seg.iter_mut().zip(&p[h * n..(h + 1) * n]) {
                    if v > 0.5 {
                        *o = label;
                    }
                }
            }
            seg
        } else {
            segmentation_from_logits(&p, heads, &s.label_manager)
        };
        let mut fill = vec![0f32; heads];
        if !regions {
            fill[0] = 1.0;
        }
        let p = revert_crop(&p, heads, cropped, full, bbox, &fill);
        (Some(transpose_spatial(&p, heads, full, tb).0), seg)
    } else {
        let seg = segmentation_from_logits(&logits, heads, &s.label_manager);
        (None, seg)
    };
    let seg = revert_crop(&seg, 1, cropped, full, bbox, &[0u16]);
    let (segmentation, shape) = transpose_spatial(&seg, 1, full, tb);
    ExportedCase { segmentation, shape, probabilities }
}

/// One input case: its identifier and channel files (`<id>_XXXX<ending>`, sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputCase {
    pub id: String,
    pub files: Vec<PathBuf>,
}

/// nnU-Net's `create_lists_from_splitted_dataset_folder`: identifiers (file name minus `_XXXX<ending>`, sorted) and
/// their channel files.
pub fn list_input_cases(folder: &Path, file_ending: &str) -> Result<Vec<InputCase>, InferenceError> {
    let rd =
        std::fs::read_dir(folder).map_err(|e| InferenceError::Input(format!("{}: cannot read the input folder: {e}", folder.display())))?;
    let mut files: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(file_ending))
        .collect();
    files.sort();
    let is_channel = |name: &str, id: &str| {
        name.strip_prefix(id).and_then(|r| r.strip_suffix(file_ending)).is_some_and(|r| {
            let b = r.as_bytes();
            b.len() == 5 && b[0] == b'_' && b[1..].iter().all(u8::is_ascii_digit)
        })
    };
    let crop = file_ending.len() + 5;
    let mut ids: Vec<String> =
        files.iter().filter(|f| f.len() > crop && f.is_char_boundary(f.len() - crop)).map(|f| f[..f.len() - crop].to_string()).collect();
    ids.sort();
    ids.dedup();
    Ok(ids
        .into_iter()
        .map(|id| {
            let files = files.iter().filter(|f| is_channel(f, &id)).map(|f| folder.join(f)).collect();
            InputCase { id, files }
        })
        .collect())
}

/// Options of [`Predictor::predict_from_folder`] (the CLI flags of `nnUNetv2_predict`).
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Tile step as a fraction of the patch, `0 < s ≤ 1`.
    pub step_size: f64,
    /// Mirror TTA over the checkpoint's `inference_allowed_mirroring_axes`.
    pub use_mirroring: bool,
    pub save_probabilities: bool,
    /// `false` (= `--continue_prediction`): skip cases whose output (and `.npz` when requested) exists.
    pub overwrite: bool,
    pub num_parts: usize,
    pub part_id: usize,
    /// Folder with the previous stage's segmentations (cascade).
    pub prev_stage_predictions: Option<PathBuf>,
    /// Threads reading/preprocessing cases (0 counts as 1).
    pub preprocessing_workers: usize,
    /// Threads exporting cases (0 counts as 1).
    pub export_workers: usize,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            step_size: 0.5,
            use_mirroring: true,
            save_probabilities: false,
            overwrite: true,
            num_parts: 1,
            part_id: 0,
            prev_stage_predictions: None,
            preprocessing_workers: 3,
            export_workers: 3,
        }
    }
}

/// Progress events of [`Predictor::predict_from_folder`] (called from several threads).
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// Case lists are known.
    Listed { in_folder: usize, this_part: usize, to_predict: usize },
    /// The network starts on a case (`index` of `total`, in the order cases become ready).
    Predicting { case: &'a str, index: usize, total: usize },
    /// A case's output was written.
    Written { case: &'a str },
    /// A case failed and was skipped.
    Failed { case: &'a str, message: &'a str },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PredictReport {
    pub cases_in_folder: usize,
    /// Cases of this part (`cases[part_id::num_parts]`).
    pub cases_in_part: usize,
    /// Skipped because their output exists (`overwrite = false`).
    pub skipped_existing: Vec<String>,
    /// Written, sorted.
    pub written: Vec<String>,
    /// `(case, message)`, sorted by case.
    pub failed: Vec<(String, String)>,
}

/// A loaded model: plans, dataset.json and one network per fold.
pub struct Predictor {
    pub model_dir: PathBuf,
    pub plans: Plans,
    pub dataset_json: DatasetJson,
    /// From the first fold's checkpoint.
    pub configuration: String,
    pub trainer_name: String,
    pub folds: Vec<String>,
    pub preprocess: PreprocessConfig,
    pub export: ExportSettings,
    /// Patch `[z, y, x]` (`[1, y, x]` for 2-D configurations).
    pub patch: [usize; 3],
    pub spatial_dims: usize,
    /// From the first fold's checkpoint; `None` = no mirroring (as nnU-Net).
    pub allowed_mirroring_axes: Option<Vec<usize>>,
    /// The configuration's `previous_stage` (cascade).
    pub previous_stage: Option<String>,
    pub normalization: NormalizationRegistry,
    networks: Vec<Box<dyn Network>>,
    device: Device,
    /// The backend's autocast: nnU-Net predicts under fp16 autocast on cuda.
    mixed_precision: Option<std::sync::Arc<dyn nnunet_core::MixedPrecision>>,
}

fn resampling_probabilities(cfg: &Map<String, Value>, name: &str) -> Result<ResampleOptions, String> {
    if cfg.get("resampling_fn_probabilities").is_none() && cfg.get("resampling_fn_probabilities_kwargs").is_none() {
        // nnU-Net's default for probabilities: linear, nearest along a separate z axis
        return Ok(ResampleOptions { is_seg: false, order: 1, order_z: 0, force_separate_z: None, ..ResampleOptions::default() });
    }
    nnunet_data::preprocess::resample_options(cfg, "resampling_fn_probabilities", "resampling_fn_probabilities_kwargs", name).map_err(|e| e.to_string())
}

fn perm3(v: Option<&Value>, default: [usize; 3]) -> Option<[usize; 3]> {
    let Some(v) = v else { return Some(default) };
    let t: Vec<usize> = v.as_array()?.iter().map(|x| x.as_u64().map(|x| x as usize)).collect::<Option<_>>()?;
    let mut s = t.clone();
    s.sort_unstable();
    (s == [0, 1, 2]).then(|| [t[0], t[1], t[2]])
}

impl Predictor {
    /// nnU-Net's `initialize_from_trained_model_folder`. `folds = None` auto-detects them; `checkpoint_name` may carry
    /// nnU-Net's `.pth` suffix. Trainer, configuration and mirroring axes come from the first fold's checkpoint.
    pub fn from_model_folder(
        model_dir: &Path,
        folds: Option<&[String]>,
        checkpoint_name: &str,
        device: &Device,
    ) -> Result<Self, InferenceError> {
        let chk = checkpoint_folder_name(checkpoint_name);
        let folds: Vec<String> = match folds {
            Some(f) => f.to_vec(),
            None => auto_detect_folds(model_dir, checkpoint_name),
        };
        if folds.is_empty() {
            return Err(model_err(model_dir, format!("no fold_* folder with a {chk} checkpoint")));
        }
        let plans: Plans = nnunet_schema::json::read_json(&model_dir.join("plans.json")).map_err(|e| model_err(model_dir, e))?;
        let dataset_json: DatasetJson =
            nnunet_schema::json::read_json(&model_dir.join("dataset.json")).map_err(|e| model_err(model_dir, e))?;
        let stored = |f: &str| {
            let fold = model_dir.join(format!("fold_{f}"));
            checkpoint::Stored::locate(&fold, chk).ok_or_else(|| {
                model_err(model_dir, format!("fold {f}: checkpoint {} (our folder) or {}.pth not found", fold.join(chk).display(), chk))
            })
        };
        let mut first_opened = Some(stored(&folds[0])?.open().map_err(|e| model_err(model_dir, e))?);
        let first = first_opened.as_ref().map(|o| o.meta().clone()).expect("just opened");
        let configuration = first.configuration.clone();
        let cfg = plans.configuration(&configuration).map_err(|e| model_err(model_dir, e))?;
        let preprocess = PreprocessConfig::from_plans(&plans, &configuration, &dataset_json).map_err(|e| model_err(model_dir, e))?;
        let label_manager = dataset_json.label_manager().map_err(|e| model_err(model_dir, format!("dataset.json: {e}")))?;
        let patch_v: Vec<usize> = cfg
            .get("patch_size")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .filter(|p: &Vec<usize>| (2..=3).contains(&p.len()) && p.iter().all(|&x| x > 0))
            .ok_or_else(|| model_err(model_dir, format!("configuration '{configuration}': patch_size must be 2 or 3 positive ints")))?;
        let (patch, spatial_dims) =
            if patch_v.len() == 2 { ([1, patch_v[0], patch_v[1]], 2) } else { ([patch_v[0], patch_v[1], patch_v[2]], 3) };
        // the network as trained (with its deep-supervision heads if it had them); only the full-resolution output is used
        let (class, spec) = NetworkSpec::from_configuration(&cfg, &dataset_json, first.deep_supervision.unwrap_or(false))
            .map_err(|e| model_err(model_dir, format!("configuration '{configuration}': {e}")))?;
        let class = class.as_str();
        let previous_stage = cfg.get("previous_stage").and_then(Value::as_str).map(str::to_string);
        let registry = nnunet_core::registry::architectures().map_err(|e| model_err(model_dir, e))?;
        let entry = registry.get(class).map_err(|e| model_err(model_dir, e))?;
        let architecture = (entry.make)();
        let mut networks = Vec::new();
        for f in &folds {
            // the first fold's checkpoint is read once (a .pth holds the weights with the metadata)
            let chk = match first_opened.take() {
                Some(o) => o,
                None => stored(f)?.open().map_err(|e| model_err(model_dir, format!("fold {f}: {e}")))?,
            };
            let mut net = architecture.build(&spec, device).map_err(|e| model_err(model_dir, format!("building {class}: {e}")))?;
            chk.load_network(net.as_mut()).map_err(|e| model_err(model_dir, format!("fold {f}: {e}")))?;
            net.to_device(device);
            networks.push(net);
        }
        let transpose_forward = preprocess.transpose_forward;
        let inverse = {
            let mut inv = [0usize; 3];
            for (i, &t) in transpose_forward.iter().enumerate() {
                inv[t] = i;
            }
            inv
        };
        let transpose_backward = perm3(plans.0.get("transpose_backward"), inverse)
            .ok_or_else(|| model_err(model_dir, "plans.json: transpose_backward is not a permutation of [0, 1, 2]"))?;
        let export = ExportSettings {
            transpose_forward,
            transpose_backward,
            configuration_spacing: preprocess.spacing.clone(),
            resampling: resampling_probabilities(&cfg, &configuration).map_err(|e| model_err(model_dir, e))?,
            label_manager,
            float16_logits: true,
        };
        Ok(Self {
            model_dir: model_dir.to_path_buf(),
            plans,
            dataset_json,
            configuration,
            trainer_name: first.trainer_name,
            folds,
            preprocess,
            export,
            patch,
            spatial_dims,
            allowed_mirroring_axes: first.inference_allowed_mirroring_axes,
            previous_stage,
            normalization: NormalizationRegistry::default(),
            networks,
            device: device.clone(),
            mixed_precision: None,
        })
    }

    /// Number of output channels (segmentation heads).
    pub fn num_heads(&self) -> usize {
        self.export.label_manager.num_segmentation_heads()
    }

    /// Number of network input channels (image channels, plus the one-hot previous stage in a cascade).
    pub fn num_input_channels(&self) -> usize {
        let c = self.dataset_json.channels().len();
        if self.previous_stage.is_some() { c + self.export.label_manager.foreground_labels().len() } else { c }
    }

    /// Predict under the backend's autocast (`None`: fp32), as nnU-Net predicts under fp16 autocast on cuda.
    pub fn with_mixed_precision(mut self, m: Option<std::sync::Arc<dyn nnunet_core::MixedPrecision>>) -> Self {
        self.mixed_precision = m;
        self
    }

    fn sliding_window(&self, step_size: f64, use_mirroring: bool) -> SlidingWindow {
        let mirror_axes = if use_mirroring { self.allowed_mirroring_axes.clone().unwrap_or_default() } else { Vec::new() };
        SlidingWindow { patch: self.patch, spatial_dims: self.spatial_dims, step_size, mirror_axes, num_heads: self.num_heads() }
    }

    /// Logits `(heads, *shape)` of preprocessed `data` `(c, *shape)`: sliding window per fold, averaged over folds.
    pub fn predict_preprocessed(&self, data: &[f32], shape: [usize; 4], step_size: f64, use_mirroring: bool) -> Vec<f32> {
        let sw = self.sliding_window(step_size, use_mirroring);
        let mut acc: Option<Vec<f32>> = None;
        for net in &self.networks {
            let l = match &self.mixed_precision {
                None => predict_logits(net.as_ref(), data, shape, &sw, &self.device),
                Some(m) => {
                    let mut out = None;
                    m.autocast(&mut || out = Some(predict_logits(net.as_ref(), data, shape, &sw, &self.device)));
                    out.expect("autocast ran the prediction")
                }
            };
            match &mut acc {
                None => acc = Some(l),
                Some(a) => a.iter_mut().zip(&l).for_each(|(a, b)| *a += b),
            }
        }
        let mut out = acc.unwrap_or_default();
        let k = self.networks.len() as f32;
        if k > 1.0 {
            out.iter_mut().for_each(|v| *v /= k);
        }
        out
    }

    /// The plans' reader/writer (or the dataset's, determined from `example`).
    pub fn writer(&self, example: Option<&Path>) -> Result<Box<dyn ImageReaderWriter>, InferenceError> {
        if let Some(rw) = reader_writer_by_name(&self.preprocess.image_reader_writer) {
            return Ok(rw);
        }
        let Some(example) = example else {
            return Err(InferenceError::Input(format!("image reader/writer '{}' is not implemented", self.preprocess.image_reader_writer)));
        };
        determine_reader_writer(self.dataset_json.reader_writer_override(), &self.dataset_json.file_ending, example)
            .map_err(|e| InferenceError::Input(e.to_string()))
    }

    /// nnU-Net's `predict_from_files` on a folder: writes `<output>/<case><file_ending>` per case (plus `.npz`, `.pkl`,
    /// `.json` with `save_probabilities`) and `dataset.json`, `plans.json`, `predict_from_raw_data_args.json`.
    pub fn predict_from_folder(
        &self,
        input: &Path,
        output: &Path,
        opts: &PredictOptions,
        progress: &(dyn Fn(Progress<'_>) + Sync),
    ) -> Result<PredictReport, InferenceError> {
        if !(opts.step_size > 0.0 && opts.step_size <= 1.0) {
            return Err(InferenceError::Input(format!("step size must be in (0, 1], got {}", opts.step_size)));
        }
        if opts.num_parts == 0 || opts.part_id >= opts.num_parts {
            return Err(InferenceError::Input(format!(
                "part id {} must be smaller than the number of parts {} (part ids start at 0)",
                opts.part_id, opts.num_parts
            )));
        }
        if let Some(prev) = &self.previous_stage {
            match &opts.prev_stage_predictions {
                None => {
                    return Err(InferenceError::Input(format!(
                        "configuration '{}' is a cascade: it needs the segmentations of the previous stage ({prev}); give their folder \
                         with -prev_stage_predictions",
                        self.configuration
                    )));
                }
                Some(p) if !p.is_dir() => {
                    return Err(InferenceError::Input(format!("{}: previous-stage folder not found", p.display())));
                }
                _ => {}
            }
        }
        let ending = self.dataset_json.file_ending.clone();
        let all = list_input_cases(input, &ending)?;
        let cases_in_folder = all.len();
        let part: Vec<InputCase> = all.into_iter().skip(opts.part_id).step_by(opts.num_parts).collect();
        let cases_in_part = part.len();
        std::fs::create_dir_all(output)
            .map_err(|e| InferenceError::Input(format!("{}: cannot create the output folder: {e}", output.display())))?;
        self.write_run_files(input, output, opts)?;

        let mut skipped_existing = Vec::new();
        let todo: Vec<InputCase> = part
            .into_iter()
            .filter(|c| {
                let done = output.join(format!("{}{ending}", c.id)).is_file()
                    && (!opts.save_probabilities || output.join(format!("{}.npz", c.id)).is_file());
                if !opts.overwrite && done {
                    skipped_existing.push(c.id.clone());
                    false
                } else {
                    true
                }
            })
            .collect();
        progress(Progress::Listed { in_folder: cases_in_folder, this_part: cases_in_part, to_predict: todo.len() });
        if todo.is_empty() {
            return Ok(PredictReport { cases_in_folder, cases_in_part, skipped_existing, ..Default::default() });
        }
        let rw = self.writer(todo[0].files.first().map(PathBuf::as_path))?;
        let rw: &dyn ImageReaderWriter = rw.as_ref();

        let failed: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
        let written: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let fail = |case: &str, message: String| {
            progress(Progress::Failed { case, message: &message });
            failed.lock().unwrap_or_else(|e| e.into_inner()).push((case.to_string(), message));
        };
        let next = AtomicUsize::new(0);
        let total = todo.len();
        let n_pre = opts.preprocessing_workers.max(1).min(total);
        let n_exp = opts.export_workers.max(1).min(total);
        let heads = self.num_heads();
        let export = &self.export;
        let expected_channels = self.dataset_json.channels().len();
        let prep = Preprocessing {
            cfg: &self.preprocess,
            registry: &self.normalization,
            reader: rw,
            expected_channels,
            prev_stage: if self.previous_stage.is_some() { opts.prev_stage_predictions.as_deref() } else { None },
            file_ending: &ending,
            foreground_labels: export.label_manager.foreground_labels(),
        };
        let (exp_tx, exp_rx) = std::sync::mpsc::sync_channel::<(String, Vec<f32>, [usize; 3], CaseProperties)>(n_exp);
        let exp_rx = Mutex::new(exp_rx);
        std::thread::scope(|s| {
            let (pre_tx, pre_rx) = std::sync::mpsc::sync_channel::<(String, Result<PreprocessedCase, String>)>(n_pre);
            for _ in 0..n_pre {
                let tx = pre_tx.clone();
                let (todo, next, prep) = (&todo, &next, &prep);
                s.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(case) = todo.get(i) else { break };
                        let r = prep.run(case);
                        if tx.send((case.id.clone(), r)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(pre_tx);
            for _ in 0..n_exp {
                let (exp_rx, fail, written, ending) = (&exp_rx, &fail, &written, &ending);
                s.spawn(move || {
                    loop {
                        let job = exp_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((case, logits, shape, props)) = job else { break };
                        let r = write_case(&case, &logits, heads, shape, &props, export, rw, output, ending, opts.save_probabilities);
                        drop(logits);
                        match r {
                            Ok(()) => {
                                progress(Progress::Written { case: &case });
                                written.lock().unwrap_or_else(|e| e.into_inner()).push(case);
                            }
                            Err(m) => fail(&case, m),
                        }
                    }
                });
            }
            for (index, (case, r)) in pre_rx.iter().enumerate() {
                let pc = match r {
                    Ok(pc) => pc,
                    Err(m) => {
                        fail(&case, m);
                        continue;
                    }
                };
                progress(Progress::Predicting { case: &case, index, total });
                let [z, y, x] = pc.shape;
                let logits = self.predict_preprocessed(&pc.data, [pc.channels, z, y, x], opts.step_size, opts.use_mirroring);
                if logits.iter().any(|v| !v.is_finite()) {
                    fail(&case, "the network produced non-finite logits (inf/NaN)".to_string());
                    continue;
                }
                if exp_tx.send((case, logits, pc.shape, pc.properties)).is_err() {
                    break;
                }
            }
            drop(exp_tx);
        });
        let mut written = written.into_inner().unwrap_or_else(|e| e.into_inner());
        written.sort();
        let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
        failed.sort();
        Ok(PredictReport { cases_in_folder, cases_in_part, skipped_existing, written, failed })
    }

    fn write_run_files(&self, input: &Path, output: &Path, opts: &PredictOptions) -> Result<(), InferenceError> {
        let w = |name: &str, v: &Value| {
            nnunet_schema::json::write_json_atomic(&output.join(name), v).map_err(|e| InferenceError::Input(e.to_string()))
        };
        let args = serde_json::json!({
            "list_of_lists_or_source_folder": input.display().to_string(),
            "output_folder_or_list_of_truncated_output_files": output.display().to_string(),
            "save_probabilities": opts.save_probabilities,
            "overwrite": opts.overwrite,
            "num_processes_preprocessing": opts.preprocessing_workers,
            "num_processes_segmentation_export": opts.export_workers,
            "folder_with_segs_from_prev_stage": opts.prev_stage_predictions.as_ref().map(|p| p.display().to_string()),
            "num_parts": opts.num_parts,
            "part_id": opts.part_id,
        });
        w("predict_from_raw_data_args.json", &args)?;
        // dataset.json as the model folder has it (verbatim key order), plans as loaded
        let dj: Value =
            nnunet_schema::json::read_json(&self.model_dir.join("dataset.json")).map_err(|e| InferenceError::Input(e.to_string()))?;
        w("dataset.json", &dj)?;
        w("plans.json", &Value::Object(self.plans.0.clone()))
    }
}

struct Preprocessing<'a> {
    cfg: &'a PreprocessConfig,
    registry: &'a NormalizationRegistry,
    reader: &'a dyn ImageReaderWriter,
    expected_channels: usize,
    prev_stage: Option<&'a Path>,
    file_ending: &'a str,
    foreground_labels: Vec<i64>,
}

impl Preprocessing<'_> {
    fn run(&self, case: &InputCase) -> Result<PreprocessedCase, String> {
        if case.files.len() != self.expected_channels {
            return Err(format!(
                "expected {} channel file(s) {}_0000{} … but found {}",
                self.expected_channels,
                case.id,
                self.file_ending,
                case.files.len()
            ));
        }
        let images = self.reader.read_images(&case.files).map_err(|e| e.to_string())?;
        let prev = match self.prev_stage {
            None => None,
            Some(dir) => {
                let f = dir.join(format!("{}{}", case.id, self.file_ending));
                if !f.is_file() {
                    return Err(format!("{}: previous-stage segmentation not found", f.display()));
                }
                Some(self.reader.read_seg(&f).map_err(|e| e.to_string())?)
            }
        };
        let mut pc = preprocess_case_arrays(&case.id, &images, prev.as_ref(), self.cfg, self.registry).map_err(|e| e.to_string())?;
        if prev.is_some() {
            // convert_labelmap_to_one_hot(seg[0], foreground_labels) stacked after the image channels
            for &l in &self.foreground_labels {
                pc.data.extend(pc.seg.iter().map(|&s| if s as i64 == l { 1.0f32 } else { 0.0 }));
                pc.channels += 1;
            }
        }
        pc.seg = Vec::new();
        Ok(pc)
    }
}

/// Export one case's logits (resample back, argmax, un-crop, transpose back) and write `<output>/<case><ending>`
/// (plus `.npz`/`.pkl`/`.json` when `save_probabilities`).
#[allow(clippy::too_many_arguments)]
pub fn write_case(
    case: &str,
    logits: &[f32],
    heads: usize,
    shape: [usize; 3],
    props: &CaseProperties,
    s: &ExportSettings,
    rw: &dyn ImageReaderWriter,
    output: &Path,
    ending: &str,
    save_probabilities: bool,
) -> Result<(), String> {
    let e = export_case(logits, heads, shape, props, s, save_probabilities);
    if let Some(p) = &e.probabilities {
        let sh = [heads, e.shape[0], e.shape[1], e.shape[2]];
        let npy = nnunet_data::npy::to_bytes_f32(p, &sh);
        let zip = npz_bytes(&[("probabilities.npy", &npy)]).map_err(|e| format!("{case}.npz: {e}"))?;
        nnunet_schema::json::write_atomic(&output.join(format!("{case}.npz")), &zip).map_err(|e| e.to_string())?;
        let pv = serde_json::to_value(props).map_err(|e| e.to_string())?;
        let pickled = nnunet_data::pickle::to_bytes(&nnunet_data::storage::properties_to_python(props));
        nnunet_schema::json::write_atomic(&output.join(format!("{case}.pkl")), &pickled).map_err(|e| e.to_string())?;
        nnunet_schema::json::write_json_atomic(&output.join(format!("{case}.json")), &pv).map_err(|e| e.to_string())?;
    }
    let seg: Vec<f32> = e.segmentation.iter().map(|&v| v as f32).collect();
    rw.write_seg(&seg, e.shape, &output.join(format!("{case}{ending}")), &props.image).map_err(|e| e.to_string())
}

/// A zip archive of `(name, bytes)` entries, deflate-compressed (what `np.savez_compressed` writes; zip64 records are
/// added where sizes or offsets exceed 32 bits).
pub fn npz_bytes(entries: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    zip_bytes(entries, None)
}

/// A zip archive of `(name, bytes)` entries, in memory (see [`crate::zip::ZipWriter`]): deflate-compressed, or with
/// `stored_alignment = Some(a)` stored uncompressed with every entry's data starting at a multiple of `a` bytes.
pub fn zip_bytes(entries: &[(&str, &[u8])], stored_alignment: Option<usize>) -> std::io::Result<Vec<u8>> {
    let mut w = crate::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()), stored_alignment);
    for (name, data) in entries {
        w.add(name, data)?;
    }
    Ok(w.finish()?.into_inner())
}

/// A pickle of a JSON value (objects → dicts with str keys, arrays → lists, numbers → int/float, strings, bools, None).
pub fn pickle_json(v: &Value) -> Vec<u8> {
    nnunet_data::pickle::to_bytes(&nnunet_data::pickle::PyValue::from_json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lm(labels: &str, order: Option<&[i64]>) -> LabelManager {
        LabelManager::new(&serde_json::from_str(labels).unwrap(), order).unwrap()
    }

    fn settings(tf: [usize; 3], tb: [usize; 3], spacing: Vec<f64>) -> ExportSettings {
        ExportSettings {
            transpose_forward: tf,
            transpose_backward: tb,
            configuration_spacing: spacing,
            resampling: ResampleOptions {
                is_seg: false,
                order: 1,
                order_z: 0,
                force_separate_z: None,
                separate_z_anisotropy_threshold: 3.0,
            },
            label_manager: lm(r#"{"background":0,"a":1,"b":2}"#, None),
            float16_logits: false,
        }
    }

    fn props(spacing: [f64; 3], before: [usize; 3], bbox: BBox) -> CaseProperties {
        let after = [bbox[0][1] - bbox[0][0], bbox[1][1] - bbox[1][0], bbox[2][1] - bbox[2][0]];
        CaseProperties {
            image: nnunet_data::ImageProperties { sitk_stuff: None, nibabel_stuff: None, spacing },
            shape_before_cropping: before,
            bbox_used_for_cropping: bbox,
            shape_after_cropping_and_before_resampling: after,
            class_locations: None,
        }
    }

    #[test]
    fn checkpoint_names_map_to_folders() {
        assert_eq!(checkpoint_folder_name("checkpoint_final.pth"), "checkpoint_final");
        assert_eq!(checkpoint_folder_name("checkpoint_best"), "checkpoint_best");
    }

    #[test]
    fn uncrop_places_the_box_and_fills_outside() {
        // (2, 1, 2, 2) into (2, 2, 3, 3) at z 1..2, y 1..3, x 0..2
        let a = [1, 2, 3, 4, 5, 6, 7, 8];
        let bbox = [[1, 2], [1, 3], [0, 2]];
        let r = revert_crop(&a, 2, [1, 2, 2], [2, 3, 3], &bbox, &[9, 0]);
        assert_eq!(r.len(), 36);
        assert!(r[..9].iter().all(|&v| v == 9));
        assert_eq!(&r[9..18], &[9, 9, 9, 1, 2, 9, 3, 4, 9]);
        assert!(r[18..27].iter().all(|&v| v == 0));
        assert_eq!(&r[27..36], &[0, 0, 0, 5, 6, 0, 7, 8, 0]);
    }

    #[test]
    fn argmax_and_regions() {
        let l = lm(r#"{"background":0,"a":1,"b":2}"#, None);
        // 3 heads, 2 voxels: voxel 0 → head 2, voxel 1 → tie between 0 and 1 → first (0)
        let logits = [0.0, 1.0, -1.0, 1.0, 3.0, 0.5];
        assert_eq!(segmentation_from_logits(&logits, 3, &l), vec![2, 0]);
        let r = lm(r#"{"background":0,"whole":[1,2],"core":2}"#, Some(&[1, 2]));
        // heads: whole, core; voxel 0: whole only → 1; voxel 1: both → 2 (later overwrites); voxel 2: none
        let logits = [2.0, 2.0, -2.0, -1.0, 3.0, -3.0];
        assert_eq!(segmentation_from_logits(&logits, 2, &r), vec![1, 2, 0]);
        let p = probabilities_from_logits(&[0.0, 1.0, 1.0, 1.0], 2, false);
        assert!((p[0] - 0.26894143).abs() < 1e-6 && (p[0] + p[2] - 1.0).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn export_resamples_uncrops_and_transposes_back() {
        // original image (z, y, x) = (4, 6, 5), spacing (2, 1, 1); transpose_forward [2, 0, 1] → transposed shape
        // (5, 4, 6), transposed spacing (1, 2, 1); crop bbox in transposed axes; configuration spacing (1, 1, 1)
        // doubles the middle axis.
        let tf = [2, 0, 1];
        let tb = [1, 2, 0];
        let s = settings(tf, tb, vec![1.0, 1.0, 1.0]);
        let bbox = [[1, 4], [0, 2], [2, 6]];
        let p = props([2.0, 1.0, 1.0], [5, 4, 6], bbox);
        let shape = [3, 4, 4]; // cropped (3, 2, 4) resampled to spacing 1 → (3, 4, 4)
        let n = 3 * 4 * 4;
        // head 1 wins everywhere except x-slab k == 0 (head 2)
        let mut logits = vec![0f32; 3 * n];
        for v in 0..n {
            let k = v % 4;
            if k == 0 {
                logits[2 * n + v] = 5.0;
            } else {
                logits[n + v] = 5.0;
            }
        }
        let e = export_case(&logits, 3, shape, &p, &s, true);
        assert_eq!(e.shape, [4, 6, 5]);
        assert_eq!(e.segmentation.len(), 120);
        // back in transposed space: t[a][b][c] = orig[b][c][a] (output axis k of transposed is original axis tf[k])
        let at = |a: usize, b: usize, c: usize| e.segmentation[(b * 6 + c) * 5 + a];
        for a in 0..5 {
            for b in 0..4 {
                for c in 0..6 {
                    let inside = (1..4).contains(&a) && (0..2).contains(&b) && (2..6).contains(&c);
                    let want = if !inside {
                        0
                    } else if c == 2 {
                        2
                    } else {
                        1
                    };
                    assert_eq!(at(a, b, c), want, "at {a} {b} {c}");
                }
            }
        }
        let probs = e.probabilities.unwrap();
        assert_eq!(probs.len(), 3 * 120);
        for v in 0..120 {
            let sum: f32 = (0..3).map(|h| probs[h * 120 + v]).sum();
            assert!((sum - 1.0).abs() < 1e-5);
        }
        // outside the bbox: background probability 1
        assert_eq!(probs[0], 1.0);
    }

    #[test]
    fn two_d_configuration_uses_original_axis0_spacing() {
        // 2-D configuration spacing (0.5, 0.5); image spacing (3, 1, 1); logits at (2, 4, 4) → cropped (2, 2, 2)
        let mut s = settings([0, 1, 2], [0, 1, 2], vec![0.5, 0.5]);
        s.label_manager = lm(r#"{"background":0,"a":1}"#, None);
        let p = props([3.0, 1.0, 1.0], [2, 2, 2], [[0, 2], [0, 2], [0, 2]]);
        let logits = vec![0f32; 2 * 2 * 4 * 4];
        let e = export_case(&logits, 2, [2, 4, 4], &p, &s, false);
        assert_eq!(e.shape, [2, 2, 2]);
        assert!(e.probabilities.is_none());
    }

    #[test]
    fn input_cases_are_grouped_by_identifier() {
        let d = std::env::temp_dir().join(format!("nnunet-inference-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["b_0000.nii.gz", "a_0001.nii.gz", "a_0000.nii.gz", "c.nii.gz", "x_0000.png"] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        let cases = list_input_cases(&d, ".nii.gz").unwrap();
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(cases[0].files, vec![d.join("a_0000.nii.gz"), d.join("a_0001.nii.gz")]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn pickle_of_json_has_the_protocol_frame() {
        let v = serde_json::json!({"spacing": [1.0, 2.5], "n": 3, "s": "x", "none": null, "empty": []});
        let p = pickle_json(&v);
        assert_eq!(&p[..3], &[0x80, 3, b'}']);
        assert_eq!(*p.last().unwrap(), b'.');
    }

    #[test]
    fn npz_is_a_zip_with_one_deflated_entry() {
        let npy = nnunet_data::npy::to_bytes_f32(&[1.0, 2.0], &[2]);
        let z = npz_bytes(&[("probabilities.npy", &npy)]).unwrap();
        assert_eq!(&z[..4], &[0x50, 0x4b, 3, 4]);
        assert_eq!(&z[z.len() - 22..z.len() - 18], &[0x50, 0x4b, 5, 6]);
    }
}
/// Export equal to nnU-Net 2.8.1's `convert_predicted_logits_to_segmentation_with_correct_shape` (transpose [2, 0, 1],
/// crop, separate-z resampling back): reference arrays written by `tests/fixtures/export_reference/gen.py`.
#[cfg(test)]
mod nnunet_reference {
    use super::*;
    #[test]
    fn export_equals_nnunet() {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export_reference");
        let (logits, sh): (Vec<f32>, Vec<usize>) = nnunet_data::npy::read(&d.join("logits.npy")).unwrap();
        let (seg, _): (Vec<i16>, Vec<usize>) = nnunet_data::npy::read(&d.join("seg.npy")).unwrap();
        let (probs, _): (Vec<f32>, Vec<usize>) = nnunet_data::npy::read(&d.join("probs.npy")).unwrap();
        let pj: Value = serde_json::from_str(&std::fs::read_to_string(d.join("props.json")).unwrap()).unwrap();
        let props = CaseProperties {
            image: nnunet_data::ImageProperties {
                sitk_stuff: None,
                nibabel_stuff: None,
                spacing: serde_json::from_value(pj["spacing"].clone()).unwrap(),
            },
            shape_before_cropping: serde_json::from_value(pj["shape_before_cropping"].clone()).unwrap(),
            bbox_used_for_cropping: serde_json::from_value(pj["bbox_used_for_cropping"].clone()).unwrap(),
            shape_after_cropping_and_before_resampling: serde_json::from_value(pj["shape_after_cropping_and_before_resampling"].clone())
                .unwrap(),
            class_locations: None,
        };
        let s = ExportSettings {
            transpose_forward: [2, 0, 1],
            transpose_backward: [1, 2, 0],
            configuration_spacing: vec![1.0, 1.0, 1.0],
            resampling: ResampleOptions {
                is_seg: false,
                order: 1,
                order_z: 0,
                force_separate_z: None,
                separate_z_anisotropy_threshold: 3.0,
            },
            label_manager: LabelManager::new(&serde_json::from_str(r#"{"background":0,"a":1,"b":2}"#).unwrap(), None).unwrap(),
            // the reference called nnU-Net's export on float32 logits
            float16_logits: false,
        };
        let e = export_case(&logits, 3, [sh[1], sh[2], sh[3]], &props, &s, true);
        assert_eq!(e.shape, [5, 12, 11]);
        let diff = e.segmentation.iter().zip(&seg).filter(|(a, b)| **a as i16 != **b).count();
        let p = e.probabilities.unwrap();
        let maxd = p.iter().zip(&probs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let e2 = export_case(&logits, 3, [sh[1], sh[2], sh[3]], &props, &s, false);
        let diff2 = e2.segmentation.iter().zip(&seg).filter(|(a, b)| **a as i16 != **b).count();
        assert_eq!((diff, diff2), (0, 0), "segmentation voxels differing from nnU-Net's");
        assert!(maxd < 1e-5, "probabilities differ from nnU-Net's by {maxd}");
    }
}
