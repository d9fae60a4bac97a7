//! Dynamic plugins (tier 2, ADR 0009): the `nnunet` binary loads the TinyNet example built as a cdylib with
//! `--plugin`, lists its components, runs real commands inside it (summary, a short training: backward runs in the
//! plugin's own engine), and refuses libraries that are not plugins. Tier 1 (linking TinyNet into a binary) and the
//! conformance suite for TinyNet are tested in examples/plugin-tinynet/tests.

use nnunet_tests::{fixtures, nnunet_bin, profile_dir, read_json, run, tempfile_like::TempDir, tiny_hippocampus};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Build the TinyNet cdylib (cargo does nothing when it is fresh), once per test process; the host binary is built by
/// `nnunet_bin()` before any test uses it. Returns the plugin library.
fn tinynet_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = profile_dir();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        nnunet_bin();
        nnunet_tests::cargo_build(&cargo, "nnunet-example-tinynet", "--lib");
        let lib = dir.join(format!("{}tinynet{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
        assert!(lib.is_file(), "{} not built", lib.display());
        lib
    })
}

/// The `nnunet` binary, rebuilt first if stale (with the TinyNet library).
fn host() -> PathBuf {
    tinynet_lib();
    nnunet_bin()
}

fn plugin_args<'a>(lib: &'a Path, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--plugin", lib.to_str().expect("utf-8 path")];
    v.extend_from_slice(rest);
    v
}

/// A row of `nnunet list` whose name is `name`.
fn row<'a>(stdout: &'a str, name: &str) -> Option<&'a str> {
    stdout.lines().find(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn dynamic_plugin_lists_its_components_marked_with_the_library() {
    let lib = tinynet_lib();
    let r = run(&host(), &plugin_args(lib, &["list", "architectures"]), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = row(&r.stdout, "TinyNet").unwrap_or_else(|| panic!("TinyNet not listed:\n{}", r.stdout));
    assert!(line.contains("[tinynet]") && line.contains(&format!("(plugin {})", lib.canonicalize().unwrap().display())), "{line}");
    assert!(row(&r.stdout, "dynamic_network_architectures.architectures.unet.PlainConvUNet").is_some(), "host components stay listed");
    assert!(!r.stdout.contains("planners ("), "only the asked kind");
    assert!(r.stderr.is_empty(), "same build, no fingerprint note: {}", r.stderr);

    // the host alone does not know TinyNet
    let r = run(&host(), &["list", "architectures"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(row(&r.stdout, "TinyNet").is_none(), "{}", r.stdout);

    let r = run(&host(), &["plugin", "info", lib.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"crate_name\":\"nnunet-example-tinynet\"") && r.stdout.contains("differences  none"), "{}", r.stdout);
}

/// The Hippocampus plans with 3d_fullres switched to TinyNet (the planner's topology).
fn tinynet_plans(dir: &Path) -> PathBuf {
    let fx = fixtures().join("Dataset004_Hippocampus");
    let mut plans = read_json(&fx.join("nnUNetPlans.json"));
    let k = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].clone();
    plans["configurations"]["3d_fullres"]["architecture"] = json!({
        "network_class_name": "TinyNet",
        "arch_kwargs": {"n_stages": k["n_stages"], "features_per_stage": k["features_per_stage"], "kernel_sizes": k["kernel_sizes"], "strides": k["strides"]},
        "_kw_requires_import": []
    });
    std::fs::copy(fx.join("dataset.json"), dir.join("dataset.json")).unwrap();
    let p = dir.join("nnUNetPlans.json");
    std::fs::write(&p, serde_json::to_string_pretty(&plans).unwrap()).unwrap();
    p
}

#[test]
fn commands_run_inside_the_plugin_where_its_components_exist() {
    let lib = tinynet_lib();
    let work = TempDir::new("nnunet-plugin-summary");
    let plans = tinynet_plans(work.path());
    let args = ["summary", "-d", "Dataset004_Hippocampus", "-c", "3d_fullres", "--plans-file", plans.to_str().unwrap()];
    let r = run(&host(), &plugin_args(lib, &args), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("network        TinyNet"), "{}", r.stdout);
    assert!(r.stdout.contains("encoder 3   conv 3x3x3 stride 2x2x2  out (256, 5x7x5)"), "{}", r.stdout);
    assert!(r.stdout.lines().any(|l| l.starts_with("parameters: ")), "{}", r.stdout);

    let r = run(&host(), &args, &[]);
    assert_eq!(r.code, 2, "the host alone cannot build TinyNet: {}", r.stdout);
    assert!(r.stderr.contains("unknown architecture 'TinyNet'"), "{}", r.stderr);

    // a command runs inside one plugin
    let r = run(&host(), &plugin_args(lib, &plugin_args(lib, &args)), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("2 plugins given"), "{}", r.stderr);
}

/// Training needs backward: inside the plugin it runs on the plugin's own burn, so it works (a burn module handed
/// across the boundary would panic in backward).
fn train_tinynet_through_the_plugin(work: &Path) -> PathBuf {
    let lib = tinynet_lib();
    let dirs = tiny_hippocampus(work);
    let plans_path = dirs.preprocessed.join("Dataset004_Hippocampus/nnUNetPlans.json");
    let mut plans = read_json(&plans_path);
    plans["configurations"]["3d_tinynet"] = json!({
        "inherits_from": "3d_tiny",
        "architecture": {"network_class_name": "TinyNet", "arch_kwargs": {
            "n_stages": 3, "features_per_stage": [4, 8, 16], "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]]}, "_kw_requires_import": []}
    });
    std::fs::write(&plans_path, serde_json::to_string_pretty(&plans).unwrap()).unwrap();
    let r =
        run(&host(), &plugin_args(lib, &["train", "4", "3d_tinynet", "0", "--tr", "nnUNetTrainerDebug", "--device", "cpu"]), &dirs.env());
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("training finished: 3 epochs"), "{}", r.stdout);
    dirs.results.join("Dataset004_Hippocampus/nnUNetTrainerDebug__nnUNetPlans__3d_tinynet/fold_0")
}

#[test]
fn dynamic_plugin_trains_its_architecture() {
    let work = TempDir::new("nnunet-plugin-train");
    let fold = train_tinynet_through_the_plugin(work.path());
    for f in ["checkpoint_final.pth", "validation/summary.json", "debug.json"] {
        assert!(fold.join(f).exists(), "{f} missing in {}", fold.display());
    }
    let debug = read_json(&fold.join("debug.json"));
    assert_eq!(debug["network_class_name"], json!("TinyNet"));
    let meta = crate::checkpoint_meta(&fold, "checkpoint_final");
    assert_eq!(meta.network_class_name, "TinyNet");
    let losses = meta.logging.train_losses;
    assert!(losses.len() == 3 && losses.iter().all(|l| l.is_finite()), "{losses:?}");
}

#[test]
fn dynamic_plugin_run_records_both_fingerprints_in_debug_json() {
    let work = TempDir::new("nnunet-plugin-provenance");
    let fold = train_tinynet_through_the_plugin(work.path());
    let debug = read_json(&fold.join("debug.json"));
    let p = &debug["plugin"];
    assert_eq!(p["plugin_fingerprint"]["crate_name"], json!("nnunet-example-tinynet"), "{debug}");
    assert_eq!(p["host_fingerprint"]["crate_name"], json!("nnunet-cli"), "{debug}");
    assert!(p["library"].as_str().is_some_and(|l| l.ends_with(&format!("tinynet{}", std::env::consts::DLL_SUFFIX))), "{debug}");
}

/// A shared library that is not a plugin: the C math library, else a proc-macro library cargo built.
fn foreign_libraries() -> Vec<PathBuf> {
    let mut v = Vec::new();
    let dirs = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ];
    if let Some(m) = dirs.iter().map(|d| Path::new(d).join("libm.so.6")).find(|p| p.is_file()) {
        v.push(m);
    }
    let deps = profile_dir().join("deps");
    let proc_macro = std::fs::read_dir(&deps).ok().into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
        let n = p.file_name().unwrap_or_default().to_string_lossy();
        n.starts_with("libserde_derive-") && n.ends_with(std::env::consts::DLL_SUFFIX)
    });
    v.extend(proc_macro);
    assert!(!v.is_empty(), "no foreign shared library found (libm.so.6 or a serde_derive proc-macro in {})", deps.display());
    v
}

#[test]
fn libraries_that_are_not_plugins_are_refused_with_exit_code_2() {
    for lib in foreign_libraries() {
        let r = run(&host(), &plugin_args(&lib, &["list"]), &[]);
        assert_eq!(r.code, 2, "{}: {}", lib.display(), r.stderr);
        let name = lib.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            r.stderr.contains(&name) && r.stderr.contains("is not an nnunet plugin: symbol NNUNET_PLUGIN_HEADER not found"),
            "{}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "nothing runs after a refusal: {}", r.stdout);
    }

    let work = TempDir::new("nnunet-plugin-refusal");
    let text = work.path().join("x.so");
    std::fs::write(&text, "not a library\n").unwrap();
    let r = run(&host(), &plugin_args(&text, &["list"]), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("x.so") && r.stderr.contains("not a loadable shared library"), "{}", r.stderr);

    let missing = work.path().join("libnothing.so");
    let r = run(&host(), &plugin_args(&missing, &["list"]), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("libnothing.so: no such file"), "{}", r.stderr);

    let r = run(&host(), &["--plugin"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--plugin needs a value"), "{}", r.stderr);
}

#[test]
fn plugin_build_explains_what_is_missing() {
    let work = TempDir::new("nnunet-plugin-build-err");
    let out = work.path().join("bin");
    let r = run(&host(), &["plugin", "build", work.path().to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no Cargo.toml") && r.stderr.contains(work.path().to_str().unwrap()), "{}", r.stderr);

    let crate_dir = nnunet_tests::repo_root().join("examples/plugin-tinynet");
    let no_cargo = Path::new("/nonexistent/cargo");
    let r = run(&host(), &["plugin", "build", crate_dir.to_str().unwrap(), "-o", out.to_str().unwrap()], &[("CARGO", no_cargo)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cargo not found") && r.stderr.contains("/nonexistent/cargo"), "{}", r.stderr);
    assert!(!out.exists());
}

/// Slow (compiles the engine into a new binary): `cargo test -p nnunet-tests --test it plugins -- --ignored`.
#[test]
#[ignore = "compiles a whole nnunet binary (minutes)"]
fn plugin_build_links_the_crate_into_a_binary() {
    let work = TempDir::new("nnunet-plugin-build");
    let out = work.path().join("nnunet-tinynet");
    let crate_dir = nnunet_tests::repo_root().join("examples/plugin-tinynet");
    let r = run(&host(), &["plugin", "build", crate_dir.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = run(&out, &["list", "architectures"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = row(&r.stdout, "TinyNet").unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(line.contains("[tinynet]") && !line.contains("(plugin"), "linked, not loaded: {line}");
}
