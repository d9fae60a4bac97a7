//! nnU-Net's training-time data pipeline on CPU (nnU-Net 2.8.1 with batchgeneratorsv2): patch sampling with
//! foreground oversampling ([`sampler`], [`loader`]), the augmentation transforms ([`spatial`], [`transforms`]) and
//! the pipelines of `get_training_transforms` / `get_validation_transforms` ([`pipeline`]; cascade-only transforms in
//! [`cascade`]), plus a bounded
//! multi-threaded batch producer.
//!
//! Layout: samples are `(c, z, y, x)` f32 images and `(1, z, y, x)` i16 segmentations (a cascade stage adds the
//! previous stage's segmentation as channel 2 until it moves to the image); 2D data is `(c, 1, y, x)`.
//! No burn, no terminal output, no environment variables.

pub mod cascade;
pub mod config;
pub mod loader;
pub mod pipeline;
pub mod rng;
pub mod sampler;
pub mod spatial;
pub mod tensor;
pub mod transforms;

pub use config::{DaSetup, Oversampling, configure_da, deep_supervision_scales, get_patch_size, is_forced_foreground};
pub use loader::{Batch, BatchProducer, DataLoader};
pub use pipeline::{Pipeline, PipelineConfig, training_pipeline, validation_pipeline};
pub use rng::{RandomScalar, Rng};
pub use sampler::{CaseMeta, CaseSource, ClassKey, ClassLocations, CropBounds, InMemorySource, PatchSampler, crop_and_pad};
pub use spatial::{SegTiebreak, SpatialDims, SpatialParams, SpatialTransform};
pub use tensor::{Sample, Tensor};
pub use transforms::Transform;

/// Errors of the data pipeline.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    #[error("invalid data pipeline configuration: {0}")]
    InvalidConfig(String),
    #[error("no such case: {0}")]
    NoSuchCase(usize),
    #[error("case source: {0}")]
    Source(String),
    #[error("the batch producer's workers are gone")]
    Disconnected,
}
