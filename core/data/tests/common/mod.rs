//! Shared helpers of the nnunet-data integration tests.
//!
//! The raw datasets are shipped as `tests/fixtures/data/*.tar.xz` (workspace root) and extracted into
//! a temporary folder with the system `tar -xJf` (needs `tar` with xz support, present on the dev and
//! CI machines), which avoids a C xz dependency in the crate.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Extract `tests/fixtures/data/<name>.tar.xz` into a new temp dir; returns (guard, dataset folder).
pub fn extract(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tarball = fixtures().join("data").join(format!("{name}.tar.xz"));
    let st = std::process::Command::new("tar")
        .arg("-xJf")
        .arg(&tarball)
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("running tar (tar with xz support is required for these tests)");
    assert!(st.success(), "tar -xJf {} failed", tarball.display());
    let dir = tmp.path().join(name);
    assert!(dir.join("dataset.json").is_file(), "{} has no dataset.json", dir.display());
    (tmp, dir)
}
