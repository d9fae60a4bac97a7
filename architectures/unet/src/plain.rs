//! `dynamic_network_architectures.architectures.unet.PlainConvUNet` (training spec §1.2).

use crate::blocks::{StackedConvBlocks, UNetDecoder};
use crate::kwargs::UNetKwargs;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct PlainConvEncoder {
    pub stages: Vec<StackedConvBlocks>,
}

#[derive(Module, Debug)]
pub struct PlainConvUNet {
    pub encoder: PlainConvEncoder,
    pub decoder: UNetDecoder,
}

impl PlainConvUNet {
    pub fn new(kw: &UNetKwargs, in_channels: usize, num_classes: usize, deep_supervision: bool, dev: &Device) -> Self {
        let mut cin = in_channels;
        let stages = (0..kw.n_stages())
            .map(|s| {
                let st = StackedConvBlocks::new(kw.n_per_stage[s], cin, kw.features[s], kw.kernel_sizes[s], kw.strides[s], kw, dev);
                cin = kw.features[s];
                st
            })
            .collect();
        Self { encoder: PlainConvEncoder { stages }, decoder: UNetDecoder::new(kw, num_classes, deep_supervision, dev) }
    }

    pub fn forward(&self, mut x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut skips = Vec::with_capacity(self.encoder.stages.len());
        for s in &self.encoder.stages {
            x = s.forward(x);
            skips.push(x.clone());
        }
        self.decoder.forward(skips)
    }
}
