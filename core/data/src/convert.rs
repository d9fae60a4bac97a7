//! Dataset conversion into nnU-Net v2's raw format: `nnUNetv2_convert_MSD_dataset` (a Medical Segmentation Decathlon
//! task: 4-D images split into one file per channel, dataset.json converted) and `nnUNetv2_convert_old_nnUNet_dataset`
//! (an nnU-Net v1 task: folders copied, dataset.json converted), as nnU-Net 2.8.1 does them
//! (`nnunetv2/dataset_conversion/`). Both write into a temporary folder beside the target and rename it at the end,
//! so a failed conversion leaves no half-written dataset (nnU-Net leaves one).

use crate::error::{DataError, Result};
use crate::nifti::{self, NiftiDatatype, SitkGeometry};
use rayon::prelude::*;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// `dataset.json` labels `{"0": "background", "1": "PZ"}` → `{"background": 0, "PZ": 1}` (nnU-Net's
/// `{name: int(id)}`: when two ids share a name, the last id wins at the first name's position).
fn invert_labels(labels: &Value) -> std::result::Result<Value, String> {
    let Value::Object(m) = labels else { return Err("'labels' is not an object".into()) };
    let mut out = Map::new();
    for (id, name) in m {
        let id: i64 = id.trim().parse().map_err(|_| format!("label id '{id}' is not an integer"))?;
        let Value::String(name) = name else { return Err(format!("label {id}: the name is not a string")) };
        out.insert(name.clone(), Value::from(id));
    }
    Ok(Value::Object(out))
}

fn take(m: &mut Map<String, Value>, key: &str) -> std::result::Result<Value, String> {
    m.shift_remove(key).ok_or_else(|| format!("no '{key}' key"))
}

/// An MSD `dataset.json` converted as nnU-Net's `convert_msd_dataset`: labels inverted (in place),
/// `file_ending` `.nii.gz` and `channel_names` (the `modality` object) appended, `modality`, `training`, `test`
/// removed; everything else (`numTraining`, `numTest`, `tensorImageSize`, …) kept in its order.
pub fn msd_dataset_json(v1: &Value) -> std::result::Result<Value, String> {
    let Value::Object(src) = v1 else { return Err("not a JSON object".into()) };
    let mut m = src.clone();
    let labels = invert_labels(m.get("labels").ok_or("no 'labels' key")?)?;
    m.insert("labels".into(), labels);
    let modality = m.get("modality").cloned().ok_or("no 'modality' key")?;
    m.insert("file_ending".into(), Value::from(".nii.gz"));
    m.insert("channel_names".into(), modality);
    for k in ["modality", "training", "test"] {
        take(&mut m, k)?;
    }
    Ok(Value::Object(m))
}

/// An nnU-Net v1 `dataset.json` converted as nnU-Net's `convert_raw_dataset_from_old_nnunet_format`:
/// `tensorImageSize`, `numTest`, `training`, `test` removed, `channel_names` (the `modality` object) appended and
/// `modality` removed, labels inverted (in place), `file_ending` `.nii.gz` appended.
pub fn old_dataset_json(v1: &Value) -> std::result::Result<Value, String> {
    let Value::Object(src) = v1 else { return Err("not a JSON object".into()) };
    let mut m = src.clone();
    for k in ["tensorImageSize", "numTest", "training", "test"] {
        take(&mut m, k)?;
    }
    let modality = take(&mut m, "modality")?;
    m.insert("channel_names".into(), modality);
    let labels = invert_labels(m.get("labels").ok_or("no 'labels' key")?)?;
    m.insert("labels".into(), labels);
    m.insert("file_ending".into(), Value::from(".nii.gz"));
    Ok(Value::Object(m))
}

/// nnU-Net's `split_4d_nifti`: a 3-D image (as SimpleITK sees it: trailing singleton axes dropped) is copied to
/// `<base>_0000.nii.gz` byte for byte; a 4-D image is split along its 4th axis into `<base>_%04d.nii.gz`, each with
/// the image's 3-D geometry (spacing, origin, direction of the first three axes) and its stored datatype (float32
/// when the header scales the values, as SimpleITK reads them). `base` is the file name without `.nii.gz`.
/// Returns the files written.
pub fn split_4d_nifti(file: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = name.strip_suffix(".nii.gz").unwrap_or(&name);
    let bytes = nifti::read_maybe_gz(file)?;
    let (header, mut dims, dt, raw) = nifti::raw_voxels(&bytes, file)?;
    while dims.len() > 3 && dims.last() == Some(&1) {
        dims.pop();
    }
    match dims.len() {
        3 => {
            let out = out_dir.join(format!("{base}_0000.nii.gz"));
            std::fs::copy(file, &out).map_err(|e| DataError::io(file, e))?;
            Ok(vec![out])
        }
        4 => {
            // decoded once: the geometry, and the values when the header scales them (SimpleITK then reads float32)
            let decoded = nifti::decode_nifti(&bytes, file)?;
            let geometry4 = decoded.itk_geometry(file)?;
            let geometry = SitkGeometry {
                spacing: geometry4.spacing[..3].to_vec(),
                origin: geometry4.origin[..3].to_vec(),
                direction: (0..3).flat_map(|r| geometry4.direction[r * 4..r * 4 + 3].to_vec()).collect(),
            };
            let size = &dims[..3];
            let per_channel: usize = size.iter().product();
            let (slope, inter) = (header.scl_slope as f64, header.scl_inter as f64);
            let scaled = slope.abs() > f64::EPSILON && ((slope - 1.0).abs() > f64::EPSILON || inter.abs() > f64::EPSILON);
            let scaled_data = scaled.then_some(decoded.data);
            let mut written = Vec::with_capacity(dims[3]);
            for t in 0..dims[3] {
                let out = out_dir.join(format!("{base}_{t:04}.nii.gz"));
                let encoded = match &scaled_data {
                    Some(data) => nifti::encode_nifti(&data[t * per_channel..(t + 1) * per_channel], size, &geometry, NiftiDatatype::F32),
                    None => {
                        let es = dt.size();
                        let mut h = nifti::nifti_header_bytes(size, &geometry, dt).map_err(|m| DataError::format(file, m))?;
                        let chunk = &raw[t * per_channel * es..(t + 1) * per_channel * es];
                        if header.big_endian {
                            h.extend(chunk.chunks_exact(es).flat_map(|e| e.iter().rev().copied()));
                        } else {
                            h.extend_from_slice(chunk);
                        }
                        Ok(h)
                    }
                }
                .map_err(|m| DataError::format(file, m))?;
                nifti::write_nifti_bytes(&out, &encoded)?;
                written.push(out);
            }
            Ok(written)
        }
        n => Err(DataError::format(file, format!("Unexpected dimensionality: {n} of file {}, cannot split", file.display()))),
    }
}

/// The files of `dir` nnU-Net's MSD converter takes: names ending in `.nii.gz`, not starting with `.` or `_`
/// (macOS `._*` files in the MSD archives), sorted.
fn msd_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(crate::dataset::subfiles(dir, ".nii.gz")?
        .into_iter()
        .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
        .map(|n| dir.join(n))
        .collect())
}

/// The problems that make `source` unusable as an MSD task folder (nnU-Net's asserts), all of them.
pub fn msd_source_problems(source: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for sub in ["labelsTr", "imagesTs", "imagesTr"] {
        if !source.join(sub).is_dir() {
            problems.push(format!("{}: {sub} subfolder missing in source folder", source.display()));
        }
    }
    if !source.join("dataset.json").is_file() {
        problems.push(format!("{}: dataset.json missing in source folder", source.display()));
    }
    problems
}

/// A temporary folder beside `target`, renamed to `target` by [`Staging::finish`]; removed if dropped before.
struct Staging {
    tmp: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Staging {
    fn new(target: &Path) -> Result<Staging> {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = target.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        Ok(Staging { tmp, target: target.to_path_buf(), done: false })
    }

    fn finish(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.target).map_err(|e| DataError::io(&self.target, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

fn read_json_value(path: &Path) -> Result<Value> {
    Ok(nnunet_schema::json::read_json::<Value>(path)?)
}

fn write_json_value(path: &Path, v: &Value) -> Result<()> {
    Ok(nnunet_schema::json::write_json_atomic(path, v)?)
}

/// Convert the MSD task folder `source` into the nnU-Net raw dataset folder `target` (which must not exist) with
/// `threads` worker threads for the image splitting. Labels are copied byte for byte.
pub fn convert_msd(source: &Path, target: &Path, threads: usize) -> Result<()> {
    if let Some(p) = msd_source_problems(source).into_iter().next() {
        return Err(DataError::format(source, p));
    }
    if target.exists() {
        return Err(DataError::format(target, "the target dataset folder exists already"));
    }
    let json_path = source.join("dataset.json");
    let dj = msd_dataset_json(&read_json_value(&json_path)?).map_err(|m| DataError::format(&json_path, m))?;
    let stage = Staging::new(target)?;
    let mut jobs = Vec::new();
    for (from, to) in [("imagesTr", "imagesTr"), ("imagesTs", "imagesTs")] {
        let out = stage.tmp.join(to);
        std::fs::create_dir_all(&out).map_err(|e| DataError::io(&out, e))?;
        jobs.extend(msd_files(&source.join(from))?.into_iter().map(|f| (f, out.clone())));
    }
    let labels = stage.tmp.join("labelsTr");
    std::fs::create_dir_all(&labels).map_err(|e| DataError::io(&labels, e))?;
    for f in msd_files(&source.join("labelsTr"))? {
        let to = labels.join(f.file_name().unwrap_or_default());
        std::fs::copy(&f, &to).map_err(|e| DataError::io(&f, e))?;
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().map_err(|e| DataError::format(source, e.to_string()))?;
    pool.install(|| jobs.par_iter().map(|(f, out)| split_4d_nifti(f, out).map(|_| ())).collect::<Result<Vec<()>>>())?;
    write_json_value(&stage.tmp.join("dataset.json"), &dj)?;
    stage.finish()
}

/// Copy a folder tree (files and sub-folders, hidden ones included).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| DataError::io(to, e))?;
    for e in std::fs::read_dir(from).map_err(|e| DataError::io(from, e))?.flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| DataError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Convert the nnU-Net v1 task folder `source` into the raw dataset folder `target` (which must not exist):
/// `imagesTr`, `labelsTr` (required) and `imagesTs`, `labelsTs`, `imagesVal`, `labelsVal` (if present) copied,
/// dataset.json converted.
pub fn convert_old(source: &Path, target: &Path) -> Result<()> {
    if target.is_dir() {
        return Err(DataError::format(
            target,
            "Target dataset name already exists. Aborting... (we might break something). If you are sure you want to \
             proceed, please manually delete it",
        ));
    }
    let missing: Vec<&str> = ["imagesTr", "labelsTr"].into_iter().filter(|s| !source.join(s).is_dir()).collect();
    let json_path = source.join("dataset.json");
    if !missing.is_empty() || !json_path.is_file() {
        let mut what: Vec<String> = missing.iter().map(|s| format!("{s}/")).collect();
        if !json_path.is_file() {
            what.push("dataset.json".into());
        }
        return Err(DataError::format(source, format!("not an nnU-Net v1 task folder: missing {}", what.join(", "))));
    }
    let dj = old_dataset_json(&read_json_value(&json_path)?).map_err(|m| DataError::format(&json_path, m))?;
    let stage = Staging::new(target)?;
    for sub in ["imagesTr", "labelsTr", "imagesTs", "labelsTs", "imagesVal", "labelsVal"] {
        if source.join(sub).is_dir() {
            copy_tree(&source.join(sub), &stage.tmp.join(sub))?;
        }
    }
    write_json_value(&stage.tmp.join("dataset.json"), &dj)?;
    stage.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_invert_with_the_last_id_winning_at_the_first_position() {
        let v = invert_labels(&json!({"0": "background", "1": "organ", "2": "organ", "3": "x"})).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"background":0,"organ":2,"x":3}"#);
        assert!(invert_labels(&json!({"a": "background"})).unwrap_err().contains("'a'"));
    }

    #[test]
    fn dataset_json_key_orders_differ_between_the_two_converters() {
        let v1 = json!({"name": "T", "tensorImageSize": "4D", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "a"},
                        "numTraining": 1, "numTest": 0, "training": [], "test": []});
        let msd = msd_dataset_json(&v1).unwrap();
        let keys: Vec<&String> = msd.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "tensorImageSize", "labels", "numTraining", "numTest", "file_ending", "channel_names"]);
        let old = old_dataset_json(&v1).unwrap();
        let keys: Vec<&String> = old.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "labels", "numTraining", "channel_names", "file_ending"]);
        assert_eq!(old["labels"], json!({"background": 0, "a": 1}));
        assert!(msd_dataset_json(&json!({"labels": {}, "modality": {}})).unwrap_err().contains("'training'"));
    }
}
