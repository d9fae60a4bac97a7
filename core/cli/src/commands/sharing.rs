//! `nnUNetv2_export_model_to_zip -d DATASET -o ZIP [-c CONFIGS…] [-tr TRAINER] [-p PLANS] [-f FOLDS…] [-chk NAMES…]
//! [--not_strict] [--exp_cv_preds]` and `nnUNetv2_install_pretrained_model_from_zip ZIP`
//! (nnU-Net's `nnunetv2/model_sharing/`); the work is `nnunet_engine::model_sharing`.

use crate::paths::{self, RESULTS};
use crate::spec::Parsed;
use crate::user;
use anyhow::Result;
use nnunet_engine::model_sharing::{self, ExportOptions};
use std::path::Path;

/// `dest`'s values, or nnU-Net's default when the flag is not given.
fn strings_or(p: &Parsed, dest: &str, default: &[&str]) -> Vec<String> {
    let v = p.strings(dest);
    if v.is_empty() { default.iter().map(|s| s.to_string()).collect() } else { v }
}

pub fn export_model_to_zip(p: &Parsed) -> Result<()> {
    let dataset = paths::resolve_dataset_name(&p.string("d").ok_or_else(|| user("-d is required"))?)?;
    let output = p.string("o").ok_or_else(|| user("-o is required"))?;
    let opts = ExportOptions {
        configurations: strings_or(p, "c", &["3d_lowres", "3d_fullres", "2d", "3d_cascade_fullres"]),
        trainer: p.string("tr").unwrap_or_else(|| "nnUNetTrainer".into()),
        plans: p.string("p").unwrap_or_else(|| "nnUNetPlans".into()),
        folds: strings_or(p, "f", &["0", "1", "2", "3", "4"]),
        checkpoints: strings_or(p, "chk", &["checkpoint_final.pth"]),
        export_crossval_predictions: p.flag("exp_cv_preds"),
        strict: !p.flag("not_strict"),
    };
    let results = paths::env_dir(RESULTS)?;
    let (log, n) = model_sharing::export_pretrained_model(&results, &dataset, Path::new(&output), &opts).map_err(|e| user(e.to_string()))?;
    for line in log {
        println!("{line}");
    }
    println!("{n} files written to {output}");
    Ok(())
}

pub fn install_pretrained_model_from_zip(p: &Parsed) -> Result<()> {
    let zip = p.string("zip").ok_or_else(|| user("zip is required"))?;
    let results = paths::env_dir(RESULTS)?;
    let written = model_sharing::install_model_from_zip(Path::new(&zip), &results).map_err(|e| user(e.to_string()))?;
    println!("{} files of {zip} installed into {}", written.len(), results.display());
    Ok(())
}
