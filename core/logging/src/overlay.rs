//! Overlay PNGs of images and their segmentations, as nnU-Net's `nnUNetv2_plot_overlay_pngs`
//! (`nnunetv2/utilities/overlay_plots.py`): one slice per case (chosen by `select_slice_to_plot2`), the image scaled to
//! 0…255 in three channels, each label's colour added with `overlay_intensity`, the result rescaled to 0…255 — in
//! nnU-Net's float32/float64 arithmetic, so the pixels equal nnU-Net's.

use std::path::Path;

/// nnU-Net's `color_cycle`: colour of the rank of a label among the labels present in the slice.
pub const COLOR_CYCLE: [&str; 15] = [
    "000000", "4363d8", "f58231", "3cb44b", "e6194B", "911eb4", "ffe119", "bfef45", "42d4f4", "f032e6", "000075", "9A6324",
    "808000", "800000", "469990",
];

/// Why an overlay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("the slice has {0} distinct segmentation values; nnU-Net's colour cycle has 15")]
    TooManyLabels(usize),
    #[error("image and segmentation sizes differ ({0} vs {1} voxels)")]
    Shape(usize, usize),
    #[error("{path}: {message}")]
    Write { path: String, message: String },
}

fn rgb(hex: &str) -> [f64; 3] {
    let c = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0) as f64;
    [c(0), c(2), c(4)]
}

/// nnU-Net's `select_slice_to_plot2` for a `(z, y, x)` volume: per slice and foreground class (> 0) the voxel count,
/// each class column divided by the sum of the whole matrix so far (nnU-Net's expression — not the column's own sum),
/// the slice with the largest mean over classes (the first on ties; slice 0 without foreground).
pub fn select_slice_to_plot2(seg: &[f32], shape: [usize; 3]) -> usize {
    let [nz, ny, nx] = shape;
    let per_slice = ny * nx;
    let mut classes: Vec<f32> = seg.iter().copied().filter(|&v| v > 0.0).collect();
    classes.sort_by(f32::total_cmp);
    classes.dedup();
    if classes.is_empty() || nz == 0 {
        return 0;
    }
    let mut f = vec![vec![0.0f64; classes.len()]; nz];
    for (i, &c) in classes.iter().enumerate() {
        for (z, row) in f.iter_mut().enumerate() {
            row[i] = seg[z * per_slice..(z + 1) * per_slice].iter().filter(|&&v| v == c).count() as f64;
        }
        // F[:, i] /= F.sum(): the whole matrix, whose columns before i sum to 1 each
        let s: f64 = f.iter().map(|r| r.iter().sum::<f64>()).sum();
        for row in f.iter_mut() {
            row[i] /= s;
        }
    }
    let n = classes.len() as f64;
    let mut best = (0, f64::NEG_INFINITY);
    for (z, row) in f.iter().enumerate() {
        let m = row.iter().sum::<f64>() / n;
        if m > best.1 {
            best = (z, m);
        }
    }
    best.0
}

/// nnU-Net's `generate_overlay` of one `(h, w)` slice: RGB bytes, row-major.
pub fn generate_overlay(image: &[f32], seg: &[f32], overlay_intensity: f64) -> Result<Vec<u8>, OverlayError> {
    if image.len() != seg.len() {
        return Err(OverlayError::Shape(image.len(), seg.len()));
    }
    // float32 throughout, as numpy on a float32 image
    let min = image.iter().copied().fold(f32::INFINITY, f32::min);
    let shifted: Vec<f32> = image.iter().map(|&v| v - min).collect();
    let max = shifted.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut img: Vec<[f32; 3]> = shifted.iter().map(|&v| [v / max * 255.0; 3]).collect();
    let mut uniques: Vec<f32> = seg.to_vec();
    uniques.sort_by(f32::total_cmp);
    uniques.dedup();
    if uniques.len() > COLOR_CYCLE.len() {
        return Err(OverlayError::TooManyLabels(uniques.len()));
    }
    for (rank, &label) in uniques.iter().enumerate() {
        let c = rgb(COLOR_CYCLE[rank]).map(|v| overlay_intensity * v);
        for (px, &s) in img.iter_mut().zip(seg) {
            if s == label {
                for k in 0..3 {
                    // float32 + float64 → float64, stored back as float32
                    px[k] = (px[k] as f64 + c[k]) as f32;
                }
            }
        }
    }
    let max = img.iter().flat_map(|p| p.iter().copied()).fold(f32::NEG_INFINITY, f32::max);
    // astype(uint8) truncates; NaN (a constant slice: 0/0) becomes 0
    Ok(img.iter().flat_map(|p| p.map(|v| { let x = v / max * 255.0; if x.is_nan() { 0 } else { x as u8 } })).collect())
}

/// The overlay of the chosen slice of a `(z, y, x)` image and segmentation (negative segmentation values — outside
/// the nonzero mask in preprocessed data — are shown as background, as nnU-Net does): `(width, height, rgb)`.
pub fn overlay_of_volume(image: &[f32], seg: &[f32], shape: [usize; 3], overlay_intensity: f64) -> Result<(u32, u32, Vec<u8>), OverlayError> {
    if image.len() != seg.len() {
        return Err(OverlayError::Shape(image.len(), seg.len()));
    }
    let s = select_slice_to_plot2(seg, shape);
    let n = shape[1] * shape[2];
    let seg_slice: Vec<f32> = seg[s * n..(s + 1) * n].iter().map(|&v| if v < 0.0 { 0.0 } else { v }).collect();
    let rgb = generate_overlay(&image[s * n..(s + 1) * n], &seg_slice, overlay_intensity)?;
    Ok((shape[2] as u32, shape[1] as u32, rgb))
}

/// Write RGB pixels as an 8-bit RGBA PNG (what matplotlib's `imsave` writes), atomically.
pub fn write_rgba_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), OverlayError> {
    let err = |m: String| OverlayError::Write { path: path.display().to_string(), message: m };
    let rgba: Vec<u8> = rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    let img = image::RgbaImage::from_raw(width, height, rgba).ok_or_else(|| err("pixel count does not match the size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| err(e.to_string()))?;
    nnunet_schema::json::write_atomic(path, &png).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_choice_reproduces_nnunets_normalisation() {
        // two slices; class 1 has (1, 4) voxels in them, class 2 (1, 0): nnU-Net picks slice 1 (per-class
        // normalisation would pick slice 0)
        let shape = [2, 1, 5];
        let seg = [1.0, 2.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        assert_eq!(select_slice_to_plot2(&seg, shape), 1);
        assert_eq!(select_slice_to_plot2(&[0.0; 10], shape), 0);
    }

    #[test]
    fn colours_go_by_rank_and_a_constant_slice_is_black() {
        // labels 0 and 2: label 2 gets the second colour (4363d8)
        let out = generate_overlay(&[0.0, 1.0], &[0.0, 2.0], 0.6).unwrap();
        let blue = rgb("4363d8");
        let px = [255.0 + 0.6 * blue[0], 255.0 + 0.6 * blue[1], 255.0 + 0.6 * blue[2]];
        let m = px.iter().copied().fold(0.0, f64::max);
        assert_eq!(&out[3..], &px.map(|v| (v / m * 255.0) as u8));
        assert_eq!(&out[..3], &[0, 0, 0]);
        assert_eq!(generate_overlay(&[3.0, 3.0], &[0.0, 0.0], 0.6).unwrap(), vec![0; 6]);
        assert!(matches!(generate_overlay(&[0.0; 16], &(0..16).map(|v| v as f32).collect::<Vec<_>>(), 0.6), Err(OverlayError::TooManyLabels(16))));
    }
}
