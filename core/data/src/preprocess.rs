//! nnU-Net's `DefaultPreprocessor` (planning spec §7): per case transpose → crop to nonzero →
//! normalize → resample → class locations, and the dataset driver that writes one configuration's
//! `nnUNet_preprocessed/DatasetXXX/<data_identifier>/` folder in this project's storage format
//! (ADR 0005, [`crate::storage`]).

use crate::class_locations::{self, ClassKey, ClassLocations};
use crate::crop::{BBox, crop_to_nonzero};
use crate::dataset::{Case, Dataset};
use crate::error::{DataError, Result};
use crate::io::{self, ImageData, ImageProperties, ImageReaderWriter};
use crate::normalize::{NormalizationContext, NormalizationRegistry};
use crate::resample::{ResampleOptions, compute_new_shape, resample_data_or_seg_to_shape};
use crate::storage;
use nnunet_schema::{DatasetJson, IntensityProperties, Plans};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Everything the preprocessor needs from the plans (one resolved configuration) and dataset.json.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Configuration name (`3d_fullres`, `2d`, …).
    pub configuration: String,
    /// Output folder name (`nnUNetPlans_3d_fullres`).
    pub data_identifier: String,
    /// `plans_name` of the plans (informational).
    pub plans_name: String,
    /// Target spacing in transposed axes; 2 entries for 2-D configurations.
    pub spacing: Vec<f64>,
    /// The configuration's `patch_size` (2 or 3 entries): it sets the Blosc2 chunk and block shapes of the stored cases.
    pub patch_size: Vec<usize>,
    pub transpose_forward: [usize; 3],
    pub normalization_schemes: Vec<String>,
    pub use_mask_for_norm: Vec<bool>,
    /// `foreground_intensity_properties_per_channel` by channel index.
    pub intensity_properties: BTreeMap<usize, IntensityProperties>,
    pub resampling_data: ResampleOptions,
    pub resampling_seg: ResampleOptions,
    /// The plans' `image_reader_writer`.
    pub image_reader_writer: String,
    /// Classes (labels or regions, plus the ignore key) whose locations are sampled.
    pub classes: Vec<ClassKey>,
}

fn cfg_err(configuration: &str, m: impl std::fmt::Display) -> DataError {
    DataError::Preprocess(format!("configuration '{configuration}': {m}"))
}

/// The `ResampleOptions` of a configuration's `fn_key` / `kwargs_key` (e.g. `resampling_fn_data` /
/// `resampling_fn_data_kwargs`); only nnU-Net's `resample_data_or_seg_to_shape` is supported.
pub fn resample_options(cfg: &Map<String, Value>, fn_key: &str, kwargs_key: &str, name: &str) -> Result<ResampleOptions> {
    match cfg.get(fn_key).and_then(Value::as_str) {
        Some("resample_data_or_seg_to_shape") => {}
        Some(other) => return Err(cfg_err(name, format!("{fn_key} '{other}' is not supported (only resample_data_or_seg_to_shape)"))),
        None => return Err(cfg_err(name, format!("missing {fn_key}"))),
    }
    let kw = cfg.get(kwargs_key).and_then(Value::as_object).ok_or_else(|| cfg_err(name, format!("missing {kwargs_key}")))?;
    let mut o = ResampleOptions::default();
    for (k, v) in kw {
        let bad = || cfg_err(name, format!("{kwargs_key}.{k}: unexpected value {v}"));
        match k.as_str() {
            "is_seg" => o.is_seg = v.as_bool().ok_or_else(bad)?,
            "order" => o.order = v.as_u64().filter(|&x| x <= 5).ok_or_else(bad)? as usize,
            "order_z" => o.order_z = v.as_u64().filter(|&x| x <= 5).ok_or_else(bad)? as usize,
            "force_separate_z" => o.force_separate_z = if v.is_null() { None } else { Some(v.as_bool().ok_or_else(bad)?) },
            "separate_z_anisotropy_threshold" => o.separate_z_anisotropy_threshold = v.as_f64().ok_or_else(bad)?,
            _ => return Err(cfg_err(name, format!("{kwargs_key}: unknown argument '{k}'"))),
        }
    }
    Ok(o)
}

impl PreprocessConfig {
    /// Resolve `configuration` of `plans` (inheritance applied) and check that this crate can run it.
    pub fn from_plans(plans: &Plans, configuration: &str, dataset_json: &DatasetJson) -> Result<Self> {
        let name = configuration;
        let cfg = plans.configuration(name).map_err(|e| DataError::Preprocess(e.to_string()))?;
        match cfg.get("preprocessor_name").and_then(Value::as_str) {
            Some("DefaultPreprocessor") | None => {}
            Some(other) => return Err(cfg_err(name, format!("preprocessor '{other}' is not implemented (only DefaultPreprocessor)"))),
        }
        let data_identifier =
            cfg.get("data_identifier").and_then(Value::as_str).ok_or_else(|| cfg_err(name, "missing data_identifier"))?.to_string();
        if data_identifier.is_empty() || data_identifier.contains(['/', '\\']) || data_identifier.starts_with('.') {
            return Err(cfg_err(name, format!("data_identifier '{data_identifier}' is not a plain folder name")));
        }
        let spacing: Vec<f64> = cfg
            .get("spacing")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_f64).collect())
            .filter(|s: &Vec<f64>| (2..=3).contains(&s.len()) && s.iter().all(|&x| x > 0.0))
            .ok_or_else(|| cfg_err(name, "spacing must be a list of 2 or 3 positive numbers"))?;
        let patch_size: Vec<usize> = cfg
            .get("patch_size")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|v| v.as_u64().map(|x| x as usize)).collect())
            .filter(|p: &Vec<usize>| p.len() == spacing.len() && p.iter().all(|&x| x > 0))
            .ok_or_else(|| cfg_err(name, format!("patch_size must be a list of {} positive integers", spacing.len())))?;
        let normalization_schemes: Vec<String> = cfg
            .get("normalization_schemes")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect())
            .ok_or_else(|| cfg_err(name, "normalization_schemes must be a list of names"))?;
        let use_mask_for_norm: Vec<bool> = cfg
            .get("use_mask_for_norm")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_bool).collect())
            .ok_or_else(|| cfg_err(name, "use_mask_for_norm must be a list of booleans"))?;
        if use_mask_for_norm.len() != normalization_schemes.len() {
            return Err(cfg_err(name, "normalization_schemes and use_mask_for_norm differ in length"));
        }
        let transpose_forward = match plans.0.get("transpose_forward") {
            None => [0, 1, 2],
            Some(v) => {
                let t: Vec<usize> =
                    v.as_array().and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect()).unwrap_or_default();
                let mut s = t.clone();
                s.sort_unstable();
                if s != [0, 1, 2] {
                    return Err(DataError::Preprocess(format!("transpose_forward {v} is not a permutation of [0, 1, 2]")));
                }
                [t[0], t[1], t[2]]
            }
        };
        let mut intensity_properties = BTreeMap::new();
        if let Some(m) = plans.0.get("foreground_intensity_properties_per_channel").and_then(Value::as_object) {
            for (k, v) in m {
                let c: usize = k
                    .parse()
                    .map_err(|_| DataError::Preprocess(format!("foreground_intensity_properties_per_channel: bad channel key '{k}'")))?;
                let p: IntensityProperties = serde_json::from_value(v.clone())
                    .map_err(|e| DataError::Preprocess(format!("foreground_intensity_properties_per_channel['{k}']: {e}")))?;
                intensity_properties.insert(c, p);
            }
        }
        let lm = dataset_json.label_manager().map_err(|e| DataError::Preprocess(format!("dataset.json labels: {e}")))?;
        Ok(Self {
            configuration: name.to_string(),
            data_identifier,
            plans_name: plans.plans_name().unwrap_or("").to_string(),
            spacing,
            patch_size,
            transpose_forward,
            normalization_schemes,
            use_mask_for_norm,
            intensity_properties,
            resampling_data: resample_options(&cfg, "resampling_fn_data", "resampling_fn_data_kwargs", name)?,
            resampling_seg: resample_options(&cfg, "resampling_fn_seg", "resampling_fn_seg_kwargs", name)?,
            image_reader_writer: plans.0.get("image_reader_writer").and_then(Value::as_str).unwrap_or("").to_string(),
            classes: class_locations::classes_to_collect(&lm),
        })
    }

    /// Check that every normalization scheme is known to `registry` (so a dataset run fails before
    /// touching any file).
    pub fn check_normalizations(&self, registry: &NormalizationRegistry) -> Result<()> {
        for s in &self.normalization_schemes {
            registry.get(s).map_err(|e| cfg_err(&self.configuration, e))?;
        }
        Ok(())
    }
}

/// The per-case properties nnU-Net pickles (`<case>.pkl`), as JSON (`<case>.json`): the reader's
/// properties (`sitk_stuff` / `nibabel_stuff`, `spacing` = original untransposed reader spacing) plus
/// the cropping geometry (transposed axes) and the class locations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseProperties {
    #[serde(flatten)]
    pub image: ImageProperties,
    pub shape_before_cropping: [usize; 3],
    pub bbox_used_for_cropping: BBox,
    pub shape_after_cropping_and_before_resampling: [usize; 3],
    /// Absent for cases without a segmentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_locations: Option<ClassLocations>,
}

impl CaseProperties {
    /// The properties of a case that was neither cropped nor resampled (shape `shape`, array-order `spacing`, no
    /// geometry from a file): what synthetic cases in tests and benchmarks carry.
    pub fn uncropped(shape: [usize; 3], spacing: [f64; 3]) -> CaseProperties {
        CaseProperties {
            image: crate::ImageProperties { sitk_stuff: None, nibabel_stuff: None, spacing },
            shape_before_cropping: shape,
            bbox_used_for_cropping: [[0, shape[0]], [0, shape[1]], [0, shape[2]]],
            shape_after_cropping_and_before_resampling: shape,
            class_locations: None,
        }
    }
}

/// One preprocessed case.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessedCase {
    /// `(channels, d0, d1, d2)` float32, transposed axes, C order.
    pub data: Vec<f32>,
    pub channels: usize,
    /// Spatial shape after resampling.
    pub shape: [usize; 3],
    /// `(1, d0, d1, d2)`: labels, `-1` outside the nonzero mask.
    pub seg: Vec<i16>,
    pub properties: CaseProperties,
}

/// Permute the spatial axes of a `(c, d0, d1, d2)` array: output axis `k` is input axis `perm[k]`.
pub fn transpose_spatial<T: Copy>(a: &[T], channels: usize, shape: [usize; 3], perm: [usize; 3]) -> (Vec<T>, [usize; 3]) {
    let new_shape = [shape[perm[0]], shape[perm[1]], shape[perm[2]]];
    if perm == [0, 1, 2] {
        return (a.to_vec(), new_shape);
    }
    let in_strides = [shape[1] * shape[2], shape[2], 1];
    let s = [in_strides[perm[0]], in_strides[perm[1]], in_strides[perm[2]]];
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(a.len());
    for c in 0..channels {
        let base = &a[c * n..(c + 1) * n];
        for i in 0..new_shape[0] {
            for j in 0..new_shape[1] {
                let o = i * s[0] + j * s[1];
                out.extend((0..new_shape[2]).map(|k| base[o + k * s[2]]));
            }
        }
    }
    (out, new_shape)
}

/// nnU-Net's `run_case_npy`: preprocess already loaded images (and, for training cases, the
/// segmentation). `case` names the case in errors.
pub fn preprocess_case_arrays(
    case: &str,
    images: &ImageData,
    seg: Option<&ImageData>,
    cfg: &PreprocessConfig,
    registry: &NormalizationRegistry,
) -> Result<PreprocessedCase> {
    let err = |m: String| DataError::Case { case: case.to_string(), message: m };
    let c = images.channels;
    if cfg.normalization_schemes.len() < c {
        return Err(err(format!("{c} image channels but the configuration has {} normalization schemes", cfg.normalization_schemes.len())));
    }
    if let Some(s) = seg
        && (s.shape != images.shape || s.channels != 1)
    {
        return Err(err(format!(
            "segmentation shape {:?} ({} channels) does not match image shape {:?}",
            s.shape, s.channels, images.shape
        )));
    }
    let perm = cfg.transpose_forward;
    let (data, shape) = transpose_spatial(&images.data, c, images.shape, perm);
    let seg_t = seg.map(|s| transpose_spatial(&s.data, 1, s.shape, perm).0);
    let sp = images.properties.spacing;
    let original_spacing = [sp[perm[0]], sp[perm[1]], sp[perm[2]]];

    // crop (also synthesises the seg without a label: 0 inside the mask, -1 outside)
    let cropped = crop_to_nonzero(&data, c, shape, seg_t.as_deref());
    drop(data);
    let cshape = cropped.shape;
    let mut cdata = cropped.data;
    let cseg = cropped.seg;

    let target: Vec<f64> =
        if cfg.spacing.len() == 2 { vec![original_spacing[0], cfg.spacing[0], cfg.spacing[1]] } else { cfg.spacing.clone() };
    let ns = compute_new_shape(&cshape, &original_spacing, &target);
    let new_shape = [ns[0], ns[1], ns[2]];

    // normalize (before resampling, so the nonzero mask matches the image)
    let n: usize = cshape.iter().product();
    for ch in 0..c {
        let scheme = registry.get(&cfg.normalization_schemes[ch]).map_err(err)?;
        let ctx = NormalizationContext {
            use_mask_for_norm: cfg.use_mask_for_norm[ch],
            intensity_properties: cfg.intensity_properties.get(&ch),
            seg: &cseg,
        };
        scheme.run(&mut cdata[ch * n..(ch + 1) * n], &ctx).map_err(|m| err(format!("channel {ch}: {m}")))?;
    }

    let data = resample_data_or_seg_to_shape(&cdata, c, cshape, new_shape, &original_spacing, &target, &cfg.resampling_data);
    drop(cdata);
    let seg_r = resample_data_or_seg_to_shape(&cseg, 1, cshape, new_shape, &original_spacing, &target, &cfg.resampling_seg);
    let mut seg_i = Vec::with_capacity(seg_r.len());
    for &v in &seg_r {
        if !(-32768.0..=32767.0).contains(&v) || v.fract() != 0.0 {
            return Err(err(format!("segmentation value {v} does not fit int16")));
        }
        seg_i.push(v as i16);
    }
    let class_locations = seg.map(|_| class_locations::sample_foreground_locations(&seg_i, new_shape, &cfg.classes));
    Ok(PreprocessedCase {
        data,
        channels: c,
        shape: new_shape,
        seg: seg_i,
        properties: CaseProperties {
            image: images.properties.clone(),
            shape_before_cropping: shape,
            bbox_used_for_cropping: cropped.bbox,
            shape_after_cropping_and_before_resampling: cshape,
            class_locations,
        },
    })
}

/// nnU-Net's `run_case`: read the case's images (and segmentation, if `seg_file` is given) with
/// `reader` and preprocess them.
pub fn preprocess_case(
    reader: &dyn ImageReaderWriter,
    case_id: &str,
    image_files: &[PathBuf],
    seg_file: Option<&Path>,
    cfg: &PreprocessConfig,
    registry: &NormalizationRegistry,
) -> Result<PreprocessedCase> {
    let images = reader.read_images(image_files)?;
    let seg = seg_file.map(|f| reader.read_seg(f)).transpose()?;
    preprocess_case_arrays(case_id, &images, seg.as_ref(), cfg, registry)
}

/// Options of [`preprocess_dataset`].
#[derive(Debug, Clone)]
pub struct PreprocessOptions {
    /// Worker threads (nnU-Net's `-np`); at most this many cases are in memory at once. 0 = one per core.
    pub threads: usize,
    /// Normalization schemes by name (default: nnU-Net's five).
    pub normalizations: NormalizationRegistry,
    /// Copy the raw labels to `gt_segmentations/` (nnU-Net always does).
    pub copy_gt_segmentations: bool,
}

impl Default for PreprocessOptions {
    fn default() -> Self {
        Self { threads: 4, normalizations: NormalizationRegistry::default(), copy_gt_segmentations: true }
    }
}

/// What [`preprocess_dataset`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessSummary {
    pub configuration: String,
    pub data_identifier: String,
    /// `<preprocessed_dataset_dir>/<data_identifier>`.
    pub output_dir: PathBuf,
    pub cases: usize,
    /// Label files copied to `gt_segmentations/` (0 when all were up to date).
    pub gt_segmentations_copied: usize,
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DataError::Preprocess(format!("cannot start {threads} worker threads: {e}")))
}

/// Temp-sibling name unique to this process and call.
fn temp_sibling(dir: &Path, name: &str, tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{tag}-{}-{k}", std::process::id()))
}

/// Replace `final_dir` by the fully written `tmp_dir` (old content removed only after the swap).
pub(crate) fn swap_dir(tmp_dir: &Path, final_dir: &Path) -> Result<()> {
    let parent = final_dir.parent().unwrap_or(Path::new("."));
    let name = final_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let old = if final_dir.exists() {
        let old = temp_sibling(parent, &name, "old");
        std::fs::rename(final_dir, &old).map_err(|e| DataError::io(final_dir, e))?;
        Some(old)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(tmp_dir, final_dir) {
        if let Some(o) = &old {
            let _ = std::fs::rename(o, final_dir);
        }
        return Err(DataError::io(final_dir, e));
    }
    if let Some(o) = old {
        std::fs::remove_dir_all(&o).map_err(|e| DataError::io(&o, e))?;
    }
    Ok(())
}

/// `nnUNetv2_preprocess` for one configuration: preprocess every training case of `dataset` (raw
/// folder: case files and `dataset.json`, whose labels define the class locations) with
/// `configuration` of `plans`, and write `<preprocessed_dataset_dir>/<data_identifier>/` (ADR 0005
/// format; written into a temp sibling and swapped in at the end, so a failure leaves the previous
/// folder untouched) plus `<preprocessed_dataset_dir>/gt_segmentations/<case><file_ending>`.
///
/// `progress(done, total)` is called after each case, from worker threads. Memory: at most
/// `opts.threads` cases are held at once.
pub fn preprocess_dataset(
    dataset: &Dataset,
    plans: &Plans,
    configuration: &str,
    preprocessed_dataset_dir: &Path,
    opts: &PreprocessOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PreprocessSummary> {
    let cfg = PreprocessConfig::from_plans(plans, configuration, &dataset.json)?;
    cfg.check_normalizations(&opts.normalizations)?;
    let owned_reader;
    let reader: &dyn ImageReaderWriter = if cfg.image_reader_writer.is_empty() || cfg.image_reader_writer == dataset.image_reader_writer() {
        dataset.reader()
    } else {
        owned_reader = io::reader_writer_by_name(&cfg.image_reader_writer).ok_or_else(|| {
            DataError::Preprocess(format!("image_reader_writer '{}' of the plans is not implemented", cfg.image_reader_writer))
        })?;
        &*owned_reader
    };
    std::fs::create_dir_all(preprocessed_dataset_dir).map_err(|e| DataError::io(preprocessed_dataset_dir, e))?;
    let final_dir = preprocessed_dataset_dir.join(&cfg.data_identifier);
    let tmp_dir = temp_sibling(preprocessed_dataset_dir, &cfg.data_identifier, "tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(|e| DataError::io(&tmp_dir, e))?;
    let total = dataset.cases.len();
    let done = AtomicUsize::new(0);
    let run = |case: &Case| -> Result<()> {
        let pc = preprocess_case(reader, &case.id, &case.images, Some(&case.label), &cfg, &opts.normalizations)?;
        storage::write_case(&tmp_dir, &case.id, &pc, &cfg.patch_size)?;
        let d = done.fetch_add(1, Ordering::SeqCst) + 1;
        progress(d, total);
        Ok(())
    };
    let pool = pool(opts.threads)?;
    let result = pool.install(|| dataset.cases.par_iter().with_max_len(1).try_for_each(run));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp_dir);
        return Err(e);
    }
    swap_dir(&tmp_dir, &final_dir)?;

    let mut copied = 0;
    if opts.copy_gt_segmentations {
        let gt = preprocessed_dataset_dir.join("gt_segmentations");
        std::fs::create_dir_all(&gt).map_err(|e| DataError::io(&gt, e))?;
        let ending = &dataset.json.file_ending;
        let n = AtomicUsize::new(0);
        pool.install(|| {
            dataset.cases.par_iter().try_for_each(|case| -> Result<()> {
                if storage::copy_if_newer(&case.label, &gt.join(format!("{}{ending}", case.id)))? {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })?;
        copied = n.into_inner();
    }
    Ok(PreprocessSummary {
        configuration: cfg.configuration,
        data_identifier: cfg.data_identifier,
        output_dir: final_dir,
        cases: total,
        gt_segmentations_copied: copied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_axes() {
        // (1, 2, 3, 1) → perm [1, 0, 2] → (1, 3, 2, 1)
        let a = [0, 1, 2, 3, 4, 5];
        let (t, s) = transpose_spatial(&a, 1, [2, 3, 1], [1, 0, 2]);
        assert_eq!(s, [3, 2, 1]);
        assert_eq!(t, vec![0, 3, 1, 4, 2, 5]);
        let (t, s) = transpose_spatial(&a, 1, [1, 2, 3], [2, 1, 0]);
        assert_eq!(s, [3, 2, 1]);
        assert_eq!(t, vec![0, 3, 1, 4, 2, 5]);
    }
}
