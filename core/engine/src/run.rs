//! A whole nnUNetTrainer run (training spec §2.2): splits, data pipeline, network, epochs of 250 training / 50
//! validation iterations with the poly LR, pseudo Dice + EMA, checkpoints (latest / best / final), training log,
//! progress.png, TensorBoard scalars, debug.json. The CLI builds a [`TrainRequest`] and prints [`TrainEvent`]s.

use crate::cases::DiskSource;
use crate::checkpoint::{self, CheckpointMeta, RngState, TrainingLog};
use crate::loss::{DcAndBce, DcAndCe};
use crate::optim::poly_lr;
use crate::parallel::{Shard, replica_seed, shards, train_step_parallel, validation_step_parallel};
use crate::train::{Batch, DiceCounts, StepContext};
use burn::tensor::Device;
use nnunet_augment::{
    BatchProducer, CaseSource, ClassKey as AugKey, DataLoader, Oversampling, PipelineConfig, configure_da, training_pipeline,
    validation_pipeline,
};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::{Loss, LossSettings, Network, TrainerConfig};
use nnunet_data::splits::{self, Fold};
use nnunet_logging::progress::{ProgressCurves, write_progress_png};
use nnunet_logging::tensorboard::{EventWriter, event_file_name, now_wall_time};
use nnunet_logging::training_log::{LogTime, TrainingLog as TextLog};
use nnunet_schema::{DatasetJson, Plans};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Everything a training run needs; the CLI fills it from flags, env vars and files.
pub struct TrainRequest {
    pub dataset_name: String,
    pub plans: Plans,
    pub plans_name: String,
    pub configuration: String,
    pub dataset_json: DatasetJson,
    /// `nnUNet_preprocessed/DatasetXXX_Name`.
    pub preprocessed_dir: PathBuf,
    /// `nnUNet_results/DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>`.
    pub output_dir: PathBuf,
    pub fold: Fold,
    /// The run's trainer name as it appears in the results folder (`nnUNetTrainer`, or `nnUNetTrainer+<arch tag>`
    /// when an architecture was selected with `--arch`).
    pub trainer_name: String,
    pub trainer: TrainerConfig,
    /// `--arch`/`--arch-config` as recorded in debug.json (`{"arch", "arch_config", "tag", "base_trainer"}`), if used.
    pub architecture_selection: Option<Value>,
    /// `--c`: resume from final / latest / best.
    pub continue_training: bool,
    /// `-pretrained_weights`: a checkpoint (`.pth`, or a folder of an earlier version) whose weights (all but the
    /// segmentation layers) initialise the network.
    pub pretrained_weights: Option<PathBuf>,
    /// `--npz`: the final validation also writes the softmax/sigmoid probabilities (.npz + .pkl), which
    /// `nnUNetv2_find_best_configuration` needs to evaluate ensembles.
    pub save_probabilities: bool,
    /// Set when the run happens inside a dynamic plugin (`nnunet --plugin LIB train …`): the library and both fingerprints.
    pub plugin: Option<Value>,
    pub disable_checkpointing: bool,
    /// Base (non-autodiff) device; training runs on its autodiff twin.
    pub device: Device,
    /// `-num_gpus N`: the devices of data-parallel replicas 1..N (replica 0 is `device`); empty for one device.
    pub extra_devices: Vec<Device>,
    /// The backend's autocast for fp16/bf16 training (`--precision`); `None` trains in fp32.
    pub mixed_precision: Option<Arc<dyn nnunet_core::MixedPrecision>>,
    pub device_name: String,
    /// Data-augmentation worker threads.
    pub workers: usize,
    pub seed: u64,
}

/// What happened, for the terminal.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    Message(String),
    /// `(epoch, iteration, iterations)` during the training part of an epoch.
    Iteration(usize, usize, usize),
    EpochEnd {
        epoch: usize,
        train_loss: f64,
        val_loss: f64,
        dice: Vec<f64>,
        ema: f64,
        seconds: f64,
        lr: f64,
        new_best: bool,
    },
}

/// Result of a run.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub fold_dir: PathBuf,
    pub epochs_run: usize,
    pub log: TrainingLog,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Io(String),
}

fn input(msg: impl Into<String>) -> TrainError {
    TrainError::Input(msg.into())
}

fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io(format!("{}: {e}", path.display()))
}

/// Resolved facts of the configuration that the run uses.
pub struct Setup {
    cfg: Map<String, Value>,
    patch: Vec<usize>,
    batch_size: usize,
    network_class: String,
    spec: NetworkSpec,
    /// Cumulative downsampling of each network output (deep-supervision target scales).
    output_strides: Vec<Vec<usize>>,
    settings: LossSettings,
    lm: nnunet_schema::LabelManager,
    data_dir: PathBuf,
    /// The preprocessed cases in `data_dir` (never empty).
    case_ids: Vec<String>,
    use_mask_for_norm: Vec<bool>,
    /// Cascade stage: `folder_with_segs_from_previous_stage` (the previous stage's `predicted_next_stage/<this>`).
    prev_stage_dir: Option<PathBuf>,
    /// `next_stage_names`: configurations whose inputs the final validation exports.
    next_stages: Vec<String>,
}

fn usize_list(v: Option<&Value>, what: &str) -> Result<Vec<usize>, TrainError> {
    v.and_then(|v| serde_json::from_value::<Vec<usize>>(v.clone()).ok())
        .ok_or_else(|| input(format!("configuration lacks a valid '{what}'")))
}

fn setup(req: &TrainRequest) -> Result<Setup, TrainError> {
    let cfg = nnunet_schema::plans::resolve_configuration(&req.plans, &req.configuration)
        .map_err(|e| input(format!("{}: {e}", req.plans_name)))?;
    let patch = usize_list(cfg.get("patch_size"), "patch_size")?;
    let batch_size = cfg.get("batch_size").and_then(Value::as_u64).ok_or_else(|| input("configuration lacks batch_size"))? as usize;
    let (network_class, spec) = NetworkSpec::from_configuration(&cfg, &req.dataset_json, req.trainer.enable_deep_supervision)
        .map_err(|e| input(format!("configuration '{}': {e}", req.configuration)))?;
    let arch = nnunet_core::registry::architectures()
        .map_err(|e| input(e.to_string()))?
        .get(&network_class)
        .map_err(|e| input(format!("configuration '{}': {e}", req.configuration)))?;
    let output_strides = (arch.make)().output_strides(&spec).map_err(|e| input(format!("{network_class}: {e}")))?;
    let lm = req.dataset_json.label_manager().map_err(|e| input(format!("dataset.json: {e}")))?;
    let settings = LossSettings::for_configuration(&cfg, &lm);
    let ident = cfg.get("data_identifier").and_then(Value::as_str).ok_or_else(|| input("configuration lacks data_identifier"))?;
    let data_dir = req.preprocessed_dir.join(ident);
    let preprocess = format!(
        "nnUNetv2_preprocess -d {} -plans_name {} -c {}",
        &req.dataset_name.get(7..10).unwrap_or("?"),
        req.plans_name,
        req.configuration
    );
    if !data_dir.is_dir() {
        return Err(input(format!("{}: preprocessed data missing. Run {preprocess} first", data_dir.display())));
    }
    // checked before anything is written to the results folder
    let case_ids = nnunet_data::storage::list_cases(&data_dir).map_err(|e| input(e.to_string()))?;
    if case_ids.is_empty() {
        return Err(input(match nnunet_data::storage::python_preprocessed_cases(&data_dir) {
            Some((n, files)) => format!(
                "{}: holds Python nnU-Net's preprocessed data ({n} cases as {files}, nnU-Net before 2.6), which this \
                 framework does not read (it reads its own .npy + .json and nnU-Net 2.6+'s .b2nd + .pkl, docs/adr/0005). \
                 Run {preprocess} with this framework first: like Python's preprocessing it replaces the folder, and its \
                 arrays equal Python's within 1e-3",
                data_dir.display()
            ),
            None => format!("{}: no preprocessed cases. Run {preprocess} first", data_dir.display()),
        }));
    }
    let use_mask_for_norm: Vec<bool> =
        cfg.get("use_mask_for_norm").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    let prev_stage_dir = crate::cascade::previous_stage_name(&cfg)
        .map(|prev| crate::cascade::previous_stage_folder(&req.output_dir, &req.trainer_name, &req.plans_name, &prev, &req.configuration));
    let next_stages = crate::cascade::next_stage_names(&cfg);
    Ok(Setup {
        cfg,
        patch,
        batch_size,
        network_class,
        spec,
        output_strides,
        settings,
        lm,
        data_dir,
        case_ids,
        use_mask_for_norm,
        prev_stage_dir,
        next_stages,
    })
}

fn ignore_key(lm_ignore: Option<i64>, all_labels: &[i64]) -> Option<AugKey> {
    lm_ignore.map(|_| AugKey::Region(std::iter::once(-1).chain(all_labels.iter().map(|&l| l as i32)).collect()))
}

/// Train one fold. Blocking; reports progress through `events`.
pub fn train(req: &TrainRequest, events: &mut dyn FnMut(TrainEvent)) -> Result<TrainOutcome, TrainError> {
    let st = setup(req)?;
    let lm = &st.lm;
    // data parallel: the plans' batch split over the replicas as nnU-Net's DDP does
    let world = 1 + req.extra_devices.len();
    let shards: Vec<Shard> = if world == 1 {
        vec![Shard { batch_size: st.batch_size, oversample_foreground_percent: req.trainer.oversample_foreground_percent }]
    } else {
        let sh = shards(st.batch_size, world, req.trainer.oversample_foreground_percent).map_err(input)?;
        for (r, s) in sh.iter().enumerate() {
            events(TrainEvent::Message(format!(
                "worker {r} oversample {} | worker {r} batch_size {}",
                s.oversample_foreground_percent, s.batch_size
            )));
        }
        sh
    };
    let fold_dir = req.output_dir.join(req.fold.dir_name());
    std::fs::create_dir_all(&fold_dir).map_err(|e| io(&fold_dir, e))?;

    // copies of the run's inputs next to the folds, as nnU-Net does
    nnunet_schema::json::write_json_atomic(&req.output_dir.join("plans.json"), &req.plans).map_err(|e| io(&req.output_dir, e))?;
    nnunet_schema::json::write_json_atomic(&req.output_dir.join("dataset.json"), &req.dataset_json).map_err(|e| io(&req.output_dir, e))?;
    let fp = req.preprocessed_dir.join("dataset_fingerprint.json");
    if fp.exists() {
        std::fs::copy(&fp, req.output_dir.join("dataset_fingerprint.json")).map_err(|e| io(&fp, e))?;
    }

    // splits
    let all_ids = st.case_ids.as_slice();
    let splits_path = req.preprocessed_dir.join("splits_final.json");
    // fold `all` trains and validates on every case without a split file (nnU-Net's do_split)
    let splits = if req.fold == Fold::All {
        Vec::new()
    } else if splits_path.exists() {
        splits::read_splits(&splits_path).map_err(|e| input(e.to_string()))?
    } else {
        let s = splits::default_splits(all_ids).map_err(|e| input(e.to_string()))?;
        splits::write_splits(&splits_path, &s).map_err(|e| io(&splits_path, e))?;
        events(TrainEvent::Message(format!("Created a 5-fold split: {}", splits_path.display())));
        s
    };
    let (train_ids, val_ids) = splits::split_for_fold(&splits, all_ids, req.fold).map_err(|e| input(e.to_string()))?;
    events(TrainEvent::Message(format!("fold {}: {} training cases, {} validation cases", req.fold, train_ids.len(), val_ids.len())));

    // data pipeline
    let da = configure_da(&st.patch);
    let mut pcfg = PipelineConfig::for_patch(&st.patch);
    if req.trainer.disable_mirroring {
        pcfg.mirror_axes = None;
    } else if let Some(ax) = &req.trainer.mirror_axes {
        pcfg.mirror_axes = Some(ax.clone());
    }
    pcfg.use_mask_for_norm = st.use_mask_for_norm.clone();
    pcfg.ignore_label = None; // the loss masks the ignore label itself
    if let Some(dir) = &st.prev_stage_dir {
        pcfg.cascade_foreground_labels = Some(lm.foreground_labels().iter().map(|&l| l as i16).collect());
        events(TrainEvent::Message(format!("cascade: segmentations of the previous stage from {}", dir.display())));
    }
    pcfg.ds_scales = if req.trainer.enable_deep_supervision {
        Some(st.output_strides.iter().map(|s| s.iter().map(|&x| 1.0 / x as f64).collect()).collect())
    } else {
        None
    };
    let train_patch = if req.trainer.data_augmentation { da.initial_patch_size.clone() } else { st.patch.clone() };
    let train_pipe = || if req.trainer.data_augmentation { training_pipeline(&pcfg) } else { validation_pipeline(&pcfg) };
    let ignore = ignore_key(lm.ignore_label, &lm.all_labels);
    let src_train = Arc::new(DiskSource::open(&st.data_dir, &train_ids, st.prev_stage_dir.as_deref()).map_err(input)?);
    let src_val = Arc::new(DiskSource::open(&st.data_dir, &val_ids, st.prev_stage_dir.as_deref()).map_err(input)?);
    let mk = |src: &Arc<DiskSource>, patch: &[usize], pipe: nnunet_augment::Pipeline, shard: &Shard| {
        let n = src.num_cases();
        let oversampling = Oversampling::LastPercent(shard.oversample_foreground_percent);
        DataLoader::new(src.clone(), (0..n).collect(), shard.batch_size, patch, &st.patch, oversampling, ignore.clone(), pipe)
            .map(Arc::new)
            .map_err(|e| input(e.to_string()))
    };
    let train_loaders = shards.iter().map(|sh| mk(&src_train, &train_patch, train_pipe(), sh)).collect::<Result<Vec<_>, _>>()?;
    let val_loaders = shards.iter().map(|sh| mk(&src_val, &st.patch, validation_pipeline(&pcfg), sh)).collect::<Result<Vec<_>, _>>()?;

    // network, optimizer, loss (weights initialised from the run's seed)
    req.device.seed(req.seed);
    let dev = req.device.clone().autodiff();
    let arch = nnunet_core::registry::architectures()
        .map_err(|e| input(e.to_string()))?
        .get(&st.network_class)
        .map_err(|e| input(e.to_string()))?;
    let arch = (arch.make)();
    let init = nnunet_core::initialisation_device(&req.device);
    init.seed(req.seed);
    let init = init.autodiff();
    let mut net: Box<dyn Network> = arch.build(&st.spec, &init).map_err(|e| input(format!("{}: {e}", st.network_class)))?;
    if init != dev {
        net = net.fork(&dev);
    }
    let mut optim = crate::optim::optimizer(&req.trainer);
    let loss: Box<dyn Loss> = if st.settings.regions.is_some() { Box::new(DcAndBce) } else { Box::new(DcAndCe) };
    let precision = nnunet_core::Precision::of(req.mixed_precision.as_deref());
    let scaler = std::sync::Mutex::new(nnunet_core::GradScaler::default());
    let ctx = StepContext {
        loss: loss.as_ref(),
        settings: &st.settings,
        deep_supervision: req.trainer.enable_deep_supervision,
        grad_clip: Some(req.trainer.grad_clip_norm),
        ds_weighting: req.trainer.ds_weighting,
        mixed: req.mixed_precision.as_deref(),
        scaler: (precision == nnunet_core::Precision::Fp16).then_some(&scaler),
    };

    if let Some(pw) = &req.pretrained_weights {
        if req.continue_training {
            return Err(input(
                "Cannot both continue a training AND load pretrained weights. Pretrained weights can only be used at the beginning of the training.",
            ));
        }
        // on the base device: the autodiff twin shares its storage, and no graph is needed to read weights
        let loaded = crate::pretrained::load_pretrained_weights(arch.as_ref(), net.as_mut(), pw, &req.device).map_err(input)?;
        events(TrainEvent::Message(format!(
            "################### Loading pretrained weights from file {} ################### ({} tensors; segmentation layers kept fresh)",
            pw.display(),
            loaded.len()
        )));
    }
    let mut log = TrainingLog::default();
    let mut best_ema: Option<f64> = None;
    let mut start_epoch = 0;
    let (iters, val_iters) = (req.trainer.num_iterations_per_epoch as u64, req.trainer.num_val_iterations_per_epoch as u64);
    let mut rng = RngState { seed: req.seed, next_train_batch: 0, next_val_batch: 0 };
    let mut resume_note = None;
    if req.continue_training {
        match checkpoint::resume_candidate(&fold_dir) {
            Some(stored) => {
                let mut optim_note = Vec::new();
                let meta = match &stored {
                    checkpoint::Stored::Folder(dir) => {
                        let (meta, o) = checkpoint::load(dir, net.as_mut(), Some(optim)).map_err(|e| input(e.to_string()))?;
                        optim = o.expect("optimizer passed in");
                        meta
                    }
                    // nnU-Net's checkpoint: weights, epoch, logging and the optimizer state (what does not fit restarts)
                    checkpoint::Stored::Pth(p) => {
                        let (meta, o, lines) =
                            crate::pth::resume(p, net.as_mut(), optim, req.trainer.optimizer).map_err(|e| input(e.to_string()))?;
                        optim = o;
                        optim_note = lines;
                        meta
                    }
                };
                let dir = stored.path().to_path_buf();
                log = meta.logging;
                best_ema = meta.best_ema;
                start_epoch = meta.current_epoch;
                if let Some(gs) = meta.grad_scaler {
                    *scaler.lock().unwrap_or_else(|e| e.into_inner()) = gs;
                }
                let e = start_epoch as u64;
                rng = meta.rng.unwrap_or(RngState { seed: req.seed, next_train_batch: e * iters, next_val_batch: e * val_iters });
                let note = format!(
                    "Resuming from {} at epoch {start_epoch} (data stream seed {}, next training batch {})",
                    dir.display(),
                    rng.seed,
                    rng.next_train_batch
                );
                let note = std::iter::once(note).chain(optim_note).collect::<Vec<_>>().join("\n");
                events(TrainEvent::Message(note.clone()));
                resume_note = Some(note);
            }
            None => events(TrainEvent::Message("--c: no checkpoint found, starting a new training".into())),
        }
    }
    // batches are a pure function of (seed, index): a resumed run continues the uninterrupted run's stream
    // (replica r > 0 of a data-parallel run has its own stream, as each DDP worker has its own data loader)
    let workers = (req.workers / world).max(1);
    let mut train_batches: Vec<BatchProducer> = train_loaders
        .into_iter()
        .enumerate()
        .map(|(r, l)| BatchProducer::starting_at(l, workers, 2, replica_seed(rng.seed, r), rng.next_train_batch))
        .collect();
    let mut val_batches: Vec<BatchProducer> = val_loaders
        .into_iter()
        .enumerate()
        .map(|(r, l)| BatchProducer::starting_at(l, workers.div_ceil(2), 2, replica_seed(rng.seed, r) ^ 0x5eed, rng.next_val_batch))
        .collect();
    let devices: Vec<Device> = std::iter::once(dev.clone()).chain(req.extra_devices.iter().map(|d| d.clone().autodiff())).collect();
    let next_batches = |producers: &mut Vec<BatchProducer>| -> Result<Vec<Batch>, TrainError> {
        producers.iter_mut().map(|p| p.next_batch().map(Batch::from).map_err(|e| input(e.to_string()))).collect()
    };
    let first_epoch = start_epoch as u64;
    let rng_at = |epoch: usize| RngState {
        seed: rng.seed,
        next_train_batch: rng.next_train_batch + (epoch as u64 - first_epoch) * iters,
        next_val_batch: rng.next_val_batch + (epoch as u64 - first_epoch) * val_iters,
    };

    let started = LogTime::now();
    let mut text = TextLog::create(&fold_dir, started).map_err(|e| io(&fold_dir, e))?;
    let _ = text.log(&format!(
        "trainer {} | plans {} | configuration {} | fold {} | device {} | patch {:?} | batch {} | network {}{}",
        req.trainer_name,
        req.plans_name,
        req.configuration,
        req.fold,
        req.device_name,
        st.patch,
        st.batch_size,
        st.network_class,
        if world > 1 {
            format!(" | data parallel over {world} devices, batch sizes {:?}", shards.iter().map(|s| s.batch_size).collect::<Vec<_>>())
        } else {
            String::new()
        }
    ));
    let _ = text.log(&format!("configuration: {}", Value::Object(st.cfg.clone())));
    for line in resume_note.iter().flat_map(|n| n.lines()) {
        let _ = text.log(line);
    }
    let host = std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    let tb_name = event_file_name(now_wall_time() as u64, &host);
    let mut tb = EventWriter::create(&fold_dir, &tb_name, now_wall_time()).map_err(|e| io(&fold_dir, e))?;
    // peaks since here: the whole run on this (the first) device
    let memory = nnunet_core::memory::MemoryProbe::for_device(&req.device);
    memory.reset_peak();
    write_debug_json(req, &st, &fold_dir, net.num_params(), rng.seed, &memory)?;

    let meta_for = |epoch: usize, log: &TrainingLog, best: Option<f64>| CheckpointMeta {
        current_epoch: epoch,
        best_ema: best,
        logging: log.clone(),
        trainer_name: req.trainer_name.clone(),
        plans_name: req.plans_name.clone(),
        configuration: req.configuration.clone(),
        fold: req.fold.to_string(),
        network_class_name: st.network_class.clone(),
        inference_allowed_mirroring_axes: if req.trainer.disable_mirroring {
            None
        } else {
            Some(req.trainer.mirror_axes.clone().unwrap_or(da.mirror_axes.clone()))
        },
        rng: Some(rng_at(epoch)),
        deep_supervision: Some(st.spec.deep_supervision),
        grad_scaler: ctx.scaler.map(|s| *s.lock().unwrap_or_else(|e| e.into_inner())),
    };
    let n_epochs = req.trainer.num_epochs;
    for epoch in start_epoch..n_epochs {
        let t0 = Instant::now();
        let wall0 = now_wall_time();
        let lr = poly_lr(req.trainer.initial_lr, epoch, n_epochs);
        let _ = text.epoch_start(LogTime::now(), epoch, lr);
        let iters = req.trainer.num_iterations_per_epoch;
        let mut losses = Vec::with_capacity(iters);
        for it in 0..iters {
            let b = next_batches(&mut train_batches)?;
            losses.push(train_step_parallel(net.as_mut(), &mut optim, lr, &b, &ctx, &devices));
            events(TrainEvent::Iteration(epoch, it + 1, iters));
        }
        let train_loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        let mut counts = DiceCounts::default();
        let mut vlosses = Vec::new();
        for _ in 0..req.trainer.num_val_iterations_per_epoch {
            let b = next_batches(&mut val_batches)?;
            let (l, c) = validation_step_parallel(net.as_ref(), &b, &ctx, &devices);
            vlosses.push(l);
            counts.add(&c);
        }
        let val_loss = vlosses.iter().sum::<f64>() / vlosses.len().max(1) as f64;
        let dice = counts.dice();
        let mean_fg = counts.mean_fg_dice();
        let ema = match log.ema_fg_dice.last() {
            Some(prev) if !prev.is_nan() => 0.9 * prev + 0.1 * mean_fg,
            _ => mean_fg,
        };
        let seconds = t0.elapsed().as_secs_f64();
        log.train_losses.push(train_loss);
        log.val_losses.push(val_loss);
        log.mean_fg_dice.push(mean_fg);
        log.ema_fg_dice.push(ema);
        log.dice_per_class_or_region.push(dice.clone());
        log.lrs.push(lr);
        log.epoch_start_timestamps.push(wall0);
        log.epoch_end_timestamps.push(wall0 + seconds);
        let _ = text.epoch_end(LogTime::now(), train_loss, val_loss, &dice, seconds);
        let mib = |b: Option<u64>| b.map_or("n/a".to_string(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        let peak = memory.peak();
        let _ = text.log(&format!("Peak memory: allocated {}, reserved {}", mib(peak.allocated), mib(peak.reserved)));
        let _ = tb.add_scalars_at(
            &[
                ("train_loss", train_loss as f32),
                ("val_loss", val_loss as f32),
                ("mean_fg_dice", mean_fg as f32),
                ("ema_fg_dice", ema as f32),
                ("lr", lr as f32),
                ("epoch_time_s", seconds as f32),
            ],
            epoch as i64,
            now_wall_time(),
        );
        let _ = tb.flush();
        let new_best = !ema.is_nan() && best_ema.is_none_or(|b| ema > b);
        if !req.disable_checkpointing {
            if (epoch + 1) % req.trainer.save_every == 0 && epoch + 1 != n_epochs {
                save_checkpoint(req, &fold_dir, "checkpoint_latest", net.as_ref(), &optim, &meta_for(epoch + 1, &log, best_ema), lr)?;
            }
            if new_best {
                best_ema = Some(ema);
                let _ = text.new_best_ema(LogTime::now(), ema);
                save_checkpoint(req, &fold_dir, "checkpoint_best", net.as_ref(), &optim, &meta_for(epoch + 1, &log, best_ema), lr)?;
            }
        } else if new_best {
            best_ema = Some(ema);
        }
        let curves = ProgressCurves {
            train_losses: log.train_losses.clone(),
            val_losses: log.val_losses.clone(),
            mean_fg_dice: log.mean_fg_dice.clone(),
            ema_fg_dice: log.ema_fg_dice.clone(),
            epoch_durations: log.epoch_end_timestamps.iter().zip(&log.epoch_start_timestamps).map(|(e, s)| e - s).collect(),
            lrs: log.lrs.clone(),
        };
        let _ = write_progress_png(&fold_dir.join("progress.png"), &curves);
        events(TrainEvent::EpochEnd { epoch, train_loss, val_loss, dice, ema, seconds, lr, new_best });
    }
    if !req.disable_checkpointing {
        let lr = log.lrs.last().copied().unwrap_or(req.trainer.initial_lr);
        save_checkpoint(req, &fold_dir, "checkpoint_final", net.as_ref(), &optim, &meta_for(n_epochs, &log, best_ema), lr)?;
        // nnU-Net's on_train_end removes checkpoint_latest (an earlier version's folder too)
        let _ = std::fs::remove_file(fold_dir.join("checkpoint_latest.pth"));
        let _ = std::fs::remove_dir_all(fold_dir.join("checkpoint_latest"));
    }
    write_debug_json(req, &st, &fold_dir, net.num_params(), rng.seed, &memory)?;
    let _ = text.log("Training done.");
    if !req.disable_checkpointing {
        drop(net);
        let s = final_validation(req, &st, &fold_dir, &val_ids, "checkpoint_final", events)?;
        let _ = text.log(&format!("Mean Validation Dice: {}", s.foreground_mean.Dice));
    }
    Ok(TrainOutcome { fold_dir, epochs_run: n_epochs.saturating_sub(start_epoch), log })
}

/// Write checkpoint `name` (`checkpoint_best`, …) of `fold_dir` as nnU-Net's `<name>.pth` (network weights, optimizer
/// state, grad scaler, logging, init args; see [`crate::pth`] and ADR 0007), so Python nnU-Net predicts with, exports,
/// fine-tunes from or continues (`--c`) a model trained here and the other way round. A checkpoint folder of that
/// name left by an earlier version of this tool is outdated now and removed.
fn save_checkpoint(
    req: &TrainRequest,
    fold_dir: &Path,
    name: &str,
    net: &dyn Network,
    optim: &burn::optim::ModuleOptimizer,
    meta: &CheckpointMeta,
    lr: f64,
) -> Result<(), TrainError> {
    let path = fold_dir.join(format!("{name}.pth"));
    let plans = serde_json::to_value(&req.plans).map_err(|e| io(&path, e))?;
    let dataset_json = serde_json::to_value(&req.dataset_json).map_err(|e| io(&path, e))?;
    let group = crate::pth::OptimizerGroup::new(&req.trainer, lr);
    crate::pth::write_nnunet_checkpoint(&path, net, meta, &group, Some(optim), &plans, &dataset_json).map_err(|e| io(&path, e))?;
    let _ = std::fs::remove_dir_all(fold_dir.join(name));
    Ok(())
}

/// nnU-Net's `perform_actual_validation`: predict the fold's validation cases from their preprocessed arrays with the
/// final checkpoint (sliding window, step 0.5, Gaussian, mirroring as the trainer allows; a cascade stage appends the
/// one-hot previous-stage segmentation), export them to `fold_X/validation/<case><ending>` and evaluate against
/// `gt_segmentations` into `validation/summary.json`. A configuration with `next_stage` also exports each case's
/// segmentation resampled to the next stage's preprocessed shape into `predicted_next_stage/<next_stage>/<case>.b2nd`
/// (see [`crate::cascade`]).
pub fn final_validation(
    req: &TrainRequest,
    st: &Setup,
    fold_dir: &Path,
    val_ids: &[String],
    checkpoint_name: &str,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<nnunet_evaluate::Summary, TrainError> {
    use crate::inference::{Predictor, write_case};
    let fold_name = match req.fold {
        Fold::All => "all".to_string(),
        Fold::Index(i) => i.to_string(),
    };
    let predictor = Predictor::from_model_folder(&req.output_dir, Some(&[fold_name]), checkpoint_name, &req.device)
        .map_err(|e| input(e.to_string()))?
        .with_mixed_precision(req.mixed_precision.clone());
    let out = fold_dir.join("validation");
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let rw = predictor.writer(None).map_err(|e| input(e.to_string()))?;
    let ending = req.dataset_json.file_ending.clone();
    let mirror = predictor.allowed_mirroring_axes.as_ref().is_some_and(|a| !a.is_empty());
    let foreground = st.lm.foreground_labels();
    // next stages: (name, preprocessed folder, export folder)
    let mut next = Vec::new();
    for n in &st.next_stages {
        let ncfg = nnunet_schema::plans::resolve_configuration(&req.plans, n).map_err(|e| input(format!("next stage '{n}': {e}")))?;
        let ident =
            ncfg.get("data_identifier").and_then(Value::as_str).ok_or_else(|| input(format!("next stage '{n}' lacks data_identifier")))?;
        let dir = req.output_dir.join(crate::cascade::NEXT_STAGE_FOLDER).join(n);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        next.push((n.clone(), req.preprocessed_dir.join(ident), dir));
    }
    for (i, id) in val_ids.iter().enumerate() {
        let mut c = nnunet_data::storage::read_case(&st.data_dir, id).map_err(|e| input(e.to_string()))?;
        if let Some(folder) = &st.prev_stage_dir {
            let prev = crate::cases::read_prev_stage(folder, id, c.shape).map_err(input)?;
            crate::cascade::append_one_hot(&mut c.data, &mut c.channels, &prev, &foreground);
        }
        let [z, y, x] = c.shape;
        let logits = predictor.predict_preprocessed(&c.data, [c.channels, z, y, x], 0.5, mirror);
        write_case(
            id,
            &logits,
            predictor.num_heads(),
            c.shape,
            &c.properties,
            &predictor.export,
            rw.as_ref(),
            &out,
            &ending,
            req.save_probabilities,
        )
        .map_err(|e| input(format!("validation case {id}: {e}")))?;
        for (n, pre, dir) in &next {
            // the target shape is the next stage's preprocessed shape of this case
            let target = match nnunet_data::storage::stored_shape(pre, id) {
                Ok((_, shape)) => shape,
                _ => {
                    events(TrainEvent::Message(format!(
                        "Predicting next stage {n} failed for case {id} because the preprocessed file is missing! Run the preprocessing \
                         for this configuration first!"
                    )));
                    continue;
                }
            };
            let ex = &predictor.export;
            let spacing: Vec<f64> = if ex.configuration_spacing.len() == 3 {
                ex.configuration_spacing.clone()
            } else {
                let tf = ex.transpose_forward;
                std::iter::once(c.properties.image.spacing[tf[0]]).chain(ex.configuration_spacing.iter().copied()).collect()
            };
            let seg = crate::cascade::resample_to_next_stage(
                &logits,
                predictor.num_heads(),
                c.shape,
                target,
                &spacing,
                &ex.resampling,
                &ex.label_manager,
            );
            crate::cascade::write_next_stage_segmentation(dir, id, &seg, target, foreground.len(), &st.patch)
                .map_err(|e| input(e.to_string()))?;
        }
        events(TrainEvent::Message(format!("validation: predicted {id} ({}/{})", i + 1, val_ids.len())));
    }
    let gt = req.preprocessed_dir.join("gt_segmentations");
    let (labels, ignore) = nnunet_evaluate::labels_or_regions_from_dataset(&req.dataset_json).map_err(input)?;
    let summary = nnunet_evaluate::compute_metrics_on_folder(
        &gt,
        &out,
        Some(&out.join("summary.json")),
        rw.as_ref(),
        &ending,
        &labels,
        ignore,
        req.workers,
        true,
    )
    .map_err(|e| input(e.to_string()))?;
    events(TrainEvent::Message(format!(
        "Mean Validation Dice: {:.4} ({})",
        summary.foreground_mean.Dice,
        out.join("summary.json").display()
    )));
    Ok(summary)
}

/// `--val` / `--val_best`: only the final validation of a trained fold (with `checkpoint_final` or `checkpoint_best`).
pub fn validate_only(req: &TrainRequest, best: bool, events: &mut dyn FnMut(TrainEvent)) -> Result<nnunet_evaluate::Summary, TrainError> {
    let st = setup(req)?;
    let fold_dir = req.output_dir.join(req.fold.dir_name());
    let chk = if best { "checkpoint_best" } else { "checkpoint_final" };
    if checkpoint::Stored::locate(&fold_dir, chk).is_none() {
        return Err(input(format!("{}: no {chk}; train this fold first", fold_dir.display())));
    }
    let all_ids = st.case_ids.as_slice();
    let splits = if req.fold == Fold::All {
        Vec::new()
    } else {
        splits::read_splits(&req.preprocessed_dir.join("splits_final.json")).map_err(|e| input(e.to_string()))?
    };
    let (_, val_ids) = splits::split_for_fold(&splits, all_ids, req.fold).map_err(|e| input(e.to_string()))?;
    final_validation(req, &st, &fold_dir, &val_ids, chk, events)
}

fn write_debug_json(
    req: &TrainRequest,
    st: &Setup,
    fold_dir: &Path,
    params: usize,
    seed: u64,
    memory: &nnunet_core::memory::MemoryProbe,
) -> Result<(), TrainError> {
    let peak = memory.peak();
    let v = json!({
        "trainer_name": req.trainer_name,
        "trainer_config": req.trainer,
        "plans_name": req.plans_name,
        "configuration": req.configuration,
        "configuration_resolved": Value::Object(st.cfg.clone()),
        "fold": req.fold.to_string(),
        "network_class_name": st.network_class,
        "architecture_selection": req.architecture_selection,
        "plugin": req.plugin,
        "num_parameters": params,
        "patch_size": st.patch,
        "batch_size": st.batch_size,
        "loss_settings": {"batch_dice": st.settings.batch_dice, "ignore_label": st.settings.ignore_label, "regions": st.settings.regions},
        "device": req.device_name,
        "num_gpus": 1 + req.extra_devices.len(),
        "backend": nnunet_core::compiled_backends().join(", "),
        "precision": nnunet_core::Precision::of(req.mixed_precision.as_deref()).describe(),
        "nnunet_version": env!("CARGO_PKG_VERSION"),
        "burn_version": "0.22.1",
        "data_augmentation_workers": req.workers,
        "seed": seed,
        // peak allocated / reserved bytes of the run so far: the CUDA caching allocator's on a LibTorch GPU, the Rust
        // heap's and the resident set on the CPU (memory::MemoryProbe)
        "peak_memory_allocated_bytes": peak.allocated,
        "peak_memory_reserved_bytes": peak.reserved,
        "memory_measured_on": memory.measured_on(),
    });
    nnunet_schema::json::write_json_atomic(&fold_dir.join("debug.json"), &v).map_err(|e| io(fold_dir, e))
}
