//! Intensity normalization schemes (planning spec §7.1 step 5), looked up by nnU-Net's class name
//! through a [`NormalizationRegistry`] so that custom schemes can be added without touching the
//! preprocessor.
//!
//! Arithmetic follows numpy's float32 semantics: statistics with numpy's pairwise summation
//! ([`crate::stats`]), Python-float constants (plans values, `eps`) rounded to float32 before use.

use crate::stats;
use nnunet_schema::IntensityProperties;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

/// eps of nnU-Net's schemes for float32 targets.
pub const EPS: f32 = 1e-8;

/// What a scheme gets for one channel.
#[derive(Debug, Clone, Copy)]
pub struct NormalizationContext<'a> {
    /// The configuration's `use_mask_for_norm[c]`.
    pub use_mask_for_norm: bool,
    /// The plans' `foreground_intensity_properties_per_channel[str(c)]`, if present.
    pub intensity_properties: Option<&'a IntensityProperties>,
    /// The cropped segmentation (same shape as the channel): labels, `-1` outside the nonzero mask.
    pub seg: &'a [f32],
}

/// One normalization scheme (nnU-Net's `ImageNormalization` subclass).
pub trait Normalization: Send + Sync + Debug {
    /// nnU-Net's class name (`normalization_schemes` entry in the plans).
    fn name(&self) -> &str;
    /// Normalize one channel in place. Errors are messages (the caller adds the case).
    fn run(&self, image: &mut [f32], ctx: &NormalizationContext<'_>) -> Result<(), String>;
}

/// `ZScoreNormalization`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZScoreNormalization;

impl Normalization for ZScoreNormalization {
    fn name(&self) -> &str {
        "ZScoreNormalization"
    }
    fn run(&self, image: &mut [f32], ctx: &NormalizationContext<'_>) -> Result<(), String> {
        if ctx.use_mask_for_norm {
            if ctx.seg.len() != image.len() {
                return Err("use_mask_for_norm needs a mask of the image's shape".into());
            }
            let masked: Vec<f32> = image.iter().zip(ctx.seg).filter(|(_, s)| **s >= 0.0).map(|(v, _)| *v).collect();
            if masked.is_empty() {
                return Ok(()); // numpy would produce NaN statistics on an empty selection; nothing to normalize
            }
            let mean = stats::mean(&masked);
            let std = stats::std(&masked);
            let div = std.max(EPS);
            for (v, s) in image.iter_mut().zip(ctx.seg) {
                if *s >= 0.0 {
                    *v = (*v - mean) / div;
                }
            }
        } else {
            if image.is_empty() {
                return Ok(());
            }
            let mean = stats::mean(image);
            let std = stats::std(image);
            let div = std.max(EPS);
            for v in image.iter_mut() {
                *v -= mean;
                *v /= div;
            }
        }
        Ok(())
    }
}

/// `CTNormalization`: clip to the foreground 0.5/99.5 percentiles, subtract the foreground mean, divide by
/// the foreground std (all from the plans). Never uses the mask.
#[derive(Debug, Clone, Copy, Default)]
pub struct CtNormalization;

impl Normalization for CtNormalization {
    fn name(&self) -> &str {
        "CTNormalization"
    }
    fn run(&self, image: &mut [f32], ctx: &NormalizationContext<'_>) -> Result<(), String> {
        let p = ctx
            .intensity_properties
            .ok_or("CTNormalization requires intensity properties (foreground_intensity_properties_per_channel)")?;
        let lo = p.percentile_00_5 as f32;
        let hi = p.percentile_99_5 as f32;
        let mean = p.mean as f32;
        let div = p.std.max(1e-8) as f32;
        for v in image.iter_mut() {
            // np.clip: max(min(x, hi), lo) semantics for lo <= hi
            let mut x = *v;
            if x < lo {
                x = lo;
            }
            if x > hi {
                x = hi;
            }
            x -= mean;
            x /= div;
            *v = x;
        }
        Ok(())
    }
}

/// `NoNormalization`: float32 cast only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNormalization;

impl Normalization for NoNormalization {
    fn name(&self) -> &str {
        "NoNormalization"
    }
    fn run(&self, _image: &mut [f32], _ctx: &NormalizationContext<'_>) -> Result<(), String> {
        Ok(())
    }
}

/// `RescaleTo01Normalization`: `(x - min) / max(max - min, eps)` (min/max of the cropped channel).
#[derive(Debug, Clone, Copy, Default)]
pub struct RescaleTo01Normalization;

impl Normalization for RescaleTo01Normalization {
    fn name(&self) -> &str {
        "RescaleTo01Normalization"
    }
    fn run(&self, image: &mut [f32], _ctx: &NormalizationContext<'_>) -> Result<(), String> {
        if image.is_empty() {
            return Ok(());
        }
        let (mn, _) = stats::min_max(image);
        for v in image.iter_mut() {
            *v -= mn;
        }
        let (_, mx) = stats::min_max(image);
        let div = mx.max(EPS);
        for v in image.iter_mut() {
            *v /= div;
        }
        Ok(())
    }
}

/// `RGBTo01Normalization`: asserts `0 <= x <= 255`, then `x / 255`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RgbTo01Normalization;

impl Normalization for RgbTo01Normalization {
    fn name(&self) -> &str {
        "RGBTo01Normalization"
    }
    fn run(&self, image: &mut [f32], _ctx: &NormalizationContext<'_>) -> Result<(), String> {
        if image.is_empty() {
            return Ok(());
        }
        let (mn, mx) = stats::min_max(image);
        if mn < 0.0 {
            return Err(format!("RGBTo01Normalization: found value {mn} < 0; the images do not seem to be RGB (uint8) images"));
        }
        if mx > 255.0 {
            return Err(format!("RGBTo01Normalization: found value {mx} > 255; the images do not seem to be RGB (uint8) images"));
        }
        for v in image.iter_mut() {
            *v /= 255.0;
        }
        Ok(())
    }
}

/// Name → scheme. [`NormalizationRegistry::default`] holds nnU-Net's five built-in schemes; add your own
/// with [`NormalizationRegistry::register`].
#[derive(Debug, Clone)]
pub struct NormalizationRegistry {
    schemes: BTreeMap<String, Arc<dyn Normalization>>,
}

impl Default for NormalizationRegistry {
    fn default() -> Self {
        let mut r = Self { schemes: BTreeMap::new() };
        r.register(Arc::new(ZScoreNormalization));
        r.register(Arc::new(CtNormalization));
        r.register(Arc::new(NoNormalization));
        r.register(Arc::new(RescaleTo01Normalization));
        r.register(Arc::new(RgbTo01Normalization));
        r
    }
}

impl NormalizationRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self { schemes: BTreeMap::new() }
    }
    /// Add (or replace) a scheme under its [`Normalization::name`].
    pub fn register(&mut self, scheme: Arc<dyn Normalization>) {
        self.schemes.insert(scheme.name().to_string(), scheme);
    }
    /// The scheme named `name`, or an error message listing the known names.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Normalization>, String> {
        self.schemes.get(name).cloned().ok_or_else(|| {
            format!("unknown normalization scheme '{name}' (known: {})", self.schemes.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }
    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.schemes.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(seg: &'a [f32], mask: bool, p: Option<&'a IntensityProperties>) -> NormalizationContext<'a> {
        NormalizationContext { use_mask_for_norm: mask, intensity_properties: p, seg }
    }

    // Expected values: nnunetv2.preprocessing.normalization.default_normalization_schemes (numpy 2.4.6)
    #[test]
    fn zscore_whole_image() {
        let mut x = vec![1.0f32, 2.0, 4.0, 8.0, 16.0];
        ZScoreNormalization.run(&mut x, &ctx(&[], false, None)).unwrap();
        let want = [-0.95320624f32, -0.76989734, -0.40327954, 0.32995605, 1.7964272];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{x:?}");
        }
    }

    #[test]
    #[allow(clippy::excessive_precision)] // reference values as numpy printed them, kept digit for digit
    fn zscore_masked_leaves_outside() {
        let mut x = vec![0.0f32, 3.0, 5.0, 0.0, 10.0];
        let seg = [-1.0f32, 0.0, 1.0, -1.0, 0.0];
        ZScoreNormalization.run(&mut x, &ctx(&seg, true, None)).unwrap();
        let want = [0.0f32, -1.0190493, -0.33968309, 0.0, 1.3587323];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{x:?}");
        }
    }

    #[test]
    fn ct_clips_and_scales() {
        let p =
            IntensityProperties { max: 0.0, mean: 100.0, median: 0.0, min: 0.0, percentile_00_5: -50.0, percentile_99_5: 300.0, std: 50.0 };
        let mut x = vec![-1000.0f32, 0.0, 100.0, 250.0, 3000.0];
        CtNormalization.run(&mut x, &ctx(&[], true, Some(&p))).unwrap();
        assert_eq!(x, vec![-3.0, -2.0, 0.0, 3.0, 4.0]);
        assert!(CtNormalization.run(&mut x, &ctx(&[], false, None)).is_err());
    }

    #[test]
    fn rescale_rgb_none() {
        let mut x = vec![2.0f32, 4.0, 6.0];
        RescaleTo01Normalization.run(&mut x, &ctx(&[], false, None)).unwrap();
        assert_eq!(x, vec![0.0, 0.5, 1.0]);
        let mut x = vec![0.0f32, 51.0, 255.0];
        RgbTo01Normalization.run(&mut x, &ctx(&[], false, None)).unwrap();
        assert_eq!(x, vec![0.0, 0.2, 1.0]);
        assert!(RgbTo01Normalization.run(&mut [256.0], &ctx(&[], false, None)).is_err());
        let mut x = vec![7.5f32];
        NoNormalization.run(&mut x, &ctx(&[], false, None)).unwrap();
        assert_eq!(x, vec![7.5]);
    }

    #[test]
    fn registry_lookup() {
        let r = NormalizationRegistry::default();
        assert_eq!(r.names().len(), 5);
        assert_eq!(r.get("CTNormalization").unwrap().name(), "CTNormalization");
        let e = r.get("FancyNorm").unwrap_err();
        assert!(e.contains("FancyNorm") && e.contains("ZScoreNormalization"), "{e}");
    }
}
