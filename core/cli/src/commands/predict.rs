//! `nnUNetv2_predict -i IN -o OUT -d DATASET -c CONFIG [-f 0 1 …] …` and `nnUNetv2_predict_from_modelfolder -m MODEL …`
//! (training spec §4.7). The model folder is `$nnUNet_results/DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>`.
//!
//! Exit codes: 0 when every case was written (or skipped by `--continue_prediction`); 2 when the run could not start
//! (bad flag, missing model, `-device cuda` without a GPU backend) or when some cases failed — those are listed at the
//! end, and every other case is still written.

use crate::paths::{self, RESULTS};
use crate::spec::Parsed;
use crate::user;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use nnunet_engine::inference::{PredictOptions, Predictor, Progress};
use std::path::PathBuf;

/// `-f`: ints or `all` (nnU-Net converts every other value with `int()`).
fn folds(p: &Parsed) -> Result<Vec<String>> {
    let raw = p.strings("f");
    let raw = if raw.is_empty() { (0..5).map(|i| i.to_string()).collect() } else { raw };
    raw.into_iter()
        .map(|f| {
            if f == "all" {
                Ok(f)
            } else {
                f.trim().parse::<i64>().map(|i| i.to_string()).map_err(|_| user(format!("-f {f}: folds are integers or 'all'")))
            }
        })
        .collect()
}

/// `nnUNetv2_predict`.
pub fn predict(p: &Parsed) -> Result<()> {
    let name = paths::resolve_dataset_name(&p.string("d").ok_or_else(|| user("-d is required"))?)?;
    let trainer = p.string("tr").unwrap_or_else(|| "nnUNetTrainer".into());
    let plans = p.string("p").unwrap_or_else(|| "nnUNetPlans".into());
    let configuration = p.string("c").ok_or_else(|| user("-c is required"))?;
    let model = paths::env_dir(RESULTS)?.join(&name).join(format!("{trainer}__{plans}__{configuration}"));
    if !model.is_dir() {
        return Err(user(format!("{}: model folder not found (train it first with nnUNetv2_train)", model.display())));
    }
    run(p, model, true)
}

/// `nnUNetv2_predict_from_modelfolder` (nnU-Net ignores `-num_parts`/`-part_id` here: it has no such flags).
pub fn predict_from_modelfolder(p: &Parsed) -> Result<()> {
    let model = PathBuf::from(p.string("m").ok_or_else(|| user("-m is required"))?);
    if !model.is_dir() {
        return Err(user(format!("{}: model folder not found", model.display())));
    }
    run(p, model, false)
}

fn run(p: &Parsed, model: PathBuf, with_parts: bool) -> Result<()> {
    let input = PathBuf::from(p.string("i").ok_or_else(|| user("-i is required"))?);
    let output = PathBuf::from(p.string("o").ok_or_else(|| user("-o is required"))?);
    let (num_parts, part_id) = if with_parts { (p.int("num_parts").unwrap_or(1), p.int("part_id").unwrap_or(0)) } else { (1, 0) };
    if num_parts < 1 || part_id < 0 || part_id >= num_parts {
        return Err(user(format!("-part_id {part_id} must be in 0..{num_parts} (-num_parts {num_parts}); part ids start at 0")));
    }
    let step_size = p.float("step_size").unwrap_or(0.5);
    if !(step_size > 0.0 && step_size <= 1.0) {
        return Err(user(format!("-step_size {step_size}: must be in (0, 1]")));
    }
    let device_arg = p.string("device").unwrap_or_else(|| "cuda".into());
    let (dev, _) = super::device(&device_arg)?;
    // nnU-Net predicts under fp16 autocast on cuda, in fp32 on the CPU
    let mixed_precision = crate::backend::mixed_precision(&dev, &device_arg, None)?;
    if !input.is_dir() {
        return Err(user(format!("{}: input folder not found", input.display())));
    }
    let verbose = p.flag("verbose");
    let chk = p.string("chk").unwrap_or_else(|| "checkpoint_final.pth".into());
    let folds = folds(p)?;
    let predictor =
        Predictor::from_model_folder(&model, Some(&folds), &chk, &dev).map_err(|e| user(e.to_string()))?.with_mixed_precision(mixed_precision);
    if verbose {
        println!(
            "model {} (trainer {}, configuration {}), folds {:?}, checkpoint {chk}, mirroring axes {:?}",
            model.display(),
            predictor.trainer_name,
            predictor.configuration,
            predictor.folds,
            if p.flag("disable_tta") { None } else { predictor.allowed_mirroring_axes.clone() }
        );
    }
    let npp = p.int("npp").unwrap_or(3).max(0) as usize;
    let nps = p.int("nps").unwrap_or(3).max(0) as usize;
    let opts = PredictOptions {
        step_size,
        use_mirroring: !p.flag("disable_tta"),
        save_probabilities: p.flag("save_probabilities"),
        overwrite: !p.flag("continue_prediction"),
        num_parts: num_parts as usize,
        part_id: part_id as usize,
        prev_stage_predictions: p.string("prev_stage_predictions").map(PathBuf::from),
        preprocessing_workers: npp,
        export_workers: nps,
    };
    if npp == 0 && nps == 0 {
        println!("Running in non-multiprocessing mode");
    }
    let show_bar = !p.flag("disable_progress_bar");
    let pb = std::sync::Mutex::new(ProgressBar::hidden());
    let on = |ev: Progress<'_>| {
        let bar = pb.lock().unwrap_or_else(|e| e.into_inner());
        match ev {
            Progress::Listed { in_folder, this_part, to_predict } => {
                println!("There are {in_folder} cases in the source folder");
                println!("I am process {part_id} out of {num_parts} (max process ID is {}, we start counting with 0!)", num_parts - 1);
                println!("There are {this_part} cases that I would like to predict");
                if to_predict != this_part {
                    println!(
                        "overwrite was set to False, so I am only working on cases that haven't been predicted yet. That's {to_predict} cases."
                    );
                }
                drop(bar);
                if show_bar {
                    let b = ProgressBar::new(to_predict as u64);
                    b.set_style(
                        ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    *pb.lock().unwrap_or_else(|e| e.into_inner()) = b;
                }
            }
            Progress::Predicting { case, .. } => {
                if verbose {
                    bar.println(format!("Predicting {case}:"));
                }
                bar.set_message(case.to_string());
            }
            Progress::Written { case } => {
                if verbose {
                    bar.println(format!("done with {case}"));
                }
                bar.inc(1);
            }
            Progress::Failed { case, message } => {
                bar.println(format!("error: case {case} failed and was skipped: {message}"));
                bar.inc(1);
            }
        }
    };
    let report = predictor.predict_from_folder(&input, &output, &opts, &on).map_err(|e| user(e.to_string()))?;
    pb.lock().unwrap_or_else(|e| e.into_inner()).finish_and_clear();
    println!(
        "predicted {} case(s) into {}{}",
        report.written.len(),
        output.display(),
        if report.skipped_existing.is_empty() {
            String::new()
        } else {
            format!(" ({} already there, skipped)", report.skipped_existing.len())
        }
    );
    if !report.failed.is_empty() {
        let list: Vec<String> = report.failed.iter().map(|(c, m)| format!("  {c}: {m}")).collect();
        return Err(user(format!(
            "{} case(s) could not be predicted (the others were written):\n{}",
            report.failed.len(),
            list.join("\n")
        )));
    }
    Ok(())
}
