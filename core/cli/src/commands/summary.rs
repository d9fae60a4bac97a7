//! `nnunet summary -d ID [-p PLANS] -c CONFIG [--arch A]`: the network a configuration builds, its stage shapes for
//! the configuration's patch size, and its parameter count (which must equal PyTorch nnU-Net's); and
//! `nnunet calibrate-vram`: the measured peak memory of a few training steps next to the memory proxy.

use crate::paths::{self, PREPROCESSED, RAW};
use crate::user;
use anyhow::Result;
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::selection::ArchSelection;
use nnunet_schema::json::read_json;
use nnunet_schema::{DatasetJson, Plans};
use serde_json::{Map, Value};
use std::path::PathBuf;

pub struct Args {
    pub dataset: String,
    pub plans: String,
    pub configuration: String,
    pub plans_file: Option<PathBuf>,
    /// `--arch` / `--arch-config`.
    pub arch: Option<String>,
    pub arch_config: Option<String>,
}

/// A resolved configuration and the network it builds (with `--arch` applied).
pub struct Loaded {
    pub name: String,
    pub plans_path: PathBuf,
    pub cfg: Map<String, Value>,
    pub patch: Vec<usize>,
    pub batch_size: usize,
    pub class: String,
    pub spec: NetworkSpec,
    pub dataset_json: DatasetJson,
}

/// Read plans + dataset.json (from nnUNet_preprocessed or `plans_file`'s folder), resolve the configuration and
/// apply an architecture selection.
pub fn load(a: &Args, deep_supervision: bool) -> Result<Loaded> {
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
    let mut plans: Plans = read_json(&plans_path).map_err(|e| user(e.to_string()))?;
    let dataset_json: DatasetJson = read_json(&json_path).map_err(|e| user(e.to_string()))?;
    if let Some(arch) = &a.arch {
        let sel = ArchSelection::resolve(arch, a.arch_config.as_deref()).map_err(|e| user(format!("--arch: {e}")))?;
        sel.apply_to_plans(&mut plans, &a.configuration).map_err(|e| user(format!("{}: {e}", plans_path.display())))?;
    } else if a.arch_config.is_some() {
        return Err(user("--arch-config needs --arch NAME"));
    }
    let cfg = nnunet_schema::plans::resolve_configuration(&plans, &a.configuration)
        .map_err(|e| user(format!("{}: {e}", plans_path.display())))?;
    let patch: Vec<usize> = cfg
        .get("patch_size")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .ok_or_else(|| user(format!("{}: configuration '{}' has no patch_size", plans_path.display(), a.configuration)))?;
    let batch_size = cfg.get("batch_size").and_then(Value::as_u64).unwrap_or(1) as usize;
    let (class, spec) = NetworkSpec::from_configuration(&cfg, &dataset_json, deep_supervision)
        .map_err(|e| user(format!("{} ({}): configuration '{}': {e}", plans_path.display(), json_path.display(), a.configuration)))?;
    Ok(Loaded { name, plans_path, cfg, patch, batch_size, class, spec, dataset_json })
}

pub fn run(a: &Args) -> Result<()> {
    let l = load(a, true)?;
    let entry = nnunet_core::registry::architectures()?.get(&l.class).map_err(|e| user(e.to_string()))?;
    let architecture = (entry.make)();
    println!("dataset        {}", l.name);
    println!("plans          {}", l.plans_path.display());
    println!("configuration  {}", a.configuration);
    println!("network        {}", l.class);
    println!("patch size     {:?}, batch size {}", l.patch, l.batch_size);
    println!("channels       {} in, {} out", l.spec.in_channels, l.spec.out_channels);
    for line in architecture.describe(&l.spec, &l.patch).map_err(|e| user(e.to_string()))? {
        println!("  {line}");
    }
    let proxy =
        architecture.memory_proxy(&NetworkSpec { deep_supervision: false, ..l.spec.clone() }, &l.patch).map_err(|e| user(e.to_string()))?;
    println!("memory proxy   {proxy:.0} (feature-map elements per sample)");
    let device = burn::tensor::Device::default();
    let net = architecture.build(&l.spec, &device).map_err(|e| user(e.to_string()))?;
    println!("parameters: {}", net.num_params());
    Ok(())
}

/// `nnunet calibrate-vram`.
pub fn calibrate(
    a: &Args,
    steps: usize,
    batch_size: Option<usize>,
    device_arg: &str,
    precision: Option<&str>,
    output: Option<&std::path::Path>,
) -> Result<()> {
    let l = load(a, true)?;
    let (device, device_name) = super::device(device_arg)?;
    let mixed_precision = crate::backend::mixed_precision(&device, device_arg, precision)?;
    let lm = l.dataset_json.label_manager().map_err(|e| user(format!("dataset.json: {e}")))?;
    let settings = nnunet_core::LossSettings::for_configuration(&l.cfg, &lm);
    let req = nnunet_engine::calibrate::CalibrationRequest {
        network_class: l.class.clone(),
        spec: l.spec.clone(),
        patch: l.patch.clone(),
        batch_size: batch_size.unwrap_or(l.batch_size),
        steps,
        settings,
        device,
        mixed_precision,
        seed: 12345,
    };
    let c = nnunet_engine::calibrate::calibrate(&req)
        .map_err(|e| user(format!("{}: configuration '{}': {e}", l.plans_path.display(), a.configuration)))?;
    let mib = |b: Option<u64>| b.map_or("n/a".to_string(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    println!("network          {}", c.network_class);
    println!("device           {device_name}");
    println!("patch × batch    {:?} × {}", c.patch_size, c.batch_size);
    println!("parameters       {}", c.num_parameters);
    println!(
        "memory proxy     {:.0} per sample, {:.0} per batch",
        c.memory_proxy_per_sample,
        c.memory_proxy_per_sample * c.batch_size as f64
    );
    println!("peak allocated   {}  ({})", mib(c.peak_allocated_bytes), c.measured_on);
    println!("peak reserved    {}", mib(c.peak_reserved_bytes));
    println!("precision        {}", c.precision);
    if let Some(r) = c.allocated_bytes_per_proxy_unit {
        println!("bytes per proxy  {r:.2} (allocated / (proxy × batch))");
    }
    let st: Vec<String> = c.step_seconds.iter().map(|s| format!("{s:.3}")).collect();
    println!("step seconds     [{}]", st.join(", "));
    if let Some(out) = output {
        let mut v = serde_json::to_value(&c)?;
        v["device"] = Value::String(device_name);
        v["configuration"] = Value::String(a.configuration.clone());
        v["plans"] = Value::String(l.plans_path.display().to_string());
        nnunet_schema::json::write_json_atomic(out, &v).map_err(|e| user(format!("{}: {e}", out.display())))?;
        println!("written to {}", out.display());
    }
    Ok(())
}
