//! nnU-Net's `compute_metrics_on_folder` and its two command-line front ends (`compute_metrics_on_folder2` =
//! `nnUNetv2_evaluate_folder`, `compute_metrics_on_folder_simple` = `nnUNetv2_evaluate_simple`).

use crate::error::{EvalError, Result};
use crate::summary::{CaseMetrics, CaseResult, LabelOrRegion, MeanMetrics, Summary, np_mean, np_nanmean, py_join, save_summary_json};
use nnunet_data::io::{READER_ORDER, reader_writer_by_name};
use nnunet_data::{ImageReaderWriter, determine_reader_writer};
use nnunet_schema::DatasetJson;
use rayon::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// batchgenerators' `subfiles(folder, suffix=..., join=False)`: names of the regular files (symlinks followed)
/// ending in `suffix`, sorted.
pub fn subfiles(folder: &Path, suffix: Option<&str>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|e| EvalError::io(folder, e))? {
        let entry = entry.map_err(|e| EvalError::io(folder, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = std::fs::metadata(entry.path()).map(|m| m.is_file()).unwrap_or(false);
        if is_file && suffix.is_none_or(|s| name.ends_with(s)) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Voxel-pair histogram of (reference, prediction) values over the voxels not ignored. Values are kept as f32 bit
/// patterns (`-0.0` folded into `0.0`) so any voxel value, integer or not, is counted exactly once.
struct PairHistogram {
    dense: Vec<u64>,
    sparse: HashMap<(u32, u32), u64>,
}

const DENSE: usize = 256;

fn dense_index(v: f32) -> Option<usize> {
    if (0.0..DENSE as f32).contains(&v) && v.fract() == 0.0 { Some(v as usize) } else { None }
}

fn bits(v: f32) -> u32 {
    if v == 0.0 { 0 } else { v.to_bits() }
}

impl PairHistogram {
    fn build(reference: &[f32], prediction: &[f32], ignore_label: Option<i64>) -> Self {
        let mut h = PairHistogram { dense: vec![0; DENSE * DENSE], sparse: HashMap::new() };
        let ignore = ignore_label.map(|i| i as f32);
        for (&r, &p) in reference.iter().zip(prediction) {
            if ignore == Some(r) {
                continue;
            }
            match (dense_index(r), dense_index(p)) {
                (Some(a), Some(b)) => h.dense[a * DENSE + b] += 1,
                _ => *h.sparse.entry((bits(r), bits(p))).or_insert(0) += 1,
            }
        }
        h
    }

    fn for_each(&self, mut f: impl FnMut(f32, f32, u64)) {
        for (i, &c) in self.dense.iter().enumerate() {
            if c > 0 {
                f((i / DENSE) as f32, (i % DENSE) as f32, c);
            }
        }
        for (&(r, p), &c) in &self.sparse {
            f(f32::from_bits(r), f32::from_bits(p), c);
        }
    }

    /// `compute_tp_fp_fn_tn` for one label/region.
    fn counts(&self, entry: &LabelOrRegion) -> (u64, u64, u64, u64) {
        let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
        self.for_each(|r, p, c| match (entry.contains(r), entry.contains(p)) {
            (true, true) => tp += c,
            (false, true) => fp += c,
            (true, false) => fn_ += c,
            (false, false) => tn += c,
        });
        (tp, fp, fn_, tn)
    }
}

/// Per-label/region metrics of two segmentations of equal size (nnU-Net's `compute_metrics` minus the I/O).
pub fn compute_metrics_arrays(
    reference: &[f32],
    prediction: &[f32],
    labels_or_regions: &[LabelOrRegion],
    ignore_label: Option<i64>,
) -> BTreeMap<String, CaseMetrics> {
    assert_eq!(reference.len(), prediction.len(), "reference and prediction differ in size");
    let h = PairHistogram::build(reference, prediction, ignore_label);
    labels_or_regions
        .iter()
        .map(|e| {
            let (tp, fp, fn_, tn) = h.counts(e);
            (e.key(), CaseMetrics::from_counts(tp, fp, fn_, tn))
        })
        .collect()
}

/// nnU-Net's `compute_metrics`: read both files with `reader` and compare.
pub fn compute_metrics(
    reference_file: &str,
    prediction_file: &str,
    reader: &dyn ImageReaderWriter,
    labels_or_regions: &[LabelOrRegion],
    ignore_label: Option<i64>,
) -> Result<CaseResult> {
    let (rp, pp) = (Path::new(reference_file), Path::new(prediction_file));
    if !rp.is_file() {
        return Err(EvalError::MissingReference { reference: rp.to_path_buf(), prediction: pp.to_path_buf() });
    }
    let r = reader.read_seg(rp)?;
    let p = reader.read_seg(pp)?;
    let (rs, ps) = ([r.channels, r.shape[0], r.shape[1], r.shape[2]], [p.channels, p.shape[0], p.shape[1], p.shape[2]]);
    if rs != ps {
        return Err(EvalError::ShapeMismatch {
            reference: rp.to_path_buf(),
            prediction: pp.to_path_buf(),
            reference_shape: rs,
            prediction_shape: ps,
        });
    }
    Ok(CaseResult {
        metrics: compute_metrics_arrays(&r.data, &p.data, labels_or_regions, ignore_label),
        prediction_file: prediction_file.to_string(),
        reference_file: reference_file.to_string(),
    })
}

/// Means over cases (`np.nanmean` per label/region and metric) and the foreground mean (`np.mean` over the
/// labels/regions except the label `0`), as in nnU-Net.
pub fn aggregate(cases: Vec<CaseResult>, labels_or_regions: &[LabelOrRegion]) -> Summary {
    let mut mean = BTreeMap::new();
    let mut per_entry = Vec::new();
    for e in labels_or_regions {
        let key = e.key();
        let col = |f: &dyn Fn(&CaseMetrics) -> f64| -> f64 {
            let v: Vec<f64> = cases.iter().map(|c| f(&c.metrics[&key])).collect();
            np_nanmean(&v)
        };
        let m = MeanMetrics {
            Dice: col(&|m| m.Dice),
            FN: col(&|m| m.FN as f64),
            FP: col(&|m| m.FP as f64),
            IoU: col(&|m| m.IoU),
            TN: col(&|m| m.TN as f64),
            TP: col(&|m| m.TP as f64),
            n_pred: col(&|m| m.n_pred as f64),
            n_ref: col(&|m| m.n_ref as f64),
        };
        if *e != LabelOrRegion::Label(0) {
            per_entry.push(m);
        }
        mean.insert(key, m);
    }
    let fg = |f: &dyn Fn(&MeanMetrics) -> f64| -> f64 { np_mean(&per_entry.iter().map(f).collect::<Vec<_>>()) };
    let foreground_mean = MeanMetrics {
        Dice: fg(&|m| m.Dice),
        FN: fg(&|m| m.FN),
        FP: fg(&|m| m.FP),
        IoU: fg(&|m| m.IoU),
        TN: fg(&|m| m.TN),
        TP: fg(&|m| m.TP),
        n_pred: fg(&|m| m.n_pred),
        n_ref: fg(&|m| m.n_ref),
    };
    Summary { foreground_mean, mean, metric_per_case: cases }
}

pub(crate) fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    if threads == 0 {
        return Ok(f());
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| EvalError::ThreadPool(e.to_string()))?;
    Ok(pool.install(f))
}

/// nnU-Net's `compute_metrics_on_folder`.
///
/// Cases are the files ending in `file_ending` in `prediction_dir` (sorted); each is compared with the file of the
/// same name in `reference_dir`. Without `chill`, every reference file must have a prediction (else
/// [`EvalError::MissingPredictions`] listing them). Paths in the summary are `os.path.join(dir, name)` of the
/// directories as given. `threads == 0` uses rayon's global pool. With `output_file`, `summary.json` is written
/// (atomically) byte-identical to nnU-Net's.
#[allow(clippy::too_many_arguments)]
pub fn compute_metrics_on_folder(
    reference_dir: &Path,
    prediction_dir: &Path,
    output_file: Option<&Path>,
    reader: &dyn ImageReaderWriter,
    file_ending: &str,
    regions_or_labels: &[LabelOrRegion],
    ignore_label: Option<i64>,
    threads: usize,
    chill: bool,
) -> Result<Summary> {
    if let Some(o) = output_file
        && !o.to_string_lossy().ends_with(".json")
    {
        return Err(EvalError::Invalid { path: o.to_path_buf(), message: "output_file should end with .json".into() });
    }
    if regions_or_labels.is_empty() {
        return Err(EvalError::NoLabels);
    }
    let files_pred = subfiles(prediction_dir, Some(file_ending))?;
    if !chill {
        let files_ref = subfiles(reference_dir, Some(file_ending))?;
        let missing: Vec<String> = files_ref.into_iter().filter(|f| !prediction_dir.join(f).is_file()).collect();
        if !missing.is_empty() {
            return Err(EvalError::MissingPredictions {
                reference_dir: reference_dir.to_path_buf(),
                prediction_dir: prediction_dir.to_path_buf(),
                missing,
            });
        }
    }
    if files_pred.is_empty() {
        return Err(EvalError::NoFiles { dir: prediction_dir.to_path_buf(), file_ending: file_ending.to_string() });
    }
    let (rd, pd) = (path_str(reference_dir), path_str(prediction_dir));
    let cases = with_threads(threads, || {
        files_pred
            .par_iter()
            .map(|f| compute_metrics(&py_join(&rd, f), &py_join(&pd, f), reader, regions_or_labels, ignore_label))
            .collect::<Result<Vec<_>>>()
    })??;
    let summary = aggregate(cases, regions_or_labels);
    if let Some(o) = output_file {
        save_summary_json(&summary, o)?;
    }
    Ok(summary)
}

/// The evaluated entries and the ignore label of a dataset.json, as nnU-Net's `LabelManager` gives them to the
/// evaluation: `foreground_regions` if the dataset is region based, else `foreground_labels`.
///
/// Region datasets keep nnU-Net's distinction between a plain int value (`"anterior": 1` → key `"1"`) and a list
/// (`"posterior": [2]` → key `"(2,)"`), which [`nnunet_schema::LabelManager`] flattens; its checks are applied first.
pub fn labels_or_regions_from_dataset(dataset: &DatasetJson) -> Result<(Vec<LabelOrRegion>, Option<i64>), String> {
    let lm = dataset.label_manager()?;
    let entries = if lm.has_regions() {
        let mut out = Vec::new();
        for (name, v) in &dataset.labels {
            if name == "ignore" {
                continue;
            }
            let e = match v {
                Value::Array(a) => LabelOrRegion::Region(
                    a.iter().map(|x| x.as_i64().ok_or(format!("label '{name}': {v} is not a list of ints"))).collect::<Result<_, _>>()?,
                ),
                other => LabelOrRegion::Label(other.as_i64().ok_or(format!("label '{name}': {v} is not an int"))?),
            };
            let background = match &e {
                LabelOrRegion::Label(l) => *l == 0,
                LabelOrRegion::Region(r) => !r.is_empty() && r.iter().all(|&x| x == 0),
            };
            if !background {
                out.push(e);
            }
        }
        out
    } else {
        lm.foreground_labels().into_iter().map(LabelOrRegion::Label).collect()
    };
    Ok((entries, lm.ignore_label))
}

/// `nnUNetv2_evaluate_folder GT PRED -djfile dataset.json -pfile plans.json [-o OUT] [-np N] [--chill]`
/// (nnU-Net's `compute_metrics_on_folder2`). The file ending and the labels/regions/ignore label come from
/// `dataset.json`; the reader/writer from `dataset.json` (`overwrite_image_reader_writer`, else the first class
/// that reads the first reference file), as in nnU-Net. The plans file is read and must be a JSON object (nnU-Net
/// reads only its label manager class from it). `output_file` defaults to `PRED/summary.json`.
pub fn evaluate_folder(
    reference_dir: &Path,
    prediction_dir: &Path,
    dataset_json: &Path,
    plans_json: &Path,
    output_file: Option<&Path>,
    threads: usize,
    chill: bool,
) -> Result<Summary> {
    let dataset: DatasetJson = nnunet_schema::json::read_json(dataset_json)?;
    let plans: Value = nnunet_schema::json::read_json(plans_json)?;
    if !plans.is_object() {
        return Err(EvalError::Invalid { path: plans_json.to_path_buf(), message: "plans file is not a JSON object".into() });
    }
    let (entries, ignore) =
        labels_or_regions_from_dataset(&dataset).map_err(|message| EvalError::Labels { path: dataset_json.to_path_buf(), message })?;
    let file_ending = dataset.file_ending.clone();
    let Some(example) = subfiles(reference_dir, Some(&file_ending))?.into_iter().next() else {
        return Err(EvalError::NoFiles { dir: reference_dir.to_path_buf(), file_ending });
    };
    let reader = determine_reader_writer(dataset.reader_writer_override(), &file_ending, &reference_dir.join(example))?;
    let default_out = PathBuf::from(py_join(&path_str(prediction_dir), "summary.json"));
    let out = output_file.unwrap_or(&default_out);
    compute_metrics_on_folder(reference_dir, prediction_dir, Some(out), reader.as_ref(), &file_ending, &entries, ignore, threads, chill)
}

/// Python's `os.path.splitext(path)[1]`: the last `.suffix` of the file name (leading dots do not count).
pub fn py_splitext_ext(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stripped = base.trim_start_matches('.');
    match stripped.rfind('.') {
        Some(i) => &stripped[i..],
        None => "",
    }
}

/// `nnUNetv2_evaluate_simple GT PRED -l L1 L2 … [-il IGNORE] [-o OUT] [-np N] [--chill]` (nnU-Net's
/// `compute_metrics_on_folder_simple`). Like nnU-Net, the file ending is `os.path.splitext` of the first file in
/// `GT` (`.gz` for `.nii.gz`), and the reader is the first class (nnU-Net's order) that can read that file.
pub fn evaluate_simple(
    reference_dir: &Path,
    prediction_dir: &Path,
    labels: &[i64],
    output_file: Option<&Path>,
    threads: usize,
    ignore_label: Option<i64>,
    chill: bool,
) -> Result<Summary> {
    let Some(example) = subfiles(reference_dir, None)?.into_iter().next() else {
        return Err(EvalError::NoFiles { dir: reference_dir.to_path_buf(), file_ending: String::new() });
    };
    let file_ending = py_splitext_ext(&example).to_string();
    let example_path = reference_dir.join(&example);
    let mut tried = Vec::new();
    let mut reader = None;
    for name in READER_ORDER {
        match reader_writer_by_name(name) {
            Some(rw) => match rw.read_images(std::slice::from_ref(&example_path)) {
                Ok(_) => {
                    reader = Some(rw);
                    break;
                }
                Err(e) => tried.push(format!("{name}: {e}")),
            },
            None => tried.push(format!("{name}: not implemented")),
        }
    }
    let Some(reader) = reader else {
        return Err(EvalError::Invalid {
            path: example_path,
            message: format!("unable to determine a reader for file ending {file_ending} ({})", tried.join("; ")),
        });
    };
    let entries: Vec<LabelOrRegion> = labels.iter().map(|&l| LabelOrRegion::Label(l)).collect();
    let default_out = PathBuf::from(py_join(&path_str(prediction_dir), "summary.json"));
    let out = output_file.unwrap_or(&default_out);
    compute_metrics_on_folder(
        reference_dir,
        prediction_dir,
        Some(out),
        reader.as_ref(),
        &file_ending,
        &entries,
        ignore_label,
        threads,
        chill,
    )
}
