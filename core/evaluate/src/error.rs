//! Errors of the evaluation crate; every variant names the file or folder it concerns.

use std::path::PathBuf;

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] nnunet_data::DataError),
    #[error(transparent)]
    Schema(#[from] nnunet_schema::SchemaError),
    #[error(
        "{} lacks predictions for {} reference file(s) of {} (use --chill to evaluate only the predictions present): {}",
        prediction_dir.display(), missing.len(), reference_dir.display(), missing.join(", ")
    )]
    MissingPredictions { reference_dir: PathBuf, prediction_dir: PathBuf, missing: Vec<String> },
    #[error("{}: no files ending in '{file_ending}'", dir.display())]
    NoFiles { dir: PathBuf, file_ending: String },
    #[error("{}: no reference file for the prediction {}", reference.display(), prediction.display())]
    MissingReference { reference: PathBuf, prediction: PathBuf },
    #[error(
        "{}: shape {reference_shape:?} (channels, z, y, x) differs from {prediction_shape:?} of the prediction {}",
        reference.display(), prediction.display()
    )]
    ShapeMismatch { reference: PathBuf, prediction: PathBuf, reference_shape: [usize; 4], prediction_shape: [usize; 4] },
    #[error("{}: {message}", path.display())]
    Labels { path: PathBuf, message: String },
    #[error("no labels or regions to evaluate")]
    NoLabels,
    #[error("invalid labels: {0}")]
    NoLabelsMsg(String),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("thread pool: {0}")]
    ThreadPool(String),
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io { path: path.into(), source }
    }
}
