//! nnU-Net plans files (planning spec §6). Kept as an ordered JSON object so that any key nnU-Net
//! (or a user) writes survives a read/write round trip; typed accessors give the fields code needs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A plans file (`nnUNetPlans.json`, `nnUNetResEncUNetMPlans.json`, ...), key order preserved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Plans(pub Map<String, Value>);

/// `nnUNetv2_move_plans_between_datasets` (nnU-Net's `move_plans_between_datasets`): the source dataset's plans made
/// into plans for `target_dataset` named `target_plans`. `dataset_name` becomes the target's, `plans_name` becomes
/// `target_plans`, `image_reader_writer` the reader of the target's images, and — when the plans get another name —
/// every configuration's `data_identifier` is renamed (`<source_plans>_x` → `<target_plans>_x`, anything else is
/// prefixed with `<target_plans>_`) so the two datasets' preprocessed folders do not collide. Everything else (the
/// network topology, patch sizes, spacings, normalisation) is kept: that is the point, for pretraining.
pub fn moved_plans(source: &Plans, source_plans: &str, target_plans: &str, target_dataset: &str, reader_writer: &str) -> Plans {
    let mut p = source.0.clone();
    p.insert("dataset_name".into(), Value::String(target_dataset.into()));
    if target_plans != source_plans
        && let Some(Value::Object(configs)) = p.get_mut("configurations")
    {
        for c in configs.values_mut() {
            if let Some(Value::String(old)) = c.get("data_identifier") {
                let new = match old.strip_prefix(source_plans) {
                    Some(rest) => format!("{target_plans}{rest}"),
                    None => format!("{target_plans}_{old}"),
                };
                c["data_identifier"] = Value::String(new);
            }
        }
    }
    p.insert("image_reader_writer".into(), Value::String(reader_writer.into()));
    p.insert("plans_name".into(), Value::String(target_plans.into()));
    Plans(p)
}

/// Why a configuration could not be resolved (`PlansManager.get_configuration`, spec §6.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigurationError {
    #[error("the plans have no 'configurations' object")]
    NoConfigurations,
    #[error("the configuration '{name}' does not exist in the plans. Valid configuration names are {available:?}")]
    Unknown { name: String, available: Vec<String> },
    #[error("configuration '{child}' inherits from '{parent}', which does not exist. Valid configuration names are {available:?}")]
    UnknownParent { child: String, parent: String, available: Vec<String> },
    #[error("circular dependency detected while resolving configuration inheritance: {}", .chain.join(" -> "))]
    Circular { chain: Vec<String> },
    #[error("configuration '{name}': {message}")]
    Invalid { name: String, message: String },
}

impl Plans {
    /// The `configurations` object, if present.
    pub fn configurations(&self) -> Option<&Map<String, Value>> {
        self.0.get("configurations").and_then(Value::as_object)
    }

    /// Names of all configurations, in file order.
    pub fn configuration_names(&self) -> Vec<String> {
        self.configurations().map(|c| c.keys().cloned().collect()).unwrap_or_default()
    }

    /// `plans_name`, if present.
    pub fn plans_name(&self) -> Option<&str> {
        self.0.get("plans_name").and_then(Value::as_str)
    }

    /// The configuration `name` with `inherits_from` resolved ([`resolve_configuration`]).
    pub fn configuration(&self, name: &str) -> Result<Map<String, Value>, ConfigurationError> {
        resolve_configuration(self, name)
    }

    /// nnU-Net's `save_plans` merge (spec §4.8): configurations of `existing` whose names are not in `self`
    /// are appended after `self`'s own configurations, in their existing order. Everything else of `existing`
    /// (global keys, configurations that `self` also has) is dropped.
    pub fn merge_existing_configurations(&mut self, existing: &Plans) {
        let Some(old) = existing.configurations() else { return };
        let entry = self.0.entry("configurations".to_string()).or_insert_with(|| Value::Object(Map::new()));
        let Some(new) = entry.as_object_mut() else { return };
        for (k, v) in old {
            if !new.contains_key(k) {
                new.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Resolve configuration `name` of `plans` (spec §6.4, `PlansManager._internal_resolve_configuration_inheritance`):
/// resolved(child) = resolved(parent) shallowly updated with the child's own top-level keys (nested objects are
/// replaced, not merged; existing keys keep the parent's position, new keys are appended; the child's
/// `inherits_from` stays). Chains of any length; a cycle or an unknown parent is an error.
pub fn resolve_configuration(plans: &Plans, name: &str) -> Result<Map<String, Value>, ConfigurationError> {
    let configs = plans.configurations().ok_or(ConfigurationError::NoConfigurations)?;
    let available = || configs.keys().cloned().collect::<Vec<_>>();
    let mut chain: Vec<String> = vec![name.to_string()];
    let mut current = name.to_string();
    let mut layers: Vec<&Map<String, Value>> = Vec::new();
    loop {
        let cfg = match configs.get(&current) {
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ConfigurationError::Invalid { name: current, message: "is not a JSON object".into() }),
            None if layers.is_empty() => return Err(ConfigurationError::Unknown { name: current, available: available() }),
            None => {
                return Err(ConfigurationError::UnknownParent {
                    child: chain[chain.len() - 2].clone(),
                    parent: current,
                    available: available(),
                });
            }
        };
        layers.push(cfg);
        match cfg.get("inherits_from") {
            None => break,
            Some(Value::String(parent)) => {
                if chain.iter().any(|c| c == parent) {
                    chain.push(parent.clone());
                    return Err(ConfigurationError::Circular { chain });
                }
                chain.push(parent.clone());
                current = parent.clone();
            }
            Some(other) => {
                return Err(ConfigurationError::Invalid { name: current, message: format!("inherits_from must be a string, got {other}") });
            }
        }
    }
    let mut resolved = layers.pop().expect("at least one layer").clone();
    while let Some(child) = layers.pop() {
        for (k, v) in child {
            resolved.insert(k.clone(), v.clone());
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {

    #[test]
    fn moved_plans_rename_identifiers_like_nnunet() {
        let src: Plans = serde_json::from_str(
            r#"{"dataset_name": "Dataset002_Heart", "plans_name": "nnUNetPlans", "image_reader_writer": "NibabelIOWithReorient",
                "configurations": {"2d": {"data_identifier": "nnUNetPlans_2d", "patch_size": [1, 2]},
                                   "odd": {"data_identifier": "custom_3d"}, "3d_bs4": {"inherits_from": "2d", "batch_size": 4}}}"#,
        )
        .unwrap();
        let m = moved_plans(&src, "nnUNetPlans", "nnUNetPlansFrom2", "Dataset004_Hippocampus", "SimpleITKIO");
        let v = serde_json::to_value(&m.0).unwrap();
        assert_eq!(v["dataset_name"], "Dataset004_Hippocampus");
        assert_eq!(v["plans_name"], "nnUNetPlansFrom2");
        assert_eq!(v["image_reader_writer"], "SimpleITKIO");
        assert_eq!(v["configurations"]["2d"]["data_identifier"], "nnUNetPlansFrom2_2d");
        assert_eq!(v["configurations"]["odd"]["data_identifier"], "nnUNetPlansFrom2_custom_3d");
        assert_eq!(v["configurations"]["3d_bs4"], serde_json::json!({"inherits_from": "2d", "batch_size": 4}));
        assert_eq!(v["configurations"]["2d"]["patch_size"], serde_json::json!([1, 2]));
        // same name: identifiers untouched, the rest still updated
        let same = moved_plans(&src, "nnUNetPlans", "nnUNetPlans", "Dataset004_Hippocampus", "SimpleITKIO");
        assert_eq!(same.0["configurations"]["2d"]["data_identifier"], "nnUNetPlans_2d");
        assert_eq!(same.0["dataset_name"], "Dataset004_Hippocampus");
    }

    use super::*;

    fn plans(s: &str) -> Plans {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn chain_is_shallow_and_ordered() {
        let p = plans(
            r#"{"configurations": {
                "3d_fullres": {"data_identifier": "d", "batch_size": 2, "architecture": {"a": 1, "b": 2}, "batch_dice": true},
                "bs16": {"inherits_from": "3d_fullres", "batch_size": 16, "architecture": {"a": 5}},
                "bs16_nodice": {"inherits_from": "bs16", "batch_dice": false, "extra": 1}
            }}"#,
        );
        let r = resolve_configuration(&p, "bs16_nodice").unwrap();
        let keys: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(keys, ["data_identifier", "batch_size", "architecture", "batch_dice", "inherits_from", "extra"]);
        assert_eq!(r["batch_size"], 16);
        assert_eq!(r["architecture"], serde_json::json!({"a": 5})); // replaced, not merged
        assert_eq!(r["batch_dice"], false);
        assert_eq!(r["inherits_from"], "bs16");
        assert_eq!(r["data_identifier"], "d");
        // a configuration without a parent is returned as is
        assert_eq!(p.configuration("3d_fullres").unwrap()["batch_size"], 2);
    }

    #[test]
    fn unknown_names_and_cycles() {
        let p = plans(
            r#"{"configurations": {
                "a": {"inherits_from": "b"}, "b": {"inherits_from": "c"}, "c": {"inherits_from": "a"},
                "self": {"inherits_from": "self"},
                "orphan": {"inherits_from": "missing"}
            }}"#,
        );
        match resolve_configuration(&p, "a").unwrap_err() {
            ConfigurationError::Circular { chain } => assert_eq!(chain, ["a", "b", "c", "a"]),
            e => panic!("{e}"),
        }
        assert!(matches!(resolve_configuration(&p, "self"), Err(ConfigurationError::Circular { .. })));
        let e = resolve_configuration(&p, "orphan").unwrap_err();
        assert!(matches!(&e, ConfigurationError::UnknownParent { child, parent, .. } if child == "orphan" && parent == "missing"));
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(matches!(resolve_configuration(&p, "nope"), Err(ConfigurationError::Unknown { .. })));
        assert!(matches!(resolve_configuration(&plans("{}"), "a"), Err(ConfigurationError::NoConfigurations)));
    }

    #[test]
    fn merge_keeps_foreign_configurations_after_new_ones() {
        let mut new = plans(r#"{"plans_name": "new", "configurations": {"2d": {"x": 1}, "3d_fullres": {"x": 2}}}"#);
        let old = plans(
            r#"{"plans_name": "old", "configurations": {"3d_lowres": {"y": 0}, "2d": {"x": 9}, "3d_fullres_bs16": {"inherits_from": "3d_fullres"}}}"#,
        );
        new.merge_existing_configurations(&old);
        assert_eq!(new.configuration_names(), ["2d", "3d_fullres", "3d_lowres", "3d_fullres_bs16"]);
        assert_eq!(new.configurations().unwrap()["2d"]["x"], 1);
        assert_eq!(new.plans_name(), Some("new"));
    }
}
