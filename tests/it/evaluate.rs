//! nnUNetv2_evaluate_folder / evaluate_simple through the aliases: summary.json byte-identical to what nnU-Net
//! 2.8.1 wrote for the same folders (tests/fixtures/evaluation, relative paths as in its README).

use nnunet_tests::{aliases_dir, copy_dir, fixtures, run_in, tempfile_like::TempDir};

#[test]
fn evaluate_commands_write_nnunets_summary() {
    let bin = aliases_dir();
    let work = TempDir::new("nnunet-eval");
    copy_dir(&fixtures().join("evaluation"), work.path());
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "nnUNetv2_evaluate_folder",
            &["ref", "pred", "-djfile", "dataset.json", "-pfile", "plans.json", "-o", "ours_folder.json", "-np", "2"],
            "summary_folder.json",
        ),
        (
            "nnUNetv2_evaluate_folder",
            &["ref", "pred", "-djfile", "dataset_regions.json", "-pfile", "plans.json", "-o", "ours_regions.json", "-np", "2"],
            "summary_regions.json",
        ),
        (
            "nnUNetv2_evaluate_simple",
            &["ref_ignore", "pred", "-l", "1", "2", "4", "-il", "3", "-o", "ours_simple_ignore.json", "-np", "2"],
            "summary_simple_ignore.json",
        ),
    ];
    for (cmd, args, want) in cases {
        let r = run_in(Some(work.path()), &bin.path().join(cmd), args, &[]);
        assert_eq!(r.code, 0, "{cmd}: {}", r.stderr);
        let out = args[args.iter().position(|a| *a == "-o").unwrap() + 1];
        let got = std::fs::read_to_string(work.path().join(out)).unwrap();
        let expected = std::fs::read_to_string(work.path().join(want)).unwrap();
        assert!(got == expected, "{cmd} {args:?}: summary differs from nnU-Net's {want}");
    }
    // a missing prediction is an error naming it, unless --chill
    std::fs::remove_file(work.path().join("pred/hippocampus_001.nii.gz")).unwrap();
    let r = run_in(Some(work.path()), &bin.path().join("nnUNetv2_evaluate_simple"), &["ref", "pred", "-l", "1", "2", "-o", "x.json"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("hippocampus_001"), "{}", r.stderr);
    let r = run_in(
        Some(work.path()),
        &bin.path().join("nnUNetv2_evaluate_simple"),
        &["ref", "pred", "-l", "1", "2", "-o", "x.json", "--chill"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}
