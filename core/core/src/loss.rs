//! The `Loss` trait. Losses see logits and targets flattened to `(b, c, n)` (n = voxels), so one
//! implementation serves 2D and 3D; deep supervision is a wrapper over any loss, not a subclass.

use burn::tensor::{Int, Tensor};

pub trait Loss: Send + Sync {
    /// Scalar loss of `logits (b, c, n)` against `target (b, 1, n)` (label map, or region masks when
    /// `c` regions are trained with sigmoid — the loss decides).
    fn forward(&self, logits: Tensor<3>, target: Tensor<3, Int>) -> Tensor<1>;
}
