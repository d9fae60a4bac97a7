//! nnU-Net's model selection after cross-validation (`nnunetv2/evaluation/accumulate_cv_results.py` and
//! `find_best_configuration.py`, version 2.8.1).
//!
//! * [`accumulate_cv_results`] (`nnUNetv2_accumulate_crossval_results`): copy the segmentations of
//!   `fold_F/validation` of a trained model into one folder (by default `crossval_results_folds_0_1_2_3_4`, see
//!   [`folds_tuple_to_string`]) together with its `dataset.json`/`plans.json`, and evaluate them into its
//!   `summary.json` against `nnUNet_raw/<dataset>/labelsTr` (or `nnUNet_preprocessed/<dataset>/gt_segmentations`).
//! * [`find_best_configuration`] (`nnUNetv2_find_best_configuration`): accumulate every trained model, ensemble every
//!   pair of models (their validation probabilities, see [`crate::ensemble::ensemble_crossvalidations`]) into
//!   `nnUNet_results/<dataset>/ensembles/ensemble___A___B___0_1_2_3_4`, pick the highest foreground-mean Dice (ties:
//!   the first, so single models before ensembles), determine its postprocessing and write
//!   `inference_information.json` and `inference_instructions.txt` into `nnUNet_results/<dataset>/`.
//!
//! Paths are strings joined like Python's `os.path.join`, so the paths written into `summary.json` and
//! `inference_information.json` are the ones nnU-Net writes for the same environment variables.
//! The console lines nnU-Net prints are handed to a callback (this crate does not print).

use crate::ensemble::{EnsembleError, ensemble_crossvalidations, join, reader_and_labels};
use nnunet_evaluate::evaluate::{compute_metrics_on_folder, labels_or_regions_from_dataset, subfiles};
use nnunet_evaluate::summary::to_python_string_with_nan;
use nnunet_schema::DatasetJson;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// Errors of model selection; every variant names the file, folder or model concerned.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not usable.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// What nnU-Net reports as a RuntimeError / FileExistsError (missing folds, models, …).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Ensemble(#[from] EnsembleError),
    #[error(transparent)]
    Eval(#[from] nnunet_evaluate::EvalError),
    #[error(transparent)]
    Schema(#[from] nnunet_schema::SchemaError),
}

type Result<T, E = SelectionError> = std::result::Result<T, E>;

fn io(path: &str, source: std::io::Error) -> SelectionError {
    SelectionError::Io { path: PathBuf::from(path), source }
}

fn read_json(path: &str) -> Result<Value> {
    Ok(nnunet_schema::json::read_json(Path::new(path))?)
}

/// nnU-Net's `folds_tuple_to_string`: `[0, 1, 2]` → `"0_1_2"`.
pub fn folds_tuple_to_string(folds: &[i64]) -> String {
    folds.iter().map(i64::to_string).collect::<Vec<_>>().join("_")
}

/// `<Trainer>__<Plans>__<Configuration>` (nnU-Net's `convert_trainer_plans_config_to_identifier`).
pub fn model_identifier(trainer: &str, plans: &str, configuration: &str) -> String {
    format!("{trainer}__{plans}__{configuration}")
}

/// nnU-Net's `get_ensemble_name`: `ensemble___<model 1>___<model 2>___<folds>`.
pub fn ensemble_name(model1_folder: &str, model2_folder: &str, folds: &[i64]) -> String {
    format!("ensemble___{}___{}___{}", basename(model1_folder), basename(model2_folder), folds_tuple_to_string(folds))
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Where the references of a dataset are: `raw/<dataset>/labelsTr` if that folder exists, else
/// `preprocessed/<dataset>/gt_segmentations` (nnU-Net's order in `accumulate_cv_results`). With `raw` unset the
/// second is used (nnU-Net raises "nnUNet_raw is not defined" there).
pub fn reference_folder(dataset_name: &str, raw: Option<&str>, preprocessed: Option<&str>) -> Result<String> {
    if let Some(r) = raw {
        let f = join(&join(r, dataset_name), "labelsTr");
        if Path::new(&f).is_dir() {
            return Ok(f);
        }
    }
    match preprocessed {
        Some(p) => Ok(join(&join(p, dataset_name), "gt_segmentations")),
        None => Err(SelectionError::Input(format!(
            "no reference segmentations for {dataset_name}: nnUNet_raw/{dataset_name}/labelsTr does not exist and nnUNet_preprocessed \
             is not set"
        ))),
    }
}

/// Evaluate `folder` against `reference` with the labels of `dataset_json` and the reader of `plans` (nnU-Net's
/// `compute_metrics_on_folder(..., chill=True)` as `accumulate_cv_results` and `find_best_configuration` call it).
fn evaluate_into_summary(reference: &str, folder: &str, plans_path: &str, dataset_path: &str, threads: usize) -> Result<()> {
    let plans = read_json(plans_path)?;
    let dj = read_json(dataset_path)?;
    let (rw, _, ending) = reader_and_labels(&plans, Path::new(plans_path), &dj, Path::new(dataset_path))?;
    let dataset: DatasetJson =
        serde_json::from_value(dj).map_err(|e| SelectionError::File { path: dataset_path.into(), message: e.to_string() })?;
    let (entries, ignore) =
        labels_or_regions_from_dataset(&dataset).map_err(|message| SelectionError::File { path: dataset_path.into(), message })?;
    let out = PathBuf::from(join(folder, "summary.json"));
    compute_metrics_on_folder(Path::new(reference), Path::new(folder), Some(&out), rw.as_ref(), &ending, &entries, ignore, threads, true)?;
    Ok(())
}

/// nnU-Net's `accumulate_cv_results`. With `overwrite`, `merged_output_folder` is deleted first and a case predicted
/// by two folds is an error; without, existing files are kept. The merged predictions are evaluated when something
/// was copied or `summary.json` is missing. The references are found by [`reference_folder`] from the `dataset_name`
/// of the model's `plans.json`.
pub fn accumulate_cv_results(
    trained_model_folder: &str,
    merged_output_folder: &str,
    folds: &[i64],
    threads: usize,
    overwrite: bool,
    raw: Option<&str>,
    preprocessed: Option<&str>,
) -> Result<()> {
    let merged = Path::new(merged_output_folder);
    if overwrite && merged.is_dir() {
        std::fs::remove_dir_all(merged).map_err(|e| io(merged_output_folder, e))?;
    }
    std::fs::create_dir_all(merged).map_err(|e| io(merged_output_folder, e))?;
    let (dj_path, plans_path) = (join(trained_model_folder, "dataset.json"), join(trained_model_folder, "plans.json"));
    let dj = read_json(&dj_path)?;
    let plans = read_json(&plans_path)?;
    let ending = dj.get("file_ending").and_then(Value::as_str).unwrap_or("").to_string();
    for (src, name) in [(&dj_path, "dataset.json"), (&plans_path, "plans.json")] {
        std::fs::copy(src, join(merged_output_folder, name)).map_err(|e| io(src, e))?;
    }
    let mut copied = false;
    for f in folds {
        let val = join(&join(trained_model_folder, &format!("fold_{f}")), "validation");
        if !Path::new(&val).is_dir() {
            return Err(SelectionError::Input(format!("fold {f} of model {trained_model_folder} is missing. Please train it!")));
        }
        for pf in subfiles(Path::new(&val), Some(&ending))? {
            let target = join(merged_output_folder, &pf);
            let exists = Path::new(&target).is_file();
            if overwrite && exists {
                return Err(SelectionError::Input(format!("More than one of your folds has a prediction for case {pf}")));
            }
            if overwrite || !exists {
                let src = join(&val, &pf);
                std::fs::copy(&src, &target).map_err(|e| io(&src, e))?;
                copied = true;
            }
        }
    }
    if copied || !Path::new(&join(merged_output_folder, "summary.json")).is_file() {
        let dataset_name = plans
            .get("dataset_name")
            .and_then(Value::as_str)
            .ok_or_else(|| SelectionError::File { path: plans_path.clone().into(), message: "no dataset_name".into() })?;
        let reference = reference_folder(dataset_name, raw, preprocessed)?;
        evaluate_into_summary(&reference, merged_output_folder, &plans_path, &dj_path, threads)?;
    }
    Ok(())
}

/// One trained model to consider (nnU-Net's `{'plans': …, 'configuration': …, 'trainer': …}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainedModel {
    /// Plans identifier (`nnUNetPlans`).
    pub plans: String,
    /// Configuration (`3d_fullres`).
    pub configuration: String,
    /// Trainer name (`nnUNetTrainer`).
    pub trainer: String,
}

impl TrainedModel {
    /// nnU-Net's `dumb_trainer_config_plans_to_trained_models_dict`: trainers × configurations × plans, in that
    /// nesting order.
    pub fn combinations(trainers: &[String], configurations: &[String], plans: &[String]) -> Vec<TrainedModel> {
        let mut out = Vec::new();
        for t in trainers {
            for c in configurations {
                for p in plans {
                    out.push(TrainedModel { plans: p.clone(), configuration: c.clone(), trainer: t.clone() });
                }
            }
        }
        out
    }

    /// Python's repr of the model dict (in error messages).
    fn py_repr(&self) -> String {
        format!("{{'plans': '{}', 'configuration': '{}', 'trainer': '{}'}}", self.plans, self.configuration, self.trainer)
    }
}

/// The inputs of [`find_best_configuration`].
#[derive(Debug, Clone)]
pub struct FindBestOptions {
    /// `DatasetXXX_Name`.
    pub dataset_name: String,
    /// The models to consider (those whose configuration the plans lack are skipped).
    pub models: Vec<TrainedModel>,
    /// Evaluate the ensemble of every pair of models (needs their validation `.npz` files).
    pub allow_ensembling: bool,
    /// Worker threads (nnU-Net's `-np`).
    pub threads: usize,
    /// `false` (= `--no_overwrite`): keep merged folders and ensembled cases already there.
    pub overwrite: bool,
    /// The cross-validation folds (`fold_F`).
    pub folds: Vec<i64>,
    /// nnU-Net's `default_num_processes` (8, or `nnUNet_def_n_proc`), printed in the instructions.
    pub default_num_processes: usize,
    /// `nnUNet_raw` (may be unset: the references then come from `gt_segmentations`).
    pub raw: Option<String>,
    /// `nnUNet_preprocessed` (plans files and `gt_segmentations`).
    pub preprocessed: String,
    /// `nnUNet_results` (the trained models; the outputs go to `<results>/<dataset>/`).
    pub results: String,
}

/// What [`find_best_configuration`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct FindBestOutcome {
    /// `(identifier, foreground-mean Dice)` of every model and ensemble, in evaluation order.
    pub all_results: Vec<(String, f64)>,
    pub best_key: String,
    /// The content of `inference_information.json`.
    pub inference_information: Value,
    /// The text of `inference_instructions.txt`.
    pub instructions: String,
}

/// Python's `str(float)`.
fn py_str_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        nnunet_schema::json::python_float_repr(x)
    }
}

fn foreground_dice(summary_path: &str) -> Result<f64> {
    let s = nnunet_evaluate::read_summary(Path::new(summary_path))?;
    Ok(s.foreground_mean.Dice)
}

/// nnU-Net's `filter_available_models`: a model whose configuration the plans file lacks is skipped (with nnU-Net's
/// message); a model whose output folder is missing is an error.
fn filter_available_models(o: &FindBestOptions, log: &mut dyn FnMut(&str)) -> Result<Vec<TrainedModel>> {
    let mut valid = Vec::new();
    for m in &o.models {
        let plans_file = join(&join(&o.preprocessed, &o.dataset_name), &format!("{}.json", m.plans));
        let plans = read_json(&plans_file)?;
        let has = plans.get("configurations").and_then(Value::as_object).is_some_and(|c| c.contains_key(&m.configuration));
        if !has {
            log(&format!("Configuration {} not found in plans {}.\nInferred plans file: {plans_file}.", m.configuration, m.plans));
            continue;
        }
        let folder = model_folder(o, m);
        if !Path::new(&folder).is_dir() {
            return Err(SelectionError::Input(format!(
                "Trained model {} does not have an output folder. Expected: {folder}. Please run the training for this model! \
                 (don't forget the --npz flag if you want to ensemble multiple configurations)",
                m.py_repr()
            )));
        }
        valid.push(m.clone());
    }
    Ok(valid)
}

fn model_folder(o: &FindBestOptions, m: &TrainedModel) -> String {
    join(&join(&o.results, &o.dataset_name), &model_identifier(&m.trainer, &m.plans, &m.configuration))
}

/// JSON value with every object's keys sorted (Python's `json.dump(..., sort_keys=True)`).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut items: Vec<(String, Value)> = m.into_iter().collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(items.into_iter().map(|(k, v)| (k, sorted(v))).collect::<Map<_, _>>())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A float for the JSON (NaN as `null`, written back as `NaN` by the Python-style writer).
fn jf(x: f64) -> Value {
    serde_json::Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
}

/// nnU-Net's `find_best_configuration` (see the module documentation). `log` receives the lines nnU-Net prints.
pub fn find_best_configuration(o: &FindBestOptions, log: &mut dyn FnMut(&str)) -> Result<FindBestOutcome> {
    let models = filter_available_models(o, log)?;
    let mut all: Vec<(String, String, f64)> = Vec::new(); // (identifier, source folder, result)
    let fs = folds_tuple_to_string(&o.folds);
    for m in &models {
        let folder = model_folder(o, m);
        let merged = join(&folder, &format!("crossval_results_folds_{fs}"));
        accumulate_cv_results(&folder, &merged, &o.folds, o.threads, o.overwrite, o.raw.as_deref(), Some(&o.preprocessed))?;
        let r = foreground_dice(&join(&merged, "summary.json"))?;
        all.push((basename(&folder).to_string(), merged, r));
    }
    let gt = join(&join(&o.preprocessed, &o.dataset_name), "gt_segmentations");
    if o.allow_ensembling {
        for i in 0..models.len() {
            for j in i + 1..models.len() {
                let (f1, f2) = (model_folder(o, &models[i]), model_folder(o, &models[j]));
                let id = ensemble_name(&f1, &f2, &o.folds);
                let out = join(&join(&join(&o.results, &o.dataset_name), "ensembles"), &id);
                ensemble_crossvalidations(&[f1.clone(), f2.clone()], &out, &o.folds, o.threads, o.overwrite)?;
                evaluate_into_summary(&gt, &out, &join(&f1, "plans.json"), &join(&f1, "dataset.json"), o.threads)?;
                let r = foreground_dice(&join(&out, "summary.json"))?;
                all.push((id, out, r));
            }
        }
    }
    // Python's max(): the first value, replaced by every later one that is greater
    let Some(mut best_score) = all.first().map(|a| a.2) else {
        return Err(SelectionError::Input(format!(
            "none of the requested models is available for {} (max() arg is an empty sequence)",
            o.dataset_name
        )));
    };
    for a in &all[1..] {
        if a.2 > best_score {
            best_score = a.2;
        }
    }
    let Some(best) = all.iter().find(|a| a.2 == best_score).cloned() else {
        return Err(SelectionError::Input("no model has a comparable (non-NaN) foreground-mean Dice".into()));
    };
    log("");
    log("***All results:***");
    for (k, _, v) in &all {
        log(&format!("{k}: {}", py_str_float(*v)));
    }
    log(&format!("\n*Best*: {}: {}", best.0, py_str_float(best.2)));
    log("");
    log("***Determining postprocessing for best model/ensemble***");
    let source = best.1.clone();
    let pp = nnunet_evaluate::determine_postprocessing(
        Path::new(&source),
        Path::new(&gt),
        Some(Path::new(&join(&source, "plans.json"))),
        Some(Path::new(&join(&source, "dataset.json"))),
        o.threads,
        true,
    )?;
    for m in &pp.messages {
        log(m);
    }
    let post = foreground_dice(&join(&join(&source, "postprocessed"), "summary.json"))?;

    let mut selected = Vec::new();
    let split_identifier = |id: &str| -> Vec<String> { basename(id).split("__").map(str::to_string).collect() };
    let members: Vec<String> = if best.0.starts_with("ensemble___") {
        let parts: Vec<&str> = best.0.split("___").collect();
        if parts.len() != 4 {
            return Err(SelectionError::Input(format!("{}: not an ensemble name of two models", best.0)));
        }
        vec![parts[1].to_string(), parts[2].to_string()]
    } else {
        vec![best.0.clone()]
    };
    for m in &members {
        let p = split_identifier(m);
        if p.len() != 3 {
            return Err(SelectionError::Input(format!("{m}: not a <trainer>__<plans>__<configuration> identifier")));
        }
        selected.push(json!({"configuration": p[2], "trainer": p[0], "plans_identifier": p[1]}));
    }
    let considered: Vec<Value> =
        models.iter().map(|m| json!({"plans": m.plans, "configuration": m.configuration, "trainer": m.trainer})).collect();
    let mut all_results = Map::new();
    for (k, _, v) in &all {
        all_results.insert(k.clone(), jf(*v));
    }
    let info = json!({
        "folds": o.folds,
        "dataset_name_or_id": o.dataset_name,
        "considered_models": considered,
        "ensembling_allowed": o.allow_ensembling,
        "all_results": Value::Object(all_results),
        "best_model_or_ensemble": {
            "result_on_crossval_pre_pp": jf(best.2),
            "result_on_crossval_post_pp": jf(post),
            "postprocessing_file": join(&source, "postprocessing.pkl"),
            "some_plans_file": join(&source, "plans.json"),
            "selected_model_or_models": selected,
        }
    });
    let info = sorted(info);
    let ds_dir = join(&o.results, &o.dataset_name);
    let info_path = join(&ds_dir, "inference_information.json");
    let text =
        to_python_string_with_nan(&info).map_err(|e| SelectionError::File { path: info_path.clone().into(), message: e.to_string() })?;
    nnunet_schema::json::write_atomic(Path::new(&info_path), text.as_bytes())?;

    log("");
    let lines = inference_instructions(&info, &o.results, o.default_num_processes)?;
    let mut instructions = String::new();
    for l in &lines {
        log(l);
        instructions.push_str(l);
        instructions.push('\n');
    }
    nnunet_schema::json::write_atomic(Path::new(&join(&ds_dir, "inference_instructions.txt")), instructions.as_bytes())?;
    Ok(FindBestOutcome {
        all_results: all.into_iter().map(|(k, _, v)| (k, v)).collect(),
        best_key: best.0,
        inference_information: info,
        instructions,
    })
}

/// nnU-Net's `generate_inference_command` (including its quirks: two spaces after `-f`, and the previous-stage
/// flag only when the plans have a configuration literally named `previous_stage`). Reads the model's `plans.json`,
/// which must have `configuration`.
#[allow(clippy::too_many_arguments)]
pub fn generate_inference_command(
    results: &str,
    dataset_name: &str,
    configuration: &str,
    plans_identifier: &str,
    trainer: &str,
    folds: &[i64],
    output_folder: &str,
    save_npz: bool,
) -> Result<String> {
    let fold_str: String = folds.iter().map(|f| format!(" {f}")).collect();
    let folder = join(&join(results, dataset_name), &model_identifier(trainer, plans_identifier, configuration));
    let plans_path = join(&folder, "plans.json");
    let plans = read_json(&plans_path)?;
    let configs = plans.get("configurations").and_then(Value::as_object).cloned().unwrap_or_default();
    if !configs.contains_key(configuration) {
        return Err(SelectionError::File {
            path: plans_path.into(),
            message: format!(
                "Requested configuration {configuration} not found in plans. Available configurations: [{}]",
                configs.keys().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let mut cmd = format!(
        "nnUNetv2_predict -d {dataset_name} -i INPUT_FOLDER -o {output_folder} -f {fold_str} -tr {trainer} -c {configuration} -p {plans_identifier}"
    );
    if configs.contains_key("previous_stage") {
        cmd.push_str(" -prev_stage_predictions OUTPUT_FOLDER_PREV_STAGE");
    }
    if save_npz {
        cmd.push_str(" --save_probabilities");
    }
    Ok(cmd)
}

/// The lines of nnU-Net's `print_inference_instructions` for an `inference_information.json` value (each line is
/// written to `inference_instructions.txt` followed by a newline).
pub fn inference_instructions(info: &Value, results: &str, default_num_processes: usize) -> Result<Vec<String>> {
    let bad = |m: &str| SelectionError::Input(format!("inference information: {m}"));
    let dataset = info.get("dataset_name_or_id").and_then(Value::as_str).ok_or_else(|| bad("no dataset_name_or_id"))?;
    let folds: Vec<i64> =
        info.get("folds").and_then(Value::as_array).ok_or_else(|| bad("no folds"))?.iter().filter_map(Value::as_i64).collect();
    let best = info.get("best_model_or_ensemble").ok_or_else(|| bad("no best_model_or_ensemble"))?;
    let selected = best.get("selected_model_or_models").and_then(Value::as_array).ok_or_else(|| bad("no selected_model_or_models"))?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| bad(&format!("no {k}")));
    let mut lines = vec!["***Run inference like this:***\n".to_string()];
    let is_ensemble = selected.len() > 1;
    if is_ensemble {
        lines.push("An ensemble won! What a surprise! Run the following commands to run predictions with the ensemble members:\n".into());
    }
    let mut outputs = Vec::new();
    for (j, m) in selected.iter().enumerate() {
        let out = if is_ensemble { format!("OUTPUT_FOLDER_MODEL_{}", j + 1) } else { "OUTPUT_FOLDER".to_string() };
        lines.push(generate_inference_command(
            results,
            dataset,
            &s(m, "configuration")?,
            &s(m, "plans_identifier")?,
            &s(m, "trainer")?,
            &folds,
            &out,
            is_ensemble,
        )?);
        outputs.push(out);
    }
    if is_ensemble {
        lines.push("\nThe run ensembling with:\n".into());
        lines.push(format!("nnUNetv2_ensemble -i {} -o OUTPUT_FOLDER -np {default_num_processes}", outputs.join(" ")));
    }
    lines.push("\n***Once inference is completed, run postprocessing like this:***\n".into());
    lines.push(format!(
        "nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file {} -np {default_num_processes} -plans_json {}",
        s(best, "postprocessing_file")?,
        s(best, "some_plans_file")?
    ));
    Ok(lines)
}
