//! `nnunet summary -d ID [-p PLANS] -c CONFIG`: the network a configuration builds, its stage shapes for the
//! configuration's patch size, and its parameter count (which must equal PyTorch nnU-Net's).

use crate::paths::{self, PREPROCESSED, RAW};
use crate::user;
use anyhow::Result;
use nnunet_core::architecture::NetworkSpec;
use nnunet_schema::json::read_json;
use nnunet_schema::{DatasetJson, Plans};
use std::path::PathBuf;

pub struct Args {
    pub dataset: String,
    pub plans: String,
    pub configuration: String,
    pub plans_file: Option<PathBuf>,
}

pub fn run(a: &Args) -> Result<()> {
    let name = paths::resolve_dataset_name(&a.dataset)?;
    let (plans_path, json_path) = match &a.plans_file {
        Some(f) => (f.clone(), f.parent().map(|d| d.join("dataset.json")).unwrap_or_default()),
        None => {
            let pre = paths::env_dir(PREPROCESSED)?.join(&name);
            let json = if pre.join("dataset.json").exists() {
                pre.join("dataset.json")
            } else {
                paths::env_dir(RAW)?.join(&name).join("dataset.json")
            };
            (pre.join(format!("{}.json", a.plans)), json)
        }
    };
    let plans: Plans = read_json(&plans_path).map_err(|e| user(e.to_string()))?;
    let json: DatasetJson = read_json(&json_path).map_err(|e| user(e.to_string()))?;
    let cfg = nnunet_schema::plans::resolve_configuration(&plans, &a.configuration)
        .map_err(|e| user(format!("{}: {e}", plans_path.display())))?;
    let patch: Vec<usize> = cfg
        .get("patch_size")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .ok_or_else(|| user("configuration has no patch_size"))?;
    let (class, spec) = NetworkSpec::from_configuration(&cfg, &json, true)
        .map_err(|e| user(format!("{} ({}): configuration '{}': {e}", plans_path.display(), json_path.display(), a.configuration)))?;
    let class = class.as_str();
    let in_channels = spec.in_channels;
    let entry = nnunet_core::registry::architectures()?.get(class).map_err(|e| user(e.to_string()))?;
    let architecture = (entry.make)();
    println!("dataset        {name}");
    println!("plans          {}", plans_path.display());
    println!("configuration  {}", a.configuration);
    println!("network        {class}");
    println!("patch size     {patch:?}, batch size {}", cfg.get("batch_size").map(|v| v.to_string()).unwrap_or_default());
    println!("channels       {in_channels} in, {} out", spec.out_channels);
    for l in architecture.describe(&spec, &patch).map_err(|e| user(e.to_string()))? {
        println!("  {l}");
    }
    let proxy =
        architecture.memory_proxy(&NetworkSpec { deep_supervision: false, ..spec.clone() }, &patch).map_err(|e| user(e.to_string()))?;
    println!("memory proxy   {proxy:.0} (feature-map elements per sample)");
    let device = burn::tensor::Device::default();
    let net = architecture.build(&spec, &device).map_err(|e| user(e.to_string()))?;
    println!("parameters: {}", net.num_params());
    Ok(())
}
