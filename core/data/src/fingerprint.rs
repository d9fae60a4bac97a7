//! Fingerprint extraction (planning spec §3), bit-compatible with nnU-Net 2.8.1's
//! `DatasetFingerprintExtractor`.

use crate::crop::crop_to_nonzero;
use crate::dataset::{Case, Dataset};
use crate::error::{DataError, Result};
use crate::io::ImageReaderWriter;
use crate::rng::Mt19937;
use crate::stats::{self, NpFloat};
use nnunet_schema::{Fingerprint, IntensityProperties};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// nnU-Net's `num_foreground_voxels_for_intensitystats` (written `10e7` in the source).
pub const TOTAL_FOREGROUND_SAMPLES: usize = 100_000_000;
/// Seed of the per-case `RandomState`.
pub const SAMPLING_SEED: u32 = 1234;

/// What one case contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseAnalysis {
    pub shape_after_crop: [usize; 3],
    pub spacing: [f64; 3],
    pub relative_size_after_cropping: f64,
    /// Number of foreground voxels (seg > 0 after cropping); 0 → no samples.
    pub num_foreground: usize,
}

/// `analyze_case`: read, crop, and write `num_samples` foreground intensity samples per channel into
/// `out[c]` (each exactly `num_samples` long; left untouched when the case has no foreground).
pub fn analyze_case(
    reader: &dyn ImageReaderWriter,
    case: &Case,
    num_samples: usize,
    expected_channels: usize,
    out: &mut [&mut [f32]],
) -> Result<CaseAnalysis> {
    let err = |m: String| DataError::Case {
        case: case.id.clone(),
        message: m,
    };
    let img = reader.read_images(&case.images)?;
    let seg = reader.read_seg(&case.label)?;
    if img.channels != expected_channels {
        return Err(err(format!(
            "{} image channels, but dataset.json names {expected_channels}",
            img.channels
        )));
    }
    if seg.shape != img.shape || seg.channels != 1 {
        return Err(err(format!(
            "segmentation shape {:?} ({} channel(s)) does not match image shape {:?}",
            seg.shape, seg.channels, img.shape
        )));
    }
    if img.data.iter().any(|v| v.is_nan()) {
        return Err(err("images contain NaN values".into()));
    }
    if seg.data.iter().any(|v| v.is_nan()) {
        return Err(err("segmentation contains NaN values".into()));
    }
    let cropped = crop_to_nonzero(&img.data, img.channels, img.shape, Some(&seg.data));
    let n = cropped.shape.iter().product::<usize>();
    let mask: Vec<usize> = cropped
        .seg
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0.0)
        .map(|(i, _)| i)
        .collect();
    if mask.len() as u64 >= 1 << 32 {
        return Err(err(format!(
            "{} foreground voxels: too many to sample from",
            mask.len()
        )));
    }
    if !mask.is_empty() {
        let mut rs = Mt19937::new(SAMPLING_SEED);
        let mut pixels = Vec::with_capacity(mask.len());
        let mut samples = Vec::with_capacity(num_samples);
        for (c, dst) in out.iter_mut().enumerate().take(img.channels) {
            let ch = &cropped.data[c * n..(c + 1) * n];
            pixels.clear();
            pixels.extend(mask.iter().map(|&i| ch[i]));
            samples.clear();
            rs.choice_with_replacement(&pixels, num_samples, &mut samples);
            dst.copy_from_slice(&samples);
        }
    }
    let before: usize = img.shape.iter().product();
    Ok(CaseAnalysis {
        shape_after_crop: cropped.shape,
        spacing: img.spacing(),
        relative_size_after_cropping: n as f64 / before as f64,
        num_foreground: mask.len(),
    })
}

fn intensity_properties<T: NpFloat>(a: &mut [T]) -> IntensityProperties {
    let mean = stats::mean(a).to_f64();
    let std = stats::std(a).to_f64();
    let (min, max) = stats::min_max(a);
    let p = stats::percentiles(a, &[0.5, 50.0, 99.5]);
    IntensityProperties {
        max: max.to_f64(),
        mean,
        median: p[1],
        min: min.to_f64(),
        percentile_00_5: p[0],
        percentile_99_5: p[2],
        std,
    }
}

/// Extract the dataset fingerprint with `threads` worker threads (0 = rayon's default).
/// `progress(done, total)` is called after each case (from worker threads).
///
/// Memory: the samples of all cases are kept (`len(channel_names)` × 1e8 float32 = 400 MB per
/// channel), as in nnU-Net.
pub fn extract_fingerprint(
    ds: &Dataset,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Fingerprint> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DataError::Fingerprint(format!("cannot start worker threads: {e}")))?;
    pool.install(|| extract_in_pool(ds, progress))
}

fn extract_in_pool(ds: &Dataset, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<Fingerprint> {
    let n_cases = ds.cases.len();
    if n_cases == 0 {
        return Err(DataError::Dataset {
            path: ds.root.clone(),
            message: "no training cases".into(),
        });
    }
    let n_channels = ds.json.channels().len();
    if n_channels == 0 {
        return Err(DataError::Dataset {
            path: ds.root.join("dataset.json"),
            message: "channel_names (or modality) is missing or empty".into(),
        });
    }
    let num_samples = TOTAL_FOREGROUND_SAMPLES / n_cases;
    // samples laid out [channel][case][sample]; each case fills its own slots
    let mut buffers: Vec<Vec<f32>> = (0..n_channels)
        .map(|_| vec![0f32; n_cases * num_samples])
        .collect();
    let mut slots: Vec<Vec<&mut [f32]>> = (0..n_cases)
        .map(|_| Vec::with_capacity(n_channels))
        .collect();
    for buf in buffers.iter_mut() {
        for (case_slots, chunk) in slots.iter_mut().zip(buf.chunks_mut(num_samples.max(1))) {
            case_slots.push(chunk);
        }
    }
    if num_samples == 0 {
        // more than 1e8 cases: nothing is sampled (nnU-Net would sample 0 values per case)
        for s in slots.iter_mut() {
            s.clear();
            s.extend((0..n_channels).map(|_| <&mut [f32]>::default()));
        }
    }
    let done = AtomicUsize::new(0);
    let reader = ds.reader();
    let results: Vec<Result<CaseAnalysis>> = ds
        .cases
        .par_iter()
        .zip(slots.into_par_iter())
        .map(|(case, mut out)| {
            let r = analyze_case(reader, case, num_samples, n_channels, &mut out);
            let d = done.fetch_add(1, Ordering::SeqCst) + 1;
            progress(d, n_cases);
            r
        })
        .collect();
    let results: Vec<CaseAnalysis> = results.into_iter().collect::<Result<_>>()?;

    // drop the slots of cases without foreground (they contributed nothing)
    let has_fg: Vec<bool> = results.iter().map(|r| r.num_foreground > 0).collect();
    if has_fg.iter().all(|&h| !h) {
        return Err(DataError::Fingerprint(
            "no case has any foreground voxel (label > 0): cannot compute intensity statistics"
                .into(),
        ));
    }
    let any_empty = has_fg.iter().any(|&h| !h);
    if any_empty {
        for buf in buffers.iter_mut() {
            let mut w = 0;
            for (i, &h) in has_fg.iter().enumerate() {
                if h {
                    buf.copy_within(i * num_samples..(i + 1) * num_samples, w);
                    w += num_samples;
                }
            }
            buf.truncate(w);
        }
    }
    let mut props = BTreeMap::new();
    for (c, mut buf) in buffers.into_iter().enumerate() {
        let p = if any_empty {
            // numpy: concatenating float32 samples with an empty list gives float64
            let mut b64: Vec<f64> = buf.iter().map(|&v| v as f64).collect();
            drop(buf);
            intensity_properties(&mut b64)
        } else {
            intensity_properties(&mut buf)
        };
        props.insert(c, p);
    }
    let rel: Vec<f64> = results
        .iter()
        .map(|r| r.relative_size_after_cropping)
        .collect();
    Ok(Fingerprint {
        foreground_intensity_properties_per_channel: props,
        median_relative_size_after_cropping: stats::median_f64(&rel),
        shapes_after_crop: results
            .iter()
            .map(|r| r.shape_after_crop.to_vec())
            .collect(),
        spacings: results.iter().map(|r| r.spacing.to_vec()).collect(),
    })
}

/// Write `dataset_fingerprint.json` (sorted keys, 4-space indent, Python float repr) atomically.
pub fn write_fingerprint(path: &std::path::Path, fp: &Fingerprint) -> Result<()> {
    nnunet_schema::json::write_json_atomic(path, fp)?;
    Ok(())
}
