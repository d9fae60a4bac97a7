//! Sharing trained models as zip files: nnU-Net's `nnUNetv2_export_model_to_zip` and
//! `nnUNetv2_install_pretrained_model_from_zip` (`nnunetv2/model_sharing/`). Entry names are relative to
//! `nnUNet_results` (`DatasetXXX_Name/<trainer>__<plans>__<configuration>/…`), so installing a zip puts the model
//! where `nnUNetv2_predict -d XXX` looks for it. `-chk checkpoint_final.pth` exports the file of that name (the
//! checkpoint Python nnU-Net and training here write, ADR 0007: the zip installs into either), else a checkpoint
//! folder `checkpoint_final/` of an earlier version of this tool with everything in it.

use crate::inference::checkpoint_folder_name;
use crate::zip::{ZipReader, ZipWriter};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// What to export (nnU-Net's `export_pretrained_model` arguments).
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub configurations: Vec<String>,
    pub trainer: String,
    pub plans: String,
    /// fold names as given (`"0"`, `"all"`)
    pub folds: Vec<String>,
    /// checkpoint names (`checkpoint_final.pth`)
    pub checkpoints: Vec<String>,
    /// every file of `validation/` (except `.npz`/`.pkl`), of the cross-validation and ensemble folders
    pub export_crossval_predictions: bool,
    /// a configuration that was not trained is an error (nnU-Net's `--not_strict` cannot turn this off: its flag is
    /// `store_false` with default `False`; here `--not_strict` skips such configurations, as its help text says)
    pub strict: bool,
}

/// Why a model cannot be exported or installed.
#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    #[error("cannot export {dataset}:\n{}", problems.join("\n"))]
    Missing { dataset: String, problems: Vec<String> },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> SharingError {
    SharingError::File { path: path.to_path_buf(), message: e.to_string() }
}

/// Regular files directly in `dir` (not recursive), sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Every file below `dir`, sorted by path.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

/// `path` into `files` when it exists, else a problem.
fn require(path: PathBuf, files: &mut Vec<PathBuf>, problems: &mut Vec<String>) {
    if path.exists() {
        files.push(path);
    } else {
        problems.push(format!("{} missing", path.display()));
    }
}

/// The files nnU-Net's exporter puts into the zip, in its order, for the dataset folder `dataset_dir` (inside
/// `nnUNet_results`); every missing required file is reported at once. Also returns the progress lines nnU-Net prints.
pub fn export_file_list(dataset_dir: &Path, opts: &ExportOptions) -> Result<(Vec<PathBuf>, Vec<String>), SharingError> {
    let dataset = dataset_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut files = Vec::new();
    let mut log = Vec::new();
    let mut problems = Vec::new();
    let mut exported: Vec<&String> = Vec::new();
    for c in &opts.configurations {
        log.push(format!("Configuration {c}"));
        let model = dataset_dir.join(format!("{}__{}__{c}", opts.trainer, opts.plans));
        if !model.is_dir() {
            if opts.strict {
                problems.push(format!("{dataset} is missing the trained model of configuration {c} ({})", model.display()));
            }
            continue;
        }
        exported.push(c);
        let missing_folds: Vec<&String> = opts.folds.iter().filter(|f| !model.join(format!("fold_{f}")).is_dir()).collect();
        if !missing_folds.is_empty() {
            problems.push(format!("not all requested folds are present; {dataset} {c}; missing folds: {missing_folds:?}"));
            continue;
        }
        if !model.join("plans.json").is_file() {
            problems.push(format!("{} missing", model.join("plans.json").display()));
        }
        for f in &opts.folds {
            let fold = model.join(format!("fold_{f}"));
            log.push(format!("Exporting fold_{f}"));
            if fold.join("debug.json").is_file() {
                files.push(fold.join("debug.json"));
            }
            for chk in &opts.checkpoints {
                let (file, folder) = (fold.join(chk), fold.join(checkpoint_folder_name(chk)));
                if file.is_file() {
                    files.push(file);
                } else if folder.is_dir() {
                    files.extend(files_below(&folder));
                } else {
                    problems.push(format!("{}: checkpoint missing (neither a file nor a checkpoint folder)", file.display()));
                }
            }
            require(fold.join("progress.png"), &mut files, &mut problems);
            if fold.join("network_architecture.pdf").is_file() {
                files.push(fold.join("network_architecture.pdf"));
            }
            let validation = fold.join("validation");
            if opts.export_crossval_predictions {
                if !validation.is_dir() {
                    problems.push(format!("{} missing", validation.display()));
                }
                files.extend(files_in(&validation).into_iter().filter(|p| {
                    let n = p.to_string_lossy();
                    !n.ends_with(".npz") && !n.ends_with(".pkl")
                }));
            } else {
                require(validation.join("summary.json"), &mut files, &mut problems);
            }
        }
        let cv = model.join(format!("crossval_results_folds_{}", opts.folds.join("_")));
        if cv.is_dir() {
            if opts.export_crossval_predictions {
                files.extend(files_in(&cv));
            } else {
                files.extend(["summary.json", "postprocessing.pkl", "postprocessing.json"].iter().map(|n| cv.join(n)).filter(|p| p.is_file()));
            }
        }
        files.push(model.join("plans.json"));
        require(model.join("dataset_fingerprint.json"), &mut files, &mut problems);
        require(model.join("dataset.json"), &mut files, &mut problems);
    }
    if !problems.is_empty() {
        return Err(SharingError::Missing { dataset, problems });
    }
    let ensembles = dataset_dir.join("ensembles");
    if !ensembles.is_dir() {
        // nnU-Net returns here: inference_information.json/.txt are then not exported either
        log.push(format!("No ensemble directory found for {dataset}"));
        return Ok((files, log));
    }
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&ensembles).map_err(|e| io(&ensembles, e))?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parts: Vec<&str> = name.split("___").collect();
        if parts.len() < 3 {
            continue;
        }
        let mut members = Vec::new();
        for id in &parts[1..parts.len() - 1] {
            let p: Vec<&str> = id.split("__").collect();
            let [tr, pl, cfg] = p[..] else {
                return Err(io(&d, format!("ensemble member '{id}' is not <trainer>__<plans>__<configuration>")));
            };
            members.push((tr, pl, cfg));
        }
        // members must be exported models (with `strict`, every configuration asked for is: nnU-Net's rule)
        let matches = members.iter().all(|(tr, pl, cfg)| *tr == opts.trainer && *pl == opts.plans && exported.iter().any(|c| c == cfg));
        if matches {
            log.push(format!("found matching ensemble: {name}"));
            if opts.export_crossval_predictions {
                files.extend(files_in(&d));
            } else {
                files.extend(["summary.json", "postprocessing.pkl", "postprocessing.json"].iter().map(|n| d.join(n)).filter(|p| p.is_file()));
            }
        }
    }
    files.extend(["inference_information.json", "inference_information.txt"].iter().map(|n| dataset_dir.join(n)).filter(|p| p.is_file()));
    log.push("Done".into());
    Ok((files, log))
}

/// Write the export zip of `dataset` (inside `results`) to `output`, one file at a time (a file is streamed into the
/// zip, never held whole in memory), into a temp file that is renamed at the end: a failed export leaves nothing.
/// Returns nnU-Net's progress lines and the number of entries.
pub fn export_pretrained_model(results: &Path, dataset: &str, output: &Path, opts: &ExportOptions) -> Result<(Vec<String>, usize), SharingError> {
    let (files, log) = export_file_list(&results.join(dataset), opts)?;
    let mut names = Vec::with_capacity(files.len());
    for f in &files {
        let name = f.strip_prefix(results).map_err(|_| io(f, "not inside nnUNet_results"))?;
        names.push(name.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/"));
    }
    nnunet_schema::json::write_atomic_with(output, |out| {
        let mut zip = ZipWriter::new(std::io::BufWriter::new(out), None);
        for (f, name) in files.iter().zip(&names) {
            let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", f.display()));
            let file = std::fs::File::open(f).map_err(named)?;
            let size = file.metadata().map_err(named)?.len();
            zip.add_reader(name, std::io::BufReader::new(file), size).map_err(named)?;
        }
        zip.finish()?.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    })
    .map_err(|e| io(output, e))?;
    Ok((log, files.len()))
}

/// An entry name made safe as Python's `ZipFile.extractall` does: absolute prefixes, `.` and `..` dropped.
fn enclosed(name: &str) -> Option<PathBuf> {
    let p: PathBuf = Path::new(name).components().filter_map(|c| match c {
        Component::Normal(s) => Some(s),
        _ => None,
    }).collect();
    (p.components().count() > 0).then_some(p)
}

/// `nnUNetv2_install_pretrained_model_from_zip`: extract every entry of `zip` below `results` (existing files are
/// replaced, as nnU-Net does), one entry at a time, each streamed into a temp file that is renamed in. Every entry's
/// CRC is checked in a first pass, so a damaged zip installs nothing. Returns the files written.
pub fn install_model_from_zip(zip: &Path, results: &Path) -> Result<Vec<PathBuf>, SharingError> {
    let file = std::fs::File::open(zip).map_err(|e| io(zip, e))?;
    let mut archive = ZipReader::new(std::io::BufReader::new(file)).map_err(|e| io(zip, format!("not a readable zip file: {e}")))?;
    for entry in archive.entries().to_vec() {
        archive.copy_to(&entry, &mut std::io::sink()).map_err(|e| io(zip, e))?;
    }
    let mut written = Vec::new();
    for entry in archive.entries().to_vec() {
        let Some(rel) = enclosed(&entry.name) else { continue };
        let out = results.join(rel);
        if entry.name.ends_with('/') {
            std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
            continue;
        }
        nnunet_schema::json::write_atomic_with(&out, |f| {
            let mut w = std::io::BufWriter::new(f);
            archive.copy_to(&entry, &mut w)?;
            w.flush()
        })
        .map_err(|e| io(zip, e))?;
        written.push(out);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_zip_installs_nothing() {
        let dir = std::env::temp_dir().join(format!("install_damaged_{}", std::process::id()));
        let results = dir.join("results");
        std::fs::create_dir_all(&results).unwrap();
        let mut w = ZipWriter::new(std::io::Cursor::new(Vec::new()), Some(1));
        w.add("Dataset001_A/first.json", b"{}").unwrap();
        w.add("Dataset001_A/second.bin", b"0123456789").unwrap();
        let mut bytes = w.finish().unwrap().into_inner();
        let pos = bytes.windows(10).position(|s| s == b"0123456789").unwrap();
        bytes[pos] = b'#';
        let zip = dir.join("m.zip");
        std::fs::write(&zip, &bytes).unwrap();
        let err = install_model_from_zip(&zip, &results).unwrap_err().to_string();
        assert!(err.contains("m.zip") && err.contains("second.bin: CRC or size mismatch"), "{err}");
        assert_eq!(files_below(&results).len(), 0, "nothing installed");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unsafe_entry_names_are_enclosed_like_python() {
        assert_eq!(enclosed("Dataset004_X/a/b.json"), Some(PathBuf::from("Dataset004_X/a/b.json")));
        assert_eq!(enclosed("/etc/passwd"), Some(PathBuf::from("etc/passwd")));
        assert_eq!(enclosed("../../x/./y"), Some(PathBuf::from("x/y")));
        assert_eq!(enclosed("../"), None);
    }

    /// Checkpoint folders of earlier versions: `-chk checkpoint_final.pth` exports everything in `checkpoint_final/`;
    /// the zip installs back into the same tree.
    #[test]
    fn checkpoint_folders_are_exported_whole_and_install_back() {
        let root = std::env::temp_dir().join(format!("model_sharing_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let model = root.join("results/Dataset004_H/nnUNetTrainer__nnUNetPlans__3d_fullres");
        let fold = model.join("fold_0");
        for (f, text) in [
            ("checkpoint_final/checkpoint.json", "{}"),
            ("checkpoint_final/model.mpk", "weights"),
            ("checkpoint_latest/model.mpk", "not exported"),
            ("progress.png", "png"),
            ("validation/summary.json", "{}"),
        ] {
            std::fs::create_dir_all(fold.join(f).parent().unwrap()).unwrap();
            std::fs::write(fold.join(f), text).unwrap();
        }
        for f in ["plans.json", "dataset.json", "dataset_fingerprint.json"] {
            std::fs::write(model.join(f), "{}").unwrap();
        }
        let opts = ExportOptions {
            configurations: vec!["3d_fullres".into()],
            trainer: "nnUNetTrainer".into(),
            plans: "nnUNetPlans".into(),
            folds: vec!["0".into()],
            checkpoints: vec!["checkpoint_final.pth".into()],
            export_crossval_predictions: false,
            strict: true,
        };
        let zip = root.join("m.zip");
        let (_, n) = export_pretrained_model(&root.join("results"), "Dataset004_H", &zip, &opts).unwrap();
        assert_eq!(n, 7);
        let installed = root.join("installed");
        let files = install_model_from_zip(&zip, &installed).unwrap();
        assert_eq!(files.len(), 7);
        let back = installed.join("Dataset004_H/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0");
        assert_eq!(std::fs::read_to_string(back.join("checkpoint_final/model.mpk")).unwrap(), "weights");
        assert!(!back.join("checkpoint_latest").exists());
        // a missing checkpoint and a missing progress.png are reported together
        std::fs::remove_dir_all(fold.join("checkpoint_final")).unwrap();
        std::fs::remove_file(fold.join("progress.png")).unwrap();
        let err = export_pretrained_model(&root.join("results"), "Dataset004_H", &root.join("x.zip"), &opts).unwrap_err().to_string();
        assert!(err.contains("checkpoint_final.pth: checkpoint missing") && err.contains("progress.png missing"), "{err}");
        assert!(!root.join("x.zip").exists());
        std::fs::remove_dir_all(&root).ok();
    }
}
