//! `--verify_dataset_integrity` (planning spec §2). Unlike nnU-Net, which stops at the first failed
//! assertion, every problem found is collected and returned.

use crate::dataset::{self, Case};
use crate::error::DataError;
use crate::io::{self, ImageData, ImageReaderWriter};
use nnunet_schema::DatasetJson;
use rayon::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One problem: the file (or folder) concerned and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Everything found by [`verify_dataset_integrity`]. `problems` make the check fail; `warnings` are
/// what nnU-Net only warns about (origin/direction mismatch, stray files, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntegrityReport {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl IntegrityReport {
    fn problem(&mut self, path: impl Into<PathBuf>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
    fn warning(&mut self, path: impl Into<PathBuf>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for IntegrityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "dataset integrity check failed with {} problem(s):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for IntegrityReport {}

fn allclose(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
}

/// Check a raw dataset folder. Returns `Ok(warnings)` if no problem was found, else the full report.
/// `threads` = worker threads for reading the cases (0 = rayon default); `progress(done, total)` is
/// called after each case. Variables in an explicit `dataset` key are expanded with `env`.
pub fn verify_dataset_integrity(
    raw_dataset_dir: &Path,
    threads: usize,
    env: dataset::EnvLookup<'_>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Problem>, IntegrityReport> {
    let mut rep = IntegrityReport::default();
    check(raw_dataset_dir, threads, env, progress, &mut rep);
    if rep.is_ok() {
        Ok(rep.warnings)
    } else {
        Err(rep)
    }
}

fn check(
    root: &Path,
    threads: usize,
    env: dataset::EnvLookup<'_>,
    progress: &(dyn Fn(usize, usize) + Sync),
    rep: &mut IntegrityReport,
) {
    let json_path = root.join("dataset.json");
    if !root.is_dir() {
        rep.problem(root, "dataset folder does not exist");
        return;
    }
    let text = match std::fs::read_to_string(&json_path) {
        Ok(t) => t,
        Err(e) => {
            rep.problem(&json_path, format!("cannot read dataset.json: {e}"));
            return;
        }
    };
    let raw: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            rep.problem(&json_path, format!("invalid JSON: {e}"));
            return;
        }
    };
    let Some(obj) = raw.as_object() else {
        rep.problem(&json_path, "dataset.json is not a JSON object");
        return;
    };
    let has_dataset_key = obj.contains_key("dataset");
    if !has_dataset_key {
        for d in ["imagesTr", "labelsTr"] {
            if !root.join(d).is_dir() {
                rep.problem(root.join(d), "folder is missing");
            }
        }
    }
    let missing: Vec<&str> = ["labels", "channel_names", "numTraining", "file_ending"]
        .into_iter()
        .filter(|k| !obj.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        rep.problem(
            &json_path,
            format!("required keys missing: {}", missing.join(", ")),
        );
    }
    let json: DatasetJson = match serde_json::from_value(raw.clone()) {
        Ok(j) => j,
        Err(e) => {
            if missing.is_empty() {
                rep.problem(&json_path, format!("invalid dataset.json: {e}"));
            }
            return;
        }
    };
    if !rep.problems.is_empty() {
        return; // folders missing: nothing to scan
    }
    let ending = json.file_ending.clone();
    let cases = match dataset::discover_cases(root, &json, env) {
        Ok(c) => c,
        Err(e) => {
            rep.problem(root, format!("cannot list the cases: {e}"));
            return;
        }
    };
    if !has_dataset_key {
        stray_files(root, &ending, rep);
    }
    if cases.is_empty() {
        rep.problem(
            root.join("imagesTr"),
            format!(
                "no training cases found (no file named CASE_XXXX{ending}); the dataset is empty"
            ),
        );
        return;
    }
    if cases.len() != json.num_training {
        rep.problem(
            &json_path,
            format!(
                "numTraining is {} but {} training cases were found",
                json.num_training,
                cases.len()
            ),
        );
    }
    let n_channels = json.channels().len();
    if json.channel_names.is_none() {
        // (already reported as a missing key)
    }
    // files present?
    let mut usable = vec![true; cases.len()];
    for (i, c) in cases.iter().enumerate() {
        if !c.label.is_file() {
            let mut msg = format!("label file of case '{}' is missing", c.id);
            if let Some(alt) = sibling_with_other_ending(&c.label, &ending) {
                msg.push_str(&format!(
                    " (found {alt}: wrong file ending? dataset.json says '{ending}')"
                ));
            }
            rep.problem(&c.label, msg);
            usable[i] = false;
        }
        for img in &c.images {
            if !img.is_file() {
                rep.problem(img, format!("image file of case '{}' is missing", c.id));
                usable[i] = false;
            }
        }
        if c.images.len() != n_channels && n_channels > 0 {
            let expected: Vec<String> = (0..n_channels)
                .map(|k| format!("{}_{k:04}{ending}", c.id))
                .collect();
            let have: Vec<String> = c
                .images
                .iter()
                .map(|p| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            let missing: Vec<&String> = expected.iter().filter(|e| !have.contains(e)).collect();
            let dir = c
                .images
                .first()
                .and_then(|p| p.parent())
                .map(Path::to_path_buf)
                .unwrap_or(root.join("imagesTr"));
            rep.problem(
                if missing.len() == 1 { dir.join(missing[0]) } else { dir },
                format!(
                    "case '{}' has {} channel file(s) but dataset.json names {n_channels} channel(s){}",
                    c.id,
                    c.images.len(),
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!("; missing: {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
                    }
                ),
            );
        } else if n_channels > 0 {
            for (k, p) in c.images.iter().enumerate() {
                let want = format!("{}_{k:04}{ending}", c.id);
                if !has_dataset_key
                    && p.file_name()
                        .map(|n| n.to_string_lossy() != want)
                        .unwrap_or(true)
                {
                    rep.warning(
                        p,
                        format!(
                            "channel {k} of case '{}' is expected to be named {want}",
                            c.id
                        ),
                    );
                }
            }
        }
    }
    // labels
    let expected_labels: Option<Vec<i64>> = match json.label_manager() {
        Ok(lm) => {
            let mut e = lm.expected_label_values();
            e.sort_unstable();
            if e.windows(2).any(|w| w[1] - w[0] != 1) {
                rep.problem(
                    &json_path,
                    format!("labels must be consecutive (0, 1, 2, …), got {e:?}"),
                );
            }
            Some(e)
        }
        Err(m) => {
            rep.problem(&json_path, format!("invalid labels: {m}"));
            None
        }
    };
    // reader: nnU-Net decides with the first image of the first case; here the first readable
    // first-channel file is used so a single broken file is reported once (below), not twice
    let mut reader: Option<Box<dyn ImageReaderWriter>> = None;
    let mut first_error = None;
    for f in cases
        .iter()
        .filter_map(|c| c.images.first().filter(|p| p.is_file()))
    {
        match io::determine_reader_writer(json.reader_writer_override(), &ending, f) {
            Ok(r) => {
                reader = Some(r);
                break;
            }
            Err(e) => {
                first_error.get_or_insert((f.clone(), e.to_string()));
            }
        }
    }
    let reader = match reader {
        Some(r) => r,
        None => {
            if let Some((f, e)) = first_error {
                rep.problem(
                    f,
                    format!("no image reader can read any image of this dataset: {e}"),
                );
            }
            // keep checking the files with the reader the ending implies
            let fallback = io::READER_ORDER.iter().find_map(|n| {
                io::reader_writer_by_name(n)
                    .filter(|r| r.file_endings().contains(&ending.to_lowercase().as_str()))
            });
            match fallback {
                Some(r) => r,
                None => {
                    rep.problem(
                        &json_path,
                        format!("no image reader supports file_ending '{ending}'"),
                    );
                    return;
                }
            }
        }
    };
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(p) => p,
        Err(e) => {
            rep.problem(root, format!("cannot start worker threads: {e}"));
            return;
        }
    };
    let done = AtomicUsize::new(0);
    let total = cases.len();
    let per_case: Vec<IntegrityReport> = pool.install(|| {
        cases
            .par_iter()
            .zip(usable.par_iter())
            .map(|(c, &ok)| {
                let mut r = IntegrityReport::default();
                check_case(
                    &*reader,
                    c,
                    ok,
                    n_channels,
                    expected_labels.as_deref(),
                    &mut r,
                );
                progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
                r
            })
            .collect()
    });
    for r in per_case {
        rep.problems.extend(r.problems);
        rep.warnings.extend(r.warnings);
    }
}

fn sibling_with_other_ending(label: &Path, ending: &str) -> Option<String> {
    let name = label.file_name()?.to_string_lossy().into_owned();
    let stem = name.strip_suffix(ending)?;
    let dir = label.parent()?;
    let rd = std::fs::read_dir(dir).ok()?;
    let mut alts: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != &name && n.starts_with(stem) && n[stem.len()..].starts_with('.'))
        .collect();
    alts.sort();
    alts.into_iter().next()
}

fn stray_files(root: &Path, ending: &str, rep: &mut IntegrityReport) {
    for d in ["imagesTr", "labelsTr"] {
        let Ok(rd) = std::fs::read_dir(root.join(d)) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && !n.ends_with(ending))
            .collect();
        names.sort();
        for n in names {
            rep.warning(
                root.join(d).join(&n),
                format!(
                    "does not end with file_ending '{ending}' and is ignored (wrong file ending?)"
                ),
            );
        }
    }
}

fn read_each(
    reader: &dyn ImageReaderWriter,
    files: &[PathBuf],
    rep: &mut IntegrityReport,
) -> Vec<Option<ImageData>> {
    files
        .iter()
        .map(|f| match reader.read_images(std::slice::from_ref(f)) {
            Ok(d) => Some(d),
            Err(e) => {
                rep.problem(f, format!("cannot be read: {}", strip_path(&e, f)));
                None
            }
        })
        .collect()
}

/// Error text without a leading "path: " (the problem already names the file).
fn strip_path(e: &DataError, f: &Path) -> String {
    let s = e.to_string();
    let prefix = format!("{}: ", f.display());
    s.strip_prefix(&prefix).map(str::to_string).unwrap_or(s)
}

fn non_finite(data: &[f32]) -> (usize, usize) {
    let nan = data.iter().filter(|v| v.is_nan()).count();
    let inf = data.iter().filter(|v| v.is_infinite()).count();
    (nan, inf)
}

fn check_case(
    reader: &dyn ImageReaderWriter,
    c: &Case,
    files_ok: bool,
    n_channels: usize,
    expected_labels: Option<&[i64]>,
    rep: &mut IntegrityReport,
) {
    let existing: Vec<PathBuf> = c.images.iter().filter(|p| p.is_file()).cloned().collect();
    let images = read_each(reader, &existing, rep);
    let seg = if c.label.is_file() {
        read_each(reader, std::slice::from_ref(&c.label), rep)
            .pop()
            .flatten()
    } else {
        None
    };
    // per image file
    for (f, d) in existing.iter().zip(&images) {
        let Some(d) = d else { continue };
        let (nan, inf) = non_finite(&d.data);
        if nan > 0 || inf > 0 {
            rep.problem(
                f,
                format!("image contains {nan} NaN and {inf} infinite voxel(s)"),
            );
        }
    }
    // channels agree with each other
    let read: Vec<(&PathBuf, &ImageData)> = existing
        .iter()
        .zip(&images)
        .filter_map(|(f, d)| d.as_ref().map(|d| (f, d)))
        .collect();
    if let Some((f0, d0)) = read.first() {
        for (f, d) in &read[1..] {
            if d.shape != d0.shape {
                rep.problem(
                    *f,
                    format!(
                        "shape {:?} differs from {:?} of {}",
                        d.shape,
                        d0.shape,
                        f0.display()
                    ),
                );
            } else if !allclose(&d.spacing(), &d0.spacing()) {
                rep.problem(
                    *f,
                    format!(
                        "spacing {:?} differs from {:?} of {}",
                        d.spacing(),
                        d0.spacing(),
                        f0.display()
                    ),
                );
            }
        }
        let total_channels: usize = read.iter().map(|(_, d)| d.channels).sum();
        if files_ok
            && c.images.len() == n_channels
            && read.len() == existing.len()
            && total_channels != n_channels
        {
            rep.problem(
                *f0,
                format!("case '{}' has {total_channels} image channel(s) but dataset.json names {n_channels}", c.id),
            );
        }
    }
    let Some(seg) = seg else { return };
    let (nan, inf) = non_finite(&seg.data);
    if nan > 0 || inf > 0 {
        rep.problem(
            &c.label,
            format!("segmentation contains {nan} NaN and {inf} infinite voxel(s)"),
        );
    }
    if seg.channels != 1 {
        rep.problem(
            &c.label,
            format!(
                "segmentation has {} channels (4-D file?), expected 1",
                seg.channels
            ),
        );
    }
    if let Some(expected) = expected_labels {
        let mut found: Vec<f32> = seg.data.iter().copied().filter(|v| !v.is_nan()).collect();
        found.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        found.dedup();
        let unexpected: Vec<f32> = found
            .into_iter()
            .filter(|&v| !(v.fract() == 0.0 && expected.contains(&(v as i64))))
            .collect();
        if !unexpected.is_empty() {
            rep.problem(
                &c.label,
                format!(
                    "unexpected label value(s) {unexpected:?}; dataset.json allows {expected:?}"
                ),
            );
        }
    }
    if let Some((f0, d0)) = read.first() {
        if d0.shape != seg.shape {
            rep.problem(
                &c.label,
                format!(
                    "segmentation shape {:?} does not match image shape {:?} ({})",
                    seg.shape,
                    d0.shape,
                    f0.display()
                ),
            );
        } else if !allclose(&seg.spacing(), &d0.spacing()) {
            rep.problem(
                &c.label,
                format!(
                    "segmentation spacing {:?} does not match image spacing {:?} ({})",
                    seg.spacing(),
                    d0.spacing(),
                    f0.display()
                ),
            );
        }
        if let (Some(a), Some(b)) = (&d0.properties.sitk_stuff, &seg.properties.sitk_stuff) {
            if !allclose(&a.origin, &b.origin) {
                rep.warning(
                    &c.label,
                    format!(
                        "origin {:?} differs from image origin {:?}",
                        b.origin, a.origin
                    ),
                );
            }
            if !allclose(&a.direction, &b.direction) {
                rep.warning(
                    &c.label,
                    format!(
                        "direction {:?} differs from image direction {:?}",
                        b.direction, a.direction
                    ),
                );
            }
        }
        if let (Some(a), Some(b)) = (&d0.properties.nibabel_stuff, &seg.properties.nibabel_stuff) {
            let fa: Vec<f64> = a.original_affine.iter().flatten().copied().collect();
            let fb: Vec<f64> = b.original_affine.iter().flatten().copied().collect();
            if !allclose(&fa, &fb) {
                rep.warning(&c.label, "affine differs from the image's affine");
            }
        }
    }
}
