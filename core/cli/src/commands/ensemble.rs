//! `nnUNetv2_ensemble -i FOLDER FOLDER … -o OUT [-np N] [--save_npz]` (nnU-Net's `ensemble_folders`): average the
//! probabilities (`<case>.npz`, written by `nnUNetv2_predict --save_probabilities`) of the cases every input folder
//! has, and write the segmentations (plus `.npz`/`.pkl` with `--save_npz`) and `dataset.json` into OUT.

use crate::spec::Parsed;
use crate::user;
use anyhow::Result;
use std::path::PathBuf;

/// nnU-Net's `default_num_processes`: `nnUNet_def_n_proc`, else 8.
pub fn default_num_processes() -> usize {
    std::env::var("nnUNet_def_n_proc").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(8)
}

/// `-np`: the value given, else [`default_num_processes`].
pub fn num_processes(p: &Parsed) -> usize {
    if p.given("np") { p.int("np").map(|n| n.max(1) as usize).unwrap_or(1) } else { default_num_processes() }
}

pub fn ensemble(p: &Parsed) -> Result<()> {
    let inputs: Vec<PathBuf> = p.strings("i").into_iter().map(PathBuf::from).collect();
    if inputs.is_empty() {
        return Err(user("-i: give the folders to ensemble"));
    }
    let output = PathBuf::from(p.string("o").ok_or_else(|| user("-o is required"))?);
    let r = nnunet_engine::ensemble::ensemble_folders(&inputs, &output, p.flag("save_npz"), num_processes(p), None, None)
        .map_err(|e| user(e.to_string()))?;
    if r.cases.is_empty() {
        eprintln!("warning: the input folders contain no .npz files (run nnUNetv2_predict with --save_probabilities): nothing to ensemble");
    }
    println!("ensembled {} case(s) of {} folder(s) into {}", r.cases.len(), inputs.len(), output.display());
    Ok(())
}
