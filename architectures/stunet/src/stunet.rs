//! `STUNet` (uni-medical/STU-Net, `nnUNet-1.7.1/nnunet/network_architecture/STUNet.py`): an encoder of `n`
//! stages of [`BasicResBlock`]s (the first block of stage `s ≥ 1` strided by `pool_op_kernel_sizes[s-1]`, the
//! first block of every stage with a 1×1 projection `conv3`), a decoder that upsamples (nearest, then a 1×1 conv),
//! **concatenates** the skip of the same stage and runs `BasicResBlock`s again, and a 1×1 conv head per decoder
//! stage. Field names are PyTorch's state-dict keys (`conv_blocks_context.{s}.{b}.conv1.weight`,
//! `upsample_layers.{u}.conv.weight`, `conv_blocks_localization.{u}.{b}...`, `seg_outputs.{u}.weight`).
//!
//! Deep supervision: PyTorch returns `(seg_outputs[-1], seg_outputs[-2], ..., seg_outputs[0])`, full resolution
//! first; without it only `seg_outputs[-1]`. Every head exists either way (they are in the state dict and the
//! parameter count); without deep supervision the coarser heads are not run.

use crate::blocks::{BasicResBlock, ConvProbe, UpsampleLayerNearest, conv};
use crate::kwargs::STUNetKwargs;
use burn::module::Module;
use burn::nn::conv::Conv3d;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct STUNet {
    /// Encoder stages `0..n` (stage `n-1` is the bottleneck).
    pub conv_blocks_context: Vec<Vec<BasicResBlock>>,
    /// `upsample_layers[u]`: from stage `n-1-u` to stage `n-2-u`.
    pub upsample_layers: Vec<UpsampleLayerNearest>,
    /// `conv_blocks_localization[u]`: decoder stage at the resolution of encoder stage `n-2-u`.
    pub conv_blocks_localization: Vec<Vec<BasicResBlock>>,
    /// `seg_outputs[u]`: the 1×1 head after `conv_blocks_localization[u]` (the last is full resolution).
    pub seg_outputs: Vec<Conv3d>,
    /// Return every head's logits (full resolution first) or only the full-resolution ones.
    #[module(skip)]
    pub deep_supervision: bool,
    /// Total downsampling per axis (the input must be divisible by it).
    #[module(skip)]
    pub total_stride: [usize; 3],
}

fn stage(cin: usize, cout: usize, depth: usize, k: [usize; 3], stride: [usize; 3], dev: &Device) -> Vec<BasicResBlock> {
    let mut blocks = vec![BasicResBlock::new(cin, cout, k, stride, true, dev)];
    blocks.extend((1..depth).map(|_| BasicResBlock::new(cout, cout, k, [1, 1, 1], false, dev)));
    blocks
}

fn run(blocks: &[BasicResBlock], mut x: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
    for (i, b) in blocks.iter().enumerate() {
        x = b.forward(x, probe, &format!("{name}.{i}"));
    }
    x
}

impl STUNet {
    /// Build with STU-Net's He init.
    pub fn new(kw: &STUNetKwargs, in_channels: usize, n_classes: usize, deep_supervision: bool, dev: &Device) -> Self {
        let n = kw.n_stages();
        let (d, k, p) = (&kw.dims, &kw.conv_kernel_sizes, &kw.pool_op_kernel_sizes);
        let mut conv_blocks_context = vec![stage(in_channels, d[0], kw.depth[0], k[0], [1, 1, 1], dev)];
        conv_blocks_context.extend((1..n).map(|s| stage(d[s - 1], d[s], kw.depth[s], k[s], p[s - 1], dev)));
        // decoder stage u works at encoder stage l = n-2-u
        let level = |u: usize| n - 2 - u;
        let upsample_layers = (0..n - 1).map(|u| UpsampleLayerNearest::new(d[level(u) + 1], d[level(u)], p[level(u)], dev)).collect();
        let conv_blocks_localization =
            (0..n - 1).map(|u| stage(2 * d[level(u)], d[level(u)], kw.depth[level(u)], k[level(u)], [1, 1, 1], dev)).collect();
        let seg_outputs = (0..n - 1).map(|u| conv(d[level(u)], n_classes, [1, 1, 1], [1, 1, 1], dev)).collect();
        Self {
            conv_blocks_context,
            upsample_layers,
            conv_blocks_localization,
            seg_outputs,
            deep_supervision,
            total_stride: kw.total_stride(),
        }
    }

    /// Logits: with deep supervision one per decoder stage, full resolution first (stage 0, 1, ..., n-2), else
    /// only the full-resolution ones.
    ///
    /// # Panics
    /// If a spatial axis of `x` is not divisible by [`STUNet::total_stride`].
    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        self.forward_probed(x, &mut ConvProbe::off())
    }

    /// [`STUNet::forward`], recording every conv's output shape in `probe`.
    pub fn forward_probed(&self, x: Tensor<5>, probe: &mut ConvProbe) -> Vec<Tensor<5>> {
        let dims = x.dims();
        assert!(
            (0..3).all(|a| dims[2 + a].is_multiple_of(self.total_stride[a])),
            "STUNet: input spatial shape {:?} is not divisible by the product of the pool kernels {:?}",
            &dims[2..],
            self.total_stride
        );
        let n = self.conv_blocks_context.len();
        let mut skips = Vec::with_capacity(n - 1);
        let mut x = x;
        for (s, blocks) in self.conv_blocks_context.iter().enumerate() {
            x = run(blocks, x, probe, &format!("conv_blocks_context.{s}"));
            if s + 1 < n {
                skips.push(x.clone());
            }
        }
        let mut outs = Vec::with_capacity(n - 1);
        for (u, (up, blocks)) in self.upsample_layers.iter().zip(&self.conv_blocks_localization).enumerate() {
            let y = up.forward(x, probe, &format!("upsample_layers.{u}"));
            let skip = skips.pop().expect("one skip per decoder stage");
            x = run(blocks, Tensor::cat(vec![y, skip], 1), probe, &format!("conv_blocks_localization.{u}"));
            if self.deep_supervision || u + 2 == n {
                let o = self.seg_outputs[u].forward(x.clone());
                probe.see(|| format!("seg_outputs.{u}"), &o);
                outs.push(o);
            }
        }
        outs.reverse();
        outs
    }
}
