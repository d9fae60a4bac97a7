//! Shared helpers of the integration tests: locating the `nnunet` binary and the fixtures, running
//! commands; [`conformance`], the suite every architecture runs; [`pytorch`], loading PyTorch reference weights.

pub mod conformance;
pub mod pytorch;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `tests/fixtures/` of this repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The Python interpreter of an environment with nnU-Net 2.8.1 installed (`$NNUNET_PY`, a venv folder, else this
/// project's development venv `/root/nnunet-py`), when there is one: the tests that check our files with Python
/// nnU-Net itself run their Python half only then.
pub fn nnunet_python() -> Option<PathBuf> {
    let venv = std::env::var_os("NNUNET_PY").map(PathBuf::from).unwrap_or_else(|| "/root/nnunet-py".into());
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `target/<profile>` of the running test executable (`target/<profile>/deps/it-…`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/..").to_path_buf()
}

/// `cargo build --quiet -p PKG TARGET` with `cargo`, into the running tests' target folder and profile, from the
/// repository root.
pub fn cargo_build(cargo: &std::ffi::OsStr, pkg: &str, target: &str) {
    let dir = profile_dir();
    let release = dir.file_name().is_some_and(|n| n == "release");
    let st = Command::new(cargo)
        .args(["build", "--quiet", "-p", pkg, target, "--target-dir"])
        .arg(dir.parent().expect("target dir"))
        .args(if release { &["--release"][..] } else { &[][..] })
        .current_dir(repo_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {pkg}: {e}"));
    assert!(st.success(), "cargo build -p {pkg} {target} failed");
}

/// The `nnunet` binary of this checkout, next to the `deps/` folder of the running test executable. Built once per
/// test process, before the first test uses it, with `cargo build -p nnunet-cli --bin=nnunet` (nothing to do when it
/// is fresh; `$CARGO` is set when cargo runs the tests): the plugin tests need the host built by `cargo build`, as their
/// plugin library is, and when that rebuild ran inside one test, cargo replaced the binary under the tests running
/// beside it (28 of them failed with "not found" on a cold target folder).
pub fn nnunet_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        // (a test executable reused from another checkout names a root that may not exist here: then use what is built)
        if let Some(cargo) = std::env::var_os("CARGO").filter(|_| repo_root().join("Cargo.toml").is_file()) {
            cargo_build(&cargo, "nnunet-cli", "--bin=nnunet");
        }
        let bin = profile_dir().join(format!("nnunet{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} not found: run the tests with `cargo test --workspace`, which builds the nnunet binary", bin.display());
        bin
    })
    .clone()
}

/// Copy a folder tree (test fixtures into a temp work folder).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    for e in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let e = e.expect("dir entry");
        let t = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t)
        } else {
            std::fs::copy(e.path(), &t).unwrap_or_else(|err| panic!("{}: {err}", t.display()));
        }
    }
}

/// Result of one command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run `program args…` with the nnU-Net environment variables removed and `envs` set.
pub fn run(program: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Run {
    run_in(None, program, args, envs)
}

/// [`run`] in working directory `cwd`.
pub fn run_in(cwd: Option<&Path>, program: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Run {
    let mut c = Command::new(program);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.args(args);
    for v in ["nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"] {
        c.env_remove(v);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display())).into()
}

/// Install the nnUNetv2_* links into a fresh temp folder and return it.
pub fn aliases_dir() -> tempfile_like::TempDir {
    let dir = tempfile_like::TempDir::new("nnunet-aliases");
    let r = run(&nnunet_bin(), &["install-aliases", dir.path().to_str().expect("utf-8 temp path")], &[]);
    assert_eq!(r.code, 0, "install-aliases failed: {}", r.stderr);
    dir
}

/// A tiny temp-dir type (kept here so the library has no dev-only dependency).
pub mod tempfile_like {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("create temp dir");
            TempDir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `nnUNet_raw` / `nnUNet_preprocessed` / `nnUNet_results` under one work folder.
pub struct NnunetDirs {
    pub raw: PathBuf,
    pub preprocessed: PathBuf,
    pub results: PathBuf,
}

impl NnunetDirs {
    pub fn new(work: &Path) -> Self {
        NnunetDirs { raw: work.join("raw"), preprocessed: work.join("pre"), results: work.join("res") }
    }

    /// The environment variables for [`run`].
    pub fn env(&self) -> [(&'static str, &Path); 3] {
        [("nnUNet_raw", &self.raw), ("nnUNet_preprocessed", &self.preprocessed), ("nnUNet_results", &self.results)]
    }
}

/// The embedded 24-case Hippocampus subset, planned and preprocessed (3d_fullres) by the `nnunet` binary, with the
/// tiny configuration `3d_tiny` of `examples/data/3d_tiny_configuration.json` (PlainConvUNet, 3 stages, 4..16
/// features, patch 24×32×24, batch 2; inherits 3d_fullres's data) added to nnUNetPlans.json — what the demo trains.
pub fn tiny_hippocampus(work: &Path) -> NnunetDirs {
    let dirs = NnunetDirs::new(work);
    copy_dir(&repo_root().join("examples/data/Dataset004_Hippocampus"), &dirs.raw.join("Dataset004_Hippocampus"));
    let r = run(
        &nnunet_bin(),
        &["plan-and-preprocess", "-d", "4", "-c", "3d_fullres", "--processes", "2", "--fingerprint-processes", "2"],
        &dirs.env(),
    );
    assert_eq!(r.code, 0, "plan-and-preprocess failed: {}\n{}", r.stdout, r.stderr);
    let plans_path = dirs.preprocessed.join("Dataset004_Hippocampus/nnUNetPlans.json");
    let mut plans: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plans_path).expect("plans")).expect("plans JSON");
    plans["configurations"]["3d_tiny"] = tiny_configuration();
    std::fs::write(&plans_path, serde_json::to_string_pretty(&plans).expect("JSON")).expect("write plans");
    dirs
}

/// The `3d_tiny` plans configuration of `examples/data/3d_tiny_configuration.json` (a fragment meant to be pasted into
/// a plans file's `configurations`).
pub fn tiny_configuration() -> serde_json::Value {
    let tiny = std::fs::read_to_string(repo_root().join("examples/data/3d_tiny_configuration.json")).expect("tiny configuration");
    let tiny: serde_json::Value = serde_json::from_str(&format!("{{{}}}", tiny.trim().trim_end_matches(','))).expect("tiny JSON");
    tiny["3d_tiny"].clone()
}

/// Read a JSON file (nnU-Net's NaN read as null, by the project's own reader).
pub fn read_json(path: &Path) -> serde_json::Value {
    nnunet_schema::json::read_json(path).unwrap_or_else(|e| panic!("{e}"))
}
