//! The experiment-planning search shared by every preset (planning spec §4, §5, §6).

use crate::numeric::{argmax, median, per_axis, percentile, prod, py_round};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::planner::PlanOutput;
use nnunet_core::topology::{PoolConvProps, Topology, UNetKind, conv_feature_map_size, get_pool_and_conv_props};
use nnunet_core::{PlanContext, PlanError};
use nnunet_schema::Plans;
use nnunet_schema::json::python_float_repr;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// How the patch-shrinking loop compares the estimate with the budget (spec §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShrinkRule {
    /// `ExperimentPlanner`: shrink while `estimate / ref_bs * 2 > reference` (6× looser in 2D).
    ScaledToMinBatch,
    /// ResEnc planners: shrink while `estimate > reference`, 2D and 3D alike.
    Strict,
}

/// How configurations name their preprocessed data folders (spec §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataIdentifiers {
    /// `<plans_name>_<configuration>` for every configuration.
    PlansName,
    /// `nnUNetPlans_2d` / `nnUNetPlans_3d_fullres` (shared with the default planner), else `<plans_name>_<config>`.
    SharedWithDefault,
}

/// Every constant of one planner preset. All presets run the same search ([`plan_experiment`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConstants {
    /// Class name written as `experiment_planner_used` (and the registry name).
    pub class_name: &'static str,
    pub default_plans_name: &'static str,
    /// `gpu_memory_target_in_gb` when none is given.
    pub default_gpu_memory_target_gb: f64,
    /// Name used in the non-default-GPU-target warning (`nnUNetPlannerM`, ...); `None` = never warn.
    pub gpu_target_warning_name: Option<&'static str>,
    pub anisotropy_threshold: f64,
    pub base_num_features: usize,
    pub network: UNetKind,
    pub reference_val_3d: f64,
    pub reference_val_2d: f64,
    pub reference_val_corresp_gb: f64,
    pub reference_val_corresp_bs_3d: usize,
    pub reference_val_corresp_bs_2d: usize,
    pub featuremap_min_edge_length: usize,
    pub blocks_per_stage_encoder: &'static [usize],
    pub blocks_per_stage_decoder: &'static [usize],
    pub min_batch_size: i64,
    pub max_features_3d: usize,
    pub max_features_2d: usize,
    pub max_dataset_covered: f64,
    pub lowres_creation_threshold: f64,
    pub lowres_spacing_increase_factor: f64,
    pub shrink_rule: ShrinkRule,
    pub data_identifiers: DataIdentifiers,
}

const PLAIN_ENC: &[usize] = &[2; 14];
const PLAIN_DEC: &[usize] = &[2; 13];
const RESENC_ENC: &[usize] = &[1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6];
const RESENC_DEC: &[usize] = &[1; 12];

impl PlannerConstants {
    /// `ExperimentPlanner` (plans `nnUNetPlans`).
    pub const DEFAULT: PlannerConstants = PlannerConstants {
        class_name: "ExperimentPlanner",
        default_plans_name: "nnUNetPlans",
        default_gpu_memory_target_gb: 8.0,
        gpu_target_warning_name: None,
        anisotropy_threshold: 3.0,
        base_num_features: 32,
        network: UNetKind::Plain,
        reference_val_3d: 560_000_000.0,
        reference_val_2d: 85_000_000.0,
        reference_val_corresp_gb: 8.0,
        reference_val_corresp_bs_3d: 2,
        reference_val_corresp_bs_2d: 12,
        featuremap_min_edge_length: 4,
        blocks_per_stage_encoder: PLAIN_ENC,
        blocks_per_stage_decoder: PLAIN_DEC,
        min_batch_size: 2,
        max_features_3d: 320,
        max_features_2d: 512,
        max_dataset_covered: 0.05,
        lowres_creation_threshold: 0.25,
        lowres_spacing_increase_factor: 1.03,
        shrink_rule: ShrinkRule::ScaledToMinBatch,
        data_identifiers: DataIdentifiers::PlansName,
    };

    /// `ResEncUNetPlanner` (plans `nnUNetResEncUNetPlans`; 5 % dataset cap).
    pub const RES_ENC: PlannerConstants = PlannerConstants {
        class_name: "ResEncUNetPlanner",
        default_plans_name: "nnUNetResEncUNetPlans",
        network: UNetKind::ResidualEncoder,
        reference_val_3d: 680_000_000.0,
        reference_val_2d: 135_000_000.0,
        blocks_per_stage_encoder: RESENC_ENC,
        blocks_per_stage_decoder: RESENC_DEC,
        shrink_rule: ShrinkRule::Strict,
        data_identifiers: DataIdentifiers::SharedWithDefault,
        ..Self::DEFAULT
    };

    /// `nnUNetPlannerResEncM` (8 GB).
    pub const RES_ENC_M: PlannerConstants = PlannerConstants {
        class_name: "nnUNetPlannerResEncM",
        default_plans_name: "nnUNetResEncUNetMPlans",
        gpu_target_warning_name: Some("nnUNetPlannerM"),
        max_dataset_covered: 1.0,
        ..Self::RES_ENC
    };

    /// `nnUNetPlannerResEncL` (24 GB).
    pub const RES_ENC_L: PlannerConstants = PlannerConstants {
        class_name: "nnUNetPlannerResEncL",
        default_plans_name: "nnUNetResEncUNetLPlans",
        default_gpu_memory_target_gb: 24.0,
        gpu_target_warning_name: Some("nnUNetPlannerL"),
        reference_val_corresp_gb: 24.0,
        reference_val_3d: 2_100_000_000.0,
        reference_val_2d: 380_000_000.0,
        max_dataset_covered: 1.0,
        ..Self::RES_ENC
    };

    /// `nnUNetPlannerResEncXL` (40 GB).
    pub const RES_ENC_XL: PlannerConstants = PlannerConstants {
        class_name: "nnUNetPlannerResEncXL",
        default_plans_name: "nnUNetResEncUNetXLPlans",
        default_gpu_memory_target_gb: 40.0,
        gpu_target_warning_name: Some("nnUNetPlannerXL"),
        reference_val_corresp_gb: 40.0,
        reference_val_3d: 3_600_000_000.0,
        reference_val_2d: 560_000_000.0,
        max_dataset_covered: 1.0,
        ..Self::RES_ENC
    };

    /// The dotted class path written as `network_class_name`.
    pub fn network_class_name(&self) -> &'static str {
        match self.network {
            UNetKind::Plain => "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            UNetKind::ResidualEncoder => "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
        }
    }

    fn data_identifier(&self, plans_name: &str, configuration: &str) -> String {
        match self.data_identifiers {
            DataIdentifiers::SharedWithDefault if configuration == "2d" || configuration == "3d_fullres" => {
                format!("nnUNetPlans_{configuration}")
            }
            _ => format!("{plans_name}_{configuration}"),
        }
    }
}

/// Median image size as written to the plans: floats for 3d_fullres/2d, rounded ints for 3d_lowres.
#[derive(Debug, Clone, PartialEq)]
pub enum MedianShape {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

impl MedianShape {
    fn as_f64(&self) -> Vec<f64> {
        match self {
            MedianShape::Float(v) => v.clone(),
            MedianShape::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            MedianShape::Float(v) => json!(v),
            MedianShape::Int(v) => json!(v),
        }
    }
}

/// One planned configuration before it is written as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigurationPlan {
    pub data_identifier: String,
    pub batch_size: i64,
    pub patch_size: Vec<usize>,
    pub median_image_size_in_voxels: MedianShape,
    pub spacing: Vec<f64>,
    pub network_class_name: String,
    pub arch_kwargs: Map<String, Value>,
    /// The memory estimate of the final patch (feature-map elements or the architecture's proxy).
    pub estimate: f64,
}

/// Inputs of the search that do not change between configurations.
struct Search<'c, 'a> {
    k: &'c PlannerConstants,
    ctx: &'c PlanContext<'a>,
    gpu_target_gb: f64,
    n_in: usize,
    n_out: usize,
    cache: HashMap<(Vec<usize>, Vec<Vec<usize>>), f64>,
}

fn features_per_stage(n_stages: usize, base: usize, max_features: usize) -> Vec<usize> {
    (0..n_stages).map(|i| (base << i).min(max_features)).collect()
}

impl Search<'_, '_> {
    fn arch_kwargs(&self, props: &PoolConvProps, dim: usize) -> Map<String, Value> {
        let n = props.n_stages();
        let max_f = if dim == 2 { self.k.max_features_2d } else { self.k.max_features_3d };
        let enc: Vec<usize> = self.k.blocks_per_stage_encoder.iter().copied().take(n).collect();
        let dec: Vec<usize> = self.k.blocks_per_stage_decoder.iter().copied().take(n.saturating_sub(1)).collect();
        let mut m = Map::new();
        m.insert("n_stages".into(), json!(n));
        m.insert("features_per_stage".into(), json!(features_per_stage(n, self.k.base_num_features, max_f)));
        m.insert("conv_op".into(), json!(if dim == 2 { "torch.nn.modules.conv.Conv2d" } else { "torch.nn.modules.conv.Conv3d" }));
        m.insert("kernel_sizes".into(), json!(props.kernel_sizes));
        m.insert("strides".into(), json!(props.strides));
        m.insert(self.k.network.encoder_key().into(), json!(enc));
        m.insert("n_conv_per_stage_decoder".into(), json!(dec));
        m.insert("conv_bias".into(), json!(true));
        m.insert(
            "norm_op".into(),
            json!(if dim == 2 { "torch.nn.modules.instancenorm.InstanceNorm2d" } else { "torch.nn.modules.instancenorm.InstanceNorm3d" }),
        );
        m.insert("norm_op_kwargs".into(), json!({"eps": 1e-5, "affine": true}));
        m.insert("dropout_op".into(), Value::Null);
        m.insert("dropout_op_kwargs".into(), Value::Null);
        m.insert("nonlin".into(), json!("torch.nn.LeakyReLU"));
        m.insert("nonlin_kwargs".into(), json!({"inplace": true}));
        m
    }

    /// Network class name, kwargs and memory estimate of the topology `props`.
    fn network(&mut self, props: &PoolConvProps, dim: usize) -> Result<(String, Map<String, Value>, f64), PlanError> {
        let default_kwargs = self.arch_kwargs(props, dim);
        let key = (props.patch_size.clone(), props.strides.clone());
        match self.ctx.architecture {
            None => {
                let est = match self.cache.get(&key) {
                    Some(&e) => e,
                    None => {
                        let n = props.n_stages();
                        let max_f = if dim == 2 { self.k.max_features_2d } else { self.k.max_features_3d };
                        let feats = features_per_stage(n, self.k.base_num_features, max_f);
                        let enc: Vec<usize> = self.k.blocks_per_stage_encoder.iter().copied().take(n).collect();
                        let dec: Vec<usize> = self.k.blocks_per_stage_decoder.iter().copied().take(n.saturating_sub(1)).collect();
                        if enc.len() < n || dec.len() + 1 < n {
                            return Err(PlanError::Failed(format!(
                                "topology has {n} stages but the planner defines block counts for at most {} encoder stages",
                                self.k.blocks_per_stage_encoder.len()
                            )));
                        }
                        let e =
                            conv_feature_map_size(self.k.network, &feats, &props.strides, &enc, &dec, &props.patch_size, self.n_out) as f64;
                        self.cache.insert(key, e);
                        e
                    }
                };
                Ok((self.k.network_class_name().to_string(), default_kwargs, est))
            }
            Some((name, arch)) => {
                let max_f = if dim == 2 { self.k.max_features_2d } else { self.k.max_features_3d };
                let topology = Topology {
                    strides: props.strides.clone(),
                    kernel_sizes: props.kernel_sizes.clone(),
                    features_per_stage: features_per_stage(props.n_stages(), self.k.base_num_features, max_f),
                    patch_size: props.patch_size.clone(),
                };
                let kwargs = arch.configure(&topology).unwrap_or(default_kwargs);
                let est = match self.cache.get(&key) {
                    Some(&e) => e,
                    None => {
                        let spec = NetworkSpec {
                            arch_kwargs: kwargs.clone(),
                            in_channels: self.n_in,
                            out_channels: self.n_out,
                            deep_supervision: false,
                        };
                        let e = arch
                            .memory_proxy(&spec, &props.patch_size)
                            .map_err(|e| PlanError::Failed(format!("architecture '{name}': memory proxy failed: {e}")))?;
                        if !(e.is_finite() && e > 0.0) {
                            return Err(PlanError::Failed(format!("architecture '{name}': memory proxy returned {e}")));
                        }
                        self.cache.insert(key, e);
                        e
                    }
                };
                Ok((name.to_string(), kwargs, est))
            }
        }
    }

    /// `get_plans_for_configuration` (spec §4.5).
    fn plan_config(
        &mut self,
        spacing: &[f64],
        median_shape: MedianShape,
        data_identifier: String,
        approx_n_voxels_dataset: f64,
    ) -> Result<ConfigurationPlan, PlanError> {
        let dim = spacing.len();
        if dim != 2 && dim != 3 {
            return Err(PlanError::Invalid(format!("spacing must have 2 or 3 entries, got {spacing:?}")));
        }
        if !spacing.iter().all(|&s| s > 0.0 && s.is_finite()) {
            return Err(PlanError::Invalid(format!("spacing must be > 0, got {spacing:?}")));
        }
        let median = median_shape.as_f64();
        let tmp: Vec<f64> = spacing.iter().map(|&s| 1.0 / s).collect();
        // black_box: keep `pow` a libm call like Python's (no sqrt/cbrt rewrite).
        let (volume, exponent) = if dim == 3 { (16_777_216.0, 1.0 / 3.0) } else { (4_194_304.0, 0.5) };
        let f = (volume / prod(&tmp)).powf(std::hint::black_box(exponent));
        let initial: Vec<f64> = tmp
            .iter()
            .zip(&median)
            .map(|(&t, &m)| {
                let r = (t * f).round_ties_even();
                if m < r { m } else { r }
            })
            .collect();

        let min_fm = self.k.featuremap_min_edge_length;
        let mut props = get_pool_and_conv_props(spacing, &initial, min_fm, 999_999);
        let (mut class_name, mut kwargs, mut est) = self.network(&props, dim)?;

        let reference = (if dim == 2 { self.k.reference_val_2d } else { self.k.reference_val_3d })
            * (self.gpu_target_gb / self.k.reference_val_corresp_gb);
        let ref_bs = (if dim == 2 { self.k.reference_val_corresp_bs_2d } else { self.k.reference_val_corresp_bs_3d }) as f64;
        let too_big = |est: f64| match self.k.shrink_rule {
            ShrinkRule::ScaledToMinBatch => est / ref_bs * 2.0 > reference,
            ShrinkRule::Strict => est > reference,
        };
        while too_big(est) {
            let ratios: Vec<f64> = props.patch_size.iter().zip(&median).map(|(&p, &m)| p as f64 / m).collect();
            // np.argsort(ratios)[-1]: stable for small arrays, so ties go to the highest index
            let mut ax = 0;
            for (i, &r) in ratios.iter().enumerate() {
                if r >= ratios[ax] {
                    ax = i;
                }
            }
            let mut patch: Vec<i64> = props.patch_size.iter().map(|&p| p as i64).collect();
            let mut tmp2 = patch.clone();
            tmp2[ax] -= props.divisor[ax] as i64;
            if tmp2[ax] < 1 {
                return Err(PlanError::Failed(format!(
                    "cannot shrink the patch {:?} any further to fit the memory budget {reference} (estimate {est})",
                    props.patch_size
                )));
            }
            let tmp2f: Vec<f64> = tmp2.iter().map(|&x| x as f64).collect();
            let divisor2 = get_pool_and_conv_props(spacing, &tmp2f, min_fm, 999_999).divisor;
            patch[ax] -= divisor2[ax] as i64;
            if patch[ax] < 1 {
                return Err(PlanError::Failed(format!("patch axis {ax} shrank to {} while fitting the memory budget", patch[ax])));
            }
            let patchf: Vec<f64> = patch.iter().map(|&x| x as f64).collect();
            props = get_pool_and_conv_props(spacing, &patchf, min_fm, 999_999);
            (class_name, kwargs, est) = self.network(&props, dim)?;
        }

        let bs = py_round((reference / est) * ref_bs);
        let patch_vox = prod(&props.patch_size.iter().map(|&p| p as f64).collect::<Vec<_>>());
        let cap = py_round(approx_n_voxels_dataset * self.k.max_dataset_covered / patch_vox);
        let batch_size = bs.min(cap).max(self.k.min_batch_size);

        Ok(ConfigurationPlan {
            data_identifier,
            batch_size,
            patch_size: props.patch_size,
            median_image_size_in_voxels: median_shape,
            spacing: spacing.to_vec(),
            network_class_name: class_name,
            arch_kwargs: kwargs,
            estimate: est,
        })
    }
}

/// Normalization scheme of a channel name (spec §4.9, `get_normalization_scheme`).
pub fn normalization_scheme(channel_name: &str) -> &'static str {
    match channel_name.to_lowercase().as_str() {
        "ct" => "CTNormalization",
        "nonorm" => "NoNormalization",
        "zscore" => "ZScoreNormalization",
        "rescale_to_0_1" => "RescaleTo01Normalization",
        "rgb_to_0_1" => "RGBTo01Normalization",
        _ => "ZScoreNormalization",
    }
}

/// `determine_fullres_target_spacing` (spec §4.1), untransposed.
pub fn fullres_target_spacing(
    spacings: &[Vec<f64>],
    shapes: &[Vec<f64>],
    anisotropy_threshold: f64,
    overwrite: Option<&[f64]>,
) -> Vec<f64> {
    if let Some(o) = overwrite {
        return o.to_vec();
    }
    let mut target = per_axis(spacings, |v| percentile(v, 50.0));
    let target_size = per_axis(shapes, |v| percentile(v, 50.0));
    let w = argmax(&target);
    let others: Vec<usize> = (0..target.len()).filter(|&i| i != w).collect();
    let max_other_sp = others.iter().map(|&i| target[i]).fold(f64::NEG_INFINITY, f64::max);
    let min_other_size = others.iter().map(|&i| target_size[i]).fold(f64::INFINITY, f64::min);
    let aniso_spacing = target[w] > anisotropy_threshold * max_other_sp;
    let aniso_voxels = target_size[w] * anisotropy_threshold < min_other_size;
    if aniso_spacing && aniso_voxels {
        let axis: Vec<f64> = spacings.iter().map(|s| s[w]).collect();
        let mut t = percentile(&axis, 10.0);
        if t < max_other_sp {
            t = max_other_sp.max(t) + 1e-5;
        }
        target[w] = t;
    }
    target
}

/// `determine_transpose` (spec §4.2): (forward, backward).
pub fn transpose_from_spacing(target_spacing: &[f64]) -> (Vec<usize>, Vec<usize>) {
    let m = argmax(target_spacing);
    let dim = target_spacing.len();
    let mut fwd = vec![m];
    fwd.extend((0..dim).filter(|&i| i != m));
    let bwd = (0..dim).map(|i| fwd.iter().position(|&x| x == i).expect("permutation")).collect();
    (fwd, bwd)
}

/// `compute_new_shape`: `int(round(old_sp / new_sp * old_shape))` per axis.
pub fn compute_new_shape(old_shape: &[f64], old_spacing: &[f64], new_spacing: &[f64]) -> Vec<f64> {
    old_shape.iter().zip(old_spacing).zip(new_spacing).map(|((&sh, &osp), &nsp)| py_round(osp / nsp * sh) as f64).collect()
}

fn take<T: Copy>(v: &[T], order: &[usize]) -> Vec<T> {
    order.iter().map(|&i| v[i]).collect()
}

fn configuration_json(c: &ConfigurationPlan, preprocessor: &str, norm: &[&str], mask: &[bool]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("data_identifier".into(), json!(c.data_identifier));
    m.insert("preprocessor_name".into(), json!(preprocessor));
    m.insert("batch_size".into(), json!(c.batch_size));
    m.insert("patch_size".into(), json!(c.patch_size));
    m.insert("median_image_size_in_voxels".into(), c.median_image_size_in_voxels.to_json());
    m.insert("spacing".into(), json!(c.spacing));
    m.insert("normalization_schemes".into(), json!(norm));
    m.insert("use_mask_for_norm".into(), json!(mask));
    m.insert("resampling_fn_data".into(), json!("resample_data_or_seg_to_shape"));
    m.insert("resampling_fn_seg".into(), json!("resample_data_or_seg_to_shape"));
    m.insert("resampling_fn_data_kwargs".into(), json!({"is_seg": false, "order": 3, "order_z": 0, "force_separate_z": null}));
    m.insert("resampling_fn_seg_kwargs".into(), json!({"is_seg": true, "order": 1, "order_z": 0, "force_separate_z": null}));
    m.insert("resampling_fn_probabilities".into(), json!("resample_data_or_seg_to_shape"));
    m.insert("resampling_fn_probabilities_kwargs".into(), json!({"is_seg": false, "order": 1, "order_z": 0, "force_separate_z": null}));
    let mut arch = Map::new();
    arch.insert("network_class_name".into(), json!(c.network_class_name));
    arch.insert("arch_kwargs".into(), Value::Object(c.arch_kwargs.clone()));
    arch.insert("_kw_requires_import".into(), json!(["conv_op", "norm_op", "dropout_op", "nonlin"]));
    m.insert("architecture".into(), Value::Object(arch));
    m
}

/// Run the whole experiment planning of one preset (spec §4.1–§4.8).
pub fn plan_experiment(k: &PlannerConstants, ctx: &PlanContext<'_>) -> Result<PlanOutput, PlanError> {
    let fp = ctx.fingerprint;
    let dj = ctx.dataset_json;
    let mut messages = Vec::new();
    let gpu_target_gb = ctx.gpu_memory_target_gb.unwrap_or(k.default_gpu_memory_target_gb);
    if !(gpu_target_gb.is_finite() && gpu_target_gb > 0.0) {
        return Err(PlanError::Invalid(format!("gpu_memory_target must be a positive number, got {gpu_target_gb}")));
    }
    if let Some(w) = k.gpu_target_warning_name
        && gpu_target_gb != k.default_gpu_memory_target_gb
    {
        messages.push(format!(
            "WARNING: You are running {w} with a non-standard gpu_memory_target_in_gb. Expected {}, got {}.\
             You should only see this warning if you modified this value intentionally!!",
            k.default_gpu_memory_target_gb as i64,
            python_float_repr(gpu_target_gb)
        ));
    }
    let plans_name = ctx.plans_name.unwrap_or(k.default_plans_name).to_string();
    let preprocessor = ctx.preprocessor_name.unwrap_or("DefaultPreprocessor");

    // ---- validate the fingerprint
    let n_cases = fp.spacings.len();
    if n_cases == 0 {
        return Err(PlanError::Invalid("the fingerprint lists no cases".into()));
    }
    if fp.shapes_after_crop.len() != n_cases {
        return Err(PlanError::Invalid(format!(
            "the fingerprint has {n_cases} spacings but {} shapes_after_crop",
            fp.shapes_after_crop.len()
        )));
    }
    if fp.spacings.iter().any(|s| s.len() != 3) || fp.shapes_after_crop.iter().any(|s| s.len() != 3) {
        return Err(PlanError::Invalid("every fingerprint spacing and shape must have 3 entries".into()));
    }
    if fp.spacings.iter().flatten().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(PlanError::Invalid("fingerprint spacings must be positive and finite".into()));
    }
    if let Some(o) = ctx.overwrite_target_spacing
        && (o.len() != 3 || o.iter().any(|&s| !(s > 0.0 && s.is_finite())))
    {
        return Err(PlanError::Invalid(format!("overwrite_target_spacing must be 3 positive numbers, got {o:?}")));
    }
    let channels = dj.channels();
    if channels.is_empty() {
        return Err(PlanError::Invalid("dataset.json defines no channel_names".into()));
    }
    let n_out = dj.labels.len();
    let shapes: Vec<Vec<f64>> = fp.shapes_after_crop.iter().map(|s| s.iter().map(|&x| x as f64).collect()).collect();

    // ---- target spacing, transpose, resampled geometry
    let fullres_spacing = fullres_target_spacing(&fp.spacings, &shapes, k.anisotropy_threshold, ctx.overwrite_target_spacing);
    let (tf, tb) = transpose_from_spacing(&fullres_spacing);
    let fullres_spacing_t = take(&fullres_spacing, &tf);
    let new_shapes: Vec<Vec<f64>> = fp.spacings.iter().zip(&shapes).map(|(sp, sh)| compute_new_shape(sh, sp, &fullres_spacing)).collect();
    let new_median = per_axis(&new_shapes, median);
    let new_median_t = take(&new_median, &tf);
    let num_training = dj.num_training as f64;
    let approx_n_voxels_dataset = prod(&new_median_t) * num_training;

    let mut search = Search { k, ctx, gpu_target_gb, n_in: channels.len(), n_out, cache: HashMap::new() };

    // ---- 3D
    let mut fullres: Option<(ConfigurationPlan, bool)> = None;
    let mut lowres: Option<ConfigurationPlan> = None;
    if new_median_t[0] != 1.0 {
        let full = search.plan_config(
            &fullres_spacing_t,
            MedianShape::Float(new_median_t.clone()),
            k.data_identifier(&plans_name, "3d_fullres"),
            approx_n_voxels_dataset,
        )?;
        let mut patch_vox = prod(&full.patch_size.iter().map(|&p| p as f64).collect::<Vec<_>>());
        let mut median_vox = prod(&new_median_t);
        let mut lsp = fullres_spacing_t.clone();
        let mut candidate: Option<ConfigurationPlan> = None;
        let mut iterations = 0usize;
        while patch_vox / median_vox < k.lowres_creation_threshold {
            iterations += 1;
            if iterations > 10_000 {
                return Err(PlanError::Failed(format!(
                    "3d_lowres search did not converge (spacing {lsp:?}); is a singleton axis not the first axis after transposing?"
                )));
            }
            let mx = lsp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mask: Vec<bool> = lsp.iter().map(|&s| mx / s > 2.0).collect();
            if mask.iter().any(|&b| b) {
                for (s, &b) in lsp.iter_mut().zip(&mask) {
                    if b {
                        *s *= k.lowres_spacing_increase_factor;
                    }
                }
            } else {
                for s in lsp.iter_mut() {
                    *s *= k.lowres_spacing_increase_factor;
                }
            }
            let cur: Vec<f64> = (0..3).map(|i| fullres_spacing_t[i] / lsp[i] * new_median_t[i]).collect();
            median_vox = prod(&cur);
            let rounded: Vec<i64> = cur.iter().map(|&x| py_round(x)).collect();
            if rounded.iter().any(|&x| x < 1) || !median_vox.is_finite() {
                return Err(PlanError::Failed(format!(
                    "3d_lowres search degenerated (median shape {cur:?} at spacing {lsp:?}); \
                     a singleton axis that is not moved first by the transpose cannot be planned in 3D"
                )));
            }
            let c = search.plan_config(
                &lsp,
                MedianShape::Int(rounded),
                k.data_identifier(&plans_name, "3d_lowres"),
                median_vox * num_training,
            )?;
            patch_vox = prod(&c.patch_size.iter().map(|&p| p as f64).collect::<Vec<_>>());
            candidate = Some(c);
        }
        if prod(&new_median_t) / median_vox < 2.0 {
            if let Some(c) = &candidate {
                messages.push(format!(
                    "Dropping 3d_lowres config because the image size difference to 3d_fullres is too small. \
                     3d_fullres: {new_median_t:?}, 3d_lowres: {:?}",
                    c.median_image_size_in_voxels.as_f64()
                ));
            }
            candidate = None;
        }
        let has_lowres = candidate.is_some();
        lowres = candidate;
        fullres = Some((full, has_lowres));
    }

    // ---- 2D
    let plan_2d = search.plan_config(
        &fullres_spacing_t[1..],
        MedianShape::Float(new_median_t[1..].to_vec()),
        k.data_identifier(&plans_name, "2d"),
        approx_n_voxels_dataset,
    )?;

    // ---- normalization
    let norm: Vec<&str> = channels.iter().map(|c| normalization_scheme(c)).collect();
    let mask: Vec<bool> = if fp.median_relative_size_after_cropping < 0.75 {
        norm.iter().map(|&n| n == "ZScoreNormalization").collect()
    } else {
        vec![false; norm.len()]
    };

    // ---- assembly (spec §4.8, §6)
    let mut configs = Map::new();
    let mut c2d = configuration_json(&plan_2d, preprocessor, &norm, &mask);
    c2d.insert("batch_dice".into(), json!(true));
    configs.insert("2d".into(), Value::Object(c2d));
    if let Some(lr) = &lowres {
        let mut c = configuration_json(lr, preprocessor, &norm, &mask);
        c.insert("batch_dice".into(), json!(false));
        if fullres.is_some() {
            c.insert("next_stage".into(), json!("3d_cascade_fullres"));
        }
        configs.insert("3d_lowres".into(), Value::Object(c));
    }
    if let Some((full, has_lowres)) = &fullres {
        let mut c = configuration_json(full, preprocessor, &norm, &mask);
        c.insert("batch_dice".into(), json!(*has_lowres));
        configs.insert("3d_fullres".into(), Value::Object(c));
        if *has_lowres {
            configs.insert("3d_cascade_fullres".into(), json!({"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}));
        }
    }

    let median_spacing_t = take(&per_axis(&fp.spacings, median), &tf);
    let median_shape_t: Vec<i64> = take(&per_axis(&shapes, median), &tf).into_iter().map(py_round).collect();
    let mut intensity = Map::new();
    for (ch, props) in &fp.foreground_intensity_properties_per_channel {
        intensity.insert(ch.to_string(), serde_json::to_value(props).map_err(|e| PlanError::Failed(e.to_string()))?);
    }

    let mut plans = Map::new();
    plans.insert("dataset_name".into(), json!(ctx.dataset_name));
    plans.insert("plans_name".into(), json!(plans_name));
    plans.insert("original_median_spacing_after_transp".into(), json!(median_spacing_t));
    plans.insert("original_median_shape_after_transp".into(), json!(median_shape_t));
    plans.insert("image_reader_writer".into(), json!(ctx.image_reader_writer));
    plans.insert("transpose_forward".into(), json!(tf));
    plans.insert("transpose_backward".into(), json!(tb));
    plans.insert("configurations".into(), Value::Object(configs));
    plans.insert("experiment_planner_used".into(), json!(k.class_name));
    plans.insert("label_manager".into(), json!("LabelManager"));
    plans.insert("foreground_intensity_properties_per_channel".into(), Value::Object(intensity));
    let mut plans = Plans(plans);
    if let Some(existing) = ctx.existing_plans {
        plans.merge_existing_configurations(existing);
    }
    Ok(PlanOutput { plans, plans_name, messages })
}
