//! `arch_kwargs` of the `MedNeXt` architecture, parsed and checked.
//!
//! Keys (all optional; the defaults give MedNeXt-S, kernel 3, 3D, four 2×2×2 downsamplings):
//!
//! | key | value | default |
//! |---|---|---|
//! | `size` | `"S"`, `"B"`, `"M"` or `"L"` (MedNeXt v1's presets of `exp_r` and `block_counts`) | `"S"` |
//! | `kernel_size` (alias `kernel`) | odd int, 3 or 5 in the published configurations | 3 |
//! | `n_channels` | channels of level 0 (level `l` has `n_channels · 2^l`) | 32 |
//! | `exp_r` | 9 ints (enc0..enc3, bottleneck, dec3..dec0) or one int; overrides the preset | preset |
//! | `block_counts` | 9 ints (same order) or one int; overrides the preset | preset |
//! | `dim` | `"2d"`/`"3d"` (or 2/3); inferred from `strides`/`kernel_axes` when absent | `"3d"` |
//! | `strides` | 4 per-axis strides (each 1 or 2, or one int for every axis) of `down_0..down_3` | `[2,2,2]` ×4 |
//! | `kernel_axes` | per level 0..4 a per-axis list of booleans (`true`: `kernel_size` on that axis, `false`: kernel 1), or one per-axis list for every level | all `true` |
//! | `do_res`, `do_res_up_down` | MedNeXt's residual switches (blocks; down/up blocks' 1×1 residual convs) | `true` |
//! | `norm_type`, `grn`, `checkpoint_style` | accepted only as `"group"`, `false`, and `null`/`"outside_block"` (gradient checkpointing only saves memory) | |
//!
//! A level without downsampling (`strides` entry all ones) keeps MedNeXt's channel doubling: its down block is a
//! stride-1 block and its up block a stride-1 transposed conv whose output needs no padding. Per axis, the down
//! block's depthwise conv has stride `s ∈ {1, 2}` and the up block's transposed conv gives `s·(n-1)+1` voxels,
//! zero-padded by `s-1` at the low side back to `s·n` (MedNeXt's one-voxel pad for `s = 2`).
//!
//! Kernels per level follow nnU-Net's convention that a strided conv belongs to the stage it produces: the
//! blocks of encoder/decoder level `l` use level `l`'s kernel, `down_l` and `up_l` (between levels `l` and
//! `l+1`) use level `l+1`'s.
//!
//! U-Net kwargs as nnU-Net's planners write them are tolerated: their keys (`n_stages`, `features_per_stage`,
//! `conv_op`, `kernel_sizes`, `n_conv_per_stage`, ...) are ignored, except that when `n_stages` is present and
//! `strides` has `n_stages` entries, the first of them all ones, `strides`/`kernel_sizes` are read as the
//! planner's topology and converted by [`MedNeXtKwargs::configure`]'s rule (`kernel_axes` from
//! `kernel_sizes` unless given). Any other unknown key is an error.
//!
//! 2D networks are built as 3D networks with a leading singleton axis (ADR 0006): stride 1 and kernel 1 on z.

use nnunet_core::ArchitectureError;
use nnunet_core::topology::Topology;
use serde_json::{Map, Value, json};

/// MedNeXt v1's model sizes (`create_mednext_v1`'s `model_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    S,
    B,
    M,
    L,
}

impl Size {
    /// Parse `"S"`, `"B"`, `"M"` or `"L"` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "S" => Some(Size::S),
            "B" => Some(Size::B),
            "M" => Some(Size::M),
            "L" => Some(Size::L),
            _ => None,
        }
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        match self {
            Size::S => "S",
            Size::B => "B",
            Size::M => "M",
            Size::L => "L",
        }
    }

    /// Expansion ratios per level (enc0..enc3, bottleneck, dec3..dec0).
    pub fn exp_r(self) -> [usize; 9] {
        match self {
            Size::S => [2; 9],
            Size::B | Size::M => [2, 3, 4, 4, 4, 4, 4, 3, 2],
            Size::L => [3, 4, 8, 8, 8, 8, 8, 4, 3],
        }
    }

    /// Blocks per level (enc0..enc3, bottleneck, dec3..dec0).
    pub fn block_counts(self) -> [usize; 9] {
        match self {
            Size::S | Size::B => [2; 9],
            Size::M => [3, 4, 4, 4, 4, 4, 4, 4, 3],
            Size::L => [3, 4, 8, 8, 8, 8, 8, 4, 3],
        }
    }
}

/// Parsed MedNeXt kwargs, with 2D strides/kernels lifted to 3D (`[1, y, x]`).
#[derive(Debug, Clone, PartialEq)]
pub struct MedNeXtKwargs {
    /// 2 or 3: the dimensionality of the data (2D runs as 3D with a singleton z axis).
    pub dims: usize,
    /// The preset these values came from, when `exp_r`/`block_counts` were not overridden.
    pub size: Option<Size>,
    pub n_channels: usize,
    pub kernel_size: usize,
    pub exp_r: [usize; 9],
    pub block_counts: [usize; 9],
    /// Per-axis strides of `down_0..down_3` (z, y, x).
    pub strides: [[usize; 3]; 4],
    /// Per level 0..4 (level 4 = bottleneck), per axis: whether the kernel spans that axis.
    pub kernel_axes: [[bool; 3]; 5],
    pub do_res: bool,
    pub do_res_up_down: bool,
}

/// U-Net keys nnU-Net's planners write into `arch_kwargs`; tolerated and ignored (see the module docs).
pub const UNET_KEYS: [&str; 15] = nnunet_core::topology::UNET_ARCH_KWARGS;

/// The keys MedNeXt reads.
pub const MEDNEXT_KEYS: [&str; 14] = [
    "size",
    "kernel_size",
    "kernel",
    "n_channels",
    "exp_r",
    "block_counts",
    "dim",
    "strides",
    "kernel_axes",
    "do_res",
    "do_res_up_down",
    "norm_type",
    "grn",
    "checkpoint_style",
];

fn err(msg: impl Into<String>) -> ArchitectureError {
    ArchitectureError::Kwargs(format!("MedNeXt: {}", msg.into()))
}

fn uint(v: &Value, key: &str) -> Result<usize, ArchitectureError> {
    v.as_u64().map(|x| x as usize).ok_or_else(|| err(format!("'{key}' must be a non-negative integer, got {v}")))
}

fn boolean(m: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ArchitectureError> {
    match m.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(err(format!("'{key}' must be true or false, got {v}"))),
    }
}

/// Nine per-level ints, or one int for all levels.
fn nine(v: &Value, key: &str, min: usize) -> Result<[usize; 9], ArchitectureError> {
    let out: Vec<usize> = match v {
        Value::Array(a) => {
            if a.len() != 9 {
                return Err(err(format!("'{key}' needs 9 entries (enc0..enc3, bottleneck, dec3..dec0), got {}", a.len())));
            }
            a.iter().map(|x| uint(x, key)).collect::<Result<_, _>>()?
        }
        v => vec![uint(v, key)?; 9],
    };
    if let Some(bad) = out.iter().find(|&&x| x < min) {
        return Err(err(format!("'{key}' entries must be >= {min}, got {bad}")));
    }
    Ok(out.try_into().expect("nine entries"))
}

/// A per-axis list of `dims` entries (or a scalar for every axis) lifted to 3D with `fill` on z for 2D.
fn axes<T: Copy>(
    v: &Value,
    key: &str,
    dims: usize,
    fill: T,
    one: impl Fn(&Value) -> Result<T, ArchitectureError>,
) -> Result<[T; 3], ArchitectureError> {
    let vals: Vec<T> = match v {
        Value::Array(a) => {
            if a.len() != dims {
                return Err(err(format!("'{key}' entry {v} has {} axes, expected {dims}", a.len())));
            }
            a.iter().map(&one).collect::<Result<_, _>>()?
        }
        v => vec![one(v)?; dims],
    };
    Ok(if dims == 2 { [fill, vals[0], vals[1]] } else { [vals[0], vals[1], vals[2]] })
}

/// How many axes the per-axis lists of `key` have (`None` for scalars or an absent key).
fn axes_of(v: Option<&Value>) -> Option<usize> {
    let a = v?.as_array()?;
    a.iter().find_map(|e| e.as_array().map(Vec::len)).or_else(|| {
        // one per-axis list for every level (`kernel_axes: [false, true, true]`)
        a.first().filter(|e| e.is_boolean()).map(|_| a.len())
    })
}

/// Whether `m` holds U-Net-style `strides` (one entry per stage, stage 0 all ones) next to `n_stages`.
fn unet_form(m: &Map<String, Value>) -> bool {
    let (Some(n), Some(Value::Array(s))) = (m.get("n_stages").and_then(Value::as_u64), m.get("strides")) else { return false };
    let first_ones = match s.first() {
        Some(Value::Array(a)) => a.iter().all(|x| x.as_u64() == Some(1)),
        Some(v) => v.as_u64() == Some(1),
        None => false,
    };
    s.len() as u64 == n && first_ones
}

impl MedNeXtKwargs {
    /// Parse `arch_kwargs`; every error names the offending key.
    pub fn parse(m: &Map<String, Value>) -> Result<Self, ArchitectureError> {
        for k in m.keys() {
            if !MEDNEXT_KEYS.contains(&k.as_str()) && !UNET_KEYS.contains(&k.as_str()) {
                return Err(err(format!("unknown key '{k}' (known: {})", MEDNEXT_KEYS.join(", "))));
            }
        }
        let unet = unet_form(m);
        let dims = match m.get("dim") {
            None => {
                let from_strides = if unet { None } else { axes_of(m.get("strides")) };
                let from_axes = axes_of(m.get("kernel_axes"));
                let from_unet = if unet { axes_of(m.get("strides")) } else { None };
                match (from_strides.or(from_unet), from_axes) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(err(format!("'strides' has {a}-axis entries but 'kernel_axes' {b}-axis entries")));
                    }
                    (Some(a), _) | (None, Some(a)) => a,
                    (None, None) => 3,
                }
            }
            Some(Value::String(s)) if s == "2d" || s == "3d" => {
                if s == "2d" {
                    2
                } else {
                    3
                }
            }
            Some(Value::Number(n)) if n.as_u64() == Some(2) || n.as_u64() == Some(3) => n.as_u64().unwrap_or(3) as usize,
            Some(v) => return Err(err(format!("'dim' must be \"2d\" or \"3d\", got {v}"))),
        };
        if dims != 2 && dims != 3 {
            return Err(err(format!("per-axis entries must have 2 or 3 axes (2D or 3D), got {dims}")));
        }

        let size = match m.get("size") {
            None => Size::S,
            Some(Value::String(s)) => {
                Size::parse(s).ok_or_else(|| err(format!("'size' must be \"S\", \"B\", \"M\" or \"L\", got \"{s}\"")))?
            }
            Some(v) => return Err(err(format!("'size' must be \"S\", \"B\", \"M\" or \"L\", got {v}"))),
        };
        let kernel_size = match (m.get("kernel_size"), m.get("kernel")) {
            (Some(a), Some(b)) if a != b => {
                return Err(err(format!("'kernel_size' ({a}) and its alias 'kernel' ({b}) disagree; give one of them")));
            }
            (Some(v), _) => uint(v, "kernel_size")?,
            (None, Some(v)) => uint(v, "kernel")?,
            (None, None) => 3,
        };
        if kernel_size % 2 == 0 {
            return Err(err(format!("'kernel_size' must be odd (3 or 5), got {kernel_size}")));
        }
        let n_channels = match m.get("n_channels") {
            None => 32,
            Some(v) => uint(v, "n_channels")?,
        };
        if n_channels == 0 {
            return Err(err("'n_channels' must be >= 1"));
        }
        let (exp_r, exp_set) = match m.get("exp_r") {
            None => (size.exp_r(), false),
            Some(v) => (nine(v, "exp_r", 1)?, true),
        };
        let (block_counts, bc_set) = match m.get("block_counts") {
            None => (size.block_counts(), false),
            Some(v) => (nine(v, "block_counts", 0)?, true),
        };

        let stride_one = |v: &Value| -> Result<usize, ArchitectureError> {
            match v.as_u64() {
                Some(s @ (1 | 2)) => Ok(s as usize),
                _ => Err(err(format!("'strides' entries must be 1 or 2, got {v}"))),
            }
        };
        let bool_one = |v: &Value| -> Result<bool, ArchitectureError> {
            v.as_bool().ok_or_else(|| {
                err(format!("'kernel_axes' entries must be true (kernel_size on that axis) or false (kernel 1 on that axis), got {v}"))
            })
        };

        let (strides, topo_axes) = if unet {
            let t = unet_topology(m, dims)?;
            let (s, a) = topology_strides_axes(&t)?;
            (s, Some(a))
        } else {
            let strides = match m.get("strides") {
                None => [[if dims == 2 { 1 } else { 2 }, 2, 2]; 4],
                Some(Value::Array(a)) => {
                    if a.len() != 4 {
                        return Err(err(format!("'strides' needs 4 per-axis strides (down_0..down_3), got {} entries", a.len())));
                    }
                    let v: Vec<[usize; 3]> = a.iter().map(|e| axes(e, "strides", dims, 1, stride_one)).collect::<Result<_, _>>()?;
                    v.try_into().expect("four entries")
                }
                Some(v) => return Err(err(format!("'strides' must be a list of 4 per-axis strides, got {v}"))),
            };
            (strides, None)
        };
        let kernel_axes = match m.get("kernel_axes") {
            None => topo_axes.unwrap_or([[dims == 3, true, true]; 5]),
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(|e| !e.is_array()) => {
                [axes(&Value::Array(a.clone()), "kernel_axes", dims, false, bool_one)?; 5]
            }
            Some(Value::Array(a)) => {
                if a.len() != 5 {
                    return Err(err(format!(
                        "'kernel_axes' needs 5 per-axis lists (levels 0..3 and the bottleneck) or one, got {}",
                        a.len()
                    )));
                }
                let v: Vec<[bool; 3]> = a.iter().map(|e| axes(e, "kernel_axes", dims, false, bool_one)).collect::<Result<_, _>>()?;
                v.try_into().expect("five entries")
            }
            Some(v) => return Err(err(format!("'kernel_axes' must be a list, got {v}"))),
        };

        match m.get("norm_type") {
            None => {}
            Some(Value::String(s)) if s == "group" => {}
            Some(v) => return Err(err(format!("'norm_type' {v} is not supported (only \"group\", MedNeXt v1's published setting)"))),
        }
        if boolean(m, "grn", false)? {
            return Err(err("'grn': true is not supported (GRN is MedNeXt v2; v1 uses grn=false)"));
        }
        match m.get("checkpoint_style") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "outside_block" => {}
            Some(v) => return Err(err(format!("'checkpoint_style' must be null or \"outside_block\", got {v}"))),
        }
        let do_res = boolean(m, "do_res", true)?;
        let do_res_up_down = boolean(m, "do_res_up_down", true)?;
        let size = (!exp_set && !bc_set).then_some(size);
        Ok(Self { dims, size, n_channels, kernel_size, exp_r, block_counts, strides, kernel_axes, do_res, do_res_up_down })
    }

    /// Kwargs for a planner topology (what [`crate::MedNeXtArch`]'s `configure` writes): size "S", kernel 3,
    /// 32 channels, and
    /// * `strides`: the topology's first four downsampling strides (`topology.strides[1..=4]`), padded with
    ///   all-ones strides when it has fewer than 5 stages, so a patch the topology accepts stays divisible;
    ///   downsamplings beyond the fourth are dropped;
    /// * `kernel_axes`: level `l` spans the axes on which the topology's stage-`l` kernel is > 1 (levels beyond
    ///   the topology's stages repeat its last stage).
    ///
    /// `None` for a topology that is neither 2D nor 3D or has strides other than 1 and 2.
    pub fn configure(t: &Topology) -> Option<Map<String, Value>> {
        let dims = t.patch_size.len();
        if dims != 2 && dims != 3 || t.strides.iter().chain(&t.kernel_sizes).any(|v| v.len() != dims) {
            return None;
        }
        let (strides, axes) = topology_strides_axes(t).ok()?;
        let cut = |v: [usize; 3]| v[3 - dims..].to_vec();
        let cutb = |v: [bool; 3]| v[3 - dims..].to_vec();
        let v = json!({
            "size": "S",
            "kernel_size": 3,
            "n_channels": 32,
            "dim": if dims == 2 { "2d" } else { "3d" },
            "strides": strides.iter().map(|&s| cut(s)).collect::<Vec<_>>(),
            "kernel_axes": axes.iter().map(|&a| cutb(a)).collect::<Vec<_>>(),
        });
        v.as_object().cloned()
    }

    /// Per-axis kernel of level `l` (0..=4).
    pub fn kernel(&self, level: usize) -> [usize; 3] {
        self.kernel_axes[level].map(|on| if on { self.kernel_size } else { 1 })
    }

    /// Channels of level `l` (0..=4): `n_channels · 2^l`.
    pub fn channels(&self, level: usize) -> usize {
        self.n_channels << level
    }

    /// Cumulative downsampling per axis of levels 0..=4 (level 0 all ones).
    pub fn cumulative_strides(&self) -> [[usize; 3]; 5] {
        let mut out = [[1; 3]; 5];
        for l in 0..4 {
            out[l + 1] = [0, 1, 2].map(|a| out[l][a] * self.strides[l][a]);
        }
        out
    }

    /// Spatial size of each level for a 3D(-lifted) input of `patch`; an error unless every axis is divisible by
    /// the total stride (MedNeXt adds each up block's output to the skip of the same level).
    pub fn level_sizes(&self, patch: [usize; 3]) -> Result<[[usize; 3]; 5], ArchitectureError> {
        let cum = self.cumulative_strides();
        if (0..3).any(|a| patch[a] == 0 || !patch[a].is_multiple_of(cum[4][a])) {
            return Err(err(format!(
                "patch {:?} is not divisible by the total stride {:?} of the four downsamplings",
                &patch[3 - self.dims..],
                &cum[4][3 - self.dims..]
            )));
        }
        Ok(cum.map(|c| [0, 1, 2].map(|a| patch[a] / c[a])))
    }

    /// A 2D (`[y, x]`) or 3D patch lifted to 3D; an error when its dimensionality is not this network's.
    pub fn lift_patch(&self, patch: &[usize]) -> Result<[usize; 3], ArchitectureError> {
        match (patch, self.dims) {
            ([y, x], 2) => Ok([1, *y, *x]),
            ([z, y, x], 3) => Ok([*z, *y, *x]),
            _ => Err(err(format!("patch {patch:?} does not match a {}D network", self.dims))),
        }
    }
}

/// The topology recorded in U-Net-style kwargs (`strides`, `kernel_sizes`).
fn unet_topology(m: &Map<String, Value>, dims: usize) -> Result<Topology, ArchitectureError> {
    let list = |key: &str| -> Result<Vec<Vec<usize>>, ArchitectureError> {
        let a = m.get(key).and_then(Value::as_array).ok_or_else(|| err(format!("U-Net-style kwargs lack a '{key}' list")))?;
        a.iter()
            .map(|e| match e {
                Value::Array(x) if x.len() == dims => x.iter().map(|v| uint(v, key)).collect(),
                Value::Number(_) => Ok(vec![uint(e, key)?; dims]),
                _ => Err(err(format!("'{key}' entry {e} is not a {dims}-axis list"))),
            })
            .collect()
    };
    let strides = list("strides")?;
    let kernel_sizes = list("kernel_sizes")?;
    if kernel_sizes.len() != strides.len() {
        return Err(err(format!("'kernel_sizes' has {} entries but 'strides' {}", kernel_sizes.len(), strides.len())));
    }
    Ok(Topology { features_per_stage: vec![0; strides.len()], patch_size: vec![0; dims], strides, kernel_sizes })
}

/// Per-axis strides of the four downsamplings and kernel axes of the five levels (3D-lifted).
type StridesAxes = ([[usize; 3]; 4], [[bool; 3]; 5]);

/// [`MedNeXtKwargs::configure`]'s rule, lifted to 3D.
fn topology_strides_axes(t: &Topology) -> Result<StridesAxes, ArchitectureError> {
    let n = t.strides.len();
    if n == 0 || t.kernel_sizes.len() != n {
        return Err(err(format!("topology with {n} strides and {} kernel sizes", t.kernel_sizes.len())));
    }
    let lift = |v: &[usize]| -> [usize; 3] {
        match v {
            [y, x] => [1, *y, *x],
            [z, y, x] => [*z, *y, *x],
            _ => [0; 3],
        }
    };
    let mut strides = [[1usize; 3]; 4];
    for (l, s) in strides.iter_mut().enumerate() {
        if let Some(v) = t.strides.get(l + 1) {
            *s = lift(v);
            if s.iter().any(|&x| x != 1 && x != 2) {
                return Err(err(format!("topology stride {v:?} is not made of 1s and 2s")));
            }
        }
    }
    let axes = [0, 1, 2, 3, 4].map(|l| lift(&t.kernel_sizes[l.min(n - 1)]).map(|k| k > 1));
    Ok((strides, axes))
}
