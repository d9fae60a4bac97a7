//! Our evaluation and postprocessing against the outputs of the real nnU-Net 2.8.1 in
//! `tests/fixtures/evaluation/` (provenance and exact commands in its README.md).
//!
//! nnU-Net ran from the fixture folder with relative paths (`ref`, `pred`, …), so the file paths in its summaries
//! are relative; ours are made relative by removing the absolute prefix before comparing.

use nnunet_evaluate::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/evaluation").canonicalize().unwrap()
}

/// Parse nnU-Net's JSON (bare NaN → null, so NaN equals NaN) into a Value.
fn parse(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.json");
    std::fs::write(&p, text).unwrap();
    nnunet_schema::json::read_json(&p).unwrap()
}

/// Compare our text (after removing `prefixes` from paths) with nnU-Net's file: equal as JSON values (ints stay ints,
/// floats stay floats, NaN == NaN), and byte-identical.
fn assert_same(ours: &str, reference: &Path, prefixes: &[String]) {
    let mut ours = ours.to_string();
    for p in prefixes {
        ours = ours.replace(p.as_str(), "");
    }
    let theirs = std::fs::read_to_string(reference).unwrap();
    assert_eq!(parse(&ours), parse(&theirs), "JSON values differ from {}", reference.display());
    assert!(ours == theirs, "text differs from {} (values equal)", reference.display());
}

fn prefix(p: &Path) -> String {
    format!("{}/", p.display())
}

fn run_and_compare(out_name: &str, reference: &str, f: impl FnOnce(&Path) -> Result<Summary>) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(out_name);
    let summary = f(&out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text, summary_to_string(&summary));
    assert_same(&text, &fixtures().join(reference), &[prefix(&fixtures())]);
    // and it reads back to the same summary (NaN included)
    let back = read_summary(&out).unwrap();
    assert_eq!(summary_to_string(&back), text);
}

#[test]
fn evaluate_folder_labels_equals_nnunet() {
    let fx = fixtures();
    run_and_compare("summary.json", "summary_folder.json", |out| {
        evaluate_folder(&fx.join("ref"), &fx.join("pred"), &fx.join("dataset.json"), &fx.join("plans.json"), Some(out), 2, false)
    });
}

#[test]
fn evaluate_folder_regions_equals_nnunet() {
    let fx = fixtures();
    run_and_compare("summary.json", "summary_regions.json", |out| {
        evaluate_folder(&fx.join("ref"), &fx.join("pred"), &fx.join("dataset_regions.json"), &fx.join("plans.json"), Some(out), 2, false)
    });
}

#[test]
fn evaluate_folder_ignore_label_equals_nnunet() {
    let fx = fixtures();
    run_and_compare("summary.json", "summary_ignore.json", |out| {
        evaluate_folder(
            &fx.join("ref_ignore"),
            &fx.join("pred"),
            &fx.join("dataset_ignore.json"),
            &fx.join("plans.json"),
            Some(out),
            1,
            false,
        )
    });
}

#[test]
fn evaluate_simple_equals_nnunet() {
    let fx = fixtures();
    run_and_compare("summary.json", "summary_simple.json", |out| {
        evaluate_simple(&fx.join("ref"), &fx.join("pred"), &[1, 2], Some(out), 0, None, false)
    });
}

#[test]
fn evaluate_simple_ignore_and_absent_label_equals_nnunet() {
    // label 4 is absent everywhere: its mean Dice is NaN and so is the foreground mean Dice
    let fx = fixtures();
    run_and_compare("summary.json", "summary_simple_ignore.json", |out| {
        evaluate_simple(&fx.join("ref_ignore"), &fx.join("pred"), &[1, 2, 4], Some(out), 2, Some(3), false)
    });
}

#[test]
fn nan_and_zero_cases_are_present() {
    // guards the fixture itself: it must exercise NaN (label absent in both) and Dice 0 (label missed)
    let s = read_summary(&fixtures().join("summary_folder.json")).unwrap();
    let dice: Vec<f64> = s.metric_per_case.iter().map(|c| c.metrics["2"].Dice).collect();
    assert!(dice.iter().any(|d| d.is_nan()));
    assert!(dice.contains(&0.0));
    let text = std::fs::read_to_string(fixtures().join("summary_simple_ignore.json")).unwrap();
    assert!(text.contains("\"Dice\": NaN"));
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

#[test]
fn missing_predictions_error_unless_chill() {
    let fx = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred");
    copy_dir(&fx.join("pred"), &pred);
    std::fs::remove_file(pred.join("hippocampus_004.nii.gz")).unwrap();
    let out = tmp.path().join("s.json");
    let err = evaluate_folder(&fx.join("ref"), &pred, &fx.join("dataset.json"), &fx.join("plans.json"), Some(&out), 2, false).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, EvalError::MissingPredictions { ref missing, .. } if missing == &["hippocampus_004.nii.gz".to_string()]),
        "{msg}"
    );
    assert!(msg.contains("hippocampus_004.nii.gz"), "{msg}");
    assert!(!out.exists());
    // chill: the five present cases, each exactly as in nnU-Net's full summary
    let s = evaluate_folder(&fx.join("ref"), &pred, &fx.join("dataset.json"), &fx.join("plans.json"), Some(&out), 2, true).unwrap();
    let full = read_summary(&fx.join("summary_folder.json")).unwrap();
    assert_eq!(s.metric_per_case.len(), 5);
    for c in &s.metric_per_case {
        let name = Path::new(&c.prediction_file).file_name().unwrap().to_string_lossy().into_owned();
        let theirs = full.metric_per_case.iter().find(|f| f.prediction_file.ends_with(&name)).unwrap();
        assert_eq!(summary::to_python_string_with_nan(&c.metrics).unwrap(), summary::to_python_string_with_nan(&theirs.metrics).unwrap());
    }
}

#[test]
fn determine_postprocessing_equals_nnunet() {
    let fx = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pp/pred");
    copy_dir(&fx.join("pred"), &pred);
    let outcome =
        determine_postprocessing(&pred, &fx.join("ref"), Some(&fx.join("plans.json")), Some(&fx.join("dataset.json")), 2, true).unwrap();
    assert_eq!(outcome.steps.len(), 3, "{:?}", outcome.messages);
    let prefixes = [prefix(tmp.path()), prefix(&fx)];
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    assert_same(&read(pred.join("postprocessing.json")), &fx.join("pp/pred/postprocessing.json"), &prefixes);
    assert_same(&read(pred.join("summary.json")), &fx.join("pp/pred/summary.json"), &prefixes);
    assert_same(&read(pred.join("postprocessed/summary.json")), &fx.join("pp/pred/postprocessed/summary.json"), &prefixes);
    assert!(!pred.join("postprocessed/temp").exists());
    // the postprocessed segmentations equal nnU-Net's voxel for voxel
    let rw = nnunet_data::io::reader_writer_by_name("SimpleITKIO").unwrap();
    let mut changed = 0;
    for name in evaluate::subfiles(&fx.join("pp/pred/postprocessed"), Some(".nii.gz")).unwrap() {
        let ours = rw.read_seg(&pred.join("postprocessed").join(&name)).unwrap();
        let theirs = rw.read_seg(&fx.join("pp/pred/postprocessed").join(&name)).unwrap();
        assert_eq!(ours.shape, theirs.shape);
        assert!(ours.data == theirs.data, "{name} differs from nnU-Net's postprocessed file");
        let input = rw.read_seg(&fx.join("pred").join(&name)).unwrap();
        changed += usize::from(input.data != ours.data);
    }
    assert!(changed >= 2, "postprocessing should change some cases");
    // the steps read back from postprocessing.json, and applying them reproduces postprocessed/
    let steps = read_postprocessing_file(&pred.join("postprocessing.pkl")).unwrap();
    assert_eq!(steps, outcome.steps);
    let applied = tmp.path().join("applied");
    apply_postprocessing_to_folder(&fx.join("pred"), &applied, &steps, Some(&fx.join("plans.json")), Some(&fx.join("dataset.json")), 2)
        .unwrap();
    for name in evaluate::subfiles(&applied, None).unwrap() {
        let a = rw.read_seg(&applied.join(&name)).unwrap();
        let b = rw.read_seg(&fx.join("pp/pred/postprocessed").join(&name)).unwrap();
        assert!(a.data == b.data, "{name}");
    }
    // nnU-Net's own steps (from its postprocessing.json) are the same
    assert_eq!(read_postprocessing_json(&fx.join("pp/pred/postprocessing.json")).unwrap(), steps);
}

#[test]
fn postprocessing_pickle_loads_in_python_when_available() {
    // a Python with nnunetv2 2.8.1: $NNUNET_PY (a venv folder), else this project's development machines' venv
    let venv = std::env::var_os("NNUNET_PY").map(std::path::PathBuf::from).unwrap_or_else(|| "/root/nnunet-py".into());
    let py_path = venv.join("bin/python");
    let py = py_path.as_path();
    if !py.exists() {
        eprintln!("skipped: no nnU-Net python");
        return;
    }
    let steps = read_postprocessing_json(&fixtures().join("pp/pred/postprocessing.json")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("pp.pkl");
    std::fs::write(&p, postprocessing::postprocessing_pickle(&steps)).unwrap();
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(format!("import pickle; f, k = pickle.load(open('{}', 'rb')); print([i.__name__ for i in f], k)", p.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout.trim(),
        "['remove_all_but_largest_component_from_segmentation', 'remove_all_but_largest_component_from_segmentation', \
         'remove_all_but_largest_component_from_segmentation'] [{'labels_or_regions': [1, 2]}, {'labels_or_regions': 1}, \
         {'labels_or_regions': 2}]"
    );
}
