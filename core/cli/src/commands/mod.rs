//! Handlers of the nnU-Net commands, keyed by the native subcommand name. A command appears here (and so
//! as a native subcommand) only once its behaviour is implemented; until then its `nnUNetv2_*` alias
//! parses nnU-Net's flags and reports that the behaviour is not built yet.

pub mod install_aliases;
pub mod list;

use crate::spec::Parsed;

pub type Handler = fn(&Parsed) -> anyhow::Result<()>;

/// The handler of native command `name`, if implemented.
pub fn handler(name: &str) -> Option<Handler> {
    COMMANDS.iter().find(|(n, _, _)| *n == name).map(|(_, h, _)| *h)
}

/// One line of implementation status per implemented command, for docs/CLI.md.
pub fn status(name: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|(n, _, _)| *n == name).map(|(_, _, s)| *s)
}

/// (native name, handler, status line) of every implemented command.
const COMMANDS: &[(&str, Handler, &str)] = &[];
