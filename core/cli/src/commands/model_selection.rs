//! `nnUNetv2_accumulate_crossval_results DATASET -c CONFIG [-o OUT] [-f FOLDS…] [-p PLANS] [-tr TRAINER]` and
//! `nnUNetv2_find_best_configuration DATASET [-p PLANS…] [-c CONFIGS…] [-tr TRAINERS…] [-np N] [-f FOLDS…]
//! [--disable_ensembling] [--no_overwrite]` (nnU-Net's `nnunetv2/evaluation/find_best_configuration.py`).

use super::ensemble::{default_num_processes, num_processes};
use crate::paths::{self, PREPROCESSED, RAW, RESULTS};
use crate::spec::Parsed;
use crate::user;
use anyhow::Result;
use nnunet_engine::model_selection::{self as ms, FindBestOptions, TrainedModel};
use nnunet_evaluate::summary::py_join;
use std::path::Path;

/// The folder named by `var` as the text of the variable (paths inside nnU-Net's files are built from it).
fn env_text(var: &str) -> Result<String> {
    Ok(paths::env_dir(var)?.to_string_lossy().into_owned())
}

fn optional_env_text(var: &str) -> Option<String> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(|v| v.to_string_lossy().into_owned())
}

/// `-f`: nnU-Net's default is `0 1 2 3 4`.
fn folds(p: &Parsed) -> Vec<i64> {
    let f = p.ints("f");
    if f.is_empty() { (0..5).collect() } else { f }
}

pub fn accumulate_crossval_results(p: &Parsed) -> Result<()> {
    let name = paths::resolve_dataset_name(&p.string("dataset_name_or_id").ok_or_else(|| user("dataset_name_or_id is required"))?)?;
    let configuration = p.string("c").ok_or_else(|| user("-c is required"))?;
    let trainer = p.string("tr").unwrap_or_else(|| "nnUNetTrainer".into());
    let plans = p.string("p").unwrap_or_else(|| "nnUNetPlans".into());
    let folds = folds(p);
    let results = env_text(RESULTS)?;
    let model = py_join(&py_join(&results, &name), &ms::model_identifier(&trainer, &plans, &configuration));
    if !Path::new(&model).is_dir() {
        return Err(user(format!("{model}: trained model folder not found (train it first with nnUNetv2_train)")));
    }
    let merged = match p.string("o") {
        None => py_join(&model, &format!("crossval_results_folds_{}", ms::folds_tuple_to_string(&folds))),
        Some(o) => {
            let non_empty = std::fs::read_dir(&o).map(|mut d| d.next().is_some()).unwrap_or(false);
            if Path::new(&o).is_dir() && non_empty {
                return Err(user(format!(
                    "Output folder {o} exists and is not empty. To avoid data loss, nnUNet requires an empty output folder."
                )));
            }
            o
        }
    };
    let raw = optional_env_text(RAW);
    let pre = optional_env_text(PREPROCESSED);
    ms::accumulate_cv_results(&model, &merged, &folds, default_num_processes(), true, raw.as_deref(), pre.as_deref())
        .map_err(|e| user(e.to_string()))?;
    let s = nnunet_evaluate::read_summary(&Path::new(&merged).join("summary.json")).map_err(|e| user(e.to_string()))?;
    println!(
        "accumulated folds {} of {model} into {merged}: foreground mean Dice {}",
        ms::folds_tuple_to_string(&folds),
        nnunet_schema::json::python_float_repr(s.foreground_mean.Dice)
    );
    Ok(())
}

pub fn find_best_configuration(p: &Parsed) -> Result<()> {
    let name = paths::resolve_dataset_name(&p.string("dataset_name_or_id").ok_or_else(|| user("dataset_name_or_id is required"))?)?;
    let or = |v: Vec<String>, d: &[&str]| if v.is_empty() { d.iter().map(|s| s.to_string()).collect() } else { v };
    let plans = or(p.strings("p"), &["nnUNetPlans"]);
    let configs = or(p.strings("c"), &["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"]);
    let trainers = or(p.strings("tr"), &["nnUNetTrainer"]);
    let o = FindBestOptions {
        dataset_name: name,
        models: TrainedModel::combinations(&trainers, &configs, &plans),
        allow_ensembling: !p.flag("disable_ensembling"),
        threads: num_processes(p),
        overwrite: !p.flag("no_overwrite"),
        folds: folds(p),
        default_num_processes: default_num_processes(),
        raw: optional_env_text(RAW),
        preprocessed: env_text(PREPROCESSED)?,
        results: env_text(RESULTS)?,
    };
    ms::find_best_configuration(&o, &mut |line: &str| println!("{line}")).map_err(|e| user(e.to_string()))?;
    Ok(())
}
