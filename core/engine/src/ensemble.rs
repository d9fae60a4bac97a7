//! nnU-Net's ensembling (`nnunetv2/ensembling/ensemble.py`, version 2.8.1): average the softmax/sigmoid
//! probabilities of several predictions of the same cases and export the segmentation.
//!
//! * [`ensemble_folders`] = `nnUNetv2_ensemble -i FOLDER FOLDER … -o OUT [-np N] [--save_npz]`: the cases are the
//!   `<case>.npz` files, which every input folder must have (the same set); `dataset.json` and `plans.json` come from
//!   the first folder (as written there by `nnUNetv2_predict`); `dataset.json` is written to `OUT`.
//! * [`ensemble_crossvalidations`]: the same over the `fold_X/validation` folders of trained models (what
//!   `nnUNetv2_find_best_configuration` evaluates), copying `plans.json` and `dataset.json` of the first model.
//!
//! Files read, as written by `nnUNetv2_predict --save_probabilities` (nnU-Net's or [`crate::inference`]'s) and by
//! training's validation with `--npz`: `<case>.npz` (a zip with `probabilities.npy`, float16/32/64, `(C, *shape)` in
//! the original image's array order, C or Fortran order) and `<case>.pkl` (the properties dict, read with
//! [`crate::pickle`]; its `sitk_stuff`/`nibabel_stuff`/`spacing` give the output geometry).
//!
//! Averaging follows numpy: float32 accumulation in the order of the input folders, then a float32 division by
//! their number; the segmentation is the first maximum over channels (`argmax`), or for region-based datasets
//! probability `> 0.5` per region written in `regions_class_order`. With `save_probabilities` the average is
//! written as `<case>.npz` (float32) and the first input's `<case>.pkl` is copied (nnU-Net re-pickles the same dict).

use crate::inference::npz_bytes;
use nnunet_data::io::{ImageProperties, ImageReaderWriter, reader_writer_by_name};
use nnunet_evaluate::evaluate::subfiles;
use nnunet_schema::{DatasetJson, LabelManager};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Errors of ensembling; every variant names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not usable.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// The set of inputs is not usable (nnU-Net's assertion/RuntimeError texts).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Data(#[from] nnunet_data::DataError),
    #[error(transparent)]
    Schema(#[from] nnunet_schema::SchemaError),
    #[error(transparent)]
    Eval(#[from] nnunet_evaluate::EvalError),
}

type Result<T, E = EnsembleError> = std::result::Result<T, E>;

fn io(path: &Path, source: std::io::Error) -> EnsembleError {
    EnsembleError::Io { path: path.to_path_buf(), source }
}

fn file_err(path: &Path, message: impl Into<String>) -> EnsembleError {
    EnsembleError::File { path: path.to_path_buf(), message: message.into() }
}

// ---------------------------------------------------------------------------------------------------------------
// .npz (zip) and .npy reading

/// Entry name → uncompressed bytes.
pub type ZipEntries = BTreeMap<String, Vec<u8>>;

/// The uncompressed bytes of every entry of a zip archive (stored or deflated; zip64 understood), by name.
pub fn read_zip_entries(bytes: &[u8], path: &Path) -> Result<ZipEntries> {
    read_zip_entries_where(bytes, path, &|_| true).map(|(_, entries)| entries)
}

/// The names of all entries of a zip archive and the uncompressed bytes of those `wanted` accepts (stored or
/// deflated entries; zip64 understood; CRC and size checked).
pub fn read_zip_entries_where(bytes: &[u8], path: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<(Vec<String>, ZipEntries)> {
    let bad = |e: std::io::Error| file_err(path, format!("not a readable .npz (zip) file: {e}"));
    let mut zip = crate::zip::ZipReader::new(std::io::Cursor::new(bytes)).map_err(bad)?;
    let listed = zip.entries().to_vec();
    let mut out = BTreeMap::new();
    for e in listed.iter().filter(|e| wanted(&e.name)) {
        out.insert(e.name.clone(), zip.read(e).map_err(bad)?);
    }
    Ok((listed.into_iter().map(|e| e.name).collect(), out))
}

/// A float array read from a `.npy`: values widened/narrowed to float32 as numpy's `astype(np.float32)` does, plus
/// the exact float64 values when the file holds float64 (numpy adds those in float64 before rounding).
#[derive(Debug, Clone, PartialEq)]
pub struct FloatArray {
    /// The values as float32, C order.
    pub data: Vec<f32>,
    /// The exact values when the file holds float64.
    pub data_f64: Option<Vec<f64>>,
    /// The array's shape (`(C, *spatial)` for probabilities).
    pub shape: Vec<usize>,
}

/// Parse `.npy` bytes of a float16/float32/float64 array (either byte order, C or Fortran order) into C order.
pub fn parse_npy_float(bytes: &[u8], path: &Path) -> Result<FloatArray> {
    let bad = |m: String| file_err(path, format!("not a supported .npy array: {m}"));
    let hd = nnunet_data::npy::parse_raw_header(bytes).map_err(bad)?;
    let descr = hd.descr.as_str();
    let (little, kind) = match descr.as_bytes().first() {
        Some(b'<' | b'=' | b'|') => (true, &descr[1..]),
        Some(b'>') => (false, &descr[1..]),
        _ => (true, descr),
    };
    let size = match kind {
        "f2" => 2,
        "f4" => 4,
        "f8" => 8,
        other => return Err(bad(format!("dtype {other}: probabilities must be float16, float32 or float64"))),
    };
    let (fortran, shape) = (hd.fortran_order, hd.shape);
    let n: usize = shape.iter().product();
    let body = &bytes[hd.data_offset..];
    if body.len() < n * size {
        return Err(bad("data shorter than the shape".into()));
    }
    let word = |c: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..size].copy_from_slice(c);
        if !little {
            a[..size].reverse();
        }
        a
    };
    let mut f64s = None;
    let mut data: Vec<f32> = match size {
        2 => body.chunks_exact(2).take(n).map(|c| half_to_f32(u16::from_le_bytes([word(c)[0], word(c)[1]]))).collect(),
        4 => body.chunks_exact(4).take(n).map(|c| f32::from_bits(u32::from_le_bytes(word(c)[..4].try_into().expect("4")))).collect(),
        _ => {
            let v: Vec<f64> = body.chunks_exact(8).take(n).map(|c| f64::from_le_bytes(word(c))).collect();
            let d = v.iter().map(|&x| x as f32).collect();
            f64s = Some(v);
            d
        }
    };
    if fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape);
        f64s = f64s.map(|v| fortran_to_c(&v, &shape));
    }
    Ok(FloatArray { data, data_f64: f64s, shape })
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // subnormal half: normalise
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        31 => sign | 0x7f80_0000 | (frac << 13),
        e => sign | ((e + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

fn fortran_to_c<T: Copy + Default>(a: &[T], shape: &[usize]) -> Vec<T> {
    let n = a.len();
    let mut out = vec![T::default(); n];
    let mut idx = vec![0usize; shape.len()];
    // walk C order; the Fortran offset has the first axis fastest
    for (c_pos, slot) in out.iter_mut().enumerate() {
        let mut rem = c_pos;
        for d in (0..shape.len()).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        let mut f = 0;
        for d in (0..shape.len()).rev() {
            f = f * shape[d] + idx[d];
        }
        *slot = a[f];
    }
    out
}

/// `np.load(path)['probabilities']` of a `.npz` file.
pub fn read_npz_probabilities(path: &Path) -> Result<FloatArray> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let (names, mut entries) = read_zip_entries_where(&bytes, path, &|n| n == "probabilities.npy" || n == "probabilities")?;
    drop(bytes);
    let npy = entries
        .remove("probabilities.npy")
        .or_else(|| entries.remove("probabilities"))
        .ok_or_else(|| file_err(path, format!("no array 'probabilities' (entries: {names:?})")))?;
    parse_npy_float(&npy, path)
}

/// The properties dict of a `<case>.pkl` (Python pickle) as JSON.
pub fn read_properties_pickle(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    crate::pickle::from_bytes(&bytes).map_err(|e| file_err(path, e.to_string()))
}

// ---------------------------------------------------------------------------------------------------------------
// averaging and export

/// nnU-Net's `average_probabilities`: the first file as float32, each further file added in place (float32 files
/// in float32, float64 files in float64 then rounded, as numpy's `+=`), then divided by the number of files in
/// float32. Every file must have the first file's shape.
pub fn average_probabilities(files: &[PathBuf]) -> Result<FloatArray> {
    let Some(first) = files.first() else { return Err(EnsembleError::Input("At least one file must be given in list_of_files".into())) };
    let mut avg = read_npz_probabilities(first)?;
    avg.data_f64 = None;
    for f in &files[1..] {
        let a = read_npz_probabilities(f)?;
        if a.shape != avg.shape {
            return Err(file_err(f, format!("probabilities of shape {:?} differ from {:?} of {}", a.shape, avg.shape, first.display())));
        }
        match &a.data_f64 {
            Some(v) => avg.data.iter_mut().zip(v).for_each(|(s, &x)| *s = (*s as f64 + x) as f32),
            None => avg.data.iter_mut().zip(&a.data).for_each(|(s, &x)| *s += x),
        }
    }
    let n = files.len() as f32;
    avg.data.iter_mut().for_each(|v| *v /= n);
    Ok(avg)
}

/// nnU-Net's `LabelManager.convert_probabilities_to_segmentation` on `(C, n)` probabilities.
pub fn probabilities_to_segmentation(p: &[f32], channels: usize, lm: &LabelManager) -> Vec<u16> {
    let n = p.len() / channels.max(1);
    if lm.has_regions() {
        let mut seg = vec![0u16; n];
        let order = lm.regions_class_order.clone().unwrap_or_default();
        for (i, &c) in order.iter().enumerate().take(channels) {
            for (s, &v) in seg.iter_mut().zip(&p[i * n..(i + 1) * n]) {
                if v > 0.5 {
                    *s = c as u16;
                }
            }
        }
        return seg;
    }
    (0..n)
        .map(|v| {
            // numpy argmax: the first maximum; a NaN counts as the maximum
            let mut best = 0usize;
            let mut bv = p[v];
            if bv.is_nan() {
                return 0;
            }
            for h in 1..channels {
                let x = p[h * n + v];
                if x.is_nan() {
                    return h as u16;
                }
                if x > bv {
                    bv = x;
                    best = h;
                }
            }
            best as u16
        })
        .collect()
}

/// nnU-Net's `merge_files`: average `files` (`.npz`), segment, write `<output_truncated><ending>` with the geometry
/// of the first file's `.pkl`; with `save_probabilities` also `<output_truncated>.npz` / `.pkl`.
pub fn merge_files(
    files: &[PathBuf],
    output_truncated: &str,
    file_ending: &str,
    rw: &dyn ImageReaderWriter,
    lm: &LabelManager,
    save_probabilities: bool,
) -> Result<()> {
    let first = files.first().ok_or_else(|| EnsembleError::Input("At least one file must be given in list_of_files".into()))?;
    let first_s = first.to_string_lossy();
    let pkl = PathBuf::from(format!("{}.pkl", &first_s[..first_s.len().saturating_sub(4)]));
    let props_v = read_properties_pickle(&pkl)?;
    let props: ImageProperties = serde_json::from_value(props_v)
        .map_err(|e| file_err(&pkl, format!("properties lack the image geometry (sitk_stuff/nibabel_stuff, spacing): {e}")))?;
    let avg = average_probabilities(files)?;
    let heads = lm.num_segmentation_heads();
    let channels = avg.shape.first().copied().unwrap_or(0);
    if channels != heads {
        return Err(file_err(
            first,
            format!(
                "unexpected number of channels in predicted_probabilities. Expected {heads}, got {channels}. Remember that \
                 predicted_probabilities should have shape (c, x, y(, z))."
            ),
        ));
    }
    let spatial: [usize; 3] = match avg.shape[1..] {
        [a, b, c] => [a, b, c],
        [b, c] => [1, b, c],
        _ => return Err(file_err(first, format!("probabilities of shape {:?}: expected (c, x, y(, z))", avg.shape))),
    };
    let seg = probabilities_to_segmentation(&avg.data, channels, lm);
    let seg: Vec<f32> = seg.into_iter().map(f32::from).collect();
    let out = PathBuf::from(format!("{output_truncated}{file_ending}"));
    rw.write_seg(&seg, spatial, &out, &props)?;
    if save_probabilities {
        let npy = nnunet_data::npy::to_bytes_f32(&avg.data, &avg.shape);
        let npz_path = PathBuf::from(format!("{output_truncated}.npz"));
        let zip = npz_bytes(&[("probabilities.npy", &npy)]).map_err(|e| io(&npz_path, e))?;
        nnunet_schema::json::write_atomic(&npz_path, &zip)?;
        let pkl_bytes = std::fs::read(&pkl).map_err(|e| io(&pkl, e))?;
        nnunet_schema::json::write_atomic(Path::new(&format!("{output_truncated}.pkl")), &pkl_bytes)?;
    }
    Ok(())
}

/// Run `f` on every item with `threads` worker threads (at least one); the first error (in item order) is returned
/// after all workers stopped taking new items.
pub(crate) fn parallel_try_for_each<T: Sync>(items: &[T], threads: usize, f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(items.len().max(1)) {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = f(item) {
                        failed.store(true, Ordering::SeqCst);
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push((i, e));
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by_key(|(i, _)| *i);
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Python's `os.path.join(a, b)` for a relative `b`.
pub(crate) fn join(a: &str, b: &str) -> String {
    nnunet_evaluate::summary::py_join(a, b)
}

/// `plans.json` → the image reader/writer it names; `dataset.json` → the label manager.
pub(crate) fn reader_and_labels(
    plans: &Value,
    plans_path: &Path,
    dataset: &Value,
    dataset_path: &Path,
) -> Result<(Box<dyn ImageReaderWriter>, LabelManager, String)> {
    let name = plans.get("image_reader_writer").and_then(Value::as_str).unwrap_or("");
    let rw = reader_writer_by_name(name)
        .ok_or_else(|| file_err(plans_path, format!("image_reader_writer '{name}' is unknown or not implemented")))?;
    let dj: DatasetJson = serde_json::from_value(dataset.clone()).map_err(|e| file_err(dataset_path, e.to_string()))?;
    let lm = dj.label_manager().map_err(|e| file_err(dataset_path, e))?;
    Ok((rw, lm, dj.file_ending))
}

/// What [`ensemble_folders`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnsembleReport {
    /// The case identifiers written (sorted).
    pub cases: Vec<String>,
}

/// nnU-Net's `ensemble_folders` (`nnUNetv2_ensemble`). `dataset_json`/`plans` default to the files in the first
/// input folder. `threads` workers merge cases in parallel.
pub fn ensemble_folders(
    inputs: &[PathBuf],
    output: &Path,
    save_probabilities: bool,
    threads: usize,
    dataset_json: Option<&Path>,
    plans: Option<&Path>,
) -> Result<EnsembleReport> {
    let Some(first) = inputs.first() else { return Err(EnsembleError::Input("-i: give at least one input folder".into())) };
    let dj_path = dataset_json.map(Path::to_path_buf).unwrap_or_else(|| first.join("dataset.json"));
    let plans_path = plans.map(Path::to_path_buf).unwrap_or_else(|| first.join("plans.json"));
    let dj: Value = nnunet_schema::json::read_json(&dj_path)?;
    let pl: Value = nnunet_schema::json::read_json(&plans_path)?;
    let (rw, lm, ending) = reader_and_labels(&pl, &plans_path, &dj, &dj_path)?;

    let mut per_folder = Vec::new();
    for f in inputs {
        if !f.is_dir() {
            return Err(file_err(f, "input folder not found"));
        }
        per_folder.push(subfiles(f, Some(".npz"))?.into_iter().collect::<BTreeSet<String>>());
    }
    let all: BTreeSet<String> = per_folder.iter().flatten().cloned().collect();
    let missing: Vec<String> = inputs
        .iter()
        .zip(&per_folder)
        .filter_map(|(f, s)| {
            let m: Vec<&String> = all.difference(s).collect();
            (!m.is_empty()).then(|| format!("{} lacks {}", f.display(), m.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")))
        })
        .collect();
    if !missing.is_empty() {
        return Err(EnsembleError::Input(format!(
            "Not all folders contain the same files for ensembling. Please only provide folders that contain the predictions ({})",
            missing.join("; ")
        )));
    }
    std::fs::create_dir_all(output).map_err(|e| io(output, e))?;
    nnunet_schema::json::write_json_atomic(&output.join("dataset.json"), &dj)?;
    let out_s = output.to_string_lossy().into_owned();
    let cases: Vec<String> = all.iter().map(|f| f[..f.len() - 4].to_string()).collect();
    let names: Vec<&String> = all.iter().collect();
    parallel_try_for_each(&names, threads, |f| {
        let files: Vec<PathBuf> = inputs.iter().map(|d| d.join(f)).collect();
        merge_files(&files, &join(&out_s, &f[..f.len() - 4]), &ending, rw.as_ref(), &lm, save_probabilities)
    })?;
    Ok(EnsembleReport { cases })
}

/// Python's repr of a set of strings (sorted here; Python's order is arbitrary).
pub(crate) fn py_set_repr(items: &[&String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// nnU-Net's `ensemble_crossvalidations`: ensemble the `fold_F/validation/*.npz` of `model_folders` over `folds` into
/// `output_folder` (segmentations only), then copy `plans.json` and `dataset.json` of the first model. Without
/// `overwrite`, cases whose segmentation exists are skipped. Errors are nnU-Net's (missing validation folder, no
/// `.npz` files, a model lacking cases, a case in two folds).
pub fn ensemble_crossvalidations(
    model_folders: &[String],
    output_folder: &str,
    folds: &[i64],
    threads: usize,
    overwrite: bool,
) -> Result<()> {
    let Some(first) = model_folders.first() else { return Err(EnsembleError::Input("no model folders to ensemble".into())) };
    let dj_path = PathBuf::from(join(first, "dataset.json"));
    let plans_path = PathBuf::from(join(first, "plans.json"));
    let dj: Value = nnunet_schema::json::read_json(&dj_path)?;
    let pl: Value = nnunet_schema::json::read_json(&plans_path)?;

    let mut files_per_folder: Vec<Vec<(i64, Vec<String>)>> = Vec::new();
    let mut unique: BTreeSet<String> = BTreeSet::new();
    for tr in model_folders {
        let mut per_fold = Vec::new();
        for &f in folds {
            let val = join(&join(tr, &format!("fold_{f}")), "validation");
            if !Path::new(&val).is_dir() {
                return Err(EnsembleError::Input(format!(
                    "Expected model output directory does not exist. You must train all requested folds of the specified \
                     model.\nModel: {tr}\nFold: {f}"
                )));
            }
            let here = subfiles(Path::new(&val), Some(".npz"))?;
            if here.is_empty() {
                return Err(EnsembleError::Input(format!(
                    "No .npz files found in folder {val}. Rerun your validation with the --npz flag. Use nnUNetv2_train [...] \
                     --val --npz."
                )));
            }
            unique.extend(here.iter().cloned());
            per_fold.push((f, here));
        }
        files_per_folder.push(per_fold);
    }
    for (tr, per_fold) in model_folders.iter().zip(&files_per_folder) {
        let here: BTreeSet<&String> = per_fold.iter().flat_map(|(_, v)| v).collect();
        let diff: Vec<&String> = unique.iter().filter(|u| !here.contains(u)).collect();
        if !diff.is_empty() {
            return Err(EnsembleError::Input(format!(
                "model {tr} does not seem to contain all predictions. Missing: {}\nThere were missing files, see print statements \
                 above this one",
                py_set_repr(&diff)
            )));
        }
    }
    let mut mapping: Vec<BTreeMap<String, String>> = Vec::new();
    for (tr, per_fold) in model_folders.iter().zip(&files_per_folder) {
        let mut m = BTreeMap::new();
        for (f, files) in per_fold {
            for fi in files {
                if m.contains_key(fi) {
                    return Err(EnsembleError::Input(format!(
                        "Duplicate detected. Case {fi} is present in more than one fold of model {tr}."
                    )));
                }
                m.insert(fi.clone(), join(&join(&join(tr, &format!("fold_{f}")), "validation"), fi));
            }
        }
        mapping.push(m);
    }
    let (rw, lm, ending) = reader_and_labels(&pl, &plans_path, &dj, &dj_path)?;
    std::fs::create_dir_all(output_folder).map_err(|e| io(Path::new(output_folder), e))?;
    let jobs: Vec<(Vec<PathBuf>, String)> = unique
        .iter()
        .map(|fi| (mapping.iter().map(|m| PathBuf::from(&m[fi])).collect(), join(output_folder, &fi[..fi.len() - 4])))
        .filter(|(_, out)| overwrite || !Path::new(&format!("{out}{ending}")).is_file())
        .collect();
    parallel_try_for_each(&jobs, threads, |(files, out)| merge_files(files, out, &ending, rw.as_ref(), &lm, false))?;
    for name in ["plans.json", "dataset.json"] {
        let (src, dst) = (join(first, name), join(output_folder, name));
        std::fs::copy(&src, &dst).map_err(|e| io(Path::new(&src), e))?;
    }
    Ok(())
}
