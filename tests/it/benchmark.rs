//! Fair benchmarking: `nnunet benchmark` trains PlainConvUNet, ResidualEncoderUNet and MedNeXt under the same plans
//! (the tiny Hippocampus configuration) and writes the table; `train --arch` records the architecture; the trained
//! model predicts through nnU-Net's `-tr` naming; `calibrate-vram` measures; matched-VRAM plans for MedNeXt.

use nnunet_tests::{nnunet_bin, read_json, run, tempfile_like::TempDir, tiny_hippocampus};
use serde_json::Value;

const MEDNEXT: &str = r#"MedNeXt={"size":"S","n_channels":4}"#;

#[test]
fn benchmark_three_architectures_under_the_same_plans() {
    let work = TempDir::new("nnunet-bench");
    let dirs = tiny_hippocampus(work.path());
    let out = work.path().join("bench");
    let r = run(
        &nnunet_bin(),
        &[
            "benchmark",
            "-d",
            "4",
            "-c",
            "3d_tiny",
            "--arch",
            "PlainConvUNet",
            "--arch",
            "ResidualEncoderUNet",
            "--arch",
            MEDNEXT,
            "--tr",
            "nnUNetTrainerDebug",
            "-o",
            out.to_str().unwrap(),
        ],
        &dirs.env(),
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let report = read_json(&out.join("benchmark.json"));
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{report}");
    for run in runs {
        assert_eq!(run["failed"], false, "{run}");
        let dice = run["dice_foreground_mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&dice), "{run}");
        // flex tensors live on the Rust heap (allocated is measured); LibTorch allocates outside it (reserved only)
        if !run["memory_measured_on"].as_str().unwrap().contains("resident set only") {
            assert!(run["peak_memory_allocated_bytes"].as_u64().unwrap() > 0, "{run}");
        } else {
            assert!(run["peak_memory_allocated_bytes"].is_null() && run["peak_memory_reserved_bytes"].as_u64().unwrap() > 0, "{run}");
        }
        assert!(run["training_seconds"].as_f64().unwrap() > 0.0, "{run}");
        assert_eq!(run["epochs"], 3);
    }
    let classes: Vec<&str> = runs.iter().map(|r| r["network_class_name"].as_str().unwrap()).collect();
    assert_eq!(
        classes,
        [
            "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
            "MedNeXt"
        ]
    );
    // same plans: every run trained the configuration's patch and batch
    for run in runs {
        let debug = read_json(&std::path::Path::new(run["fold_dir"].as_str().unwrap()).join("debug.json"));
        assert_eq!(debug["patch_size"], serde_json::json!([24, 32, 24]));
        assert_eq!(debug["batch_size"], 2);
        assert!(debug["architecture_selection"]["tag"].is_string(), "{debug}");
    }
    let md = std::fs::read_to_string(out.join("benchmark.md")).unwrap();
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| architecture")).collect();
    assert_eq!(rows.len(), 3, "{md}");
    assert!(rows[2].starts_with("| MedNeXt"), "{md}");

    // the parameter counts in the table are the networks' own (summary builds the same network)
    let s = run(
        &nnunet_bin(),
        &["summary", "-d", "4", "-c", "3d_tiny", "--arch", "MedNeXt", "--arch-config", r#"{"size":"S","n_channels":4}"#],
        &dirs.env(),
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    let params: u64 = s.stdout.lines().find_map(|l| l.strip_prefix("parameters: ")).unwrap().trim().parse().unwrap();
    assert_eq!(runs[2]["num_parameters"], params);

    // a second call reuses the finished runs instead of retraining
    let r = run(
        &nnunet_bin(),
        &["benchmark", "-d", "4", "-c", "3d_tiny", "--arch", "PlainConvUNet", "--tr", "nnUNetTrainerDebug", "-o", out.to_str().unwrap()],
        &dirs.env(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("reusing it"), "{}", r.stdout);

    // the MedNeXt model predicts through nnU-Net's command with the trainer+tag name
    let trainer = runs[2]["fold_dir"].as_str().unwrap().split('/').rev().nth(1).unwrap().split("__").next().unwrap().to_string();
    assert!(trainer.starts_with("nnUNetTrainerDebug+MedNeXt"), "{trainer}");
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(dirs.raw.join("Dataset004_Hippocampus/imagesTr/hippocampus_001_0000.nii.gz"), input.join("hippocampus_001_0000.nii.gz"))
        .unwrap();
    let pred = work.path().join("pred");
    let r = run(
        &nnunet_bin(),
        &[
            "predict",
            "-i",
            input.to_str().unwrap(),
            "-o",
            pred.to_str().unwrap(),
            "-d",
            "4",
            "-c",
            "3d_tiny",
            "--trainer",
            &trainer,
            "-f",
            "0",
            "--device",
            "cpu",
        ],
        &dirs.env(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(pred.join("hippocampus_001.nii.gz").exists());
}

#[test]
fn calibrate_vram_and_matched_vram_plans() {
    let work = TempDir::new("nnunet-calib");
    let dirs = tiny_hippocampus(work.path());
    let out = work.path().join("calib.json");
    let r = run(
        &nnunet_bin(),
        &["calibrate-vram", "-d", "4", "-c", "3d_tiny", "--arch", "ResidualEncoderUNet", "--steps", "2", "-o", out.to_str().unwrap()],
        &dirs.env(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = read_json(&out);
    let reserved = c["peak_reserved_bytes"].as_u64().unwrap();
    assert!(reserved > 0, "{c}");
    assert!(c["memory_proxy_per_sample"].as_f64().unwrap() > 0.0);
    if !c["measured_on"].as_str().unwrap().contains("resident set only") {
        let alloc = c["peak_allocated_bytes"].as_u64().unwrap();
        assert!(alloc > 1 << 20, "a 3D U-Net training step allocates more than 1 MiB: {c}");
        assert!(c["allocated_bytes_per_proxy_unit"].as_f64().unwrap() > 0.0, "{c}");
    } else {
        // LibTorch: its allocations are not Rust heap allocations, so no "allocated" figure is claimed
        assert!(c["peak_allocated_bytes"].is_null() && c["allocated_bytes_per_proxy_unit"].is_null(), "{c}");
    }
    assert_eq!(c["step_seconds"].as_array().unwrap().len(), 2);

    // matched-VRAM planning: the ResEnc M search budgeted with MedNeXt's memory proxy
    let r = run(&nnunet_bin(), &["plan-experiment", "-d", "4", "--planner", "nnUNetPlannerResEncM", "--arch", "MedNeXt"], &dirs.env());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pre = dirs.preprocessed.join("Dataset004_Hippocampus");
    let plans = read_json(&pre.join("nnUNetResEncUNetMPlans_MedNeXt.json"));
    assert_eq!(plans["plans_name"], "nnUNetResEncUNetMPlans_MedNeXt");
    let fullres: &Value = &plans["configurations"]["3d_fullres"];
    assert_eq!(fullres["architecture"]["network_class_name"], "MedNeXt");
    let r = run(&nnunet_bin(), &["plan-experiment", "-d", "4", "--planner", "nnUNetPlannerResEncM"], &dirs.env());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let resenc = read_json(&pre.join("nnUNetResEncUNetMPlans.json"));
    // the same budget: MedNeXt's larger activation footprint per voxel can only shrink the patch or the batch
    let vox = |c: &Value| -> u64 {
        c["patch_size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).product::<u64>() * c["batch_size"].as_u64().unwrap()
    };
    assert!(vox(fullres) <= vox(&resenc["configurations"]["3d_fullres"]), "{fullres} vs {}", resenc["configurations"]["3d_fullres"]);
    // unknown architecture: clear error, exit 2
    let r = run(&nnunet_bin(), &["plan-experiment", "-d", "4", "--arch", "MedNext"], &dirs.env());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Did you mean: MedNeXt"), "{}", r.stderr);
}
