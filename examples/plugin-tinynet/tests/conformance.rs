//! TinyNet, as registered, passes the architecture conformance suite (2D and 3D topologies, deep supervision on/off,
//! one SGD step, save/load, memory proxy). One test: the suite's temp files are named by process and case.

#[test]
fn registered_tinynet_passes_the_conformance_suite() {
    let entry = nnunet_core::registry::architectures().unwrap().get(tinynet::NAME).unwrap();
    let arch = (entry.make)();
    let report = nnunet_tests::conformance::check_architecture(entry.name, arch.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.cases, nnunet_tests::conformance::topologies().len());
    assert!(report.params.iter().all(|&p| p > 0), "{:?}", report.params);
}
