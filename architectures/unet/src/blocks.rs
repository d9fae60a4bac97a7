//! Building blocks shared by both U-Nets: conv-norm-nonlin, stacked conv blocks, `BasicBlockD`, and the
//! `UNetDecoder`. Field names follow dynamic_network_architectures' state-dict keys
//! (`stages.{s}.convs.{i}.conv`, `blocks.{b}.conv1`, `transpconvs.{j}`, `seg_layers.{j}`) so that importing a
//! PyTorch checkpoint is a rename, not a re-layout.

use crate::kwargs::{Nonlin, UNetKwargs};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{InstanceNorm, InstanceNormConfig, PaddingConfig3d};
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::{Device, Distribution, Tensor};

/// nnU-Net's `InitWeights_He(1e-2)`: `kaiming_normal_(a=0.01)`, std = sqrt(2 / (1 + a²)) / sqrt(fan_in).
pub fn he_std(fan_in: usize) -> f64 {
    (2.0 / (1.0 + 0.01f64 * 0.01)).sqrt() / (fan_in as f64).sqrt()
}

/// A conv with nnU-Net's He init (bias 0).
pub fn conv(cin: usize, cout: usize, k: [usize; 3], s: [usize; 3], bias: bool, dev: &Device) -> Conv3d {
    let mut c = Conv3dConfig::new([cin, cout], k)
        .with_stride(s)
        .with_padding(PaddingConfig3d::Explicit((k[0] - 1) / 2, (k[1] - 1) / 2, (k[2] - 1) / 2))
        .with_bias(bias)
        .init(dev);
    let fan_in = cin * k.iter().product::<usize>();
    c.weight = Param::from_tensor(Tensor::random([cout, cin, k[0], k[1], k[2]], Distribution::Normal(0.0, he_std(fan_in)), dev));
    if bias {
        c.bias = Some(Param::from_tensor(Tensor::zeros([cout], dev)));
    }
    c
}

/// A transposed conv (kernel = stride) with nnU-Net's He init. PyTorch computes the transposed conv's
/// "fan_in" from `weight.shape[1] * prod(k)` = `out_channels * prod(k)`; we replicate that.
pub fn transp_conv(cin: usize, cout: usize, s: [usize; 3], bias: bool, dev: &Device) -> ConvTranspose3d {
    let mut c = ConvTranspose3dConfig::new([cin, cout], s).with_stride(s).with_bias(bias).init(dev);
    let fan_in = cout * s.iter().product::<usize>();
    let shape = c.weight.val().dims();
    c.weight = Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, he_std(fan_in)), dev));
    if bias {
        c.bias = Some(Param::from_tensor(Tensor::zeros([cout], dev)));
    }
    c
}

fn apply_nonlin(x: Tensor<5>, n: Nonlin) -> Tensor<5> {
    match n {
        Nonlin::LeakyRelu(s) => leaky_relu(x, s),
        Nonlin::Relu => relu(x),
    }
}

#[derive(Module, Debug)]
pub struct ConvNormAct {
    pub conv: Conv3d,
    pub norm: InstanceNorm,
    /// `None` = no non-linearity (BasicBlockD's conv2 and projection).
    #[module(skip)]
    pub nonlin: Option<Nonlin>,
}

impl ConvNormAct {
    #[allow(clippy::too_many_arguments)]
    pub fn new(cin: usize, cout: usize, k: [usize; 3], s: [usize; 3], bias: bool, nonlin: Option<Nonlin>, kw: &UNetKwargs, dev: &Device) -> Self {
        let norm = InstanceNormConfig::new(cout).with_epsilon(kw.norm_eps).with_affine(kw.norm_affine).init(dev);
        Self { conv: conv(cin, cout, k, s, bias, dev), norm, nonlin }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let y = self.norm.forward(self.conv.forward(x));
        match self.nonlin {
            Some(n) => apply_nonlin(y, n),
            None => y,
        }
    }

    /// Set the norm's scale and shift to zero (ResEnc's `init_last_bn_before_add_to_0`).
    pub fn zero_norm(mut self) -> Self {
        if let Some(g) = self.norm.gamma.take() {
            let dims = g.val().dims();
            let dev = g.val().device();
            self.norm.gamma = Some(Param::from_tensor(Tensor::zeros(dims, &dev)));
        }
        if let Some(b) = self.norm.beta.take() {
            let dims = b.val().dims();
            let dev = b.val().device();
            self.norm.beta = Some(Param::from_tensor(Tensor::zeros(dims, &dev)));
        }
        self
    }
}

/// `StackedConvBlocks`: n conv-norm-nonlin, the first with `initial_stride` and `cin` inputs.
#[derive(Module, Debug)]
pub struct StackedConvBlocks {
    pub convs: Vec<ConvNormAct>,
}

impl StackedConvBlocks {
    pub fn new(n: usize, cin: usize, cout: usize, k: [usize; 3], initial_stride: [usize; 3], kw: &UNetKwargs, dev: &Device) -> Self {
        let convs = (0..n)
            .map(|i| {
                let (ci, s) = if i == 0 { (cin, initial_stride) } else { (cout, [1, 1, 1]) };
                ConvNormAct::new(ci, cout, k, s, kw.conv_bias, Some(kw.nonlin), kw, dev)
            })
            .collect();
        Self { convs }
    }

    pub fn forward(&self, mut x: Tensor<5>) -> Tensor<5> {
        for c in &self.convs {
            x = c.forward(x);
        }
        x
    }
}

/// Average pooling with kernel = stride, no padding, floor mode (PyTorch `AvgPool3d(k, k)`).
pub fn avg_pool(x: Tensor<5>, s: [usize; 3]) -> Tensor<5> {
    if s == [1, 1, 1] {
        return x;
    }
    let [b, c, d, h, w] = x.dims();
    let (od, oh, ow) = (d / s[0], h / s[1], w / s[2]);
    let x = if (od * s[0], oh * s[1], ow * s[2]) != (d, h, w) { x.slice([0..b, 0..c, 0..od * s[0], 0..oh * s[1], 0..ow * s[2]]) } else { x };
    // (b, c, od, s0, oh, s1, ow, s2) -> mean over the window axes
    let x: Tensor<8> = x.reshape([b, c, od, s[0], oh, s[1], ow, s[2]]);
    let x = x.mean_dim(3).mean_dim(5).mean_dim(7);
    x.reshape([b, c, od, oh, ow])
}

/// `BasicBlockD`: conv1 (strided) → conv2 (no nonlin) + skip (avg-pool if strided, 1×1 conv without bias +
/// IN if channels change), then the nonlin.
#[derive(Module, Debug)]
pub struct BasicBlockD {
    pub conv1: ConvNormAct,
    pub conv2: ConvNormAct,
    pub skip: Option<ConvNormAct>,
    #[module(skip)]
    pub pool: [usize; 3],
    #[module(skip)]
    pub nonlin: Nonlin,
}

impl BasicBlockD {
    pub fn new(cin: usize, cout: usize, k: [usize; 3], s: [usize; 3], kw: &UNetKwargs, dev: &Device) -> Self {
        let conv1 = ConvNormAct::new(cin, cout, k, s, kw.conv_bias, Some(kw.nonlin), kw, dev);
        // init_last_bn_before_add_to_0: the residual branch starts at exactly zero
        let conv2 = ConvNormAct::new(cout, cout, k, [1, 1, 1], kw.conv_bias, None, kw, dev).zero_norm();
        let skip = (cin != cout).then(|| ConvNormAct::new(cin, cout, [1, 1, 1], [1, 1, 1], false, None, kw, dev));
        Self { conv1, conv2, skip, pool: s, nonlin: kw.nonlin }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut res = avg_pool(x.clone(), self.pool);
        if let Some(p) = &self.skip {
            res = p.forward(res);
        }
        let out = self.conv2.forward(self.conv1.forward(x));
        apply_nonlin(out + res, self.nonlin)
    }
}

/// `UNetDecoder`: per level a transposed conv (kernel = stride), concat with the skip (upsampled first),
/// stacked convs, and a 1×1 seg head (bias always on).
#[derive(Module, Debug)]
pub struct UNetDecoder {
    pub transpconvs: Vec<ConvTranspose3d>,
    pub stages: Vec<StackedConvBlocks>,
    pub seg_layers: Vec<Conv3d>,
    #[module(skip)]
    pub deep_supervision: bool,
}

impl UNetDecoder {
    pub fn new(kw: &UNetKwargs, num_classes: usize, deep_supervision: bool, dev: &Device) -> Self {
        let n = kw.n_stages();
        let f = &kw.features;
        let (mut transpconvs, mut stages, mut seg_layers) = (vec![], vec![], vec![]);
        for s in 1..n {
            let below = f[n - s];
            let skip = f[n - s - 1];
            let st = kw.strides[n - s];
            transpconvs.push(transp_conv(below, skip, st, kw.conv_bias, dev));
            stages.push(StackedConvBlocks::new(kw.n_conv_decoder[s - 1], 2 * skip, skip, kw.kernel_sizes[n - s - 1], [1, 1, 1], kw, dev));
            seg_layers.push(conv(skip, num_classes, [1, 1, 1], [1, 1, 1], true, dev));
        }
        Self { transpconvs, stages, seg_layers, deep_supervision }
    }

    /// `skips`: encoder stage outputs, bottleneck last. Returns logits, full resolution first.
    pub fn forward(&self, mut skips: Vec<Tensor<5>>) -> Vec<Tensor<5>> {
        let mut x = skips.pop().expect("at least one stage");
        let last = self.stages.len().saturating_sub(1);
        let mut outs = Vec::new();
        for j in 0..self.stages.len() {
            let skip = skips.pop().expect("one skip per decoder stage");
            let up = self.transpconvs[j].forward(x);
            let [b, c, d, h, w] = up.dims();
            let [_, _, sd, sh, sw] = skip.dims();
            let up = if (d, h, w) != (sd, sh, sw) { up.slice([0..b, 0..c, 0..sd.min(d), 0..sh.min(h), 0..sw.min(w)]) } else { up };
            x = self.stages[j].forward(Tensor::cat(vec![up, skip], 1));
            if self.deep_supervision || j == last {
                outs.push(self.seg_layers[j].forward(x.clone()));
            }
        }
        outs.reverse();
        outs
    }
}
