//! `nnunet benchmark -d ID… -c CONFIG --arch A --arch 'B={"size":"S"}' … [-f FOLD…] [-tr TRAINER] [-p PLANS]`:
//! train every architecture under the same plans (patch, batch, spacing, topology), validate, and write
//! `benchmark.json` / `benchmark.md` with Dice per dataset, measured peak memory, training time and parameters —
//! the columns of nnU-Net's ResEnc benchmark table.
//!
//! Each run is a child process of this binary (`nnunet train … --arch …`), so that its peak memory is its own and
//! a failing architecture does not stop the others. A fold whose `checkpoint_final` and `validation/summary.json`
//! already exist is not retrained (its recorded figures are reused), so a table can be regenerated or extended.

use crate::paths::{self, RESULTS};
use crate::user;
use anyhow::{Context, Result};
use nnunet_core::selection::{ArchSelection, short_name};
use nnunet_engine::checkpoint::Stored;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Args {
    pub datasets: Vec<String>,
    pub configuration: String,
    /// `NAME` or `NAME=JSON` (the JSON overrides the architecture's kwargs).
    pub archs: Vec<String>,
    pub folds: Vec<String>,
    pub trainer: String,
    pub plans: String,
    pub device: String,
    pub output: Option<PathBuf>,
}

/// One `--arch` value: `NAME` or `NAME=JSON`.
pub fn parse_arch(s: &str) -> Result<(String, Option<String>)> {
    match s.split_once('=') {
        Some((n, j)) if !n.is_empty() => Ok((n.to_string(), Some(j.to_string()))),
        Some(_) => Err(user(format!("--arch '{s}': expected NAME or NAME=JSON"))),
        None => Ok((s.to_string(), None)),
    }
}

/// The measured result of one (architecture, dataset, fold) run.
fn run_record(fold_dir: &Path, wall_seconds: Option<f64>) -> Result<Value> {
    // nnU-Net's summary.json may contain NaN: the schema reader maps bare NaN tokens (outside strings) to null
    let read = |p: PathBuf| -> Result<Value> { nnunet_schema::json::read_json(&p).map_err(|e| user(e.to_string())) };
    let summary = read(fold_dir.join("validation/summary.json"))?;
    let debug = read(fold_dir.join("debug.json"))?;
    let meta = Stored::locate(fold_dir, "checkpoint_final")
        .ok_or_else(|| user(format!("{}: no checkpoint_final", fold_dir.display())))?
        .read_meta()
        .map_err(|e| user(e.to_string()))?;
    // training time from the logger's epoch timestamps (also right for reused runs)
    let (starts, ends) = (&meta.logging.epoch_start_timestamps, &meta.logging.epoch_end_timestamps);
    let train_seconds: f64 = starts.iter().zip(ends).map(|(s, e)| e - s).sum();
    Ok(json!({
        "fold_dir": fold_dir.display().to_string(),
        "dice_foreground_mean": summary["foreground_mean"]["Dice"],
        "dice_per_label": summary["mean"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v["Dice"].clone())).collect::<Map<String, Value>>()),
        "peak_memory_allocated_bytes": debug["peak_memory_allocated_bytes"],
        "peak_memory_reserved_bytes": debug["peak_memory_reserved_bytes"],
        "memory_measured_on": debug["memory_measured_on"],
        "num_parameters": debug["num_parameters"],
        "epochs": starts.len(),
        "training_seconds": train_seconds,
        "wall_seconds": wall_seconds,
        "device": debug["device"],
    }))
}

pub fn run(a: &Args) -> Result<()> {
    if a.archs.is_empty() {
        return Err(user("benchmark: give at least one --arch"));
    }
    let results = paths::env_dir(RESULTS)?;
    let exe = std::env::current_exe().context("cannot locate this binary")?;
    let names: Vec<String> = a.datasets.iter().map(|d| paths::resolve_dataset_name(d)).collect::<Result<_>>()?;
    let folds = if a.folds.is_empty() { vec!["0".to_string()] } else { a.folds.clone() };
    // resolve every architecture first: a typo fails before hours of training
    let mut selections = Vec::new();
    for s in &a.archs {
        let (name, cfg) = parse_arch(s)?;
        let sel = ArchSelection::resolve(&name, cfg.as_deref()).map_err(|e| user(format!("--arch {s}: {e}")))?;
        selections.push((s.clone(), name, cfg, sel));
    }
    let mut rows = Vec::new();
    for (spec, name, cfg, sel) in &selections {
        let tag = sel.tag();
        for ds in &names {
            for fold in &folds {
                let out_dir = results.join(ds).join(format!("{}+{tag}__{}__{}", a.trainer, a.plans, a.configuration));
                let fold_dir = out_dir.join(if fold == "all" { "fold_all".to_string() } else { format!("fold_{fold}") });
                let done = Stored::locate(&fold_dir, "checkpoint_final").is_some() && fold_dir.join("validation/summary.json").exists();
                let mut wall = None;
                if done {
                    println!("{ds} {spec} fold {fold}: finished run found in {}, reusing it", fold_dir.display());
                } else {
                    println!("{ds} {spec} fold {fold}: training ({} {})", a.trainer, a.configuration);
                    let mut cmd = std::process::Command::new(&exe);
                    cmd.args(["train", ds, &a.configuration, fold, "--trainer", &a.trainer, "--plans", &a.plans, "--device", &a.device]);
                    cmd.args(["--arch", name]);
                    if let Some(c) = cfg {
                        cmd.args(["--arch-config", c]);
                    }
                    let t0 = Instant::now();
                    let status = cmd.status().with_context(|| format!("cannot run {}", exe.display()))?;
                    wall = Some(t0.elapsed().as_secs_f64());
                    if !status.success() {
                        eprintln!("{ds} {spec} fold {fold}: training failed ({status}); the table marks it as failed");
                        rows.push(json!({"arch": spec, "network_class_name": sel.entry.name, "tag": tag, "dataset": ds, "fold": fold, "failed": true}));
                        continue;
                    }
                }
                let mut r = run_record(&fold_dir, wall)?;
                let m = r.as_object_mut().expect("object");
                for (k, v) in [
                    ("arch", json!(spec)),
                    ("network_class_name", json!(sel.entry.name)),
                    ("tag", json!(tag)),
                    ("dataset", json!(ds)),
                    ("fold", json!(fold)),
                ] {
                    m.insert(k.into(), v);
                }
                m.insert("failed".into(), json!(false));
                rows.push(r);
            }
        }
    }
    let report = json!({
        "configuration": a.configuration,
        "plans": a.plans,
        "trainer": a.trainer,
        "datasets": names,
        "folds": folds,
        "architectures": a.archs,
        "nnunet_version": env!("CARGO_PKG_VERSION"),
        "runs": rows,
    });
    let out = a.output.clone().unwrap_or_else(|| results.join(format!("benchmark__{}__{}__{}", a.trainer, a.plans, a.configuration)));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    nnunet_schema::json::write_json_atomic(&out.join("benchmark.json"), &report).map_err(|e| user(format!("{}: {e}", out.display())))?;
    let md = render_markdown(&report);
    let tmp = out.join(".benchmark.md.tmp");
    std::fs::write(&tmp, &md).with_context(|| tmp.display().to_string())?;
    std::fs::rename(&tmp, out.join("benchmark.md")).with_context(|| out.display().to_string())?;
    println!("{md}");
    println!("written: {} and benchmark.json", out.join("benchmark.md").display());
    Ok(())
}

fn mean(v: &[f64]) -> Option<f64> {
    if v.is_empty() { None } else { Some(v.iter().sum::<f64>() / v.len() as f64) }
}

/// The benchmark table: one row per architecture; Dice (foreground mean over labels, averaged over folds) per
/// dataset and their mean; the largest measured peak memory; the summed training time; the parameter count.
pub fn render_markdown(report: &Value) -> String {
    let runs = report["runs"].as_array().cloned().unwrap_or_default();
    let datasets: Vec<String> = serde_json::from_value(report["datasets"].clone()).unwrap_or_default();
    let archs: Vec<String> = serde_json::from_value(report["architectures"].clone()).unwrap_or_default();
    let mut s = format!(
        "# Benchmark: {} / {} / {}\n\nEvery architecture trained under the same plans (patch, batch, spacing, topology); folds {}; \
         Dice = foreground mean of the fold's validation `summary.json`, averaged over folds. Memory is the run's measured peak \
         ({}).\n\n",
        report["configuration"].as_str().unwrap_or("?"),
        report["plans"].as_str().unwrap_or("?"),
        report["trainer"].as_str().unwrap_or("?"),
        report["folds"]
            .as_array()
            .map(|f| f.iter().map(|x| x.as_str().unwrap_or("?").to_string()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        runs.iter().find_map(|r| r["memory_measured_on"].as_str()).unwrap_or("device"),
    );
    s.push_str("| architecture |");
    for d in &datasets {
        s.push_str(&format!(" {d} Dice |"));
    }
    s.push_str(" mean Dice | peak memory allocated (MiB) | peak reserved (MiB) | training time (s) | parameters |\n|---|");
    s.push_str(&"---|".repeat(datasets.len() + 5));
    s.push('\n');
    for a in &archs {
        let mine: Vec<&Value> = runs.iter().filter(|r| r["arch"].as_str() == Some(a.as_str())).collect();
        let label = mine.first().and_then(|r| r["network_class_name"].as_str()).map(short_name).unwrap_or(a);
        let cfg = a.split_once('=').map(|(_, c)| format!(" `{c}`")).unwrap_or_default();
        s.push_str(&format!("| {label}{cfg} |"));
        let mut per_ds = Vec::new();
        for d in &datasets {
            let runs_d: Vec<&&Value> = mine.iter().filter(|r| r["dataset"].as_str() == Some(d.as_str())).collect();
            let failed = runs_d.iter().any(|r| r["failed"].as_bool() == Some(true));
            let dice: Vec<f64> = runs_d.iter().filter_map(|r| r["dice_foreground_mean"].as_f64()).collect();
            match (failed, mean(&dice)) {
                (true, _) => s.push_str(" failed |"),
                (false, Some(m)) => {
                    per_ds.push(m);
                    s.push_str(&format!(" {:.2} |", 100.0 * m));
                }
                (false, None) => s.push_str(" – |"),
            }
        }
        let fmt_opt = |v: Option<f64>, scale: f64, prec: usize| v.map_or("–".to_string(), |x| format!("{:.*}", prec, x * scale));
        let max_of = |k: &str| mine.iter().filter_map(|r| r[k].as_f64()).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let time: f64 = mine.iter().filter_map(|r| r["training_seconds"].as_f64()).sum();
        let params = mine.iter().find_map(|r| r["num_parameters"].as_u64());
        s.push_str(&format!(
            " {} | {} | {} | {:.0} | {} |\n",
            fmt_opt(if per_ds.len() == datasets.len() { mean(&per_ds) } else { None }, 100.0, 2),
            fmt_opt(max_of("peak_memory_allocated_bytes"), 1.0 / 1048576.0, 1),
            fmt_opt(max_of("peak_memory_reserved_bytes"), 1.0 / 1048576.0, 1),
            time,
            params.map_or("–".to_string(), |p| p.to_string()),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_values() {
        assert_eq!(parse_arch("MedNeXt").unwrap(), ("MedNeXt".into(), None));
        assert_eq!(parse_arch(r#"MedNeXt={"size":"S"}"#).unwrap(), ("MedNeXt".into(), Some(r#"{"size":"S"}"#.into())));
        assert!(parse_arch("={}").is_err());
    }

    #[test]
    fn table_rows_and_columns() {
        let run = |arch: &str, class: &str, ds: &str, fold: &str, dice: f64, mem: u64, t: f64| {
            json!({"arch": arch, "network_class_name": class, "dataset": ds, "fold": fold, "dice_foreground_mean": dice,
                   "peak_memory_allocated_bytes": mem, "peak_memory_reserved_bytes": 2 * mem, "training_seconds": t,
                   "num_parameters": 1234, "failed": false, "memory_measured_on": "host"})
        };
        let report = json!({
            "configuration": "3d_fullres", "plans": "nnUNetPlans", "trainer": "nnUNetTrainer_5epochs",
            "datasets": ["Dataset004_Hippocampus", "Dataset002_Heart"], "folds": ["0", "1"],
            "architectures": ["PlainConvUNet", "MedNeXt={\"size\":\"S\"}"],
            "runs": [
                run("PlainConvUNet", "dynamic_network_architectures.architectures.unet.PlainConvUNet", "Dataset004_Hippocampus", "0", 0.8, 1048576, 10.0),
                run("PlainConvUNet", "dynamic_network_architectures.architectures.unet.PlainConvUNet", "Dataset004_Hippocampus", "1", 0.6, 2097152, 20.0),
                run("PlainConvUNet", "dynamic_network_architectures.architectures.unet.PlainConvUNet", "Dataset002_Heart", "0", 0.9, 1048576, 5.0),
                {"arch": "MedNeXt={\"size\":\"S\"}", "network_class_name": "MedNeXt", "dataset": "Dataset004_Hippocampus", "fold": "0", "failed": true},
            ]
        });
        let md = render_markdown(&report);
        let lines: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(lines.len(), 4, "{md}");
        assert!(lines[0].contains("Dataset004_Hippocampus Dice") && lines[0].contains("Dataset002_Heart Dice"), "{md}");
        // Plain: Hippocampus mean of folds 70.00, Heart 90.00, mean 80.00, max memory 2 MiB, time 35 s
        assert_eq!(lines[2], "| PlainConvUNet | 70.00 | 90.00 | 80.00 | 2.0 | 4.0 | 35 | 1234 |", "{md}");
        assert!(lines[3].starts_with("| MedNeXt `{\"size\":\"S\"}` | failed | – | – |"), "{md}");
    }
}
