//! Image readers/writers, selected like nnU-Net's `determine_reader_writer_from_dataset_json`
//! (planning spec §1.4).
//!
//! Every reader returns [`ImageData`]: float32 voxels `(c, z, y, x)` C-contiguous (nnU-Net's
//! array order, i.e. SimpleITK's numpy order), spacing in the same order, and the reader's
//! properties needed to write predictions back with the original geometry.

use crate::error::{DataError, Result};
use crate::nifti::{self, NiftiDatatype, NiftiImage, SitkGeometry};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

/// Images (all channels of one case) or a segmentation as read by a reader.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageData {
    /// `(channels, z, y, x)` C-contiguous. 2-D images are `(channels, 1, h, w)`.
    pub data: Vec<f32>,
    pub channels: usize,
    /// Spatial shape in array order.
    pub shape: [usize; 3],
    pub properties: ImageProperties,
}

impl ImageData {
    /// Spacing in array order (same as `properties.spacing`).
    pub fn spacing(&self) -> [f64; 3] {
        self.properties.spacing
    }
    /// Number of voxels of one channel.
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }
    /// One channel's voxels.
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.voxels();
        &self.data[c * n..(c + 1) * n]
    }
}

/// nnU-Net's per-image properties dict (`{"sitk_stuff": …, "spacing": […]}` for SimpleITKIO,
/// `{"nibabel_stuff": {"original_affine": …}, "spacing": […]}` for NibabelIO, `{"spacing": …}` for
/// the 2-D natural-image reader). Serialises to the same JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sitk_stuff: Option<SitkGeometry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nibabel_stuff: Option<NibabelStuff>,
    /// Spacing in array order (z, y, x); `999` (or 999·max) on the fake axis of 2-D images.
    pub spacing: [f64; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NibabelStuff {
    /// nibabel's `img.affine` (RAS, voxel index (i, j, k) in NIfTI order → mm).
    pub original_affine: [[f64; 4]; 4],
}

/// A reader/writer class of nnU-Net.
pub trait ImageReaderWriter: Send + Sync + Debug {
    /// nnU-Net's class name (written to the plans as `image_reader_writer`).
    fn name(&self) -> &'static str;
    /// Lower-case file endings the class claims (nnU-Net's `supported_file_endings`).
    fn file_endings(&self) -> &'static [&'static str];
    /// Read the channel files of one case (channel order) and stack them.
    fn read_images(&self, files: &[PathBuf]) -> Result<ImageData>;
    /// Read a segmentation (one channel).
    fn read_seg(&self, file: &Path) -> Result<ImageData> {
        self.read_images(&[file.to_path_buf()])
    }
    /// Write a segmentation `(z, y, x)` (array order, `shape`) with the geometry of `properties`.
    /// Stored as uint8 if max < 255, else uint16 (like nnU-Net).
    fn write_seg(
        &self,
        seg: &[f32],
        shape: [usize; 3],
        path: &Path,
        properties: &ImageProperties,
    ) -> Result<()>;
}

/// Names of the reader/writer classes in nnU-Net's automatic selection order.
pub const READER_ORDER: [&str; 5] = [
    "NaturalImage2DIO",
    "SimpleITKIO",
    "Tiff3DIO",
    "NibabelIO",
    "NibabelIOWithReorient",
];

/// Construct a reader/writer by nnU-Net class name; `None` if unknown or not implemented here
/// (`Tiff3DIO`, `NibabelIOWithReorient`, `SimpleITKIOWithReorient` are not implemented).
pub fn reader_writer_by_name(name: &str) -> Option<Box<dyn ImageReaderWriter>> {
    match name {
        "SimpleITKIO" => Some(Box::new(SimpleItkIo)),
        "NibabelIO" => Some(Box::new(NibabelIo)),
        "NaturalImage2DIO" => Some(Box::new(crate::natural::NaturalImage2DIo)),
        _ => None,
    }
}

fn endings_of(name: &str) -> &'static [&'static str] {
    match name {
        "NaturalImage2DIO" => &[".png", ".bmp", ".tif"],
        "SimpleITKIO" => &[".nii.gz", ".nrrd", ".mha", ".gipl"],
        "Tiff3DIO" => &[".tif", ".tiff"],
        "NibabelIO" | "NibabelIOWithReorient" => &[".nii", ".nii.gz"],
        _ => &[],
    }
}

/// nnU-Net's `determine_reader_writer_from_dataset_json`: the override if given and known, else the
/// first class (in [`READER_ORDER`]) whose endings contain `file_ending.lower()` and that can read
/// `example_file`. The error lists what each candidate said.
pub fn determine_reader_writer(
    override_name: Option<&str>,
    file_ending: &str,
    example_file: &Path,
) -> Result<Box<dyn ImageReaderWriter>> {
    // a known override wins; for an unknown one nnU-Net warns and falls back to automatic selection
    if let Some(name) = override_name.filter(|n| *n != "None")
        && let Some(rw) = reader_writer_by_name(name)
    {
        return Ok(rw);
    }
    let ending = file_ending.to_lowercase();
    let mut tried = Vec::new();
    for name in READER_ORDER {
        if !endings_of(name).contains(&ending.as_str()) {
            continue;
        }
        let Some(rw) = reader_writer_by_name(name) else {
            tried.push(format!("{name}: not implemented"));
            continue;
        };
        match rw.read_images(&[example_file.to_path_buf()]) {
            Ok(_) => return Ok(rw),
            Err(e) => tried.push(format!("{name}: {e}")),
        }
    }
    Err(DataError::Dataset {
        path: example_file.to_path_buf(),
        message: format!(
            "no image reader/writer can read files ending in '{file_ending}'{}",
            if tried.is_empty() {
                String::new()
            } else {
                format!(" ({})", tried.join("; "))
            }
        ),
    })
}

/// Image data as read from one file, or stacked over a case's files: voxel values (channel-major), number of
/// channels, spatial shape and spacing.
type ChannelData = (Vec<f32>, usize, [usize; 3], [f64; 3]);

fn stack_channels(files: &[PathBuf], per_file: Vec<ChannelData>) -> Result<ChannelData> {
    let first = files.first().cloned().unwrap_or_default();
    let Some((_, _, shape0, sp0)) = per_file.first().cloned() else {
        return Err(DataError::format(first, "no image files given"));
    };
    for (f, (_, _, s, sp)) in files.iter().zip(&per_file) {
        if *s != shape0 {
            return Err(DataError::format(
                f,
                format!(
                    "shape {s:?} differs from {shape0:?} of {} (all channels of a case must match)",
                    first.display()
                ),
            ));
        }
        if *sp != sp0 {
            return Err(DataError::format(
                f,
                format!(
                    "spacing {sp:?} differs from {sp0:?} of {} (all channels of a case must match)",
                    first.display()
                ),
            ));
        }
    }
    let channels = per_file.iter().map(|p| p.1).sum();
    let mut data = Vec::with_capacity(per_file.iter().map(|p| p.0.len()).sum());
    for (d, ..) in per_file {
        data.extend_from_slice(&d);
    }
    Ok((data, channels, shape0, sp0))
}

fn seg_dtype(seg: &[f32]) -> NiftiDatatype {
    let max = seg.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max < 255.0 {
        NiftiDatatype::U8
    } else {
        NiftiDatatype::U16
    }
}

/// nnU-Net's `SimpleITKIO` for NIfTI (`.nii.gz`; `.nrrd`, `.mha`, `.gipl` are not implemented).
#[derive(Debug, Clone, Copy, Default)]
pub struct SimpleItkIo;

impl SimpleItkIo {
    fn read_one(path: &Path) -> Result<(NiftiImage, SitkGeometry)> {
        let lower = path.to_string_lossy().to_lowercase();
        if !(lower.ends_with(".nii.gz") || lower.ends_with(".nii")) {
            return Err(DataError::unsupported(
                path,
                "only NIfTI (.nii.gz) is implemented for SimpleITKIO",
            ));
        }
        let img = nifti::read_nifti(path)?;
        let geo = img.itk_geometry(path)?;
        Ok((img, geo))
    }
}

impl ImageReaderWriter for SimpleItkIo {
    fn name(&self) -> &'static str {
        "SimpleITKIO"
    }
    fn file_endings(&self) -> &'static [&'static str] {
        endings_of("SimpleITKIO")
    }
    fn read_images(&self, files: &[PathBuf]) -> Result<ImageData> {
        let mut per_file = Vec::new();
        let mut geos: Vec<SitkGeometry> = Vec::new();
        for f in files {
            let (img, geo) = Self::read_one(f)?;
            let d = &img.dims;
            let (channels, shape, spacing) = match d.len() {
                2 => {
                    let max = geo
                        .spacing
                        .iter()
                        .copied()
                        .fold(f64::NEG_INFINITY, f64::max);
                    (
                        1,
                        [1, d[1], d[0]],
                        [max * 999.0, geo.spacing[1], geo.spacing[0]],
                    )
                }
                3 => (
                    1,
                    [d[2], d[1], d[0]],
                    [geo.spacing[2], geo.spacing[1], geo.spacing[0]],
                ),
                4 => (
                    d[3],
                    [d[2], d[1], d[0]],
                    [geo.spacing[2], geo.spacing[1], geo.spacing[0]],
                ),
                n => {
                    return Err(DataError::unsupported(
                        f,
                        format!("unexpected number of dimensions: {n}"),
                    ));
                }
            };
            if let Some(g0) = geos.first()
                && g0.spacing != geo.spacing
            {
                return Err(DataError::format(
                    f,
                    format!("spacing {:?} differs from {:?} of {}", geo.spacing, g0.spacing, files[0].display()),
                ));
            }
            geos.push(geo);
            per_file.push((img.data, channels, shape, spacing.map(f64::abs)));
        }
        let (data, channels, shape, spacing) = stack_channels(files, per_file)?;
        Ok(ImageData {
            data,
            channels,
            shape,
            properties: ImageProperties {
                sitk_stuff: geos.into_iter().next(),
                nibabel_stuff: None,
                spacing,
            },
        })
    }
    fn write_seg(
        &self,
        seg: &[f32],
        shape: [usize; 3],
        path: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        let geo = properties.sitk_stuff.as_ref().ok_or_else(|| {
            DataError::format(
                path,
                "properties lack sitk_stuff (not read with SimpleITKIO)",
            )
        })?;
        let size: Vec<usize> = match geo.dims() {
            2 => vec![shape[2], shape[1]],
            3 => vec![shape[2], shape[1], shape[0]],
            n => {
                return Err(DataError::format(
                    path,
                    format!("cannot write a {n}-D segmentation"),
                ));
            }
        };
        if geo.dims() == 2 && shape[0] != 1 {
            return Err(DataError::format(
                path,
                format!("2-D geometry but segmentation shape {shape:?}"),
            ));
        }
        nifti::write_nifti(path, seg, &size, geo, seg_dtype(seg))
    }
}

/// nnU-Net's `NibabelIO` (`.nii`, `.nii.gz`): no reorientation, axes transposed to (z, y, x).
/// Spacing = pixdim as stored (nibabel's zooms). Scaling follows ITK's rule (see [`nifti`]), which
/// equals nibabel's for the usual slope 1 / intercept 0 and integer data.
#[derive(Debug, Clone, Copy, Default)]
pub struct NibabelIo;

/// nibabel's `get_best_affine`: sform if `sform_code != 0`, else qform if `qform_code != 0`, else the
/// Analyze-style base affine.
pub fn nibabel_affine(img: &NiftiImage) -> [[f64; 4]; 4] {
    let h = &img.header;
    let mut a = [[0.0; 4]; 4];
    a[3][3] = 1.0;
    if h.sform_code != 0 {
        for (row, srow) in a.iter_mut().zip(&h.srow) {
            for (x, &v) in row.iter_mut().zip(srow) {
                *x = v as f64;
            }
        }
    } else if h.qform_code != 0 {
        let (m, off) = nifti::qform_matrix(h);
        for r in 0..3 {
            a[r][..3].copy_from_slice(&m[r]);
            a[r][3] = off[r];
        }
    } else {
        let zooms: Vec<f64> = (1..=3).map(|i| h.pixdim[i] as f64).collect();
        let shape: Vec<f64> = (0..3)
            .map(|i| img.dims.get(i).copied().unwrap_or(1) as f64)
            .collect();
        let flip = [-1.0, 1.0, 1.0];
        for i in 0..3 {
            a[i][i] = zooms[i] * flip[i];
            a[i][3] = -((shape[i] - 1.0) / 2.0) * zooms[i] * flip[i];
        }
    }
    a
}

impl ImageReaderWriter for NibabelIo {
    fn name(&self) -> &'static str {
        "NibabelIO"
    }
    fn file_endings(&self) -> &'static [&'static str] {
        endings_of("NibabelIO")
    }
    fn read_images(&self, files: &[PathBuf]) -> Result<ImageData> {
        let mut per_file = Vec::new();
        let mut affine = None;
        for f in files {
            let img = nifti::read_nifti(f)?;
            if img.dims.len() != 3 {
                return Err(DataError::unsupported(
                    f,
                    "only 3d images are supported by NibabelIO",
                ));
            }
            let d = &img.dims;
            let p = &img.header.pixdim;
            let spacing = [p[3] as f64, p[2] as f64, p[1] as f64];
            if affine.is_none() {
                affine = Some(nibabel_affine(&img));
            }
            per_file.push((img.data, 1, [d[2], d[1], d[0]], spacing));
        }
        let (data, channels, shape, spacing) = stack_channels(files, per_file)?;
        Ok(ImageData {
            data,
            channels,
            shape,
            properties: ImageProperties {
                sitk_stuff: None,
                nibabel_stuff: affine.map(|original_affine| NibabelStuff { original_affine }),
                spacing,
            },
        })
    }
    fn write_seg(
        &self,
        seg: &[f32],
        shape: [usize; 3],
        path: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        let aff = properties
            .nibabel_stuff
            .as_ref()
            .ok_or_else(|| {
                DataError::format(
                    path,
                    "properties lack nibabel_stuff (not read with NibabelIO)",
                )
            })?
            .original_affine;
        // affine (RAS) → ITK-style geometry (LPS), which encode_nifti turns back into sform/qform
        let mut spacing = vec![0.0; 3];
        let mut direction = vec![0.0; 9];
        for c in 0..3 {
            let norm = (0..3).map(|r| aff[r][c] * aff[r][c]).sum::<f64>().sqrt();
            let norm = if norm == 0.0 { 1.0 } else { norm };
            spacing[c] = norm;
            for r in 0..3 {
                let sign = if r < 2 { -1.0 } else { 1.0 };
                direction[r * 3 + c] = sign * aff[r][c] / norm;
            }
        }
        let origin = vec![-aff[0][3], -aff[1][3], aff[2][3]];
        let geo = SitkGeometry {
            spacing,
            origin,
            direction,
        };
        nifti::write_nifti(
            path,
            seg,
            &[shape[2], shape[1], shape[0]],
            &geo,
            seg_dtype(seg),
        )
    }
}
