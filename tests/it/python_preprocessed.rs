//! Python nnU-Net's preprocessed data used as it is: a configuration folder written by Python nnU-Net 2.8.1's
//! `nnUNetv2_plan_and_preprocess` (Blosc2 `.b2nd` arrays, pickled properties; `tests/fixtures/python_preprocessed`,
//! 8 of the embedded Hippocampus cases, `scripts/python_preprocessed.sh`) reads back as what our own preprocessing of
//! the same raw cases writes, and `nnUNetv2_train` trains on it, so a user who preprocessed in Python does not
//! preprocess again.

use nnunet_data::storage::{list_cases, open_case, read_case};
use nnunet_tests::{aliases_dir, copy_dir, fixtures, run, tempfile_like::TempDir, tiny_hippocampus};
use serde_json::Value;

const CASES: [&str; 8] = ["001", "003", "004", "006", "007", "008", "011", "017"];

fn python_folder() -> std::path::PathBuf {
    fixtures().join("python_preprocessed/Dataset004_Hippocampus")
}

/// Every case decodes; its data is our preprocessing's within 1e-3, its segmentation and cropping/resampling
/// properties equal ours, and its class locations are the same voxels nnU-Net sampled; patches read from the `.b2nd`
/// files equal crops of the whole case.
#[test]
fn python_preprocessed_cases_read_as_our_preprocessing_writes_them() {
    let work = TempDir::new("nnunet-pyprep-read");
    let dirs = tiny_hippocampus(work.path());
    let ours_dir = dirs.preprocessed.join("Dataset004_Hippocampus/nnUNetPlans_3d_fullres");
    let theirs_dir = python_folder().join("nnUNetPlans_3d_fullres");
    let ids = list_cases(&theirs_dir).unwrap();
    assert_eq!(ids, CASES.map(|c| format!("hippocampus_{c}")));
    let mut worst = 0f32;
    for id in &ids {
        let (a, b) = (read_case(&theirs_dir, id).unwrap(), read_case(&ours_dir, id).unwrap());
        assert_eq!((a.channels, a.shape), (b.channels, b.shape), "{id}");
        let diff = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-3, "{id}: data differs by {diff}");
        worst = worst.max(diff);
        assert_eq!(a.seg, b.seg, "{id}: segmentation");
        let (pa, pb) = (&a.properties, &b.properties);
        assert_eq!(pa.image.spacing, pb.image.spacing, "{id}");
        assert_eq!(pa.shape_before_cropping, pb.shape_before_cropping, "{id}");
        assert_eq!(pa.bbox_used_for_cropping, pb.bbox_used_for_cropping, "{id}");
        assert_eq!(pa.shape_after_cropping_and_before_resampling, pb.shape_after_cropping_and_before_resampling, "{id}");
        assert_eq!(pa.class_locations, pb.class_locations, "{id}: class locations");
        // patch reads, inside and across the borders
        let c = open_case(&theirs_dir, id).unwrap();
        let s = a.shape.map(|v| v as i64);
        for (start, size) in [([0i64, 0, 0], [8usize, 8, 8]), ([-3, 5, s[2] - 6], [10, 12, 9]), ([s[0] - 2, -4, -1], [6, 7, 5])] {
            let patch = c.data.read_box_padded(start, size, 0f32).unwrap();
            let seg = c.seg.read_box_padded(start, size, -1i16).unwrap();
            for (k, (&v, &l)) in patch.iter().zip(&seg).enumerate() {
                let (z, y, x) = ((k / (size[1] * size[2])) as i64, ((k / size[2]) % size[1]) as i64, (k % size[2]) as i64);
                let p = [start[0] + z, start[1] + y, start[2] + x];
                let inside = (0..3).all(|d| p[d] >= 0 && p[d] < s[d]);
                let i = if inside { ((p[0] * s[1] + p[1]) * s[2] + p[2]) as usize } else { usize::MAX };
                assert_eq!(v, if inside { a.data[i] } else { 0.0 }, "{id} {start:?} {p:?}");
                assert_eq!(l, if inside { a.seg[i] } else { -1 }, "{id} {start:?} {p:?}");
            }
        }
    }
    eprintln!("{} Python-preprocessed cases: max |data - ours| = {worst:e}", ids.len());
    // `nnunet export-preprocessed` of the Python folder writes what it writes for ours: the arrays byte for byte,
    // the properties equal as values (our NIfTI reader gives -0.0 where SimpleITK's direction has 0.0)
    let (ea, eb) = (work.path().join("export_theirs"), work.path().join("export_ours"));
    assert_eq!(nnunet_data::export_preprocessed(&theirs_dir, &ea, 2, &|_, _| {}).unwrap(), ids.len());
    nnunet_data::export_preprocessed(&ours_dir, &eb, 2, &|_, _| {}).unwrap();
    for id in &ids {
        for f in [format!("{id}_data.npy"), format!("{id}_seg.npy")] {
            assert!(std::fs::read(ea.join(&f)).unwrap() == std::fs::read(eb.join(&f)).unwrap(), "export of {f} differs");
        }
        let f = format!("{id}_properties.json");
        assert_eq!(nnunet_tests::read_json(&ea.join(&f)), nnunet_tests::read_json(&eb.join(&f)), "export of {f} differs");
    }
}

/// `nnUNetv2_train` on the Python-preprocessed folder (a tiny configuration inheriting its 3d_fullres, fold `all`):
/// trains, validates against Python's `gt_segmentations` and writes the usual outputs.
#[test]
fn training_runs_on_python_preprocessed_data() {
    let bin = aliases_dir();
    let work = TempDir::new("nnunet-pyprep-train");
    let dirs = nnunet_tests::NnunetDirs::new(work.path());
    let pre = dirs.preprocessed.join("Dataset004_Hippocampus");
    copy_dir(&python_folder(), &pre);
    std::fs::create_dir_all(dirs.raw.join("Dataset004_Hippocampus")).unwrap();
    let plans_path = pre.join("nnUNetPlans.json");
    let mut plans: Value = nnunet_tests::read_json(&plans_path);
    plans["configurations"]["3d_tiny"] = nnunet_tests::tiny_configuration();
    std::fs::write(&plans_path, serde_json::to_string_pretty(&plans).unwrap()).unwrap();
    let r = run(&bin.path().join("nnUNetv2_train"), &["4", "3d_tiny", "all", "-tr", "nnUNetTrainerDebug", "-device", "cpu"], &dirs.env());
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let fold = dirs.results.join("Dataset004_Hippocampus/nnUNetTrainerDebug__nnUNetPlans__3d_tiny/fold_all");
    for f in ["checkpoint_final.pth", "debug.json", "progress.png", "validation/summary.json"] {
        assert!(fold.join(f).is_file(), "{f} missing");
    }
    let summary: Value = nnunet_tests::read_json(&fold.join("validation/summary.json"));
    assert_eq!(summary["metric_per_case"].as_array().unwrap().len(), CASES.len());
    for c in CASES {
        assert!(fold.join(format!("validation/hippocampus_{c}.nii.gz")).is_file(), "validation/hippocampus_{c}.nii.gz");
    }
}

/// The other direction: the folder our preprocessing writes is nnU-Net 2.8.1's own layout. It holds only `<case>.b2nd`,
/// `<case>_seg.b2nd` and `<case>.pkl` (what Python's `infer_dataset_class` accepts), with the chunk and block shapes
/// Python nnU-Net gives the same cases. With nnU-Net's Python installed (`$NNUNET_PY`, else /root/nnunet-py),
/// `scripts/python_reads_ours.py` also has Python nnU-Net load every case (data and segmentation bit for bit equal to
/// its own preprocessing, properties equal with Python's types) and draw a batch with its `nnUNetDataLoader`.
#[test]
fn python_nnunet_reads_our_preprocessed_folder() {
    let work = TempDir::new("nnunet-pyprep-ours");
    let dirs = tiny_hippocampus(work.path());
    let ours_dir = dirs.preprocessed.join("Dataset004_Hippocampus/nnUNetPlans_3d_fullres");
    let theirs_dir = python_folder().join("nnUNetPlans_3d_fullres");
    let stray: Vec<String> = std::fs::read_dir(&ours_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !(n.ends_with(".b2nd") || n.ends_with(".pkl")))
        .collect();
    assert!(stray.is_empty(), "files Python nnU-Net would not accept: {stray:?}");
    for c in CASES {
        for f in [format!("hippocampus_{c}.b2nd"), format!("hippocampus_{c}_seg.b2nd")] {
            let (a, b) = (nnunet_data::blosc2::B2nd::open(&ours_dir.join(&f)).unwrap(), nnunet_data::blosc2::B2nd::open(&theirs_dir.join(&f)).unwrap());
            assert_eq!((a.shape(), a.chunkshape(), a.blockshape(), a.dtype()), (b.shape(), b.chunkshape(), b.blockshape(), b.dtype()), "{f}");
        }
    }
    let Some(python) = nnunet_tests::nnunet_python() else {
        eprintln!("no nnU-Net Python (NNUNET_PY): Python nnU-Net's reader not run");
        return;
    };
    let script = fixtures().join("scripts/python_reads_ours.py");
    let out = std::process::Command::new(python).arg(&script).arg(&ours_dir).arg(&theirs_dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.trim_end().ends_with("OK"), "Python nnU-Net did not accept our folder");
}
