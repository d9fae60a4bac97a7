//! Plugins on the command line (docs/PLUGINS.md, ADR 0009):
//! - `nnunet --plugin LIB … <subcommand> …` (tier 2): load dynamic plugins; `list` shows their components next to the
//!   host's, any other command runs inside the plugin (its own copy of the engine, where its components exist);
//! - `nnunet plugin build PATH` (tier 1): link the plugin crate at PATH into an `nnunet` binary;
//! - `nnunet plugin info LIB`: a dynamic plugin's fingerprint and components.

use crate::{program_name, user};
use anyhow::{Context, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use nnunet_core::registry::{self, Kind};
use nnunet_plugin::{Component, Fingerprint, Plugin};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The host's fingerprint (sent to plugins with every `run`, compared with theirs at load).
pub fn host_fingerprint() -> Fingerprint {
    Fingerprint::of_this_build(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
}

/// The plugin libraries of the command line and the argv left for the command.
type PluginArgs = (Vec<PathBuf>, Vec<String>);

/// Split the leading `--plugin PATH` / `--plugin=PATH` options (they may repeat) off `argv`. `Ok(None)`: none given.
fn split_plugin_args(argv: &[String]) -> Result<Option<PluginArgs>, String> {
    let mut paths = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if a == "--plugin" {
            let v = argv
                .get(i + 1)
                .filter(|v| !v.is_empty())
                .ok_or("--plugin needs a value: the path of a plugin library (.so/.dylib/.dll)")?;
            paths.push(PathBuf::from(v));
            i += 2;
        } else if let Some(v) = a.strip_prefix("--plugin=") {
            if v.is_empty() {
                return Err("--plugin= needs a value: the path of a plugin library (.so/.dylib/.dll)".into());
            }
            paths.push(PathBuf::from(v));
            i += 1;
        } else {
            break;
        }
    }
    if paths.is_empty() {
        return Ok(None);
    }
    let rest = argv.iter().take(1).chain(argv.iter().skip(i)).cloned().collect();
    Ok(Some((paths, rest)))
}

/// Handle `--plugin` before clap sees argv: `None` when argv has no leading `--plugin`, else the exit code.
pub fn intercept(argv: &[String]) -> Option<ExitCode> {
    let (paths, argv) = match split_plugin_args(argv) {
        Ok(None) => return None,
        Ok(Some(x)) => x,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Some(ExitCode::from(2));
        }
    };
    let host = host_fingerprint();
    let mut plugins = Vec::with_capacity(paths.len());
    for p in &paths {
        match nnunet_plugin::load(p) {
            Ok(plugin) => {
                let d = plugin.fingerprint().differences(&host);
                if !d.is_empty() {
                    eprintln!(
                        "note: plugin {} ({} {}) was built differently from this nnunet (plugin vs host): {}",
                        plugin.path().display(),
                        plugin.fingerprint().crate_name,
                        plugin.fingerprint().crate_version,
                        d.join("; ")
                    );
                }
                plugins.push(plugin);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Some(ExitCode::from(2));
            }
        }
    }
    Some(run_with_plugins(&plugins, &argv, &host))
}

fn run_with_plugins(plugins: &[Plugin], argv: &[String], host: &Fingerprint) -> ExitCode {
    let prog = argv.first().map(|a| program_name(a)).unwrap_or_else(|| "nnunet".into());
    if !prog.starts_with("nnUNetv2_") && argv.get(1).map(String::as_str) == Some("list") {
        let kind = match crate::native_command().try_get_matches_from(argv.iter().cloned()) {
            Ok(m) => m.subcommand_matches("list").and_then(|s| s.get_one::<String>("kind").cloned()),
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(e.exit_code() as u8);
            }
        };
        return match list(plugins, kind.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let [plugin] = plugins else {
        eprintln!(
            "error: {} plugins given, but a command runs inside one plugin (each links its own engine). Use one --plugin, \
             or link the plugin crates into one binary with `nnunet plugin build` (tier 1)",
            plugins.len()
        );
        return ExitCode::from(2);
    };
    let _ = std::io::stdout().flush();
    match plugin.run(argv, host) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// One row of `nnunet list` with plugins.
struct Row {
    name: String,
    origin: String,
    summary: String,
    aliases: Vec<String>,
    /// The plugin library it lives in; `None`: the host's.
    library: Option<PathBuf>,
}

/// `nnunet list` with plugins: the host's components, then each plugin's components the host does not have, marked
/// with the library they live in.
pub(crate) fn list(plugins: &[Plugin], kind: Option<&str>) -> Result<()> {
    let mut from_plugins: Vec<(PathBuf, std::collections::BTreeMap<String, Vec<Component>>)> = Vec::new();
    for p in plugins {
        from_plugins.push((p.path().to_path_buf(), p.list()?));
    }
    for k in Kind::ALL.into_iter().filter(|k| kind.is_none_or(|x| x == k.plural())) {
        let host = registry::list(k)?;
        let mut rows: Vec<Row> = host
            .iter()
            .map(|r| Row {
                name: r.name.to_string(),
                origin: r.origin_crate.to_string(),
                summary: r.summary.to_string(),
                aliases: r.aliases.iter().map(|a| a.to_string()).collect(),
                library: None,
            })
            .collect();
        for (path, comps) in &from_plugins {
            for c in comps.get(k.plural()).into_iter().flatten() {
                if host.iter().any(|h| h.name == c.name && h.origin_crate == c.origin_crate) {
                    continue; // the plugin's own copy of a component the host has
                }
                rows.push(Row {
                    name: c.name.clone(),
                    origin: c.origin_crate.clone(),
                    summary: c.summary.clone(),
                    aliases: c.aliases.clone(),
                    library: Some(path.clone()),
                });
            }
        }
        println!("{} ({}):", k.plural(), rows.len());
        if rows.is_empty() {
            println!("  (none registered yet)");
        }
        let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in rows {
            let aliases = if r.aliases.is_empty() { String::new() } else { format!(" (alias: {})", r.aliases.join(", ")) };
            let lib = r.library.map(|l| format!(" (plugin {})", l.display())).unwrap_or_default();
            println!("  {:w$}  [{}] {}{aliases}{lib}", r.name, r.origin, r.summary);
        }
    }
    Ok(())
}

/// The `nnunet plugin` command tree.
pub fn command() -> Command {
    Command::new("plugin")
        .about("Plugins: link a plugin crate into an nnunet binary (build), or inspect a dynamic plugin library (info)")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("build")
                .about(
                    "Build an nnunet binary that links the plugin crate at PATH (tier 1: `use plugin as _; fn main() { \
                     nnunet_cli::main() }`) against this nnunet's engine",
                )
                .arg(Arg::new("path").required(true).value_name("PATH").help("Folder of the plugin crate (with its Cargo.toml)"))
                .arg(Arg::new("release").long("release").action(ArgAction::SetTrue).help("Build with the release profile (for benchmarks)"))
                .arg(
                    Arg::new("output")
                        .short('o')
                        .long("output")
                        .value_name("OUT")
                        .help("Where to put the binary (default: ./nnunet-<crate name>)"),
                )
                .arg(
                    Arg::new("nnunet-src")
                        .long("nnunet-src")
                        .value_name("DIR")
                        .help("The nnunet source tree to link against (default: the one this binary was built from)"),
                ),
        )
        .subcommand(
            Command::new("info")
                .about("Load a dynamic plugin library and print its fingerprint and components")
                .arg(Arg::new("library").required(true).value_name("LIB").help("Path of the plugin library (.so/.dylib/.dll)")),
        )
}

/// Run `nnunet plugin …`.
pub fn run(m: &ArgMatches) -> Result<()> {
    match m.subcommand() {
        Some(("build", s)) => build(&BuildArgs {
            path: PathBuf::from(s.get_one::<String>("path").expect("required")),
            release: s.get_flag("release"),
            output: s.get_one::<String>("output").map(PathBuf::from),
            nnunet_src: s.get_one::<String>("nnunet-src").map(PathBuf::from),
        }),
        Some(("info", s)) => info(Path::new(s.get_one::<String>("library").expect("required"))),
        _ => unreachable!("subcommand_required"),
    }
}

fn info(lib: &Path) -> Result<()> {
    let p = nnunet_plugin::load(lib).map_err(|e| user(e.to_string()))?;
    let host = host_fingerprint();
    println!("library      {}", p.path().display());
    println!("fingerprint  {}", serde_json::to_string(p.fingerprint()).expect("plain data"));
    println!("host         {}", serde_json::to_string(&host).expect("plain data"));
    let d = p.fingerprint().differences(&host);
    println!("differences  {}", if d.is_empty() { "none".to_string() } else { d.join("; ") });
    for (kind, comps) in p.list().map_err(|e| user(e.to_string()))? {
        println!("{kind} ({}):", comps.len());
        for c in comps {
            println!("  {}  [{}] {}", c.name, c.origin_crate, c.summary);
        }
    }
    Ok(())
}

/// Arguments of `nnunet plugin build`.
pub struct BuildArgs {
    pub path: PathBuf,
    pub release: bool,
    pub output: Option<PathBuf>,
    pub nnunet_src: Option<PathBuf>,
}

/// The source tree this binary was built from (`core/cli/../..`).
const DEFAULT_NNUNET_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// `cargo`: `$CARGO` if set (as under `cargo run`), else the one on PATH.
fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cargo"))
}

fn cargo_output(cargo: &Path, args: &[&str], what: &str) -> Result<Vec<u8>> {
    let out = std::process::Command::new(cargo).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            user(format!(
                "cargo not found (tried '{}'): `nnunet plugin build` compiles Rust; install it with rustup (https://rustup.rs) or set CARGO",
                cargo.display()
            ))
        } else {
            user(format!("cannot run {}: {e}", cargo.display()))
        }
    })?;
    if !out.status.success() {
        return Err(user(format!(
            "{what} failed ({} {}):\n{}",
            cargo.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    Ok(out.stdout)
}

/// The `[profile.*]` tables of the nnunet workspace manifest, verbatim: the generated crate builds the engine with the
/// same settings (the dev profile optimises dependencies; without it training would crawl).
fn profile_tables(workspace_manifest: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in workspace_manifest.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            inside = t.starts_with("[profile.");
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("string") // a JSON string literal is a valid TOML basic string
}

/// `nnunet plugin build PATH`: generate `<target>/nnunet-plugin-build/<crate>/` (Cargo.toml + main.rs), build it with
/// cargo, copy the binary to OUT.
pub fn build(a: &BuildArgs) -> Result<()> {
    let manifest = a.path.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(user(format!(
            "{}: no Cargo.toml: `nnunet plugin build` needs the folder of a Rust crate that registers components (see docs/PLUGINS.md)",
            a.path.display()
        )));
    }
    let manifest = std::fs::canonicalize(&manifest).with_context(|| manifest.display().to_string())?;
    let src = a.nnunet_src.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_NNUNET_SRC));
    let src = std::fs::canonicalize(&src)
        .ok()
        .filter(|s| s.join("core/cli/Cargo.toml").is_file())
        .ok_or_else(|| user(format!("{}: not an nnunet source tree (no core/cli/Cargo.toml); pass --nnunet-src DIR", src.display())))?;
    let cargo = cargo_program();

    // the plugin package: name, library crate name, target directory
    let meta = cargo_output(
        &cargo,
        &["metadata", "--no-deps", "--format-version", "1", "--manifest-path", &manifest.to_string_lossy()],
        "cargo metadata of the plugin",
    )?;
    let meta: Value = serde_json::from_slice(&meta).context("cargo metadata output")?;
    let pkg = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .ok_or_else(|| user(format!("{}: cargo metadata lists no package for this manifest (a virtual workspace?)", manifest.display())))?;
    let pkg_name = pkg["name"].as_str().unwrap_or_default().to_string();
    let lib_name = pkg["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| matches!(k.as_str(), Some("lib" | "rlib")))))
        .and_then(|t| t["name"].as_str())
        .map(|n| n.replace('-', "_"))
        .ok_or_else(|| {
            user(format!("{}: package '{pkg_name}' has no library target to link (crate-type rlib or lib)", manifest.display()))
        })?;
    let target_dir = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target"));

    // the generated binary crate
    let bin_name = format!("nnunet-with-{pkg_name}");
    let gen_dir = target_dir.join("nnunet-plugin-build").join(&pkg_name);
    std::fs::create_dir_all(&gen_dir).with_context(|| gen_dir.display().to_string())?;
    let ws_manifest = std::fs::read_to_string(src.join("Cargo.toml")).with_context(|| src.join("Cargo.toml").display().to_string())?;
    let plugin_dir = manifest.parent().expect("a manifest has a folder");
    let toml = format!(
        "# generated by `nnunet plugin build`; rewritten on every build\n[package]\nname = {}\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [[bin]]\nname = {}\npath = \"main.rs\"\n\n[dependencies]\n{} = {{ path = {} }}\nnnunet-cli = {{ path = {} }}\n\n\
         # a workspace of its own, with the nnunet workspace's profiles\n[workspace]\n\n{}",
        toml_string(&bin_name),
        toml_string(&bin_name),
        toml_string(&pkg_name),
        toml_string(&plugin_dir.to_string_lossy()),
        toml_string(&src.join("core/cli").to_string_lossy()),
        profile_tables(&ws_manifest)
    );
    let main = format!("use {lib_name} as _;\nfn main() -> std::process::ExitCode {{\n    nnunet_cli::main()\n}}\n");
    std::fs::write(gen_dir.join("Cargo.toml"), toml).with_context(|| gen_dir.display().to_string())?;
    std::fs::write(gen_dir.join("main.rs"), main).with_context(|| gen_dir.display().to_string())?;
    // start from the engine's lock file: the same dependency versions as this nnunet
    if src.join("Cargo.lock").is_file() {
        std::fs::copy(src.join("Cargo.lock"), gen_dir.join("Cargo.lock")).with_context(|| gen_dir.display().to_string())?;
    }
    let gen_manifest = gen_dir.join("Cargo.toml").to_string_lossy().into_owned();

    // one engine: the plugin and nnunet-cli must resolve to the same nnunet-core, or the plugin registers into a copy
    // of the registries that the command line never reads
    let meta =
        cargo_output(&cargo, &["metadata", "--format-version", "1", "--manifest-path", &gen_manifest], "resolving the generated crate")?;
    let meta: Value = serde_json::from_slice(&meta).context("cargo metadata output")?;
    let cores: Vec<String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "nnunet-core")
        .map(|p| p["manifest_path"].as_str().unwrap_or("?").to_string())
        .collect();
    if cores.len() > 1 {
        return Err(user(format!(
            "the plugin and nnunet-cli ({}) link different copies of nnunet-core ({}): the plugin's components would \
             register where the command line never looks. Depend on nnunet-core from {} (or pass --nnunet-src)",
            src.display(),
            cores.join(", "),
            src.join("core/core").display()
        )));
    }

    eprintln!("building {bin_name} ({}) in {}", if a.release { "release" } else { "dev profile" }, gen_dir.display());
    let mut args = vec!["build", "--manifest-path", &gen_manifest, "--target-dir"];
    let td = target_dir.to_string_lossy().into_owned();
    args.push(&td);
    if a.release {
        args.push("--release");
    }
    let status =
        std::process::Command::new(&cargo).args(&args).status().map_err(|e| user(format!("cannot run {}: {e}", cargo.display())))?;
    if !status.success() {
        return Err(user(format!("cargo build of {} failed ({status})", gen_dir.display())));
    }
    let built = target_dir.join(if a.release { "release" } else { "debug" }).join(format!("{bin_name}{}", std::env::consts::EXE_SUFFIX));
    let out = a.output.clone().unwrap_or_else(|| PathBuf::from(format!("nnunet-{pkg_name}{}", std::env::consts::EXE_SUFFIX)));
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
    }
    // copy to a temp name beside OUT, then rename: OUT is never half-written
    let tmp = out.with_file_name(format!(
        ".{}.tmp{}",
        out.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    std::fs::copy(&built, &tmp).with_context(|| format!("{} -> {}", built.display(), tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("{} -> {}", tmp.display(), out.display()))?;
    println!("built {} (nnunet with {pkg_name} linked; `{} list` shows its components)", out.display(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn leading_plugin_options_are_split_off() {
        assert_eq!(split_plugin_args(&v(&["nnunet", "list"])), Ok(None));
        let (p, rest) = split_plugin_args(&v(&["nnunet", "--plugin", "a.so", "--plugin=b.so", "train", "--plugin", "x"])).unwrap().unwrap();
        assert_eq!(p, vec![PathBuf::from("a.so"), PathBuf::from("b.so")]);
        assert_eq!(rest, v(&["nnunet", "train", "--plugin", "x"]), "only leading options are the host's");
        assert!(split_plugin_args(&v(&["nnunet", "--plugin"])).unwrap_err().contains("needs a value"));
        assert!(split_plugin_args(&v(&["nnunet", "--plugin="])).is_err());
    }

    #[test]
    fn profiles_are_copied_verbatim() {
        let ws = "[workspace]\nmembers = []\n\n[profile.dev]\nopt-level = 1\n\n[profile.dev.package.\"*\"]\nopt-level = 2\n[workspace.lints.rust]\nx = 1\n";
        assert_eq!(profile_tables(ws), "[profile.dev]\nopt-level = 1\n\n[profile.dev.package.\"*\"]\nopt-level = 2\n");
    }

    #[test]
    fn default_source_tree_is_this_one() {
        assert!(Path::new(DEFAULT_NNUNET_SRC).join("core/cli/Cargo.toml").is_file());
    }
}
