//! The `Loss` trait. Losses see logits and targets flattened to `(b, c, n)` (n = voxels), so one
//! implementation serves 2D and 3D; deep supervision is a wrapper over any loss, not a subclass.

use burn::tensor::{Int, Tensor};

/// What a loss needs to know about the run (from the plans and dataset.json).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossSettings {
    /// Sum Dice statistics over the batch before the ratio (plans `batch_dice`).
    pub batch_dice: bool,
    /// dataset.json's `ignore` label: voxels carrying it contribute nothing.
    pub ignore_label: Option<i64>,
    /// Region-based training: the label values of each region (output channel).
    pub regions: Option<Vec<Vec<i64>>>,
}

pub trait Loss: Send + Sync {
    /// Scalar loss of `logits (b, c, n)` against the label map `target (b, 1, n)`.
    fn forward(&self, logits: Tensor<3>, target: Tensor<3, Int>, settings: &LossSettings) -> Tensor<1>;
}
