//! serde types of every JSON file nnU-Net reads or writes.
//!
//! Architecture invariant: this crate does not depend on burn and does no I/O beyond
//! the small `read_json` / `write_json_atomic` helpers. Types read Python nnU-Net's
//! files as they are and write files Python nnU-Net reads.

pub mod dataset;
pub mod fingerprint;
pub mod json;
pub mod plans;

pub use dataset::{DatasetJson, LabelValue, LabelManager};
pub use fingerprint::{Fingerprint, IntensityProperties};
pub use plans::Plans;

/// Errors of this crate: every one names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: cannot read: {source}")]
    Io { path: String, #[source] source: std::io::Error },
    #[error("{path}: cannot write: {source}")]
    Write { path: String, #[source] source: std::io::Error },
    #[error("{path}: invalid JSON: {source}")]
    Json { path: String, #[source] source: serde_json::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}
