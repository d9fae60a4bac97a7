//! Dataset and plans management commands, checked against what nnU-Net 2.8.1 writes for the same input
//! (tests/fixtures/README.md names the commands that made the expected files).

use nnunet_tests::{NnunetDirs, aliases_dir, copy_dir, fixtures, nnunet_bin, repo_root, run};
use std::path::Path;

/// `nnUNet_raw/Dataset004_Hippocampus` (the embedded subset) and the Dataset201 plans in `nnUNet_preprocessed`.
fn move_plans_setup(work: &Path) -> NnunetDirs {
    let dirs = NnunetDirs::new(work);
    copy_dir(&repo_root().join("examples/data/Dataset004_Hippocampus"), &dirs.raw.join("Dataset004_Hippocampus"));
    let src = dirs.preprocessed.join("Dataset201_AnisoCT");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixtures().join("Dataset201_AnisoCT/nnUNetPlans.json"), src.join("nnUNetPlans.json")).unwrap();
    dirs
}

#[test]
fn move_plans_between_datasets_writes_nnunets_bytes() {
    let work = aliases_dir();
    let dirs = move_plans_setup(&work.path().join("w"));
    // nnU-Net's flags through the alias, ids resolved from the folders
    let r = run(&work.path().join("nnUNetv2_move_plans_between_datasets"), &["-s", "201", "-t", "4", "-sp", "nnUNetPlans", "-tp", "nnUNetPlansFrom201"], &dirs.env());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = dirs.preprocessed.join("Dataset004_Hippocampus/nnUNetPlansFrom201.json");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(fixtures().join("move_plans/nnUNetPlansFrom201.json")).unwrap());
    // native view, -tp left out: the source plans' name (and data identifiers) kept
    let r = run(&nnunet_bin(), &["move-plans-between-datasets", "-s", "Dataset201_AnisoCT", "-t", "4", "--source-plans", "nnUNetPlans"], &dirs.env());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = dirs.preprocessed.join("Dataset004_Hippocampus/nnUNetPlans.json");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(fixtures().join("move_plans/nnUNetPlans_kept_name.json")).unwrap());
}

#[test]
fn move_plans_between_datasets_names_what_is_missing() {
    let work = aliases_dir();
    let dirs = move_plans_setup(&work.path().join("w"));
    let r = run(&nnunet_bin(), &["move-plans-between-datasets", "-s", "201", "-t", "4", "--source-plans", "nnUNetResEncUNetMPlans"], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Dataset201_AnisoCT/nnUNetResEncUNetMPlans.json") && r.stderr.contains("source plans are missing"), "{}", r.stderr);
    let r = run(&nnunet_bin(), &["move-plans-between-datasets", "-s", "201", "-t", "7", "--source-plans", "nnUNetPlans"], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Dataset007"), "{}", r.stderr);
    assert!(!dirs.preprocessed.join("Dataset004_Hippocampus").exists());
}

/// Two NIfTI files hold the same image: sizes, datatype and voxels equal, geometry equal up to SimpleITK's float32
/// storage of the sform (nnU-Net's converter writes through SimpleITK).
fn assert_same_image(ours: &Path, theirs: &Path) {
    let (a, b) = (nnunet_data::nifti::read_nifti(ours).unwrap(), nnunet_data::nifti::read_nifti(theirs).unwrap());
    assert_eq!(a.dims, b.dims, "{}", ours.display());
    assert_eq!(a.header.datatype, b.header.datatype, "{}", ours.display());
    assert_eq!(a.data, b.data, "{}", ours.display());
    let (ga, gb) = (a.itk_geometry(ours).unwrap(), b.itk_geometry(theirs).unwrap());
    for (x, y) in ga.spacing.iter().chain(&ga.origin).chain(&ga.direction).zip(gb.spacing.iter().chain(&gb.origin).chain(&gb.direction)) {
        assert!((x - y).abs() < 1e-5, "{}: {ga:?} vs {gb:?}", ours.display());
    }
}

fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The converted dataset equals nnU-Net's: same files, dataset.json and labels byte for byte, images as above.
fn assert_same_dataset(ours: &Path, theirs: &Path) {
    assert_eq!(files_below(ours), files_below(theirs), "{}", ours.display());
    for f in files_below(theirs) {
        let (a, b) = (ours.join(&f), theirs.join(&f));
        if f.starts_with("imagesT") {
            assert_same_image(&a, &b);
        } else {
            assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{f} differs from nnU-Net's");
        }
    }
}

#[test]
fn msd_and_v1_tasks_convert_like_nnunet() {
    let work = aliases_dir();
    let dirs = NnunetDirs::new(&work.path().join("w"));
    std::fs::create_dir_all(&dirs.raw).unwrap();
    let fx = fixtures().join("dataset_conversion");
    let alias = |name: &str| work.path().join(name);
    // 4-D two-channel task (rotated geometry, float32 and int16 images, a qform-0/sform-2 case, macOS ._ files)
    let task09 = format!("{}/", fx.join("src/Task09_Tiny").display());
    let r = run(&alias("nnUNetv2_convert_MSD_dataset"), &["-i", &task09, "-np", "2"], &dirs.env());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_same_dataset(&dirs.raw.join("Dataset009_Tiny"), &fx.join("expected/Dataset009_Tiny"));
    // 3-D single-channel task (files copied), a label name used twice
    let r = run(&nnunet_bin(), &["convert-msd-dataset", "-i", fx.join("src/Task10_Mono").to_str().unwrap()], &dirs.env());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_same_dataset(&dirs.raw.join("Dataset010_Mono"), &fx.join("expected/Dataset010_Mono"));
    // nnU-Net v1 task
    let r = run(&alias("nnUNetv2_convert_old_nnUNet_dataset"), &[fx.join("src/Task011_OldTiny").to_str().unwrap(), "Dataset011_OldTiny"], &dirs.env());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_same_dataset(&dirs.raw.join("Dataset011_OldTiny"), &fx.join("expected/Dataset011_OldTiny"));

    // again: the id is taken (MSD) / the folder exists (v1); nothing else is written
    let r = run(&alias("nnUNetv2_convert_MSD_dataset"), &["-i", &task09], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Target dataset id 9 is already taken") && r.stderr.contains("Dataset009_Tiny"), "{}", r.stderr);
    let r = run(&alias("nnUNetv2_convert_old_nnUNet_dataset"), &[fx.join("src/Task011_OldTiny").to_str().unwrap(), "Dataset011_OldTiny"], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    // -overwrite_id: same dataset under another id
    let r = run(&alias("nnUNetv2_convert_MSD_dataset"), &["-i", &task09, "-overwrite_id", "109"], &dirs.env());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_dataset(&dirs.raw.join("Dataset109_Tiny"), &fx.join("expected/Dataset009_Tiny"));
    let mut names: Vec<String> = std::fs::read_dir(&dirs.raw).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["Dataset009_Tiny", "Dataset010_Mono", "Dataset011_OldTiny", "Dataset109_Tiny"]);
}

#[test]
fn msd_conversion_lists_every_missing_part_and_leaves_nothing() {
    let work = aliases_dir();
    let dirs = NnunetDirs::new(&work.path().join("w"));
    std::fs::create_dir_all(&dirs.raw).unwrap();
    let task = work.path().join("Task12_Empty");
    std::fs::create_dir_all(task.join("imagesTr")).unwrap();
    let r = run(&nnunet_bin(), &["convert-msd-dataset", "-i", task.to_str().unwrap()], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    for part in ["labelsTr subfolder missing", "imagesTs subfolder missing", "dataset.json missing"] {
        assert!(r.stderr.contains(part), "{part}: {}", r.stderr);
    }
    // a broken image: the conversion fails naming it and no dataset folder (or temporary one) remains
    let fx = fixtures().join("dataset_conversion/src/Task10_Mono");
    let task = work.path().join("Task13_Broken");
    copy_dir(&fx, &task);
    std::fs::write(task.join("imagesTr/mono_001.nii.gz"), b"not a nifti").unwrap();
    let r = run(&nnunet_bin(), &["convert-msd-dataset", "-i", task.to_str().unwrap()], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("mono_001.nii.gz"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&dirs.raw).unwrap().count(), 0);
}

/// The entries of a zip (names in order, uncompressed bytes).
fn zip_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let (names, mut entries) = nnunet_engine::ensemble::read_zip_entries_where(&bytes, path, &|_| true).unwrap();
    names.into_iter().map(|n| { let b = entries.remove(&n).unwrap(); (n, b) }).collect()
}

#[test]
fn export_model_to_zip_selects_nnunets_files_and_install_restores_them() {
    let work = aliases_dir();
    let fx = fixtures().join("model_sharing");
    let results = work.path().join("results");
    copy_dir(&fx.join("results"), &results);
    let env = [("nnUNet_results", results.as_path())];
    let export = work.path().join("nnUNetv2_export_model_to_zip");
    let out = |n: &str| work.path().join(n).to_string_lossy().into_owned();
    // (zip, flags) as nnU-Net 2.8.1 was run on the same tree (tests/fixtures/README.md)
    for (zip, args) in [
        ("fold0.zip", vec!["-d", "9", "-c", "3d_fullres", "2d", "-f", "0"]),
        ("fold0_cv.zip", vec!["-d", "Dataset009_Tiny", "-c", "3d_fullres", "2d", "-f", "0", "--exp_cv_preds", "-chk", "checkpoint_final.pth", "checkpoint_best.pth"]),
        ("only2d.zip", vec!["-d", "9", "-c", "2d", "-f", "0"]),
        ("noens.zip", vec!["-d", "8", "-c", "2d", "-f", "0"]),
    ] {
        let o = out(zip);
        let mut a = args.clone();
        a.extend(["-o", o.as_str()]);
        let r = run(&export, &a, &env);
        assert_eq!(r.code, 0, "{zip}: {}\n{}", r.stdout, r.stderr);
        let (ours, theirs) = (zip_entries(Path::new(&o)), zip_entries(&fx.join("expected").join(zip)));
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&ours), names(&theirs), "{zip}");
        assert_eq!(ours, theirs, "{zip}: contents");
    }
    // default configurations include untrained ones: an error naming them, no zip; --not_strict skips them
    let o = out("default.zip");
    let r = run(&export, &["-d", "9", "-f", "0", "-o", &o], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("missing the trained model of configuration 3d_lowres") && r.stderr.contains("3d_cascade_fullres"), "{}", r.stderr);
    assert!(!Path::new(&o).exists());
    let r = run(&export, &["-d", "9", "-f", "0", "-o", &o, "--not_strict"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(zip_entries(Path::new(&o)), zip_entries(&fx.join("expected/fold0.zip")), "3d_fullres then 2d, as with -c");
    // a missing fold
    let r = run(&export, &["-d", "9", "-c", "3d_fullres", "-f", "0", "1", "-o", &o], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not all requested folds are present") && r.stderr.contains("\"1\""), "{}", r.stderr);

    // install nnU-Net's zip into an empty results folder: every entry lands where predict looks
    let installed = work.path().join("installed");
    std::fs::create_dir_all(&installed).unwrap();
    let r = run(&work.path().join("nnUNetv2_install_pretrained_model_from_zip"), &[fx.join("expected/fold0.zip").to_str().unwrap()], &[("nnUNet_results", installed.as_path())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (name, bytes) in zip_entries(&fx.join("expected/fold0.zip")) {
        assert_eq!(std::fs::read(installed.join(&name)).unwrap(), bytes, "{name}");
        assert_eq!(std::fs::read(results.join(&name)).unwrap(), bytes, "{name} equals the exported file");
    }
}

/// RGBA pixels of a PNG.
fn png_pixels(path: &Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgba8();
    (img.width(), img.height(), img.into_raw())
}

#[test]
fn overlay_pngs_equal_nnunets_pixels_from_raw_and_preprocessed_data() {
    let work = aliases_dir();
    let dirs = NnunetDirs::new(&work.path().join("w"));
    copy_dir(&fixtures().join("dataset_conversion/expected/Dataset009_Tiny"), &dirs.raw.join("Dataset009_Tiny"));
    let fx = fixtures().join("overlays");
    let alias = work.path().join("nnUNetv2_plot_overlay_pngs");
    let out = |n: &str| work.path().join(n);
    let runs: [(&str, Vec<&str>); 2] =
        [("raw_channel0", vec!["--use_raw", "-np", "2"]), ("raw_channel1_intensity0.3", vec!["--use_raw", "-channel_idx", "1", "-overlay_intensity", "0.3"])];
    for (name, flags) in runs {
        let o = out(name);
        let mut args = vec!["-d", "9", "-o", o.to_str().unwrap()];
        args.extend(flags);
        let r = run(&alias, &args, &dirs.env());
        assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
    }
    // from preprocessed data: first a clear error, then after preprocessing the same pixels as nnU-Net's
    let o = out("preprocessed_3d_fullres");
    let r = run(&alias, &["-d", "9", "-o", o.to_str().unwrap()], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("run preprocessing"), "{}", r.stderr);
    let r = run(&nnunet_bin(), &["plan-and-preprocess", "-d", "9", "-c", "3d_fullres", "--processes", "1", "--fingerprint-processes", "1"], &dirs.env());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&alias, &["-d", "9", "-o", o.to_str().unwrap()], &dirs.env());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for name in ["raw_channel0", "raw_channel1_intensity0.3", "preprocessed_3d_fullres"] {
        for case in ["tiny_001", "tiny_002", "tiny_003"] {
            let f = format!("{case}.png");
            assert_eq!(png_pixels(&out(name).join(&f)), png_pixels(&fx.join(name).join(&f)), "{name}/{f}");
        }
    }
    let r = run(&alias, &["-d", "9", "-o", o.to_str().unwrap(), "-channel_idx", "2", "--use_raw"], &dirs.env());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no channel 2"), "{}", r.stderr);
}

#[test]
fn download_by_url_installs_the_zip_and_names_a_failed_download() {
    let work = aliases_dir();
    let installed = work.path().join("installed");
    std::fs::create_dir_all(&installed).unwrap();
    let zip = fixtures().join("model_sharing/expected/only2d.zip");
    let url = format!("file://{}", zip.display());
    let alias = work.path().join("nnUNetv2_download_pretrained_model_by_url");
    let r = run(&alias, &[&url], &[("nnUNet_results", installed.as_path())]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for (name, bytes) in zip_entries(&zip) {
        assert_eq!(std::fs::read(installed.join(&name)).unwrap(), bytes, "{name}");
    }
    let r = run(&alias, &["file:///no/such/model.zip"], &[("nnUNet_results", installed.as_path())]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("file:///no/such/model.zip"), "{}", r.stderr);
}
