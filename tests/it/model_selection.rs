//! `nnUNetv2_accumulate_crossval_results`, `nnUNetv2_find_best_configuration` and `nnUNetv2_ensemble` on synthesized
//! trained-model folders (no training): the demo dataset's labels are the references; two "models" (3d_fullres,
//! 2d) predict deterministic perturbations of them with smoothed one-hot probabilities, written in the format of
//! this project's predictor / validation export (`.nii.gz`, `.npz`, `.pkl`, `.json`).
//!
//! The outputs are compared with what nnU-Net 2.8.1 wrote for the same tree (`tests/fixtures/model_selection/`,
//! made by its `nnunet_reference.py`); where nnU-Net's Python is installed the comparison is also run live. Text
//! files (summary.json, postprocessing.json, inference_information.json, inference_instructions.txt, dataset.json)
//! must be byte-identical, segmentations voxel-identical, probabilities bit-identical, pickles equal once read.

use nnunet_data::io::{ImageReaderWriter, reader_writer_by_name};
use nnunet_data::preprocess::CaseProperties;
use nnunet_tests::{Run, aliases_dir, fixtures, repo_root, tempfile_like::TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const DS: &str = "Dataset004_Hippocampus";
const MODEL_A: &str = "nnUNetTrainer__nnUNetPlans__3d_fullres";
const MODEL_B: &str = "nnUNetTrainer__nnUNetPlans__2d";
const N_CASES: usize = 10;

/// The steps of `nnunet_reference.py`, in order: (name, command, arguments).
const STEPS: [(&str, &str, &[&str]); 5] = [
    ("accumulate", "nnUNetv2_accumulate_crossval_results", &[DS, "-c", "3d_fullres", "-f", "0", "1", "-o", "acc_3d_f01"]),
    ("noens", "nnUNetv2_find_best_configuration", &[DS, "-c", "3d_fullres", "2d", "-np", "2", "--disable_ensembling"]),
    ("ens", "nnUNetv2_find_best_configuration", &[DS, "-c", "3d_fullres", "2d", "-np", "2"]),
    ("ensemble", "nnUNetv2_ensemble", &["-i", "pred_a", "pred_b", "-o", "ens_ab", "--save_npz", "-np", "2"]),
    ("ensemble2", "nnUNetv2_ensemble", &["-i", "ens_ab", "pred_a", "-o", "ens_nn_a", "-np", "2"]),
];

fn demo() -> PathBuf {
    repo_root().join("examples/data").join(DS)
}

fn committed() -> PathBuf {
    fixtures().join("model_selection/expected")
}

fn rw() -> Box<dyn ImageReaderWriter> {
    reader_writer_by_name("SimpleITKIO").expect("SimpleITKIO")
}

fn case_ids() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(demo().join("labelsTr"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".nii.gz").to_string())
        .collect();
    ids.sort();
    ids.truncate(N_CASES);
    ids
}

/// Probabilities `(3, n)` of synthetic model `a` (true) or `b` (false) for one case; the segmentation is their
/// argmax. Both models are uncertain and wrong where `y < s1/4` (foreground → background); model a mislabels label
/// 2 as 1 in the lower half of axis 0 (low confidence) and adds a confident false-positive label-1 blob in the
/// first corner of even cases; model b mislabels label 1 as 2 in the upper half (low confidence), erodes label 2
/// (its boundary → background) and adds a false-positive label-2 blob in the last corner of odd cases.
fn synthetic_probabilities(labels: &[f32], s: [usize; 3], model_a: bool, case_index: usize) -> Vec<f32> {
    let n = labels.len();
    let mut p = vec![0f32; 3 * n];
    let at = |z: usize, y: usize, x: usize| labels[(z * s[1] + y) * s[2] + x] as usize;
    for z in 0..s[0] {
        for y in 0..s[1] {
            for x in 0..s[2] {
                let v = (z * s[1] + y) * s[2] + x;
                let l = at(z, y, x);
                let mut q = [0.05f32; 3];
                q[l] = 0.9;
                let boundary = l == 2
                    && [(-1i64, 0i64, 0i64), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)].iter().any(|&(dz, dy, dx)| {
                        let (zz, yy, xx) = (z as i64 + dz, y as i64 + dy, x as i64 + dx);
                        zz < 0
                            || yy < 0
                            || xx < 0
                            || zz >= s[0] as i64
                            || yy >= s[1] as i64
                            || xx >= s[2] as i64
                            || at(zz as usize, yy as usize, xx as usize) != 2
                    });
                if l > 0 && y < s[1] / 4 {
                    q = [0.6, 0.05, 0.05];
                    q[l] = 0.35;
                } else if model_a {
                    if z < s[0] / 2 && l == 2 {
                        q = [0.1, 0.5, 0.4];
                    } else if case_index.is_multiple_of(2) && l == 0 && z < 3 && y < 3 && x < 3 {
                        q = [0.1, 0.8, 0.1];
                    }
                } else if z >= s[0] / 2 && l == 1 {
                    q = [0.1, 0.4, 0.5];
                } else if boundary {
                    q = [0.55, 0.1, 0.35];
                } else if case_index % 2 == 1 && l == 0 && z + 3 >= s[0] && y + 3 >= s[1] && x + 3 >= s[2] {
                    q = [0.1, 0.1, 0.8];
                }
                for c in 0..3 {
                    p[c * n + v] = q[c];
                }
            }
        }
    }
    p
}

fn argmax(p: &[f32], channels: usize) -> Vec<f32> {
    let n = p.len() / channels;
    (0..n)
        .map(|v| {
            let mut best = 0;
            for c in 1..channels {
                if p[c * n + v] > p[best * n + v] {
                    best = c;
                }
            }
            best as f32
        })
        .collect()
}

fn copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(src, dst).unwrap_or_else(|e| panic!("{} → {}: {e}", src.display(), dst.display()));
}

/// The tree nnUNet_raw=raw, nnUNet_preprocessed=preprocessed, nnUNet_results=results (two trained models, five
/// folds of two cases each, validation with .npz/.pkl) plus two prediction folders `pred_a`, `pred_b` (the cases of
/// folds 0 and 1 with dataset.json and plans.json, as `nnUNetv2_predict --save_probabilities` writes them).
fn synthesize(root: &Path) {
    let rw = rw();
    let plans = fixtures().join(DS).join("nnUNetPlans.json");
    let dj = demo().join("dataset.json");
    copy(&dj, &root.join("raw").join(DS).join("dataset.json"));
    copy(&dj, &root.join("preprocessed").join(DS).join("dataset.json"));
    copy(&plans, &root.join("preprocessed").join(DS).join("nnUNetPlans.json"));
    for (k, case) in case_ids().iter().enumerate() {
        let label = demo().join("labelsTr").join(format!("{case}.nii.gz"));
        copy(&label, &root.join("raw").join(DS).join("labelsTr").join(format!("{case}.nii.gz")));
        copy(&label, &root.join("preprocessed").join(DS).join("gt_segmentations").join(format!("{case}.nii.gz")));
        let img = rw.read_seg(&label).unwrap();
        let s = img.shape;
        let props = CaseProperties {
            image: img.properties.clone(),
            shape_before_cropping: s,
            bbox_used_for_cropping: [[0, s[0]], [0, s[1]], [0, s[2]]],
            shape_after_cropping_and_before_resampling: s,
            class_locations: None,
        };
        let props = serde_json::to_value(&props).unwrap();
        for (model, is_a, pred) in [(MODEL_A, true, "pred_a"), (MODEL_B, false, "pred_b")] {
            let dir = root.join("results").join(DS).join(model);
            let val = dir.join(format!("fold_{}", k % 5)).join("validation");
            std::fs::create_dir_all(&val).unwrap();
            let p = synthetic_probabilities(&img.data, s, is_a, k);
            rw.write_seg(&argmax(&p, 3), s, &val.join(format!("{case}.nii.gz")), &img.properties).unwrap();
            let npy = nnunet_data::npy::to_bytes_f32(&p, &[3, s[0], s[1], s[2]]);
            std::fs::write(val.join(format!("{case}.npz")), nnunet_engine::inference::npz_bytes(&[("probabilities.npy", &npy)]).unwrap())
                .unwrap();
            std::fs::write(val.join(format!("{case}.pkl")), nnunet_engine::inference::pickle_json(&props)).unwrap();
            std::fs::write(val.join(format!("{case}.json")), serde_json::to_string_pretty(&props).unwrap()).unwrap();
            copy(&plans, &dir.join("plans.json"));
            copy(&dj, &dir.join("dataset.json"));
            if k % 5 < 2 {
                let out = root.join(pred);
                for ext in [".nii.gz", ".npz", ".pkl", ".json"] {
                    copy(&val.join(format!("{case}{ext}")), &out.join(format!("{case}{ext}")));
                }
                copy(&plans, &out.join("plans.json"));
                copy(&dj, &out.join("dataset.json"));
            }
        }
    }
}

/// Run an nnU-Net alias in `root` with the relative nnU-Net folders.
fn nn(root: &Path, aliases: &Path, cmd: &str, args: &[&str]) -> Run {
    let mut c = Command::new(aliases.join(cmd));
    c.current_dir(root)
        .args(args)
        .env("nnUNet_raw", "raw")
        .env("nnUNet_preprocessed", "preprocessed")
        .env("nnUNet_results", "results")
        .env_remove("nnUNet_def_n_proc");
    c.output().unwrap_or_else(|e| panic!("{cmd}: {e}")).into()
}

fn files_under(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        if e.path().is_dir() { files_under(&e.path(), &r, out) } else { out.push(r) }
    }
}

/// The part of nnU-Net's console output that both print: everything from `***All results:***` on.
fn console_tail(s: &str) -> Option<&str> {
    s.find("***All results:***").map(|i| &s[i..])
}

/// Same voxels and geometry.
fn same_image(ours: &Path, theirs: &Path) {
    let rw = rw();
    let (a, b) = (rw.read_seg(ours).unwrap(), rw.read_seg(theirs).unwrap());
    assert!(a.data == b.data, "{}: voxels differ from {}", ours.display(), theirs.display());
    same_geometry(ours, theirs);
}

/// Same shape, spacing, origin and direction.
fn same_geometry(ours: &Path, theirs: &Path) {
    let rw = rw();
    let (a, b) = (rw.read_seg(ours).unwrap(), rw.read_seg(theirs).unwrap());
    assert_eq!(a.shape, b.shape, "{}", ours.display());
    let (ga, gb) = (a.properties.sitk_stuff.unwrap(), b.properties.sitk_stuff.unwrap());
    for (x, y) in ga.spacing.iter().chain(&ga.origin).chain(&ga.direction).zip(gb.spacing.iter().chain(&gb.origin).chain(&gb.direction)) {
        assert!((x - y).abs() < 1e-5, "{}: geometry {ga:?} differs from {gb:?} of {}", ours.display(), theirs.display());
    }
}

/// Compare what `step` wrote in `root` with nnU-Net's files in `expected/step` (see the module documentation).
fn compare_step(root: &Path, expected: &Path, step: &str, stdout: &str) {
    let dir = expected.join(step);
    let mut files = Vec::new();
    files_under(&dir, Path::new(""), &mut files);
    assert!(!files.is_empty(), "{}: no reference files", dir.display());
    for rel in files {
        let theirs = dir.join(&rel);
        let name = rel.to_string_lossy().into_owned();
        if name == "console.txt" {
            let want = std::fs::read_to_string(&theirs).unwrap();
            if let Some(t) = console_tail(&want) {
                assert_eq!(console_tail(stdout), Some(t), "{step}: console output differs from nnU-Net's");
            }
            continue;
        }
        let ours = root.join(&rel);
        assert!(ours.is_file(), "{step}: {name} missing (nnU-Net writes it)");
        if name.ends_with(".json") || name.ends_with(".txt") {
            let (a, b) = (std::fs::read_to_string(&ours).unwrap(), std::fs::read_to_string(&theirs).unwrap());
            assert!(a == b, "{step}: {name} differs from nnU-Net's\n--- ours:\n{a}\n--- nnU-Net:\n{b}");
        } else if name.ends_with(".nii.gz") {
            same_image(&ours, &theirs);
        } else if name.ends_with(".npz") {
            let a = nnunet_engine::ensemble::read_npz_probabilities(&ours).unwrap();
            let b = nnunet_engine::ensemble::read_npz_probabilities(&theirs).unwrap();
            assert_eq!(a.shape, b.shape, "{step}: {name}");
            assert!(a.data.iter().zip(&b.data).all(|(x, y)| x.to_bits() == y.to_bits()), "{step}: {name}: probabilities differ");
        } else if name.ends_with(".pkl") {
            let a = nnunet_engine::pickle::from_bytes(&std::fs::read(&ours).unwrap()).unwrap();
            let b = nnunet_engine::pickle::from_bytes(&std::fs::read(&theirs).unwrap()).unwrap();
            assert_eq!(a, b, "{step}: {name}: pickled values differ");
        } else {
            panic!("{step}: no comparison for {name}");
        }
    }
}

/// Run every step with our binary on a fresh tree and compare with nnU-Net's outputs in `expected`. Before the
/// second ensembling, the `.npz`/`.pkl` nnU-Net wrote in the first are put in place of ours (then both sides read
/// nnU-Net-written probability files).
fn run_and_compare(expected: &Path) {
    let aliases = aliases_dir();
    let work = TempDir::new("nnunet-model-selection");
    let root = work.path();
    synthesize(root);
    for (step, cmd, args) in STEPS {
        if step == "ensemble2" {
            copy(&root.join("pred_a/plans.json"), &root.join("ens_ab/plans.json"));
            let mut theirs = Vec::new();
            files_under(&expected.join("ensemble/ens_ab"), Path::new(""), &mut theirs);
            for f in theirs.iter().filter(|f| f.extension().is_some_and(|e| e == "npz" || e == "pkl")) {
                copy(&expected.join("ensemble/ens_ab").join(f), &root.join("ens_ab").join(f));
            }
        }
        let r = nn(root, aliases.path(), cmd, args);
        assert_eq!(r.code, 0, "{step}: {cmd} {args:?}\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        compare_step(root, expected, step, &r.stdout);
    }
    // the instructions point at the postprocessing pkl; its json twin is what our apply_postprocessing reads
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("results").join(DS).join("inference_information.json")).unwrap()).unwrap();
    let pp = info["best_model_or_ensemble"]["postprocessing_file"].as_str().unwrap();
    assert!(root.join(pp).is_file() && root.join(pp).with_file_name("postprocessing.json").is_file());
}

fn python() -> Option<PathBuf> {
    nnunet_tests::nnunet_python()
}

#[test]
fn outputs_equal_committed_nnunet_outputs() {
    run_and_compare(&committed());
}

/// With nnU-Net's Python (about 2 minutes, so only on request: `NNUNET_PY_FULL=1`, or `NNUNET_BLESS=1`, which
/// rewrites `tests/fixtures/model_selection/expected`): run `nnunet_reference.py` on the same tree and compare live.
#[test]
fn outputs_equal_live_nnunet_outputs() {
    let bless = std::env::var_os("NNUNET_BLESS").is_some();
    let Some(py) = python().filter(|_| bless || std::env::var_os("NNUNET_PY_FULL").is_some()) else {
        eprintln!("skipped: needs nnU-Net's python and NNUNET_PY_FULL=1 (or NNUNET_BLESS=1)");
        return;
    };
    let work = TempDir::new("nnunet-model-selection-py");
    let root = work.path().join("tree");
    synthesize(&root);
    let out = if bless { committed() } else { work.path().join("expected") };
    let _ = std::fs::remove_dir_all(&out);
    let script = fixtures().join("model_selection/nnunet_reference.py");
    let o = Command::new(&py).arg(&script).arg(&root).arg(&out).output().unwrap();
    assert!(
        o.status.success(),
        "nnunet_reference.py failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    run_and_compare(&out);
}

/// With nnU-Net's Python (a few seconds): nnU-Net's own `merge_files` reads the `.npz`/`.pkl` we write (as our
/// predictor and validation write them) and gives the segmentation, probabilities and properties ours gives; also
/// for a region-based dataset.json (the same three channels read as sigmoid outputs of regions (1, 2), (2,), 1).
#[test]
fn nnunet_reads_our_probability_files() {
    let Some(py) = python() else {
        eprintln!("skipped: no nnU-Net python");
        return;
    };
    let aliases = aliases_dir();
    let work = TempDir::new("nnunet-ms-merge");
    let root = work.path();
    synthesize(root);
    let cases = case_ids();
    let case = &cases[0];
    let mut regions: Value = serde_json::from_str(&std::fs::read_to_string(demo().join("dataset.json")).unwrap()).unwrap();
    regions["labels"] = serde_json::json!({"background": 0, "hippocampus": [1, 2], "posterior": [2], "anterior": 1});
    regions["regions_class_order"] = serde_json::json!([1, 2, 1]);
    for (src, dst) in [("pred_a", "reg_a"), ("pred_b", "reg_b")] {
        nnunet_tests::copy_dir(&root.join(src), &root.join(dst));
        std::fs::write(root.join(dst).join("dataset.json"), serde_json::to_string_pretty(&regions).unwrap()).unwrap();
    }
    let script = "import json, os, sys\n\
        from nnunetv2.ensembling.ensemble import merge_files\n\
        from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO\n\
        from nnunetv2.utilities.label_handling.label_handling import LabelManager\n\
        root, case, a, b, out = sys.argv[1:]\n\
        dj = json.load(open(f'{root}/{a}/dataset.json'))\n\
        os.makedirs(f'{root}/{out}', exist_ok=True)\n\
        merge_files([f'{root}/{a}/{case}.npz', f'{root}/{b}/{case}.npz'], f'{root}/{out}/{case}', '.nii.gz', \
        SimpleITKIO(), LabelManager(dj['labels'], dj.get('regions_class_order')), True)\n";
    for (a, b, py_out, ours) in [("pred_a", "pred_b", "py_merge", "ens_ab"), ("reg_a", "reg_b", "py_reg", "ens_reg")] {
        let o = Command::new(&py).arg("-c").arg(script).arg(root).arg(case).args([a, b, py_out]).output().unwrap();
        assert!(o.status.success(), "nnU-Net's merge_files failed on our files:\n{}", String::from_utf8_lossy(&o.stderr));
        let r = nn(root, aliases.path(), "nnUNetv2_ensemble", &["-i", a, b, "-o", ours, "--save_npz", "-np", "2"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let (ours, theirs) = (root.join(ours), root.join(py_out));
        same_image(&ours.join(format!("{case}.nii.gz")), &theirs.join(format!("{case}.nii.gz")));
        let pa = nnunet_engine::ensemble::read_npz_probabilities(&ours.join(format!("{case}.npz"))).unwrap();
        let pb = nnunet_engine::ensemble::read_npz_probabilities(&theirs.join(format!("{case}.npz"))).unwrap();
        assert_eq!(pa.shape, pb.shape);
        assert!(pa.data.iter().zip(&pb.data).all(|(x, y)| x.to_bits() == y.to_bits()), "averaged probabilities differ from nnU-Net's");
        let ka = nnunet_engine::pickle::from_bytes(&std::fs::read(ours.join(format!("{case}.pkl"))).unwrap()).unwrap();
        let kb = nnunet_engine::pickle::from_bytes(&std::fs::read(theirs.join(format!("{case}.pkl"))).unwrap()).unwrap();
        assert_eq!(ka, kb);
    }
    // the region segmentation is not the argmax one
    let rw = rw();
    let (x, y) = (
        rw.read_seg(&root.join("ens_ab").join(format!("{case}.nii.gz"))).unwrap(),
        rw.read_seg(&root.join("ens_reg").join(format!("{case}.nii.gz"))).unwrap(),
    );
    assert!(x.data != y.data);
}

/// A properties pickle as Python writes it for nnU-Net's training validation (numpy float64 spacing, tuples,
/// class_locations arrays) is read completely, and ensembling takes the output geometry from it.
#[test]
fn numpy_pickles_are_read() {
    let pkl = std::fs::read(committed().join("numpy_props.pkl")).unwrap();
    let want: Value = serde_json::from_str(&std::fs::read_to_string(committed().join("numpy_props.json")).unwrap()).unwrap();
    assert_eq!(nnunet_engine::pickle::from_bytes(&pkl).unwrap(), want);

    let aliases = aliases_dir();
    let work = TempDir::new("nnunet-ms-numpy");
    let root = work.path();
    synthesize(root);
    let case = "hippocampus_001";
    let one = root.join("one");
    for f in [format!("{case}.npz"), "plans.json".into(), "dataset.json".into()] {
        copy(&root.join("pred_a").join(&f), &one.join(&f));
    }
    std::fs::write(one.join(format!("{case}.pkl")), &pkl).unwrap();
    let r = nn(root, aliases.path(), "nnUNetv2_ensemble", &["-i", "one", "-o", "one_out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // a single input: the segmentation is the input's, with the geometry of the label file
    same_image(&root.join("one_out").join(format!("{case}.nii.gz")), &root.join("pred_a").join(format!("{case}.nii.gz")));
    same_geometry(&root.join("one_out").join(format!("{case}.nii.gz")), &demo().join("labelsTr").join(format!("{case}.nii.gz")));
}

/// nnU-Net's errors: missing folds, missing .npz files, folders with different cases, a non-empty -o, a missing
/// model folder; configurations absent from the plans are skipped with nnU-Net's message.
#[test]
fn errors_follow_nnunet() {
    let aliases = aliases_dir();
    let work = TempDir::new("nnunet-ms-errors");
    let root = work.path();
    synthesize(root);
    let a = root.join("results").join(DS).join(MODEL_A);
    let b = root.join("results").join(DS).join(MODEL_B);

    // -o exists and is not empty
    std::fs::create_dir_all(root.join("full")).unwrap();
    std::fs::write(root.join("full/x"), "x").unwrap();
    let r = nn(root, aliases.path(), "nnUNetv2_accumulate_crossval_results", &[DS, "-c", "3d_fullres", "-o", "full"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Output folder full exists and is not empty"), "{}", r.stderr);
    // a fold that was not trained
    let r = nn(root, aliases.path(), "nnUNetv2_accumulate_crossval_results", &["4", "-c", "3d_fullres", "-f", "0", "7"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("fold 7 of model results/{DS}/{MODEL_A} is missing. Please train it!")), "{}", r.stderr);
    // a configuration without a model folder
    let r = nn(root, aliases.path(), "nnUNetv2_accumulate_crossval_results", &[DS, "-c", "3d_lowres"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // the default folds name the folder
    let r = nn(root, aliases.path(), "nnUNetv2_accumulate_crossval_results", &[DS, "-c", "2d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(b.join("crossval_results_folds_0_1_2_3_4/summary.json").is_file());
    assert_eq!(std::fs::read_dir(b.join("crossval_results_folds_0_1_2_3_4")).unwrap().count(), N_CASES + 3);

    // the default configurations: 3d_lowres / 3d_cascade_fullres are not in the plans (skipped with a message)
    let r = nn(root, aliases.path(), "nnUNetv2_find_best_configuration", &[DS, "--disable_ensembling", "-np", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "Configuration 3d_lowres not found in plans nnUNetPlans.\nInferred plans file: preprocessed/{DS}/nnUNetPlans.json."
        )),
        "{}",
        r.stdout
    );
    // --no_overwrite keeps the merged folders and gives the same decision
    let info = root.join("results").join(DS).join("inference_information.json");
    let first = std::fs::read_to_string(&info).unwrap();
    let r = nn(root, aliases.path(), "nnUNetv2_find_best_configuration", &[DS, "--disable_ensembling", "-np", "2", "--no_overwrite"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&info).unwrap(), first);
    // a model whose folder is missing
    let r = nn(root, aliases.path(), "nnUNetv2_find_best_configuration", &[DS, "-c", "2d", "-tr", "nnUNetTrainer_5epochs"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("does not have an output folder"), "{}", r.stderr);

    // ensembling without .npz in a fold
    for e in std::fs::read_dir(b.join("fold_3/validation")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "npz") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let r = nn(root, aliases.path(), "nnUNetv2_find_best_configuration", &[DS, "-c", "3d_fullres", "2d", "-np", "2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "No .npz files found in folder results/{DS}/{MODEL_B}/fold_3/validation. Rerun your validation with the --npz flag."
        )),
        "{}",
        r.stderr
    );
    // ... and a model lacking a case
    let c = case_ids()[3].clone();
    copy(&a.join(format!("fold_3/validation/{c}.npz")), &b.join(format!("fold_3/validation/{c}.npz")));
    let r = nn(root, aliases.path(), "nnUNetv2_find_best_configuration", &[DS, "-c", "3d_fullres", "2d", "-np", "2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("model results/{DS}/{MODEL_B} does not seem to contain all predictions. Missing: {{'")),
        "{}",
        r.stderr
    );

    // ensembling folders with different cases
    std::fs::remove_file(root.join("pred_b").join(format!("{}.npz", case_ids()[0]))).unwrap();
    let r = nn(root, aliases.path(), "nnUNetv2_ensemble", &["-i", "pred_a", "pred_b", "-o", "x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Not all folders contain the same files for ensembling"), "{}", r.stderr);
    assert!(!root.join("x").exists(), "nothing is written when the inputs do not match");

    // the native names reach the same handlers
    let bin = nnunet_tests::nnunet_bin();
    let mut c = Command::new(&bin);
    c.current_dir(root).args(["ensemble", "--input", "pred_a", "--output", "nat", "--processes", "1"]);
    let r: Run = c.output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_dir(root.join("nat")).unwrap().count(), 4 + 1);
}
