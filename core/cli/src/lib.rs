//! The `nnunet` command line. This crate is the only one that reads argv and environment variables or
//! writes to the terminal (architecture invariant 5).
//!
//! One binary, two faces:
//! - `nnunet <subcommand>` with kebab-case flags (`nnunet plan-experiment --dataset 4 --planner …`);
//! - multicall: invoked through a link named like one of nnU-Net's entry points (`nnUNetv2_plan_experiment`,
//!   `nnUNetv2_train`, …) it accepts nnU-Net's flags verbatim. `nnunet install-aliases DIR` creates the links.
//!
//! A plugin binary is three lines: `use my_plugin as _; fn main() -> std::process::ExitCode { nnunet_cli::main() }`.

mod backend;
mod commands;
mod paths;
pub mod spec;

use anyhow::Result;
use clap::{Arg, ArgAction, Command};
use std::process::ExitCode;

// Link every built-in component into the registries.
use nnunet_builtin as _;

/// Counts live and peak heap bytes: the CPU backend's "allocated memory" in debug.json and `calibrate-vram`.
#[global_allocator]
static ALLOCATOR: nnunet_core::memory::CountingAlloc = nnunet_core::memory::CountingAlloc;

/// An error caused by the user's input (bad flag value, bad file, missing env var): exit code 2.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Shorthand: `Err(user("…"))?`.
pub fn user(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(msg.into()))
}

/// A command whose behaviour has not been built yet in this version (exit code 1).
#[derive(Debug)]
pub struct NotImplemented(pub String);

impl std::fmt::Display for NotImplemented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not implemented in nnunet {} yet (its flags are parsed; see docs/CLI.md for the status)",
            self.0,
            env!("CARGO_PKG_VERSION")
        )
    }
}

impl std::error::Error for NotImplemented {}

/// Entry point of the `nnunet` binary and of plugin binaries.
pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    run(argv)
}

/// Run with an explicit argv (argv[0] decides between the native and the nnU-Net alias face).
pub fn run(argv: Vec<String>) -> ExitCode {
    if let Err(e) = nnunet_core::registry::validate_all() {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    // `--plugin LIB` (dynamic plugins) is handled before clap: the command may run inside the plugin
    if let Some(code) = commands::plugin::intercept(&argv) {
        return code;
    }
    let prog = argv.first().map(|a| program_name(a)).unwrap_or_else(|| "nnunet".to_string());
    let rest: Vec<String> = argv.iter().skip(1).cloned().collect();
    let result = if prog.starts_with("nnUNetv2_") { run_alias(&prog, &rest) } else { run_native(&rest) };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<clap::Error>() {
                let _ = c.print();
                return ExitCode::from(c.exit_code() as u8);
            }
            eprintln!("error: {e:#}");
            if e.downcast_ref::<NotImplemented>().is_some() { ExitCode::from(1) } else { ExitCode::from(2) }
        }
    }
}

/// The basename of argv[0] without a Windows `.exe`.
fn program_name(arg0: &str) -> String {
    let base = std::path::Path::new(arg0).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| arg0.to_string());
    base.strip_suffix(".exe").map(str::to_owned).unwrap_or(base)
}

fn run_alias(prog: &str, args: &[String]) -> Result<()> {
    let Some(c) = spec::by_alias(prog) else {
        let names: Vec<&str> = spec::spec().commands.iter().map(|c| c.alias.as_str()).collect();
        let s = nnunet_core::registry::suggest(prog, &names);
        return Err(user(format!(
            "'{prog}' is not one of nnU-Net's commands known to this binary.{}",
            if s.is_empty() { String::new() } else { format!(" Did you mean: {}?", s.join(", ")) }
        )));
    };
    if args.iter().any(|a| a == "-h" || a == "--help") && !args.iter().any(|a| a == "--") {
        print!("{}", spec::alias_help(c));
        return Ok(());
    }
    let parsed = spec::parse(c, false, prog, args)?;
    dispatch(&parsed)
}

fn version_text() -> String {
    format!("{}\nbackends: {}", env!("CARGO_PKG_VERSION"), nnunet_core::compiled_backends().join(", "))
}

/// The native command tree: built-in subcommands plus every implemented nnU-Net command.
pub fn native_command() -> Command {
    let mut cmd = Command::new("nnunet")
        .about("nnU-Net v2 in Rust: plan, preprocess, train, predict and evaluate 3D medical image segmentation")
        .version(env!("CARGO_PKG_VERSION"))
        .long_version(version_text())
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(Arg::new("plugin").long("plugin").value_name("LIB").action(ArgAction::Append).help(
            "Load a dynamic plugin library first (repeatable; before the subcommand): `list` shows its components, other \
             commands run inside it (docs/PLUGINS.md)",
        ))
        .subcommand(
            Command::new("list").about("List every registered component (planners, architectures, trainers, losses)").arg(
                Arg::new("kind").value_parser(["planners", "architectures", "trainers", "losses"]).help("Only this kind of component"),
            ),
        )
        .subcommand(commands::plugin::command())
        .subcommand(
            Command::new("install-aliases")
                .about("Create links named like nnU-Net's entry points (nnUNetv2_train, …) to this binary in DIR")
                .arg(Arg::new("dir").required(true).value_name("DIR"))
                .arg(Arg::new("force").long("force").action(ArgAction::SetTrue).help("Replace existing files of those names")),
        )
        .subcommand(
            Command::new("export-preprocessed")
                .about("Write preprocessed cases as nnU-Net-style <case>_data.npy / _seg.npy / _properties.json")
                .arg(Arg::new("dataset").short('d').long("dataset").required(true).help("Dataset id or name"))
                .arg(Arg::new("configuration").short('c').long("configuration").required(true).help("Configuration"))
                .arg(Arg::new("plans").short('p').long("plans").default_value("nnUNetPlans").help("Plans identifier"))
                .arg(Arg::new("output").short('o').long("output").required(true).value_name("DIR").help("Output folder"))
                .arg(Arg::new("processes").long("np").default_value("4").value_parser(clap::value_parser!(usize)).help("Worker threads")),
        )
        .subcommand(configuration_args(
            Command::new("summary")
                .about("Print the network a plans configuration builds: stages, output shapes for its patch size, parameters"),
        ))
        .subcommand(
            Command::new("benchmark")
                .about(
                    "Train several architectures under the same plans, validate, and write benchmark.md / benchmark.json \
                     (Dice per dataset, measured peak memory, training time, parameters)",
                )
                .arg(Arg::new("dataset").short('d').long("dataset").required(true).num_args(1..).help("Dataset ids or names"))
                .arg(Arg::new("configuration").short('c').long("configuration").required(true).help("Configuration of the plans"))
                .arg(
                    Arg::new("arch")
                        .long("arch")
                        .required(true)
                        .action(ArgAction::Append)
                        .value_name("NAME[=JSON]")
                        .help("Architecture to train (repeat), optionally with kwargs overrides: --arch 'MedNeXt={\"size\":\"S\"}'"),
                )
                .arg(Arg::new("folds").short('f').long("folds").num_args(1..).help("Folds (default: 0)"))
                .arg(Arg::new("trainer").long("tr").visible_alias("trainer").default_value("nnUNetTrainer_5epochs").help("Trainer preset"))
                .arg(Arg::new("plans").short('p').long("plans").default_value("nnUNetPlans").help("Plans identifier"))
                .arg(Arg::new("device").long("device").default_value("cpu").help("cpu or cuda"))
                .arg(
                    Arg::new("output")
                        .short('o')
                        .long("output")
                        .value_name("DIR")
                        .help("Where benchmark.md/json go (default: $nnUNet_results/benchmark__TRAINER__PLANS__CONFIG)"),
                ),
        )
        .subcommand(
            configuration_args(Command::new("calibrate-vram").about(
                "Measure the peak memory (allocated and reserved) of a few real training steps of a configuration's network \
                 and report it next to the architecture's memory proxy",
            ))
            .arg(Arg::new("steps").long("steps").default_value("3").value_parser(clap::value_parser!(usize)).help("Training steps"))
            .arg(
                Arg::new("batch-size")
                    .long("batch-size")
                    .value_parser(clap::value_parser!(usize))
                    .help("Batch size (default: the configuration's)"),
            )
            .arg(Arg::new("device").long("device").default_value("cpu").help("cpu or cuda"))
            .arg(Arg::new("precision").long("precision").help(
                "auto (fp16 autocast + loss scaling on cuda, fp32 on cpu), fp32, fp16 or bf16; half precision needs LibTorch",
            ))
            .arg(Arg::new("output").short('o').long("output").value_name("FILE").help("Also write the measurement as JSON")),
        );
    for c in &spec::spec().commands {
        if commands::handler(&c.native).is_some() {
            let status = commands::status(&c.native).unwrap_or_default();
            cmd = cmd.subcommand(spec::build_command(c, true).about(format!("= {} ({status})", c.alias)));
        }
    }
    cmd
}

fn run_native(args: &[String]) -> Result<()> {
    let argv = std::iter::once("nnunet".to_string()).chain(args.iter().cloned());
    let m = native_command().try_get_matches_from(argv)?;
    let (name, sub) = m.subcommand().expect("subcommand_required");
    match name {
        "list" => commands::list::run(sub.get_one::<String>("kind").map(String::as_str)),
        "install-aliases" => commands::install_aliases::run(sub.get_one::<String>("dir").expect("required"), sub.get_flag("force")),
        "export-preprocessed" => commands::export::run(
            sub.get_one::<String>("dataset").expect("required"),
            sub.get_one::<String>("configuration").expect("required"),
            sub.get_one::<String>("plans").expect("default"),
            std::path::Path::new(sub.get_one::<String>("output").expect("required")),
            *sub.get_one::<usize>("processes").expect("default"),
        ),
        "summary" => commands::summary::run(&summary_args(sub)),
        "plugin" => commands::plugin::run(sub),
        "benchmark" => commands::benchmark::run(&commands::benchmark::Args {
            datasets: sub.get_many::<String>("dataset").expect("required").cloned().collect(),
            configuration: sub.get_one::<String>("configuration").cloned().expect("required"),
            archs: sub.get_many::<String>("arch").expect("required").cloned().collect(),
            folds: sub.get_many::<String>("folds").map(|v| v.cloned().collect()).unwrap_or_default(),
            trainer: sub.get_one::<String>("trainer").cloned().expect("default"),
            plans: sub.get_one::<String>("plans").cloned().expect("default"),
            device: sub.get_one::<String>("device").cloned().expect("default"),
            output: sub.get_one::<String>("output").map(std::path::PathBuf::from),
        }),
        "calibrate-vram" => commands::summary::calibrate(
            &summary_args(sub),
            *sub.get_one::<usize>("steps").expect("default"),
            sub.get_one::<usize>("batch-size").copied(),
            sub.get_one::<String>("device").expect("default"),
            sub.get_one::<String>("precision").map(String::as_str),
            sub.get_one::<String>("output").map(std::path::Path::new),
        ),
        other => {
            let c = spec::by_native(other).expect("native subcommands come from the spec");
            // re-parse the subcommand's own args so that `Parsed` carries the spec
            let sub_args: Vec<String> = args.iter().skip_while(|a| a.as_str() != other).skip(1).cloned().collect();
            let parsed = spec::parse(c, true, &format!("nnunet {other}"), &sub_args)?;
            dispatch(&parsed)
        }
    }
}

fn summary_args(sub: &clap::ArgMatches) -> commands::summary::Args {
    commands::summary::Args {
        dataset: sub.get_one::<String>("dataset").cloned().expect("required"),
        plans: sub.get_one::<String>("plans").cloned().expect("default"),
        configuration: sub.get_one::<String>("configuration").cloned().expect("required"),
        plans_file: sub.get_one::<String>("plans-file").map(std::path::PathBuf::from),
        arch: sub.get_one::<String>("arch").cloned(),
        arch_config: sub.get_one::<String>("arch-config").cloned(),
    }
}

/// The flags `summary` and `calibrate-vram` share: which configuration (and architecture) to build.
fn configuration_args(cmd: Command) -> Command {
    cmd.arg(Arg::new("dataset").short('d').long("dataset").required(true).help("Dataset id or name"))
        .arg(Arg::new("plans").short('p').long("plans").default_value("nnUNetPlans").help("Plans identifier"))
        .arg(Arg::new("configuration").short('c').long("configuration").required(true).help("Configuration (inheritance is resolved)"))
        .arg(
            Arg::new("plans-file")
                .long("plans-file")
                .value_name("PATH")
                .help("Read this plans file (and the dataset.json beside it) instead of nnUNet_preprocessed"),
        )
        .arg(Arg::new("arch").long("arch").value_name("NAME").help("Build this registered architecture with the configuration's topology"))
        .arg(Arg::new("arch-config").long("arch-config").value_name("JSON").help("JSON object overriding the architecture's kwargs"))
}

fn dispatch(p: &spec::Parsed) -> Result<()> {
    for ig in &p.ignored {
        eprintln!("warning: ignoring unknown argument '{ig}' (nnU-Net's parse_known_args behaviour)");
    }
    match commands::handler(&p.command.native) {
        Some(h) => h(p),
        None => Err(anyhow::Error::new(NotImplemented(p.command.alias.clone()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_name_strips_path_and_exe() {
        assert_eq!(program_name("/usr/bin/nnUNetv2_train"), "nnUNetv2_train");
        assert_eq!(program_name("nnUNetv2_train.exe"), "nnUNetv2_train");
    }

    #[test]
    fn native_command_is_valid() {
        native_command().debug_assert();
    }
}

#[cfg(test)]
mod cli_md {
    /// docs/CLI.md is generated; regenerate with `NNUNET_BLESS=1 cargo test -p nnunet-cli cli_md`.
    #[test]
    fn cli_md_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CLI.md");
        let want = crate::spec::cli_markdown(crate::commands::status);
        if std::env::var_os("NNUNET_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "docs/CLI.md is stale: run `NNUNET_BLESS=1 cargo test -p nnunet-cli cli_md`");
    }
}
