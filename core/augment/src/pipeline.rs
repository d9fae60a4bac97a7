//! nnU-Net's `get_training_transforms` / `get_validation_transforms` as a list of [`Transform`]s.

use crate::rng::{RandomScalar, Rng};
use crate::spatial::{SpatialDims, SpatialTransform};
use crate::tensor::Sample;
use crate::transforms::*;

/// An ordered list of transforms applied to one sample.
#[derive(Default)]
pub struct Pipeline {
    pub transforms: Vec<Box<dyn Transform>>,
}

impl Pipeline {
    pub fn apply(&self, sample: &mut Sample, rng: &mut Rng) {
        for t in &self.transforms {
            t.apply(sample, rng);
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.transforms.iter().map(|t| t.name()).collect()
    }

    /// removes every transform of that name (e.g. `"MirrorTransform"` for nnUNetTrainerNoMirroring)
    pub fn without(mut self, name: &str) -> Self {
        self.transforms.retain(|t| t.name() != name);
        self
    }

    pub fn push(&mut self, t: impl Transform + 'static) {
        self.transforms.push(Box::new(t));
    }
}

/// Inputs of `get_training_transforms` (all axes refer to nnU-Net's patch axes: 2 entries for 2D, 3 for 3D).
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    /// final patch size (2 or 3 entries)
    pub patch_size: Vec<usize>,
    /// rotation range (radians)
    pub rotation: (f64, f64),
    pub do_dummy_2d: bool,
    /// nnU-Net mirror axes (None or empty: no mirroring)
    pub mirror_axes: Option<Vec<usize>>,
    pub use_mask_for_norm: Vec<bool>,
    /// region-based training: labels of each region
    pub regions: Option<Vec<Vec<i16>>>,
    pub ignore_label: Option<i16>,
    /// deep-supervision scales (one factor per patch axis per scale); None: no DS
    pub ds_scales: Option<Vec<Vec<f64>>>,
    /// cascade stage (`is_cascaded`): the dataset's foreground labels; segmentation channel 1 holds the previous
    /// stage's segmentation (see [`crate::cascade`]). None: not a cascade
    pub cascade_foreground_labels: Option<Vec<i16>>,
}

impl PipelineConfig {
    /// nnU-Net's defaults for a patch size (rotation, dummy-2D, mirror axes from [`crate::configure_da`]); no
    /// masking, no regions, no DS
    pub fn for_patch(patch_size: &[usize]) -> Self {
        let da = crate::config::configure_da(patch_size);
        PipelineConfig {
            patch_size: patch_size.to_vec(),
            rotation: da.rotation,
            do_dummy_2d: da.do_dummy_2d,
            mirror_axes: Some(da.mirror_axes),
            use_mask_for_norm: Vec::new(),
            regions: None,
            ignore_label: None,
            ds_scales: None,
            cascade_foreground_labels: None,
        }
    }

    fn is_2d(&self) -> bool {
        self.patch_size.len() == 2
    }

    /// nnU-Net patch axis → axis of the `(z, y, x)` sample tensor
    fn axis(&self, a: usize) -> usize {
        if self.is_2d() { a + 1 } else { a }
    }

    /// the final patch as `(z, y, x)`
    pub fn patch3(&self) -> [usize; 3] {
        if self.is_2d() {
            [1, self.patch_size[0], self.patch_size[1]]
        } else {
            [self.patch_size[0], self.patch_size[1], self.patch_size[2]]
        }
    }

    fn tail(&self, t: &mut Pipeline) {
        if let Some(regions) = &self.regions {
            let mut r = regions.clone();
            if let Some(ig) = self.ignore_label {
                r.push(vec![ig]);
            }
            t.push(ConvertSegmentationToRegionsTransform { regions: r, channel_in_seg: 0 });
        }
        if let Some(ds) = &self.ds_scales {
            let scales = ds.iter().map(|s| if self.is_2d() { [1.0, s[0], s[1]] } else { [s[0], s[1], s[2]] }).collect();
            t.push(DownsampleSegForDSTransform { ds_scales: scales });
        }
    }
}

/// `nnUNetTrainer.get_training_transforms`.
pub fn training_pipeline(cfg: &PipelineConfig) -> Pipeline {
    let mut t = Pipeline::default();
    let spatial_axes: Vec<usize> = if cfg.is_2d() { vec![1, 2] } else { vec![0, 1, 2] };
    let dims = if cfg.is_2d() || cfg.do_dummy_2d { SpatialDims::Two } else { SpatialDims::Three };
    t.push(SpatialTransform::nnunet(cfg.patch3(), dims, cfg.rotation));
    t.push(RandomApply::new(
        0.1,
        GaussianNoiseTransform { noise_variance: RandomScalar::Uniform(0.0, 0.1), p_per_channel: 1.0, synchronize_channels: true },
    ));
    t.push(RandomApply::new(
        0.2,
        GaussianBlurTransform {
            blur_sigma: RandomScalar::Uniform(0.5, 1.0),
            synchronize_channels: false,
            synchronize_axes: false,
            p_per_channel: 0.5,
            axes: spatial_axes.clone(),
            truncate: 6.0,
        },
    ));
    t.push(RandomApply::new(
        0.15,
        MultiplicativeBrightnessTransform {
            multiplier_range: RandomScalar::BgContrast(0.75, 1.25),
            synchronize_channels: false,
            p_per_channel: 1.0,
        },
    ));
    t.push(RandomApply::new(
        0.15,
        ContrastTransform {
            contrast_range: RandomScalar::BgContrast(0.75, 1.25),
            preserve_range: true,
            synchronize_channels: false,
            p_per_channel: 1.0,
        },
    ));
    let lowres_axes = if cfg.do_dummy_2d { vec![1, 2] } else { spatial_axes.clone() };
    t.push(RandomApply::new(
        0.25,
        SimulateLowResolutionTransform {
            scale: RandomScalar::Uniform(0.5, 1.0),
            synchronize_channels: false,
            synchronize_axes: true,
            axes: lowres_axes,
            p_per_channel: 0.5,
        },
    ));
    for (p, inv) in [(0.1, 1.0), (0.3, 0.0)] {
        t.push(RandomApply::new(
            p,
            GammaTransform {
                gamma: RandomScalar::BgContrast(0.7, 1.5),
                p_invert_image: inv,
                synchronize_channels: false,
                p_per_channel: 1.0,
                p_retain_stats: 1.0,
            },
        ));
    }
    if let Some(m) = &cfg.mirror_axes
        && !m.is_empty()
    {
        t.push(MirrorTransform { axes: m.iter().map(|&a| cfg.axis(a)).collect() });
    }
    if cfg.use_mask_for_norm.iter().any(|&b| b) {
        t.push(MaskImageTransform {
            apply_to_channels: cfg.use_mask_for_norm.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i).collect(),
            channel_idx_in_seg: 0,
            set_outside_to: 0.0,
        });
    }
    t.push(RemoveLabelTransform { label_value: -1, set_to: 0 });
    if let Some(labels) = &cfg.cascade_foreground_labels {
        crate::cascade::push_training_transforms(&mut t, labels, cfg.is_2d());
    }
    cfg.tail(&mut t);
    t
}

/// `nnUNetTrainer.get_validation_transforms` (also nnUNetTrainerNoDA's training transforms).
pub fn validation_pipeline(cfg: &PipelineConfig) -> Pipeline {
    let mut t = Pipeline::default();
    t.push(RemoveLabelTransform { label_value: -1, set_to: 0 });
    if let Some(labels) = &cfg.cascade_foreground_labels {
        crate::cascade::push_validation_transforms(&mut t, labels);
    }
    cfg.tail(&mut t);
    t
}
