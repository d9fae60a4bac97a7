//! [`ConvProbe`]: the output shapes of the convolutions a forward pass runs, so an architecture's memory proxy (the
//! sum of conv output elements, nnU-Net's `compute_conv_feature_map_size` scale) can be checked against the network
//! it describes.

use burn::tensor::Tensor;

/// Records the output shape of every conv / transposed conv a forward pass runs. Disabled probes record nothing.
#[derive(Debug, Default)]
pub struct ConvProbe {
    enabled: bool,
    /// `(layer, output shape (b, c, z, y, x))` in execution order.
    pub outputs: Vec<(String, [usize; 5])>,
}

impl ConvProbe {
    /// A probe that records.
    pub fn recording() -> Self {
        Self { enabled: true, outputs: Vec::new() }
    }

    /// A probe that records nothing (the plain forward pass).
    pub fn off() -> Self {
        Self::default()
    }

    /// Record `t`'s shape under the name `what()` (only evaluated when recording).
    pub fn see(&mut self, what: impl FnOnce() -> String, t: &Tensor<5>) {
        if self.enabled {
            self.outputs.push((what(), t.dims()));
        }
    }

    /// Sum over the recorded outputs of their per-sample element count (`c · z · y · x`).
    pub fn elements_per_sample(&self) -> u64 {
        self.outputs.iter().map(|(_, d)| d[1..].iter().map(|&x| x as u64).product::<u64>()).sum()
    }
}
