//! nnU-Net's cascade end to end on a small synthetic dataset: the planner (with a small `-gpu_memory_target`) creates
//! `3d_lowres` + `3d_cascade_fullres`; `3d_lowres` is trained with fold `all` (nnU-Net validates every case then, so
//! every case gets its next-stage export), `3d_cascade_fullres` is trained on those exports, and new cases are
//! predicted with `3d_lowres` and then `3d_cascade_fullres -prev_stage_predictions` and evaluated. Networks are shrunk
//! to 4..16 features and the trainer is `nnUNetTrainerDebug` (3 epochs × 10 iterations): flow, formats and geometry
//! are checked, not accuracy.

use nnunet_data::ImageReaderWriter;
use nnunet_data::io::{ImageProperties, SimpleItkIo};
use nnunet_tests::{NnunetDirs, aliases_dir, read_json, run, tempfile_like::TempDir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const DS: &str = "Dataset990_CascadeSynth";
const TR: &str = "nnUNetTrainerDebug";
const S: usize = 40;
const TRAIN: [&str; 4] = ["synth_000", "synth_001", "synth_002", "synth_003"];
const TEST: [&str; 2] = ["synth_100", "synth_101"];

/// A tiny deterministic generator (the test needs no randomness beyond a fixed scene).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn props() -> ImageProperties {
    ImageProperties { sitk_stuff: Some(nnunet_data::SitkGeometry::identity(&[1.0, 1.0, 1.0])), nibabel_stuff: None, spacing: [1.0; 3] }
}

/// A ball (label 1) with a core (label 2) at a random place; intensities 1..250 (no zeros: the crop keeps the whole
/// volume).
fn write_case(image: &Path, label: &Path, seed: u64) {
    let mut r = Lcg(seed);
    let c: Vec<f64> = (0..3).map(|_| 15.0 + 10.0 * r.next()).collect();
    let (r1, r2) = (7.0 + 3.0 * r.next(), 3.0 + 1.5 * r.next());
    let n = S * S * S;
    let (mut img, mut seg) = (vec![0f32; n], vec![0f32; n]);
    for z in 0..S {
        for y in 0..S {
            for x in 0..S {
                let d = ((z as f64 - c[0]).powi(2) + (y as f64 - c[1]).powi(2) + (x as f64 - c[2]).powi(2)).sqrt();
                let l = if d < r2 {
                    2.0
                } else if d < r1 {
                    1.0
                } else {
                    0.0
                };
                let i = (z * S + y) * S + x;
                seg[i] = l;
                img[i] = (60.0 + 70.0 * l as f64 + 50.0 * (r.next() - 0.5)).round().clamp(1.0, 250.0) as f32;
            }
        }
    }
    SimpleItkIo.write_seg(&img, [S, S, S], image, &props()).unwrap();
    SimpleItkIo.write_seg(&seg, [S, S, S], label, &props()).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_seg(p: &Path) -> Vec<f32> {
    SimpleItkIo.read_seg(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).data
}

#[test]
fn cascade_trains_on_lowres_exports_and_predicts() {
    let bin = aliases_dir();
    let work = TempDir::new("nnunet-cascade");
    let dirs = NnunetDirs::new(work.path());
    let env = dirs.env();
    let raw = dirs.raw.join(DS);
    let (inp, gt) = (work.path().join("test_in"), work.path().join("test_gt"));
    for d in [raw.join("imagesTr"), raw.join("labelsTr"), inp.clone(), gt.clone()] {
        std::fs::create_dir_all(d).unwrap();
    }
    for (k, case) in TRAIN.iter().enumerate() {
        write_case(&raw.join(format!("imagesTr/{case}_0000.nii.gz")), &raw.join(format!("labelsTr/{case}.nii.gz")), 100 + k as u64);
    }
    for (k, case) in TEST.iter().enumerate() {
        write_case(&inp.join(format!("{case}_0000.nii.gz")), &gt.join(format!("{case}.nii.gz")), 900 + k as u64);
    }
    let dj = json!({"channel_names": {"0": "MR"}, "labels": {"background": 0, "shell": 1, "core": 2}, "numTraining": 4, "file_ending": ".nii.gz"});
    std::fs::write(raw.join("dataset.json"), serde_json::to_string_pretty(&dj).unwrap()).unwrap();

    // planning with a small GPU memory target: the 3d_fullres patch covers < 25 % of the median image, so nnU-Net's
    // planner adds 3d_lowres (next_stage) and 3d_cascade_fullres
    let r = run(
        &bin.path().join("nnUNetv2_plan_and_preprocess"),
        &["-d", "990", "-gpu_memory_target", "0.02", "-c", "3d_fullres", "3d_lowres", "-np", "2", "-npfp", "2", "--no_pbar"],
        &env,
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let pre = dirs.preprocessed.join(DS);
    let plans_path = pre.join("nnUNetPlans.json");
    let mut plans = read_json(&plans_path);
    let cfgs = plans["configurations"].as_object().unwrap();
    assert_eq!(cfgs.keys().collect::<Vec<_>>(), ["2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"], "{plans}");
    assert_eq!(cfgs["3d_lowres"].as_object().unwrap().keys().next_back().unwrap(), "next_stage");
    assert_eq!(cfgs["3d_lowres"]["next_stage"], json!("3d_cascade_fullres"));
    assert_eq!(cfgs["3d_cascade_fullres"], json!({"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}));
    let lowres_shape: Vec<usize> = serde_json::from_value(cfgs["3d_lowres"]["median_image_size_in_voxels"].clone()).unwrap();
    assert!(lowres_shape.iter().all(|&v| v < S), "lowres data is smaller: {lowres_shape:?}");
    // tiny networks (the planned topology, 4·2^k features)
    for c in ["3d_lowres", "3d_fullres"] {
        let k = &mut plans["configurations"][c]["architecture"]["arch_kwargs"];
        let n = k["n_stages"].as_u64().unwrap() as usize;
        k["features_per_stage"] = json!((0..n).map(|i| 4usize << i).collect::<Vec<_>>());
    }
    std::fs::write(&plans_path, serde_json::to_string_pretty(&plans).unwrap()).unwrap();

    let train = |cfg: &str| run(&bin.path().join("nnUNetv2_train"), &["990", cfg, "all", "-tr", TR, "-device", "cpu"], &env);

    // the cascade stage needs the lowres exports first
    let r = train("3d_cascade_fullres");
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("predicted_next_stage") && r.stderr.contains("not found"), "{}", r.stderr);

    // 3d_lowres, fold all: every case is a validation case and gets its next-stage export
    let r = train("3d_lowres");
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(!pre.join("splits_final.json").exists(), "fold all needs no split file (nnU-Net's do_split)");
    let lowres = dirs.results.join(DS).join(format!("{TR}__nnUNetPlans__3d_lowres"));
    let exports = lowres.join("predicted_next_stage/3d_cascade_fullres");
    for case in TRAIN {
        let (seg, shape) = nnunet_engine::cascade::read_previous_stage_segmentation(&exports, case).unwrap();
        // the next stage's preprocessed shape (3d_fullres data)
        let (_, stored) = nnunet_data::storage::stored_shape(&pre.join("nnUNetPlans_3d_fullres"), case).unwrap();
        assert_eq!(stored, shape, "{case}");
        assert!(seg.iter().all(|&v| (0..=2).contains(&v)));
        // isotropic data, nothing cropped, same target shape: the export equals the exported validation segmentation
        let val = read_seg(&lowres.join(format!("fold_all/validation/{case}.nii.gz")));
        assert!(val.iter().zip(&seg).all(|(&a, &b)| a == b as f32), "{case}: next-stage export differs from the validation output");
    }
    assert!(lowres.join("fold_all/validation/summary.json").exists());
    python_reads_export(&exports.join(format!("{}.b2nd", TRAIN[0])));

    // 3d_cascade_fullres on the exports: image + one-hot of the 2 foreground labels
    let r = train("3d_cascade_fullres");
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("cascade: segmentations of the previous stage from"), "{}", r.stdout);
    let casc = dirs.results.join(DS).join(format!("{TR}__nnUNetPlans__3d_cascade_fullres"));
    let vsum = read_json(&casc.join("fold_all/validation/summary.json"));
    assert_eq!(vsum["metric_per_case"].as_array().unwrap().len(), 4);
    assert!(!casc.join("predicted_next_stage").exists(), "the cascade stage has no next stage");
    assert_eq!(crate::checkpoint_meta(&casc.join("fold_all"), "checkpoint_final").configuration, "3d_cascade_fullres");

    // new cases: 3d_lowres, then 3d_cascade_fullres with the lowres predictions, then evaluation
    let predict = |cfg: &str, out: &Path, extra: &[&str]| {
        let mut a = vec!["-i", s(&inp), "-o", s(out), "-d", "990", "-c", cfg, "-tr", TR, "-f", "all", "-device", "cpu", "--disable_tta"];
        a.extend_from_slice(extra);
        let r = run(&bin.path().join("nnUNetv2_predict"), &a, &env);
        assert_eq!(r.code, 0, "predict {cfg}:\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    };
    let pred_low = work.path().join("pred_lowres");
    predict("3d_lowres", &pred_low, &[]);
    let pred_casc = work.path().join("pred_cascade");
    predict("3d_cascade_fullres", &pred_casc, &["-prev_stage_predictions", s(&pred_low), "--save_probabilities"]);
    let args: Value = read_json(&pred_casc.join("predict_from_raw_data_args.json"));
    assert_eq!(args["folder_with_segs_from_prev_stage"], json!(pred_low.display().to_string()));
    for out in [&pred_low, &pred_casc] {
        for case in TEST {
            let f = out.join(format!("{case}.nii.gz"));
            let img = SimpleItkIo.read_seg(&f).unwrap();
            assert_eq!(img.shape, [S, S, S], "{}", f.display());
            assert!(img.data.iter().all(|&v| (0.0..=2.0).contains(&v)));
        }
        let summary = out.join("summary.json");
        let r = run(&bin.path().join("nnUNetv2_evaluate_simple"), &[s(&gt), s(out), "-l", "1", "2", "-o", s(&summary)], &env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let sm = read_json(&summary);
        assert_eq!(sm["metric_per_case"].as_array().unwrap().len(), 2);
        eprintln!("{}: foreground mean Dice {}", out.display(), sm["foreground_mean"]["Dice"]);
    }

    // the previous stage's segmentation is an input: other previous-stage segmentations change the probabilities
    let empty_prev = work.path().join("prev_empty");
    std::fs::create_dir_all(&empty_prev).unwrap();
    for case in TEST {
        SimpleItkIo.write_seg(&vec![0.0; S * S * S], [S, S, S], &empty_prev.join(format!("{case}.nii.gz")), &props()).unwrap();
    }
    let pred_empty = work.path().join("pred_cascade_empty_prev");
    predict("3d_cascade_fullres", &pred_empty, &["-prev_stage_predictions", s(&empty_prev), "--save_probabilities"]);
    let probs = |d: &PathBuf| nnunet_engine::ensemble::read_npz_probabilities(&d.join(format!("{}.npz", TEST[0]))).unwrap().data;
    let (a, b) = (probs(&pred_casc), probs(&pred_empty));
    assert_eq!(a.len(), 3 * S * S * S);
    assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-4), "the previous-stage one-hot does not reach the network");

    // without the previous stage's predictions the cascade cannot predict
    let r = run(
        &bin.path().join("nnUNetv2_predict"),
        &[
            "-i",
            s(&inp),
            "-o",
            s(&work.path().join("nope")),
            "-d",
            "990",
            "-c",
            "3d_cascade_fullres",
            "-tr",
            TR,
            "-f",
            "all",
            "-device",
            "cpu",
        ],
        &env,
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("-prev_stage_predictions"), "{}", r.stderr);
}

/// With nnU-Net's Python (`$NNUNET_PY`, else this project's development venv; skipped without one): numpy reads the
/// export as nnU-Net's `nnUNetDatasetNumpy.load_case` does (`np.load(file)['seg']`, uint8, 3 axes).
fn python_reads_export(b2nd: &Path) {
    let Some(py) = nnunet_tests::nnunet_python() else {
        eprintln!("skipped the Python check of {}: no nnU-Net Python", b2nd.display());
        return;
    };
    let code = format!(
        "import blosc2; a = blosc2.open({:?}, mode='r'); s = a[...]; print(s.dtype, s.shape, int(s.max()))",
        b2nd.display().to_string()
    );
    let o = std::process::Command::new(&py).args(["-c", &code]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with(&format!("uint8 ({S}, {S}, {S})")), "{out}");
}
