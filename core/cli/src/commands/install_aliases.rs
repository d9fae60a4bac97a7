//! `nnunet install-aliases DIR`: links named like nnU-Net's entry points, pointing at this binary.

use crate::{spec, user};
use anyhow::Context;
use std::path::Path;

pub fn run(dir: &str, force: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot determine the path of this executable")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).map_err(|e| user(format!("{}: cannot create folder: {e}", dir.display())))?;
    let mut clashes = Vec::new();
    for c in &spec::spec().commands {
        let link = dir.join(&c.alias);
        if link.symlink_metadata().is_ok() && !force {
            let same = std::fs::read_link(&link).map(|t| t == exe).unwrap_or(false);
            if !same {
                clashes.push(link.display().to_string());
            }
        }
    }
    if !clashes.is_empty() {
        return Err(user(format!(
            "these files exist and are not links to {} (use --force to replace them): {}",
            exe.display(),
            clashes.join(", ")
        )));
    }
    for c in &spec::spec().commands {
        let link = dir.join(&c.alias);
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).map_err(|e| user(format!("{}: cannot replace: {e}", link.display())))?;
        }
        make_link(&exe, &link).map_err(|e| user(format!("{}: cannot create link: {e}", link.display())))?;
    }
    println!("linked {} nnU-Net commands in {} to {}", spec::spec().commands.len(), dir.display(), exe.display());
    Ok(())
}

#[cfg(unix)]
fn make_link(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn make_link(target: &Path, link: &Path) -> std::io::Result<()> {
    std::fs::copy(target, link).map(|_| ())
}
