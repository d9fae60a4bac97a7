//! `nnUNetv2_predict` / `nnUNetv2_predict_from_modelfolder` end to end with a model folder of RANDOM weights (a tiny
//! configuration inheriting the Hippocampus 3d_fullres plans): flow and geometry, not accuracy, are checked.

use nnunet_builtin as _;
use nnunet_core::architecture::NetworkSpec;
use nnunet_data::ImageReaderWriter;
use nnunet_engine::checkpoint::CheckpointMeta;
use nnunet_engine::pth::{OptimizerGroup, write_nnunet_checkpoint};
use nnunet_tests::{aliases_dir, fixtures, repo_root, run, tempfile_like::TempDir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const CASES: [&str; 3] = ["hippocampus_001", "hippocampus_003", "hippocampus_004"];
const CONFIG: &str = "3d_tiny";

/// `results/Dataset004_Hippocampus/nnUNetTrainer__nnUNetPlans__3d_tiny` with folds 0 and 1 of random weights.
fn model_folder(results: &Path) -> PathBuf {
    model_folder_for(results, CONFIG, None)
}

/// A model folder of `config` (inheriting 3d_fullres with 4..32 features); `previous_stage` makes it a cascade stage
/// (input channels: image + one-hot of the 2 foreground labels).
fn model_folder_for(results: &Path, config: &str, previous_stage: Option<&str>) -> PathBuf {
    let mut plans: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("Dataset004_Hippocampus/nnUNetPlans.json")).unwrap()).unwrap();
    let mut arch = plans["configurations"]["3d_fullres"]["architecture"].clone();
    arch["arch_kwargs"]["features_per_stage"] = json!([4, 8, 16, 32]);
    plans["configurations"][CONFIG] = json!({"inherits_from": "3d_fullres", "architecture": arch});
    if let Some(prev) = previous_stage {
        plans["configurations"][config] = json!({"inherits_from": CONFIG, "previous_stage": prev});
    }
    let dir = results.join("Dataset004_Hippocampus").join(format!("nnUNetTrainer__nnUNetPlans__{config}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plans.json"), serde_json::to_string_pretty(&plans).unwrap()).unwrap();
    std::fs::copy(repo_root().join("examples/data/Dataset004_Hippocampus/dataset.json"), dir.join("dataset.json")).unwrap();
    let dataset_json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("dataset.json")).unwrap()).unwrap();
    let class = arch["network_class_name"].as_str().unwrap();
    let spec = NetworkSpec {
        arch_kwargs: arch["arch_kwargs"].as_object().unwrap().clone(),
        in_channels: if previous_stage.is_some() { 3 } else { 1 },
        out_channels: 3,
        deep_supervision: false,
    };
    let dev = burn::tensor::Device::default();
    let entry = nnunet_core::registry::architectures().unwrap().get(class).unwrap();
    for fold in ["0", "1"] {
        let net = (entry.make)().build(&spec, &dev).unwrap();
        let meta = CheckpointMeta {
            current_epoch: 1,
            best_ema: None,
            logging: Default::default(),
            trainer_name: "nnUNetTrainer".into(),
            plans_name: "nnUNetPlans".into(),
            configuration: config.into(),
            fold: fold.into(),
            network_class_name: class.into(),
            inference_allowed_mirroring_axes: Some(vec![0, 1, 2]),
            rng: None,
            deep_supervision: None,
            grad_scaler: None,
        };
        let group = OptimizerGroup { kind: nnunet_core::OptimizerKind::Sgd, lr: 1e-2, weight_decay: 3e-5, momentum: 0.99, eps: 1e-8 };
        let path = dir.join(format!("fold_{fold}/checkpoint_final.pth"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_nnunet_checkpoint(&path, net.as_ref(), &meta, &group, None, &plans, &dataset_json).unwrap();
    }
    dir
}

fn read(path: &Path) -> nnunet_data::ImageData {
    nnunet_data::io::SimpleItkIo.read_images(&[path.to_path_buf()]).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn predict_writes_segmentations_with_the_input_geometry() {
    let bin = aliases_dir();
    let work = TempDir::new("nnunet-predict");
    let results = work.path().join("results");
    let model = model_folder(&results);
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let images = repo_root().join("examples/data/Dataset004_Hippocampus/imagesTr");
    for c in CASES {
        std::fs::copy(images.join(format!("{c}_0000.nii.gz")), input.join(format!("{c}_0000.nii.gz"))).unwrap();
    }
    // an unreadable case: reported, skipped, the others are written
    std::fs::write(input.join("hippocampus_999_0000.nii.gz"), b"not a nifti file").unwrap();
    let env = [("nnUNet_results", results.as_path())];
    let predict = bin.path().join("nnUNetv2_predict");

    // 1. fold 0, TTA, probabilities; the corrupt case makes the exit code 2 at the end
    let out = work.path().join("out");
    let base = ["-i", s(&input), "-o", s(&out), "-d", "4", "-c", CONFIG, "-device", "cpu", "--disable_progress_bar"];
    let r = run(&predict, &[&base[..], &["-f", "0", "--save_probabilities", "-npp", "2", "-nps", "2"]].concat(), &env);
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("hippocampus_999") && r.stderr.contains("1 case(s) could not be predicted"), "{}", r.stderr);
    assert!(r.stdout.contains("There are 4 cases in the source folder"), "{}", r.stdout);
    assert!(!out.join("hippocampus_999.nii.gz").exists());
    for f in ["dataset.json", "plans.json", "predict_from_raw_data_args.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for c in CASES {
        let inp = read(&input.join(format!("{c}_0000.nii.gz")));
        let seg = read(&out.join(format!("{c}.nii.gz")));
        assert_eq!(seg.shape, inp.shape, "{c}");
        assert_eq!(seg.properties.sitk_stuff, inp.properties.sitk_stuff, "{c}: geometry differs");
        assert_eq!(seg.properties.spacing, inp.properties.spacing, "{c}");
        assert!(seg.data.iter().all(|&v| v == 0.0 || v == 1.0 || v == 2.0), "{c}: labels outside {{0, 1, 2}}");
        assert!(out.join(format!("{c}.npz")).is_file() && out.join(format!("{c}.pkl")).is_file());
        let props: Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("{c}.json"))).unwrap()).unwrap();
        let sbc: Vec<usize> = serde_json::from_value(props["shape_before_cropping"].clone()).unwrap();
        assert_eq!(sbc, inp.shape.to_vec(), "{c}");
        let npz = std::fs::read(out.join(format!("{c}.npz"))).unwrap();
        assert_eq!(&npz[..4], b"PK\x03\x04");
    }
    // numpy and pickle read what was written (when nnU-Net's Python is installed)
    if let Some(py) = nnunet_tests::nnunet_python() {
        let script = format!(
            "import numpy as np, pickle, SimpleITK as sitk\n\
             for c in {CASES:?}:\n\
             \x20   p = np.load('{o}/' + c + '.npz')['probabilities']\n\
             \x20   img = sitk.GetArrayFromImage(sitk.ReadImage('{i}/' + c + '_0000.nii.gz'))\n\
             \x20   seg = sitk.GetArrayFromImage(sitk.ReadImage('{o}/' + c + '.nii.gz'))\n\
             \x20   assert p.dtype == np.float32 and p.shape == (3, *img.shape), (p.shape, img.shape)\n\
             \x20   assert np.allclose(p.sum(0), 1, atol=1e-5)\n\
             \x20   assert (p.argmax(0) == seg).all()\n\
             \x20   props = pickle.load(open('{o}/' + c + '.pkl', 'rb'))\n\
             \x20   assert list(props['shape_before_cropping']) == list(img.shape), props\n\
             print('ok')\n",
            o = out.display(),
            i = input.display()
        );
        let o = std::process::Command::new(py).arg("-c").arg(&script).output().unwrap();
        assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok"), "{}", String::from_utf8_lossy(&o.stderr));
    }

    // 2. --continue_prediction skips what exists; a removed output is predicted again
    std::fs::remove_file(input.join("hippocampus_999_0000.nii.gz")).unwrap();
    std::fs::remove_file(out.join("hippocampus_003.nii.gz")).unwrap();
    let before = mtime(&out.join("hippocampus_001.nii.gz"));
    let r = run(&predict, &[&base[..], &["-f", "0", "--save_probabilities", "--continue_prediction", "--disable_tta"]].concat(), &env);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("That's 1 cases"), "{}", r.stdout);
    assert!(out.join("hippocampus_003.nii.gz").is_file());
    assert_eq!(mtime(&out.join("hippocampus_001.nii.gz")), before, "an existing output was rewritten");

    // 3. -num_parts / -part_id: cases[part_id::num_parts]
    let parts = work.path().join("parts");
    let pbase =
        ["-i", s(&input), "-o", s(&parts), "-d", "4", "-c", CONFIG, "-device", "cpu", "--disable_progress_bar", "-f", "0", "--disable_tta"];
    let r = run(&predict, &[&pbase[..], &["-num_parts", "2", "-part_id", "1"]].concat(), &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(parts.join("hippocampus_003.nii.gz").is_file());
    assert!(!parts.join("hippocampus_001.nii.gz").exists() && !parts.join("hippocampus_004.nii.gz").exists());
    let r = run(&predict, &[&pbase[..], &["-num_parts", "2", "-part_id", "2"]].concat(), &env);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // 4. two folds ensembled (sequential mode), and the model-folder entry point
    let ens = work.path().join("ens");
    let r = run(
        &predict,
        &[
            "-i",
            s(&input),
            "-o",
            s(&ens),
            "-d",
            "Dataset004_Hippocampus",
            "-c",
            CONFIG,
            "-f",
            "0",
            "1",
            "-device",
            "cpu",
            "--disable_tta",
            "-npp",
            "0",
            "-nps",
            "0",
        ],
        &env,
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    for c in CASES {
        assert_eq!(read(&ens.join(format!("{c}.nii.gz"))).shape, read(&input.join(format!("{c}_0000.nii.gz"))).shape);
    }
    let mf = work.path().join("mf");
    let r = run(
        &bin.path().join("nnUNetv2_predict_from_modelfolder"),
        &["-i", s(&input), "-o", s(&mf), "-m", s(&model), "-f", "1", "-device", "cpu", "--disable_tta"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(mf.join("hippocampus_004.nii.gz").is_file());

    // 5. cascade: the previous stage's segmentations (in `out`) are appended one-hot; without them it is an error
    model_folder_for(&results, "3d_tiny_cascade", Some(CONFIG));
    let cas = work.path().join("cascade");
    let cbase = ["-i", s(&input), "-o", s(&cas), "-d", "4", "-c", "3d_tiny_cascade", "-f", "0", "-device", "cpu", "--disable_tta"];
    let r = run(&predict, &cbase, &env);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("-prev_stage_predictions"), "{}", r.stderr);
    let r = run(&predict, &[&cbase[..], &["-prev_stage_predictions", s(&out)]].concat(), &env);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    for c in CASES {
        assert_eq!(read(&cas.join(format!("{c}.nii.gz"))).shape, read(&input.join(format!("{c}_0000.nii.gz"))).shape);
    }

    // 6. errors: no GPU backend; missing fold
    let r = run(&predict, &["-i", s(&input), "-o", s(&mf), "-d", "4", "-c", CONFIG, "-f", "0"], &env);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("GPU backend"), "{}", r.stderr);
    let r = run(&predict, &["-i", s(&input), "-o", s(&mf), "-d", "4", "-c", CONFIG, "-f", "3", "-device", "cpu"], &env);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("fold_3"), "{}", r.stderr);
}
