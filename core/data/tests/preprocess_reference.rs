//! Preprocessing equals nnU-Net 2.8.1's `DefaultPreprocessor` on the reference cases
//! (`tests/fixtures/preprocessed/preprocessed_reference.tar.xz`, provenance in
//! `tests/fixtures/preprocessed/README.md`).

mod common;

use nnunet_data::npy;
use nnunet_data::preprocess::{CaseProperties, PreprocessConfig, PreprocessOptions, preprocess_case, preprocess_dataset};
use nnunet_data::{Dataset, NormalizationRegistry, export_preprocessed, storage};
use nnunet_schema::Plans;
use std::path::{Path, PathBuf};

/// Extract the reference arrays; returns (guard, root with `<Dataset>/<configuration>/…`).
fn reference() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let tarball = common::fixtures().join("preprocessed/preprocessed_reference.tar.xz");
    let st = std::process::Command::new("tar").arg("-xJf").arg(&tarball).arg("-C").arg(tmp.path()).status().expect("tar");
    assert!(st.success());
    let root = tmp.path().to_path_buf();
    (tmp, root)
}

fn plans(name: &str) -> Plans {
    nnunet_schema::json::read_json(&common::fixtures().join(name).join("nnUNetPlans.json")).unwrap()
}

#[derive(Debug, Default)]
struct Report {
    max_abs: f64,
    seg_equal: f64,
    coords_identical: bool,
}

/// Compare our case with nnU-Net's `<case>_data.npy`, `_seg.npy`, `_properties.json` in `ref_dir`.
fn compare(ours: &nnunet_data::PreprocessedCase, ref_dir: &Path, case: &str) -> Report {
    let (rd, rds) = npy::read::<f32>(&ref_dir.join(format!("{case}_data.npy"))).unwrap();
    let (rs, rss) = npy::read::<i16>(&ref_dir.join(format!("{case}_seg.npy"))).unwrap();
    assert_eq!(rds, vec![ours.channels, ours.shape[0], ours.shape[1], ours.shape[2]], "{case}: data shape");
    assert_eq!(rss, vec![1, ours.shape[0], ours.shape[1], ours.shape[2]], "{case}: seg shape");
    let max_abs = ours.data.iter().zip(&rd).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
    let eq = ours.seg.iter().zip(&rs).filter(|(a, b)| a == b).count();
    let seg_equal = eq as f64 / rs.len() as f64;
    let rp: CaseProperties = nnunet_schema::json::read_json(&ref_dir.join(format!("{case}_properties.json"))).unwrap();
    let p = &ours.properties;
    assert_eq!(p.image, rp.image, "{case}: reader properties (sitk_stuff, spacing)");
    assert_eq!(p.shape_before_cropping, rp.shape_before_cropping, "{case}: shape_before_cropping");
    assert_eq!(p.bbox_used_for_cropping, rp.bbox_used_for_cropping, "{case}: bbox_used_for_cropping");
    assert_eq!(p.shape_after_cropping_and_before_resampling, rp.shape_after_cropping_and_before_resampling, "{case}: shape after cropping");
    let (ol, rl) = (p.class_locations.as_ref().unwrap(), rp.class_locations.as_ref().unwrap());
    assert_eq!(ol.0.len(), rl.0.len(), "{case}: number of classes");
    let mut coords_identical = true;
    for ((ok, ov), (rk, rv)) in ol.0.iter().zip(&rl.0) {
        assert_eq!(ok, rk, "{case}: class keys");
        assert_eq!(ov.len(), rv.len(), "{case}: class {ok:?} location count");
        coords_identical &= ov == rv;
    }
    Report { max_abs, seg_equal, coords_identical }
}

fn check_dataset(raw_name: &str, fixture: &str, configuration: &str, ref_sub: &str, cases: &[&str]) {
    let (_g, raw) = common::extract(raw_name);
    let (_r, refroot) = reference();
    let ds = Dataset::open(&raw).unwrap();
    let cfg = PreprocessConfig::from_plans(&plans(fixture), configuration, &ds.json).unwrap();
    let reg = NormalizationRegistry::default();
    let ref_dir = refroot.join(fixture).join(ref_sub);
    for &id in cases {
        let case = ds.cases.iter().find(|c| c.id == id).unwrap();
        let t = std::time::Instant::now();
        let pc = preprocess_case(ds.reader(), id, &case.images, Some(&case.label), &cfg, &reg).unwrap();
        let el = t.elapsed();
        let r = compare(&pc, &ref_dir, id);
        eprintln!(
            "{fixture} {configuration} {id}: shape {:?}, data max|Δ| {:.3e}, seg equal {:.4} %, class-location coordinates identical: {} ({el:.2?})",
            pc.shape,
            r.max_abs,
            r.seg_equal * 100.0,
            r.coords_identical
        );
        assert!(r.max_abs <= 1e-3, "{id}: data max |Δ| {}", r.max_abs);
        assert!(r.seg_equal >= 0.999, "{id}: seg equality {}", r.seg_equal);
        if r.seg_equal == 1.0 {
            assert!(r.coords_identical, "{id}: identical seg but different class-location coordinates");
        }
    }
}

#[test]
fn hippocampus_3d_fullres_matches_nnunet() {
    check_dataset(
        "Dataset004_Hippocampus",
        "Dataset004_Hippocampus",
        "3d_fullres",
        "3d_fullres",
        &["hippocampus_001", "hippocampus_003", "hippocampus_004"],
    );
}

#[test]
fn aniso_ct_3d_fullres_matches_nnunet() {
    check_dataset("Dataset201_AnisoCT", "Dataset201_AnisoCT", "3d_fullres", "3d_fullres", &["case_000", "case_001", "case_002"]);
}

#[test]
fn aniso_ct_2d_matches_nnunet() {
    check_dataset("Dataset201_AnisoCT", "Dataset201_AnisoCT", "2d", "2d", &["case_000", "case_002"]);
}

#[test]
fn unknown_normalization_is_a_clear_error() {
    let (_g, raw) = common::extract("Dataset201_AnisoCT");
    let ds = Dataset::open(&raw).unwrap();
    let mut p = plans("Dataset201_AnisoCT");
    p.0["configurations"]["3d_fullres"]["normalization_schemes"] = serde_json::json!(["FancyNormalization"]);
    let out = tempfile::tempdir().unwrap();
    let e = preprocess_dataset(&ds, &p, "3d_fullres", out.path(), &PreprocessOptions::default(), &|_, _| {}).unwrap_err().to_string();
    assert!(e.contains("FancyNormalization") && e.contains("CTNormalization"), "{e}");
    assert!(!out.path().join("nnUNetPlans_3d_fullres").exists());
    let e = PreprocessConfig::from_plans(&p, "3d_lowres", &ds.json).unwrap_err().to_string();
    assert!(e.contains("3d_lowres"), "{e}");
}

/// The whole Dataset201 through `preprocess_dataset` + `export_preprocessed`; the exported reference cases
/// equal nnU-Net's, the folder is replaced on a rerun, gt_segmentations are copied.
#[test]
fn aniso_ct_dataset_and_export() {
    let (_g, raw) = common::extract("Dataset201_AnisoCT");
    let (_r, refroot) = reference();
    let ds = Dataset::open(&raw).unwrap();
    let pre = tempfile::tempdir().unwrap();
    let opts = PreprocessOptions { threads: 2, ..Default::default() };
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let t = std::time::Instant::now();
    let s = preprocess_dataset(&ds, &plans("Dataset201_AnisoCT"), "3d_fullres", pre.path(), &opts, &|d, n| {
        assert!(d >= 1 && d <= n);
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
    .unwrap();
    eprintln!("Dataset201 3d_fullres: {} cases in {:.2?} (2 threads)", s.cases, t.elapsed());
    assert_eq!(calls.into_inner(), 10);
    assert_eq!((s.cases, s.gt_segmentations_copied), (10, 10));
    let dir = pre.path().join("nnUNetPlans_3d_fullres");
    assert_eq!(s.output_dir, dir);
    assert_eq!(storage::list_cases(&dir).unwrap().len(), 10);
    assert!(pre.path().join("gt_segmentations/case_009.nii.gz").is_file());
    // rerun: replaced, nothing left over, gt_segmentations up to date
    std::fs::write(dir.join("stale.txt"), b"x").unwrap();
    let s2 = preprocess_dataset(&ds, &plans("Dataset201_AnisoCT"), "3d_fullres", pre.path(), &opts, &|_, _| {}).unwrap();
    assert_eq!(s2.gt_segmentations_copied, 0);
    assert!(!dir.join("stale.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(pre.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = tempfile::tempdir().unwrap();
    assert_eq!(export_preprocessed(&dir, out.path(), 2, &|_, _| {}).unwrap(), 10);
    let ref_dir = refroot.join("Dataset201_AnisoCT/3d_fullres");
    for id in ["case_000", "case_001", "case_002"] {
        let (d, ds_) = npy::read::<f32>(&out.path().join(format!("{id}_data.npy"))).unwrap();
        let (sg, _) = npy::read::<i16>(&out.path().join(format!("{id}_seg.npy"))).unwrap();
        let props: CaseProperties = nnunet_schema::json::read_json(&out.path().join(format!("{id}_properties.json"))).unwrap();
        let pc = nnunet_data::PreprocessedCase { data: d, channels: ds_[0], shape: [ds_[1], ds_[2], ds_[3]], seg: sg, properties: props };
        let r = compare(&pc, &ref_dir, id);
        assert!(r.max_abs <= 1e-3 && r.seg_equal >= 0.999, "{id}: {r:?}");
        // and the storage reader gives the same case
        assert_eq!(storage::read_case(&dir, id).unwrap(), pc);
    }
}

/// Timing of the full Dataset004 (220 cases, 3d_fullres, 2 threads). Run with
/// `cargo test -p nnunet-data --test preprocess_reference -- --ignored --nocapture`.
#[test]
#[ignore]
fn hippocampus_220_cases_timing() {
    let (_g, raw) = common::extract("Dataset004_Hippocampus");
    let (_r, refroot) = reference();
    let ds = Dataset::open(&raw).unwrap();
    let pre = tempfile::tempdir().unwrap();
    let opts = PreprocessOptions { threads: 2, ..Default::default() };
    let t = std::time::Instant::now();
    let s = preprocess_dataset(&ds, &plans("Dataset004_Hippocampus"), "3d_fullres", pre.path(), &opts, &|_, _| {}).unwrap();
    eprintln!("Dataset004 3d_fullres: {} cases in {:.2?} (2 threads)", s.cases, t.elapsed());
    assert_eq!(s.cases, 220);
    let dir = pre.path().join("nnUNetPlans_3d_fullres");
    for id in ["hippocampus_001", "hippocampus_003", "hippocampus_004"] {
        let pc = storage::read_case(&dir, id).unwrap();
        let r = compare(&pc, &refroot.join("Dataset004_Hippocampus/3d_fullres"), id);
        assert!(r.max_abs <= 1e-3 && r.seg_equal == 1.0 && r.coords_identical, "{id}: {r:?}");
    }
}
