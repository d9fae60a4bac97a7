//! `nnunet export-preprocessed -d ID -c CONFIG [-p PLANS] -o DIR`: every preprocessed case as nnU-Net-style
//! `<case>_data.npy` (float32, c,z,y,x), `<case>_seg.npy` (int16) and `<case>_properties.json`, for comparison
//! with Python nnU-Net's arrays.

use crate::paths::{self, PREPROCESSED};
use crate::user;
use anyhow::Result;
use nnunet_schema::Plans;
use nnunet_schema::json::read_json;
use serde_json::Value;
use std::path::Path;

pub fn run(dataset: &str, configuration: &str, plans_name: &str, out: &Path, threads: usize) -> Result<()> {
    let name = paths::resolve_dataset_name(dataset)?;
    let pre = paths::env_dir(PREPROCESSED)?.join(&name);
    let plans_path = pre.join(format!("{plans_name}.json"));
    let plans: Plans = read_json(&plans_path).map_err(|e| user(e.to_string()))?;
    let cfg =
        nnunet_schema::plans::resolve_configuration(&plans, configuration).map_err(|e| user(format!("{}: {e}", plans_path.display())))?;
    let ident = cfg
        .get("data_identifier")
        .and_then(Value::as_str)
        .ok_or_else(|| user(format!("{}: {configuration} has no data_identifier", plans_path.display())))?;
    let dir = pre.join(ident);
    if !dir.is_dir() {
        return Err(user(format!(
            "{}: not preprocessed yet (run nnUNetv2_preprocess -d {dataset} -plans_name {plans_name} -c {configuration})",
            dir.display()
        )));
    }
    let n = nnunet_data::export_preprocessed(&dir, out, threads, &|_, _| {}).map_err(|e| user(e.to_string()))?;
    println!("exported {n} cases of {} to {}", dir.display(), out.display());
    Ok(())
}
