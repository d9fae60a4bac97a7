//! nnU-Net's postprocessing (`nnunetv2/postprocessing/remove_connected_components.py`): "remove all but the largest
//! connected component", decided per dataset by [`determine_postprocessing`] and applied by
//! [`apply_postprocessing_to_folder`].
//!
//! Files written by [`determine_postprocessing`] in the prediction folder, as nnU-Net does:
//! * `postprocessing.json`: byte-identical to nnU-Net's (before/after means, function names, kwargs). It holds the
//!   complete decision, so [`read_postprocessing_json`] turns it back into [`PostprocessingStep`]s.
//! * `postprocessing.pkl`: a pickle (protocol 2) of `([functions], [kwargs])` that nnU-Net's
//!   `nnUNetv2_apply_postprocessing -pp_pkl_file` loads (function references by module path, label values as
//!   Python ints where nnU-Net pickles numpy ints — same effect). Pickles are not read here: give the
//!   `postprocessing.json` written beside it (see [`read_postprocessing_file`]).
//! * `postprocessed/` with the postprocessed segmentations and their `summary.json`; `postprocessed/temp` is
//!   removed at the end.

use crate::components::keep_largest_component;
use crate::error::{EvalError, Result};
use crate::evaluate::{compute_metrics_on_folder, labels_or_regions_from_dataset, subfiles, with_threads};
use crate::summary::{LabelOrRegion, MeanMetrics, Summary, py_join, read_summary, to_python_string_with_nan, write_text_atomic};
use nnunet_data::ImageReaderWriter;
use nnunet_data::io::reader_writer_by_name;
use nnunet_schema::DatasetJson;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// nnU-Net's function name, written to `postprocessing.json` / `postprocessing.pkl`.
pub const REMOVE_FN_NAME: &str = "remove_all_but_largest_component_from_segmentation";
const REMOVE_FN_MODULE: &str = "nnunetv2.postprocessing.remove_connected_components";

/// The `labels_or_regions` kwarg: one label/region, or a list of them (whose masks are united).
#[derive(Debug, Clone, PartialEq)]
pub enum PpTarget {
    One(LabelOrRegion),
    Many(Vec<LabelOrRegion>),
}

impl PpTarget {
    pub fn entries(&self) -> &[LabelOrRegion] {
        match self {
            PpTarget::One(e) => std::slice::from_ref(e),
            PpTarget::Many(v) => v,
        }
    }
    /// As nnU-Net's JSON export writes it (tuples become lists).
    pub fn to_json(&self) -> Value {
        match self {
            PpTarget::One(e) => e.to_json(),
            PpTarget::Many(v) => Value::Array(v.iter().map(LabelOrRegion::to_json).collect()),
        }
    }
    /// From the JSON form: an int is one label; a list is a list of labels/regions (a list of ints has the same
    /// effect whether it was a tuple region or a list of labels).
    pub fn from_json(v: &Value) -> Option<Self> {
        fn entry(v: &Value) -> Option<LabelOrRegion> {
            match v {
                Value::Array(a) => a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>().map(LabelOrRegion::Region),
                other => other.as_i64().map(LabelOrRegion::Label),
            }
        }
        match v {
            Value::Array(a) => a.iter().map(entry).collect::<Option<Vec<_>>>().map(PpTarget::Many),
            other => entry(other).map(PpTarget::One),
        }
    }
}

/// One postprocessing operation: `remove_all_but_largest_component_from_segmentation(seg, labels_or_regions)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostprocessingStep {
    pub labels_or_regions: PpTarget,
}

/// nnU-Net's `remove_all_but_largest_component_from_segmentation`: the union of the masks of `targets` is reduced to
/// its largest connected component(s) (full connectivity, ties kept); removed voxels become `background_label`.
pub fn remove_all_but_largest_component_from_segmentation(
    segmentation: &[f32],
    shape: [usize; 3],
    targets: &[LabelOrRegion],
    background_label: f32,
) -> Vec<f32> {
    let mask: Vec<bool> = segmentation.iter().map(|&v| targets.iter().any(|t| t.contains(v))).collect();
    let keep = keep_largest_component(&mask, shape);
    segmentation.iter().zip(mask.iter().zip(&keep)).map(|(&v, (&m, &k))| if m && !k { background_label } else { v }).collect()
}

/// nnU-Net's `apply_postprocessing`: the steps in order.
pub fn apply_postprocessing(segmentation: &[f32], shape: [usize; 3], steps: &[PostprocessingStep]) -> Vec<f32> {
    let mut seg = segmentation.to_vec();
    for s in steps {
        seg = remove_all_but_largest_component_from_segmentation(&seg, shape, s.labels_or_regions.entries(), 0.0);
    }
    seg
}

/// nnU-Net's `load_postprocess_save`.
pub fn load_postprocess_save(input: &Path, output: &Path, reader: &dyn ImageReaderWriter, steps: &[PostprocessingStep]) -> Result<()> {
    let img = reader.read_seg(input)?;
    let seg = apply_postprocessing(img.channel(0), img.shape, steps);
    reader.write_seg(&seg, img.shape, output, &img.properties)?;
    Ok(())
}

fn mkdir_p(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| EvalError::io(p, e))
}

fn process_folder(
    input: &str,
    output: &str,
    files: &[String],
    reader: &dyn ImageReaderWriter,
    steps: &[PostprocessingStep],
    threads: usize,
) -> Result<()> {
    mkdir_p(Path::new(output))?;
    with_threads(threads, || {
        files
            .par_iter()
            .try_for_each(|f| load_postprocess_save(Path::new(&py_join(input, f)), Path::new(&py_join(output, f)), reader, steps))
    })?
}

/// `plans.json` (its `image_reader_writer`) and `dataset.json` given, or else those in `folder`, as nnU-Net does.
fn load_plans_and_dataset(
    folder: &Path,
    plans: Option<&Path>,
    dataset_json: Option<&Path>,
) -> Result<(Box<dyn ImageReaderWriter>, DatasetJson, PathBuf)> {
    let plans_path = plans.map(Path::to_path_buf).unwrap_or_else(|| folder.join("plans.json"));
    if !plans_path.is_file() {
        return Err(EvalError::Invalid { path: plans_path, message: "expected plans file missing (written by nnUNetv2_predict)".into() });
    }
    let ds_path = dataset_json.map(Path::to_path_buf).unwrap_or_else(|| folder.join("dataset.json"));
    if !ds_path.is_file() {
        return Err(EvalError::Invalid { path: ds_path, message: "expected dataset.json missing (copied by nnUNetv2_predict)".into() });
    }
    let plans_v: Value = nnunet_schema::json::read_json(&plans_path)?;
    let rw_name = plans_v.get("image_reader_writer").and_then(Value::as_str).unwrap_or("");
    let reader = reader_writer_by_name(rw_name).ok_or_else(|| EvalError::Invalid {
        path: plans_path.clone(),
        message: format!("image_reader_writer '{rw_name}' is unknown or not implemented"),
    })?;
    let dataset: DatasetJson = nnunet_schema::json::read_json(&ds_path)?;
    Ok((reader, dataset, ds_path))
}

/// `foreground_mean` and `mean` of a summary (the two halves of `postprocessing.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryMeans {
    pub foreground_mean: MeanMetrics,
    pub mean: BTreeMap<String, MeanMetrics>,
}

impl From<&Summary> for SummaryMeans {
    fn from(s: &Summary) -> Self {
        SummaryMeans { foreground_mean: s.foreground_mean, mean: s.mean.clone() }
    }
}

/// nnU-Net's `postprocessing.json` (keys sorted like its `save_json(..., sort_keys=True)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostprocessingJson {
    pub input_folder: SummaryMeans,
    pub postprocessed: SummaryMeans,
    pub postprocessing_fns: Vec<String>,
    pub postprocessing_kwargs: Vec<BTreeMap<String, Value>>,
}

impl PostprocessingJson {
    /// The steps it describes (every function must be nnU-Net's `remove_all_but_largest_component_from_segmentation`).
    pub fn steps(&self, path: &Path) -> Result<Vec<PostprocessingStep>> {
        let bad = |message: String| EvalError::Invalid { path: path.to_path_buf(), message };
        if self.postprocessing_fns.len() != self.postprocessing_kwargs.len() {
            return Err(bad("postprocessing_fns and postprocessing_kwargs differ in length".into()));
        }
        self.postprocessing_fns
            .iter()
            .zip(&self.postprocessing_kwargs)
            .map(|(f, kw)| {
                if f != REMOVE_FN_NAME {
                    return Err(bad(format!("unsupported postprocessing function '{f}'")));
                }
                let t = kw.get("labels_or_regions").and_then(PpTarget::from_json);
                t.map(|labels_or_regions| PostprocessingStep { labels_or_regions }).ok_or_else(|| bad(format!("bad kwargs {kw:?}")))
            })
            .collect()
    }
}

/// Read the steps of a `postprocessing.json`.
pub fn read_postprocessing_json(path: &Path) -> Result<Vec<PostprocessingStep>> {
    let pj: PostprocessingJson = nnunet_schema::json::read_json(path)?;
    pj.steps(path)
}

/// For `-pp_pkl_file`: a `.json` is read directly; for a `.pkl`, the `postprocessing.json` in the same folder (nnU-Net
/// always writes both together) is read instead, since pickles of Python functions are not parsed here.
pub fn read_postprocessing_file(path: &Path) -> Result<Vec<PostprocessingStep>> {
    if path.extension().is_some_and(|e| e == "json") {
        return read_postprocessing_json(path);
    }
    let json = path.with_file_name("postprocessing.json");
    if !json.is_file() {
        return Err(EvalError::Invalid {
            path: path.to_path_buf(),
            message: format!("pickle files are not read; expected {} beside it", json.display()),
        });
    }
    read_postprocessing_json(&json)
}

/// A pickle (protocol 2) of `(fns, kwargs)` as nnU-Net's `save_pickle((pp_fns, pp_fn_kwargs), ...)`.
pub fn postprocessing_pickle(steps: &[PostprocessingStep]) -> Vec<u8> {
    fn int(out: &mut Vec<u8>, v: i64) {
        if let Ok(v) = i32::try_from(v) {
            out.push(b'J');
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            out.push(b'L');
            out.extend_from_slice(format!("{v}L\n").as_bytes());
        }
    }
    fn entry(out: &mut Vec<u8>, e: &LabelOrRegion) {
        match e {
            LabelOrRegion::Label(l) => int(out, *l),
            LabelOrRegion::Region(r) => {
                out.push(b'(');
                r.iter().for_each(|&v| int(out, v));
                out.push(b't');
            }
        }
    }
    let mut out = vec![0x80, 2, b']'];
    for _ in steps {
        out.push(b'c');
        out.extend_from_slice(format!("{REMOVE_FN_MODULE}\n{REMOVE_FN_NAME}\n").as_bytes());
        out.push(b'a');
    }
    out.push(b']');
    for s in steps {
        out.push(b'}');
        let key = b"labels_or_regions";
        out.push(b'X');
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        match &s.labels_or_regions {
            PpTarget::One(e) => entry(&mut out, e),
            PpTarget::Many(v) => {
                out.push(b']');
                for e in v {
                    entry(&mut out, e);
                    out.push(b'a');
                }
            }
        }
        out.push(b's');
        out.push(b'a');
    }
    out.extend_from_slice(&[0x86, b'.']);
    out
}

/// What [`determine_postprocessing`] decided, with nnU-Net's console messages (the caller prints them).
#[derive(Debug, Clone, PartialEq)]
pub struct PostprocessingOutcome {
    pub steps: Vec<PostprocessingStep>,
    pub messages: Vec<String>,
}

fn round5(x: f64) -> String {
    // Python's round(x, 5) printed with repr
    let r = (x * 1e5).round() / 1e5;
    nnunet_schema::json::python_float_repr(r)
}

fn copy_files(src: &Path, dst: &Path) -> Result<()> {
    for f in subfiles(src, None)? {
        std::fs::copy(src.join(&f), dst.join(&f)).map_err(|e| EvalError::io(src.join(&f), e))?;
    }
    Ok(())
}

fn remove_dir(p: &Path) -> Result<()> {
    if p.is_dir() { std::fs::remove_dir_all(p).map_err(|e| EvalError::io(p, e)) } else { Ok(()) }
}

/// nnU-Net's `determine_postprocessing` (`nnUNetv2_determine_postprocessing -i PRED -ref GT [-plans_json]
/// [-dataset_json] [-np] [--remove_postprocessed]`): `plans`/`dataset_json` default to the files in
/// `folder_predictions`. `threads == 0` uses rayon's global pool.
///
/// 1. Evaluate `folder_predictions` unless its `summary.json` exists.
/// 2. Largest component of the union of all foreground labels: accepted iff `foreground_mean.Dice` strictly improves
///    and no label/region mean Dice decreases.
/// 3. With more than one label/region, each in declaration order on the current best: accepted iff its mean Dice
///    strictly improves.
///
/// Writes `postprocessing.json`, `postprocessing.pkl` and `postprocessed/` (removed unless
/// `keep_postprocessed_files`) like nnU-Net, with the same temporary folder names (they appear in the paths of
/// `postprocessed/summary.json`).
pub fn determine_postprocessing(
    folder_predictions: &Path,
    folder_ref: &Path,
    plans: Option<&Path>,
    dataset_json: Option<&Path>,
    threads: usize,
    keep_postprocessed_files: bool,
) -> Result<PostprocessingOutcome> {
    let (reader, dataset, ds_path) = load_plans_and_dataset(folder_predictions, plans, dataset_json)?;
    let reader = reader.as_ref();
    let (entries, ignore) = labels_or_regions_from_dataset(&dataset).map_err(|message| EvalError::Labels { path: ds_path, message })?;
    let foreground_labels: Vec<LabelOrRegion> =
        dataset.label_manager().map_err(EvalError::NoLabelsMsg)?.foreground_labels().into_iter().map(LabelOrRegion::Label).collect();
    let ending = dataset.file_ending.as_str();
    let pred = folder_predictions.to_string_lossy().into_owned();
    let output_folder = py_join(&pred, "postprocessed");
    let temp = py_join(&output_folder, "temp");
    let mut messages = Vec::new();

    let predicted_files = subfiles(folder_predictions, Some(ending))?;
    let ref_files = subfiles(folder_ref, Some(ending))?;
    if !ref_files.iter().all(|f| predicted_files.contains(f)) {
        messages.push(
            "WARNING: Not all files in folder_ref were found in folder_predictions. Determining postprocessing should always be \
             done on the entire dataset!"
                .into(),
        );
    }
    let evaluate = |folder: &str| -> Result<Summary> {
        let out = PathBuf::from(py_join(folder, "summary.json"));
        compute_metrics_on_folder(folder_ref, Path::new(folder), Some(&out), reader, ending, &entries, ignore, threads, true)
    };
    let pred_summary = PathBuf::from(py_join(&pred, "summary.json"));
    if !pred_summary.is_file() {
        evaluate(&pred)?;
    }

    let mut steps = Vec::new();
    // step 2: largest component of all foreground
    let output_here = py_join(&temp, "keep_largest_fg");
    let step = PostprocessingStep { labels_or_regions: PpTarget::Many(foreground_labels) };
    process_folder(&pred, &output_here, &predicted_files, reader, std::slice::from_ref(&step), threads)?;
    evaluate(&output_here)?;
    let baseline = read_summary(&pred_summary)?;
    let pp = read_summary(&PathBuf::from(py_join(&output_here, "summary.json")))?;
    let mut do_this = pp.foreground_mean.Dice > baseline.foreground_mean.Dice;
    if do_this {
        // nnU-Net iterates the keys of the loaded summary (label/region order); a key missing from the baseline
        // would raise a KeyError there, here it counts as no decrease
        for (k, m) in &pp.mean {
            if baseline.mean.get(k).is_some_and(|b| m.Dice < b.Dice) {
                do_this = false;
                break;
            }
        }
    }
    let mut source = if do_this {
        messages.push(format!(
            "Results were improved by removing all but the largest foreground region. Mean dice before: {} after: {}",
            round5(baseline.foreground_mean.Dice),
            round5(pp.foreground_mean.Dice)
        ));
        steps.push(step);
        output_here
    } else {
        messages.push("Removing all but the largest foreground region did not improve results!".into());
        pred.clone()
    };

    // step 3: per label/region
    if entries.len() > 1 {
        let current_best = py_join(&temp, "keep_largest_perClassOrRegion_currentBest");
        for e in &entries {
            let step = PostprocessingStep { labels_or_regions: PpTarget::One(e.clone()) };
            let output_here = py_join(&temp, "keep_largest_perClassOrRegion");
            process_folder(&source, &output_here, &predicted_files, reader, std::slice::from_ref(&step), threads)?;
            evaluate(&output_here)?;
            let baseline = read_summary(&PathBuf::from(py_join(&source, "summary.json")))?;
            let pp = read_summary(&PathBuf::from(py_join(&output_here, "summary.json")))?;
            let key = e.key();
            let (before, after) = (baseline.mean[&key].Dice, pp.mean[&key].Dice);
            if after > before {
                messages.push(format!(
                    "Results were improved by removing all but the largest component for {}. Dice before: {} after: {}",
                    py_repr(e),
                    round5(before),
                    round5(after)
                ));
                remove_dir(Path::new(&current_best))?;
                std::fs::rename(&output_here, &current_best).map_err(|err| EvalError::io(&output_here, err))?;
                source = current_best.clone();
                steps.push(step);
            } else {
                messages.push(format!(
                    "Removing all but the largest component for {} did not improve results! Dice before: {} after: {}",
                    py_repr(e),
                    round5(before),
                    round5(after)
                ));
            }
        }
    }
    copy_files(Path::new(&source), Path::new(&output_folder))?;
    write_atomic_bytes(&folder_predictions.join("postprocessing.pkl"), &postprocessing_pickle(&steps))?;

    let baseline = read_summary(&pred_summary)?;
    let fin = read_summary(&PathBuf::from(py_join(&output_folder, "summary.json")))?;
    let pj = PostprocessingJson {
        input_folder: (&baseline).into(),
        postprocessed: (&fin).into(),
        postprocessing_fns: steps.iter().map(|_| REMOVE_FN_NAME.to_string()).collect(),
        postprocessing_kwargs: steps
            .iter()
            .map(|s| BTreeMap::from([("labels_or_regions".to_string(), s.labels_or_regions.to_json())]))
            .collect(),
    };
    let text = to_python_string_with_nan(&pj)
        .map_err(|e| EvalError::Invalid { path: folder_predictions.join("postprocessing.json"), message: e.to_string() })?;
    write_text_atomic(&folder_predictions.join("postprocessing.json"), &text)?;
    remove_dir(Path::new(&temp))?;
    if !keep_postprocessed_files {
        remove_dir(Path::new(&output_folder))?;
    }
    Ok(PostprocessingOutcome { steps, messages })
}

fn py_repr(e: &LabelOrRegion) -> String {
    e.key()
}

fn write_atomic_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(nnunet_schema::json::write_atomic(path, bytes)?)
}

/// nnU-Net's `apply_postprocessing_to_folder` (`nnUNetv2_apply_postprocessing -i IN -o OUT -pp_pkl_file F [-np N]
/// [-plans_json F] [-dataset_json F]`): every file of `input_folder` ending in dataset.json's `file_ending` is
/// postprocessed into `output_folder` (created). `plans`/`dataset_json` default to the files in `input_folder`.
pub fn apply_postprocessing_to_folder(
    input_folder: &Path,
    output_folder: &Path,
    steps: &[PostprocessingStep],
    plans: Option<&Path>,
    dataset_json: Option<&Path>,
    threads: usize,
) -> Result<()> {
    let (reader, dataset, _) = load_plans_and_dataset(input_folder, plans, dataset_json)?;
    let files = subfiles(input_folder, Some(&dataset.file_ending))?;
    process_folder(&input_folder.to_string_lossy(), &output_folder.to_string_lossy(), &files, reader.as_ref(), steps, threads)
}
