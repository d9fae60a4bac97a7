//! Shared helpers of the planner tests: fixture loading and plan running.
#![allow(dead_code)]

use nnunet_core::{PlanContext, Planner};
use nnunet_planners::PresetPlanner;
use nnunet_schema::json::to_python_string;
use nnunet_schema::{DatasetJson, Fingerprint, Plans};
use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

pub fn synthetic() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/synthetic")
}

pub fn read_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn read<T: serde::de::DeserializeOwned>(p: &Path) -> T {
    serde_json::from_str(&read_text(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub struct Inputs {
    pub dataset_json: DatasetJson,
    pub fingerprint: Fingerprint,
}

pub fn inputs(dir: &Path) -> Inputs {
    Inputs { dataset_json: read(&dir.join("dataset.json")), fingerprint: read(&dir.join("dataset_fingerprint.json")) }
}

/// Options of one planner run (the CLI flags of `nnUNetv2_plan_experiment`).
#[derive(Default, Clone)]
pub struct Opts<'a> {
    pub gpu: Option<f64>,
    pub plans_name: Option<&'a str>,
    pub spacing: Option<Vec<f64>>,
    pub existing: Option<Plans>,
    pub reader: Option<&'a str>,
}

pub fn plan(planner: &str, dataset_name: &str, inp: &Inputs, o: &Opts<'_>) -> nnunet_core::planner::PlanOutput {
    let p = PresetPlanner::by_name(planner).unwrap_or_else(|| panic!("unknown planner {planner}"));
    let mut ctx = PlanContext::new(dataset_name, &inp.dataset_json, &inp.fingerprint, o.reader.unwrap_or("SimpleITKIO"));
    ctx.gpu_memory_target_gb = o.gpu;
    ctx.plans_name = o.plans_name;
    ctx.overwrite_target_spacing = o.spacing.as_deref();
    ctx.existing_plans = o.existing.as_ref();
    p.plan(&ctx).unwrap_or_else(|e| panic!("{planner} on {dataset_name}: {e}"))
}

/// Compare with a reference file: (value-equal, byte-identical). Prints a short diff hint when unequal.
pub fn compare(got: &Plans, reference: &Path) -> (bool, bool) {
    let text = read_text(reference);
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let got_v = serde_json::to_value(got).unwrap();
    let value_eq = got_v == want;
    let got_text = to_python_string(got).unwrap();
    let bytes_eq = got_text == text;
    if !value_eq || !bytes_eq {
        let first = got_text.lines().zip(text.lines()).enumerate().find(|(_, (a, b))| a != b);
        eprintln!(
            "{}: value_eq={value_eq} bytes_eq={bytes_eq}; first differing line: {:?}",
            reference.display(),
            first.map(|(i, (a, b))| (i + 1, a.to_string(), b.to_string()))
        );
    }
    (value_eq, bytes_eq)
}
