//! The cascade (`3d_lowres` → `3d_cascade_fullres`) on the training side (training spec §2.13, §2.14):
//!
//! * the final validation of a configuration with `next_stage` resamples each validation case's logits to the next
//!   stage's preprocessed shape, takes the segmentation and stores it as
//!   `<output_folder_base>/predicted_next_stage/<next_stage>/<case>.b2nd` (nnU-Net 2.8.1's `resample_and_save` for the
//!   Blosc2 dataset class, the one of the folders our preprocessing writes: `nnUNetDatasetBlosc2.save_seg`, `uint8`
//!   (`uint16` from 255 foreground labels on), shape `(d0, d1, d2)` in preprocessed axes, chunks and blocks from
//!   `comp_blosc2_params((1, *shape), patch_size)`);
//! * a configuration with `previous_stage` reads them back from
//!   `<results>/<Dataset>/<Trainer>__<Plans>__<previous_stage>/predicted_next_stage/<configuration>/`
//!   (`folder_with_segs_from_previous_stage`: `<case>.b2nd` as `nnUNetDatasetBlosc2` reads it, including Python
//!   nnU-Net's ZSTD files; the `<case>.npy` / `<case>.npz` of `nnUNetDatasetNumpy` and of earlier versions of this
//!   framework too) and appends their one-hot encoding to the input (`convert_labelmap_to_one_hot` with the foreground
//!   labels).

use crate::inference::segmentation_from_logits;
use nnunet_augment::tensor::round_f64_to_f16;
use nnunet_data::resample::{ResampleOptions, resample_data_or_seg_to_shape_as};
use nnunet_schema::LabelManager;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Sub-folder of a model folder (`output_folder_base`) with the exports for the next stages.
pub const NEXT_STAGE_FOLDER: &str = "predicted_next_stage";

/// Problems with previous-stage segmentations.
#[derive(Debug, thiserror::Error)]
pub enum CascadeError {
    #[error(
        "{path}: previous-stage segmentation not found. The cascade needs the final validation of every fold of the previous \
         stage, trained with the same trainer and plans (their exports go to predicted_next_stage/)"
    )]
    Missing { path: PathBuf },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn format_err(path: &Path, message: impl Into<String>) -> CascadeError {
    CascadeError::Format { path: path.to_path_buf(), message: message.into() }
}

/// `ConfigurationManager.previous_stage_name`.
pub fn previous_stage_name(cfg: &Map<String, Value>) -> Option<String> {
    cfg.get("previous_stage").and_then(Value::as_str).map(str::to_string)
}

/// `ConfigurationManager.next_stage_names`: the `next_stage` key as a list (a string is one name).
pub fn next_stage_names(cfg: &Map<String, Value>) -> Vec<String> {
    match cfg.get("next_stage") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// `folder_with_segs_from_previous_stage` of a run whose model folder is `output_dir`
/// (`<results>/<Dataset>/<Trainer>__<Plans>__<configuration>`): the previous stage's model folder of the same trainer
/// and plans, `predicted_next_stage/<configuration>`.
pub fn previous_stage_folder(
    output_dir: &Path,
    trainer_name: &str,
    plans_name: &str,
    previous_stage: &str,
    configuration: &str,
) -> PathBuf {
    let dataset_dir = output_dir.parent().unwrap_or(Path::new("."));
    dataset_dir.join(format!("{trainer_name}__{plans_name}__{previous_stage}")).join(NEXT_STAGE_FOLDER).join(configuration)
}

/// An integer array of a `.npy` file (any C-ordered little-endian or byte-sized integer dtype), as i16.
fn parse_npy_labels(bytes: &[u8], path: &Path) -> Result<(Vec<i16>, Vec<usize>), CascadeError> {
    let bad = |m: String| format_err(path, format!("not a supported .npy label array: {m}"));
    let hd = nnunet_data::npy::parse_raw_header(bytes).map_err(bad)?;
    if hd.fortran_order {
        return Err(bad("Fortran order".into()));
    }
    let descr = hd.descr.as_str();
    let (kind, size) = match descr {
        "|u1" | "<u1" | "u1" => ('u', 1),
        "|i1" | "<i1" | "i1" | "|b1" => ('i', 1),
        "<u2" | "=u2" => ('u', 2),
        "<i2" | "=i2" => ('i', 2),
        "<u4" | "=u4" => ('u', 4),
        "<i4" | "=i4" => ('i', 4),
        "<u8" | "=u8" => ('u', 8),
        "<i8" | "=i8" => ('i', 8),
        other => return Err(bad(format!("dtype {other} (expected a little-endian integer type)"))),
    };
    let shape = hd.shape;
    let n: usize = shape.iter().product();
    let body = &bytes[hd.data_offset..];
    if body.len() < n * size {
        return Err(bad("data shorter than the shape".into()));
    }
    let mut out = Vec::with_capacity(n);
    for c in body.chunks_exact(size).take(n) {
        let mut w = [0u8; 8];
        w[..size].copy_from_slice(c);
        let v: i64 = match (kind, size) {
            ('u', _) => u64::from_le_bytes(w) as i64,
            ('i', 1) => c[0] as i8 as i64,
            ('i', 2) => i16::from_le_bytes([c[0], c[1]]) as i64,
            ('i', 4) => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            _ => i64::from_le_bytes(w),
        };
        out.push(i16::try_from(v).map_err(|_| bad(format!("label {v} does not fit int16")))?);
    }
    Ok((out, shape))
}

/// The previous stage's segmentation of `case` in `folder`: `<case>.b2nd` (`nnUNetDatasetBlosc2.load_case`), else
/// `<case>.npy`, else `<case>.npz['seg']` (`nnUNetDatasetNumpy`), with its shape (`(d0, d1, d2)`; a leading axis of
/// size 1 is dropped).
pub fn read_previous_stage_segmentation(folder: &Path, case: &str) -> Result<(Vec<i16>, [usize; 3]), CascadeError> {
    let b2nd = folder.join(format!("{case}.b2nd"));
    let npy = folder.join(format!("{case}.npy"));
    let npz = folder.join(format!("{case}.npz"));
    let io = |p: &Path, e: std::io::Error| CascadeError::Io { path: p.to_path_buf(), message: e.to_string() };
    let (path, (seg, shape)) = if b2nd.is_file() {
        let a = nnunet_data::blosc2::B2nd::open(&b2nd).map_err(|e| format_err(&b2nd, e.to_string()))?;
        let seg = a.read_all::<i16>().map_err(|e| format_err(&b2nd, e.to_string()))?;
        (b2nd.clone(), (seg, a.shape().to_vec()))
    } else if npy.is_file() {
        let bytes = std::fs::read(&npy).map_err(|e| io(&npy, e))?;
        (npy.clone(), parse_npy_labels(&bytes, &npy)?)
    } else if npz.is_file() {
        let bytes = std::fs::read(&npz).map_err(|e| io(&npz, e))?;
        let mut entries = crate::ensemble::read_zip_entries(&bytes, &npz).map_err(|e| format_err(&npz, e.to_string()))?;
        let arr = entries
            .remove("seg.npy")
            .or_else(|| entries.remove("seg"))
            .ok_or_else(|| format_err(&npz, format!("no array 'seg' (entries: {:?})", entries.keys().collect::<Vec<_>>())))?;
        (npz.clone(), parse_npy_labels(&arr, &npz)?)
    } else {
        return Err(CascadeError::Missing { path: b2nd });
    };
    let dims: Vec<usize> = if shape.len() == 4 && shape[0] == 1 { shape[1..].to_vec() } else { shape.clone() };
    if dims.len() != 3 {
        return Err(format_err(&path, format!("segmentation of shape {shape:?}: expected 3 spatial axes")));
    }
    Ok((seg, [dims[0], dims[1], dims[2]]))
}

/// Writes `<folder>/<case>.b2nd` as nnU-Net 2.8.1's `resample_and_save` does for the Blosc2 dataset class: `uint8` when
/// there are fewer than 255 foreground labels, else `uint16`, shape `(d0, d1, d2)`, chunks and blocks
/// `comp_blosc2_params((1, *shape), patch_size, bytes per voxel)[1:]` with `patch_size` this configuration's, SHUFFLE
/// (python-blosc2's default filter). Atomic (temp file + rename); an older `<case>.npz` / `<case>.npy` export of the
/// case is removed, so the folder holds one export per case.
pub fn write_next_stage_segmentation(
    folder: &Path,
    case: &str,
    seg: &[u16],
    shape: [usize; 3],
    num_foreground_labels: usize,
    patch_size: &[usize],
) -> Result<PathBuf, CascadeError> {
    use nnunet_data::blosc2::write::{Filter, encode};
    use nnunet_data::npy::NpyDtype;
    let path = folder.join(format!("{case}.b2nd"));
    let wide = num_foreground_labels >= 255;
    let (dtype, bytes): (NpyDtype, Vec<u8>) = if wide {
        (NpyDtype::U16, seg.iter().flat_map(|v| v.to_le_bytes()).collect())
    } else {
        (NpyDtype::U8, seg.iter().map(|&v| v as u8).collect())
    };
    let (blocks, chunks) =
        nnunet_data::storage::comp_blosc2_params([1, shape[0], shape[1], shape[2]], patch_size, dtype.size()).map_err(|e| format_err(&path, e))?;
    let frame = encode(&bytes, dtype, &shape, &chunks[1..], &blocks[1..], Filter::Shuffle).map_err(|e| format_err(&path, e))?;
    nnunet_schema::json::write_atomic(&path, &frame).map_err(|e| CascadeError::Io { path: path.clone(), message: e.to_string() })?;
    for stale in [format!("{case}.npz"), format!("{case}.npy")] {
        let p = folder.join(stale);
        if p.is_file() {
            std::fs::remove_file(&p).map_err(|e| CascadeError::Io { path: p.clone(), message: e.to_string() })?;
        }
    }
    Ok(path)
}

/// `resample_and_save` without the write: `(heads, *shape)` logits in the preprocessed space of this stage resampled
/// to `target_shape` (the next stage's preprocessed shape) with `resampling_fn_probabilities`, current and target
/// spacing both this configuration's (`spacing`, 3 entries), kept in float16, then `convert_logits_to_segmentation`.
pub fn resample_to_next_stage(
    logits: &[f32],
    heads: usize,
    shape: [usize; 3],
    target_shape: [usize; 3],
    spacing: &[f64],
    resampling: &ResampleOptions,
    lm: &LabelManager,
) -> Vec<u16> {
    // the predictor's logits are float16 and resampling keeps the dtype (as in `export_case`)
    let r = resample_data_or_seg_to_shape_as(logits, heads, shape, target_shape, spacing, spacing, resampling, round_f64_to_f16);
    segmentation_from_logits(&r, heads, lm)
}

/// `np.vstack((data, convert_labelmap_to_one_hot(seg, labels)))`: one 0/1 channel per label appended to `data`.
pub fn append_one_hot(data: &mut Vec<f32>, channels: &mut usize, seg: &[i16], labels: &[i64]) {
    data.reserve(labels.len() * seg.len());
    for &l in labels {
        data.extend(seg.iter().map(|&s| if s as i64 == l { 1.0f32 } else { 0.0 }));
    }
    *channels += labels.len();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nnunet-cascade-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn next_stage_names_accept_a_string_or_a_list() {
        let cfg = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(next_stage_names(&cfg(json!({"next_stage": "3d_cascade_fullres"}))), vec!["3d_cascade_fullres"]);
        assert_eq!(next_stage_names(&cfg(json!({"next_stage": ["a", "b"]}))), vec!["a", "b"]);
        assert!(next_stage_names(&cfg(json!({}))).is_empty());
        assert_eq!(previous_stage_name(&cfg(json!({"previous_stage": "3d_lowres"}))).as_deref(), Some("3d_lowres"));
    }

    #[test]
    fn previous_stage_folder_is_next_to_the_model_folder() {
        let out = Path::new("/r/Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_cascade_fullres");
        assert_eq!(
            previous_stage_folder(out, "nnUNetTrainer", "nnUNetPlans", "3d_lowres", "3d_cascade_fullres"),
            Path::new("/r/Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_lowres/predicted_next_stage/3d_cascade_fullres")
        );
    }

    #[test]
    fn exports_read_back_and_b2nd_is_preferred() {
        let d = tmp("rw");
        let seg: Vec<u16> = (0..5 * 6 * 7).map(|i| (i % 3) as u16).collect();
        let p = write_next_stage_segmentation(&d, "case_1", &seg, [5, 6, 7], 2, &[4, 4, 4]).unwrap();
        assert_eq!(p, d.join("case_1.b2nd"));
        let a = nnunet_data::blosc2::B2nd::open(&p).unwrap();
        // nnU-Net's save_seg: uint8, 3 axes, comp_blosc2_params((1, *shape), patch, 1)[1:]
        assert_eq!((a.dtype(), a.shape(), a.chunkshape(), a.blockshape()), (nnunet_data::npy::NpyDtype::U8, &[5, 6, 7][..], &[5, 6, 6][..], &[4, 4, 4][..]));
        let (back, shape) = read_previous_stage_segmentation(&d, "case_1").unwrap();
        assert_eq!(shape, [5, 6, 7]);
        assert_eq!(back, seg.iter().map(|&v| v as i16).collect::<Vec<_>>());
        // uint16 for many labels
        write_next_stage_segmentation(&d, "wide", &[300, 2], [1, 1, 2], 300, &[4, 4, 4]).unwrap();
        assert_eq!(nnunet_data::blosc2::B2nd::open(&d.join("wide.b2nd")).unwrap().dtype(), nnunet_data::npy::NpyDtype::U16);
        assert_eq!(read_previous_stage_segmentation(&d, "wide").unwrap().0, vec![300, 2]);
        // nnUNetDatasetNumpy's files (and earlier versions' exports) are read: .npy before .npz, (1, d0, d1, d2) accepted
        let npy = |v: &[u8], shape: &[usize]| {
            let mut b = nnunet_data::npy::header_bytes(nnunet_data::npy::NpyDtype::U8, shape);
            b.extend_from_slice(v);
            b
        };
        let npz = crate::inference::npz_bytes(&[("seg.npy", &npy(&[1, 2, 0, 1], &[1, 2, 2]))]).unwrap();
        std::fs::write(d.join("old.npz"), npz).unwrap();
        assert_eq!(read_previous_stage_segmentation(&d, "old").unwrap(), (vec![1, 2, 0, 1], [1, 2, 2]));
        std::fs::write(d.join("old.npy"), npy(&[7; 4], &[1, 1, 2, 2])).unwrap();
        assert_eq!(read_previous_stage_segmentation(&d, "old").unwrap(), (vec![7; 4], [1, 2, 2]));
        // a new export replaces them
        write_next_stage_segmentation(&d, "old", &[0, 1, 1, 0], [1, 2, 2], 2, &[4, 4, 4]).unwrap();
        assert!(!d.join("old.npz").exists() && !d.join("old.npy").exists());
        assert_eq!(read_previous_stage_segmentation(&d, "old").unwrap(), (vec![0, 1, 1, 0], [1, 2, 2]));
        // missing cases are reported with their path
        let e = read_previous_stage_segmentation(&d, "nope").unwrap_err().to_string();
        assert!(e.contains("nope.b2nd") && e.contains("not found"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Python nnU-Net's own export (`save_seg`: ZSTD + SHUFFLE, uint8; fixture of nnunet-data's Blosc2 tests) is read.
    #[test]
    fn python_nnunet_exports_are_read() {
        let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures/blosc2");
        let d = tmp("py");
        std::fs::copy(fx.join("save_seg_u8.b2nd"), d.join("case_7.b2nd")).unwrap();
        let (want, shape) = nnunet_data::npy::read::<i16>(&fx.join("save_seg_u8.npy")).unwrap();
        let (seg, s) = read_previous_stage_segmentation(&d, "case_7").unwrap();
        assert_eq!((seg, s.to_vec()), (want, shape));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn one_hot_appends_foreground_channels() {
        let mut data = vec![0.5f32; 4];
        let mut c = 1;
        append_one_hot(&mut data, &mut c, &[0, 1, 2, 1], &[1, 2]);
        assert_eq!(c, 3);
        assert_eq!(data, vec![0.5, 0.5, 0.5, 0.5, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    }
}
