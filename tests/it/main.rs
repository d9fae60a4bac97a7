//! The integration-test binary (one binary, many modules; ripgrep style).

mod cli;
mod conformance;
mod pipeline;
mod predict;
mod evaluate;
mod train;
