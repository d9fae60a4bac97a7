//! nnUNetv2_train on real data (the embedded Hippocampus subset) with a tiny configuration that inherits the
//! planned 3d_fullres: the loss falls and the pseudo Dice rises; every output nnU-Net writes is there; the trained
//! model then predicts and is evaluated through nnU-Net's commands.

use crate::checkpoint_meta;
use nnunet_engine::checkpoint::Stored;
use nnunet_tests::{aliases_dir, copy_dir, repo_root, run, tempfile_like::TempDir};
use serde_json::{Value, json};

#[test]
fn training_learns_on_real_data_and_the_model_predicts() {
    let bin = aliases_dir();
    let work = TempDir::new("nnunet-train");
    let (raw, pre, res) = (work.path().join("raw"), work.path().join("pre"), work.path().join("res"));
    copy_dir(&repo_root().join("examples/data/Dataset004_Hippocampus"), &raw.join("Dataset004_Hippocampus"));
    let env = [("nnUNet_raw", raw.as_path()), ("nnUNet_preprocessed", pre.as_path()), ("nnUNet_results", res.as_path())];
    let r = run(
        &bin.path().join("nnUNetv2_plan_and_preprocess"),
        &["-d", "4", "-c", "3d_fullres", "-np", "2", "-npfp", "2", "--no_pbar"],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    // a tiny configuration: 3 stages, 4..16 features, patch 24x32x24, batch 2 (inherits data, spacing, normalization)
    let plans_path = pre.join("Dataset004_Hippocampus/nnUNetPlans.json");
    let mut plans: Value = serde_json::from_str(&std::fs::read_to_string(&plans_path).unwrap()).unwrap();
    let mut arch = plans["configurations"]["3d_fullres"]["architecture"].clone();
    let k = &mut arch["arch_kwargs"];
    k["n_stages"] = json!(3);
    k["features_per_stage"] = json!([4, 8, 16]);
    k["kernel_sizes"] = json!([[3, 3, 3], [3, 3, 3], [3, 3, 3]]);
    k["strides"] = json!([[1, 1, 1], [2, 2, 2], [2, 2, 2]]);
    k["n_conv_per_stage"] = json!([2, 2, 2]);
    k["n_conv_per_stage_decoder"] = json!([2, 2]);
    plans["configurations"]["3d_tiny"] =
        json!({"inherits_from": "3d_fullres", "patch_size": [24, 32, 24], "batch_size": 2, "architecture": arch});
    std::fs::write(&plans_path, serde_json::to_string_pretty(&plans).unwrap()).unwrap();

    let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_tiny", "0", "-tr", "nnUNetTrainerSmoke", "-device", "cpu"], &env);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let out = res.join("Dataset004_Hippocampus/nnUNetTrainerSmoke__nnUNetPlans__3d_tiny");
    let fold = out.join("fold_0");
    // nnU-Net's files and nothing of an earlier version's checkpoint folders
    for f in ["checkpoint_final.pth", "checkpoint_best.pth", "progress.png", "debug.json"] {
        assert!(fold.join(f).is_file(), "{f} missing");
    }
    for f in ["checkpoint_latest.pth", "checkpoint_latest", "checkpoint_final", "checkpoint_best"] {
        assert!(!fold.join(f).exists(), "{f} should not exist (checkpoint_latest is removed at the end)");
    }
    // both checkpoints load strictly into the configuration's network and carry the run's metadata
    for name in ["checkpoint_final", "checkpoint_best"] {
        let mut net = tiny_network(&out);
        let m = Stored::locate(&fold, name).unwrap().load_network(net.as_mut()).unwrap();
        assert_eq!((m.trainer_name.as_str(), m.configuration.as_str()), ("nnUNetTrainerSmoke", "3d_tiny"), "{name}");
        assert!(m.rng.is_some() && m.deep_supervision == Some(true), "{name}: {:?} {:?}", m.rng, m.deep_supervision);
    }
    for f in ["plans.json", "dataset.json", "dataset_fingerprint.json"] {
        assert!(out.join(f).exists(), "{f} copy missing");
    }
    let names: Vec<String> = std::fs::read_dir(&fold).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.starts_with("events.out.tfevents.")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("training_log_") && n.ends_with(".txt")), "{names:?}");
    assert!(pre.join("Dataset004_Hippocampus/splits_final.json").exists());
    // final validation: every validation case predicted from its preprocessed arrays, evaluated
    let vsum: Value =
        serde_json::from_str(&std::fs::read_to_string(fold.join("validation/summary.json")).unwrap().replace("NaN", "null")).unwrap();
    assert_eq!(vsum["metric_per_case"].as_array().unwrap().len(), 5, "24 cases -> 5 validation cases in fold 0");
    let val_dice = vsum["foreground_mean"]["Dice"].as_f64().unwrap_or(0.0);
    assert!(r.stdout.contains("Mean Validation Dice"), "{}", r.stdout);

    // learning: loss falls, pseudo Dice rises (first vs last epoch)
    let meta = checkpoint_meta(&fold, "checkpoint_final");
    let (tl, dice) = (&meta.logging.train_losses, &meta.logging.mean_fg_dice);
    assert_eq!(tl.len(), 5, "{meta:?}");
    assert!(tl[4] < tl[0], "train loss did not fall: {tl:?}");
    assert!(dice[4] > dice[0], "pseudo Dice did not rise: {dice:?}");
    assert_eq!(meta.current_epoch, 5);
    let debug: Value = serde_json::from_str(&std::fs::read_to_string(fold.join("debug.json")).unwrap()).unwrap();
    assert_eq!(debug["backend"], json!("flex"));
    assert_eq!(debug["seed"], json!(12345), "the default seed");
    assert!(debug["peak_memory_allocated_bytes"].as_u64().unwrap_or(0) > 0, "{debug}");
    assert!(debug["peak_memory_reserved_bytes"].as_u64().unwrap_or(0) > 0, "{debug}");

    // --c after the final checkpoint: nothing left to train
    let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_tiny", "0", "-tr", "nnUNetTrainerSmoke", "-device", "cpu", "--c"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("0 epochs"), "{}", r.stdout);

    // the trained model predicts two validation cases; evaluation reports a Dice
    let splits: Value =
        serde_json::from_str(&std::fs::read_to_string(pre.join("Dataset004_Hippocampus/splits_final.json")).unwrap()).unwrap();
    let val: Vec<String> = serde_json::from_value(splits[0]["val"].clone()).unwrap();
    let (inp, gt, pred) = (work.path().join("in"), work.path().join("gt"), work.path().join("pred"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&gt).unwrap();
    for case in val.iter().take(2) {
        let src = raw.join("Dataset004_Hippocampus");
        std::fs::copy(src.join(format!("imagesTr/{case}_0000.nii.gz")), inp.join(format!("{case}_0000.nii.gz"))).unwrap();
        std::fs::copy(src.join(format!("labelsTr/{case}.nii.gz")), gt.join(format!("{case}.nii.gz"))).unwrap();
    }
    let r = run(
        &bin.path().join("nnUNetv2_predict"),
        &[
            "-i",
            inp.to_str().unwrap(),
            "-o",
            pred.to_str().unwrap(),
            "-d",
            "4",
            "-c",
            "3d_tiny",
            "-tr",
            "nnUNetTrainerSmoke",
            "-f",
            "0",
            "-device",
            "cpu",
            "--disable_tta",
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = work.path().join("summary.json");
    let r = run(
        &bin.path().join("nnUNetv2_evaluate_simple"),
        &[gt.to_str().unwrap(), pred.to_str().unwrap(), "-l", "1", "2", "-o", summary.to_str().unwrap()],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap().replace("NaN", "null")).unwrap();
    let d = s["foreground_mean"]["Dice"].as_f64().unwrap_or(0.0);
    assert!(d > 0.0, "a trained model should overlap the hippocampus at least a little: {}", s["foreground_mean"]);
    eprintln!("smoke training: train loss {tl:?}, pseudo Dice {dice:?}, fold-0 validation Dice {val_dice:.3}, predicted-case Dice {d:.3}");

    // --val re-runs only the final validation
    let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_tiny", "0", "-tr", "nnUNetTrainerSmoke", "-device", "cpu", "--val"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("validation finished"), "{}", r.stdout);
}

/// The network of the trained `3d_tiny` configuration (with its deep-supervision heads, as trained).
fn tiny_network(model: &std::path::Path) -> Box<dyn nnunet_core::Network> {
    use nnunet_builtin as _;
    let plans: nnunet_schema::Plans = nnunet_schema::json::read_json(&model.join("plans.json")).unwrap();
    let dataset_json: nnunet_schema::DatasetJson = nnunet_schema::json::read_json(&model.join("dataset.json")).unwrap();
    let c = plans.configuration("3d_tiny").unwrap();
    let (class, spec) = nnunet_core::architecture::NetworkSpec::from_configuration(&c, &dataset_json, true).unwrap();
    let arch = nnunet_core::registry::architectures().unwrap().get(&class).unwrap();
    (arch.make)().build(&spec, &burn::tensor::Device::default()).unwrap()
}
