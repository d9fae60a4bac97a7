//! Synthetic datasets (ACDC-like, liver-like cascade, transposed, BraTS-like regions, 2D natural images, tiny)
//! against oracle plans produced by nnU-Net 2.8.1's own planner source (see tests/data/README.md).

mod common;
use common::*;
use nnunet_schema::Plans;
use serde_json::Value;

#[test]
fn synthetic_oracle_cases() {
    let manifest: Vec<Value> = read(&synthetic().join("manifest.json"));
    assert!(manifest.len() >= 40, "manifest too short");
    let mut failures = Vec::new();
    let mut text_failures = Vec::new();
    for case in &manifest {
        let ds = case["dataset"].as_str().unwrap();
        let dir = synthetic().join(ds);
        let inp = inputs(&dir);
        let spacing: Option<Vec<f64>> = case.get("spacing").map(|s| serde_json::from_value(s.clone()).unwrap());
        let existing: Option<Plans> = case.get("existing").map(|e| read(&dir.join(e.as_str().unwrap())));
        let o = Opts {
            gpu: case.get("gpu").and_then(Value::as_f64),
            plans_name: case.get("plans_name").and_then(Value::as_str),
            spacing,
            existing,
            reader: case.get("reader").and_then(Value::as_str),
        };
        let out = plan(case["planner"].as_str().unwrap(), case["dataset_name"].as_str().unwrap(), &inp, &o);
        let expected = case["expected"].as_str().unwrap();
        let (v, b) = compare(&out.plans, &dir.join(expected));
        if !v {
            failures.push(format!("{ds}/{expected}"));
        } else if !b {
            text_failures.push(format!("{ds}/{expected}"));
        }
    }
    assert!(failures.is_empty(), "value mismatches: {failures:?}");
    assert!(text_failures.is_empty(), "text mismatches: {text_failures:?}");
}

#[test]
fn liver_like_cascade_structure() {
    let dir = synthetic().join("liver_like");
    let inp = inputs(&dir);
    let out = plan("nnUNetPlannerResEncM", "Dataset900_liver_like", &inp, &Opts::default());
    let c = out.plans.configurations().unwrap();
    let names: Vec<&str> = c.keys().map(String::as_str).collect();
    assert_eq!(names, ["2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"]);
    let lowres = c["3d_lowres"].as_object().unwrap();
    assert_eq!(lowres.keys().next_back().unwrap(), "next_stage");
    assert_eq!(lowres["next_stage"], "3d_cascade_fullres");
    assert_eq!(lowres["batch_dice"], false);
    assert_eq!(lowres["data_identifier"], "nnUNetResEncUNetMPlans_3d_lowres");
    assert!(lowres["median_image_size_in_voxels"].as_array().unwrap().iter().all(|v| v.is_i64()));
    assert_eq!(c["3d_fullres"]["batch_dice"], true);
    assert_eq!(c["3d_cascade_fullres"], serde_json::json!({"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}));
    // the cascade resolves to the fullres configuration plus previous_stage
    let resolved = out.plans.configuration("3d_cascade_fullres").unwrap();
    assert_eq!(resolved["patch_size"], c["3d_fullres"]["patch_size"]);
    assert_eq!(resolved["previous_stage"], "3d_lowres");
    // XL has a large enough fullres patch: no lowres, fullres batch_dice false
    let out = plan("nnUNetPlannerResEncXL", "Dataset900_liver_like", &inp, &Opts::default());
    let c = out.plans.configurations().unwrap();
    assert!(!c.contains_key("3d_lowres") && !c.contains_key("3d_cascade_fullres"));
    assert_eq!(c["3d_fullres"]["batch_dice"], false);
}

#[test]
fn natural_2d_images_do_not_crash() {
    let dir = synthetic().join("natural_2d");
    let inp = inputs(&dir);
    for p in ["ExperimentPlanner", "ResEncUNetPlanner", "nnUNetPlannerResEncM", "nnUNetPlannerResEncL", "nnUNetPlannerResEncXL"] {
        let out = plan(p, "Dataset999_nat", &inp, &Opts { reader: Some("NaturalImage2DIO"), ..Default::default() });
        let names = out.plans.configuration_names();
        assert_eq!(names, ["2d"], "{p}");
        assert_eq!(out.plans.0["image_reader_writer"], "NaturalImage2DIO");
        assert_eq!(out.plans.0["original_median_spacing_after_transp"][0], 999.0);
    }
    // spec §5.3 example: default [640, 640] bs 2 vs ResEnc M [512, 512] bs 13
    let d = plan("ExperimentPlanner", "D", &inp, &Opts::default());
    let m = plan("nnUNetPlannerResEncM", "D", &inp, &Opts::default());
    assert_eq!(d.plans.configurations().unwrap()["2d"]["patch_size"], serde_json::json!([640, 640]));
    assert_eq!(d.plans.configurations().unwrap()["2d"]["batch_size"], 2);
    assert_eq!(m.plans.configurations().unwrap()["2d"]["patch_size"], serde_json::json!([512, 512]));
    assert_eq!(m.plans.configurations().unwrap()["2d"]["batch_size"], 13);
}

#[test]
fn transposed_and_masked_normalization() {
    let inp = inputs(&synthetic().join("aniso_last"));
    let out = plan("ExperimentPlanner", "D", &inp, &Opts::default());
    assert_eq!(out.plans.0["transpose_forward"], serde_json::json!([2, 0, 1]));
    assert_eq!(out.plans.0["transpose_backward"], serde_json::json!([1, 2, 0]));
    let inp = inputs(&synthetic().join("brats_like"));
    let out = plan("ExperimentPlanner", "D", &inp, &Opts::default());
    let c = &out.plans.configurations().unwrap()["3d_fullres"];
    assert_eq!(c["use_mask_for_norm"], serde_json::json!([true, true, true, true]));
    let inp = inputs(&synthetic().join("tiny"));
    let out = plan("ExperimentPlanner", "D", &inp, &Opts::default());
    let c = &out.plans.configurations().unwrap()["2d"];
    assert_eq!(c["normalization_schemes"], serde_json::json!(["NoNormalization", "RescaleTo01Normalization"]));
    assert_eq!(c["use_mask_for_norm"], serde_json::json!([false, false]));
}
