//! The planners against real nnU-Net 2.8.1 plans files (tests/fixtures, copied from shared/reference).

mod common;
use common::*;

fn check(dataset: &str, planner: &str, o: Opts<'_>, file: &str) {
    let dir = fixtures().join(dataset);
    let inp = inputs(&dir);
    let out = plan(planner, dataset, &inp, &o);
    assert_eq!(format!("{}.json", out.plans_name), file);
    let (value_eq, bytes_eq) = compare(&out.plans, &dir.join(file));
    assert!(value_eq, "{dataset}/{file}: plans differ as JSON values");
    assert!(bytes_eq, "{dataset}/{file}: values equal but the text is not byte-identical");
}

#[test]
fn hippocampus_default() {
    check("Dataset004_Hippocampus", "ExperimentPlanner", Opts::default(), "nnUNetPlans.json");
}

#[test]
fn hippocampus_resenc_m() {
    check("Dataset004_Hippocampus", "nnUNetPlannerResEncM", Opts::default(), "nnUNetResEncUNetMPlans.json");
}

#[test]
fn hippocampus_resenc_l() {
    check("Dataset004_Hippocampus", "nnUNetPlannerResEncL", Opts::default(), "nnUNetResEncUNetLPlans.json");
}

#[test]
fn hippocampus_resenc_xl() {
    check("Dataset004_Hippocampus", "nnUNetPlannerResEncXL", Opts::default(), "nnUNetResEncUNetXLPlans.json");
}

#[test]
fn hippocampus_resenc_m_80g() {
    let o = Opts { gpu: Some(80.0), plans_name: Some("nnUNetResEncUNetPlans_80G"), ..Default::default() };
    check("Dataset004_Hippocampus", "nnUNetPlannerResEncM", o, "nnUNetResEncUNetPlans_80G.json");
}

#[test]
fn anisoct_default() {
    check("Dataset201_AnisoCT", "ExperimentPlanner", Opts::default(), "nnUNetPlans.json");
}

#[test]
fn hippocampus_80g_warns_default_does_not() {
    let inp = inputs(&fixtures().join("Dataset004_Hippocampus"));
    let o = Opts { gpu: Some(80.0), plans_name: Some("x"), ..Default::default() };
    let out = plan("nnUNetPlannerResEncM", "Dataset004_Hippocampus", &inp, &o);
    assert_eq!(
        out.messages,
        vec![
            "WARNING: You are running nnUNetPlannerM with a non-standard gpu_memory_target_in_gb. Expected 8, got 80.0.\
             You should only see this warning if you modified this value intentionally!!"
                .to_string()
        ]
    );
    // 8.0 == 8: no warning; the default planner never warns
    let out = plan("nnUNetPlannerResEncM", "D", &inp, &Opts { gpu: Some(8.0), ..Default::default() });
    assert!(out.messages.is_empty(), "{:?}", out.messages);
    let out = plan("ExperimentPlanner", "D", &inp, &Opts { gpu: Some(11.0), ..Default::default() });
    assert!(out.messages.is_empty(), "{:?}", out.messages);
    let out = plan("nnUNetPlannerResEncXL", "D", &inp, &Opts { gpu: Some(24.0), ..Default::default() });
    assert!(out.messages[0].contains("nnUNetPlannerXL") && out.messages[0].contains("Expected 40, got 24.0."));
}

#[test]
fn plain_resenc_planner_matches_spec_numbers() {
    // spec §6.7: plain ResEncUNetPlanner (5 % cap) gives 8 / 309 on the 220-case set; data identifiers are shared.
    let inp = inputs(&fixtures().join("Dataset004_Hippocampus"));
    let out = plan("ResEncUNetPlanner", "Dataset004_Hippocampus", &inp, &Opts::default());
    assert_eq!(out.plans_name, "nnUNetResEncUNetPlans");
    let c = out.plans.configurations().unwrap();
    assert_eq!(c["3d_fullres"]["batch_size"], 8);
    assert_eq!(c["2d"]["batch_size"], 309);
    assert_eq!(c["3d_fullres"]["data_identifier"], "nnUNetPlans_3d_fullres");
    assert_eq!(c["2d"]["data_identifier"], "nnUNetPlans_2d");
    assert_eq!(out.plans.0["experiment_planner_used"], "ResEncUNetPlanner");
}

#[test]
fn default_planner_with_custom_name_uses_it_for_data() {
    let inp = inputs(&fixtures().join("Dataset004_Hippocampus"));
    let o = Opts { plans_name: Some("nnUNetPlans_11G"), gpu: Some(11.0), ..Default::default() };
    let out = plan("ExperimentPlanner", "Dataset004_Hippocampus", &inp, &o);
    let c = out.plans.configurations().unwrap();
    assert_eq!(c["3d_fullres"]["data_identifier"], "nnUNetPlans_11G_3d_fullres");
    assert_eq!(c["2d"]["data_identifier"], "nnUNetPlans_11G_2d");
    // ResEnc with a custom name still points at the default planner's data (spec §5.4)
    let out = plan("nnUNetPlannerResEncL", "Dataset004_Hippocampus", &inp, &Opts { plans_name: Some("custom"), ..Default::default() });
    assert_eq!(out.plans.configurations().unwrap()["3d_fullres"]["data_identifier"], "nnUNetPlans_3d_fullres");
    assert_eq!(out.plans.0["plans_name"], "custom");
}
