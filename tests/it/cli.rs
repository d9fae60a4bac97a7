//! The CLI surface: version, list, multicall aliases with nnU-Net's flags, errors.

use nnunet_tests::{aliases_dir, nnunet_bin, run};

#[test]
fn version_names_backends() {
    let r = run(&nnunet_bin(), &["--version"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", r.stdout);
    assert!(r.stdout.contains("backends: flex"), "{}", r.stdout);
}

#[test]
fn list_prints_registered_planners_with_origin() {
    let r = run(&nnunet_bin(), &["list"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for name in ["ExperimentPlanner", "ResEncUNetPlanner", "nnUNetPlannerResEncM", "nnUNetPlannerResEncL", "nnUNetPlannerResEncXL"] {
        let line =
            r.stdout.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("{name} missing:\n{}", r.stdout));
        assert!(line.contains("[nnunet_planners]"), "{line}");
    }
    let r = run(&nnunet_bin(), &["list", "planners"], &[]);
    assert!(r.stdout.starts_with("planners ("), "{}", r.stdout);
    assert!(!r.stdout.contains("architectures ("), "{}", r.stdout);
}

#[test]
fn plan_experiment_alias_help_shows_nnunet_flags() {
    let dir = aliases_dir();
    let r = run(&dir.path().join("nnUNetv2_plan_experiment"), &["-h"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for flag in ["-pl ", "-gpu_memory_target ", "-overwrite_plans_name ", "-overwrite_target_spacing ", "-preprocessor_name "] {
        assert!(r.stdout.contains(flag), "{flag} missing:\n{}", r.stdout);
    }
    assert!(!r.stdout.contains("--pl"), "{}", r.stdout);
}

#[test]
fn train_alias_help_shows_num_gpus() {
    let dir = aliases_dir();
    let r = run(&dir.path().join("nnUNetv2_train"), &["-h"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for flag in ["-num_gpus ", "-tr ", "-pretrained_weights ", "--npz", "--val_best", "-device "] {
        assert!(r.stdout.contains(flag), "{flag} missing:\n{}", r.stdout);
    }
}

#[test]
fn every_alias_has_help() {
    let dir = aliases_dir();
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.len() >= 14, "{names:?}");
    for n in names {
        let r = run(&dir.path().join(&n), &["-h"], &[]);
        assert_eq!(r.code, 0, "{n} -h failed: {}", r.stderr);
        assert!(r.stdout.contains(&format!("Usage: {n}")), "{n}:\n{}", r.stdout);
    }
}

#[test]
fn bad_flag_value_is_a_usage_error() {
    let dir = aliases_dir();
    let r = run(&dir.path().join("nnUNetv2_train"), &["4", "3d_fullres", "0", "-num_gpus", "two"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("num_gpus"), "{}", r.stderr);
}

#[test]
fn unknown_alias_name_suggests() {
    let dir = aliases_dir();
    let link = dir.path().join("nnUNetv2_plan_experimnt");
    std::os::unix::fs::symlink(nnunet_bin(), &link).unwrap();
    let r = run(&link, &["-d", "4"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("nnUNetv2_plan_experiment"), "{}", r.stderr);
}

#[test]
fn unknown_native_subcommand_fails() {
    let r = run(&nnunet_bin(), &["frobnicate"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn summary_ends_with_pytorch_parameter_count() {
    let fx = nnunet_tests::fixtures().join("Dataset004_Hippocampus");
    for (plans, cfg, want) in [("nnUNetPlans.json", "3d_fullres", 5_603_177), ("nnUNetResEncUNetLPlans.json", "2d", 8_728_681)] {
        let plans_file = fx.join(plans);
        let r =
            run(&nnunet_bin(), &["summary", "-d", "Dataset004_Hippocampus", "-c", cfg, "--plans-file", plans_file.to_str().unwrap()], &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout.lines().last(), Some(format!("parameters: {want}").as_str()), "{}", r.stdout);
        assert!(r.stdout.contains("full-resolution output"), "{}", r.stdout);
    }
    let plans_file = fx.join("nnUNetPlans.json");
    let r = run(
        &nnunet_bin(),
        &["summary", "-d", "Dataset004_Hippocampus", "-c", "3d_lowres", "--plans-file", plans_file.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("3d_lowres"), "{}", r.stderr);
}

/// `nnUNetv2_train` on a configuration folder that Python nnU-Net before 2.6 preprocessed (`.npz` + `.pkl`, which this
/// framework does not read) says so and how to get this framework's files; a folder without any cases says that.
/// Both exit 2 before anything is written to `nnUNet_results`.
#[test]
fn training_on_python_preprocessed_data_says_what_to_run() {
    let dir = aliases_dir();
    let work = nnunet_tests::tempfile_like::TempDir::new("nnunet-pyprep");
    let dirs = nnunet_tests::NnunetDirs::new(work.path());
    let pre = dirs.preprocessed.join("Dataset004_Hippocampus");
    let data = pre.join("nnUNetPlans_3d_fullres");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["nnUNetPlans.json", "dataset.json"] {
        std::fs::copy(nnunet_tests::fixtures().join("Dataset004_Hippocampus").join(f), pre.join(f)).unwrap();
    }
    std::fs::create_dir_all(dirs.raw.join("Dataset004_Hippocampus")).unwrap();
    std::fs::create_dir_all(&dirs.results).unwrap();
    let train = || run(&dir.path().join("nnUNetv2_train"), &["4", "3d_fullres", "0", "-device", "cpu"], &dirs.env());
    let r = train();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no preprocessed cases. Run nnUNetv2_preprocess -d 004 -plans_name nnUNetPlans -c 3d_fullres"), "{}", r.stderr);
    for case in ["hippocampus_001", "hippocampus_003"] {
        for f in [format!("{case}.npz"), format!("{case}.pkl")] {
            std::fs::write(data.join(f), b"").unwrap();
        }
    }
    let r = train();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds Python nnU-Net's preprocessed data (2 cases as .npz + .pkl, nnU-Net before 2.6)"), "{}", r.stderr);
    assert!(r.stderr.contains("Run nnUNetv2_preprocess -d 004 -plans_name nnUNetPlans -c 3d_fullres with this framework first"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&dirs.results).unwrap().count(), 0, "nothing written to nnUNet_results");
}
