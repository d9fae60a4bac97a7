//! MedNeXt v1's blocks (`nnunet_mednext/network_architecture/mednextv1/blocks.py`): [`MedNeXtBlock`],
//! [`MedNeXtDownBlock`], [`MedNeXtUpBlock`] and [`OutBlock`]. Field names are the PyTorch state-dict keys
//! (`conv1`, `norm`, `conv2`, `conv3`, `res_conv`, `conv_out`; burn's GroupNorm calls weight/bias `gamma`/`beta`).
//!
//! All convs use PyTorch's default init (MedNeXt applies no custom init), which is burn's default
//! `KaimingUniform(gain = 1/√3)`: weights and biases uniform in `±1/√fan_in`, with PyTorch's fan-in
//! (`in/groups · k³` for convs, `out/groups · k³` for transposed convs).

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig3d};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

pub use nnunet_core::probe::ConvProbe;

/// A conv with "same" padding `k//2` per axis.
pub fn conv(cin: usize, cout: usize, k: [usize; 3], stride: [usize; 3], groups: usize, dev: &Device) -> Conv3d {
    Conv3dConfig::new([cin, cout], k)
        .with_stride(stride)
        .with_groups(groups)
        .with_padding(PaddingConfig3d::Explicit(k[0] / 2, k[1] / 2, k[2] / 2))
        .init(dev)
}

/// A transposed conv with padding `k//2` per axis.
pub fn transp_conv(cin: usize, cout: usize, k: [usize; 3], stride: [usize; 3], groups: usize, dev: &Device) -> ConvTranspose3d {
    ConvTranspose3dConfig::new([cin, cout], k).with_stride(stride).with_groups(groups).with_padding(k.map(|x| x / 2)).init(dev)
}

fn group_norm(c: usize, dev: &Device) -> GroupNorm {
    // GroupNorm(num_groups = C, num_channels = C): per-channel normalisation over space, eps 1e-5, affine
    GroupNormConfig::new(c, c).with_epsilon(1e-5).init(dev)
}

/// The part every block shares after `conv1`: GroupNorm → 1×1 expansion → exact (erf) GELU → 1×1 compression.
fn tail(norm: &GroupNorm, conv2: &Conv3d, conv3: &Conv3d, x1: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
    let x1 = conv2.forward(norm.forward(x1));
    probe.see(|| format!("{name}.conv2"), &x1);
    let x1 = conv3.forward(gelu(x1));
    probe.see(|| format!("{name}.conv3"), &x1);
    x1
}

/// `MedNeXtBlock(cin, cout, exp_r, k, do_res)`: depthwise k conv → GroupNorm → 1×1 conv to `exp_r·cin` → GELU →
/// 1×1 conv to `cout`, plus the input when `do_res`.
#[derive(Module, Debug)]
pub struct MedNeXtBlock {
    pub conv1: Conv3d,
    pub norm: GroupNorm,
    pub conv2: Conv3d,
    pub conv3: Conv3d,
    #[module(skip)]
    pub do_res: bool,
}

impl MedNeXtBlock {
    pub fn new(cin: usize, cout: usize, exp_r: usize, k: [usize; 3], do_res: bool, dev: &Device) -> Self {
        Self {
            conv1: conv(cin, cin, k, [1, 1, 1], cin, dev),
            norm: group_norm(cin, dev),
            conv2: conv(cin, exp_r * cin, [1, 1, 1], [1, 1, 1], 1, dev),
            conv3: conv(exp_r * cin, cout, [1, 1, 1], [1, 1, 1], 1, dev),
            do_res,
        }
    }

    pub fn forward(&self, x: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
        let x1 = self.conv1.forward(x.clone());
        probe.see(|| format!("{name}.conv1"), &x1);
        let x1 = tail(&self.norm, &self.conv2, &self.conv3, x1, probe, name);
        if self.do_res { x + x1 } else { x1 }
    }
}

/// `MedNeXtDownBlock(cin, cout, exp_r, k, do_res)`: the block with a strided depthwise `conv1` and no identity
/// residual; when `do_res`, a strided 1×1 conv of the input (`res_conv`) is added.
#[derive(Module, Debug)]
pub struct MedNeXtDownBlock {
    pub conv1: Conv3d,
    pub norm: GroupNorm,
    pub conv2: Conv3d,
    pub conv3: Conv3d,
    pub res_conv: Option<Conv3d>,
}

impl MedNeXtDownBlock {
    pub fn new(cin: usize, cout: usize, exp_r: usize, k: [usize; 3], stride: [usize; 3], do_res: bool, dev: &Device) -> Self {
        Self {
            conv1: conv(cin, cin, k, stride, cin, dev),
            norm: group_norm(cin, dev),
            conv2: conv(cin, exp_r * cin, [1, 1, 1], [1, 1, 1], 1, dev),
            conv3: conv(exp_r * cin, cout, [1, 1, 1], [1, 1, 1], 1, dev),
            res_conv: do_res.then(|| conv(cin, cout, [1, 1, 1], stride, 1, dev)),
        }
    }

    pub fn forward(&self, x: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
        let x1 = self.conv1.forward(x.clone());
        probe.see(|| format!("{name}.conv1"), &x1);
        let x1 = tail(&self.norm, &self.conv2, &self.conv3, x1, probe, name);
        match &self.res_conv {
            Some(r) => {
                let res = r.forward(x);
                probe.see(|| format!("{name}.res_conv"), &res);
                x1 + res
            }
            None => x1,
        }
    }
}

/// `MedNeXtUpBlock(cin, cout, exp_r, k, do_res)`: the block with a depthwise transposed `conv1` (stride `s`,
/// padding `k//2`, giving `s·(n-1)+1` voxels per axis) and no identity residual; the result is zero-padded by
/// `s-1` voxels at the low side of each axis (MedNeXt's `F.pad(x, (1,0,1,0,1,0))` for `s = 2`). When `do_res`,
/// a 1×1 transposed conv of the input with the same stride, padded the same way, is added.
#[derive(Module, Debug)]
pub struct MedNeXtUpBlock {
    pub conv1: ConvTranspose3d,
    pub norm: GroupNorm,
    pub conv2: Conv3d,
    pub conv3: Conv3d,
    pub res_conv: Option<ConvTranspose3d>,
    #[module(skip)]
    pub stride: [usize; 3],
}

impl MedNeXtUpBlock {
    pub fn new(cin: usize, cout: usize, exp_r: usize, k: [usize; 3], stride: [usize; 3], do_res: bool, dev: &Device) -> Self {
        Self {
            conv1: transp_conv(cin, cin, k, stride, cin, dev),
            norm: group_norm(cin, dev),
            conv2: conv(cin, exp_r * cin, [1, 1, 1], [1, 1, 1], 1, dev),
            conv3: conv(exp_r * cin, cout, [1, 1, 1], [1, 1, 1], 1, dev),
            res_conv: do_res.then(|| transp_conv(cin, cout, [1, 1, 1], stride, 1, dev)),
            stride,
        }
    }

    fn pad(&self, x: Tensor<5>) -> Tensor<5> {
        let [sz, sy, sx] = self.stride.map(|s| s - 1);
        if sz + sy + sx == 0 {
            return x;
        }
        x.pad([(0, 0), (0, 0), (sz, 0), (sy, 0), (sx, 0)], 0.0f32)
    }

    pub fn forward(&self, x: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
        let x1 = self.conv1.forward(x.clone());
        probe.see(|| format!("{name}.conv1"), &x1);
        let x1 = self.pad(tail(&self.norm, &self.conv2, &self.conv3, x1, probe, name));
        match &self.res_conv {
            Some(r) => {
                let res = r.forward(x);
                probe.see(|| format!("{name}.res_conv"), &res);
                x1 + self.pad(res)
            }
            None => x1,
        }
    }
}

/// `OutBlock(c, n_classes)`: a 1×1 **transposed** conv (weight layout `(c, n_classes, 1, 1, 1)`), with bias.
#[derive(Module, Debug)]
pub struct OutBlock {
    pub conv_out: ConvTranspose3d,
}

impl OutBlock {
    pub fn new(c: usize, n_classes: usize, dev: &Device) -> Self {
        Self { conv_out: ConvTranspose3dConfig::new([c, n_classes], [1, 1, 1]).init(dev) }
    }

    pub fn forward(&self, x: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
        let y = self.conv_out.forward(x);
        probe.see(|| format!("{name}.conv_out"), &y);
        y
    }
}
