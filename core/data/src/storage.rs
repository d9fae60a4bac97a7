//! On-disk format of preprocessed cases (ADR 0005) and [`export_preprocessed`].
//!
//! `nnUNet_preprocessed/DatasetXXX/<data_identifier>/` holds, per case, what Python nnU-Net 2.8.1 writes
//! (`nnUNetDatasetBlosc2.save_case`), so that Python nnU-Net trains from a folder preprocessed here and the other way
//! round:
//! * `<case>.b2nd` — data, float32, shape `(c, d0, d1, d2)` (transposed axes), Blosc2 with nnU-Net's chunk and block
//!   shapes ([`comp_blosc2_params`]) and filter choice ([`select_filter`]);
//! * `<case>_seg.b2nd` — segmentation, int16, shape `(1, d0, d1, d2)`, labels and `-1` outside the nonzero mask;
//! * `<case>.pkl` — the properties dict, pickled with Python's types ([`properties_to_python`]).
//!
//! Folders written by earlier versions of this framework (`<case>.npy`, `<case>_seg.npy`, `<case>.json` and the
//! manifest `nnunet_rs_preprocessed.json`) are still read: [`list_cases`], [`open_case`] and [`read_case`] hand out
//! both, the arrays as [`CaseArray`].

use crate::error::{DataError, Result};
use crate::npy::{self, NpyDtype};
use crate::preprocess::{CaseProperties, PreprocessedCase};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Name of the manifest file in a preprocessed configuration folder.
pub const MANIFEST: &str = "nnunet_rs_preprocessed.json";
/// The newest format version of that manifest.
pub const FORMAT_VERSION: u32 = 1;

/// `nnunet_rs_preprocessed.json`: what a folder of `.npy` cases written by earlier versions holds.
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
    use std::io::Write;
    nnunet_schema::json::write_via_temp_unsynced(path, |f| f.write_all(bytes)).map_err(|e| match e {
        nnunet_schema::SchemaError::Write { source, .. } => DataError::io(path, source),
        other => DataError::format(path, other.to_string()),
    })
}

fn json_text<T: Serialize>(v: &T, path: &Path) -> Result<String> {
    nnunet_schema::json::to_python_string(v).map_err(|e| DataError::format(path, format!("cannot serialise: {e}")))
}

/// Paths of one case's `.npy` files (the layout of earlier versions): data, segmentation, properties.
pub fn case_paths(dir: &Path, case: &str) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(format!("{case}.npy")), dir.join(format!("{case}_seg.npy")), dir.join(format!("{case}.json")))
}

/// Paths of one case's files in nnU-Net's layout: `<case>.b2nd`, `<case>_seg.b2nd`, `<case>.pkl`.
pub fn b2nd_case_paths(dir: &Path, case: &str) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(format!("{case}.b2nd")), dir.join(format!("{case}_seg.b2nd")), dir.join(format!("{case}.pkl")))
}

/// Write one preprocessed case as Python nnU-Net 2.8.1 does (`DefaultPreprocessor.run_case_save`): Blosc2 data and
/// segmentation with the chunk and block shapes [`comp_blosc2_params`] gives for `patch_size` (the configuration's, 2
/// or 3 axes) and the filter [`select_filter`] picks, and the pickled properties. Each file via temp + rename.
pub fn write_case(dir: &Path, case: &str, pc: &PreprocessedCase, patch_size: &[usize]) -> Result<()> {
    let (d, s, p) = b2nd_case_paths(dir, case);
    let [a, b, c] = pc.shape;
    let data: Vec<u8> = pc.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let seg: Vec<u8> = pc.seg.iter().flat_map(|v| v.to_le_bytes()).collect();
    for (path, bytes, dtype, channels) in [(&d, &data, NpyDtype::F32, pc.channels), (&s, &seg, NpyDtype::I16, 1)] {
        let frame = encode_like_nnunet(bytes, dtype, [channels, a, b, c], patch_size).map_err(|e| DataError::format(path, e))?;
        write_file_atomic(path, &frame)?;
    }
    write_file_atomic(&p, &crate::pickle::to_bytes(&properties_to_python(&pc.properties)))
}

/// nnU-Net 2.8.1's `comp_blosc2_params(image_size, patch_size, bytes_per_pixel)` with its defaults (blocks of at most
/// 128 KiB, chunks of at most 6 MiB and 1.5 patches per axis): `(blocks, chunks)` for a `(c, d0, d1, d2)` array
/// read in patches of `patch_size` (3 axes, or 2 for 2-D configurations: `(1, p0, p1)`).
pub fn comp_blosc2_params(image_size: [usize; 4], patch_size: &[usize], bytes_per_pixel: usize) -> std::result::Result<([usize; 4], [usize; 4]), String> {
    const MAX_BLOCK_NBYTES: usize = 128 * 1024;
    const MAX_CHUNK_NBYTES: usize = 6 * 1024 * 1024;
    const MAX_CHUNK_TO_PATCH_RATIO: f64 = 1.5;
    let ceil_pow2 = |n: usize| if n <= 1 { 1 } else { n.next_power_of_two() };
    let prev_pow2_below = |n: usize| if n <= 1 { 1 } else { 1usize << (usize::BITS - (n - 1).leading_zeros() - 1) };
    let nbytes = |s: &[usize; 4]| s.iter().product::<usize>() * bytes_per_pixel;
    let is_2d = patch_size.len() == 2;
    let patch: [usize; 3] = match *patch_size {
        [y, x] => [1, y, x],
        [z, y, x] => [z, y, x],
        _ => return Err(format!("patch size {patch_size:?} has neither 2 nor 3 axes")),
    };
    if bytes_per_pixel == 0 || image_size.contains(&0) || patch.contains(&0) {
        return Err(format!("image size {image_size:?}, patch size {patch_size:?}, {bytes_per_pixel} bytes per voxel: all must be positive"));
    }
    let image = [image_size[1], image_size[2], image_size[3]];
    let target: [usize; 3] =
        std::array::from_fn(|ax| image[ax].min((MAX_CHUNK_TO_PATCH_RATIO * patch[ax] as f64).floor() as usize).max(1));

    let mut block = [1, ceil_pow2(patch[0]).min(image[0]), ceil_pow2(patch[1]).min(image[1]), ceil_pow2(patch[2]).min(image[2])];
    while nbytes(&block) > MAX_BLOCK_NBYTES.min(MAX_CHUNK_NBYTES) {
        // shrink the axis most over-represented relative to the target extent; ties go to the later axis
        let picked = (0..3)
            .filter(|&ax| block[ax + 1] > 1)
            .max_by(|&a, &b| {
                let (ra, rb) = (block[a + 1] as f64 / target[a] as f64, block[b + 1] as f64 / target[b] as f64);
                ra.total_cmp(&rb).then(a.cmp(&b))
            })
            .ok_or_else(|| format!("cannot fit a block into {MAX_BLOCK_NBYTES} bytes with {bytes_per_pixel} bytes per voxel"))?;
        block[picked + 1] = prev_pow2_below(block[picked + 1]).max(1);
    }

    let mut chunk = block;
    loop {
        // grow the most under-covered axis by one block (clamped to the image and the target); ties go to the larger
        // image axis, then the earlier axis
        let best = (0..3)
            .filter(|&ax| !(is_2d && ax == 0) && patch[ax] != 1 && chunk[ax + 1] < image[ax] && chunk[ax + 1] < target[ax])
            .filter_map(|ax| {
                let mut cand = chunk;
                cand[ax + 1] = (cand[ax + 1] + block[ax + 1]).min(image[ax]).min(target[ax]);
                (cand[ax + 1] != chunk[ax + 1] && nbytes(&cand) <= MAX_CHUNK_NBYTES)
                    .then(|| (chunk[ax + 1] as f64 / target[ax] as f64, std::cmp::Reverse(image[ax]), ax, cand))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        match best {
            Some((_, _, _, cand)) => chunk = cand,
            None => break,
        }
    }
    Ok((block, chunk))
}

/// One array as nnU-Net 2.8.1's `save_case` stores it: chunk and block shapes from [`comp_blosc2_params`], the filter
/// nnU-Net's `_select_filter` would pick ([`select_filter`]). `bytes`: the array in C order, little-endian.
pub fn encode_like_nnunet(bytes: &[u8], dtype: NpyDtype, shape: [usize; 4], patch_size: &[usize]) -> std::result::Result<Vec<u8>, String> {
    use crate::blosc2::write::encode;
    let (blocks, chunks) = comp_blosc2_params(shape, patch_size, dtype.size())?;
    let trial = select_filter(bytes, dtype, &shape, &chunks, &blocks);
    match trial.frame {
        // the trial compressed exactly this array with exactly these shapes: its frame is the answer
        Some(frame) => Ok(frame),
        None => encode(bytes, dtype, &shape, &chunks, &blocks, trial.filter),
    }
}

/// What [`select_filter`] decided, with the winning trial's frame when the trial slab was the whole array with the
/// final chunk and block shapes (small cases: one chunk).
pub struct FilterChoice {
    pub filter: crate::blosc2::write::Filter,
    pub frame: Option<Vec<u8>>,
}

/// nnU-Net 2.8.1's `nnUNetDatasetBlosc2._select_filter`: compress a centred slab of at most one chunk with NOFILTER
/// and with SHUFFLE and keep the smaller (ties: NOFILTER). nnU-Net measures with LZ4HC, this with the LZ4 that
/// [`crate::blosc2::write`] writes, so on a near tie the two may choose differently; the decoded arrays are the same.
pub fn select_filter(bytes: &[u8], dtype: NpyDtype, shape: &[usize; 4], chunks: &[usize; 4], blocks: &[usize; 4]) -> FilterChoice {
    use crate::blosc2::write::{Filter, encode};
    let ts = dtype.size();
    let slab: [usize; 4] = std::array::from_fn(|d| chunks[d].min(shape[d]));
    let lo: [usize; 4] = std::array::from_fn(|d| (shape[d] - slab[d]) / 2);
    let whole = slab == *shape;
    let part: std::borrow::Cow<[u8]> = if whole {
        std::borrow::Cow::Borrowed(bytes)
    } else {
        let mut part = Vec::with_capacity(slab.iter().product::<usize>() * ts);
        let row = slab[3] * ts;
        for c in 0..slab[0] {
            for z in 0..slab[1] {
                for y in 0..slab[2] {
                    let start = ((((lo[0] + c) * shape[1] + lo[1] + z) * shape[2] + lo[2] + y) * shape[3] + lo[3]) * ts;
                    part.extend_from_slice(&bytes[start..start + row]);
                }
            }
        }
        std::borrow::Cow::Owned(part)
    };
    let trial_blocks: [usize; 4] = std::array::from_fn(|d| blocks[d].min(slab[d]).max(1));
    let [none, shuffle] = [Filter::NoFilter, Filter::Shuffle].map(|f| encode(&part, dtype, &slab, &slab, &trial_blocks, f).ok());
    let len = |f: &Option<Vec<u8>>| f.as_ref().map_or(usize::MAX, Vec::len);
    let (filter, frame) = if len(&shuffle) < len(&none) { (Filter::Shuffle, shuffle) } else { (Filter::NoFilter, none) };
    let reusable = whole && slab == *chunks && trial_blocks == *blocks;
    FilterChoice { filter, frame: frame.filter(|_| reusable) }
}

/// The properties dict as Python nnU-Net pickles it: `sitk_stuff` with tuples, `nibabel_stuff` with numpy affines,
/// `spacing` and `bbox_used_for_cropping` as lists, the shapes as tuples, `class_locations` keyed by `int` (labels) or
/// `tuple` (regions, the ignore key) with `(k, 4)` int64 arrays.
pub fn properties_to_python(p: &CaseProperties) -> crate::pickle::PyValue {
    use crate::pickle::PyValue as Py;
    let s = |k: &str| Py::Str(k.to_string());
    let mut d = Vec::new();
    if let Some(g) = &p.image.sitk_stuff {
        let geometry = vec![
            (s("spacing"), Py::float_tuple(&g.spacing)),
            (s("origin"), Py::float_tuple(&g.origin)),
            (s("direction"), Py::float_tuple(&g.direction)),
        ];
        d.push((s("sitk_stuff"), Py::Dict(geometry)));
    }
    if let Some(n) = &p.image.nibabel_stuff {
        let affine = Py::Float64Array { shape: vec![4, 4], data: n.original_affine.iter().flatten().copied().collect() };
        d.push((s("nibabel_stuff"), Py::Dict(vec![(s("original_affine"), affine)])));
    }
    d.push((s("spacing"), Py::float_list(&p.image.spacing)));
    d.push((s("shape_before_cropping"), Py::int_tuple(&p.shape_before_cropping)));
    let bbox = p.bbox_used_for_cropping.iter().map(|r| Py::List(r.iter().map(|&x| Py::Int(x as i64)).collect())).collect();
    d.push((s("bbox_used_for_cropping"), Py::List(bbox)));
    d.push((s("shape_after_cropping_and_before_resampling"), Py::int_tuple(&p.shape_after_cropping_and_before_resampling)));
    if let Some(cl) = &p.class_locations {
        let classes = cl
            .0
            .iter()
            .map(|(k, rows)| {
                let key = match k {
                    crate::class_locations::ClassKey::Label(l) => Py::Int(*l),
                    crate::class_locations::ClassKey::Region(r) => Py::Tuple(r.iter().map(|&l| Py::Int(l)).collect()),
                };
                (key, Py::Int64Array { shape: vec![rows.len(), 4], data: rows.iter().flatten().copied().collect() })
            })
            .collect();
        d.push((s("class_locations"), Py::Dict(classes)));
    }
    Py::Dict(d)
}

/// Read the manifest of a configuration folder.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let m: Manifest = nnunet_schema::json::read_json(&dir.join(MANIFEST))?;
    if m.format != "nnunet-rs-npy" || m.format_version > FORMAT_VERSION {
        return Err(DataError::format(dir.join(MANIFEST), format!("unsupported format {} v{}", m.format, m.format_version)));
    }
    Ok(m)
}

/// Case identifiers of a configuration folder, sorted: every `<case>.pkl` with its `<case>.b2nd` (nnU-Net's layout,
/// written here and by Python nnU-Net ≥ 2.6), and the `.npy` cases of earlier versions (from their manifest, else
/// every `<case>.json` with its `<case>.npy`).
pub fn list_cases(dir: &Path) -> Result<Vec<String>> {
    let mut ids: Vec<String> = if dir.join(MANIFEST).is_file() {
        read_manifest(dir)?.cases
    } else {
        crate::dataset::subfiles(dir, ".json")?
            .into_iter()
            .filter(|f| f != MANIFEST && !f.starts_with('.'))
            .map(|f| f.trim_end_matches(".json").to_string())
            .filter(|id| dir.join(format!("{id}.npy")).is_file())
            .collect()
    };
    let b2nd: Vec<String> = crate::dataset::subfiles(dir, ".pkl")?
        .into_iter()
        .filter(|f| !f.starts_with('.'))
        .map(|f| f.trim_end_matches(".pkl").to_string())
        .filter(|id| dir.join(format!("{id}.b2nd")).is_file() && !ids.contains(id))
        .collect();
    ids.extend(b2nd);
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

/// The files of case `case` in nnU-Net's layout (`<case>.b2nd`, `<case>_seg.b2nd`, `<case>.pkl`), when its data file
/// exists and an earlier version's `<case>.npy` does not.
fn b2nd_case(dir: &Path, case: &str) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let paths = b2nd_case_paths(dir, case);
    (paths.0.is_file() && !dir.join(format!("{case}.npy")).is_file()).then_some(paths)
}

/// The properties file of a stored case: `<case>.pkl`, or `<case>.json` in the `.npy` layout of earlier versions.
pub fn properties_path(dir: &Path, case: &str) -> PathBuf {
    b2nd_case(dir, case).map_or_else(|| case_paths(dir, case).2, |(_, _, p)| p)
}

/// Pickled properties (`<case>.pkl`, nnU-Net's dictionary; the `.npy` layout kept it as `<case>.json`).
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

/// Read one case back completely.
pub fn read_case(dir: &Path, case: &str) -> Result<PreprocessedCase> {
    if b2nd_case(dir, case).is_some() {
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
    if let Some((d, s, p)) = b2nd_case(dir, case) {
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

/// `(channels, [d0, d1, d2])` of a stored case, from its array headers.
pub fn stored_shape(dir: &Path, case: &str) -> Result<(usize, [usize; 3])> {
    if let Some((d, s, _)) = b2nd_case(dir, case) {
        let (data, seg) = (crate::blosc2::B2nd::open(&d)?, crate::blosc2::B2nd::open(&s)?);
        return case_shape(&d, data.shape(), seg.shape());
    }
    let (d, s, _) = case_paths(dir, case);
    case_shape(&d, &npy::read_header(&d)?.shape, &npy::read_header(&s)?.shape)
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
            let (data, seg, props) = if b2nd_case(preprocessed_config_dir, id).is_some() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class_locations::{ClassKey, ClassLocations};

    /// (image size, patch size, bytes per voxel, blocks, chunks)
    type Blosc2ParamsCase = ([usize; 4], &'static [usize], usize, [usize; 4], [usize; 4]);

    /// `comp_blosc2_params` of nnU-Net 2.8.1 (printed by Python for these arguments).
    #[test]
    fn blosc2_params_equal_nnunets() {
        #[rustfmt::skip]
        let cases: [Blosc2ParamsCase; 11] = [
            ([1, 36, 50, 35], &[40, 56, 40], 4, [1, 32, 32, 32], [1, 36, 50, 35]),
            ([1, 36, 50, 35], &[40, 56, 40], 2, [1, 36, 50, 35], [1, 36, 50, 35]),
            ([2, 70, 90, 80], &[32, 32, 32], 4, [1, 32, 32, 32], [1, 48, 48, 48]),
            ([1, 512, 512, 400], &[128, 128, 128], 4, [1, 32, 32, 32], [1, 128, 128, 96]),
            ([1, 512, 512, 400], &[128, 128, 128], 2, [1, 64, 32, 32], [1, 192, 128, 128]),
            ([1, 1, 320, 320], &[320, 320], 4, [1, 1, 256, 128], [1, 1, 320, 320]),
            ([3, 1, 1200, 900], &[512, 512], 4, [1, 1, 256, 128], [1, 1, 768, 768]),
            ([1, 123, 423, 645], &[80, 160, 192], 4, [1, 16, 32, 64], [1, 64, 128, 192]),
            ([1, 20, 300, 300], &[16, 256, 256], 2, [1, 8, 128, 64], [1, 20, 300, 300]),
            ([4, 155, 240, 240], &[128, 128, 128], 4, [1, 32, 32, 32], [1, 96, 128, 128]),
            ([1, 7, 9, 11], &[8, 8, 8], 8, [1, 7, 8, 8], [1, 7, 9, 11]),
        ];
        for (image, patch, bpp, blocks, chunks) in cases {
            assert_eq!(comp_blosc2_params(image, patch, bpp).unwrap(), (blocks, chunks), "{image:?} {patch:?} {bpp}");
        }
        assert!(comp_blosc2_params([1, 4, 4, 4], &[4], 4).is_err());
        assert!(comp_blosc2_params([1, 0, 4, 4], &[4, 4, 4], 4).is_err());
    }

    fn props(shape: [usize; 3]) -> CaseProperties {
        let mut p = CaseProperties::uncropped(shape, [2.5, 0.75, 0.8]);
        p.image.sitk_stuff = Some(crate::SitkGeometry { spacing: vec![0.8, 0.75, 2.5], origin: vec![-1.5, 2.0, 30.25], direction: vec![1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0] });
        p.shape_before_cropping = [shape[0] + 2, shape[1], shape[2] + 5];
        p.bbox_used_for_cropping = [[1, shape[0] + 1], [0, shape[1]], [2, shape[2] + 2]];
        p.class_locations = Some(ClassLocations(vec![
            (ClassKey::Label(1), vec![[0, 1, 2, 3], [0, 4, 0, 1]]),
            (ClassKey::Label(2), vec![]),
            (ClassKey::Region(vec![1, 2]), vec![[0, 0, 0, 0]]),
            (ClassKey::Region(vec![3]), vec![[0, 5, 5, 5]]),
        ]));
        p
    }

    /// A case written in nnU-Net's layout reads back equal: arrays, properties (through the pickle), shapes, boxes.
    #[test]
    fn written_cases_read_back_equal() {
        let dir = std::env::temp_dir().join(format!("storage_b2nd_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (k, (channels, shape, patch)) in
            [(2usize, [7usize, 9, 11], vec![4usize, 4, 4]), (1, [1, 40, 33], vec![32, 16]), (1, [36, 50, 35], vec![40, 56, 40])].into_iter().enumerate()
        {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..channels * n).map(|i| (i as f32 * 0.37 + k as f32).sin()).collect();
            let seg: Vec<i16> = (0..n).map(|i| ((i / 5 + k) % 4) as i16 - 1).collect();
            let pc = PreprocessedCase { data, channels, shape, seg, properties: props(shape) };
            let id = format!("case_{k}");
            write_case(&dir, &id, &pc, &patch).unwrap();
            assert_eq!(read_case(&dir, &id).unwrap(), pc, "{id}");
            assert_eq!(stored_shape(&dir, &id).unwrap(), (channels, shape));
            assert_eq!(properties_path(&dir, &id), dir.join(format!("{id}.pkl")));
            let c = open_case(&dir, &id).unwrap();
            assert!(matches!(c.data, CaseArray::B2nd(_)));
            let b = c.seg.read_box_padded::<i16>([-1, 2, 3], [3, 4, 5], -7).unwrap();
            assert_eq!(b[0], -7);
            assert_eq!(b[20], pc.seg[2 * shape[2] + 3], "box element (0, 2, 3)");
        }
        assert_eq!(list_cases(&dir).unwrap(), ["case_0", "case_1", "case_2"]);
        // nothing else is written: the folder is nnU-Net's (Python's infer_dataset_class sees .b2nd and .pkl only)
        let mut names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.retain(|n| !(n.ends_with(".b2nd") || n.ends_with(".pkl")));
        assert!(names.is_empty(), "{names:?}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The frame preprocessing writes equals a plain encode with the filter nnU-Net's rule picks, whether the filter
    /// trial's frame is reused (one chunk covering the case) or not (several chunks).
    #[test]
    fn encode_like_nnunet_equals_encode_with_the_chosen_filter() {
        for (shape, patch) in [([1usize, 12, 20, 16], [16usize, 16, 16]), ([1, 40, 44, 36], [8, 8, 8])] {
            let n: usize = shape.iter().product();
            let bytes: Vec<u8> = (0..n).flat_map(|i| (((i % 97) as f32 * 0.5).round() / 7.0).to_le_bytes()).collect();
            let (blocks, chunks) = comp_blosc2_params(shape, &patch, 4).unwrap();
            let choice = select_filter(&bytes, NpyDtype::F32, &shape, &chunks, &blocks);
            assert_eq!(choice.frame.is_some(), chunks == shape, "{shape:?}: reuse only when one chunk is the case");
            let want = crate::blosc2::write::encode(&bytes, NpyDtype::F32, &shape, &chunks, &blocks, choice.filter).unwrap();
            assert_eq!(encode_like_nnunet(&bytes, NpyDtype::F32, shape, &patch).unwrap(), want, "{shape:?}");
        }
    }

    /// The pickle holds Python's types: int and tuple keys, numpy int64 arrays, tuples for shapes.
    #[test]
    fn properties_pickle_has_pythons_types() {
        let p = props([6, 6, 6]);
        let bytes = crate::pickle::to_bytes(&properties_to_python(&p));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("numpy.core.multiarray\n_reconstruct") && text.contains("i8"));
        let back: CaseProperties = serde_json::from_value(crate::pickle::from_bytes(&bytes).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
