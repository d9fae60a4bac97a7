//! Error type of this crate. Every variant names the file (or dataset folder) it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but its content is not what its name promises (truncated, not gzip, bad header…).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// The file's format is recognised but this feature of it is not supported here.
    #[error("{path}: unsupported: {message}")]
    Unsupported { path: PathBuf, message: String },
    /// The dataset (folder, dataset.json, case list) is not usable.
    #[error("{path}: {message}")]
    Dataset { path: PathBuf, message: String },
    #[error(transparent)]
    Schema(#[from] nnunet_schema::SchemaError),
    /// Images of one case that disagree (shape, spacing, NaN…).
    #[error("case {case}: {message}")]
    Case { case: String, message: String },
    #[error("fingerprint: {0}")]
    Fingerprint(String),
    /// Plans/configuration values preprocessing cannot use (unknown scheme, missing key…).
    #[error("preprocessing: {0}")]
    Preprocess(String),
}

impl DataError {
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn unsupported(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Unsupported {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
