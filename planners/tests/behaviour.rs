//! Planner behaviour beyond the reference files: the architecture hook, existing-plans merge, errors,
//! registration, topology helpers.

mod common;
use common::*;
use nnunet_core::architecture::{Architecture, ArchitectureError, Network, NetworkSpec};
use nnunet_core::topology::{UNetKind, conv_feature_map_size, feature_map_size_from_kwargs, get_pool_and_conv_props};
use nnunet_core::{PlanContext, PlanError, Planner};
use nnunet_planners::PresetPlanner;
use nnunet_schema::Plans;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An architecture whose memory proxy is the closed form of a built-in class times `scale`.
struct ProxyArch {
    class: &'static str,
    scale: f64,
    calls: AtomicUsize,
}

impl Architecture for ProxyArch {
    fn memory_proxy(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<f64, ArchitectureError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        assert!(!spec.deep_supervision);
        let v = feature_map_size_from_kwargs(self.class, &spec.arch_kwargs, patch, spec.out_channels).map_err(ArchitectureError::Kwargs)?;
        Ok(v as f64 * self.scale)
    }

    fn build(&self, _spec: &NetworkSpec, _device: &burn::tensor::Device) -> Result<Box<dyn Network>, ArchitectureError> {
        Err(ArchitectureError::Other("not buildable in tests".into()))
    }
}

const PLAIN: &str = "dynamic_network_architectures.architectures.unet.PlainConvUNet";

#[test]
fn architecture_proxy_equal_to_closed_form_reproduces_reference() {
    let dir = fixtures().join("Dataset201_AnisoCT");
    let inp = inputs(&dir);
    let arch = ProxyArch { class: PLAIN, scale: 1.0, calls: AtomicUsize::new(0) };
    let mut ctx = PlanContext::new("Dataset201_AnisoCT", &inp.dataset_json, &inp.fingerprint, "SimpleITKIO");
    ctx.architecture = Some((PLAIN, &arch));
    let out = PresetPlanner::experiment_planner().plan(&ctx).unwrap();
    assert!(arch.calls.load(Ordering::Relaxed) > 0, "memory proxy was not used");
    let (v, b) = compare(&out.plans, &dir.join("nnUNetPlans.json"));
    assert!(v && b);
}

#[test]
fn architecture_proxy_budgets_the_search() {
    let inp = inputs(&synthetic().join("brats_like"));
    let base = plan("ExperimentPlanner", "D", &inp, &Opts::default());
    let arch = ProxyArch { class: PLAIN, scale: 4.0, calls: AtomicUsize::new(0) };
    let mut ctx = PlanContext::new("D", &inp.dataset_json, &inp.fingerprint, "SimpleITKIO");
    ctx.architecture = Some(("my.Net", &arch));
    let out = PresetPlanner::experiment_planner().plan(&ctx).unwrap();
    let c0 = &base.plans.configurations().unwrap()["3d_fullres"];
    let c1 = &out.plans.configurations().unwrap()["3d_fullres"];
    assert_eq!(c1["architecture"]["network_class_name"], "my.Net");
    let vox = |c: &serde_json::Value| c["patch_size"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).product::<u64>();
    assert!(vox(c1) < vox(c0), "a 4x more expensive network must get a smaller patch: {} vs {}", c1["patch_size"], c0["patch_size"]);
}

#[test]
fn existing_plans_configurations_are_appended() {
    let dir = fixtures().join("Dataset004_Hippocampus");
    let inp = inputs(&dir);
    let mut existing: Plans = read(&dir.join("nnUNetPlans.json"));
    {
        let cfgs = existing.0["configurations"].as_object_mut().unwrap();
        cfgs.insert("3d_fullres_bs16".into(), json!({"inherits_from": "3d_fullres", "batch_size": 16}));
        cfgs.insert("3d_lowres".into(), json!({"stale": true}));
        cfgs["2d"]["batch_size"] = json!(1);
    }
    existing.0.insert("label_manager".into(), json!("Old"));
    let out = plan("ExperimentPlanner", "Dataset004_Hippocampus", &inp, &Opts { existing: Some(existing), ..Default::default() });
    assert_eq!(out.plans.configuration_names(), ["2d", "3d_fullres", "3d_fullres_bs16", "3d_lowres"]);
    let c = out.plans.configurations().unwrap();
    assert_eq!(c["2d"]["batch_size"], 309, "new configurations replace old ones of the same name");
    assert_eq!(out.plans.0["label_manager"], "LabelManager", "global keys are overwritten");
    let r = out.plans.configuration("3d_fullres_bs16").unwrap();
    assert_eq!(r["batch_size"], 16);
    assert_eq!(r["patch_size"], json!([40, 56, 40]));
}

#[test]
fn invalid_inputs_are_errors() {
    let dir = fixtures().join("Dataset004_Hippocampus");
    let mut inp = inputs(&dir);
    let p = PresetPlanner::experiment_planner();
    {
        let mut ctx = PlanContext::new("D", &inp.dataset_json, &inp.fingerprint, "SimpleITKIO");
        let bad = [1.0, 1.0];
        ctx.overwrite_target_spacing = Some(&bad);
        assert!(matches!(p.plan(&ctx), Err(PlanError::Invalid(_))));
    }
    inp.fingerprint.spacings[3][1] = 0.0;
    {
        let ctx = PlanContext::new("D", &inp.dataset_json, &inp.fingerprint, "SimpleITKIO");
        assert!(matches!(p.plan(&ctx), Err(PlanError::Invalid(_))));
    }
    inp.fingerprint.spacings.clear();
    inp.fingerprint.shapes_after_crop.clear();
    let ctx = PlanContext::new("D", &inp.dataset_json, &inp.fingerprint, "SimpleITKIO");
    assert!(matches!(p.plan(&ctx), Err(PlanError::Invalid(_))));
}

#[test]
fn overwrite_target_spacing_drives_transpose_and_2d() {
    let inp = inputs(&fixtures().join("Dataset004_Hippocampus"));
    let o = Opts { spacing: Some(vec![1.0, 1.0, 2.5]), plans_name: Some("p"), ..Default::default() };
    let out = plan("ExperimentPlanner", "D", &inp, &o);
    assert_eq!(out.plans.0["transpose_forward"], json!([2, 0, 1]));
    let c = out.plans.configurations().unwrap();
    assert_eq!(c["3d_fullres"]["spacing"], json!([2.5, 1.0, 1.0]));
    assert_eq!(c["2d"]["spacing"], json!([1.0, 1.0]));
    // original median spacing is the raw one, transposed
    assert_eq!(out.plans.0["original_median_spacing_after_transp"], json!([1.0, 1.0, 1.0]));
}

#[test]
fn registered_under_nnunet_names() {
    let reg = nnunet_core::registry::planners().unwrap();
    for (name, plans, gb) in [
        ("ExperimentPlanner", "nnUNetPlans", 8.0),
        ("ResEncUNetPlanner", "nnUNetResEncUNetPlans", 8.0),
        ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans", 8.0),
        ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans", 24.0),
        ("nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans", 40.0),
    ] {
        let e = reg.get(name).unwrap();
        assert!(!e.summary.is_empty() && !e.summary.contains('\n'));
        let p = reg.create(name).unwrap();
        assert_eq!(p.default_plans_name(), plans);
        assert_eq!(p.default_gpu_memory_target_gb(), gb);
    }
}

#[test]
fn topology_helpers() {
    // spec §6.6: Hippocampus 3d_fullres 40x56x40 -> 19,174,400 and 2d 56x40 -> 651,840 (PlainConvUNet, 3 outputs)
    let p = get_pool_and_conv_props(&[1.0, 1.0, 1.0], &[36.0, 50.0, 35.0], 4, 999_999);
    assert_eq!(p.patch_size, [40, 56, 40]);
    let f = [32, 64, 128, 256];
    assert_eq!(conv_feature_map_size(UNetKind::Plain, &f, &p.strides, &[2; 4], &[2; 3], &p.patch_size, 3), 19_174_400);
    assert_eq!(conv_feature_map_size(UNetKind::ResidualEncoder, &f, &p.strides, &[1, 3, 4, 6], &[1; 3], &p.patch_size, 3), 23_609_600);
    let p2 = get_pool_and_conv_props(&[1.0, 1.0], &[50.0, 35.0], 4, 999_999);
    assert_eq!(p2.patch_size, [56, 40]);
    assert_eq!(conv_feature_map_size(UNetKind::Plain, &f, &p2.strides, &[2; 4], &[2; 3], &p2.patch_size, 3), 651_840);
    assert_eq!(conv_feature_map_size(UNetKind::ResidualEncoder, &f, &p2.strides, &[1, 3, 4, 6], &[1; 3], &p2.patch_size, 3), 1_001_280);
    // ACDC-like anisotropic spacing: in-plane kernels first, z joins later
    let a = get_pool_and_conv_props(&[10.0, 1.5, 1.5], &[10.0, 256.0, 224.0], 4, 999_999);
    assert_eq!(a.kernel_sizes[0], [1, 3, 3]);
    assert_eq!(a.strides[1], [1, 2, 2]);
    assert_eq!(a.num_pool_per_axis, [1, 5, 5]);
}

#[test]
fn singleton_axis_volume_is_an_error_not_a_hang() {
    // nnU-Net issue #2809: 2D images stored as (H, W, 1) volumes with 1 mm spacing make the 3d_lowres search shrink
    // the singleton axis towards 0 (Python: OverflowError). We must return a clear error instead.
    let mut inp = inputs(&fixtures().join("Dataset004_Hippocampus"));
    let n = inp.fingerprint.spacings.len();
    inp.fingerprint.spacings = vec![vec![1.0, 1.0, 1.0]; n];
    inp.fingerprint.shapes_after_crop = vec![vec![2000, 2000, 1]; n];
    let ctx = PlanContext::new("D", &inp.dataset_json, &inp.fingerprint, "SimpleITKIO");
    match PresetPlanner::experiment_planner().plan(&ctx) {
        Err(PlanError::Failed(m)) => assert!(m.contains("3d_lowres"), "{m}"),
        other => panic!("expected a planning error, got {other:?}"),
    }
}
