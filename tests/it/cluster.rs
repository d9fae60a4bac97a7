//! The Slurm templates `examples/slurm/*.sbatch`, run by bash without Slurm: `DRY_RUN=1` prints the command of an
//! array task, so the task id → (configuration, fold) mapping, the flags (`--c`, `-num_gpus`, `-tr`, `-p`, …) and the
//! refusals (exit 2 with a message) are checked here; a fake binary checks the real (exec) path.

use nnunet_tests::{Run, repo_root, tempfile_like::TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

const TRAIN: &str = "nnunet_train_array.sbatch";
const FIND_BEST: &str = "nnunet_find_best.sbatch";

/// The environment every case starts from (nothing else of the test's environment leaks in, e.g. the SLURM_* and
/// CUDA_VISIBLE_DEVICES of a test run inside a Slurm job).
const BASE: [(&str, &str); 5] = [
    ("nnUNet_raw", "/data/nnUNet_raw"),
    ("nnUNet_preprocessed", "/data/nnUNet_preprocessed"),
    ("nnUNet_results", "/data/nnUNet_results"),
    ("DATASET", "4"),
    ("DRY_RUN", "1"),
];

fn script(name: &str) -> PathBuf {
    repo_root().join("examples/slurm").join(name)
}

/// bash from this process's PATH (the cases may replace the child's PATH).
fn bash() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("bash"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/bin/bash"))
}

/// `bash SCRIPT args…` with [`BASE`] minus `unset`, then `set` (PATH: this process's unless `set` has one).
fn sbatch(name: &str, set: &[(&str, &str)], unset: &[&str], args: &[&str]) -> Run {
    let mut c = Command::new(bash());
    c.arg(script(name)).args(args).env_clear();
    if !set.iter().any(|(k, _)| *k == "PATH") {
        c.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    }
    for (k, v) in BASE.iter().filter(|(k, _)| !unset.contains(k)).chain(set) {
        c.env(k, v);
    }
    c.output().unwrap_or_else(|e| panic!("cannot run bash {name}: {e}")).into()
}

/// The command an array task prints in DRY_RUN mode (exit 0, exactly one line).
fn dry(name: &str, set: &[(&str, &str)]) -> String {
    let r = sbatch(name, set, &[], &[]);
    assert_eq!(r.code, 0, "{set:?}: {}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1, "{set:?}: {}", r.stdout);
    r.stdout.trim_end().to_string()
}

/// A refusal: exit 2, nothing on stdout, a message on stderr containing every one of `needles`.
fn refused(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, 2, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    for n in needles {
        assert!(r.stderr.contains(n), "'{n}' missing in: {}", r.stderr);
    }
}

#[test]
fn scripts_are_valid_bash_with_the_sbatch_directives_in_the_header() {
    for name in [TRAIN, FIND_BEST] {
        let path = script(name);
        let out = Command::new(bash()).arg("-n").arg(&path).output().expect("bash -n");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // sbatch stops reading #SBATCH lines at the first command
        let first_command = text.lines().position(|l| !l.trim().is_empty() && !l.starts_with('#')).expect("a command");
        let late: Vec<&str> = text.lines().skip(first_command).filter(|l| l.trim_start().starts_with("#SBATCH")).collect();
        assert!(late.is_empty(), "{name}: #SBATCH after the first command: {late:?}");
    }
    let text = std::fs::read_to_string(script(TRAIN)).expect("read the train script");
    for d in ["--array=", "--gres=gpu:", "--cpus-per-task=", "--mem=", "--time=", "--requeue", "--open-mode=append"] {
        assert!(text.lines().any(|l| l.starts_with(&format!("#SBATCH {d}"))), "#SBATCH {d} missing");
    }
    assert!(text.lines().any(|l| l.starts_with("#SBATCH --output=") && l.contains("%A_%a")), "--output with %A_%a missing");
}

#[test]
fn default_array_is_one_configuration_times_five_folds() {
    // the header's --array is what --array-range computes for the defaults
    let r = sbatch(TRAIN, &[], &[], &["--array-range"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "0-4\n"), "{}", r.stderr);
    let text = std::fs::read_to_string(script(TRAIN)).expect("read the train script");
    assert!(text.lines().any(|l| l == "#SBATCH --array=0-4"), "header --array differs from the default matrix");

    for fold in 0..5 {
        let id = fold.to_string();
        let line = dry(TRAIN, &[("SLURM_ARRAY_TASK_ID", id.as_str())]);
        assert_eq!(line, format!("nnUNetv2_train 4 3d_fullres {fold} -tr nnUNetTrainer -p nnUNetPlans -num_gpus 1 -device cuda --c --npz"));
    }
}

#[test]
fn task_ids_map_to_configurations_times_folds() {
    let set = |id: &'static str| {
        [
            ("SLURM_ARRAY_TASK_ID", id),
            ("CONFIGS", "2d 3d_lowres"),
            ("FOLDS", "0 1 2"),
            ("TRAINER", "nnUNetTrainer_250epochs"),
            ("PLANS", "nnUNetResEncUNetMPlans"),
            ("NUM_GPUS", "2"),
            ("DEVICE", "cpu"),
        ]
    };
    let r = sbatch(TRAIN, &set("0")[1..], &[], &["--array-range"]);
    assert_eq!(r.stdout, "0-5\n", "{}", r.stderr);
    let expected =
        [("0", "2d", "0"), ("1", "2d", "1"), ("2", "2d", "2"), ("3", "3d_lowres", "0"), ("4", "3d_lowres", "1"), ("5", "3d_lowres", "2")];
    for (id, config, fold) in expected {
        assert_eq!(
            dry(TRAIN, &set(id)),
            format!(
                "nnUNetv2_train 4 {config} {fold} -tr nnUNetTrainer_250epochs -p nnUNetResEncUNetMPlans -num_gpus 2 -device cpu --c --npz"
            )
        );
    }
    // leading zeros are decimal, not octal
    assert_eq!(dry(TRAIN, &set("05")), dry(TRAIN, &set("5")));
}

#[test]
fn fold_all_npz_off_extra_args_and_quoting() {
    let line = dry(
        TRAIN,
        &[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("DATASET", "Dataset004_Hippocampus"),
            ("CONFIGS", "3d_fullres 3d_fullres_bs8"),
            ("FOLDS", "all"),
            ("NPZ", "0"),
            ("EXTRA_ARGS", " --arch  MedNeXt "),
        ],
    );
    assert_eq!(
        line,
        "nnUNetv2_train Dataset004_Hippocampus 3d_fullres_bs8 all -tr nnUNetTrainer -p nnUNetPlans -num_gpus 1 -device cuda --c \
         --arch MedNeXt"
    );
    // a word with a space is printed shell-quoted
    let line = dry(TRAIN, &[("SLURM_ARRAY_TASK_ID", "0"), ("DATASET", "My Dataset")]);
    assert!(line.starts_with("nnUNetv2_train My\\ Dataset 3d_fullres 0 "), "{line}");
}

#[test]
fn nnunet_bin_runs_the_native_subcommand() {
    let line = dry(TRAIN, &[("SLURM_ARRAY_TASK_ID", "2"), ("NNUNET_BIN", "/opt/nnunet/bin/nnunet"), ("NUM_GPUS", "4"), ("TRAINER", "T")]);
    assert_eq!(line, "/opt/nnunet/bin/nnunet train 4 3d_fullres 2 --trainer T -p nnUNetPlans --num-gpus 4 --device cuda --continue --npz");
}

#[test]
fn augmentation_workers_default_to_the_tasks_cpus() {
    let r = sbatch(TRAIN, &[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_CPUS_PER_TASK", "12")], &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("configuration 3d_fullres, fold 0") && r.stderr.contains("nnUNet_n_proc_DA=12"), "{}", r.stderr);
    let r = sbatch(TRAIN, &[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_CPUS_PER_TASK", "12"), ("nnUNet_n_proc_DA", "3")], &[], &[]);
    assert!(r.stderr.contains("nnUNet_n_proc_DA=3"), "{}", r.stderr);
}

#[test]
fn bad_task_ids_exit_2() {
    refused(&sbatch(TRAIN, &[("SLURM_ARRAY_TASK_ID", "5")], &[], &[]), &["SLURM_ARRAY_TASK_ID=5 is out of range", "--array=0-4"]);
    refused(
        &sbatch(TRAIN, &[("SLURM_ARRAY_TASK_ID", "6"), ("CONFIGS", "2d 3d_fullres"), ("FOLDS", "0 1 2")], &[], &[]),
        &["out of range", "2 configuration(s)", "3 fold(s)", "--array=0-5"],
    );
    refused(&sbatch(TRAIN, &[("SLURM_ARRAY_TASK_ID", "-1")], &[], &[]), &["not a non-negative integer"]);
    refused(&sbatch(TRAIN, &[], &[], &[]), &["SLURM_ARRAY_TASK_ID is unset", "--array=0-4"]);
}

#[test]
fn missing_environment_exits_2_naming_it() {
    for v in ["nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"] {
        let r = sbatch(TRAIN, &[("SLURM_ARRAY_TASK_ID", "0")], &[v], &[]);
        refused(&r, &["not set: ", v]);
        refused(&sbatch(FIND_BEST, &[], &[v], &[]), &["not set: ", v]);
    }
    refused(&sbatch(TRAIN, &[("SLURM_ARRAY_TASK_ID", "0")], &["DATASET"], &[]), &["DATASET is unset"]);
    refused(&sbatch(FIND_BEST, &[], &["DATASET"], &[]), &["DATASET is unset"]);
    // empty counts as unset
    refused(&sbatch(TRAIN, &[("SLURM_ARRAY_TASK_ID", "0"), ("nnUNet_results", "")], &[], &[]), &["not set: nnUNet_results"]);
}

#[test]
fn invalid_parameters_exit_2() {
    let t = ("SLURM_ARRAY_TASK_ID", "0");
    refused(&sbatch(TRAIN, &[t, ("NUM_GPUS", "0")], &[], &[]), &["NUM_GPUS='0' is not a positive integer"]);
    refused(&sbatch(TRAIN, &[t, ("DEVICE", "mps")], &[], &[]), &["DEVICE='mps'"]);
    refused(&sbatch(TRAIN, &[t, ("FOLDS", "0 x")], &[], &[]), &["FOLDS: 'x' is not a fold"]);
    refused(&sbatch(TRAIN, &[t, ("CONFIGS", " ")], &[], &[]), &["CONFIGS is empty"]);
    refused(&sbatch(TRAIN, &[t], &[], &["--bogus"]), &["unknown argument '--bogus'"]);
    // nnU-Net refuses -pretrained_weights with --c, which every task has
    refused(&sbatch(TRAIN, &[t, ("EXTRA_ARGS", "-pretrained_weights /w/x.pth")], &[], &[]), &["-pretrained_weights", "--c"]);
    // more replicas than GPUs Slurm allocated
    refused(
        &sbatch(TRAIN, &[t, ("NUM_GPUS", "4"), ("CUDA_VISIBLE_DEVICES", "0,1")], &[], &[]),
        &["NUM_GPUS=4", "sees 2 GPU(s)", "--gres=gpu:4"],
    );
    refused(&sbatch(TRAIN, &[t, ("NUM_GPUS", "2"), ("SLURM_GPUS_ON_NODE", "1")], &[], &[]), &["sees 1 GPU(s)"]);
    // ... which does not concern CPU replicas
    let line = dry(TRAIN, &[t, ("NUM_GPUS", "4"), ("DEVICE", "cpu"), ("CUDA_VISIBLE_DEVICES", "0")]);
    assert!(line.contains(" -num_gpus 4 -device cpu "), "{line}");
}

#[test]
fn find_best_configuration_follow_up() {
    assert_eq!(dry(FIND_BEST, &[]), "nnUNetv2_find_best_configuration 4 -c 3d_fullres -tr nnUNetTrainer -p nnUNetPlans -f 0 1 2 3 4");
    assert_eq!(
        dry(
            FIND_BEST,
            &[("CONFIGS", "2d 3d_fullres"), ("FOLDS", "0 1 2"), ("TRAINER", "T"), ("PLANS", "P"), ("SLURM_CPUS_PER_TASK", "16")]
        ),
        "nnUNetv2_find_best_configuration 4 -c 2d 3d_fullres -tr T -p P -f 0 1 2 -np 16"
    );
    assert_eq!(
        dry(FIND_BEST, &[("NNUNET_BIN", "/x/nnunet"), ("EXTRA_ARGS", "--disable-ensembling")]),
        "/x/nnunet find-best-configuration 4 -c 3d_fullres --trainer nnUNetTrainer -p nnUNetPlans -f 0 1 2 3 4 --disable-ensembling"
    );
    refused(&sbatch(FIND_BEST, &[("FOLDS", "all")], &[], &[]), &["FOLDS: 'all' is not an integer fold"]);
}

/// `base` followed by `more` (later entries win).
fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

/// A stand-in for the binary: writes its argv (one per line) and nnUNet_n_proc_DA to `record`, exits 3.
#[cfg(unix)]
fn fake_binary(path: &Path, record: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let r = record.display();
    std::fs::write(path, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{r}'\necho \"n_proc_DA=$nnUNet_n_proc_DA\" >> '{r}'\nexit 3\n"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod the fake binary");
}

#[cfg(unix)]
#[test]
fn without_dry_run_the_command_is_executed_and_its_status_returned() {
    let dir = TempDir::new("nnunet-cluster");
    let record = dir.path().join("argv.txt");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let read = || std::fs::read_to_string(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display()));

    // NNUNET_BIN: the native subcommand
    let bin = dir.path().join("nnunet");
    fake_binary(&bin, &record);
    let base = [("DRY_RUN", "0"), ("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_CPUS_PER_TASK", "6"), ("NUM_GPUS", "2"), ("DEVICE", "cpu")];
    let path_empty = ("PATH", empty.to_str().expect("utf-8 temp path"));
    let r = sbatch(TRAIN, &with(&base, &[("NNUNET_BIN", bin.to_str().expect("utf-8 temp path")), path_empty]), &[], &[]);
    assert_eq!(r.code, 3, "the training's exit status is the task's: {}", r.stderr);
    assert_eq!(
        read(),
        "train\n4\n3d_fullres\n3\n--trainer\nnnUNetTrainer\n-p\nnnUNetPlans\n--num-gpus\n2\n--device\ncpu\n--continue\n--npz\nn_proc_DA=6\n"
    );

    // nnUNetv2_train from PATH
    let aliases = dir.path().join("bin");
    std::fs::create_dir_all(&aliases).expect("mkdir");
    fake_binary(&aliases.join("nnUNetv2_train"), &record);
    let r = sbatch(TRAIN, &with(&base, &[("PATH", aliases.to_str().expect("utf-8 temp path"))]), &[], &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(read(), "4\n3d_fullres\n3\n-tr\nnnUNetTrainer\n-p\nnnUNetPlans\n-num_gpus\n2\n-device\ncpu\n--c\n--npz\nn_proc_DA=6\n");

    // neither: refused before anything runs
    refused(&sbatch(TRAIN, &with(&base, &[path_empty]), &[], &[]), &["nnUNetv2_train not found on PATH", "install-aliases"]);
    let missing = dir.path().join("missing");
    refused(
        &sbatch(TRAIN, &with(&base, &[path_empty, ("NNUNET_BIN", missing.to_str().expect("utf-8"))]), &[], &[]),
        &["is not an executable file"],
    );
    refused(&sbatch(FIND_BEST, &[("DRY_RUN", "0"), path_empty], &[], &[]), &["nnUNetv2_find_best_configuration not found on PATH"]);
}
