//! nnU-Net's command-line interface as data.
//!
//! `nnunet_commands.json` holds the argparse definitions of nnunetv2 2.8.1's entry points (flags, types,
//! nargs, defaults, help texts), extracted from nnU-Net's source. From that one description we build two
//! clap commands per entry point:
//! - the **alias** view, used when the binary runs as `nnUNetv2_*`: nnU-Net's flags verbatim, including
//!   single-dash long flags (`-pl`, `-gpu_memory_target`), and nnU-Net's help texts;
//! - the **native** view, `nnunet <kebab-name>`: kebab-case long flags (`--planner`, `--gpu-memory-target`).
//!
//! Both views parse into the same [`Parsed`] values keyed by argparse's `dest`, so one handler serves both.

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde::Deserialize;
use std::sync::OnceLock;

#[derive(Debug, Deserialize)]
pub struct Spec {
    pub source: String,
    pub commands: Vec<CommandSpec>,
}

#[derive(Debug, Deserialize)]
pub struct CommandSpec {
    /// `nnUNetv2_plan_experiment`
    pub alias: String,
    /// `plan-experiment`
    pub native: String,
    /// nnU-Net's Python entry point (module:function), for docs.
    pub entry: String,
    pub description: Option<String>,
    /// argparse `parse_known_args`: unknown flags are ignored (with a warning here).
    pub parse_known_args: bool,
    pub args: Vec<ArgSpec>,
}

#[derive(Debug, Deserialize)]
pub struct ArgSpec {
    /// nnU-Net's option strings, e.g. `["-pl"]`, `["--continue_prediction", "--c"]`, or `["fold"]`.
    pub flags: Vec<String>,
    pub dest: String,
    #[serde(default)]
    pub positional: bool,
    /// kebab-case long flag of the native view.
    #[serde(default)]
    pub native: Option<String>,
    /// `str`, `int`, `float` or `bool` (store_true).
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub nargs: Option<serde_json::Value>,
    #[serde(default)]
    pub choices: Option<Vec<String>>,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Environment variable that overrides the default (nnU-Net's `nnUNet_npp`/`nnUNet_nps`).
    #[serde(default)]
    pub default_env: Option<String>,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub required: bool,
}

impl ArgSpec {
    /// nnU-Net flags that are long names written with a single dash (`-pl`, `-np`, `-gpu_memory_target`).
    pub fn single_dash_longs(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().filter(|f| !f.starts_with("--") && f.starts_with('-') && f.len() > 2).map(|f| &f[1..])
    }

    fn short(&self) -> Option<char> {
        self.flags.iter().find(|f| !f.starts_with("--") && f.len() == 2).and_then(|f| f.chars().nth(1))
    }

    /// Long names of the alias view: every multi-char flag without its dashes.
    fn alias_longs(&self) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|f| f.starts_with("--") || (f.starts_with('-') && f.len() > 2))
            .map(|f| f.trim_start_matches('-'))
            .collect()
    }

    fn is_list(&self) -> bool {
        matches!(&self.nargs, Some(serde_json::Value::String(s)) if s == "+" || s == "*")
    }
}

/// `nnunet_extensions.json`: flags this project adds to nnU-Net's commands, per native command name.
#[derive(Debug, Deserialize)]
struct Extensions {
    commands: std::collections::BTreeMap<String, Vec<ArgSpec>>,
}

static SPEC: OnceLock<Spec> = OnceLock::new();

/// The embedded command description.
pub fn spec() -> &'static Spec {
    SPEC.get_or_init(|| {
        let mut spec: Spec = serde_json::from_str(include_str!("nnunet_commands.json")).expect("embedded nnunet_commands.json is valid");
        let ext: Extensions =
            serde_json::from_str(include_str!("nnunet_extensions.json")).expect("embedded nnunet_extensions.json is valid");
        for (native, args) in ext.commands {
            let c = spec.commands.iter_mut().find(|c| c.native == native).expect("extensions name existing commands");
            c.args.extend(args);
        }
        spec
    })
}

pub fn by_alias(alias: &str) -> Option<&'static CommandSpec> {
    spec().commands.iter().find(|c| c.alias == alias)
}

pub fn by_native(native: &str) -> Option<&'static CommandSpec> {
    spec().commands.iter().find(|c| c.native == native)
}

fn default_strings(a: &ArgSpec) -> Vec<String> {
    match &a.default {
        None | Some(serde_json::Value::Null) => vec![],
        Some(serde_json::Value::Array(v)) => v.iter().map(json_scalar).collect(),
        Some(v) => vec![json_scalar(v)],
    }
}

fn json_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn build_arg(a: &ArgSpec, native: bool) -> Arg {
    let mut arg = Arg::new(a.dest.clone()).help(a.help.clone());
    if a.positional {
        arg = arg.required(true).value_name(a.dest.clone());
    } else {
        if let Some(c) = a.short() {
            arg = arg.short(c);
        }
        if native {
            if let Some(n) = &a.native {
                arg = arg.long(n.clone());
            }
        } else {
            let longs = a.alias_longs();
            if let Some((first, rest)) = longs.split_first() {
                arg = arg.long(first.to_string());
                for r in rest {
                    arg = arg.visible_alias(r.to_string());
                }
            }
        }
        arg = arg.required(a.required);
    }
    if a.ty == "bool" {
        return arg.action(ArgAction::SetTrue);
    }
    arg = match a.ty.as_str() {
        "int" => arg.value_parser(clap::value_parser!(i64)),
        "float" => arg.value_parser(clap::value_parser!(f64)),
        _ => arg,
    };
    if let Some(ch) = &a.choices {
        arg = arg.value_parser(clap::builder::PossibleValuesParser::new(ch.clone()));
    }
    if a.is_list() {
        let min = if matches!(&a.nargs, Some(serde_json::Value::String(s)) if s == "*") { 0 } else { 1 };
        arg = arg.num_args(min..).action(ArgAction::Append);
    } else if let Some(serde_json::Value::Number(n)) = &a.nargs {
        arg = arg.num_args(n.as_u64().unwrap_or(1) as usize).action(ArgAction::Set);
    } else {
        arg = arg.action(ArgAction::Set);
    }
    if !a.positional {
        let d = default_strings(a);
        if !d.is_empty() {
            arg = arg.default_values(d);
        }
        if !native {
            arg = arg.value_name(a.dest.to_uppercase());
        }
    }
    arg
}

/// The clap command of one entry point, in the alias (nnU-Net) or native (kebab-case) view.
pub fn build_command(c: &CommandSpec, native: bool) -> Command {
    let name = if native { c.native.clone() } else { c.alias.clone() };
    let about = c.description.clone().unwrap_or_else(|| format!("nnU-Net's {} ({})", c.alias, c.entry));
    let mut cmd = Command::new(name).about(about).infer_long_args(true);
    if !native {
        cmd = cmd
            .disable_version_flag(true)
            .after_help("Flags are nnU-Net 2.8.1's, verbatim (single-dash long flags such as -pl work as in nnU-Net).");
    }
    for a in &c.args {
        cmd = cmd.arg(build_arg(a, native));
    }
    cmd
}

/// Rewrite nnU-Net's single-dash long flags (`-pl X`, `-gpu_memory_target=8`, unambiguous prefixes such as
/// `-gpu_mem`) to clap's double-dash form. Everything after a bare `--` is left alone.
pub fn rewrite_single_dash(c: &CommandSpec, argv: &[String]) -> Vec<String> {
    let longs: Vec<&str> = c.args.iter().flat_map(|a| a.single_dash_longs()).collect();
    let mut out = Vec::with_capacity(argv.len());
    let mut rest = false;
    for tok in argv {
        if rest || tok == "--" {
            rest = true;
            out.push(tok.clone());
            continue;
        }
        if tok.starts_with('-') && !tok.starts_with("--") && tok.len() > 2 && tok[1..2].chars().all(|ch| ch.is_ascii_alphabetic()) {
            let (name, value) = match tok[1..].split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (&tok[1..], None),
            };
            let full = if longs.contains(&name) {
                Some(name)
            } else {
                let cands: Vec<&&str> = longs.iter().filter(|l| l.starts_with(name)).collect();
                if cands.len() == 1 { Some(*cands[0]) } else { None }
            };
            if let Some(full) = full {
                out.push(match value {
                    Some(v) => format!("--{full}={v}"),
                    None => format!("--{full}"),
                });
                continue;
            }
        }
        out.push(tok.clone());
    }
    out
}

/// Render the alias view's help with nnU-Net's spelling of single-dash long flags (`-pl`, not `--pl`).
pub fn alias_help(c: &CommandSpec) -> String {
    let mut cmd = build_command(c, false);
    let mut text = cmd.render_help().to_string();
    let mut longs: Vec<&str> = c.args.iter().flat_map(|a| a.single_dash_longs()).collect();
    // longest first so that `--np` does not clobber `--npfp`
    longs.sort_by_key(|l| std::cmp::Reverse(l.len()));
    for l in longs {
        text = replace_flag(&text, &format!("--{l}"), &format!("-{l}"));
    }
    text
}

/// Replace `from` by `to` where `from` is not followed by a word character.
fn replace_flag(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(pos) = text[i..].find(from) {
        let start = i + pos;
        let end = start + from.len();
        let next = text[end..].chars().next();
        let prev = text[..start].chars().next_back();
        let word_after = next.is_some_and(|ch| ch.is_alphanumeric() || ch == '_');
        let dash_before = prev == Some('-');
        out.push_str(&text[i..start]);
        if word_after || dash_before {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        i = end;
    }
    out.push_str(&text[i..]);
    out
}

/// Parsed values of one command, keyed by nnU-Net's argparse `dest`.
pub struct Parsed {
    pub command: &'static CommandSpec,
    pub matches: ArgMatches,
    /// Unknown flags dropped under `parse_known_args` semantics.
    pub ignored: Vec<String>,
}

impl Parsed {
    pub fn string(&self, dest: &str) -> Option<String> {
        self.matches.get_one::<String>(dest).cloned()
    }

    pub fn strings(&self, dest: &str) -> Vec<String> {
        self.matches.get_many::<String>(dest).map(|v| v.cloned().collect()).unwrap_or_default()
    }

    pub fn int(&self, dest: &str) -> Option<i64> {
        self.matches.get_one::<i64>(dest).copied()
    }

    pub fn ints(&self, dest: &str) -> Vec<i64> {
        self.matches.get_many::<i64>(dest).map(|v| v.copied().collect()).unwrap_or_default()
    }

    pub fn float(&self, dest: &str) -> Option<f64> {
        self.matches.get_one::<f64>(dest).copied()
    }

    pub fn flag(&self, dest: &str) -> bool {
        self.matches.get_flag(dest)
    }

    /// True when the user gave `dest` explicitly (not a default).
    pub fn given(&self, dest: &str) -> bool {
        matches!(self.matches.value_source(dest), Some(clap::parser::ValueSource::CommandLine))
    }
}

/// Parse `args` (without the program name) for command `c`. Help and usage errors are returned as clap
/// errors; under `parse_known_args` unknown flags are dropped and reported in `Parsed::ignored`.
pub fn parse(c: &'static CommandSpec, native: bool, prog: &str, args: &[String]) -> Result<Parsed, clap::Error> {
    let mut argv: Vec<String> = if native { args.to_vec() } else { rewrite_single_dash(c, args) };
    let mut ignored = Vec::new();
    loop {
        let cmd = build_command(c, native).bin_name(prog.to_string());
        let full = std::iter::once(prog.to_string()).chain(argv.iter().cloned());
        match cmd.try_get_matches_from(full) {
            Ok(matches) => return Ok(Parsed { command: c, matches, ignored }),
            Err(e) if c.parse_known_args && e.kind() == clap::error::ErrorKind::UnknownArgument => {
                let bad = e.get(clap::error::ContextKind::InvalidArg).map(|v| v.to_string()).unwrap_or_default();
                let bad = bad.split([' ', '=']).next().unwrap_or("").to_string();
                let Some(pos) = argv.iter().position(|t| t == &bad || t.starts_with(&format!("{bad}="))) else { return Err(e) };
                // drop the unknown flag and the values that follow it (argparse keeps them as extras too)
                let mut end = pos + 1;
                while end < argv.len() && !argv[end].starts_with('-') {
                    end += 1;
                }
                ignored.extend(argv.drain(pos..end));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `docs/CLI.md`: every nnU-Net command and flag next to its native spelling, generated from the spec so the
/// document cannot drift (a test compares it with the file).
pub fn cli_markdown(implemented: impl Fn(&str) -> Option<&'static str>) -> String {
    let mut s = String::new();
    s.push_str("# Command line: nnU-Net ↔ nnunet\n\n");
    s.push_str("Generated from `core/cli/src/nnunet_commands.json` (nnU-Net 2.8.1's argparse definitions, ADR 0004) and\n");
    s.push_str("`core/cli/src/nnunet_extensions.json` (this project's added flags, marked [nnunet extension]) by\n");
    s.push_str("`NNUNET_BLESS=1 cargo test -p nnunet-cli cli_md`; a test fails when this file is stale.\n\n");
    s.push_str("Every command below answers to its nnU-Net name when the binary is invoked through a link of that name\n");
    s.push_str("(`nnunet install-aliases DIR` creates them), with nnU-Net's flags verbatim. The native spelling is\n");
    s.push_str("`nnunet <command> --<flag>`; a native subcommand exists once the command is implemented.\n\n");
    s.push_str(
        "Native-only commands (`nnunet <command> --help` for their flags): `nnunet list [planners|architectures|trainers|losses]`,\n",
    );
    s.push_str("`nnunet install-aliases DIR [--force]`, `nnunet summary` (network, shapes, parameters of a configuration),\n");
    s.push_str("`nnunet calibrate-vram` (measured peak memory of training steps next to the memory proxy), `nnunet benchmark`\n");
    s.push_str("(several architectures under the same plans → benchmark.md/json), `nnunet export-preprocessed`,\n");
    s.push_str("`nnunet plugin build PATH` (a binary with an out-of-tree plugin crate linked), `nnunet plugin info LIB`,\n");
    s.push_str("`nnunet --plugin LIB <command>` (run a command inside a dynamic plugin; see docs/PLUGINS.md),\n");
    s.push_str("`nnunet --version` (version and compiled backends).\n\n");
    s.push_str("| nnU-Net command | native | status |\n|---|---|---|\n");
    for c in &spec().commands {
        let st = implemented(&c.native).unwrap_or("flags parsed; behaviour not implemented yet (exit code 1)");
        s.push_str(&format!("| `{}` | `nnunet {}` | {} |\n", c.alias, c.native, st));
    }
    for c in &spec().commands {
        s.push_str(&format!("\n## `{}` → `nnunet {}`\n\n", c.alias, c.native));
        s.push_str(&format!("nnU-Net entry point: `{}`.", c.entry));
        if c.parse_known_args {
            s.push_str(" Unknown flags are ignored with a warning (nnU-Net uses `parse_known_args`).");
        }
        s.push_str("\n\n| nnU-Net | native | type | default | help |\n|---|---|---|---|---|\n");
        for a in &c.args {
            let nn = a.flags.join(", ");
            let native = if a.positional {
                format!("`{}` (positional)", a.dest)
            } else {
                let mut v = vec![];
                if let Some(ch) = a.short() {
                    v.push(format!("`-{ch}`"));
                }
                if let Some(n) = &a.native {
                    v.push(format!("`--{n}`"));
                }
                v.join(", ")
            };
            let ty = match (&a.ty[..], a.is_list()) {
                ("bool", _) => "flag".to_string(),
                (t, true) => format!("{t} list"),
                (t, false) => t.to_string(),
            };
            let default = match &a.default {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(v) => format!("`{}`", v),
            };
            let default = match &a.default_env {
                Some(e) => format!("{default} (env `{e}`)"),
                None => default,
            };
            let help = a.help.replace('|', "\\|").replace('\n', " ");
            s.push_str(&format!("| `{nn}` | {native} | {ty} | {default} | {help} |\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn every_command_builds_in_both_views() {
        for c in &spec().commands {
            build_command(c, false).debug_assert();
            build_command(c, true).debug_assert();
        }
    }

    #[test]
    fn single_dash_longs_parse() {
        let c = by_alias("nnUNetv2_plan_experiment").unwrap();
        let p = parse(
            c,
            false,
            "nnUNetv2_plan_experiment",
            &s(&["-d", "4", "-pl", "nnUNetPlannerResEncM", "-gpu_memory_target", "80", "-overwrite_plans_name", "X"]),
        )
        .unwrap();
        assert_eq!(p.ints("d"), vec![4]);
        assert_eq!(p.string("pl").as_deref(), Some("nnUNetPlannerResEncM"));
        assert_eq!(p.float("gpu_memory_target"), Some(80.0));
        assert_eq!(p.string("overwrite_plans_name").as_deref(), Some("X"));
    }

    #[test]
    fn native_view_parses_same_dests() {
        let c = by_native("plan-experiment").unwrap();
        let p = parse(
            c,
            true,
            "nnunet plan-experiment",
            &s(&["--dataset", "4", "--planner", "nnUNetPlannerResEncL", "--gpu-memory-target", "24"]),
        )
        .unwrap();
        assert_eq!(p.ints("d"), vec![4]);
        assert_eq!(p.string("pl").as_deref(), Some("nnUNetPlannerResEncL"));
        assert_eq!(p.float("gpu_memory_target"), Some(24.0));
        assert!(!p.given("preprocessor_name"));
        assert_eq!(p.string("preprocessor_name").as_deref(), Some("DefaultPreprocessor"));
    }

    #[test]
    fn train_flags() {
        let c = by_alias("nnUNetv2_train").unwrap();
        let p = parse(c, false, "nnUNetv2_train", &s(&["4", "3d_fullres", "0", "-num_gpus", "2", "--c", "-device", "cpu"])).unwrap();
        assert_eq!(p.string("dataset_name_or_id").as_deref(), Some("4"));
        assert_eq!(p.int("num_gpus"), Some(2));
        assert!(p.flag("c"));
        assert_eq!(p.string("device").as_deref(), Some("cpu"));
    }

    #[test]
    fn lists_and_prefixes() {
        let c = by_alias("nnUNetv2_plan_and_preprocess").unwrap();
        let p = parse(
            c,
            false,
            "x",
            &s(&["-d", "4", "5", "-np", "2", "4", "-overwrite_target_spacing", "1", "1", "1", "--verify", "-gpu_mem", "11"]),
        )
        .unwrap();
        assert_eq!(p.ints("d"), vec![4, 5]);
        assert_eq!(p.ints("np"), vec![2, 4]);
        assert_eq!(p.strings("overwrite_target_spacing"), s(&["1", "1", "1"]));
        assert!(p.flag("verify_dataset_integrity"));
        assert_eq!(p.float("gpu_memory_target"), Some(11.0));
        assert_eq!(p.strings("c"), s(&["2d", "3d_fullres", "3d_lowres"]));
    }

    #[test]
    fn parse_known_args_ignores_unknown_flags() {
        let c = by_alias("nnUNetv2_plan_experiment").unwrap();
        let p = parse(c, false, "x", &s(&["-d", "4", "--bogus", "1", "-pl", "ResEncUNetPlanner"])).unwrap();
        assert_eq!(p.ignored, s(&["--bogus", "1"]));
        assert_eq!(p.string("pl").as_deref(), Some("ResEncUNetPlanner"));
        // strict commands reject it
        let c = by_alias("nnUNetv2_plan_and_preprocess").unwrap();
        assert!(parse(c, false, "x", &s(&["-d", "4", "--bogus"])).is_err());
    }

    #[test]
    fn alias_help_uses_nnunet_spelling() {
        let h = alias_help(by_alias("nnUNetv2_plan_experiment").unwrap());
        for f in ["-pl <PL>", "-gpu_memory_target <GPU_MEMORY_TARGET>", "-overwrite_plans_name <OVERWRITE_PLANS_NAME>"] {
            assert!(h.contains(f), "{f} missing in\n{h}");
        }
        assert!(!h.contains("--pl"), "{h}");
        let h = alias_help(by_alias("nnUNetv2_train").unwrap());
        assert!(h.contains("-num_gpus <NUM_GPUS>") && h.contains("--c") && h.contains("--val_best"), "{h}");
        let h = alias_help(by_alias("nnUNetv2_plan_and_preprocess").unwrap());
        assert!(h.contains("-npfp <NPFP>") && h.contains("-np <NP>"), "{h}");
    }
}
