//! The integration-test binary (one binary, many modules; ripgrep style).

mod benchmark;
mod cascade;
mod cli;
mod cluster;
mod conformance;
mod datasets;
mod evaluate;
mod model_selection;
mod pipeline;
mod plugins;
mod predict;
mod pth;
mod python_preprocessed;
mod resume;
mod train;

/// The metadata of checkpoint `name` (`checkpoint_final`) of a fold folder: the `.pth` training writes.
pub fn checkpoint_meta(fold: &std::path::Path, name: &str) -> nnunet_engine::checkpoint::CheckpointMeta {
    let stored = nnunet_engine::checkpoint::Stored::locate(fold, name).unwrap_or_else(|| panic!("{}: no {name}", fold.display()));
    assert!(matches!(stored, nnunet_engine::checkpoint::Stored::Pth(_)), "{name}: training writes nnU-Net's .pth");
    stored.read_meta().unwrap()
}
