//! `arch_kwargs` of dynamic_network_architectures' U-Nets, parsed and checked.
//!
//! 2D networks are built as 3D networks with a leading singleton axis: a `k×k` conv on `(b, c, y, x)` is the
//! `1×k×k` conv on `(b, c, 1, y, x)` (same weights, same parameter count, same outputs).

use nnunet_core::ArchitectureError;
use serde_json::{Map, Value};

/// Which block the encoder stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// `PlainConvUNet`: `n_conv_per_stage` conv-IN-LReLU per stage, the first strided.
    Plain,
    /// `ResidualEncoderUNet`: stem + `n_blocks_per_stage` `BasicBlockD` per stage.
    Residual,
}

/// Non-linearity after each norm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nonlin {
    LeakyRelu(f64),
    Relu,
}

/// Parsed `arch_kwargs`, with 2D kernels/strides lifted to 3D (`[1, a, b]`).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetKwargs {
    pub dims: usize,
    pub features: Vec<usize>,
    pub kernel_sizes: Vec<[usize; 3]>,
    pub strides: Vec<[usize; 3]>,
    /// Convs (plain) or residual blocks (ResEnc) per encoder stage.
    pub n_per_stage: Vec<usize>,
    pub n_conv_decoder: Vec<usize>,
    pub conv_bias: bool,
    pub norm_eps: f64,
    pub norm_affine: bool,
    pub nonlin: Nonlin,
}

fn err(msg: impl Into<String>) -> ArchitectureError {
    ArchitectureError::Kwargs(msg.into())
}

fn get<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a Value, ArchitectureError> {
    m.get(k).ok_or_else(|| err(format!("missing key '{k}'")))
}

fn usize_of(v: &Value, what: &str) -> Result<usize, ArchitectureError> {
    v.as_u64().map(|x| x as usize).ok_or_else(|| err(format!("'{what}' must be a non-negative integer, got {v}")))
}

/// An int or a list of ints, repeated to `n` entries (dynamic_network_architectures accepts both).
fn per_stage(m: &Map<String, Value>, k: &str, n: usize) -> Result<Vec<usize>, ArchitectureError> {
    match get(m, k)? {
        Value::Array(a) => {
            if a.len() != n {
                return Err(err(format!("'{k}' has {} entries, expected {n}", a.len())));
            }
            a.iter().map(|v| usize_of(v, k)).collect()
        }
        v => Ok(vec![usize_of(v, k)?; n]),
    }
}

/// Per-stage per-axis values (kernel sizes, strides); a scalar per stage means isotropic.
fn per_stage_axes(m: &Map<String, Value>, k: &str, n: usize, dims: usize) -> Result<Vec<[usize; 3]>, ArchitectureError> {
    let a = get(m, k)?.as_array().ok_or_else(|| err(format!("'{k}' must be a list")))?;
    if a.len() != n {
        return Err(err(format!("'{k}' has {} entries, expected n_stages = {n}", a.len())));
    }
    a.iter()
        .map(|e| {
            let v: Vec<usize> = match e {
                Value::Array(x) => x.iter().map(|v| usize_of(v, k)).collect::<Result<_, _>>()?,
                v => vec![usize_of(v, k)?; dims],
            };
            if v.len() != dims {
                return Err(err(format!("'{k}' entry {e} has {} axes, expected {dims}", v.len())));
            }
            if v.contains(&0) {
                return Err(err(format!("'{k}' entry {e} contains 0")));
            }
            Ok(if dims == 2 { [1, v[0], v[1]] } else { [v[0], v[1], v[2]] })
        })
        .collect()
}

impl UNetKwargs {
    pub fn parse(m: &Map<String, Value>, encoder: Encoder) -> Result<Self, ArchitectureError> {
        let n = usize_of(get(m, "n_stages")?, "n_stages")?;
        if n == 0 {
            return Err(err("n_stages must be at least 1"));
        }
        let conv_op = get(m, "conv_op")?.as_str().unwrap_or_default();
        let dims = match conv_op.rsplit('.').next().unwrap_or_default() {
            "Conv3d" => 3,
            "Conv2d" => 2,
            other => return Err(err(format!("conv_op '{conv_op}' is not supported (Conv2d or Conv3d), got '{other}'"))),
        };
        let features = per_stage(m, "features_per_stage", n)?;
        let kernel_sizes = per_stage_axes(m, "kernel_sizes", n, dims)?;
        let strides = per_stage_axes(m, "strides", n, dims)?;
        let per_key = match encoder {
            Encoder::Plain => "n_conv_per_stage",
            Encoder::Residual => "n_blocks_per_stage",
        };
        let n_per_stage = per_stage(m, per_key, n)?;
        let n_conv_decoder = if n > 1 { per_stage(m, "n_conv_per_stage_decoder", n - 1)? } else { vec![] };
        let conv_bias = m.get("conv_bias").and_then(Value::as_bool).unwrap_or(false);
        let norm_op = m.get("norm_op").and_then(Value::as_str).unwrap_or("");
        if !norm_op.contains("InstanceNorm") {
            return Err(err(format!("norm_op '{norm_op}' is not supported (InstanceNorm2d/3d)")));
        }
        let nk = m.get("norm_op_kwargs").and_then(Value::as_object);
        let norm_eps = nk.and_then(|k| k.get("eps")).and_then(Value::as_f64).unwrap_or(1e-5);
        let norm_affine = nk.and_then(|k| k.get("affine")).and_then(Value::as_bool).unwrap_or(false);
        match m.get("dropout_op") {
            None | Some(Value::Null) => {}
            Some(v) => return Err(err(format!("dropout_op {v} is not supported (null)"))),
        }
        let nonlin_name = m.get("nonlin").and_then(Value::as_str).unwrap_or("");
        let nonlin = if nonlin_name.ends_with("LeakyReLU") {
            let slope = m
                .get("nonlin_kwargs")
                .and_then(Value::as_object)
                .and_then(|k| k.get("negative_slope"))
                .and_then(Value::as_f64)
                .unwrap_or(0.01);
            Nonlin::LeakyRelu(slope)
        } else if nonlin_name.ends_with("ReLU") {
            Nonlin::Relu
        } else {
            return Err(err(format!("nonlin '{nonlin_name}' is not supported (LeakyReLU, ReLU)")));
        };
        if strides[0] != [1, 1, 1] && encoder == Encoder::Residual {
            // allowed by nnU-Net, kept general: the stem has stride 1, stage 0 may stride.
        }
        Ok(Self { dims, features, kernel_sizes, strides, n_per_stage, n_conv_decoder, conv_bias, norm_eps, norm_affine, nonlin })
    }

    pub fn n_stages(&self) -> usize {
        self.features.len()
    }
}
