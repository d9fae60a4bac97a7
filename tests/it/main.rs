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
