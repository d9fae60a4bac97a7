//! `nnUNetv2_train DATASET CONFIG FOLD [-tr TRAINER] [-p PLANS] [--c] [--disable_checkpointing] [-device cpu|cuda] …`

use crate::paths::{self, PREPROCESSED, RESULTS};
use crate::spec::Parsed;
use crate::user;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use nnunet_data::splits::Fold;
use nnunet_engine::run::{TrainEvent, TrainRequest};
use nnunet_schema::json::read_json;
use nnunet_schema::{DatasetJson, Plans};

pub fn run(p: &Parsed) -> Result<()> {
    let dataset = p.string("dataset_name_or_id").expect("positional");
    let configuration = p.string("configuration").expect("positional");
    let fold_arg = p.string("fold").expect("positional");
    let fold: Fold = fold_arg.parse().map_err(|_| user(format!("fold '{fold_arg}': expected 0-4 (or another split index) or 'all'")))?;
    let trainer_name = p.string("tr").unwrap_or_else(|| "nnUNetTrainer".into());
    let plans_name = p.string("p").unwrap_or_else(|| "nnUNetPlans".into());
    let num_gpus = p.int("num_gpus").unwrap_or(1);
    let seed = p.int("seed").unwrap_or(12345);
    if seed < 0 {
        return Err(user(format!("--seed {seed}: expected 0 or more")));
    }
    if num_gpus < 1 {
        return Err(user(format!("-num_gpus {num_gpus}: expected 1 or more")));
    }
    let device_arg = p.string("device").unwrap_or_else(|| "cuda".into());
    let (devices, device_name) = super::devices(&device_arg, num_gpus as usize)?;
    let mut devices = devices.into_iter();
    let device = devices.next().expect("at least one device");
    let extra_devices: Vec<_> = devices.collect();
    let mixed_precision = crate::backend::mixed_precision(&device, &device_arg, p.string("precision").as_deref())?;
    let name = paths::resolve_dataset_name(&dataset)?;
    let pre = paths::env_dir(PREPROCESSED)?.join(&name);
    let plans_path = pre.join(format!("{plans_name}.json"));
    let mut plans: Plans = read_json(&plans_path).map_err(|e| user(e.to_string()))?;
    let selection = super::arch_selection(p)?;
    let mut run_name = trainer_name.clone();
    if let Some(sel) = &selection {
        sel.apply_to_plans(&mut plans, &configuration).map_err(|e| user(format!("{}: {e}", plans_path.display())))?;
        run_name = format!("{trainer_name}+{}", sel.tag());
    }
    let dataset_json: DatasetJson = read_json(&pre.join("dataset.json")).map_err(|e| user(e.to_string()))?;
    let trainer = nnunet_engine::presets::trainer_config(&trainer_name).map_err(|e| user(e.to_string()))?;
    let output_dir = paths::env_dir(RESULTS)?.join(&name).join(format!("{run_name}__{plans_name}__{configuration}"));
    let workers = std::env::var("nnUNet_n_proc_DA").ok().and_then(|v| v.parse().ok()).unwrap_or(2usize);
    let req = TrainRequest {
        dataset_name: name.clone(),
        plans,
        plans_name,
        configuration,
        dataset_json,
        preprocessed_dir: pre,
        output_dir,
        fold,
        trainer_name: run_name,
        trainer,
        architecture_selection: selection
            .as_ref()
            .map(|s| serde_json::json!({"arch": s.entry.name, "arch_config": s.overrides, "tag": s.tag(), "base_trainer": trainer_name})),
        continue_training: p.flag("c"),
        pretrained_weights: p.string("pretrained_weights").map(std::path::PathBuf::from),
        save_probabilities: p.flag("npz"),
        plugin: nnunet_plugin::active_run().map(|p| p.to_json()),
        disable_checkpointing: p.flag("disable_checkpointing"),
        device,
        extra_devices,
        mixed_precision,
        device_name,
        workers,
        seed: seed as u64,
    };
    let pb = ProgressBar::new(req.trainer.num_iterations_per_epoch as u64);
    pb.set_style(
        ProgressStyle::with_template("epoch {msg} {bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}]").expect("valid template"),
    );
    let mut on_event = |e: TrainEvent| match e {
        TrainEvent::Message(m) => pb.suspend(|| println!("{m}")),
        TrainEvent::Iteration(epoch, it, n) => {
            if it == 1 {
                pb.reset();
                pb.set_length(n as u64);
                pb.set_message(epoch.to_string());
            }
            pb.set_position(it as u64);
        }
        TrainEvent::EpochEnd { epoch, train_loss, val_loss, dice, ema, seconds, lr, new_best } => {
            let d: Vec<String> = dice.iter().map(|x| format!("{x:.4}")).collect();
            let line = format!(
                "epoch {epoch}: lr {lr:.5}  train_loss {train_loss:.4}  val_loss {val_loss:.4}  pseudo dice [{}]  ema {ema:.4}  {seconds:.1} s{}",
                d.join(", "),
                if new_best { "  (new best EMA)" } else { "" }
            );
            pb.suspend(|| println!("{line}"));
        }
    };
    if p.flag("val") || p.flag("val_best") {
        if p.flag("val_best") && p.flag("disable_checkpointing") {
            return Err(user("--val_best is not compatible with --disable_checkpointing"));
        }
        let s = nnunet_engine::run::validate_only(&req, p.flag("val_best"), &mut on_event).map_err(|e| user(e.to_string()))?;
        pb.finish_and_clear();
        println!("validation finished: foreground mean Dice {:.4}", s.foreground_mean.Dice);
        return Ok(());
    }
    let out = nnunet_engine::run::train(&req, &mut on_event).map_err(|e| user(e.to_string()))?;
    pb.finish_and_clear();
    println!("training finished: {} epochs, results in {}", out.epochs_run, out.fold_dir.display());
    Ok(())
}
