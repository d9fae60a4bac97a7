//! `nnUNetv2_plot_overlay_pngs -d DATASET -o OUT [-np N] [-channel_idx C] [--use_raw] [-p PLANS] [-c CONFIG]
//! [-overlay_intensity A]` (nnU-Net's `nnunetv2/utilities/overlay_plots.py`): one PNG per training case, the slice
//! with the most foreground of the raw (`--use_raw`) or preprocessed image channel with its segmentation overlaid
//! (`nnunet_logging::overlay`).

use crate::paths::{self, PREPROCESSED, RAW};
use crate::spec::Parsed;
use crate::user;
use anyhow::{Context, Result};
use nnunet_logging::overlay;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Run `job` on every item with `threads` workers; the errors of all failed items, in item order.
fn for_each_parallel<T: Sync>(items: &[T], threads: usize, job: &(dyn Fn(&T) -> Result<(), String> + Sync)) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = job(item) {
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push((i, e));
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort();
    errors.into_iter().map(|(_, e)| e).collect()
}

pub fn plot_overlay_pngs(p: &Parsed) -> Result<()> {
    let dataset = paths::resolve_dataset_name(&p.string("d").ok_or_else(|| user("-d is required"))?)?;
    let out = PathBuf::from(p.string("o").ok_or_else(|| user("-o is required"))?);
    let threads = p.int("np").unwrap_or(8).max(1) as usize;
    let channel = p.int("channel_idx").unwrap_or(0);
    let channel = usize::try_from(channel).map_err(|_| user(format!("-channel_idx {channel} is negative")))?;
    let alpha = p.float("overlay_intensity").unwrap_or(0.6);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let written = if p.flag("use_raw") { from_raw(&dataset, &out, threads, channel, alpha)? } else { from_preprocessed(p, &dataset, &out, threads, channel, alpha)? };
    println!("{written} overlays written to {}", out.display());
    Ok(())
}

fn write_overlay(out: &Path, image: &[f32], seg: &[f32], shape: [usize; 3], alpha: f64) -> Result<(), String> {
    let (w, h, rgb) = overlay::overlay_of_volume(image, seg, shape, alpha).map_err(|e| format!("{}: {e}", out.display()))?;
    overlay::write_rgba_png(out, w, h, &rgb).map_err(|e| e.to_string())
}

fn from_raw(dataset: &str, out: &Path, threads: usize, channel: usize, alpha: f64) -> Result<usize> {
    let raw = paths::existing(&paths::env_dir(RAW)?, dataset, "raw dataset folder")?;
    let ds = nnunet_data::Dataset::open_with_env(&raw, &env_lookup).map_err(|e| user(e.to_string()))?;
    println!("Using {} as reader/writer", ds.image_reader_writer());
    let reader = ds.reader();
    let problems: Vec<String> = ds
        .cases
        .iter()
        .filter_map(|c| match c.images.get(channel) {
            None => Some(format!("{}: no channel {channel} (the case has {} image files)", c.id, c.images.len())),
            Some(f) if !f.is_file() => Some(format!("{} missing", f.display())),
            Some(_) if !c.label.is_file() => Some(format!("{} missing", c.label.display())),
            _ => None,
        })
        .collect();
    if !problems.is_empty() {
        return Err(user(problems.join("\n")));
    }
    let errors = for_each_parallel(&ds.cases, threads, &|c| {
        let image = reader.read_images(std::slice::from_ref(&c.images[channel])).map_err(|e| e.to_string())?;
        let seg = reader.read_seg(&c.label).map_err(|e| e.to_string())?;
        if image.shape != seg.shape {
            return Err(format!(
                "image and seg do not have the same shape: {} {:?}, {} {:?}",
                c.images[channel].display(),
                image.shape,
                c.label.display(),
                seg.shape
            ));
        }
        write_overlay(&out.join(format!("{}.png", c.id)), &image.data, &seg.data, image.shape, alpha)
    });
    if !errors.is_empty() {
        return Err(user(errors.join("\n")));
    }
    Ok(ds.cases.len())
}

fn from_preprocessed(p: &Parsed, dataset: &str, out: &Path, threads: usize, channel: usize, alpha: f64) -> Result<usize> {
    let folder = paths::env_dir(PREPROCESSED)?.join(dataset);
    if !folder.is_dir() {
        return Err(user(format!("{}: run preprocessing for that dataset first", folder.display())));
    }
    let plans_name = p.string("p").unwrap_or_else(|| "nnUNetPlans".into());
    let plans_path = folder.join(format!("{plans_name}.json"));
    let plans: nnunet_schema::Plans = nnunet_schema::json::read_json(&plans_path).map_err(|e| user(e.to_string()))?;
    let configuration = match p.string("c") {
        Some(c) => c,
        None => {
            let has_3d = plans.0.get("configurations").and_then(|c| c.get("3d_fullres")).is_some();
            if has_3d { "3d_fullres".into() } else { "2d".into() }
        }
    };
    let cfg = nnunet_schema::plans::resolve_configuration(&plans, &configuration).map_err(|e| user(format!("{}: {e}", plans_path.display())))?;
    let ident = cfg.get("data_identifier").and_then(|v| v.as_str()).ok_or_else(|| user(format!("{}: {configuration} has no data_identifier", plans_path.display())))?;
    let data_dir = folder.join(ident);
    if !data_dir.is_dir() {
        return Err(user(format!(
            "Preprocessed data folder for configuration {configuration} of plans identifier {plans_name} ({dataset}) does not exist ({}). \
             Run preprocessing for this configuration first!",
            data_dir.display()
        )));
    }
    let ids = nnunet_data::storage::list_cases(&data_dir).map_err(|e| user(e.to_string()))?;
    let errors = for_each_parallel(&ids, threads, &|id| {
        let c = nnunet_data::storage::read_case(&data_dir, id).map_err(|e| e.to_string())?;
        if channel >= c.channels {
            return Err(format!("{id}: this dataset only supports channel index up to {}", c.channels - 1));
        }
        let n: usize = c.shape.iter().product();
        let seg: Vec<f32> = c.seg.iter().map(|&v| v as f32).collect();
        write_overlay(&out.join(format!("{id}.png")), &c.data[channel * n..(channel + 1) * n], &seg, c.shape, alpha)
    });
    if !errors.is_empty() {
        return Err(user(errors.join("\n")));
    }
    Ok(ids.len())
}
