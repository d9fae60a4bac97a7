//! On-disk format of preprocessed cases (ADR 0005) and [`export_preprocessed`].
//!
//! `nnUNet_preprocessed/DatasetXXX/<data_identifier>/` holds, per case:
//! * `<case>.npy` — data, float32 little-endian, C order, shape `(c, d0, d1, d2)` (transposed axes);
//! * `<case>_seg.npy` — segmentation, int16, shape `(1, d0, d1, d2)`, labels and `-1` outside the
//!   nonzero mask;
//! * `<case>.json` — [`CaseProperties`] (nnU-Net's `.pkl` content as JSON).
//!
//! plus `nnunet_rs_preprocessed.json` ([`Manifest`]). Uncompressed `.npy` (NumPy format 1.0, data
//! aligned to 64 bytes) can be memory-mapped or read patch-wise with one `pread` per row; the same
//! names are nnU-Net's unpacked `nnUNetDatasetNumpy` files.

use crate::error::{DataError, Result};
use crate::npy::{self, NpyDtype};
use crate::preprocess::{CaseProperties, PreprocessConfig, PreprocessedCase};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Name of the manifest file in a preprocessed configuration folder.
pub const MANIFEST: &str = "nnunet_rs_preprocessed.json";
/// Current format version written to the manifest.
pub const FORMAT_VERSION: u32 = 1;

/// `nnunet_rs_preprocessed.json`: what the folder holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"nnunet-rs-npy"`.
    pub format: String,
    pub format_version: u32,
    pub plans_name: String,
    pub configuration: String,
    pub data_identifier: String,
    /// Case identifiers in dataset order.
    pub cases: Vec<String>,
}

/// Write `bytes` to `path` via a temp file in the same folder and a rename (no fsync: the folder
/// itself is swapped in atomically once complete).
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DataError::io(path, e)
    })
}

fn json_text<T: Serialize>(v: &T, path: &Path) -> Result<String> {
    nnunet_schema::json::to_python_string(v).map_err(|e| DataError::format(path, format!("cannot serialise: {e}")))
}

/// Paths of one case's files in a configuration folder.
pub fn case_paths(dir: &Path, case: &str) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(format!("{case}.npy")), dir.join(format!("{case}_seg.npy")), dir.join(format!("{case}.json")))
}

/// Write one preprocessed case (three files, each via temp + rename).
pub fn write_case(dir: &Path, case: &str, pc: &PreprocessedCase) -> Result<()> {
    let (d, s, p) = case_paths(dir, case);
    let [a, b, c] = pc.shape;
    write_file_atomic(&d, &npy::to_bytes_f32(&pc.data, &[pc.channels, a, b, c]))?;
    write_file_atomic(&s, &npy::to_bytes_i16(&pc.seg, &[1, a, b, c]))?;
    write_file_atomic(&p, json_text(&pc.properties, &p)?.as_bytes())
}

pub(crate) fn write_manifest(dir: &Path, cfg: &PreprocessConfig, cases: &[String]) -> Result<()> {
    let m = Manifest {
        format: "nnunet-rs-npy".into(),
        format_version: FORMAT_VERSION,
        plans_name: cfg.plans_name.clone(),
        configuration: cfg.configuration.clone(),
        data_identifier: cfg.data_identifier.clone(),
        cases: cases.to_vec(),
    };
    let p = dir.join(MANIFEST);
    write_file_atomic(&p, json_text(&m, &p)?.as_bytes())
}

/// Read the manifest of a configuration folder.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let m: Manifest = nnunet_schema::json::read_json(&dir.join(MANIFEST))?;
    if m.format != "nnunet-rs-npy" || m.format_version > FORMAT_VERSION {
        return Err(DataError::format(dir.join(MANIFEST), format!("unsupported format {} v{}", m.format, m.format_version)));
    }
    Ok(m)
}

/// Case identifiers of a configuration folder: from the manifest, else every `<case>.json`.
pub fn list_cases(dir: &Path) -> Result<Vec<String>> {
    if dir.join(MANIFEST).is_file() {
        return Ok(read_manifest(dir)?.cases);
    }
    let mut ids: Vec<String> = crate::dataset::subfiles(dir, ".json")?
        .into_iter()
        .filter(|f| f != MANIFEST && !f.starts_with('.'))
        .map(|f| f.trim_end_matches(".json").to_string())
        .filter(|id| dir.join(format!("{id}.npy")).is_file())
        .collect();
    // Python nnU-Net's cases (Blosc2 arrays + pickled properties), read as they are
    let python: Vec<String> = crate::dataset::subfiles(dir, ".pkl")?
        .into_iter()
        .filter(|f| !f.starts_with('.'))
        .map(|f| f.trim_end_matches(".pkl").to_string())
        .filter(|id| dir.join(format!("{id}.b2nd")).is_file() && !ids.contains(id))
        .collect();
    ids.extend(python);
    ids.sort();
    Ok(ids)
}

/// Python nnU-Net's preprocessed cases in a configuration folder that this framework does not read: `<case>.pkl` with
/// `<case>.npz` (nnU-Net before 2.6; 2.6 and later write Blosc2 `.b2nd`, which [`list_cases`] reads). Returns the
/// number of such cases and their file format, or `None` when there are none.
pub fn python_preprocessed_cases(dir: &Path) -> Option<(usize, &'static str)> {
    let names: std::collections::HashSet<String> =
        std::fs::read_dir(dir).ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let n = names.iter().filter_map(|n| n.strip_suffix(".pkl")).filter(|id| names.contains(&format!("{id}.npz"))).count();
    (n > 0).then_some((n, ".npz + .pkl"))
}

/// The files of Python nnU-Net's case `case` in `dir` (`<case>.b2nd`, `<case>_seg.b2nd`, `<case>.pkl`), when its data
/// file exists and ours (`<case>.npy`) does not.
fn python_case_paths(dir: &Path, case: &str) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let data = dir.join(format!("{case}.b2nd"));
    (data.is_file() && !dir.join(format!("{case}.npy")).is_file())
        .then(|| (data, dir.join(format!("{case}_seg.b2nd")), dir.join(format!("{case}.pkl"))))
}

/// Properties pickled by Python nnU-Net (`<case>.pkl`): the same dictionary as our `<case>.json`.
fn read_pickled_properties(path: &Path) -> Result<CaseProperties> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let value = crate::pickle::from_bytes(&bytes).map_err(|e| DataError::format(path, e.to_string()))?;
    serde_json::from_value(value).map_err(|e| DataError::format(path, format!("not nnU-Net's case properties: {e}")))
}

/// `(channels, [z, y, x])` of a case whose data (`c, z, y, x`) and segmentation (`1, z, y, x`) shapes agree.
fn case_shape(data: &Path, dshape: &[usize], sshape: &[usize]) -> Result<(usize, [usize; 3])> {
    if dshape.len() != 4 || sshape.len() != 4 || dshape[1..] != sshape[1..] || sshape[0] != 1 {
        return Err(DataError::format(data, format!("data shape {dshape:?} and seg shape {sshape:?} do not match")));
    }
    Ok((dshape[0], [dshape[1], dshape[2], dshape[3]]))
}

/// Read one case back completely (ours, or Python nnU-Net's Blosc2 case).
pub fn read_case(dir: &Path, case: &str) -> Result<PreprocessedCase> {
    if python_case_paths(dir, case).is_some() {
        let c = open_case(dir, case)?;
        let [z, y, x] = c.shape;
        let (data, seg) = (c.data.read_box([0; 3], [z, y, x])?, c.seg.read_box([0; 3], [z, y, x])?);
        return Ok(PreprocessedCase { data, channels: c.channels, shape: c.shape, seg, properties: c.properties });
    }
    let (d, s, p) = case_paths(dir, case);
    let (data, dshape) = npy::read::<f32>(&d)?;
    let (seg, sshape) = npy::read::<i16>(&s)?;
    let (channels, shape) = case_shape(&d, &dshape, &sshape)?;
    let properties: CaseProperties = nnunet_schema::json::read_json(&p)?;
    Ok(PreprocessedCase { data, channels, shape, seg, properties })
}

/// One array of a stored case: our `.npy` ([`npy::NpyFile`]) or Python nnU-Net's Blosc2 `.b2nd`
/// ([`crate::blosc2::B2nd`]), both read box by box without loading the array.
#[derive(Debug, Clone)]
pub enum CaseArray {
    Npy(npy::NpyFile),
    B2nd(std::sync::Arc<crate::blosc2::B2nd>),
}

impl CaseArray {
    /// The box `[start, start + size)` of the last three axes for every channel, C order, `pad` outside the array
    /// (see [`npy::NpyFile::read_box`]).
    pub fn read_box_padded<T: npy::FromNpy>(&self, start: [i64; 3], size: [usize; 3], pad: T) -> Result<Vec<T>> {
        match self {
            CaseArray::Npy(f) => f.read_box(start, size, pad),
            CaseArray::B2nd(b) => b.read_box(start, size, pad),
        }
    }

    fn read_box<T: npy::FromNpy + Default>(&self, start: [i64; 3], size: [usize; 3]) -> Result<Vec<T>> {
        self.read_box_padded(start, size, T::default())
    }

    pub fn path(&self) -> &Path {
        match self {
            CaseArray::Npy(f) => f.path(),
            CaseArray::B2nd(b) => b.path(),
        }
    }
}

/// A case whose arrays stay on disk: its properties and its data and segmentation arrays, read box by box
/// ([`CaseArray::read_box_padded`]).
#[derive(Debug, Clone)]
pub struct StoredCase {
    pub data: CaseArray,
    pub seg: CaseArray,
    pub channels: usize,
    pub shape: [usize; 3],
    pub properties: CaseProperties,
}

/// Open one case for box reads: headers and properties are read and checked (float32 data, int16 segmentation, equal
/// spatial shapes), the arrays are not. Python nnU-Net's cases (`<case>.b2nd`, `<case>_seg.b2nd`, `<case>.pkl`) are
/// opened the same way.
pub fn open_case(dir: &Path, case: &str) -> Result<StoredCase> {
    if let Some((d, s, p)) = python_case_paths(dir, case) {
        let (data, seg) = (crate::blosc2::B2nd::open(&d)?, crate::blosc2::B2nd::open(&s)?);
        let (channels, shape) = case_shape(&d, data.shape(), seg.shape())?;
        let properties = read_pickled_properties(&p)?;
        let (data, seg) = (CaseArray::B2nd(std::sync::Arc::new(data)), CaseArray::B2nd(std::sync::Arc::new(seg)));
        return Ok(StoredCase { data, seg, channels, shape, properties });
    }
    let (d, s, p) = case_paths(dir, case);
    let (data, seg) = (npy::NpyFile::open(&d)?, npy::NpyFile::open(&s)?);
    if data.header().dtype != NpyDtype::F32 {
        return Err(DataError::format(&d, format!("data is {}, not float32", data.header().dtype.descr())));
    }
    if seg.header().dtype != NpyDtype::I16 {
        return Err(DataError::format(&s, format!("segmentation is {}, not int16", seg.header().dtype.descr())));
    }
    let (channels, shape) = case_shape(&d, &data.header().shape, &seg.header().shape)?;
    for f in [&data, &seg] {
        let need = (f.header().data_offset + f.header().len() * f.header().dtype.size()) as u64;
        let have = std::fs::metadata(f.path()).map_err(|e| DataError::io(f.path(), e))?.len();
        if have < need {
            return Err(DataError::format(f.path(), format!("truncated .npy data ({have} bytes, the header needs {need})")));
        }
    }
    let properties: CaseProperties = nnunet_schema::json::read_json(&p)?;
    Ok(StoredCase { data: CaseArray::Npy(data), seg: CaseArray::Npy(seg), channels, shape, properties })
}

/// Header of a case's data file (dtype, shape, byte offset) for memory mapping / patch reads.
pub fn data_header(dir: &Path, case: &str) -> Result<npy::NpyHeader> {
    let h = npy::read_header(&case_paths(dir, case).0)?;
    if h.dtype != NpyDtype::F32 {
        return Err(DataError::format(case_paths(dir, case).0, "data is not float32"));
    }
    Ok(h)
}

/// Copy `src` to `dst` (temp + rename) unless `dst` exists and is not older. Returns whether it copied.
pub fn copy_if_newer(src: &Path, dst: &Path) -> Result<bool> {
    let sm = std::fs::metadata(src).map_err(|e| DataError::io(src, e))?;
    if let Ok(dm) = std::fs::metadata(dst)
        && let (Ok(a), Ok(b)) = (sm.modified(), dm.modified())
        && a <= b
    {
        return Ok(false);
    }
    let bytes = std::fs::read(src).map_err(|e| DataError::io(src, e))?;
    write_file_atomic(dst, &bytes)?;
    Ok(true)
}

/// `nnunet export-preprocessed`: write every case of the configuration folder `preprocessed_config_dir`
/// as `<case>_data.npy` (float32 `(c, d0, d1, d2)`), `<case>_seg.npy` (int16 `(1, d0, d1, d2)`) and
/// `<case>_properties.json` into `out_dir` (created), the layout of the reference files produced from
/// nnU-Net's `.b2nd`/`.pkl` (a folder Python nnU-Net preprocessed is converted the same way). Returns the number of
/// cases. `threads` 0 = one per core.
pub fn export_preprocessed(
    preprocessed_config_dir: &Path,
    out_dir: &Path,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<usize> {
    let ids = list_cases(preprocessed_config_dir)?;
    std::fs::create_dir_all(out_dir).map_err(|e| DataError::io(out_dir, e))?;
    let total = ids.len();
    let done = AtomicUsize::new(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DataError::Preprocess(format!("cannot start worker threads: {e}")))?;
    pool.install(|| {
        ids.par_iter().try_for_each(|id| -> Result<()> {
            let (data, seg, props) = if python_case_paths(preprocessed_config_dir, id).is_some() {
                // Python nnU-Net's Blosc2 case: decoded and written as .npy
                let c = read_case(preprocessed_config_dir, id)?;
                let [a, b, z] = c.shape;
                (npy::to_bytes_f32(&c.data, &[c.channels, a, b, z]), npy::to_bytes_i16(&c.seg, &[1, a, b, z]), c.properties)
            } else {
                let (d, s, p) = case_paths(preprocessed_config_dir, id);
                // validate before copying: readable headers of the right dtypes
                let dh = npy::read_header(&d)?;
                let sh = npy::read_header(&s)?;
                if dh.dtype != NpyDtype::F32 || sh.dtype != NpyDtype::I16 {
                    return Err(DataError::format(&d, "unexpected dtypes (need float32 data and int16 seg)"));
                }
                let read = |f: &Path| std::fs::read(f).map_err(|e| DataError::io(f, e));
                (read(&d)?, read(&s)?, nnunet_schema::json::read_json::<CaseProperties>(&p)?)
            };
            write_file_atomic(&out_dir.join(format!("{id}_data.npy")), &data)?;
            write_file_atomic(&out_dir.join(format!("{id}_seg.npy")), &seg)?;
            let to = out_dir.join(format!("{id}_properties.json"));
            write_file_atomic(&to, json_text(&props, &to)?.as_bytes())?;
            progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
            Ok(())
        })
    })?;
    Ok(total)
}
