//! `dynamic_network_architectures.architectures.unet.ResidualEncoderUNet` (training spec §1.3): a stem
//! conv, `BasicBlockD` stages (the first block of each stage strides), and the plain `UNetDecoder`.

use crate::blocks::{BasicBlockD, StackedConvBlocks, UNetDecoder};
use crate::kwargs::UNetKwargs;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct ResidualStage {
    pub blocks: Vec<BasicBlockD>,
}

#[derive(Module, Debug)]
pub struct ResidualEncoder {
    pub stem: StackedConvBlocks,
    pub stages: Vec<ResidualStage>,
}

#[derive(Module, Debug)]
pub struct ResidualEncoderUNet {
    pub encoder: ResidualEncoder,
    pub decoder: UNetDecoder,
}

impl ResidualEncoderUNet {
    pub fn new(kw: &UNetKwargs, in_channels: usize, num_classes: usize, deep_supervision: bool, dev: &Device) -> Self {
        let f = &kw.features;
        let stem = StackedConvBlocks::new(1, in_channels, f[0], kw.kernel_sizes[0], [1, 1, 1], kw, dev);
        let mut cin = f[0];
        let stages = (0..kw.n_stages())
            .map(|s| {
                let blocks = (0..kw.n_per_stage[s])
                    .map(|b| {
                        let (ci, st) = if b == 0 { (cin, kw.strides[s]) } else { (f[s], [1, 1, 1]) };
                        BasicBlockD::new(ci, f[s], kw.kernel_sizes[s], st, kw, dev)
                    })
                    .collect();
                cin = f[s];
                ResidualStage { blocks }
            })
            .collect();
        Self { encoder: ResidualEncoder { stem, stages }, decoder: UNetDecoder::new(kw, num_classes, deep_supervision, dev) }
    }

    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut x = self.encoder.stem.forward(x);
        let mut skips = Vec::with_capacity(self.encoder.stages.len());
        for st in &self.encoder.stages {
            for b in &st.blocks {
                x = b.forward(x);
            }
            skips.push(x.clone());
        }
        self.decoder.forward(skips)
    }
}
