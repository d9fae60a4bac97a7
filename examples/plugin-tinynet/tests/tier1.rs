//! Tier 1: linking the crate registers TinyNet next to the built-ins; the three-line binary `nnunet-tinynet` lists it
//! and builds it from a plans file.

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, ExitCode};

use tinynet as _;

#[test]
fn linking_registers_tinynet_next_to_the_builtins() {
    let reg = nnunet_core::registry::architectures().unwrap();
    let e = reg.get("TinyNet").unwrap();
    assert_eq!(e.origin_crate(), "tinynet");
    assert!(reg.get("PlainConvUNet").is_ok(), "built-ins are linked through nnunet-cli");
    assert_eq!(nnunet_cli::run(vec!["nnunet".into(), "list".into(), "architectures".into()]), ExitCode::SUCCESS);
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nnunet-tinynet"))
}

#[test]
fn three_line_binary_lists_tinynet() {
    let out = Command::new(bin()).args(["list", "architectures"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.trim_start().starts_with("TinyNet ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("[tinynet]"), "{line}");
}

/// The Hippocampus plans with 3d_fullres switched to TinyNet (the planner's topology, configured by TinyNet).
pub fn tinynet_plans(dir: &Path) -> std::path::PathBuf {
    let fx = nnunet_tests::fixtures().join("Dataset004_Hippocampus");
    let mut plans: Value = serde_json::from_str(&std::fs::read_to_string(fx.join("nnUNetPlans.json")).unwrap()).unwrap();
    let k = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].clone();
    plans["configurations"]["3d_fullres"]["architecture"] = json!({
        "network_class_name": "TinyNet",
        "arch_kwargs": {"n_stages": k["n_stages"], "features_per_stage": k["features_per_stage"], "kernel_sizes": k["kernel_sizes"],
                        "strides": k["strides"], "skip": "add"},
        "_kw_requires_import": []
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(fx.join("dataset.json"), dir.join("dataset.json")).unwrap();
    let p = dir.join("nnUNetPlans.json");
    std::fs::write(&p, serde_json::to_string_pretty(&plans).unwrap()).unwrap();
    p
}

#[test]
fn three_line_binary_builds_tinynet_from_a_plans_file() {
    let dir = std::env::temp_dir().join(format!("tinynet-tier1-{}", std::process::id()));
    let plans = tinynet_plans(&dir);
    let out = Command::new(bin())
        .args(["summary", "-d", "Dataset004_Hippocampus", "-c", "3d_fullres", "--plans-file", plans.to_str().unwrap()])
        .env_remove("nnUNet_raw")
        .env_remove("nnUNet_preprocessed")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("network        TinyNet"), "{stdout}");
    assert!(stdout.contains("<- full-resolution output"), "{stdout}");
    let params: usize = stdout.lines().find_map(|l| l.strip_prefix("parameters: ")).unwrap().trim().parse().unwrap();
    assert!(params > 1000, "{stdout}");
}
