//! Network topology shared by planners and architectures: stages, strides, kernels, features.
//!
//! Pure helpers (planning spec §4.6 and §5.1):
//! * [`get_pool_and_conv_props`]: nnU-Net's `get_pool_and_conv_props` (pooling steps, kernel sizes, padded patch).
//! * [`conv_feature_map_size`]: the closed form of dynamic-network-architectures'
//!   `compute_conv_feature_map_size` for `PlainConvUNet` and `ResidualEncoderUNet` (the "VRAM estimate").
//! * [`feature_map_size_from_kwargs`]: the same, reading the plans' `arch_kwargs`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A U-Net-like topology as nnU-Net's planner derives it (`get_pool_and_conv_props`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Per stage, per axis stride (stage 0 is all ones).
    pub strides: Vec<Vec<usize>>,
    /// Per stage, per axis kernel size.
    pub kernel_sizes: Vec<Vec<usize>>,
    /// Features per stage.
    pub features_per_stage: Vec<usize>,
    /// Patch size the topology was derived for.
    pub patch_size: Vec<usize>,
}

impl Topology {
    pub fn n_stages(&self) -> usize {
        self.strides.len()
    }
}

/// Result of [`get_pool_and_conv_props`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConvProps {
    /// Number of poolings per axis.
    pub num_pool_per_axis: Vec<usize>,
    /// Per stage strides; the first stage is all ones. `len()` = number of stages.
    pub strides: Vec<Vec<usize>>,
    /// Per stage conv kernel sizes (the bottleneck is always all 3).
    pub kernel_sizes: Vec<Vec<usize>>,
    /// The patch size rounded up to a multiple of `divisor`.
    pub patch_size: Vec<usize>,
    /// `2**num_pool_per_axis`: what the patch size must be divisible by.
    pub divisor: Vec<usize>,
}

impl PoolConvProps {
    pub fn n_stages(&self) -> usize {
        self.strides.len()
    }
}

/// nnU-Net's `get_pool_and_conv_props(spacing, patch_size, min_feature_map_size, max_numpool)` (spec §4.6).
///
/// `patch_size` may be fractional (an initial patch clipped to a median shape such as 35.5).
pub fn get_pool_and_conv_props(spacing: &[f64], patch_size: &[f64], min_feature_map_size: usize, max_numpool: usize) -> PoolConvProps {
    let dim = spacing.len();
    assert_eq!(dim, patch_size.len(), "spacing and patch size must have the same length");
    let min_fm = min_feature_map_size as f64;
    let mut cur_sp = spacing.to_vec();
    let mut cur_sz = patch_size.to_vec();
    let mut strides = vec![vec![1usize; dim]];
    let mut kernels: Vec<Vec<usize>> = Vec::new();
    let mut npool = vec![0usize; dim];
    let mut ks = vec![1usize; dim];

    loop {
        let valid: Vec<usize> = (0..dim).filter(|&i| cur_sz[i] >= 2.0 * min_fm).collect();
        if valid.is_empty() {
            break;
        }
        let m = valid.iter().map(|&i| cur_sp[i]).fold(f64::INFINITY, f64::min);
        let valid: Vec<usize> = valid.into_iter().filter(|&i| cur_sp[i] / m < 2.0).filter(|&i| npool[i] < max_numpool).collect();
        if valid.len() == 1 && cur_sz[valid[0]] < 3.0 * min_fm {
            break;
        }
        if valid.is_empty() {
            break;
        }
        let min_all = cur_sp.iter().copied().fold(f64::INFINITY, f64::min);
        for d in 0..dim {
            if ks[d] != 3 && cur_sp[d] / min_all < 2.0 {
                ks[d] = 3;
            }
        }
        let mut s = vec![1usize; dim];
        for &v in &valid {
            s[v] = 2;
            npool[v] += 1;
            cur_sp[v] *= 2.0;
            cur_sz[v] = (cur_sz[v] / 2.0).ceil();
        }
        strides.push(s);
        kernels.push(ks.clone());
    }

    let divisor: Vec<usize> = npool.iter().map(|&n| 1usize << n).collect();
    let patch = patch_size.iter().zip(&divisor).map(|(&p, &d)| pad_to_multiple(p, d)).collect();
    kernels.push(vec![3; dim]);
    PoolConvProps { num_pool_per_axis: npool, strides, kernel_sizes: kernels, patch_size: patch, divisor }
}

/// nnU-Net's `pad_shape` for one axis: `p + d - p % d` (minus `d` if `p % d == 0`), then truncated to int.
fn pad_to_multiple(p: f64, d: usize) -> usize {
    let d = d as f64;
    let r = p.rem_euclid(d); // Python's float % (non-negative for positive d)
    let mut v = p + d - r;
    if r == 0.0 {
        v -= d;
    }
    v as usize
}

/// Encoder family of the built-in U-Nets (dynamic-network-architectures 0.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UNetKind {
    /// `PlainConvUNet`: `n_conv_per_stage` convs per encoder stage.
    Plain,
    /// `ResidualEncoderUNet`: stem conv + `n_blocks_per_stage` BasicBlockD per encoder stage.
    ResidualEncoder,
}

impl UNetKind {
    /// Recognise nnU-Net's class names (full dotted path or bare class name).
    pub fn from_class_name(name: &str) -> Option<Self> {
        match name.rsplit('.').next().unwrap_or(name) {
            "PlainConvUNet" => Some(UNetKind::Plain),
            "ResidualEncoderUNet" => Some(UNetKind::ResidualEncoder),
            _ => None,
        }
    }

    /// The `arch_kwargs` key holding the per-stage encoder conv/block counts.
    pub fn encoder_key(self) -> &'static str {
        match self {
            UNetKind::Plain => "n_conv_per_stage",
            UNetKind::ResidualEncoder => "n_blocks_per_stage",
        }
    }
}

/// Number of output elements (per sample, channels × voxels) of every convolution-like op of a
/// `PlainConvUNet` / `ResidualEncoderUNet` without deep supervision: nnU-Net's VRAM estimate (spec §5.1).
///
/// * `features[s]`, `strides[s]` (strides\[0] all ones), `n_encoder[s]` (convs or residual blocks per stage),
///   `n_conv_decoder[d]` (d = 0 is the lowest-resolution decoder stage, `n_stages - 1` entries);
/// * `patch`: spatial patch size; `out_channels`: segmentation head channels.
pub fn conv_feature_map_size(
    kind: UNetKind,
    features: &[usize],
    strides: &[Vec<usize>],
    n_encoder: &[usize],
    n_conv_decoder: &[usize],
    patch: &[usize],
    out_channels: usize,
) -> u64 {
    let n = strides.len();
    assert!(n >= 1, "at least one stage");
    assert!(features.len() >= n && n_encoder.len() >= n && n_conv_decoder.len() + 1 >= n, "per-stage lists too short");
    // spatial sizes per stage (floor division)
    let mut sizes: Vec<Vec<usize>> = Vec::with_capacity(n);
    let mut cur = patch.to_vec();
    for s in strides.iter().take(n) {
        cur = cur.iter().zip(s).map(|(&c, &st)| c / st.max(1)).collect();
        sizes.push(cur.clone());
    }
    let vol = |s: usize| sizes[s].iter().map(|&x| x as u64).product::<u64>();
    let f = |s: usize| features[s] as u64;

    let mut enc: u64 = 0;
    match kind {
        UNetKind::Plain => {
            for (s, &n_enc) in n_encoder.iter().enumerate().take(n) {
                enc += n_enc as u64 * f(s) * vol(s);
            }
        }
        UNetKind::ResidualEncoder => {
            enc += f(0) * vol(0); // stem
            for s in 0..n {
                let (in_ch, prev_size) = if s == 0 { (f(0), patch.to_vec()) } else { (f(s - 1), sizes[s - 1].clone()) };
                let fv = f(s) * vol(s);
                enc += 2 * fv;
                if in_ch != f(s) || prev_size != sizes[s] {
                    enc += fv;
                }
                enc += (n_encoder[s].saturating_sub(1)) as u64 * 2 * fv;
            }
        }
    }
    let mut dec: u64 = 0;
    for (d, &n_conv) in n_conv_decoder.iter().enumerate().take(n.saturating_sub(1)) {
        let k = n - 2 - d;
        let fv = f(k) * vol(k);
        dec += n_conv as u64 * fv + fv;
    }
    dec += out_channels as u64 * vol(0);
    enc + dec
}

fn usize_list(v: &Value, key: &str) -> Result<Vec<usize>, String> {
    let arr = v.as_array().ok_or_else(|| format!("arch_kwargs['{key}'] must be a list"))?;
    arr.iter().map(|x| x.as_u64().map(|x| x as usize).ok_or_else(|| format!("arch_kwargs['{key}'] must hold non-negative ints"))).collect()
}

/// A per-stage value that nnU-Net allows as a scalar or a list.
fn per_stage(kwargs: &Map<String, Value>, key: &str, n: usize) -> Result<Vec<usize>, String> {
    let v = kwargs.get(key).ok_or_else(|| format!("arch_kwargs lacks '{key}'"))?;
    if let Some(x) = v.as_u64() {
        return Ok(vec![x as usize; n]);
    }
    usize_list(v, key)
}

/// [`conv_feature_map_size`] from a plans `network_class_name` and `arch_kwargs`.
pub fn feature_map_size_from_kwargs(
    network_class_name: &str,
    arch_kwargs: &Map<String, Value>,
    patch: &[usize],
    out_channels: usize,
) -> Result<u64, String> {
    let kind = UNetKind::from_class_name(network_class_name)
        .ok_or_else(|| format!("no closed-form feature-map size for network class '{network_class_name}'"))?;
    let n =
        arch_kwargs.get("n_stages").and_then(Value::as_u64).ok_or_else(|| "arch_kwargs['n_stages'] must be an int".to_string())? as usize;
    let features = per_stage(arch_kwargs, "features_per_stage", n)?;
    let strides_v = arch_kwargs.get("strides").ok_or_else(|| "arch_kwargs lacks 'strides'".to_string())?;
    let strides: Vec<Vec<usize>> = match strides_v {
        Value::Array(a) => a
            .iter()
            .map(|s| match s {
                Value::Number(x) => x.as_u64().map(|x| vec![x as usize; patch.len()]).ok_or_else(|| "bad stride".to_string()),
                other => usize_list(other, "strides"),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("arch_kwargs['strides'] must be a list".into()),
    };
    if strides.len() != n || features.len() != n {
        return Err(format!("arch_kwargs: n_stages = {n} but {} strides / {} features", strides.len(), features.len()));
    }
    let enc = per_stage(arch_kwargs, kind.encoder_key(), n)?;
    let dec = per_stage(arch_kwargs, "n_conv_per_stage_decoder", n.saturating_sub(1))?;
    if enc.len() < n || dec.len() + 1 < n {
        return Err("arch_kwargs: per-stage conv/block lists shorter than n_stages".into());
    }
    Ok(conv_feature_map_size(kind, &features, &strides, &enc, &dec, patch, out_channels))
}

/// The `arch_kwargs` keys nnU-Net's planners write for its U-Nets (PlainConvUNet / ResidualEncoderUNet). Other
/// architectures tolerate them in plans whose network they replace (`--arch`), and derive their own kwargs from them.
pub const UNET_ARCH_KWARGS: [&str; 15] = [
    "n_stages",
    "features_per_stage",
    "conv_op",
    "kernel_sizes",
    "strides",
    "n_conv_per_stage",
    "n_blocks_per_stage",
    "n_conv_per_stage_decoder",
    "conv_bias",
    "norm_op",
    "norm_op_kwargs",
    "dropout_op",
    "dropout_op_kwargs",
    "nonlin",
    "nonlin_kwargs",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hippocampus_topology_and_estimates() {
        let p = get_pool_and_conv_props(&[1.0, 1.0, 1.0], &[36.0, 50.0, 35.0], 4, 999999);
        assert_eq!(p.patch_size, vec![40, 56, 40]);
        assert_eq!(p.num_pool_per_axis, vec![3, 3, 3]);
        assert_eq!(p.n_stages(), 4);
        assert_eq!(p.kernel_sizes, vec![vec![3, 3, 3]; 4]);
        let feats = [32, 64, 128, 256];
        let est = conv_feature_map_size(UNetKind::Plain, &feats, &p.strides, &[2; 4], &[2; 3], &p.patch_size, 3);
        assert_eq!(est, 19_174_400);
        let est = conv_feature_map_size(UNetKind::ResidualEncoder, &feats, &p.strides, &[1, 3, 4, 6], &[1; 3], &p.patch_size, 3);
        assert_eq!(est, 23_609_600);

        let p2 = get_pool_and_conv_props(&[1.0, 1.0], &[50.0, 35.0], 4, 999999);
        assert_eq!(p2.patch_size, vec![56, 40]);
        let est = conv_feature_map_size(UNetKind::Plain, &feats, &p2.strides, &[2; 4], &[2; 3], &p2.patch_size, 3);
        assert_eq!(est, 651_840);
        let est = conv_feature_map_size(UNetKind::ResidualEncoder, &feats, &p2.strides, &[1, 3, 4, 6], &[1; 3], &p2.patch_size, 3);
        assert_eq!(est, 1_001_280);
    }

    #[test]
    fn anisotropic_acdc_like_kernels() {
        // ACDC-like: 10 mm slices, 1.5 mm in-plane.
        let p = get_pool_and_conv_props(&[10.0, 1.5, 1.5], &[10.0, 256.0, 224.0], 4, 999999);
        assert_eq!(p.num_pool_per_axis, vec![1, 5, 5]);
        assert_eq!(p.strides, vec![vec![1, 1, 1], vec![1, 2, 2], vec![1, 2, 2], vec![2, 2, 2], vec![1, 2, 2], vec![1, 2, 2]]);
        assert_eq!(p.kernel_sizes, vec![vec![1, 3, 3], vec![1, 3, 3], vec![3, 3, 3], vec![3, 3, 3], vec![3, 3, 3], vec![3, 3, 3]]);
        assert_eq!(p.patch_size, vec![10, 256, 224]);
        assert_eq!(p.divisor, vec![2, 32, 32]);
    }

    #[test]
    fn dataset201_like_topology() {
        // Dataset201 3d_fullres: spacing [2.5, 0.79, 0.83], median [35, 103.5, 102] -> [40, 112, 112]
        let p = get_pool_and_conv_props(&[2.5, 0.7935770153999329, 0.834066241979599], &[35.0, 103.5, 102.0], 4, 999999);
        assert_eq!(p.patch_size, vec![40, 112, 112]);
        assert_eq!(p.strides, vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 2, 2], vec![2, 2, 2], vec![2, 2, 2]]);
        assert_eq!(p.kernel_sizes[0], vec![1, 3, 3]);
        assert_eq!(p.kernel_sizes[1], vec![3, 3, 3]);
    }

    #[test]
    fn lone_axis_needs_twelve_and_padding() {
        // one axis only: size 11 < 12 -> no pooling, patch unchanged
        let p = get_pool_and_conv_props(&[1.0, 5.0], &[11.0, 3.0], 4, 999999);
        assert_eq!(p.n_stages(), 1);
        assert_eq!(p.patch_size, vec![11, 3]);
        assert_eq!(p.kernel_sizes, vec![vec![3, 3]]);
        // fractional sizes are padded up
        let p = get_pool_and_conv_props(&[1.0, 1.0], &[35.5, 8.0], 4, 999999);
        assert_eq!(p.strides, vec![vec![1, 1], vec![2, 2], vec![2, 1]]);
        assert_eq!(p.patch_size, vec![36, 8]);
        assert_eq!(p.divisor, vec![4, 2]);
        assert_eq!(pad_to_multiple(35.5, 8), 40);
        assert_eq!(pad_to_multiple(40.0, 8), 40);
        assert_eq!(pad_to_multiple(41.0, 8), 48);
    }

    #[test]
    fn kwargs_form_matches_closed_form() {
        let kw: Map<String, Value> = serde_json::from_str(
            r#"{"n_stages": 4, "features_per_stage": [32, 64, 128, 256], "strides": [[1,1,1],[2,2,2],[2,2,2],[2,2,2]],
                "n_blocks_per_stage": [1, 3, 4, 6], "n_conv_per_stage_decoder": [1, 1, 1]}"#,
        )
        .unwrap();
        let v = feature_map_size_from_kwargs("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet", &kw, &[40, 56, 40], 3)
            .unwrap();
        assert_eq!(v, 23_609_600);
        assert!(feature_map_size_from_kwargs("foo.Bar", &kw, &[40, 56, 40], 3).is_err());
    }
}
