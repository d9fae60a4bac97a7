//! `nnUNetv2_evaluate_folder`, `nnUNetv2_evaluate_simple`, `nnUNetv2_determine_postprocessing`,
//! `nnUNetv2_apply_postprocessing`.

use crate::spec::Parsed;
use crate::user;
use anyhow::Result;
use std::path::{Path, PathBuf};

fn path(p: &Parsed, dest: &str) -> Option<PathBuf> {
    p.string(dest).map(PathBuf::from)
}

fn required(p: &Parsed, dest: &str, flag: &str) -> Result<PathBuf> {
    path(p, dest).ok_or_else(|| user(format!("{flag} is required")))
}

fn threads(p: &Parsed) -> usize {
    p.int("np").map(|n| n.max(1) as usize).unwrap_or(8)
}

fn print_means(s: &nnunet_evaluate::Summary) {
    println!("{}", serde_json::to_string(&s.foreground_mean).unwrap_or_default());
}

pub fn evaluate_folder(p: &Parsed) -> Result<()> {
    let gt = required(p, "gt_folder", "gt_folder")?;
    let pred = required(p, "pred_folder", "pred_folder")?;
    let dj = required(p, "djfile", "-djfile")?;
    let pf = required(p, "pfile", "-pfile")?;
    let out = path(p, "o");
    let s = nnunet_evaluate::evaluate_folder(&gt, &pred, &dj, &pf, out.as_deref(), threads(p), p.flag("chill"))
        .map_err(|e| user(e.to_string()))?;
    print_means(&s);
    Ok(())
}

pub fn evaluate_simple(p: &Parsed) -> Result<()> {
    let gt = required(p, "gt_folder", "gt_folder")?;
    let pred = required(p, "pred_folder", "pred_folder")?;
    let labels = p.ints("l");
    if labels.is_empty() {
        return Err(user("-l: give the labels to evaluate"));
    }
    let out = path(p, "o");
    let s = nnunet_evaluate::evaluate_simple(&gt, &pred, &labels, out.as_deref(), threads(p), p.int("il"), p.flag("chill"))
        .map_err(|e| user(e.to_string()))?;
    print_means(&s);
    Ok(())
}

pub fn determine_postprocessing(p: &Parsed) -> Result<()> {
    let pred = required(p, "i", "-i")?;
    let gt = required(p, "ref", "-ref")?;
    let o = nnunet_evaluate::determine_postprocessing(
        &pred,
        &gt,
        path(p, "plans_json").as_deref(),
        path(p, "dataset_json").as_deref(),
        threads(p),
        !p.flag("remove_postprocessed"),
    )
    .map_err(|e| user(e.to_string()))?;
    for m in &o.messages {
        println!("{m}");
    }
    Ok(())
}

pub fn apply_postprocessing(p: &Parsed) -> Result<()> {
    let input = required(p, "i", "-i")?;
    let output = required(p, "o", "-o")?;
    let pp = required(p, "pp_pkl_file", "-pp_pkl_file")?;
    let steps = nnunet_evaluate::read_postprocessing_file(Path::new(&pp)).map_err(|e| user(e.to_string()))?;
    nnunet_evaluate::apply_postprocessing_to_folder(
        &input,
        &output,
        &steps,
        path(p, "plans_json").as_deref(),
        path(p, "dataset_json").as_deref(),
        threads(p),
    )
    .map_err(|e| user(e.to_string()))?;
    println!("postprocessed {} into {}", input.display(), output.display());
    Ok(())
}
