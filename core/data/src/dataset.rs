//! A raw nnU-Net dataset: `dataset.json`, the training cases (planning spec §1.2) and the
//! image reader/writer chosen for it (§1.4).

use crate::error::{DataError, Result};
use crate::io::{self, ImageReaderWriter};
use nnunet_schema::DatasetJson;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One training case: its channel files (channel order) and its label file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub id: String,
    pub images: Vec<PathBuf>,
    pub label: PathBuf,
}

/// A raw dataset folder (`DatasetXXX_Name/`) opened for planning.
#[derive(Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub json: DatasetJson,
    /// Cases in nnU-Net's canonical order (sorted identifiers, or `dataset` dict order).
    pub cases: Vec<Case>,
    reader: Box<dyn ImageReaderWriter>,
}

/// Environment lookup used to expand `$VAR` / `${VAR}` / `~` in the `dataset` key's paths.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Dataset {
    /// Open `raw_dataset_dir`: read `dataset.json`, list the cases, pick the reader/writer like
    /// nnU-Net (override, else by `file_ending` and by reading the first image of the first case).
    /// Paths in an explicit `dataset` key are not variable-expanded; see [`Dataset::open_with_env`].
    pub fn open(raw_dataset_dir: &Path) -> Result<Self> {
        Self::open_with_env(raw_dataset_dir, &|_| None)
    }

    /// Like [`Dataset::open`], expanding `$VAR`, `${VAR}` and a leading `~` (via `HOME`) in the paths
    /// of an explicit `dataset` key with `env` (the CLI passes `|k| std::env::var(k).ok()`).
    pub fn open_with_env(raw_dataset_dir: &Path, env: EnvLookup<'_>) -> Result<Self> {
        let json_path = raw_dataset_dir.join("dataset.json");
        let json: DatasetJson = nnunet_schema::json::read_json(&json_path)?;
        let cases = discover_cases(raw_dataset_dir, &json, env)?;
        let first = cases
            .first()
            .and_then(|c| c.images.first())
            .ok_or_else(|| DataError::Dataset {
                path: raw_dataset_dir.to_path_buf(),
                message:
                    "no training cases found (imagesTr is empty or no file ends with file_ending)"
                        .into(),
            })?;
        let reader =
            io::determine_reader_writer(json.reader_writer_override(), &json.file_ending, first)?;
        Ok(Self {
            root: raw_dataset_dir.to_path_buf(),
            json,
            cases,
            reader,
        })
    }

    /// The reader/writer used for this dataset.
    pub fn reader(&self) -> &dyn ImageReaderWriter {
        &*self.reader
    }

    /// nnU-Net class name of the reader/writer (the plans' `image_reader_writer`).
    pub fn image_reader_writer(&self) -> &'static str {
        self.reader.name()
    }

    /// Case identifiers in canonical order.
    pub fn identifiers(&self) -> Vec<&str> {
        self.cases.iter().map(|c| c.id.as_str()).collect()
    }
}

/// Sorted names of the plain files in `dir` that end with `suffix` (nnU-Net's `subfiles`).
pub(crate) fn subfiles(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let is_file = entry
            .file_type()
            .map(|t| t.is_file() || t.is_symlink())
            .unwrap_or(false);
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_file && name.ends_with(suffix) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Does `name` equal `{id}_DDDD{ending}` (4 ASCII digits)?
fn is_channel_file(name: &str, id: &str, ending: &str) -> bool {
    let Some(rest) = name.strip_prefix(id).and_then(|r| r.strip_suffix(ending)) else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 5 && b[0] == b'_' && b[1..].iter().all(u8::is_ascii_digit)
}

/// Identifiers in `imagesTr` (nnU-Net's `get_identifiers_from_splitted_dataset_folder`).
pub fn identifiers_in_folder(images_dir: &Path, file_ending: &str) -> Result<Vec<String>> {
    let crop = file_ending.len() + 5;
    let mut ids: Vec<String> = subfiles(images_dir, file_ending)?
        .into_iter()
        .filter(|f| f.len() > crop && f.is_char_boundary(f.len() - crop))
        .map(|f| f[..f.len() - crop].to_string())
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The training cases (§1.2): from the `dataset` key if present, else by scanning `imagesTr`.
pub fn discover_cases(root: &Path, json: &DatasetJson, env: EnvLookup<'_>) -> Result<Vec<Case>> {
    if let Some(ds) = &json.dataset {
        return cases_from_dataset_key(root, ds, env);
    }
    let images_dir = root.join("imagesTr");
    let labels_dir = root.join("labelsTr");
    let ending = &json.file_ending;
    let files = subfiles(&images_dir, ending)?;
    let ids = identifiers_in_folder(&images_dir, ending)?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let images = files
                .iter()
                .filter(|f| is_channel_file(f, &id, ending))
                .map(|f| images_dir.join(f))
                .collect();
            let label = labels_dir.join(format!("{id}{ending}"));
            Case { id, images, label }
        })
        .collect())
}

fn cases_from_dataset_key(
    root: &Path,
    ds: &Map<String, Value>,
    env: EnvLookup<'_>,
) -> Result<Vec<Case>> {
    let bad = |m: String| DataError::Dataset {
        path: root.join("dataset.json"),
        message: m,
    };
    let resolve = |p: &str| {
        let p = expand_vars(p, env);
        let pb = PathBuf::from(&p);
        if pb.is_absolute() { pb } else { root.join(pb) }
    };
    let mut cases = Vec::new();
    for (id, entry) in ds {
        let images = entry
            .get("images")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("dataset['{id}'] has no 'images' list")))?;
        let label = entry
            .get("label")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("dataset['{id}'] has no 'label' path")))?;
        let images = images
            .iter()
            .map(|v| {
                v.as_str()
                    .map(resolve)
                    .ok_or_else(|| bad(format!("dataset['{id}']['images'] holds a non-string")))
            })
            .collect::<Result<Vec<_>>>()?;
        cases.push(Case {
            id: id.clone(),
            images,
            label: resolve(label),
        });
    }
    Ok(cases)
}

/// `os.path.expandvars(os.path.expanduser(p))` with a caller-supplied environment; unknown
/// variables are left unchanged (like Python).
pub fn expand_vars(p: &str, env: EnvLookup<'_>) -> String {
    let mut s = p.to_string();
    if (s == "~" || s.starts_with("~/"))
        && let Some(home) = env("HOME")
    {
        s = format!("{home}{}", &s[1..]);
    }
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            let (name, end) = if chars.get(i + 1) == Some(&'{') {
                match chars[i + 2..].iter().position(|&c| c == '}') {
                    Some(p) => (
                        chars[i + 2..i + 2 + p].iter().collect::<String>(),
                        i + 3 + p,
                    ),
                    None => (String::new(), i + 1),
                }
            } else {
                let n: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                let l = n.chars().count();
                (n, i + 1 + l)
            };
            if !name.is_empty() {
                if let Some(v) = env(&name) {
                    out.push_str(&v);
                    i = end;
                    continue;
                }
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_file_matching() {
        assert!(is_channel_file("case_1_0000.nii.gz", "case_1", ".nii.gz"));
        assert!(!is_channel_file("case_10_0000.nii.gz", "case_1", ".nii.gz"));
        assert!(!is_channel_file("case_1_000a.nii.gz", "case_1", ".nii.gz"));
        assert!(!is_channel_file("case_1_00000.nii.gz", "case_1", ".nii.gz"));
    }

    #[test]
    fn expands_variables() {
        let env = |k: &str| match k {
            "DATA" => Some("/d".to_string()),
            "HOME" => Some("/h".to_string()),
            _ => None,
        };
        assert_eq!(
            expand_vars("$DATA/x_${DATA}/$NOPE/y", &env),
            "/d/x_/d/$NOPE/y"
        );
        assert_eq!(expand_vars("~/a", &env), "/h/a");
    }
}
