//! The PyTorch state dict of dynamic_network_architectures' U-Nets, key by key in PyTorch's order, mapped to our
//! parameter paths. PyTorch registers some modules twice, so one parameter has several keys:
//! - `ConvDropoutNormReLU` keeps `conv`/`norm` and the same modules again in `all_modules` (`all_modules.0` = conv,
//!   `all_modules.1` = norm; nnU-Net's plans have no dropout);
//! - `UNetDecoder` keeps a reference to the encoder: every encoder key appears again under `decoder.encoder.`.
//!
//! Layout differences: a `PlainConvEncoder` stage is an `nn.Sequential` around its `StackedConvBlocks`
//! (`encoder.stages.{s}.0.convs…`), and a `BasicBlockD`'s projection sits in `skip.1` behind the average pool when the
//! block strides (`skip.0` otherwise). The decoder registers `stages` before `transpconvs`.

use crate::blocks::{BasicBlockD, ConvNormAct, StackedConvBlocks, UNetDecoder};
use crate::{PlainConvUNet, ResidualEncoderUNet};
use nnunet_core::TorchKey;

/// Collects `(key, path)` pairs.
struct Keys(Vec<TorchKey>);

impl Keys {
    fn push(&mut self, key: String, path: String) {
        self.0.push(TorchKey { key, path });
    }

    /// `ConvDropoutNormReLU`: `conv.weight`, `conv.bias`, `norm.weight`, `norm.bias`, then the same tensors under
    /// `all_modules.{0,1}`.
    fn cna(&mut self, key: &str, path: &str, c: &ConvNormAct) {
        let mut own: Vec<(&str, &str)> = vec![("conv.weight", "conv.weight")];
        if c.conv.bias.is_some() {
            own.push(("conv.bias", "conv.bias"));
        }
        if c.norm.gamma.is_some() {
            own.push(("norm.weight", "norm.gamma"));
        }
        if c.norm.beta.is_some() {
            own.push(("norm.bias", "norm.beta"));
        }
        for (k, p) in &own {
            self.push(format!("{key}{k}"), format!("{path}{p}"));
        }
        for (k, p) in &own {
            let aliased = k.replacen("conv.", "all_modules.0.", 1).replacen("norm.", "all_modules.1.", 1);
            self.push(format!("{key}{aliased}"), format!("{path}{p}"));
        }
    }

    fn stacked(&mut self, key: &str, path: &str, s: &StackedConvBlocks) {
        for (i, c) in s.convs.iter().enumerate() {
            self.cna(&format!("{key}convs.{i}."), &format!("{path}convs.{i}."), c);
        }
    }

    fn basic_block(&mut self, key: &str, path: &str, b: &BasicBlockD) {
        self.cna(&format!("{key}conv1."), &format!("{path}conv1."), &b.conv1);
        self.cna(&format!("{key}conv2."), &format!("{path}conv2."), &b.conv2);
        if let Some(skip) = &b.skip {
            let slot = if b.pool == [1, 1, 1] { 0 } else { 1 };
            self.cna(&format!("{key}skip.{slot}."), &format!("{path}skip."), skip);
        }
    }

    /// `UNetDecoder` after its encoder reference: stages, transpconvs, seg_layers.
    fn decoder(&mut self, d: &UNetDecoder) {
        for (i, s) in d.stages.iter().enumerate() {
            self.stacked(&format!("decoder.stages.{i}."), &format!("decoder.stages.{i}."), s);
        }
        for (i, t) in d.transpconvs.iter().enumerate() {
            self.push(format!("decoder.transpconvs.{i}.weight"), format!("decoder.transpconvs.{i}.weight"));
            if t.bias.is_some() {
                self.push(format!("decoder.transpconvs.{i}.bias"), format!("decoder.transpconvs.{i}.bias"));
            }
        }
        for (i, c) in d.seg_layers.iter().enumerate() {
            self.push(format!("decoder.seg_layers.{i}.weight"), format!("decoder.seg_layers.{i}.weight"));
            if c.bias.is_some() {
                self.push(format!("decoder.seg_layers.{i}.bias"), format!("decoder.seg_layers.{i}.bias"));
            }
        }
    }
}

/// `PlainConvUNet.state_dict()`'s keys.
pub fn plain_state_dict(n: &PlainConvUNet) -> Vec<TorchKey> {
    let mut k = Keys(Vec::new());
    for prefix in ["encoder.", "decoder.encoder."] {
        for (s, st) in n.encoder.stages.iter().enumerate() {
            k.stacked(&format!("{prefix}stages.{s}.0."), &format!("encoder.stages.{s}."), st);
        }
    }
    k.decoder(&n.decoder);
    k.0
}

/// `ResidualEncoderUNet.state_dict()`'s keys.
pub fn resenc_state_dict(n: &ResidualEncoderUNet) -> Vec<TorchKey> {
    let mut k = Keys(Vec::new());
    for prefix in ["encoder.", "decoder.encoder."] {
        k.stacked(&format!("{prefix}stem."), "encoder.stem.", &n.encoder.stem);
        for (s, st) in n.encoder.stages.iter().enumerate() {
            for (b, block) in st.blocks.iter().enumerate() {
                k.basic_block(&format!("{prefix}stages.{s}.blocks.{b}."), &format!("encoder.stages.{s}.blocks.{b}."), block);
            }
        }
    }
    k.decoder(&n.decoder);
    k.0
}
