//! `nnUNetv2_extract_fingerprint`, `nnUNetv2_plan_experiment`, `nnUNetv2_plan_and_preprocess`.

use crate::paths::{self, PREPROCESSED, RAW};
use crate::spec::Parsed;
use crate::user;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nnunet_core::PlanContext;
use nnunet_data::Dataset;
use nnunet_schema::json::{read_json, write_atomic, write_json_atomic};
use nnunet_schema::{DatasetJson, Fingerprint, Plans};
use std::path::Path;

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// The datasets named by `-d` (ids), resolved to `DatasetXXX_Name`.
fn datasets(p: &Parsed) -> Result<Vec<String>> {
    let ids = p.ints("d");
    if ids.is_empty() {
        return Err(user("no dataset given: use -d ID [ID …]"));
    }
    ids.iter()
        .map(|&id| {
            if id < 0 {
                return Err(user(format!("dataset id {id} is negative")));
            }
            paths::resolve_dataset_name(&id.to_string())
        })
        .collect()
}

fn progress(total: usize, enabled: bool, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total as u64);
    pb.set_style(ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}]").expect("valid template"));
    pb.set_message(what.to_string());
    pb
}

/// Run `--verify_dataset_integrity` on one raw dataset, printing warnings; every problem is reported.
fn verify(raw: &Path, np: usize, show: bool) -> Result<()> {
    println!("Verifying dataset integrity of {}", raw.display());
    let pb = progress(0, show, "verifying");
    let res = nnunet_data::verify_dataset_integrity(raw, np, &env_lookup, &|done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    });
    pb.finish_and_clear();
    match res {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("Dataset integrity verified: no problems found");
            Ok(())
        }
        Err(report) => Err(user(format!("{report}"))),
    }
}

/// Fingerprint of one dataset (skipped if present and not `clean`), written atomically.
fn fingerprint(name: &str, np: usize, verify_integrity: bool, clean: bool, show: bool) -> Result<()> {
    let raw = paths::existing(&paths::env_dir(RAW)?, name, "raw dataset folder")?;
    if verify_integrity {
        verify(&raw, np, show)?;
    }
    let out_dir = paths::env_dir(PREPROCESSED)?.join(name);
    let out = out_dir.join("dataset_fingerprint.json");
    if out.exists() && !clean {
        println!("Fingerprint {} exists; not recomputing (use --clean to overwrite)", out.display());
        return Ok(());
    }
    let ds = Dataset::open_with_env(&raw, &env_lookup).map_err(|e| user(e.to_string()))?;
    println!("Fingerprint extraction of {name}: {} cases, {np} worker threads", ds.identifiers().len());
    let pb = progress(ds.identifiers().len(), show, "fingerprint");
    let t = std::time::Instant::now();
    let fp = nnunet_data::extract_fingerprint(&ds, np, &|done, _| pb.set_position(done as u64)).map_err(|e| user(e.to_string()))?;
    pb.finish_and_clear();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    nnunet_data::write_fingerprint(&out, &fp).map_err(|e| user(e.to_string()))?;
    println!("Wrote {} ({:.1} s)", out.display(), t.elapsed().as_secs_f64());
    Ok(())
}

/// nnU-Net's reader choice for the plans. Planning must work from dataset.json + fingerprint alone, so when
/// the images are not there the class is chosen from `file_ending` (the first class in nnU-Net's order
/// that lists it).
fn reader_for_plans(raw: &Path, json: &DatasetJson) -> String {
    if let Some(o) = json.reader_writer_override()
        && nnunet_data::io::reader_writer_by_name(o).is_some()
    {
        return o.to_string();
    }
    if let Ok(ds) = Dataset::open_with_env(raw, &env_lookup) {
        return ds.image_reader_writer().to_string();
    }
    match json.file_ending.to_lowercase().as_str() {
        ".png" | ".bmp" | ".tif" => "NaturalImage2DIO",
        ".tiff" => "Tiff3DIO",
        ".nii" => "NibabelIO",
        _ => "SimpleITKIO",
    }
    .to_string()
}

/// Plan one dataset; returns the plans identifier.
fn plan(name: &str, p: &Parsed) -> Result<String> {
    let raw = paths::existing(&paths::env_dir(RAW)?, name, "raw dataset folder")?;
    let pre = paths::env_dir(PREPROCESSED)?.join(name);
    let json_path = raw.join("dataset.json");
    let json: DatasetJson = read_json(&json_path).map_err(|e| user(e.to_string()))?;
    let fp_path = pre.join("dataset_fingerprint.json");
    if !fp_path.exists() {
        return Err(user(format!(
            "{}: fingerprint missing. Run nnUNetv2_extract_fingerprint -d {} first",
            fp_path.display(),
            &name[7..10]
        )));
    }
    let fingerprint: Fingerprint = read_json(&fp_path).map_err(|e| user(e.to_string()))?;
    let planner_name = p.string("pl").unwrap_or_else(|| "ExperimentPlanner".into());
    let planner = nnunet_core::registry::planners()?.create(&planner_name).map_err(|e| user(e.to_string()))?;
    if planner_name == "ExperimentPlanner" {
        println!(
            "INFO: You are using the old nnU-Net default planner. We have updated our recommendations. Please consider using \
             those instead! Read more here: https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/resenc_presets.md"
        );
    }
    let spacing: Option<Vec<f64>> = {
        let v = p.strings("overwrite_target_spacing");
        if v.is_empty() {
            None
        } else {
            Some(
                v.iter()
                    .map(|s| s.parse::<f64>().map_err(|_| user(format!("-overwrite_target_spacing: '{s}' is not a number"))))
                    .collect::<Result<_>>()?,
            )
        }
    };
    let selection = super::arch_selection(p)?;
    let configured = selection.as_ref().map(|s| s.configured());
    // matched-VRAM plans for a selected architecture get their own default name, so they never clobber the preset's
    let plans_name_override =
        p.string("overwrite_plans_name").or_else(|| selection.as_ref().map(|s| format!("{}_{}", planner.default_plans_name(), s.tag())));
    let plans_name = plans_name_override.clone().unwrap_or_else(|| planner.default_plans_name().to_string());
    let plans_path = pre.join(format!("{plans_name}.json"));
    let existing: Option<Plans> = if plans_path.exists() { Some(read_json(&plans_path).map_err(|e| user(e.to_string()))?) } else { None };
    let reader = reader_for_plans(&raw, &json);
    let preprocessor = p.string("preprocessor_name");
    let mut ctx = PlanContext::new(name, &json, &fingerprint, &reader);
    ctx.gpu_memory_target_gb = p.float("gpu_memory_target");
    ctx.plans_name = plans_name_override.as_deref();
    ctx.overwrite_target_spacing = spacing.as_deref();
    ctx.preprocessor_name = preprocessor.as_deref();
    ctx.existing_plans = existing.as_ref();
    if let (Some(sel), Some(c)) = (&selection, &configured) {
        ctx.architecture = Some((sel.entry.name, c as &dyn nnunet_core::Architecture));
    }
    let out = planner.plan(&ctx).map_err(|e| user(format!("{name}: {e}")))?;
    for m in &out.messages {
        println!("{m}");
    }
    std::fs::create_dir_all(&pre).with_context(|| format!("cannot create {}", pre.display()))?;
    // nnU-Net copies dataset.json (and a user-provided splits_final.json) next to the plans
    let json_text = std::fs::read(&json_path).with_context(|| json_path.display().to_string())?;
    write_atomic(&pre.join("dataset.json"), &json_text)?;
    copy_splits(&raw, &pre)?;
    let out_path = pre.join(format!("{}.json", out.plans_name));
    write_json_atomic(&out_path, &out.plans)?;
    print_plans_summary(&out.plans);
    println!("Plans written to {}", out_path.display());
    Ok(out.plans_name)
}

/// nnU-Net copies `nnUNet_raw/DatasetXXX/splits_final.json` to the preprocessed folder; an existing target must
/// agree fold by fold.
fn copy_splits(raw: &Path, pre: &Path) -> Result<()> {
    let src = raw.join("splits_final.json");
    if !src.exists() {
        return Ok(());
    }
    let dst = pre.join("splits_final.json");
    let new: serde_json::Value = read_json(&src).map_err(|e| user(e.to_string()))?;
    if dst.exists() {
        let old: serde_json::Value = read_json(&dst).map_err(|e| user(e.to_string()))?;
        if let (Some(n), Some(o)) = (new.as_array(), old.as_array()) {
            for (i, fold) in n.iter().enumerate() {
                if o.get(i) != Some(fold) {
                    return Err(user(format!("{}: fold {i} differs from {}; remove one of them", dst.display(), src.display())));
                }
            }
        }
        return Ok(());
    }
    write_json_atomic(&dst, &new)?;
    Ok(())
}

fn print_plans_summary(plans: &Plans) {
    let Some(cfgs) = plans.configurations() else { return };
    for (name, c) in cfgs {
        let get = |k: &str| c.get(k).map(|v| v.to_string().replace(['\n', ' '], "")).unwrap_or_else(|| "-".into());
        if c.get("inherits_from").is_some() && c.get("patch_size").is_none() {
            println!("  {name:<20} inherits from {}", get("inherits_from"));
        } else {
            println!("  {name:<20} patch {:<16} batch {:<5} spacing {}", get("patch_size"), get("batch_size"), get("spacing"));
        }
    }
}

fn threads(p: &Parsed, dest: &str) -> Result<usize> {
    let v = p.ints(dest);
    let n = v.first().copied().or_else(|| p.int(dest)).unwrap_or(8);
    if n < 1 {
        return Err(user(format!("-{dest} must be at least 1, got {n}")));
    }
    Ok(n as usize)
}

pub fn extract_fingerprint(p: &Parsed) -> Result<()> {
    check_fpe(p)?;
    let np = threads(p, "np")?;
    for name in datasets(p)? {
        fingerprint(&name, np, p.flag("verify_dataset_integrity"), p.flag("clean"), !p.flag("no_pbar"))?;
    }
    Ok(())
}

fn check_fpe(p: &Parsed) -> Result<()> {
    match p.string("fpe").as_deref() {
        None | Some("DatasetFingerprintExtractor") => Ok(()),
        Some(other) => Err(user(format!("unknown fingerprint extractor '{other}' (available: DatasetFingerprintExtractor)"))),
    }
}

pub fn plan_experiment(p: &Parsed) -> Result<()> {
    for name in datasets(p)? {
        plan(&name, p)?;
    }
    Ok(())
}

pub fn plan_and_preprocess(p: &Parsed) -> Result<()> {
    check_fpe(p)?;
    let np = threads(p, "npfp")?;
    let names = datasets(p)?;
    for name in &names {
        fingerprint(name, np, p.flag("verify_dataset_integrity"), p.flag("clean"), !p.flag("no_pbar"))?;
    }
    let mut identifiers: Vec<(String, String)> = Vec::new();
    for name in &names {
        identifiers.push((name.clone(), plan(name, p)?));
    }
    if p.flag("no_pp") {
        return Ok(());
    }
    for (name, plans_identifier) in &identifiers {
        preprocess_one(name, plans_identifier, p)?;
    }
    Ok(())
}

/// nnU-Net's default `-np` per configuration.
fn default_np(config: &str) -> usize {
    match config {
        "2d" | "3d_lowres" => 8,
        _ => 4,
    }
}

/// Preprocess the `-c` configurations of one dataset with plans `plans_identifier`.
fn preprocess_one(name: &str, plans_identifier: &str, p: &Parsed) -> Result<()> {
    let raw = paths::existing(&paths::env_dir(RAW)?, name, "raw dataset folder")?;
    let pre = paths::env_dir(PREPROCESSED)?.join(name);
    let plans_path = pre.join(format!("{plans_identifier}.json"));
    let plans: Plans = read_json(&plans_path).map_err(|e| user(e.to_string()))?;
    let mut ds = Dataset::open_with_env(&raw, &env_lookup).map_err(|e| user(e.to_string()))?;
    // nnU-Net reads the labels from the preprocessed copy of dataset.json
    let pre_json = pre.join("dataset.json");
    if pre_json.exists() {
        ds.json = read_json(&pre_json).map_err(|e| user(e.to_string()))?;
    }
    let configs = p.strings("c");
    let nps = p.ints("np");
    if !nps.is_empty() && nps.len() != 1 && nps.len() != configs.len() {
        return Err(user(format!(
            "-np: give one number or one per configuration ({} configurations, {} numbers)",
            configs.len(),
            nps.len()
        )));
    }
    let show = !p.flag("no_pbar");
    for (i, config) in configs.iter().enumerate() {
        if nnunet_schema::plans::resolve_configuration(&plans, config).is_err() {
            println!("INFO: Configuration {config} not found in plans file {plans_identifier}.json of dataset {name}. Skipping.");
            continue;
        }
        let threads = match nps.len() {
            0 => default_np(config),
            1 => nps[0].max(1) as usize,
            _ => nps[i].max(1) as usize,
        };
        println!("Preprocessing {name}, configuration {config} ({} cases, {threads} workers)", ds.identifiers().len());
        let pb = progress(ds.identifiers().len(), show, config);
        let t = std::time::Instant::now();
        let opts = nnunet_data::PreprocessOptions { threads, ..Default::default() };
        let summary = nnunet_data::preprocess_dataset(&ds, &plans, config, &pre, &opts, &|done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        })
        .map_err(|e| user(e.to_string()))?;
        pb.finish_and_clear();
        println!("Wrote {} ({:.1} s)", summary.output_dir.display(), t.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `nnUNetv2_preprocess -d ID [-plans_name P] [-c CONFIGS…] [-np N…]`.
pub fn preprocess(p: &Parsed) -> Result<()> {
    let plans_name = p.string("plans_name").unwrap_or_else(|| "nnUNetPlans".into());
    for name in datasets(p)? {
        preprocess_one(&name, &plans_name, p)?;
    }
    Ok(())
}

/// `nnUNetv2_move_plans_between_datasets -s SOURCE -t TARGET -sp SOURCE_PLANS [-tp TARGET_PLANS]`: the source
/// dataset's plans, made into plans of the target dataset (`nnunet_schema::plans::moved_plans`), written to
/// `nnUNet_preprocessed/<target>/<target plans>.json` — the pretraining recipe's "same network for both datasets".
pub fn move_plans_between_datasets(p: &Parsed) -> Result<()> {
    let source = paths::resolve_dataset_name(&p.string("s").ok_or_else(|| user("-s is required"))?)?;
    let target = paths::resolve_dataset_name(&p.string("t").ok_or_else(|| user("-t is required"))?)?;
    let source_plans = p.string("sp").ok_or_else(|| user("-sp is required"))?;
    let target_plans = p.string("tp").unwrap_or_else(|| source_plans.clone());
    let pre = paths::env_dir(PREPROCESSED)?;
    let source_dir = pre.join(&source);
    if !source_dir.is_dir() {
        return Err(user(format!(
            "{}: cannot move plans because the preprocessed folder of the source dataset is missing. Run \
             nnUNetv2_plan_and_preprocess for the source dataset first",
            source_dir.display()
        )));
    }
    let source_file = source_dir.join(format!("{source_plans}.json"));
    if !source_file.is_file() {
        return Err(user(format!(
            "{}: source plans are missing. Run the corresponding experiment planning first",
            source_file.display()
        )));
    }
    let plans: Plans = read_json(&source_file).map_err(|e| user(e.to_string()))?;
    let raw = paths::existing(&paths::env_dir(RAW)?, &target, "raw dataset folder of the target dataset")?;
    let json_path = raw.join("dataset.json");
    let json: DatasetJson = read_json(&json_path).map_err(|e| user(e.to_string()))?;
    let moved = nnunet_schema::plans::moved_plans(&plans, &source_plans, &target_plans, &target, &reader_for_plans(&raw, &json));
    let out_dir = pre.join(&target);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out = out_dir.join(format!("{target_plans}.json"));
    write_json_atomic(&out, &moved).map_err(|e| user(e.to_string()))?;
    println!("Plans {source_plans} of {source} written as {} for {target}", out.display());
    Ok(())
}
