//! nnU-Net's environment variables and dataset-name resolution (planning spec §1.1).

use crate::user;
use std::path::{Path, PathBuf};

pub const RAW: &str = "nnUNet_raw";
pub const PREPROCESSED: &str = "nnUNet_preprocessed";
pub const RESULTS: &str = "nnUNet_results";

/// The folder named by `var`; an error naming the variable when it is unset or empty.
pub fn env_dir(var: &str) -> anyhow::Result<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(user(format!(
            "environment variable {var} is not set. nnU-Net needs nnUNet_raw, nnUNet_preprocessed and nnUNet_results \
             to point at folders (e.g. `export {var}=/data/{var}`)"
        ))),
    }
}

fn optional_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `DatasetXXX` prefix of an id (at least 3 digits).
pub fn dataset_prefix(id: u32) -> String {
    format!("Dataset{id:03}")
}

/// Resolve a dataset id or name to `DatasetXXX_Name` by scanning nnUNet_preprocessed, nnUNet_raw and
/// nnUNet_results (those that are set and exist), as nnU-Net's `maybe_convert_to_dataset_name`.
pub fn resolve_dataset_name(id_or_name: &str) -> anyhow::Result<String> {
    if id_or_name.starts_with("Dataset") {
        return Ok(id_or_name.to_string());
    }
    let id: u32 = id_or_name
        .trim()
        .parse()
        .map_err(|_| user(format!("'{id_or_name}' is neither a dataset id (an integer) nor a dataset name (DatasetXXX_Name)")))?;
    let dirs: Vec<PathBuf> = [PREPROCESSED, RAW, RESULTS].iter().filter_map(|v| optional_dir(v)).collect();
    find_dataset_name(id, &dirs)
}

/// Pure part of [`resolve_dataset_name`]: look for `DatasetXXX_*` folders in `dirs`.
pub fn find_dataset_name(id: u32, dirs: &[PathBuf]) -> anyhow::Result<String> {
    let prefix = dataset_prefix(id);
    let mut names: Vec<String> = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{prefix}_")) && e.path().is_dir() && !names.contains(&n) {
                names.push(n);
            }
        }
    }
    match names.len() {
        1 => Ok(names.remove(0)),
        0 => Err(user(format!(
            "could not find a dataset with the ID {id} ({prefix}_*) in {}. Make sure the environment variables are set \
             and the dataset folder exists",
            if dirs.is_empty() {
                "any folder: none of nnUNet_raw, nnUNet_preprocessed, nnUNet_results is set".to_string()
            } else {
                dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            }
        ))),
        _ => {
            names.sort();
            Err(user(format!("more than one dataset name found for dataset id {id}: {}. Remove all but one", names.join(", "))))
        }
    }
}

/// `base/name`, checked to exist.
pub fn existing(base: &Path, name: &str, what: &str) -> anyhow::Result<PathBuf> {
    let p = base.join(name);
    if p.exists() { Ok(p) } else { Err(user(format!("{}: {what} not found", p.display()))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_zero_padded_to_three() {
        assert_eq!(dataset_prefix(4), "Dataset004");
        assert_eq!(dataset_prefix(1000), "Dataset1000");
    }

    #[test]
    fn resolution() {
        let t = std::env::temp_dir().join(format!("nnunet-paths-{}", std::process::id()));
        let (a, b) = (t.join("raw"), t.join("pre"));
        std::fs::create_dir_all(a.join("Dataset004_Hippocampus")).unwrap();
        std::fs::create_dir_all(b.join("Dataset004_Hippocampus")).unwrap();
        std::fs::create_dir_all(b.join("Dataset040_Other")).unwrap();
        assert_eq!(find_dataset_name(4, &[a.clone(), b.clone()]).unwrap(), "Dataset004_Hippocampus");
        assert!(find_dataset_name(5, &[a.clone(), b.clone()]).unwrap_err().to_string().contains("Dataset005"));
        std::fs::create_dir_all(a.join("Dataset004_Dup")).unwrap();
        assert!(find_dataset_name(4, &[a, b]).unwrap_err().to_string().contains("more than one"));
        std::fs::remove_dir_all(t).unwrap();
    }
}
