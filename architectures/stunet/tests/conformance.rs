//! The architecture conformance suite, through the registry entry that `nnunet` itself resolves.

use nnunet_arch_stunet::STUNetArch;

#[test]
fn conformance_suite_passes() {
    let report = nnunet_tests::conformance::check_architecture("STUNet", &STUNetArch).unwrap();
    assert_eq!(report.cases, 3);
}

#[test]
fn registered_as_stunet() {
    let reg = nnunet_core::registry::architectures().unwrap();
    let entry = reg.get("STUNet").unwrap();
    assert_eq!(entry.name, "STUNet");
    assert!(entry.summary.contains("small/base/large/huge"), "{}", entry.summary);
    assert!(entry.origin.starts_with("nnunet_arch_stunet"), "{}", entry.origin);
    let t = &nnunet_tests::conformance::topologies()[0];
    assert_eq!((entry.make)().configure(t), nnunet_core::Architecture::configure(&STUNetArch, t));
}
