//! `verify_dataset_integrity` on a clean dataset and on deliberately broken copies: every problem
//! must be reported, each naming its file.

mod common;

use nnunet_data::nifti;
use nnunet_data::verify_dataset_integrity;
use std::path::Path;

fn noop(_: usize, _: usize) {}
fn no_env(_: &str) -> Option<String> {
    None
}

/// A 12-case copy of Hippocampus (cases 001..), numTraining adjusted.
fn small_hippocampus(root: &Path) -> std::path::PathBuf {
    let (tmp, full) = common::extract("Dataset004_Hippocampus");
    let dir = root.join("Dataset004_Hippocampus");
    std::fs::create_dir_all(dir.join("imagesTr")).unwrap();
    std::fs::create_dir_all(dir.join("labelsTr")).unwrap();
    let mut ids: Vec<String> = std::fs::read_dir(full.join("labelsTr"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".nii.gz")
                .to_string()
        })
        .collect();
    ids.sort();
    for id in &ids[..12] {
        std::fs::copy(
            full.join(format!("imagesTr/{id}_0000.nii.gz")),
            dir.join(format!("imagesTr/{id}_0000.nii.gz")),
        )
        .unwrap();
        std::fs::copy(
            full.join(format!("labelsTr/{id}.nii.gz")),
            dir.join(format!("labelsTr/{id}.nii.gz")),
        )
        .unwrap();
    }
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("dataset.json")).unwrap()).unwrap();
    json["numTraining"] = 12.into();
    std::fs::write(
        dir.join("dataset.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    drop(tmp);
    dir
}

fn ids(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("labelsTr"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".nii.gz")
                .to_string()
        })
        .collect();
    v.sort();
    v
}

/// Rewrite a NIfTI file through `f(data) -> data` keeping geometry (and optionally a new size).
fn rewrite(
    path: &Path,
    f: impl Fn(&mut Vec<f32>),
    dtype: nifti::NiftiDatatype,
    new_size: Option<Vec<usize>>,
) {
    let img = nifti::read_nifti(path).unwrap();
    let geo = img.itk_geometry(path).unwrap();
    let mut data = img.data.clone();
    f(&mut data);
    let size = new_size.unwrap_or(img.dims.clone());
    data.resize(size.iter().product(), 0.0);
    nifti::write_nifti(path, &data, &size, &geo, dtype).unwrap();
}

#[test]
fn clean_datasets_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_hippocampus(tmp.path());
    let warnings =
        verify_dataset_integrity(&dir, 2, &no_env, &noop).unwrap_or_else(|r| panic!("{r}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let (_t, ct) = common::extract("Dataset201_AnisoCT");
    // Dataset201's labels have another origin than the images: warnings only
    let warnings =
        verify_dataset_integrity(&ct, 2, &no_env, &noop).unwrap_or_else(|r| panic!("{r}"));
    assert!(
        warnings.iter().any(|w| w.message.contains("origin")),
        "{warnings:?}"
    );
}

#[test]
fn all_problems_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_hippocampus(tmp.path());
    let ids = ids(&dir);
    let img = |i: usize| dir.join(format!("imagesTr/{}_0000.nii.gz", ids[i]));
    let lab = |i: usize| dir.join(format!("labelsTr/{}.nii.gz", ids[i]));
    // 0: truncated gzip image
    let b = std::fs::read(img(0)).unwrap();
    std::fs::write(img(0), &b[..b.len() / 3]).unwrap();
    // 1: missing channel file (image removed) → case disappears from the scan only if it was its
    //    only file, so add a second channel to dataset.json instead and give case 2 both channels
    // 2: label value 7
    rewrite(&lab(2), |d| d[100] = 7.0, nifti::NiftiDatatype::U8, None);
    // 3: NaN voxel in the image
    rewrite(
        &img(3),
        |d| d[5] = f32::NAN,
        nifti::NiftiDatatype::F32,
        None,
    );
    // 4: image/label shape mismatch
    let l4 = nifti::read_nifti(&lab(4)).unwrap();
    let mut s = l4.dims.clone();
    s[0] += 1;
    rewrite(&lab(4), |_| {}, nifti::NiftiDatatype::U8, Some(s));
    // 5: label file not gzip-compressed although named .nii.gz
    let raw = nnunet_data::nifti::read_maybe_gz(&lab(5)).unwrap();
    std::fs::write(lab(5), raw).unwrap();
    // 6: label missing, a .nii with the same name exists (wrong file ending)
    let raw = nnunet_data::nifti::read_maybe_gz(&lab(6)).unwrap();
    std::fs::write(dir.join(format!("labelsTr/{}.nii", ids[6])), raw).unwrap();
    std::fs::remove_file(lab(6)).unwrap();
    // 7: second channel present only for case 7, and dataset.json says 2 channels → all other cases
    //    miss channel 0001; case 7's channel 1 has a different shape
    let c1 = dir.join(format!("imagesTr/{}_0001.nii.gz", ids[7]));
    std::fs::copy(img(7), &c1).unwrap();
    let d7 = nifti::read_nifti(&c1).unwrap();
    let mut s = d7.dims.clone();
    s[1] += 2;
    rewrite(&c1, |_| {}, nifti::NiftiDatatype::F32, Some(s));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dataset.json")).unwrap()).unwrap();
    json["channel_names"]["1"] = "T2".into();
    json["numTraining"] = 13.into();
    std::fs::write(
        dir.join("dataset.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();

    let rep = verify_dataset_integrity(&dir, 2, &no_env, &noop).expect_err("must fail");
    let text = rep.to_string();
    let has = |file: &Path, what: &str| {
        rep.problems
            .iter()
            .any(|p| p.path == file && p.message.contains(what))
    };
    assert!(
        has(&dir.join("dataset.json"), "numTraining is 13 but 12"),
        "{text}"
    );
    assert!(has(&img(0), "gzip"), "{text}");
    assert!(has(&lab(2), "unexpected label value(s) [7.0]"), "{text}");
    assert!(has(&img(3), "1 NaN"), "{text}");
    assert!(has(&lab(4), "does not match image shape"), "{text}");
    assert!(has(&lab(5), "not gzip-compressed"), "{text}");
    assert!(
        has(&lab(6), "missing") && text.contains(".nii: wrong file ending"),
        "{text}"
    );
    assert!(has(&c1, "shape"), "{text}");
    // every case but 7 misses channel 0001
    for i in (0..12).filter(|&i| i != 7) {
        let f = dir.join(format!("imagesTr/{}_0001.nii.gz", ids[i]));
        assert!(
            has(&f, "1 channel file(s) but dataset.json names 2"),
            "case {i}: {text}"
        );
    }
    // nothing else: numTraining + 6 broken files + 11 missing channels + case 7's channel shape
    assert_eq!(rep.problems.len(), 1 + 6 + 11 + 1, "{text}");
}

#[test]
fn dataset_json_and_folder_problems() {
    let tmp = tempfile::tempdir().unwrap();
    // no dataset.json
    let empty = tmp.path().join("Dataset999_Empty");
    std::fs::create_dir_all(&empty).unwrap();
    let rep = verify_dataset_integrity(&empty, 1, &no_env, &noop).unwrap_err();
    assert!(rep.problems[0].message.contains("dataset.json"), "{rep}");
    // missing keys + missing folders listed together
    std::fs::write(
        empty.join("dataset.json"),
        r#"{"labels": {"background": 0}}"#,
    )
    .unwrap();
    let rep = verify_dataset_integrity(&empty, 1, &no_env, &noop).unwrap_err();
    let text = rep.to_string();
    assert!(
        text.contains("channel_names, numTraining, file_ending"),
        "{text}"
    );
    assert!(
        text.contains("imagesTr") && text.contains("labelsTr"),
        "{text}"
    );
    // empty dataset + non-consecutive labels
    std::fs::create_dir_all(empty.join("imagesTr")).unwrap();
    std::fs::create_dir_all(empty.join("labelsTr")).unwrap();
    std::fs::write(empty.join("imagesTr/readme.txt"), "x").unwrap();
    std::fs::write(
        empty.join("dataset.json"),
        r#"{"labels": {"background": 0, "a": 2}, "channel_names": {"0": "CT"}, "numTraining": 3, "file_ending": ".nii.gz"}"#,
    )
    .unwrap();
    let rep = verify_dataset_integrity(&empty, 1, &no_env, &noop).unwrap_err();
    assert!(rep.to_string().contains("empty"), "{rep}");
}
