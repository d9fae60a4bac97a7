//! Patch sampling (`nnUNetDataLoader.get_bbox`) and the case storage abstraction.

use std::sync::Arc;

use crate::AugmentError;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A key of `properties['class_locations']`: a label, or a region / the ignore-label "annotated" tuple
/// `(-1, *all_labels)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClassKey {
    Label(i32),
    Region(Vec<i32>),
}

/// Foreground locations of one case, in the order of the properties dict, as spatial voxel coordinates `[z, y, x]`.
/// nnU-Net stores `[c, z, y, x]` as int64 (`np.argwhere` on the one-channel segmentation, so `c` is always 0); the
/// sampler only reads the spatial part, and 12 bytes instead of 32 per location matter when a training run holds
/// every case's locations (up to 10,000 per class, more for classes above a million voxels).
pub type ClassLocations = Vec<(ClassKey, Vec<[u32; 3]>)>;

/// What the sampler needs to know about a case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseMeta {
    /// preprocessed spatial shape `(z, y, x)` (2D configurations also use the 3D volume)
    pub shape: [usize; 3],
    pub num_channels: usize,
    pub class_locations: ClassLocations,
}

/// A storage of preprocessed cases. `read_patch` returns the region `[start, start + size)` of the image
/// `(c, z, y, x)` and segmentation `(1, z, y, x)`; parts outside the case are padded with image 0 and seg −1
/// (use [`crop_and_pad`] when the whole case is in memory).
pub trait CaseSource: Send + Sync {
    fn num_cases(&self) -> usize;
    fn case_meta(&self, case: usize) -> Result<Arc<CaseMeta>, AugmentError>;
    fn read_patch(&self, case: usize, start: [i64; 3], size: [usize; 3]) -> Result<(Tensor<f32>, Tensor<i16>), AugmentError>;
}

/// Crops `[start, start + size)` out of a full tensor, padding with `pad` outside (acvl_utils `crop_and_pad_nd`).
pub fn crop_and_pad<T: Copy>(src: &Tensor<T>, start: [i64; 3], size: [usize; 3], pad: T) -> Tensor<T> {
    let mut out = Tensor::filled(pad, src.channels, size);
    // overlap per axis, in output coordinates
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    for d in 0..3 {
        let a = (-start[d]).max(0);
        let b = (src.shape[d] as i64 - start[d]).min(size[d] as i64);
        if b <= a {
            return out;
        }
        lo[d] = a as usize;
        hi[d] = b as usize;
    }
    let [_, sy, sx] = src.shape;
    let [oz, oy, ox] = size;
    let n = hi[2] - lo[2];
    for c in 0..src.channels {
        for z in lo[0]..hi[0] {
            let iz = (z as i64 + start[0]) as usize;
            for y in lo[1]..hi[1] {
                let iy = (y as i64 + start[1]) as usize;
                let ix = (lo[2] as i64 + start[2]) as usize;
                let si = ((c * src.shape[0] + iz) * sy + iy) * sx + ix;
                let oi = ((c * oz + z) * oy + y) * ox + lo[2];
                out.data[oi..oi + n].copy_from_slice(&src.data[si..si + n]);
            }
        }
    }
    out
}

/// One case held in memory.
#[derive(Clone, Debug)]
pub struct InMemoryCase {
    pub image: Tensor<f32>,
    pub seg: Tensor<i16>,
    pub meta: Arc<CaseMeta>,
}

/// A [`CaseSource`] over cases held in memory (tests, small datasets).
#[derive(Clone, Debug, Default)]
pub struct InMemorySource {
    pub cases: Vec<InMemoryCase>,
}

impl InMemorySource {
    pub fn push(&mut self, image: Tensor<f32>, seg: Tensor<i16>, class_locations: ClassLocations) {
        let meta = Arc::new(CaseMeta { shape: image.shape, num_channels: image.channels, class_locations });
        self.cases.push(InMemoryCase { image, seg, meta });
    }
}

impl CaseSource for InMemorySource {
    fn num_cases(&self) -> usize {
        self.cases.len()
    }
    fn case_meta(&self, case: usize) -> Result<Arc<CaseMeta>, AugmentError> {
        self.cases.get(case).map(|c| c.meta.clone()).ok_or(AugmentError::NoSuchCase(case))
    }
    fn read_patch(&self, case: usize, start: [i64; 3], size: [usize; 3]) -> Result<(Tensor<f32>, Tensor<i16>), AugmentError> {
        let c = self.cases.get(case).ok_or(AugmentError::NoSuchCase(case))?;
        Ok((crop_and_pad(&c.image, start, size, 0.0), crop_and_pad(&c.seg, start, size, -1)))
    }
}

/// Patch sampling geometry of one loader.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchSampler {
    /// the (enlarged) patch that is cropped, `P` (3 entries; 2D configurations use `(1, py, px)`)
    pub patch_size: [usize; 3],
    /// the final patch `p` (3 entries)
    pub final_patch_size: [usize; 3],
    /// `(-1, *all_labels)` when the dataset has an ignore label
    pub annotated_key: Option<ClassKey>,
}

/// Inclusive bounds of the crop start per axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBounds {
    pub lb: [i64; 3],
    pub ub: [i64; 3],
}

impl PatchSampler {
    /// `lbs`/`ubs` of `get_bbox` for a case of shape `shape`.
    pub fn bounds(&self, shape: [usize; 3]) -> CropBounds {
        let mut lb = [0i64; 3];
        let mut ub = [0i64; 3];
        for d in 0..3 {
            let p = self.patch_size[d] as i64;
            let s = shape[d] as i64;
            let mut need = p - self.final_patch_size[d] as i64;
            if need + s < p {
                need = p - s;
            }
            lb[d] = (-need).div_euclid(2);
            ub[d] = s + need.div_euclid(2) + need.rem_euclid(2) - p;
        }
        CropBounds { lb, ub }
    }

    /// `get_bbox`: the crop start (the end is `start + patch_size`).
    pub fn crop_start(&self, meta: &CaseMeta, force_fg: bool, rng: &mut Rng) -> [i64; 3] {
        let b = self.bounds(meta.shape);
        let random = |rng: &mut Rng| -> [i64; 3] { std::array::from_fn(|d| rng.randint(b.lb[d], b.ub[d] + 1)) };
        if !force_fg && self.annotated_key.is_none() {
            return random(rng);
        }
        let locs = &meta.class_locations;
        let selected: Option<&Vec<[u32; 3]>> = if !force_fg {
            let key = self.annotated_key.as_ref().unwrap();
            locs.iter().find(|(k, _)| k == key).map(|(_, v)| v).filter(|v| !v.is_empty())
        } else {
            let mut eligible: Vec<&(ClassKey, Vec<[u32; 3]>)> = locs.iter().filter(|(_, v)| !v.is_empty()).collect();
            if let Some(key) = &self.annotated_key
                && eligible.len() > 1
                && let Some(pos) = eligible.iter().position(|(k, _)| k == key)
            {
                eligible.remove(pos);
            }
            if eligible.is_empty() { None } else { Some(&eligible[rng.choice(eligible.len())].1) }
        };
        match selected {
            Some(voxels) => {
                let v = voxels[rng.choice(voxels.len())];
                std::array::from_fn(|d| b.lb[d].max(v[d] as i64 - (self.patch_size[d] / 2) as i64))
            }
            None => random(rng),
        }
    }
}
