//! nnU-Net's `NaturalImage2DIO` (`.png`, `.bmp`, `.tif`) via the pure-Rust `image` crate.
//! Grey → `(1, 1, h, w)`, RGB(A) → `(3|4, 1, h, w)`; spacing `(999, 1, 1)`.
//! Grey+alpha images are rejected (nnU-Net asserts 3 or 4 colour channels). 32-bit float grey TIFFs
//! are not supported by the `image` crate.

use crate::error::{DataError, Result};
use crate::io::{ImageData, ImageProperties, ImageReaderWriter};
use image::DynamicImage;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Default)]
pub struct NaturalImage2DIo;

fn read_one(path: &Path) -> Result<(Vec<f32>, usize, usize, usize)> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let img = reader
        .decode()
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (c, interleaved): (usize, Vec<f32>) = match &img {
        DynamicImage::ImageLuma8(b) => (1, b.as_raw().iter().map(|&v| v as f32).collect()),
        DynamicImage::ImageLuma16(b) => (1, b.as_raw().iter().map(|&v| v as f32).collect()),
        DynamicImage::ImageRgb8(b) => (3, b.as_raw().iter().map(|&v| v as f32).collect()),
        DynamicImage::ImageRgba8(b) => (4, b.as_raw().iter().map(|&v| v as f32).collect()),
        DynamicImage::ImageRgb16(b) => (3, b.as_raw().iter().map(|&v| v as f32).collect()),
        DynamicImage::ImageRgba16(b) => (4, b.as_raw().iter().map(|&v| v as f32).collect()),
        DynamicImage::ImageRgb32F(b) => (3, b.as_raw().clone()),
        DynamicImage::ImageRgba32F(b) => (4, b.as_raw().clone()),
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLumaA16(_) => {
            return Err(DataError::unsupported(
                path,
                "grey+alpha images (2 colour channels) are not supported",
            ));
        }
        other => {
            return Err(DataError::unsupported(
                path,
                format!("pixel layout {:?}", other.color()),
            ));
        }
    };
    // (h, w, c) → (c, h, w)
    let mut planar = vec![0f32; c * h * w];
    for p in 0..h * w {
        for ch in 0..c {
            planar[ch * h * w + p] = interleaved[p * c + ch];
        }
    }
    Ok((planar, c, h, w))
}

impl ImageReaderWriter for NaturalImage2DIo {
    fn name(&self) -> &'static str {
        "NaturalImage2DIO"
    }
    fn file_endings(&self) -> &'static [&'static str] {
        &[".png", ".bmp", ".tif"]
    }
    fn read_images(&self, files: &[PathBuf]) -> Result<ImageData> {
        let mut data = Vec::new();
        let mut channels = 0;
        let mut shape0: Option<[usize; 3]> = None;
        for f in files {
            let (d, c, h, w) = read_one(f)?;
            let shape = [1, h, w];
            if let Some(s0) = shape0
                && s0 != shape
            {
                return Err(DataError::format(f, format!("shape {shape:?} differs from {s0:?} of the first channel")));
            }
            shape0 = Some(shape);
            channels += c;
            data.extend_from_slice(&d);
        }
        let shape =
            shape0.ok_or_else(|| DataError::format(PathBuf::new(), "no image files given"))?;
        Ok(ImageData {
            data,
            channels,
            shape,
            properties: ImageProperties {
                sitk_stuff: None,
                nibabel_stuff: None,
                spacing: [999.0, 1.0, 1.0],
            },
        })
    }
    fn write_seg(
        &self,
        seg: &[f32],
        shape: [usize; 3],
        path: &Path,
        _properties: &ImageProperties,
    ) -> Result<()> {
        if shape[0] != 1 {
            return Err(DataError::format(
                path,
                format!("2-D segmentation must have shape (1, h, w), got {shape:?}"),
            ));
        }
        let (h, w) = (shape[1] as u32, shape[2] as u32);
        let max = seg.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let img = if max < 255.0 {
            DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(w, h, seg.iter().map(|&v| v as u8).collect())
                    .ok_or_else(|| DataError::format(path, "segmentation size mismatch"))?,
            )
        } else {
            DynamicImage::ImageLuma16(
                image::ImageBuffer::from_raw(w, h, seg.iter().map(|&v| v as u16).collect())
                    .ok_or_else(|| DataError::format(path, "segmentation size mismatch"))?,
            )
        };
        img.save(path)
            .map_err(|e| DataError::format(path, format!("cannot write image: {e}")))
    }
}
