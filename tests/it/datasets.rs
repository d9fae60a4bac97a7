//! Dataset and plans management commands, checked against what nnU-Net 2.8.1 writes for the same input
//! (tests/fixtures/README.md names the commands that made the expected files).

use nnunet_tests::{NnunetDirs, aliases_dir, copy_dir, fixtures, nnunet_bin, repo_root, run};
use std::path::Path;

/// `nnUNet_raw/Dataset004_Hippocampus` (the embedded subset) and the Dataset201 plans in `nnUNet_preprocessed`.
fn move_plans_setup(work: &Path) -> NnunetDirs {
    let dirs = NnunetDirs::new(work);
    copy_dir(&repo_root().join("examples/data/Dataset004_Hippocampus"), &dirs.raw.join("Dataset004_Hippocampus"));
    let src = dirs.preprocessed.join("Dataset201_AnisoCT");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixtures().join("Dataset201_AnisoCT/nnUNetPlans.json"), src.join("nnUNetPlans.json")).unwrap();
    dirs
}

#[test]
fn move_plans_between_datasets_writes_nnunets_bytes() {
    let work = aliases_dir();
    let dirs = move_plans_setup(&work.path().join("w"));
    // nnU-Net's flags through the alias, ids resolved from the folders
    let r = run(&work.path().join("nnUNetv2_move_plans_between_datasets"), &["-s", "201", "-t", "4", "-sp", "nnUNetPlans", "-tp", "nnUNetPlansFrom201"], &dirs.env());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = dirs.preprocessed.join("Dataset004_Hippocampus/nnUNetPlansFrom201.json");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(fixtures().join("move_plans/nnUNetPlansFrom201.json")).unwrap());
    // native view, -tp left out: the source plans' name (and data identifiers) kept
    let r = run(&nnunet_bin(), &["move-plans-between-datasets", "-s", "Dataset201_AnisoCT", "-t", "4", "--source-plans", "nnUNetPlans"], &dirs.env());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = dirs.preprocessed.join("Dataset004_Hippocampus/nnUNetPlans.json");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(fixtures().join("move_plans/nnUNetPlans_kept_name.json")).unwrap());
}

#[test]
fn move_plans_between_datasets_names_what_is_missing() {
    let work = aliases_dir();
    let dirs = move_plans_setup(&work.path().join("w"));
    let r = run(&nnunet_bin(), &["move-plans-between-datasets", "-s", "201", "-t", "4", "--source-plans", "nnUNetResEncUNetMPlans"], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Dataset201_AnisoCT/nnUNetResEncUNetMPlans.json") && r.stderr.contains("source plans are missing"), "{}", r.stderr);
    let r = run(&nnunet_bin(), &["move-plans-between-datasets", "-s", "201", "-t", "7", "--source-plans", "nnUNetPlans"], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Dataset007"), "{}", r.stderr);
    assert!(!dirs.preprocessed.join("Dataset004_Hippocampus").exists());
}
