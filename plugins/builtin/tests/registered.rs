//! Fails when a built-in crate stops being linked into the registry.

use nnunet_builtin as _;

#[test]
fn every_builtin_component_is_registered_by_its_crate() {
    nnunet_core::registry::validate_all().expect("registries are valid");
    for (kind, name, krate) in nnunet_builtin::EXPECTED {
        let rows = nnunet_core::registry::list(*kind).unwrap();
        let row = rows.iter().find(|r| r.name == *name).unwrap_or_else(|| panic!("{kind} {name} is not registered"));
        assert_eq!(row.origin_crate, *krate, "{name} registered by an unexpected crate");
        assert!(!row.summary.is_empty(), "{name} has no summary");
    }
}
