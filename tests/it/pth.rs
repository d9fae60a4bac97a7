//! PyTorch checkpoints of Python nnU-Net 2.8.1 (`tests/fixtures/pth/`, made by `tests/fixtures/scripts/pth_reference.sh`:
//! three tiny configurations trained one epoch on the embedded Hippocampus cases): our networks load them and compute
//! what PyTorch computes, and `nnUNetv2_predict` with them predicts what Python nnU-Net predicted. Their optimizer
//! state (SGD momentum buffers) loads into ours and `--c` continues with it; the optimizer state we write loads
//! into Python nnU-Net's trainer (`scripts/pth_optimizer_check.py`).

use burn::tensor::{Device, Tensor};
use nnunet_builtin as _;
use nnunet_core::architecture::NetworkSpec;
use nnunet_engine::checkpoint::Stored;
use nnunet_tests::fixtures;
use nnunet_tests::pytorch::analytic_input;
use serde_json::Value;
use std::path::{Path, PathBuf};

const TRAINER: &str = "nnUNetTrainer_1epoch";
const CONFIGS: [&str; 3] = ["3d_tiny", "3d_tiny_resenc", "2d_tiny"];

fn model_dir(cfg: &str) -> PathBuf {
    fixtures().join("pth").join(format!("{TRAINER}__nnUNetPlans__{cfg}"))
}

/// A float32 `.npy` (C order) as shape and values.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let a = nnunet_engine::ensemble::parse_npy_float(&bytes, path).unwrap();
    (a.shape, a.data)
}

fn patch_len(cfg: &str) -> usize {
    if cfg.starts_with("2d") { 2 } else { 3 }
}

/// The network of `cfg` with the fixture's `checkpoint_final.pth` loaded, in eval form (full-resolution output).
fn network(cfg: &str) -> (Box<dyn nnunet_core::Network>, Vec<usize>) {
    network_on(cfg, &Device::default())
}

/// [`network`] built on `device` (an autodiff device to train it).
fn network_on(cfg: &str, device: &Device) -> (Box<dyn nnunet_core::Network>, Vec<usize>) {
    let dir = model_dir(cfg);
    let plans: nnunet_schema::Plans = nnunet_schema::json::read_json(&dir.join("plans.json")).unwrap();
    let dataset_json: nnunet_schema::DatasetJson = nnunet_schema::json::read_json(&dir.join("dataset.json")).unwrap();
    let c = plans.configuration(cfg).unwrap();
    let (class, spec) = NetworkSpec::from_configuration(&c, &dataset_json, true).unwrap();
    let arch = nnunet_core::registry::architectures().unwrap().get(&class).unwrap();
    let mut net = (arch.make)().build(&spec, device).unwrap();
    let stored = Stored::locate(&dir.join("fold_0"), "checkpoint_final.pth").expect("fixture checkpoint");
    assert!(matches!(stored, Stored::Pth(_)));
    let meta = stored.load_network(net.as_mut()).unwrap();
    assert_eq!((meta.trainer_name.as_str(), meta.configuration.as_str(), meta.fold.as_str()), (TRAINER, cfg, "0"));
    // numpy float32 scalars (protocol 2: their bytes through _codecs.encode) read as numbers
    assert!(meta.best_ema.is_some() && meta.logging.train_losses.iter().all(|x| x.is_finite()), "{:?}", meta.logging);
    assert_eq!(meta.inference_allowed_mirroring_axes.as_ref().map(Vec::len), Some(patch_len(cfg)));
    let patch: Vec<usize> = serde_json::from_value(c["patch_size"].clone()).unwrap();
    (net, patch)
}

/// The loaded networks' logits equal PyTorch's for the same input (fixtures/pth/outputs/<cfg>.npy).
#[test]
fn python_checkpoints_compute_what_pytorch_computes() {
    for cfg in CONFIGS {
        let (net, patch) = network(cfg);
        let (want_shape, want) = read_npy(&fixtures().join(format!("pth/outputs/{cfg}.npy")));
        let shape5 = if patch.len() == 2 { [1, 1, 1, patch[0], patch[1]] } else { [1, 1, patch[0], patch[1], patch[2]] };
        let x: Tensor<5> = analytic_input(shape5);
        let y = net.forward(x).remove(0);
        let got = y.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(got.len(), want.len(), "{cfg}: output shape {want_shape:?}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{cfg}: max |ours - PyTorch| = {diff:e} (output scale {scale})");
        assert!(diff <= 1e-4 * scale.max(1.0), "{cfg}: max difference {diff} (scale {scale})");
    }
}

fn read_image(path: &Path) -> Vec<f32> {
    use nnunet_data::ImageReaderWriter;
    nnunet_data::io::SimpleItkIo.read_images(&[path.to_path_buf()]).unwrap_or_else(|e| panic!("{}: {e}", path.display())).data
}

/// `nnUNetv2_predict` with Python nnU-Net's model folders predicts what Python nnU-Net predicted with them
/// (`fixtures/pth/predictions/`): the same segmentations, and probabilities within float16 rounding of the logits
/// (nnU-Net sums the sliding window in float16; our convolutions differ from PyTorch's in the last fp32 bits, which
/// moves a logit across a float16 rounding boundary now and then: one fp16 step at a logit of ~4 is ~1e-3 in
/// probability).
#[test]
fn predict_with_python_model_folders_matches_python_nnunet() {
    let bin = nnunet_tests::aliases_dir();
    let work = nnunet_tests::tempfile_like::TempDir::new("nnunet-pth-predict");
    let results = work.path().join("results/Dataset004_Hippocampus");
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let cases = ["hippocampus_001", "hippocampus_003"];
    let images = nnunet_tests::repo_root().join("examples/data/Dataset004_Hippocampus/imagesTr");
    for c in cases {
        std::fs::copy(images.join(format!("{c}_0000.nii.gz")), input.join(format!("{c}_0000.nii.gz"))).unwrap();
    }
    let predict = bin.path().join("nnUNetv2_predict");
    let env = [("nnUNet_results", work.path().join("results"))];
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    for (cfg, reference, tta) in [
        ("3d_tiny", "3d_tiny", true),
        ("3d_tiny", "3d_tiny_notta", false),
        ("3d_tiny_resenc", "3d_tiny_resenc", true),
        ("2d_tiny", "2d_tiny", true),
    ] {
        let name = format!("{TRAINER}__nnUNetPlans__{cfg}");
        if !results.join(&name).exists() {
            nnunet_tests::copy_dir(&model_dir(cfg), &results.join(&name));
        }
        let out = work.path().join(format!("out_{reference}"));
        let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
        let mut args = vec!["-i", i, "-o", o, "-d", "4", "-c", cfg, "-f", "0", "-tr", TRAINER, "-device", "cpu", "--save_probabilities"];
        if !tta {
            args.push("--disable_tta");
        }
        let r = nnunet_tests::run(&predict, &args, &env);
        assert_eq!(r.code, 0, "{reference}: stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        let want_dir = fixtures().join("pth/predictions").join(reference);
        let mut compared = 0;
        for c in cases {
            let seg_ours = read_image(&out.join(format!("{c}.nii.gz")));
            let seg_want = read_image(&want_dir.join(format!("{c}.nii.gz")));
            assert_eq!(seg_ours.len(), seg_want.len(), "{reference} {c}");
            let seg_diff = seg_ours.iter().zip(&seg_want).filter(|(a, b)| a != b).count();
            eprintln!("{reference} {c}: {seg_diff} of {} voxels labelled differently", seg_want.len());
            assert!((seg_diff as f64) <= 1e-3 * seg_want.len() as f64, "{reference} {c}: {seg_diff} voxels differ");
            // the fixture keeps some of Python's probability files only (size)
            let want_npz = want_dir.join(format!("{c}.npz"));
            if !want_npz.exists() {
                continue;
            }
            compared += 1;
            let ours = nnunet_engine::ensemble::read_npz_probabilities(&out.join(format!("{c}.npz"))).unwrap();
            let want = nnunet_engine::ensemble::read_npz_probabilities(&want_npz).unwrap();
            assert_eq!(ours.shape, want.shape, "{reference} {c}");
            let diffs: Vec<f32> = ours.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).collect();
            let max = diffs.iter().cloned().fold(0f32, f32::max);
            let off = diffs.iter().filter(|&&d| d > 1e-4).count();
            eprintln!("{reference} {c}: max |p - p_nnU-Net| {max:.2e}, {off} of {} values off by > 1e-4", diffs.len());
            assert!(max < 2e-3, "{reference} {c}: probabilities differ by {max}");
            assert!((off as f64) < 0.005 * diffs.len() as f64, "{reference} {c}: {off} probabilities differ by > 1e-4");
        }
        assert!(compared > 0, "{reference}: no probability file of Python nnU-Net's to compare with");
    }
}

/// The other direction: a checkpoint this framework writes (`checkpoint_final.pth`, here of a network with the weights
/// of the Python fixture's 3d_tiny moved through our loader and writer) is read by Python nnU-Net 2.8.1's predictor,
/// which predicts what we predict (when nnU-Net's Python is installed: `$NNUNET_PY` or /root/nnunet-py).
#[test]
fn python_nnunet_predicts_with_checkpoints_written_here() {
    let py = nnunet_tests::nnunet_python();
    let work = nnunet_tests::tempfile_like::TempDir::new("nnunet-pth-write");
    let cfg = "3d_tiny";
    let results = work.path().join("results/Dataset004_Hippocampus");
    let model = results.join(format!("{TRAINER}__nnUNetPlans__{cfg}"));
    std::fs::create_dir_all(model.join("fold_0")).unwrap();
    for f in ["plans.json", "dataset.json"] {
        std::fs::copy(model_dir(cfg).join(f), model.join(f)).unwrap();
    }
    // the Python checkpoint's weights, through our loader, perturbed so that nothing is carried over by accident
    let (mut net, _) = network(cfg);
    // (seg_layers.1 is the full-resolution head of this three-stage network)
    let n = net.replace_parameters(&mut |path, _| (path == "decoder.seg_layers.1.bias").then(|| vec![0.5, -0.25, 0.125]));
    assert_eq!(n, 1);
    let meta = Stored::Pth(model_dir(cfg).join("fold_0/checkpoint_final.pth")).read_meta().unwrap();
    let plans: Value = nnunet_tests::read_json(&model.join("plans.json"));
    let dataset_json: Value = nnunet_tests::read_json(&model.join("dataset.json"));
    let cfg_trainer = nnunet_core::TrainerConfig::default();
    let group = nnunet_engine::pth::OptimizerGroup::new(&cfg_trainer, 0.01);
    nnunet_engine::pth::write_nnunet_checkpoint(
        &model.join("fold_0/checkpoint_final.pth"),
        net.as_ref(),
        &meta,
        &group,
        None,
        &plans,
        &dataset_json,
    )
    .unwrap();
    // our prediction from the written file
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let images = nnunet_tests::repo_root().join("examples/data/Dataset004_Hippocampus/imagesTr");
    std::fs::copy(images.join("hippocampus_001_0000.nii.gz"), input.join("hippocampus_001_0000.nii.gz")).unwrap();
    let out = work.path().join("out");
    let bin = nnunet_tests::aliases_dir();
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let results_root = work.path().join("results");
    let r = nnunet_tests::run(
        &bin.path().join("nnUNetv2_predict"),
        &["-i", i, "-o", o, "-d", "4", "-c", cfg, "-f", "0", "-tr", TRAINER, "-device", "cpu", "--save_probabilities"],
        &[("nnUNet_results", results_root.as_path())],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let Some(py) = py else {
        eprintln!("skipped the Python side: no nnU-Net Python (NNUNET_PY)");
        return;
    };
    let check = fixtures().join("scripts/pth_check.py");
    let o = std::process::Command::new(&py)
        .args([check.to_str().unwrap(), model.to_str().unwrap(), i, o, "--tol", "2e-3", "--seg_tol", "30"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    eprintln!("{text}");
    assert!(o.status.success(), "Python nnU-Net with our checkpoint_final.pth:\n{text}");
}

/// `-pretrained_weights checkpoint_final.pth` of Python nnU-Net into a network for another label set: everything but
/// the segmentation layers comes from the file (nnU-Net's `load_pretrained_weights` rule).
#[test]
fn python_checkpoints_serve_as_pretrained_weights() {
    let cfg = "3d_tiny";
    let dir = model_dir(cfg);
    let plans: nnunet_schema::Plans = nnunet_schema::json::read_json(&dir.join("plans.json")).unwrap();
    let mut dataset_json: Value = nnunet_tests::read_json(&dir.join("dataset.json"));
    dataset_json["labels"] = serde_json::json!({"background": 0, "a": 1, "b": 2, "c": 3, "d": 4});
    let dataset_json: nnunet_schema::DatasetJson = serde_json::from_value(dataset_json).unwrap();
    let c = plans.configuration(cfg).unwrap();
    let (class, spec) = NetworkSpec::from_configuration(&c, &dataset_json, true).unwrap();
    let arch = (nnunet_core::registry::architectures().unwrap().get(&class).unwrap().make)();
    let mut target = arch.build(&spec, &Device::default()).unwrap();
    let before = target.named_parameters();
    let file = dir.join("fold_0/checkpoint_final.pth");
    let loaded = nnunet_engine::pretrained::load_pretrained_weights(arch.as_ref(), target.as_mut(), &file, &Device::default()).unwrap();
    let (source, _) = network(cfg);
    let source: std::collections::HashMap<String, Vec<f32>> = source.named_parameters().into_iter().map(|p| (p.path, p.values)).collect();
    let after = target.named_parameters();
    assert_eq!(loaded.len(), after.iter().filter(|p| !p.path.contains(".seg_layers.")).count());
    for (b, a) in before.iter().zip(&after) {
        if a.path.contains(".seg_layers.") {
            assert_eq!(a, b, "{} keeps its initialisation", a.path);
        } else {
            assert_eq!(a.values, source[&a.path], "{} comes from the .pth", a.path);
        }
    }
    // a network the file does not fit: every problem named
    let mut kw = spec.arch_kwargs.clone();
    kw["features_per_stage"] = serde_json::json!([6, 8, 16]);
    let other = NetworkSpec { arch_kwargs: kw, ..spec };
    let mut wrong = arch.build(&other, &Device::default()).unwrap();
    let e = nnunet_engine::pretrained::load_pretrained_weights(arch.as_ref(), wrong.as_mut(), &file, &Device::default()).unwrap_err();
    assert!(e.contains("checkpoint_final.pth") && e.contains("encoder.stages.0.convs.0.conv.weight") && e.contains("shape"), "{e}");
}

/// `nnUNetv2_train … --c` on a fold whose only checkpoint is Python nnU-Net's `checkpoint_final.pth`: the run
/// resumes from it (weights, epoch, logs; nothing left to train here), writes its final checkpoint with those
/// weights and runs the final validation.
#[test]
fn training_continues_from_a_python_checkpoint() {
    let work = nnunet_tests::tempfile_like::TempDir::new("nnunet-pth-resume");
    let dirs = nnunet_tests::tiny_hippocampus(work.path());
    let fold = dirs.results.join(format!("Dataset004_Hippocampus/{TRAINER}__nnUNetPlans__3d_tiny/fold_0"));
    std::fs::create_dir_all(&fold).unwrap();
    let python = model_dir("3d_tiny").join("fold_0/checkpoint_final.pth");
    std::fs::copy(&python, fold.join("checkpoint_final.pth")).unwrap();
    let bin = nnunet_tests::aliases_dir();
    let r =
        nnunet_tests::run(&bin.path().join("nnUNetv2_train"), &["4", "3d_tiny", "0", "-tr", TRAINER, "-device", "cpu", "--c"], &dirs.env());
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Resuming from") && r.stdout.contains("checkpoint_final.pth at epoch 1"), "{}", r.stdout);
    // SGD's momentum comes along (all parameters but the unused lowest-resolution head's two)
    let line = "Optimizer state: SGD momentum buffers of 46 of 48 parameters loaded from checkpoint_final.pth";
    assert!(r.stdout.contains(line) && !r.stdout.contains("WARNING"), "{}", r.stdout);
    let log = std::fs::read_dir(&fold)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("training_log"))
        .expect("training log");
    assert!(std::fs::read_to_string(&log).unwrap().contains(line), "{}", log.display());
    // nothing was left to train: the .pth written at the end holds Python's momentum buffers, unchanged
    let theirs = nnunet_engine::pth::read_nnunet_checkpoint(&python).unwrap().optimizer_state;
    let written = nnunet_engine::pth::read_nnunet_checkpoint(&fold.join("checkpoint_final.pth")).unwrap().optimizer_state;
    assert_eq!(written.len(), 46);
    assert!(written == theirs, "the written optimizer state differs from the Python checkpoint's");
    assert!(fold.join("validation/summary.json").is_file());
    let (mut ours, _) = network("3d_tiny");
    let meta = Stored::Pth(fold.join("checkpoint_final.pth")).load_network(ours.as_mut()).unwrap();
    let (theirs, _) = network("3d_tiny");
    assert_eq!(ours.named_parameters(), theirs.named_parameters(), "the final checkpoint holds the Python weights");
    let python_meta = Stored::Pth(python).read_meta().unwrap();
    assert_eq!((meta.current_epoch, &meta.logging.train_losses), (1, &python_meta.logging.train_losses));
}

/// The optimizer state of Python nnU-Net's checkpoints: SGD momentum buffers for every parameter but the
/// lowest-resolution segmentation head (no gradient), in PyTorch's shapes; loaded into our SGD they are its
/// velocities, exactly.
#[test]
fn python_momentum_buffers_load_into_our_optimizer() {
    use nnunet_engine::pth::{ParamState, load_optimizer_state, optimizer_state, read_nnunet_checkpoint};
    for cfg in CONFIGS {
        let (net, _) = network(cfg);
        let c = read_nnunet_checkpoint(&model_dir(cfg).join("fold_0/checkpoint_final.pth")).unwrap();
        // PyTorch's parameters() order: first appearance in the state dict
        let mut order: Vec<String> = Vec::new();
        for k in net.torch_state_dict() {
            if !order.contains(&k.path) {
                order.push(k.path);
            }
        }
        let shapes: std::collections::HashMap<String, Vec<usize>> = net.parameter_ids().into_iter().map(|(p, _, s)| (p, s)).collect();
        let without: Vec<&str> = (0..order.len()).filter(|i| !c.optimizer_state.contains_key(i)).map(|i| order[i].as_str()).collect();
        assert_eq!(without, ["decoder.seg_layers.0.weight", "decoder.seg_layers.0.bias"], "{cfg}");
        for (i, s) in &c.optimizer_state {
            let ParamState::Sgd { momentum_buffer: b } = s else { panic!("{cfg}: parameter {i}: {s:?}") };
            let ours = &shapes[&order[*i]];
            let torch: Vec<usize> = if cfg.starts_with("2d") && ours.len() == 5 { [&ours[..2], &ours[3..]].concat() } else { ours.clone() };
            assert_eq!(b.shape, torch, "{cfg}: {}", order[*i]);
        }
        let (optim, report) =
            load_optimizer_state(net.as_ref(), nnunet_engine::optim::sgd(0.99, 3e-5), nnunet_core::OptimizerKind::Sgd, &c.optimizer_state);
        assert_eq!((report.loaded, report.problems.len()), (order.len() - 2, 0), "{cfg}: {:?}", report.problems);
        let back = optimizer_state(net.as_ref(), &optim).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), c.optimizer_state.keys().collect::<Vec<_>>(), "{cfg}");
        for (i, s) in &back {
            let (ParamState::Sgd { momentum_buffer: ours }, ParamState::Sgd { momentum_buffer: theirs }) = (s, &c.optimizer_state[i])
            else {
                panic!("{cfg}: parameter {i}")
            };
            assert_eq!(ours.values, theirs.values, "{cfg}: {}", order[*i]);
        }
        eprintln!("{cfg}: {} of {} momentum buffers loaded", report.loaded, order.len());
    }
}

/// The other direction: the optimizer state we write (after our own steps: SGD continuing from the Python
/// checkpoint's momentum, AdamW from scratch) loads into Python nnU-Net 2.8.1's trainer through its `load_checkpoint`
/// (`torch.load(weights_only=True)` first), every buffer has its parameter's shape, the values are ours, and PyTorch's
/// first step with it is the update rule applied to that state (`scripts/pth_optimizer_check.py`; when nnU-Net's
/// Python is installed: `$NNUNET_PY` or /root/nnunet-py). AdamW as `nnUNetTrainerAdam`, nnU-Net's AdamW trainer.
#[test]
fn python_nnunet_continues_with_optimizer_state_written_here() {
    use nnunet_core::OptimizerKind;
    use nnunet_engine::pth::{OptimizerGroup, ParamState, load_optimizer_state, optimizer_state, read_nnunet_checkpoint};
    let py = nnunet_tests::nnunet_python();
    let work = nnunet_tests::tempfile_like::TempDir::new("nnunet-pth-optim");
    for (cfg, kind) in [("3d_tiny", OptimizerKind::Sgd), ("2d_tiny", OptimizerKind::Sgd), ("3d_tiny", OptimizerKind::AdamW)] {
        let dev = Device::default().autodiff();
        let (mut net, patch) = network_on(cfg, &dev);
        let python = model_dir(cfg).join("fold_0/checkpoint_final.pth");
        let (mut optim, steps) = match kind {
            OptimizerKind::Sgd => {
                let c = read_nnunet_checkpoint(&python).unwrap();
                (load_optimizer_state(net.as_ref(), nnunet_engine::optim::sgd(0.99, 3e-5), kind, &c.optimizer_state).0, 1)
            }
            OptimizerKind::AdamW => (nnunet_engine::optim::adamw(3e-5, 1e-4), 2),
        };
        let shape5 = if patch.len() == 2 { [1, 1, 1, patch[0], patch[1]] } else { [1, 1, patch[0], patch[1], patch[2]] };
        for _ in 0..steps {
            let y = net.forward(analytic_input(shape5).to_device(&dev)).remove(0);
            let loss = y.sub_scalar(0.5).powi_scalar(2).mean();
            net.step(&mut optim, 1e-3, loss, Some(12.0));
        }
        let ours = optimizer_state(net.as_ref(), &optim).unwrap();
        let mut meta = Stored::Pth(python).read_meta().unwrap();
        if kind == OptimizerKind::AdamW {
            meta.trainer_name = "nnUNetTrainerAdam".into();
        }
        let trainer = nnunet_core::TrainerConfig { optimizer: kind, adam_eps: 1e-8, ..Default::default() };
        let file = work.path().join(format!("{cfg}_{kind:?}.pth"));
        let plans: Value = nnunet_tests::read_json(&model_dir(cfg).join("plans.json"));
        let dataset_json: Value = nnunet_tests::read_json(&model_dir(cfg).join("dataset.json"));
        let group = OptimizerGroup::new(&trainer, 1e-3);
        nnunet_engine::pth::write_nnunet_checkpoint(&file, net.as_ref(), &meta, &group, Some(&optim), &plans, &dataset_json).unwrap();
        let Some(py) = &py else {
            eprintln!("skipped the Python side: no nnU-Net Python (NNUNET_PY)");
            return;
        };
        let out = work.path().join(format!("{cfg}_{kind:?}.json"));
        let script = fixtures().join("scripts/pth_optimizer_check.py");
        let o = std::process::Command::new(py).args([script.as_path(), file.as_path(), out.as_path()]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{cfg} {kind:?}: Python nnU-Net with our optimizer state:\n{text}");
        eprintln!("{}", text.lines().rfind(|l| l.contains("parameters with state")).unwrap_or_default());
        let report: Value = nnunet_tests::read_json(&out);
        assert_eq!(report["optimizer"], if kind == OptimizerKind::Sgd { "SGD" } else { "AdamW" }, "{cfg} {kind:?}");
        let state = report["state"].as_object().unwrap();
        assert_eq!(state.len(), ours.len(), "{cfg} {kind:?}");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-12);
        for (i, s) in &ours {
            let entry = &state[&i.to_string()];
            let fields: Vec<(&str, &nnunet_engine::pth::PthTensor)> = match s {
                ParamState::Sgd { momentum_buffer } => vec![("momentum_buffer", momentum_buffer)],
                ParamState::Adam { step, exp_avg, exp_avg_sq } => {
                    assert_eq!(entry["step"].as_f64(), Some(*step), "{cfg} {kind:?} parameter {i}");
                    vec![("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)]
                }
                ParamState::Other { .. } => unreachable!(),
            };
            for (name, t) in fields {
                let torch: Vec<usize> =
                    if cfg.starts_with("2d") && t.shape.len() == 5 { [&t.shape[..2], &t.shape[3..]].concat() } else { t.shape.clone() };
                let e = &entry[name];
                let shape: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap();
                assert_eq!(shape, torch, "{cfg} {kind:?} parameter {i} {name}");
                let sum: f64 = t.values.iter().map(|&v| v as f64).sum();
                let sumsq: f64 = t.values.iter().map(|&v| v as f64 * v as f64).sum();
                let (psum, psumsq) = (e["sum"].as_f64().unwrap(), e["sumsq"].as_f64().unwrap());
                assert!(close(sum, psum) && close(sumsq, psumsq), "{cfg} {kind:?} parameter {i} {name}: {sum} {sumsq} vs {psum} {psumsq}");
            }
        }
    }
}
