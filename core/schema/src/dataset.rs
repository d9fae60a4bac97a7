//! `dataset.json` of a raw nnU-Net dataset (planning spec §1.3) and the label sets derived from it
//! (`LabelManager`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A value of the `labels` dict: a plain label or a region (a list of labels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    Single(i64),
    Region(Vec<i64>),
}

impl LabelValue {
    pub fn values(&self) -> Vec<i64> {
        match self {
            LabelValue::Single(v) => vec![*v],
            LabelValue::Region(v) => v.clone(),
        }
    }
}

/// An explicit case entry of the optional `dataset` key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseFiles {
    pub images: Vec<String>,
    pub label: String,
}

/// `dataset.json`. Unknown keys are kept in `extra` (in file order) so a copy round-trips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetJson {
    /// `{"0": "CT", ...}`; the order of the values is the channel order. Legacy files use `modality`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_names: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<Map<String, Value>>,
    pub labels: Map<String, Value>,
    #[serde(rename = "numTraining")]
    pub num_training: usize,
    pub file_ending: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions_class_order: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite_image_reader_writer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DatasetJson {
    /// Channel names in channel order (`channel_names`, else the legacy `modality`).
    pub fn channels(&self) -> Vec<String> {
        let m = self.channel_names.as_ref().or(self.modality.as_ref());
        m.map(|m| m.values().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect())
            .unwrap_or_default()
    }

    /// The reader/writer named by `overwrite_image_reader_writer` (`"None"` counts as absent).
    pub fn reader_writer_override(&self) -> Option<&str> {
        self.overwrite_image_reader_writer.as_deref().filter(|s| *s != "None")
    }

    /// Build the label manager, checking the rules of nnU-Net's `LabelManager`.
    pub fn label_manager(&self) -> Result<LabelManager, String> {
        LabelManager::new(&self.labels, self.regions_class_order.as_deref())
    }
}

/// nnU-Net's `LabelManager`: label sets derived from `labels`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelManager {
    /// Sorted unique label ints of every value except `ignore` (regions flattened).
    pub all_labels: Vec<i64>,
    /// Regions (non-background, non-ignore values) when the dataset is region based.
    pub regions: Option<Vec<Vec<i64>>>,
    pub ignore_label: Option<i64>,
    pub regions_class_order: Option<Vec<i64>>,
}

impl LabelManager {
    pub fn new(labels: &Map<String, Value>, regions_class_order: Option<&[i64]>) -> Result<Self, String> {
        let mut problems = Vec::new();
        let mut all = Vec::new();
        let mut ignore = None;
        let mut has_regions = false;
        let mut region_list = Vec::new();
        for (name, v) in labels {
            let parsed: Result<LabelValue, _> = serde_json::from_value(v.clone());
            let Ok(lv) = parsed else {
                problems.push(format!("label '{name}': value {v} is neither an int nor a list of ints"));
                continue;
            };
            if name == "ignore" {
                match lv {
                    LabelValue::Single(i) => ignore = Some(i),
                    _ => problems.push("the ignore label must be an int".to_string()),
                }
                continue;
            }
            if name == "background" && lv != LabelValue::Single(0) {
                problems.push(format!("background must be the int 0, got {v}"));
            }
            if let LabelValue::Region(r) = &lv
                && r.len() > 1
            {
                has_regions = true;
            }
            let vals = lv.values();
            if !(vals.len() == 1 && vals[0] == 0) {
                region_list.push(vals.clone());
            }
            all.extend(vals);
        }
        if !labels.contains_key("background") {
            problems.push("labels must contain 'background': 0".to_string());
        }
        all.sort_unstable();
        all.dedup();
        if let Some(i) = ignore {
            let max = all.iter().copied().max().unwrap_or(0);
            if i != max + 1 {
                problems.push(format!("the ignore label must be max(labels)+1 = {}, got {i}", max + 1));
            }
        }
        let regions = if has_regions {
            match regions_class_order {
                None => problems.push("labels define regions but regions_class_order is missing".to_string()),
                Some(o) if o.len() != region_list.len() => problems.push(format!(
                    "regions_class_order has {} entries but there are {} non-background regions",
                    o.len(),
                    region_list.len()
                )),
                _ => {}
            }
            Some(region_list)
        } else {
            None
        };
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Self { all_labels: all, regions, ignore_label: ignore, regions_class_order: regions_class_order.map(|o| o.to_vec()) })
    }

    pub fn has_regions(&self) -> bool {
        self.regions.is_some()
    }

    pub fn foreground_labels(&self) -> Vec<i64> {
        self.all_labels.iter().copied().filter(|&l| l != 0).collect()
    }

    /// Output channels of the network: number of regions, else number of labels.
    pub fn num_segmentation_heads(&self) -> usize {
        match &self.regions {
            Some(r) => r.len(),
            None => self.all_labels.len(),
        }
    }

    /// Labels a segmentation file may contain: all labels plus the ignore label.
    pub fn expected_label_values(&self) -> Vec<i64> {
        let mut v = self.all_labels.clone();
        if let Some(i) = self.ignore_label {
            v.push(i);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn plain_labels() {
        let lm = LabelManager::new(&labels(r#"{"background":0,"a":1,"b":2}"#), None).unwrap();
        assert_eq!(lm.all_labels, vec![0, 1, 2]);
        assert_eq!(lm.num_segmentation_heads(), 3);
        assert!(!lm.has_regions());
    }

    #[test]
    fn regions_and_ignore() {
        let l = labels(r#"{"background":0,"wt":[1,2,3],"tc":[2,3],"et":3,"ignore":4}"#);
        let lm = LabelManager::new(&l, Some(&[1, 2, 3])).unwrap();
        assert_eq!(lm.all_labels, vec![0, 1, 2, 3]);
        assert_eq!(lm.num_segmentation_heads(), 3);
        assert_eq!(lm.ignore_label, Some(4));
        assert_eq!(lm.expected_label_values(), vec![0, 1, 2, 3, 4]);
        assert!(LabelManager::new(&l, None).is_err());
    }

    #[test]
    fn bad_ignore_and_missing_background() {
        let err = LabelManager::new(&labels(r#"{"a":1,"ignore":5}"#), None).unwrap_err();
        assert!(err.contains("background"), "{err}");
        assert!(err.contains("ignore"), "{err}");
    }
}
