//! `nnUNetv2_convert_MSD_dataset -i TASK_FOLDER [-overwrite_id ID] [-np N]` and
//! `nnUNetv2_convert_old_nnUNet_dataset INPUT_FOLDER OUTPUT_DATASET_NAME` (nnU-Net's
//! `nnunetv2/dataset_conversion/`); the conversion itself is `nnunet_data::convert`.

use crate::paths::{self, PREPROCESSED, RAW, RESULTS};
use crate::spec::Parsed;
use crate::user;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// `TaskXX_Name` → `(XX, Name)` as nnU-Net's `task, name = basename.split('_'); int(task[4:])`: exactly one `_`.
fn task_id_and_name(folder: &Path) -> Result<(u32, String)> {
    let base = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parts: Vec<&str> = base.split('_').collect();
    let [task, name] = parts[..] else {
        return Err(user(format!(
            "{}: the MSD task folder must be named TaskXX_Name with exactly one '_' (nnU-Net's rule), not '{base}'",
            folder.display()
        )));
    };
    let id = task.get(4..).and_then(|d| d.parse::<u32>().ok()).ok_or_else(|| {
        user(format!("{}: '{task}' does not end in a task number after its first four characters (TaskXX)", folder.display()))
    })?;
    Ok((id, name.to_string()))
}

pub fn convert_msd_dataset(p: &Parsed) -> Result<()> {
    let input = p.string("i").ok_or_else(|| user("-i is required"))?;
    // nnU-Net removes one trailing separator
    let source = PathBuf::from(input.strip_suffix('/').or_else(|| input.strip_suffix('\\')).unwrap_or(&input));
    let problems = nnunet_data::convert::msd_source_problems(&source);
    if !problems.is_empty() {
        return Err(user(problems.join("\n")));
    }
    let (task_id, name) = task_id_and_name(&source)?;
    let np = p.int("np").unwrap_or(8);
    if np < 1 {
        return Err(user(format!("-np {np}: the number of processes must be at least 1")));
    }
    let target_id = match p.int("overwrite_id") {
        Some(id) => u32::try_from(id).map_err(|_| user(format!("-overwrite_id {id} is not a dataset id")))?,
        None => task_id,
    };
    let dirs: Vec<PathBuf> = [RAW, PREPROCESSED, RESULTS].iter().filter_map(|v| paths::env_dir(v).ok()).collect();
    if let Ok(existing) = paths::find_dataset_name(target_id, &dirs) {
        return Err(user(format!(
            "Target dataset id {target_id} is already taken, please consider changing it using -overwrite_id. \
             Conflicting dataset: {existing} (check nnUNet_results, nnUNet_preprocessed and nnUNet_raw!)"
        )));
    }
    let target = paths::env_dir(RAW)?.join(format!("{}_{name}", paths::dataset_prefix(target_id)));
    nnunet_data::convert::convert_msd(&source, &target, np as usize).map_err(|e| user(e.to_string()))?;
    println!("Converted {} to {}", source.display(), target.display());
    Ok(())
}

pub fn convert_old_nnunet_dataset(p: &Parsed) -> Result<()> {
    let source = PathBuf::from(p.string("input_folder").ok_or_else(|| user("input_folder is required"))?);
    let name = p.string("output_dataset_name").ok_or_else(|| user("output_dataset_name is required"))?;
    if name.contains('/') || name.contains('\\') || name.is_empty() {
        return Err(user(format!("'{name}': output_dataset_name is a dataset NAME (DatasetXXX_NAME), not a path")));
    }
    let target = paths::env_dir(RAW)?.join(&name);
    nnunet_data::convert::convert_old(&source, &target).map_err(|e| user(e.to_string()))?;
    println!("Converted {} to {}", source.display(), target.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_folder_names_follow_nnunets_split() {
        assert_eq!(task_id_and_name(Path::new("/x/Task09_Spleen")).unwrap(), (9, "Spleen".to_string()));
        assert_eq!(task_id_and_name(Path::new("Task005_Prostate")).unwrap(), (5, "Prostate".to_string()));
        assert!(task_id_and_name(Path::new("Task12_Two_Parts")).is_err());
        assert!(task_id_and_name(Path::new("Task05")).is_err());
        assert!(task_id_and_name(Path::new("Task_Spleen")).is_err());
    }
}
