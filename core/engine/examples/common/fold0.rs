//! Shared by the diagnostic examples (`#[path]`-included): fold 0's training batches of a configuration of a
//! preprocessed dataset folder, from the `DataLoader` + training pipeline built as `run.rs` builds them.
use nnunet_augment::{BatchProducer, DataLoader, Oversampling, PipelineConfig, configure_da, training_pipeline};
use nnunet_engine::cases::DiskSource;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;

/// The preprocessed dataset folder's plans configuration `name` (resolved) and its dataset.json.
pub fn configuration(pre: &Path, name: &str) -> (Map<String, Value>, nnunet_schema::DatasetJson) {
    let plans: nnunet_schema::Plans = nnunet_schema::json::read_json(&pre.join("nnUNetPlans.json")).unwrap();
    let dataset_json = nnunet_schema::json::read_json(&pre.join("dataset.json")).unwrap();
    (nnunet_schema::plans::resolve_configuration(&plans, name).unwrap(), dataset_json)
}

/// The training batch stream of fold 0 with data-stream seed `seed`; `ds_strides`: the network's output strides
/// (deep-supervision targets), `None` for the full-resolution target only.
pub fn training_batches(pre: &Path, cfg: &Map<String, Value>, seed: u64, ds_strides: Option<&[Vec<usize>]>) -> BatchProducer {
    let patch: Vec<usize> = serde_json::from_value(cfg["patch_size"].clone()).unwrap();
    let batch = cfg["batch_size"].as_u64().unwrap() as usize;
    let ident = cfg["data_identifier"].as_str().unwrap();
    let splits = nnunet_data::splits::read_splits(&pre.join("splits_final.json")).unwrap();
    let train_ids = &splits[0].train;
    let da = configure_da(&patch);
    let mut pcfg = PipelineConfig::for_patch(&patch);
    pcfg.ds_scales = ds_strides.map(|st| st.iter().map(|s| s.iter().map(|&x| 1.0 / x as f64).collect()).collect());
    let src = Arc::new(DiskSource::open(&pre.join(ident), train_ids, None).unwrap());
    let loader = Arc::new(
        DataLoader::new(src, (0..train_ids.len()).collect(), batch, &da.initial_patch_size, &patch, Oversampling::LastPercent(0.33), None, training_pipeline(&pcfg))
            .unwrap(),
    );
    BatchProducer::new(loader, 1, 2, nnunet_engine::parallel::replica_seed(seed, 0))
}
