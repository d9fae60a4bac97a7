//! `arch_kwargs` of the `STUNet` architecture, parsed and checked.
//!
//! Keys (all optional; the defaults give STU-Net-B, 3D, five 2×2×2 downsamplings, 3×3×3 kernels — the
//! `STUNet` class defaults and `STUNetTrainer`'s kernels):
//!
//! | key | value | default |
//! |---|---|---|
//! | `size` | `"small"`, `"base"`, `"large"` or `"huge"` (also `"S"`, `"B"`, `"L"`, `"H"`; case-insensitive): `STUNetTrainer_{size}`'s `dims` and `depth` | `"base"` |
//! | `dims` | channels per stage, `n ≥ 2` ints (stage 0 first, the bottleneck last); overrides the preset | preset |
//! | `depth` | `BasicResBlock`s per stage, `n` ints ≥ 1 or one int for every stage; overrides the preset | preset |
//! | `pool_op_kernel_sizes` | `n-1` per-axis strides (each a list with one int ≥ 1 per axis, or one int for every axis) of the strided first block of stages `1..n`; the decoder upsamples by the same factors (nearest) | `[2,2,2]` × (n-1) |
//! | `conv_kernel_sizes` | `n` per-axis kernels (odd ints; padding `k//2`), or one per-axis kernel / one int for every stage | 3 on every axis |
//! | `dim` | `"2d"`/`"3d"` (or 2/3); inferred from nested per-axis lists when absent (give it for 2D kwargs without any) | `"3d"` |
//!
//! `n` is the number of stages, `dims`' length (6 for the published sizes). The input's spatial shape must be
//! divisible by the product of the pool kernels (STU-Net's `input_shape_must_be_divisible_by`).
//!
//! U-Net kwargs as nnU-Net's planners write them are tolerated: their keys (`n_stages`, `features_per_stage`,
//! `strides`, `kernel_sizes`, `conv_op`, ...) are ignored, except that when `pool_op_kernel_sizes` is absent and
//! `strides` holds one entry per stage (stage 0 all ones, next to `n_stages`), the pool kernels are derived from
//! it by [`STUNetKwargs::configure`]'s rule (`STUNetTrainer.process_plans`: the first downsamplings, padded
//! with all-ones entries). Any other unknown key is an error.
//!
//! 2D networks are built as 3D networks with a leading singleton axis (ADR 0006): stride 1 and kernel 1 on z.
//! (STU-Net itself is 3D-only; the 2D form is the same network on `(1, y, x)` volumes.)

use nnunet_core::ArchitectureError;
use nnunet_core::topology::Topology;
use serde_json::{Map, Value, json};

/// STU-Net's published model sizes (`STUNetTrainer_small/base/large/huge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Small,
    Base,
    Large,
    Huge,
}

impl Size {
    /// Parse `"small"`/`"S"`, `"base"`/`"B"`, `"large"`/`"L"`, `"huge"`/`"H"` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "small" | "s" => Some(Size::Small),
            "base" | "b" => Some(Size::Base),
            "large" | "l" => Some(Size::Large),
            "huge" | "h" => Some(Size::Huge),
            _ => None,
        }
    }

    /// The preset's name as the trainers spell it.
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Base => "base",
            Size::Large => "large",
            Size::Huge => "huge",
        }
    }

    /// Channels per stage (six stages).
    pub fn dims(self) -> [usize; 6] {
        match self {
            Size::Small => [16, 32, 64, 128, 256, 256],
            Size::Base => [32, 64, 128, 256, 512, 512],
            Size::Large => [64, 128, 256, 512, 1024, 1024],
            Size::Huge => [96, 192, 384, 768, 1536, 1536],
        }
    }

    /// Residual blocks per stage (the same for every stage).
    pub fn depth(self) -> usize {
        match self {
            Size::Small | Size::Base => 1,
            Size::Large => 2,
            Size::Huge => 3,
        }
    }
}

/// Parsed STU-Net kwargs, with 2D strides/kernels lifted to 3D (`[1, y, x]`).
#[derive(Debug, Clone, PartialEq)]
pub struct STUNetKwargs {
    /// 2 or 3: the dimensionality of the data (2D runs as 3D with a singleton z axis).
    pub ndim: usize,
    /// The preset these values came from, when neither `dims` nor `depth` overrode it.
    pub size: Option<Size>,
    /// Channels per stage (`n` entries).
    pub dims: Vec<usize>,
    /// Residual blocks per stage (`n` entries, each ≥ 1).
    pub depth: Vec<usize>,
    /// Per-axis strides of stages `1..n` (`n-1` entries, z, y, x).
    pub pool_op_kernel_sizes: Vec<[usize; 3]>,
    /// Per-axis kernels of stages `0..n` (`n` entries, odd).
    pub conv_kernel_sizes: Vec<[usize; 3]>,
}

/// U-Net keys nnU-Net's planners write into `arch_kwargs`; tolerated and ignored (see the module docs).
pub const UNET_KEYS: [&str; 15] = nnunet_core::topology::UNET_ARCH_KWARGS;

/// The keys STU-Net reads.
pub const STUNET_KEYS: [&str; 6] = ["size", "dims", "depth", "pool_op_kernel_sizes", "conv_kernel_sizes", "dim"];

/// Stages of the published configuration (`STUNetTrainer`: five pool ops, six stages).
pub const PUBLISHED_STAGES: usize = 6;

fn err(msg: impl Into<String>) -> ArchitectureError {
    ArchitectureError::Kwargs(format!("STUNet: {}", msg.into()))
}

fn uint(v: &Value, key: &str) -> Result<usize, ArchitectureError> {
    v.as_u64().map(|x| x as usize).ok_or_else(|| err(format!("'{key}' must hold non-negative integers, got {v}")))
}

/// A list of `n` ints, or one int for every entry (`n = None`: a list of any length ≥ 2).
fn ints(v: &Value, key: &str, n: Option<usize>, min: usize) -> Result<Vec<usize>, ArchitectureError> {
    let out: Vec<usize> = match (v, n) {
        (Value::Array(a), _) => a.iter().map(|x| uint(x, key)).collect::<Result<_, _>>()?,
        (v, Some(n)) => vec![uint(v, key)?; n],
        (v, None) => return Err(err(format!("'{key}' must be a list of ints, got {v}"))),
    };
    match n {
        Some(n) if out.len() != n => return Err(err(format!("'{key}' needs {n} entries (one per stage), got {}", out.len()))),
        None if out.len() < 2 => return Err(err(format!("'{key}' needs at least 2 stages, got {}", out.len()))),
        _ => {}
    }
    if let Some(bad) = out.iter().find(|&&x| x < min) {
        return Err(err(format!("'{key}' entries must be >= {min}, got {bad}")));
    }
    Ok(out)
}

/// One per-axis entry of `ndim` ints (or a scalar for every axis), lifted to 3D with `1` on z for 2D.
fn axes(v: &Value, key: &str, ndim: usize) -> Result<[usize; 3], ArchitectureError> {
    let vals: Vec<usize> = match v {
        Value::Array(a) => {
            if a.len() != ndim {
                return Err(err(format!("'{key}' entry {v} has {} axes, expected {ndim}", a.len())));
            }
            a.iter().map(|x| uint(x, key)).collect::<Result<_, _>>()?
        }
        v => vec![uint(v, key)?; ndim],
    };
    Ok(if ndim == 2 { [1, vals[0], vals[1]] } else { [vals[0], vals[1], vals[2]] })
}

/// A list of `n` per-axis entries, or (when `allow_one`) one per-axis entry / one int for every stage.
fn per_stage(v: &Value, key: &str, ndim: usize, n: usize, allow_one: bool) -> Result<Vec<[usize; 3]>, ArchitectureError> {
    match v {
        Value::Array(a) if a.iter().any(Value::is_array) || a.is_empty() => {
            if a.len() != n {
                return Err(err(format!("'{key}' needs {n} per-axis entries, got {}", a.len())));
            }
            a.iter().map(|e| axes(e, key, ndim)).collect()
        }
        // a flat list: one per-axis entry for every stage (only when allowed), else n scalars
        Value::Array(a) if allow_one && a.len() == ndim => Ok(vec![axes(v, key, ndim)?; n]),
        Value::Array(a) => {
            if a.len() != n {
                return Err(err(format!("'{key}' needs {n} per-axis entries, got {}", a.len())));
            }
            a.iter().map(|e| axes(e, key, ndim)).collect()
        }
        v if allow_one => Ok(vec![axes(v, key, ndim)?; n]),
        v => Err(err(format!("'{key}' must be a list of {n} per-axis entries, got {v}"))),
    }
}

/// How many axes the per-axis lists of `v` have (`None` for scalars or an absent key).
fn axes_of(v: Option<&Value>) -> Option<usize> {
    v?.as_array()?.iter().find_map(|e| e.as_array().map(Vec::len))
}

/// The U-Net-style per-stage strides (stage 0 all ones, one entry per `n_stages`), when `m` holds them.
fn unet_strides(m: &Map<String, Value>) -> Option<&Vec<Value>> {
    let n = m.get("n_stages").and_then(Value::as_u64)?;
    let s = m.get("strides")?.as_array()?;
    let first_ones = match s.first() {
        Some(Value::Array(a)) => a.iter().all(|x| x.as_u64() == Some(1)),
        Some(v) => v.as_u64() == Some(1),
        None => false,
    };
    (s.len() as u64 == n && first_ones).then_some(s)
}

/// `STUNetTrainer.process_plans`' rule: the first `n_pool` downsamplings of a planner's per-stage strides
/// (stage 0 excluded), padded with all-ones entries.
fn pools_from_stage_strides(stage_strides: &[[usize; 3]], n_pool: usize) -> Vec<[usize; 3]> {
    (0..n_pool).map(|i| stage_strides.get(i + 1).copied().unwrap_or([1, 1, 1])).collect()
}

impl STUNetKwargs {
    /// Parse `arch_kwargs`; every error names the offending key.
    pub fn parse(m: &Map<String, Value>) -> Result<Self, ArchitectureError> {
        for k in m.keys() {
            if !STUNET_KEYS.contains(&k.as_str()) && !UNET_KEYS.contains(&k.as_str()) {
                return Err(err(format!("unknown key '{k}' (known: {})", STUNET_KEYS.join(", "))));
            }
        }
        let unet = if m.contains_key("pool_op_kernel_sizes") { None } else { unet_strides(m) };
        let ndim = match m.get("dim") {
            None => {
                let a = axes_of(m.get("pool_op_kernel_sizes"));
                let b = axes_of(m.get("conv_kernel_sizes"));
                let c = unet.and_then(|s| s.iter().find_map(|e| e.as_array().map(Vec::len)));
                match (a.or(c), b) {
                    (Some(x), Some(y)) if x != y => {
                        return Err(err(format!("'pool_op_kernel_sizes' has {x}-axis entries but 'conv_kernel_sizes' {y}-axis entries")));
                    }
                    (Some(x), _) | (None, Some(x)) => x,
                    (None, None) => 3,
                }
            }
            Some(Value::String(s)) if s == "2d" => 2,
            Some(Value::String(s)) if s == "3d" => 3,
            Some(Value::Number(n)) if n.as_u64() == Some(2) => 2,
            Some(Value::Number(n)) if n.as_u64() == Some(3) => 3,
            Some(v) => return Err(err(format!("'dim' must be \"2d\" or \"3d\", got {v}"))),
        };
        if ndim != 2 && ndim != 3 {
            return Err(err(format!("per-axis entries must have 2 or 3 axes (2D or 3D), got {ndim}")));
        }

        let preset = match m.get("size") {
            None => Size::Base,
            Some(Value::String(s)) => {
                Size::parse(s).ok_or_else(|| err(format!("'size' must be \"small\", \"base\", \"large\" or \"huge\", got \"{s}\"")))?
            }
            Some(v) => return Err(err(format!("'size' must be \"small\", \"base\", \"large\" or \"huge\", got {v}"))),
        };
        let (dims, dims_set) = match m.get("dims") {
            None => (preset.dims().to_vec(), false),
            Some(v) => (ints(v, "dims", None, 1)?, true),
        };
        let n = dims.len();
        let (depth, depth_set) = match m.get("depth") {
            None => (vec![preset.depth(); n], false),
            Some(v) => (ints(v, "depth", Some(n), 1)?, true),
        };

        let pool_op_kernel_sizes = match (m.get("pool_op_kernel_sizes"), unet) {
            (Some(v), _) => per_stage(v, "pool_op_kernel_sizes", ndim, n - 1, false)?,
            (None, Some(s)) => {
                let stage: Vec<[usize; 3]> = s.iter().map(|e| axes(e, "strides", ndim)).collect::<Result<_, _>>()?;
                pools_from_stage_strides(&stage, n - 1)
            }
            (None, None) => vec![if ndim == 2 { [1, 2, 2] } else { [2, 2, 2] }; n - 1],
        };
        if pool_op_kernel_sizes.iter().flatten().any(|&s| s == 0) {
            return Err(err("'pool_op_kernel_sizes' entries must be >= 1"));
        }
        let conv_kernel_sizes = match m.get("conv_kernel_sizes") {
            None => vec![if ndim == 2 { [1, 3, 3] } else { [3, 3, 3] }; n],
            Some(v) => per_stage(v, "conv_kernel_sizes", ndim, n, true)?,
        };
        if let Some(k) = conv_kernel_sizes.iter().find(|k| k.iter().any(|&x| x % 2 == 0)) {
            return Err(err(format!("'conv_kernel_sizes' entries must be odd (padding k//2 keeps the size), got {k:?}")));
        }
        let size = (!dims_set && !depth_set).then_some(preset);
        Ok(Self { ndim, size, dims, depth, pool_op_kernel_sizes, conv_kernel_sizes })
    }

    /// Kwargs for a planner topology (what [`crate::STUNetArch`]'s `configure` writes), following
    /// `STUNetTrainer.process_plans`: size `"small"`, six stages, 3×3×3 kernels (3×3 in 2D) on every stage, and
    /// `pool_op_kernel_sizes` = the topology's first five downsampling strides (`topology.strides[1..=5]`),
    /// padded with all-ones strides when it has fewer than six stages; downsamplings beyond the fifth are dropped.
    ///
    /// `None` for a topology that is neither 2D nor 3D.
    pub fn configure(t: &Topology) -> Option<Map<String, Value>> {
        let ndim = t.patch_size.len();
        if ndim != 2 && ndim != 3 || t.strides.iter().any(|v| v.len() != ndim || v.contains(&0)) {
            return None;
        }
        let pools: Vec<Vec<usize>> = (1..PUBLISHED_STAGES).map(|i| t.strides.get(i).cloned().unwrap_or_else(|| vec![1; ndim])).collect();
        let v = json!({
            "size": "small",
            "dim": if ndim == 2 { "2d" } else { "3d" },
            "pool_op_kernel_sizes": pools,
            "conv_kernel_sizes": vec![vec![3; ndim]; PUBLISHED_STAGES],
        });
        v.as_object().cloned()
    }

    /// Number of stages (`dims.len()`).
    pub fn n_stages(&self) -> usize {
        self.dims.len()
    }

    /// Cumulative downsampling per axis of stages `0..n` (stage 0 all ones).
    pub fn cumulative_strides(&self) -> Vec<[usize; 3]> {
        let mut out = vec![[1; 3]];
        for s in &self.pool_op_kernel_sizes {
            let last = out[out.len() - 1];
            out.push([0, 1, 2].map(|a| last[a] * s[a]));
        }
        out
    }

    /// Total downsampling per axis (the input must be divisible by it).
    pub fn total_stride(&self) -> [usize; 3] {
        self.cumulative_strides()[self.n_stages() - 1]
    }

    /// Spatial size of each stage for a 3D(-lifted) input of `patch`; an error unless every axis is divisible by
    /// the total stride (the decoder concatenates each upsampled map with the skip of the same stage).
    pub fn stage_sizes(&self, patch: [usize; 3]) -> Result<Vec<[usize; 3]>, ArchitectureError> {
        let total = self.total_stride();
        if (0..3).any(|a| patch[a] == 0 || !patch[a].is_multiple_of(total[a])) {
            return Err(err(format!(
                "patch {:?} is not divisible by the product {:?} of the pool kernels",
                &patch[3 - self.ndim..],
                &total[3 - self.ndim..]
            )));
        }
        Ok(self.cumulative_strides().iter().map(|c| [0, 1, 2].map(|a| patch[a] / c[a])).collect())
    }

    /// A 2D (`[y, x]`) or 3D patch lifted to 3D; an error when its dimensionality is not this network's.
    pub fn lift_patch(&self, patch: &[usize]) -> Result<[usize; 3], ArchitectureError> {
        match (patch, self.ndim) {
            ([y, x], 2) => Ok([1, *y, *x]),
            ([z, y, x], 3) => Ok([*z, *y, *x]),
            _ => Err(err(format!("patch {patch:?} does not match a {}D network", self.ndim))),
        }
    }
}
