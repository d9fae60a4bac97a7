//! The data of nnU-Net's `summary.json` and its exact text.
//!
//! nnU-Net writes `summary.json` with `json.dump(..., sort_keys=True, indent=4)`: every object's keys are sorted
//! (here: struct fields declared in sorted order and `BTreeMap<String, _>`), label keys are `str(label)` and region
//! keys `str(tuple)` (`"(1, 2)"`, `"(2,)"`), per-case counts are ints, means are floats, and NaN is written as the
//! bare token `NaN` (Python's `json` default, not valid JSON). [`summary_to_string`] reproduces that text byte for
//! byte; [`read_summary`] reads it back (NaN included).

use crate::error::{EvalError, Result};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// An evaluated entry: a label (`mask = seg == l`) or a region (`mask = seg ∈ {l1, l2, …}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelOrRegion {
    Label(i64),
    Region(Vec<i64>),
}

impl LabelOrRegion {
    /// nnU-Net's `label_or_region_to_key`: `str(label)` or `str(tuple)`.
    pub fn key(&self) -> String {
        match self {
            LabelOrRegion::Label(l) => l.to_string(),
            LabelOrRegion::Region(r) if r.len() == 1 => format!("({},)", r[0]),
            LabelOrRegion::Region(r) => {
                format!("({})", r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "))
            }
        }
    }

    /// nnU-Net's `key_to_label_or_region`: `int(key)`, else the ints between the parentheses as a region.
    pub fn from_key(key: &str) -> Option<Self> {
        if let Ok(l) = key.trim().parse::<i64>() {
            return Some(LabelOrRegion::Label(l));
        }
        let inner = key.replace(['(', ')'], "");
        let vals: Result<Vec<i64>, _> = inner.split(',').filter(|s| !s.is_empty()).map(|s| s.trim().parse::<i64>()).collect();
        vals.ok().map(LabelOrRegion::Region)
    }

    /// The label values whose voxels form the mask.
    pub fn labels(&self) -> &[i64] {
        match self {
            LabelOrRegion::Label(l) => std::slice::from_ref(l),
            LabelOrRegion::Region(r) => r,
        }
    }

    /// Whether a voxel value belongs to the mask (numpy `seg == l` on float data: exact equality).
    #[inline]
    pub fn contains(&self, v: f32) -> bool {
        self.labels().iter().any(|&l| v == l as f32)
    }

    /// The value as nnU-Net's JSON export writes it (int, or list for a tuple).
    pub fn to_json(&self) -> Value {
        match self {
            LabelOrRegion::Label(l) => Value::from(*l),
            LabelOrRegion::Region(r) => Value::from(r.clone()),
        }
    }
}

impl fmt::Display for LabelOrRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

fn nan_from_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Metrics of one case and one label/region. Field order = nnU-Net's sorted key order.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CaseMetrics {
    /// `2TP / (2TP + FP + FN)`; NaN when `TP + FP + FN == 0`.
    #[serde(deserialize_with = "nan_from_null")]
    pub Dice: f64,
    pub FN: u64,
    pub FP: u64,
    /// `TP / (TP + FP + FN)`; NaN when `TP + FP + FN == 0`.
    #[serde(deserialize_with = "nan_from_null")]
    pub IoU: f64,
    pub TN: u64,
    pub TP: u64,
    pub n_pred: u64,
    pub n_ref: u64,
}

impl CaseMetrics {
    /// nnU-Net's `compute_metrics` from the four counts.
    pub fn from_counts(tp: u64, fp: u64, fn_: u64, tn: u64) -> Self {
        let (dice, iou) = if tp + fp + fn_ == 0 {
            (f64::NAN, f64::NAN)
        } else {
            ((2 * tp) as f64 / (2 * tp + fp + fn_) as f64, tp as f64 / (tp + fp + fn_) as f64)
        };
        CaseMetrics { Dice: dice, FN: fn_, FP: fp, IoU: iou, TN: tn, TP: tp, n_pred: fp + tp, n_ref: fn_ + tp }
    }
}

/// Means (over cases, or over labels for `foreground_mean`): all floats, NaN possible.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanMetrics {
    #[serde(deserialize_with = "nan_from_null")]
    pub Dice: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub FN: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub FP: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub IoU: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub TN: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub TP: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub n_pred: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub n_ref: f64,
}

/// One `metric_per_case` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Keyed by [`LabelOrRegion::key`].
    pub metrics: BTreeMap<String, CaseMetrics>,
    /// `os.path.join(prediction_dir, name)` as given.
    pub prediction_file: String,
    /// `os.path.join(reference_dir, name)` as given.
    pub reference_file: String,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub foreground_mean: MeanMetrics,
    /// Keyed by [`LabelOrRegion::key`], sorted as strings like Python's `sort_keys`.
    pub mean: BTreeMap<String, MeanMetrics>,
    /// In sorted prediction file name order.
    pub metric_per_case: Vec<CaseResult>,
}

/// numpy's pairwise summation (`pairwise_sum` in `loops_utils.h`), used by `np.sum`/`np.mean` on a contiguous
/// float64 array: bit-identical to numpy for any length.
pub fn np_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_pairwise_sum(&a[..n2]) + np_pairwise_sum(&a[n2..])
    }
}

/// `np.mean` of a float64 list (NaN propagates; empty → NaN).
pub fn np_mean(a: &[f64]) -> f64 {
    // `0.0 + pairwise_sum` like numpy's reduction with identity 0
    (0.0 + np_pairwise_sum(a)) / a.len() as f64
}

/// `np.nanmean` of a float64 list: NaN replaced by 0 in place (so the pairwise grouping is numpy's), divided by the
/// number of non-NaN values; all NaN → NaN.
pub fn np_nanmean(a: &[f64]) -> f64 {
    let replaced: Vec<f64> = a.iter().map(|&x| if x.is_nan() { 0.0 } else { x }).collect();
    let count = a.iter().filter(|x| !x.is_nan()).count();
    (0.0 + np_pairwise_sum(&replaced)) / count as f64
}

/// Python's `os.path.join(a, b)` for a relative `b`.
pub fn py_join(a: &str, b: &str) -> String {
    if a.is_empty() || a.ends_with('/') { format!("{a}{b}") } else { format!("{a}/{b}") }
}

const NAN_SENTINEL: &str = "\u{0}NaN";

fn nan_to_sentinel(v: &mut Value) {
    match v {
        Value::Null => *v = Value::String(NAN_SENTINEL.into()),
        Value::Array(a) => a.iter_mut().for_each(nan_to_sentinel),
        Value::Object(m) => m.values_mut().for_each(nan_to_sentinel),
        _ => {}
    }
}

/// Python's `json.dumps(value, indent=4)` text where every NaN float is written `NaN`. `value` must serialise its
/// NaN floats as JSON null (serde_json's behaviour) and contain no genuine nulls.
pub fn to_python_string_with_nan<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut v = serde_json::to_value(value)?;
    nan_to_sentinel(&mut v);
    let text = nnunet_schema::json::to_python_string(&v)?;
    // a file name cannot contain NUL, so the escaped sentinel only ever stands for a NaN
    Ok(text.replace("\"\\u0000NaN\"", "NaN"))
}

/// The exact text nnU-Net's `save_summary_json` writes.
pub fn summary_to_string(summary: &Summary) -> String {
    to_python_string_with_nan(summary).expect("summary serialises")
}

/// Write `summary.json` atomically, byte-identical to nnU-Net's.
pub fn save_summary_json(summary: &Summary, path: &Path) -> Result<()> {
    write_text_atomic(path, &summary_to_string(summary))
}

pub(crate) fn write_text_atomic(path: &Path, text: &str) -> Result<()> {
    Ok(nnunet_schema::json::write_atomic(path, text.as_bytes())?)
}

/// Read a `summary.json` written by nnU-Net or by [`save_summary_json`] (NaN accepted).
pub fn read_summary(path: &Path) -> Result<Summary> {
    nnunet_schema::json::read_json(path).map_err(EvalError::from)
}
