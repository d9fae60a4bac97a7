//! STU-Net's blocks (`STUNet.py`): [`BasicResBlock`] and [`UpsampleLayerNearest`]. Field names are the
//! PyTorch state-dict keys (`conv1`, `norm1`, `conv2`, `norm2`, `conv3`, `conv`; burn's InstanceNorm calls
//! weight/bias `gamma`/`beta`).
//!
//! Init is STU-Net's `self.apply(InitWeights_He(1e-2))`: every conv weight `kaiming_normal_(a = 0.01)`
//! (normal with std `sqrt(2 / (1 + 0.01²)) / sqrt(fan_in)`, `fan_in = in · prod(k)`), every conv bias 0;
//! InstanceNorm affines keep PyTorch's defaults (weight 1, bias 0).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{InstanceNorm, InstanceNormConfig, PaddingConfig3d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Distribution, Tensor};

/// `nn.LeakyReLU()`'s default negative slope.
pub const LEAKY_SLOPE: f64 = 0.01;

pub use nnunet_core::probe::ConvProbe;

/// `InitWeights_He(1e-2)`'s standard deviation for a conv with `fan_in` inputs per output.
pub fn he_std(fan_in: usize) -> f64 {
    (2.0 / (1.0 + LEAKY_SLOPE * LEAKY_SLOPE)).sqrt() / (fan_in as f64).sqrt()
}

/// `nn.Conv3d(cin, cout, k, stride, padding = k//2)` with bias, He-initialised (bias 0).
pub fn conv(cin: usize, cout: usize, k: [usize; 3], stride: [usize; 3], dev: &Device) -> Conv3d {
    let mut c = Conv3dConfig::new([cin, cout], k)
        .with_stride(stride)
        .with_padding(PaddingConfig3d::Explicit(k[0] / 2, k[1] / 2, k[2] / 2))
        .with_bias(true)
        .init(dev);
    let fan_in = cin * k.iter().product::<usize>();
    c.weight = Param::from_tensor(Tensor::random([cout, cin, k[0], k[1], k[2]], Distribution::Normal(0.0, he_std(fan_in)), dev));
    c.bias = Some(Param::from_tensor(Tensor::zeros([cout], dev)));
    c
}

fn instance_norm(c: usize, dev: &Device) -> InstanceNorm {
    // nn.InstanceNorm3d(c, affine=True): eps 1e-5, no running statistics
    InstanceNormConfig::new(c).with_epsilon(1e-5).with_affine(true).init(dev)
}

/// `BasicResBlock(cin, cout, k, stride, use_1x1conv)`: conv k (stride) → InstanceNorm → LeakyReLU → conv k →
/// InstanceNorm, plus the input (through a strided 1×1 conv `conv3` when `use_1x1conv`), → LeakyReLU.
#[derive(Module, Debug)]
pub struct BasicResBlock {
    pub conv1: Conv3d,
    pub norm1: InstanceNorm,
    pub conv2: Conv3d,
    pub norm2: InstanceNorm,
    pub conv3: Option<Conv3d>,
}

impl BasicResBlock {
    /// Without `use_1x1conv` the residual is the identity, so `cin` must equal `cout` and `stride` be all ones
    /// (as STU-Net only builds it).
    pub fn new(cin: usize, cout: usize, k: [usize; 3], stride: [usize; 3], use_1x1conv: bool, dev: &Device) -> Self {
        assert!(use_1x1conv || (cin == cout && stride == [1, 1, 1]), "BasicResBlock: an identity residual needs cin == cout and stride 1");
        Self {
            conv1: conv(cin, cout, k, stride, dev),
            norm1: instance_norm(cout, dev),
            conv2: conv(cout, cout, k, [1, 1, 1], dev),
            norm2: instance_norm(cout, dev),
            conv3: use_1x1conv.then(|| conv(cin, cout, [1, 1, 1], stride, dev)),
        }
    }

    pub fn forward(&self, x: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
        let y = self.conv1.forward(x.clone());
        probe.see(|| format!("{name}.conv1"), &y);
        let y = leaky_relu(self.norm1.forward(y), LEAKY_SLOPE);
        let y = self.conv2.forward(y);
        probe.see(|| format!("{name}.conv2"), &y);
        let y = self.norm2.forward(y);
        let res = match &self.conv3 {
            Some(c) => {
                let r = c.forward(x);
                probe.see(|| format!("{name}.conv3"), &r);
                r
            }
            None => x,
        };
        leaky_relu(y + res, LEAKY_SLOPE)
    }
}

/// Nearest-neighbour upsampling by integer factors per axis (`F.interpolate(mode='nearest', scale_factor=s)`:
/// every voxel repeated `s` times along each axis).
pub fn upsample_nearest(x: Tensor<5>, s: [usize; 3]) -> Tensor<5> {
    if s == [1, 1, 1] {
        return x;
    }
    let [b, c, z, y, w] = x.dims();
    x.reshape([b * c, z, 1, y, 1, w, 1]).expand([b * c, z, s[0], y, s[1], w, s[2]]).reshape([b, c, z * s[0], y * s[1], w * s[2]])
}

/// `Upsample_Layer_nearest(cin, cout, s)`: nearest upsampling by `s`, then a 1×1 conv with bias. The conv runs
/// before the upsampling here: a 1×1 conv commutes with nearest upsampling (each output voxel is the same
/// per-voxel affine map of the same input voxel), so the result is identical at `1/prod(s)` of the cost.
#[derive(Module, Debug)]
pub struct UpsampleLayerNearest {
    pub conv: Conv3d,
    /// The scale factor (STU-Net's `pool_op_kernel_size`; not a parameter).
    #[module(skip)]
    pub pool_op_kernel_size: [usize; 3],
}

impl UpsampleLayerNearest {
    pub fn new(cin: usize, cout: usize, pool_op_kernel_size: [usize; 3], dev: &Device) -> Self {
        Self { conv: conv(cin, cout, [1, 1, 1], [1, 1, 1], dev), pool_op_kernel_size }
    }

    pub fn forward(&self, x: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
        let y = upsample_nearest(self.conv.forward(x), self.pool_op_kernel_size);
        // recorded at the upsampled size: PyTorch's conv runs there
        probe.see(|| format!("{name}.conv"), &y);
        y
    }
}
