//! nnU-Net's commands on the embedded demo dataset, through the `nnUNetv2_*` aliases, compared byte for byte
//! with what Python nnU-Net 2.8.1 wrote for the same data (tests/fixtures/demo_Dataset004_24).

use nnunet_tests::{aliases_dir, copy_dir, fixtures, nnunet_bin, repo_root, run, run_in, tempfile_like::TempDir};
use std::path::Path;

#[test]
fn fingerprint_and_plans_equal_nnunet_on_demo_dataset() {
    let bin = aliases_dir();
    let work = TempDir::new("nnunet-pipeline");
    let (raw, pre, res) = (work.path().join("raw"), work.path().join("pre"), work.path().join("res"));
    copy_dir(&repo_root().join("examples/data/Dataset004_Hippocampus"), &raw.join("Dataset004_Hippocampus"));
    std::fs::create_dir_all(&pre).unwrap();
    std::fs::create_dir_all(&res).unwrap();
    let env = [("nnUNet_raw", raw.as_path()), ("nnUNet_preprocessed", pre.as_path()), ("nnUNet_results", res.as_path())];

    let r = run(
        &bin.path().join("nnUNetv2_plan_and_preprocess"),
        &["-d", "4", "--verify_dataset_integrity", "--no_pp", "-npfp", "2", "--no_pbar"],
        &env,
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let r = run(&bin.path().join("nnUNetv2_plan_experiment"), &["-d", "4", "-pl", "nnUNetPlannerResEncM"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let out = pre.join("Dataset004_Hippocampus");
    for f in ["dataset_fingerprint.json", "nnUNetPlans.json", "nnUNetResEncUNetMPlans.json"] {
        let want = std::fs::read_to_string(fixtures().join("demo_Dataset004_24").join(f)).unwrap();
        let got = std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{f} not written: {e}"));
        assert!(got == want, "{f} differs from nnU-Net's");
    }
    assert!(out.join("dataset.json").exists());

    // a rerun does not recompute the fingerprint; --clean does
    let r = run(&bin.path().join("nnUNetv2_extract_fingerprint"), &["-d", "4", "--no_pbar"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("exists"), "{}", r.stdout);

    // preprocessing: nnUNetv2_preprocess 3d_fullres, exported like nnU-Net's arrays, equal to nnU-Net's reference
    // cases (hippocampus_001/003/004 are in the demo subset; their preprocessing does not depend on the other cases)
    let r = run(&bin.path().join("nnUNetv2_preprocess"), &["-d", "4", "-c", "3d_fullres", "3d_lowres", "-np", "2", "--no_pbar"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Configuration 3d_lowres not found"), "{}", r.stdout);
    assert!(out.join("gt_segmentations/hippocampus_001.nii.gz").exists());
    let export = work.path().join("export");
    let r = run(&nnunet_tests::nnunet_bin(), &["export-preprocessed", "-d", "4", "-c", "3d_fullres", "-o", export.to_str().unwrap()], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("exported 24 cases"), "{}", r.stdout);
    let refdir = work.path().join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-xJf", fixtures().join("preprocessed/preprocessed_reference.tar.xz").to_str().unwrap(), "-C", refdir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(tar.success());
    for case in ["hippocampus_001", "hippocampus_003", "hippocampus_004"] {
        for suffix in ["_data.npy", "_seg.npy"] {
            let ours = std::fs::read(export.join(format!("{case}{suffix}"))).unwrap();
            let theirs = std::fs::read(refdir.join(format!("Dataset004_Hippocampus/3d_fullres/{case}{suffix}"))).unwrap();
            assert!(ours == theirs, "{case}{suffix} differs from nnU-Net's");
        }
    }

    // plan_and_preprocess without --no_pp preprocesses too (2d of the ResEnc plans, shared data identifier)
    let r = run(
        &bin.path().join("nnUNetv2_plan_and_preprocess"),
        &["-d", "4", "-pl", "nnUNetPlannerResEncM", "-c", "2d", "-np", "2", "--no_pbar"],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(out.join("nnUNetPlans_2d").is_dir());
}

#[test]
fn plan_experiment_needs_only_dataset_json_and_fingerprint() {
    let bin = aliases_dir();
    let work = TempDir::new("nnunet-planonly");
    let (raw, pre) = (work.path().join("raw/Dataset004_Hippocampus"), work.path().join("pre/Dataset004_Hippocampus"));
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::create_dir_all(&pre).unwrap();
    let fx = fixtures().join("Dataset004_Hippocampus");
    std::fs::copy(fx.join("dataset.json"), raw.join("dataset.json")).unwrap();
    std::fs::copy(fx.join("dataset_fingerprint.json"), pre.join("dataset_fingerprint.json")).unwrap();
    let env = [("nnUNet_raw", work.path().join("raw")), ("nnUNet_preprocessed", work.path().join("pre"))];
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let r = run(
        &bin.path().join("nnUNetv2_plan_experiment"),
        &["-d", "4", "-pl", "nnUNetPlannerResEncM", "-gpu_memory_target", "80", "-overwrite_plans_name", "nnUNetResEncUNetPlans_80G"],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Expected 8, got 80"), "the non-default target must warn:\n{}", r.stdout);
    let got = std::fs::read_to_string(pre.join("nnUNetResEncUNetPlans_80G.json")).unwrap();
    let want = std::fs::read_to_string(fx.join("nnUNetResEncUNetPlans_80G.json")).unwrap();
    assert!(got == want, "80G plans differ from nnU-Net's");
}

#[test]
fn missing_env_var_and_unknown_planner_are_clear_errors() {
    let bin = aliases_dir();
    let r = run(&bin.path().join("nnUNetv2_plan_experiment"), &["-d", "4"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("dataset with the ID 4") || r.stderr.contains("nnUNet_raw"), "{}", r.stderr);

    let work = TempDir::new("nnunet-badpl");
    std::fs::create_dir_all(work.path().join("Dataset004_X")).unwrap();
    std::fs::write(
        work.path().join("Dataset004_X/dataset.json"),
        std::fs::read(fixtures().join("Dataset004_Hippocampus/dataset.json")).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("Dataset004_Hippocampus/dataset_fingerprint.json"),
        work.path().join("Dataset004_X/dataset_fingerprint.json"),
    )
    .unwrap();
    let env = [("nnUNet_raw", work.path()), ("nnUNet_preprocessed", work.path())];
    let r = run(&bin.path().join("nnUNetv2_plan_experiment"), &["-d", "4", "-pl", "nnUNetPlannerResEncl"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Did you mean: nnUNetPlannerResEncL"), "{}", r.stderr);
    // nnU-Net's default -device is cuda: without a GPU backend (or, in a LibTorch build, without a GPU) that is a clear
    // user error
    let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_fullres", "0"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("without a GPU backend") || r.stderr.contains("libtorch_cuda.so"), "{}", r.stderr);
    // a missing input is a user error naming the file (exit 2)
    let r = run_in(Some(work.path()), &bin.path().join("nnUNetv2_ensemble"), &["-i", "a", "b", "-o", "c"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("a/dataset.json"), "{}", r.stderr);
    let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_fullres", "0", "-device", "cpu", "--precision", "half"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--precision half: expected auto, fp32, fp16 or bf16"), "{}", r.stderr);
    if !run(&nnunet_bin(), &["--version"], &[]).stdout.contains("tch") {
        let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_fullres", "0", "-device", "cpu", "--precision", "bf16"], &env);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("half precision needs the LibTorch backend's autocast"), "{}", r.stderr);
    }
    let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_fullres", "0", "-num_gpus", "0", "-device", "cpu"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("-num_gpus 0: expected 1 or more"), "{}", r.stderr);
}

#[test]
fn integrity_errors_list_every_problem_and_write_nothing() {
    let bin = aliases_dir();
    let work = TempDir::new("nnunet-broken");
    let ds = work.path().join("raw/Dataset004_Hippocampus");
    copy_dir(&repo_root().join("examples/data/Dataset004_Hippocampus"), &ds);
    std::fs::remove_file(ds.join("labelsTr/hippocampus_001.nii.gz")).unwrap();
    std::fs::write(ds.join("imagesTr/hippocampus_003_0000.nii.gz"), b"not gzip at all").unwrap();
    let pre = work.path().join("pre");
    std::fs::create_dir_all(&pre).unwrap();
    let env = [("nnUNet_raw", work.path().join("raw")), ("nnUNet_preprocessed", pre.clone())];
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let r = run(&bin.path().join("nnUNetv2_extract_fingerprint"), &["-d", "4", "--verify_dataset_integrity", "--no_pbar"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("hippocampus_001"), "missing label not reported:\n{}", r.stderr);
    assert!(r.stderr.contains("hippocampus_003_0000.nii.gz"), "broken image not reported:\n{}", r.stderr);
    assert!(!pre.join("Dataset004_Hippocampus/dataset_fingerprint.json").exists(), "nothing may be written");
}
