//! `--c` after SIGKILL: a training run killed mid-epoch resumes from `checkpoint_latest` (model, optimizer, epoch,
//! logger and data-stream state) and finishes; the resumed epochs see the same batches as an uninterrupted run.
//! Then `-pretrained_weights` initialises another fold from the finished checkpoint.

use crate::checkpoint_meta;
use nnunet_tests::{aliases_dir, nnunet_bin, read_json, run, tempfile_like::TempDir, tiny_hippocampus};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRAIN: [&str; 8] = ["train", "4", "3d_tiny", "0", "--trainer", "nnUNetTrainerDebug", "--device", "cpu"];

#[test]
fn sigkill_mid_epoch_then_continue() {
    let work = TempDir::new("nnunet-resume");
    let dirs = tiny_hippocampus(work.path());
    let fold = dirs.results.join("Dataset004_Hippocampus/nnUNetTrainerDebug__nnUNetPlans__3d_tiny/fold_0");

    // start training, wait until checkpoint_latest of epoch 0 exists, then SIGKILL inside epoch 1
    // with its own seed (a native extension; the --c below does not repeat it: the checkpoint's seed continues)
    let mut cmd = Command::new(nnunet_bin());
    cmd.args(TRAIN).args(["--seed", "7"]).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in dirs.env() {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn nnunet train");
    let latest = fold.join("checkpoint_latest.pth");
    let t0 = Instant::now();
    while !latest.exists() {
        assert!(child.try_wait().unwrap().is_none(), "training ended before writing checkpoint_latest");
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint_latest after 300 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(800)); // a few iterations into epoch 1
    assert!(child.try_wait().unwrap().is_none(), "training must still run when it is killed");
    child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    child.wait().unwrap();
    assert!(!fold.join("checkpoint_final.pth").exists());
    let killed_at = checkpoint_meta(&fold, "checkpoint_latest").current_epoch;
    assert!((1..3).contains(&killed_at), "latest checkpoint at epoch {killed_at}");

    // --c continues from checkpoint_latest and finishes
    let r = run(&nnunet_bin(), &[&TRAIN[..], &["--c"]].concat(), &dirs.env());
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("at epoch {killed_at}")), "{}", r.stdout);
    let meta = checkpoint_meta(&fold, "checkpoint_final");
    assert_eq!(meta.current_epoch, 3);
    assert_eq!(meta.rng.map(|r| (r.seed, r.next_train_batch)), Some((7, 30)), "{:?}", meta.rng);
    assert_eq!(read_json(&fold.join("debug.json"))["seed"], 7);
    assert!(!fold.join("checkpoint_latest.pth").exists(), "checkpoint_latest is removed at the end");
    let losses = meta.logging.train_losses;
    assert_eq!(losses.len(), 3, "one logger entry per epoch, no duplicates: {losses:?}");
    // the log of the resumed run says so
    let logs: Vec<String> = std::fs::read_dir(&fold)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("training_log_"))
        .collect();
    assert!(logs.len() >= 2, "one training log per start: {logs:?}");
    let resumed = logs.iter().map(|n| std::fs::read_to_string(fold.join(n)).unwrap()).filter(|t| t.contains("Resuming from")).count();
    assert_eq!(resumed, 1, "{logs:?}");
    assert!(fold.join("validation/summary.json").exists());

    // -pretrained_weights: fold 1 starts from fold 0's final weights; combined with --c it is refused as in nnU-Net
    let chk = fold.join("checkpoint_final.pth");
    let fold1: Vec<&str> = TRAIN.iter().map(|a| if *a == "0" { "1" } else { a }).collect();
    let r = run(&nnunet_bin(), &[&fold1[..], &["--pretrained-weights", chk.to_str().unwrap(), "--c"]].concat(), &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Cannot both continue a training AND load pretrained weights"), "{}", r.stderr);
    let r = run(&nnunet_bin(), &[&fold1[..], &["--pretrained-weights", chk.to_str().unwrap()]].concat(), &dirs.env());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Loading pretrained weights from file"), "{}", r.stdout);
    assert!(fold.parent().unwrap().join("fold_1/checkpoint_final.pth").exists());

    // -num_gpus 2: fold 2 trained by two data-parallel replicas (on the CPU: two threads), the plans' batch of 2 split
    // 1 + 1 with nnU-Net's per-worker oversampling, to the end and through the final validation
    let bin = aliases_dir();
    let r = run(
        &bin.path().join("nnUNetv2_train"),
        &["4", "3d_tiny", "2", "-tr", "nnUNetTrainerDebug", "-num_gpus", "2", "-device", "cpu"],
        &dirs.env(),
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("worker 0 oversample 0 | worker 0 batch_size 1"), "{}", r.stdout);
    assert!(r.stdout.contains("worker 1 oversample 1 | worker 1 batch_size 1"), "{}", r.stdout);
    let fold2 = fold.parent().unwrap().join("fold_2");
    assert_eq!(read_json(&fold2.join("debug.json"))["num_gpus"], 2);
    let dp_losses = checkpoint_meta(&fold2, "checkpoint_final").logging.train_losses;
    assert!(dp_losses.len() == 3 && dp_losses.iter().all(|l| l.is_finite()), "{dp_losses:?}");
    assert!(fold2.join("validation/summary.json").exists());
    let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_tiny", "3", "-num_gpus", "3", "-device", "cpu"], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("batch size is smaller than the number of GPUs"), "{}", r.stderr);

    // an uninterrupted run with the same seed: the resumed epochs trained on the same batches from the same state
    let fresh = work.path().join("fresh");
    let env2 =
        [("nnUNet_raw", dirs.raw.as_path()), ("nnUNet_preprocessed", dirs.preprocessed.as_path()), ("nnUNet_results", fresh.as_path())];
    let r = run(&nnunet_bin(), &[&TRAIN[..], &["--seed", "7"]].concat(), &env2);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let losses2 = checkpoint_meta(&fresh.join("Dataset004_Hippocampus/nnUNetTrainerDebug__nnUNetPlans__3d_tiny/fold_0"), "checkpoint_final")
        .logging
        .train_losses;
    for (e, (a, b)) in losses.iter().zip(&losses2).enumerate() {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1e-3), "epoch {e}: resumed {a} vs uninterrupted {b} ({losses:?} vs {losses2:?})");
    }
}
