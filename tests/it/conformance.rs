//! Every registered architecture passes the conformance suite on the CPU backend.

use nnunet_builtin as _;

#[test]
fn registered_architectures_pass_conformance() {
    let reg = nnunet_core::registry::architectures().unwrap();
    assert!(reg.entries().len() >= 2, "built-in architectures missing");
    for e in reg.entries() {
        let arch = (e.make)();
        let r = nnunet_tests::conformance::check_architecture(e.name, arch.as_ref()).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(r.cases, nnunet_tests::conformance::topologies().len(), "{}", e.name);
    }
}
