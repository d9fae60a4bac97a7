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

/// `nnUNetv2_download_pretrained_model_by_url URL`: download the zip (with `curl`, which every platform nnU-Net runs
/// on ships; nnU-Net uses Python's requests) to a temporary file, install it as
/// [`install_pretrained_model_from_zip`] does, remove the temporary file.
pub fn download_pretrained_model_by_url(p: &Parsed) -> Result<()> {
    let url = p.string("url").ok_or_else(|| user("url is required"))?;
    let results = paths::env_dir(RESULTS)?;
    println!("Downloading pretrained model from url: {url}");
    let tmp = std::env::temp_dir().join(format!(".nnunetdownload_{}_{}", std::process::id(), nanos()));
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&tmp);
    let status = std::process::Command::new("curl")
        .args(["--fail", "--location", "--retry", "3", "--connect-timeout", "100", "--progress-bar", "--output"])
        .arg(&tmp)
        .arg(&url)
        .status()
        .map_err(|e| user(format!("cannot run curl to download {url} ({e}); install curl, or download the zip yourself and use nnUNetv2_install_pretrained_model_from_zip")))?;
    if !status.success() {
        return Err(user(format!("downloading {url} failed (curl exited with {status})")));
    }
    println!("Download finished. Extracting...");
    let written = model_sharing::install_model_from_zip(&tmp, &results).map_err(|e| user(format!("{url}: {e}")))?;
    println!("Done ({} files installed into {})", written.len(), results.display());
    Ok(())
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}
