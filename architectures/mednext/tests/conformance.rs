//! The architecture conformance suite, through the registry entry that `nnunet` itself resolves.

use nnunet_arch_mednext::MedNeXtArch;

#[test]
fn conformance_suite_passes() {
    let report = nnunet_tests::conformance::check_architecture("MedNeXt", &MedNeXtArch).unwrap();
    assert_eq!(report.cases, 3);
}

#[test]
fn registered_as_mednext() {
    let reg = nnunet_core::registry::architectures().unwrap();
    let entry = reg.get("MedNeXt").unwrap();
    assert_eq!(entry.name, "MedNeXt");
    assert!(entry.summary.contains("S/B/M/L"), "{}", entry.summary);
    assert!(entry.origin.starts_with("nnunet_arch_mednext"), "{}", entry.origin);
    // (the suite itself runs once per process: its temp folder is named by process id and case index)
    let t = &nnunet_tests::conformance::topologies()[0];
    assert_eq!((entry.make)().configure(t), nnunet_core::Architecture::configure(&MedNeXtArch, t));
}
