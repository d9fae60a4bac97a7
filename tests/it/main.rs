//! The integration-test binary (one binary, many modules; ripgrep style).

mod cli;
mod conformance;
mod evaluate;
mod pipeline;
mod predict;
mod train;
