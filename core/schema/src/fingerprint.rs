//! `dataset_fingerprint.json` (planning spec §3). Written with `sort_keys=True`; field order here is sorted.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Foreground intensity statistics of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntensityProperties {
    pub max: f64,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub percentile_00_5: f64,
    pub percentile_99_5: f64,
    pub std: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Channel index as a string ("0", "1", ...) → statistics. Sorted numerically when written.
    #[serde(with = "numeric_keys")]
    pub foreground_intensity_properties_per_channel: BTreeMap<usize, IntensityProperties>,
    pub median_relative_size_after_cropping: f64,
    /// Per case, spatial shape after cropping in array (untransposed) order.
    pub shapes_after_crop: Vec<Vec<usize>>,
    /// Per case, spacing in array (untransposed) order.
    pub spacings: Vec<Vec<f64>>,
}

mod numeric_keys {
    use super::IntensityProperties;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(m: &BTreeMap<usize, IntensityProperties>, s: S) -> Result<S::Ok, S::Error> {
        let v: serde_json::Map<String, serde_json::Value> = m
            .iter()
            .map(|(k, p)| (k.to_string(), serde_json::to_value(p).expect("plain floats")))
            .collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<usize, IntensityProperties>, D::Error> {
        let raw = BTreeMap::<String, IntensityProperties>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| k.parse::<usize>().map(|k| (k, v)).map_err(serde::de::Error::custom))
            .collect()
    }
}
