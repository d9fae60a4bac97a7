//! `TinyNet`: an out-of-tree architecture plugin, written only against nnunet-core's public API.
//!
//! A small U-Net for 2D and 3D: one conv-InstanceNorm-LeakyReLU per encoder stage (strided from stage 1 on), per
//! decoder level a transposed conv (kernel = stride), an additive (or concatenated) skip and one
//! conv-InstanceNorm-LeakyReLU, and a 1×1 segmentation head per level (deep supervision). It follows the planner's
//! topology (stages, strides, kernels, features), so `nnunet plan-experiment --arch TinyNet` budgets it and the
//! engine trains it like the built-in U-Nets.
//!
//! Two ways in (docs/PLUGINS.md):
//! - tier 1: link this crate into a binary (`use tinynet as _;` + `nnunet_cli::main()`, see `src/main.rs`, or
//!   `nnunet plugin build examples/plugin-tinynet`);
//! - tier 2: build it as a `cdylib` (`cargo build -p nnunet-example-tinynet` → `libtinynet.so`) and run
//!   `nnunet --plugin libtinynet.so …`. The `dynamic-plugin` feature (default) exports the plugin header.
//!
//! kwargs (`arch_kwargs` in the plans): `n_stages`, `features_per_stage`, `kernel_sizes`, `strides` (per stage, 2 or
//! 3 axes), optional `skip` (`"add"`, default, or `"concat"`), `negative_slope` (0.01), `norm_eps` (1e-5).

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{InstanceNorm, InstanceNormConfig, PaddingConfig3d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::network::{Network, NetworkModule, boxed};
use nnunet_core::topology::Topology;
use nnunet_core::{Architecture, ArchitectureError};
use serde_json::{Map, Value, json};

/// The registry name of TinyNet (what `network_class_name` says in a plans file).
pub const NAME: &str = "TinyNet";

/// How a decoder level merges the upsampled features with the encoder skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `up + skip` (same channel count; fewer parameters).
    Add,
    /// `cat(up, skip)` along channels (as nnU-Net's U-Nets).
    Concat,
}

/// Parsed TinyNet kwargs; every per-stage list is lifted to 3 axes (2D: a leading 1).
#[derive(Debug, Clone, PartialEq)]
pub struct TinyNetKwargs {
    /// 2 or 3.
    pub dims: usize,
    pub features: Vec<usize>,
    pub kernel_sizes: Vec<[usize; 3]>,
    pub strides: Vec<[usize; 3]>,
    pub skip: Skip,
    pub negative_slope: f64,
    pub norm_eps: f64,
}

fn bad(msg: impl Into<String>) -> ArchitectureError {
    ArchitectureError::Kwargs(format!("TinyNet: {}", msg.into()))
}

fn usize_lists(kw: &Map<String, Value>, key: &str) -> Result<Vec<Vec<usize>>, ArchitectureError> {
    let v = kw.get(key).ok_or_else(|| bad(format!("missing '{key}'")))?;
    serde_json::from_value(v.clone()).map_err(|_| bad(format!("'{key}' must be a list of per-axis integer lists, got {v}")))
}

fn lift(v: &[usize], dims: usize, key: &str, stage: usize) -> Result<[usize; 3], ArchitectureError> {
    if v.len() != dims {
        return Err(bad(format!("'{key}' of stage {stage} has {} axes, expected {dims}", v.len())));
    }
    if v.contains(&0) {
        return Err(bad(format!("'{key}' of stage {stage} contains 0: {v:?}")));
    }
    Ok(match v {
        [y, x] => [1, *y, *x],
        [z, y, x] => [*z, *y, *x],
        _ => unreachable!("checked length"),
    })
}

impl TinyNetKwargs {
    /// Parse and validate `arch_kwargs`.
    pub fn parse(kw: &Map<String, Value>) -> Result<Self, ArchitectureError> {
        let n = kw.get("n_stages").and_then(Value::as_u64).ok_or_else(|| bad("missing integer 'n_stages'"))? as usize;
        if n < 2 {
            return Err(bad(format!("n_stages must be >= 2, got {n}")));
        }
        let features: Vec<usize> = kw
            .get("features_per_stage")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| bad("'features_per_stage' must be a list of integers"))?;
        let kernels = usize_lists(kw, "kernel_sizes")?;
        let strides = usize_lists(kw, "strides")?;
        for (key, len) in [("features_per_stage", features.len()), ("kernel_sizes", kernels.len()), ("strides", strides.len())] {
            if len != n {
                return Err(bad(format!("'{key}' has {len} entries but n_stages is {n}")));
            }
        }
        if features.contains(&0) {
            return Err(bad(format!("'features_per_stage' contains 0: {features:?}")));
        }
        let dims = strides[0].len();
        if dims != 2 && dims != 3 {
            return Err(bad(format!("strides must have 2 or 3 axes, got {:?}", strides[0])));
        }
        let kernel_sizes = kernels.iter().enumerate().map(|(s, k)| lift(k, dims, "kernel_sizes", s)).collect::<Result<Vec<_>, _>>()?;
        for (s, k) in kernel_sizes.iter().enumerate() {
            if k.iter().any(|x| x % 2 == 0) {
                return Err(bad(format!("kernel_sizes of stage {s} must be odd (same padding), got {k:?}")));
            }
        }
        let strides = strides.iter().enumerate().map(|(s, v)| lift(v, dims, "strides", s)).collect::<Result<Vec<_>, _>>()?;
        let skip = match kw.get("skip").map(|v| v.as_str()) {
            None | Some(Some("add")) => Skip::Add,
            Some(Some("concat")) => Skip::Concat,
            Some(_) => return Err(bad(format!("'skip' must be \"add\" or \"concat\", got {}", kw["skip"]))),
        };
        let num = |key: &str, default: f64| -> Result<f64, ArchitectureError> {
            match kw.get(key) {
                None => Ok(default),
                Some(v) => v.as_f64().ok_or_else(|| bad(format!("'{key}' must be a number, got {v}"))),
            }
        };
        Ok(Self {
            dims,
            features,
            kernel_sizes,
            strides,
            skip,
            negative_slope: num("negative_slope", 0.01)?,
            norm_eps: num("norm_eps", 1e-5)?,
        })
    }

    pub fn n_stages(&self) -> usize {
        self.features.len()
    }

    /// Spatial size of every stage's output for `patch` (3 axes), stage 0 first: a same-padded conv with stride s gives
    /// `ceil(n / s)`.
    pub fn stage_sizes(&self, patch: [usize; 3]) -> Vec<[usize; 3]> {
        let mut size = patch;
        self.strides
            .iter()
            .map(|s| {
                for a in 0..3 {
                    size[a] = size[a].div_ceil(s[a]);
                }
                size
            })
            .collect()
    }
}

/// conv (same padding) → InstanceNorm (affine) → LeakyReLU.
#[derive(Module, Debug)]
pub struct ConvNormAct {
    pub conv: Conv3d,
    pub norm: InstanceNorm,
    #[module(skip)]
    pub negative_slope: f64,
}

impl ConvNormAct {
    fn new(cin: usize, cout: usize, k: [usize; 3], s: [usize; 3], kw: &TinyNetKwargs, dev: &Device) -> Self {
        let conv = Conv3dConfig::new([cin, cout], k)
            .with_stride(s)
            .with_padding(PaddingConfig3d::Explicit((k[0] - 1) / 2, (k[1] - 1) / 2, (k[2] - 1) / 2))
            .init(dev);
        let norm = InstanceNormConfig::new(cout).with_epsilon(kw.norm_eps).with_affine(true).init(dev);
        Self { conv, norm, negative_slope: kw.negative_slope }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        leaky_relu(self.norm.forward(self.conv.forward(x)), self.negative_slope)
    }
}

/// The TinyNet module: `encoder[s]` per stage; per decoder level `j` (deepest first) `up[j]`, `decoder[j]`, `heads[j]`.
#[derive(Module, Debug)]
pub struct TinyNetModule {
    pub encoder: Vec<ConvNormAct>,
    pub up: Vec<ConvTranspose3d>,
    pub decoder: Vec<ConvNormAct>,
    pub heads: Vec<Conv3d>,
    #[module(skip)]
    pub concat: bool,
    #[module(skip)]
    pub deep_supervision: bool,
}

impl TinyNetModule {
    pub fn new(kw: &TinyNetKwargs, in_channels: usize, num_classes: usize, deep_supervision: bool, dev: &Device) -> Self {
        let n = kw.n_stages();
        let f = &kw.features;
        let mut cin = in_channels;
        let encoder = (0..n)
            .map(|s| {
                let c = ConvNormAct::new(cin, f[s], kw.kernel_sizes[s], kw.strides[s], kw, dev);
                cin = f[s];
                c
            })
            .collect();
        let (mut up, mut decoder, mut heads) = (vec![], vec![], vec![]);
        for s in (0..n - 1).rev() {
            up.push(ConvTranspose3dConfig::new([f[s + 1], f[s]], kw.strides[s + 1]).with_stride(kw.strides[s + 1]).init(dev));
            let merged = if kw.skip == Skip::Concat { 2 * f[s] } else { f[s] };
            decoder.push(ConvNormAct::new(merged, f[s], kw.kernel_sizes[s], [1, 1, 1], kw, dev));
            heads.push(Conv3dConfig::new([f[s], num_classes], [1, 1, 1]).init(dev));
        }
        Self { encoder, up, decoder, heads, concat: kw.skip == Skip::Concat, deep_supervision }
    }
}

impl NetworkModule for TinyNetModule {
    fn forward(&self, mut x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut skips = Vec::with_capacity(self.encoder.len());
        for e in &self.encoder {
            x = e.forward(x);
            skips.push(x.clone());
        }
        let mut x = skips.pop().expect("n_stages >= 2");
        let last = self.decoder.len() - 1;
        let mut outs = Vec::new();
        for j in 0..self.decoder.len() {
            let skip = skips.pop().expect("one skip per decoder level");
            let up = self.up[j].forward(x);
            // a patch not divisible by the strides upsamples past the skip: crop to it
            let [b, c, d, h, w] = up.dims();
            let [_, _, sd, sh, sw] = skip.dims();
            let up = if [d, h, w] != [sd, sh, sw] { up.slice([0..b, 0..c, 0..sd.min(d), 0..sh.min(h), 0..sw.min(w)]) } else { up };
            let merged = if self.concat { Tensor::cat(vec![up, skip], 1) } else { up + skip };
            x = self.decoder[j].forward(merged);
            if self.deep_supervision || j == last {
                outs.push(self.heads[j].forward(x.clone()));
            }
        }
        outs.reverse();
        outs
    }
}

/// The architecture (what the registry constructs).
pub struct TinyNet;

fn patch3(patch: &[usize]) -> Result<[usize; 3], ArchitectureError> {
    match patch {
        [y, x] => Ok([1, *y, *x]),
        [z, y, x] => Ok([*z, *y, *x]),
        _ => Err(bad(format!("patch {patch:?} is neither 2D nor 3D"))),
    }
}

impl Architecture for TinyNet {
    /// Feature-map elements of one sample: the input, every encoder output, per decoder level the upsampled map, the
    /// merged map (concat only), the conv output and the head (deep-supervision heads only when on).
    fn memory_proxy(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<f64, ArchitectureError> {
        let kw = TinyNetKwargs::parse(&spec.arch_kwargs)?;
        let patch = patch3(patch)?;
        let vox: Vec<f64> = kw.stage_sizes(patch).iter().map(|s| (s[0] * s[1] * s[2]) as f64).collect();
        let f: Vec<f64> = kw.features.iter().map(|&x| x as f64).collect();
        let mut total = spec.in_channels as f64 * (patch[0] * patch[1] * patch[2]) as f64;
        for s in 0..kw.n_stages() {
            total += f[s] * vox[s];
        }
        for s in 0..kw.n_stages() - 1 {
            let merged = if kw.skip == Skip::Concat { 2.0 } else { 0.0 };
            total += (2.0 + merged) * f[s] * vox[s];
            if spec.deep_supervision || s == 0 {
                total += spec.out_channels as f64 * vox[s];
            }
        }
        Ok(total)
    }

    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>, ArchitectureError> {
        let kw = TinyNetKwargs::parse(&spec.arch_kwargs)?;
        Ok(boxed(TinyNetModule::new(&kw, spec.in_channels, spec.out_channels, spec.deep_supervision, device)))
    }

    /// The planner's topology as is: its stages, strides, kernels and features; additive skips.
    fn configure(&self, t: &Topology) -> Option<Map<String, Value>> {
        json!({
            "n_stages": t.n_stages(),
            "features_per_stage": t.features_per_stage,
            "kernel_sizes": t.kernel_sizes,
            "strides": t.strides,
            "skip": "add",
            "negative_slope": 0.01,
            "norm_eps": 1e-5
        })
        .as_object()
        .cloned()
    }

    fn describe(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<Vec<String>, ArchitectureError> {
        let kw = TinyNetKwargs::parse(&spec.arch_kwargs)?;
        let sizes = kw.stage_sizes(patch3(patch)?);
        let show = |v: &[usize; 3]| v[3 - kw.dims..].iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x");
        let mut lines = Vec::new();
        for (s, size) in sizes.iter().enumerate() {
            lines.push(format!(
                "encoder {s:<3} conv {} stride {}  out ({}, {})",
                show(&kw.kernel_sizes[s]),
                show(&kw.strides[s]),
                kw.features[s],
                show(size)
            ));
        }
        for (j, s) in (0..kw.n_stages() - 1).rev().enumerate() {
            lines.push(format!(
                "decoder {j:<3} up {} {} skip, conv {}  out ({}, {})  head ({}, {}){}",
                show(&kw.strides[s + 1]),
                if kw.skip == Skip::Add { "+" } else { "concat" },
                show(&kw.kernel_sizes[s]),
                kw.features[s],
                show(&sizes[s]),
                spec.out_channels,
                show(&sizes[s]),
                if s == 0 { "  <- full-resolution output" } else { "" }
            ));
        }
        Ok(lines)
    }
}

nnunet_core::register_architecture!(
    NAME,
    "example plugin (examples/plugin-tinynet): U-Net with one conv-IN-LReLU per stage, additive skips, deep supervision",
    || Box::new(TinyNet)
);

// Tier 2: the same crate built as a cdylib is a dynamic plugin that runs whole nnunet commands on its own engine.
#[cfg(feature = "dynamic-plugin")]
nnunet_plugin::export_plugin!(nnunet_cli::run);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn spec(kwargs: Value, ds: bool) -> NetworkSpec {
        NetworkSpec { arch_kwargs: kwargs.as_object().unwrap().clone(), in_channels: 1, out_channels: 2, deep_supervision: ds }
    }

    fn kwargs_2d(skip: &str) -> Value {
        json!({"n_stages": 3, "features_per_stage": [4, 8, 8], "kernel_sizes": [[3, 3], [3, 3], [3, 3]],
               "strides": [[1, 1], [2, 2], [2, 2]], "skip": skip})
    }

    #[test]
    fn shapes_2d_with_both_skips_and_concat_has_more_parameters() {
        let dev = Device::default();
        let x = Tensor::<5>::random([2, 1, 1, 20, 16], Distribution::Normal(0.0, 1.0), &dev);
        let mut params = vec![];
        for skip in ["add", "concat"] {
            let net = TinyNet.build(&spec(kwargs_2d(skip), true), &dev).unwrap();
            let outs = net.forward(x.clone());
            let dims: Vec<[usize; 5]> = outs.iter().map(|o| o.dims()).collect();
            assert_eq!(dims, vec![[2, 2, 1, 20, 16], [2, 2, 1, 10, 8]], "{skip}");
            params.push(net.num_params());
        }
        assert!(params[1] > params[0], "{params:?}");
    }

    #[test]
    fn odd_patch_is_cropped_to_the_skip() {
        let dev = Device::default();
        let kw =
            json!({"n_stages": 2, "features_per_stage": [2, 4], "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]]});
        let net = TinyNet.build(&spec(kw, false), &dev).unwrap();
        let outs = net.forward(Tensor::<5>::zeros([1, 1, 5, 6, 7], &dev));
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].dims(), [1, 2, 5, 6, 7]);
    }

    #[test]
    fn bad_kwargs_name_the_problem() {
        let cases = [
            (json!({"features_per_stage": [2, 4]}), "n_stages"),
            (json!({"n_stages": 1, "features_per_stage": [2]}), ">= 2"),
            (
                json!({"n_stages": 2, "features_per_stage": [2], "kernel_sizes": [[3], [3]], "strides": [[1], [2]]}),
                "'features_per_stage' has 1",
            ),
            (
                json!({"n_stages": 2, "features_per_stage": [2, 4], "kernel_sizes": [[3, 3], [3, 3, 3]], "strides": [[1, 1], [2, 2]]}),
                "3 axes, expected 2",
            ),
            (json!({"n_stages": 2, "features_per_stage": [2, 4], "kernel_sizes": [[2, 3], [3, 3]], "strides": [[1, 1], [2, 2]]}), "odd"),
            (
                json!({"n_stages": 2, "features_per_stage": [2, 4], "kernel_sizes": [[3, 3], [3, 3]], "strides": [[1, 1], [2, 2]], "skip": "mul"}),
                "'skip'",
            ),
        ];
        for (kw, want) in cases {
            let err = TinyNetKwargs::parse(kw.as_object().unwrap()).unwrap_err().to_string();
            assert!(err.contains("TinyNet") && err.contains(want), "{kw}: {err}");
        }
    }

    #[test]
    fn memory_proxy_counts_feature_maps() {
        // 2 stages, 3D, patch 4x4x4: input 1*64, encoder 2*64 + 4*8, decoder level 0: (up + conv) 2*2*64, head 2*64
        let kw =
            json!({"n_stages": 2, "features_per_stage": [2, 4], "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]]});
        let p = TinyNet.memory_proxy(&spec(kw, false), &[4, 4, 4]).unwrap();
        assert_eq!(p, (64 + 128 + 32 + 256 + 128) as f64);
    }

    #[test]
    fn configure_follows_the_topology_and_output_strides_match_the_heads() {
        let t = Topology {
            strides: vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 2, 2]],
            kernel_sizes: vec![vec![1, 3, 3], vec![3, 3, 3], vec![3, 3, 3]],
            features_per_stage: vec![4, 8, 16],
            patch_size: vec![8, 16, 16],
        };
        let kw = TinyNet.configure(&t).unwrap();
        assert_eq!(kw["strides"], json!(t.strides));
        let s = NetworkSpec { arch_kwargs: kw, in_channels: 1, out_channels: 2, deep_supervision: true };
        let net = TinyNet.build(&s, &Device::default()).unwrap();
        let outs = net.forward(Tensor::<5>::zeros([1, 1, 8, 16, 16], &Device::default()));
        let want = TinyNet.output_strides(&s).unwrap();
        assert_eq!(outs.len(), want.len());
        for (o, st) in outs.iter().zip(&want) {
            let d = o.dims();
            assert_eq!([d[2], d[3], d[4]], [8 / st[0], 16 / st[1], 16 / st[2]]);
        }
        let lines = TinyNet.describe(&s, &[8, 16, 16]).unwrap();
        assert_eq!(lines.len(), 5, "{lines:?}");
    }
}
