//! `crop_to_nonzero` (planning spec §3.1 step 2 and §7.2): nonzero mask over all channels, holes filled
//! like `scipy.ndimage.binary_fill_holes` (face connectivity, background connected to the border stays
//! background), bounding box, crop, and `-1` in the seg outside the filled mask where it was 0.

/// Axis-aligned box `[start, end)` per spatial axis, array order.
pub type BBox = [[usize; 2]; 3];

/// Result of [`crop_to_nonzero`].
#[derive(Debug, Clone, PartialEq)]
pub struct Cropped {
    /// Cropped data `(c, z, y, x)`, C-contiguous.
    pub data: Vec<f32>,
    /// Cropped segmentation `(z, y, x)`: the input seg with `-1` where it was 0 outside the filled
    /// nonzero mask; without an input seg: 0 inside the mask, -1 outside.
    pub seg: Vec<f32>,
    pub shape: [usize; 3],
    pub bbox: BBox,
}

/// Nonzero mask (`data[c] != 0` OR-ed over channels) with holes filled. `data` is `(c, z, y, x)`.
pub fn nonzero_mask(data: &[f32], channels: usize, shape: [usize; 3]) -> Vec<bool> {
    let n: usize = shape.iter().product();
    assert_eq!(
        data.len(),
        n * channels,
        "data length does not match channels × shape"
    );
    let mut mask = vec![false; n];
    for c in 0..channels {
        for (m, &v) in mask.iter_mut().zip(&data[c * n..(c + 1) * n]) {
            *m |= v != 0.0;
        }
    }
    fill_holes(&mut mask, shape);
    mask
}

/// In place `binary_fill_holes` with the 6-neighbourhood: every false voxel not connected (through
/// false voxels, face-adjacent) to the array border becomes true.
pub fn fill_holes(mask: &mut [bool], shape: [usize; 3]) {
    let [nz, ny, nx] = shape;
    let n = nz * ny * nx;
    assert_eq!(mask.len(), n);
    if n == 0 {
        return;
    }
    // 0 = foreground, 1 = background not (yet) reached, 2 = reached from the border
    let mut state: Vec<u8> = mask.iter().map(|&m| if m { 0 } else { 1 }).collect();
    let mut stack: Vec<usize> = Vec::new();
    let idx = |z: usize, y: usize, x: usize| (z * ny + y) * nx + x;
    let seed = |i: usize, state: &mut Vec<u8>, stack: &mut Vec<usize>| {
        if state[i] == 1 {
            state[i] = 2;
            stack.push(i);
        }
    };
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                if z == 0 || z == nz - 1 || y == 0 || y == ny - 1 || x == 0 || x == nx - 1 {
                    seed(idx(z, y, x), &mut state, &mut stack);
                } else if x == 1 && nx > 2 {
                    // skip interior quickly: jump to the last column
                    let i = idx(z, y, nx - 1);
                    seed(i, &mut state, &mut stack);
                    break;
                }
            }
        }
    }
    let (sz, sy) = (ny * nx, nx);
    while let Some(i) = stack.pop() {
        let z = i / sz;
        let y = (i / sy) % ny;
        let x = i % nx;
        if z > 0 {
            seed(i - sz, &mut state, &mut stack);
        }
        if z + 1 < nz {
            seed(i + sz, &mut state, &mut stack);
        }
        if y > 0 {
            seed(i - sy, &mut state, &mut stack);
        }
        if y + 1 < ny {
            seed(i + sy, &mut state, &mut stack);
        }
        if x > 0 {
            seed(i - 1, &mut state, &mut stack);
        }
        if x + 1 < nx {
            seed(i + 1, &mut state, &mut stack);
        }
    }
    for (m, s) in mask.iter_mut().zip(state) {
        *m = s != 2;
    }
}

/// Bounding box of the true voxels (`[first, last + 1)` per axis); the whole image if none.
pub fn bbox_of_mask(mask: &[bool], shape: [usize; 3]) -> BBox {
    let [nz, ny, nx] = shape;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut any = false;
    for z in 0..nz {
        for y in 0..ny {
            let row = &mask[(z * ny + y) * nx..(z * ny + y + 1) * nx];
            let Some(first) = row.iter().position(|&m| m) else {
                continue;
            };
            let last = row.iter().rposition(|&m| m).unwrap_or(first);
            any = true;
            lo[0] = lo[0].min(z);
            hi[0] = hi[0].max(z + 1);
            lo[1] = lo[1].min(y);
            hi[1] = hi[1].max(y + 1);
            lo[2] = lo[2].min(first);
            hi[2] = hi[2].max(last + 1);
        }
    }
    if !any {
        return [[0, nz], [0, ny], [0, nx]];
    }
    [[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]]
}

/// Copy the box out of a `(c, z, y, x)` array.
pub fn crop_array<T: Copy>(a: &[T], channels: usize, shape: [usize; 3], bbox: &BBox) -> Vec<T> {
    let [_, ny, nx] = shape;
    let n: usize = shape.iter().product();
    let cz = bbox[0][1] - bbox[0][0];
    let cy = bbox[1][1] - bbox[1][0];
    let cx = bbox[2][1] - bbox[2][0];
    let mut out = Vec::with_capacity(channels * cz * cy * cx);
    for c in 0..channels {
        let base = c * n;
        for z in bbox[0][0]..bbox[0][1] {
            for y in bbox[1][0]..bbox[1][1] {
                let s = base + (z * ny + y) * nx;
                out.extend_from_slice(&a[s + bbox[2][0]..s + bbox[2][1]]);
            }
        }
    }
    out
}

/// nnU-Net's `crop_to_nonzero(data, seg, nonzero_label=-1)`. `data` is `(c, z, y, x)`, `seg` `(z, y, x)`.
pub fn crop_to_nonzero(
    data: &[f32],
    channels: usize,
    shape: [usize; 3],
    seg: Option<&[f32]>,
) -> Cropped {
    let mask = nonzero_mask(data, channels, shape);
    let bbox = bbox_of_mask(&mask, shape);
    let cshape = [
        bbox[0][1] - bbox[0][0],
        bbox[1][1] - bbox[1][0],
        bbox[2][1] - bbox[2][0],
    ];
    let cdata = crop_array(data, channels, shape, &bbox);
    let cmask = crop_array(&mask, 1, shape, &bbox);
    let cseg = match seg {
        Some(s) => {
            let mut cs = crop_array(s, 1, shape, &bbox);
            for (v, &m) in cs.iter_mut().zip(&cmask) {
                if *v == 0.0 && !m {
                    *v = -1.0;
                }
            }
            cs
        }
        None => cmask.iter().map(|&m| if m { 0.0 } else { -1.0 }).collect(),
    };
    Cropped {
        data: cdata,
        seg: cseg,
        shape: cshape,
        bbox,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_enclosed_cavity_only() {
        // 5x5x5 hollow cube shell (1..=3) with a cavity at the centre, plus an open "cup" elsewhere
        let shape = [5, 5, 5];
        let mut m = vec![false; 125];
        let i = |z: usize, y: usize, x: usize| (z * 5 + y) * 5 + x;
        for z in 1..4 {
            for y in 1..4 {
                for x in 1..4 {
                    m[i(z, y, x)] = !(z == 2 && y == 2 && x == 2);
                }
            }
        }
        let mut f = m.clone();
        fill_holes(&mut f, shape);
        assert!(f[i(2, 2, 2)], "enclosed voxel must be filled");
        assert_eq!(f.iter().filter(|&&v| v).count(), 27);
        // open the cavity along x through one face: no longer a hole
        let mut m2 = m.clone();
        m2[i(2, 2, 3)] = false;
        fill_holes(&mut m2, shape);
        assert!(!m2[i(2, 2, 2)]);
        // diagonal-only connection does not count (face connectivity): cavity stays a hole
        let mut m3 = m.clone();
        m3[i(3, 3, 3)] = false; // corner of the shell, touches the cavity only at a vertex
        fill_holes(&mut m3, shape);
        assert!(m3[i(2, 2, 2)]);
        // a size-1 axis makes every voxel a border voxel: nothing is filled
        let mut flat = vec![true; 9];
        flat[4] = false;
        fill_holes(&mut flat, [1, 3, 3]);
        assert!(!flat[4]);
    }

    #[test]
    fn crop_sets_minus_one_outside() {
        // 1 channel, 3x4x4 with nonzero block at z=1, y=1..3, x=1..3
        let shape = [3, 4, 4];
        let mut d = vec![0f32; 48];
        let idx = |z: usize, y: usize, x: usize| (z * 4 + y) * 4 + x;
        for y in 1..3 {
            for x in 1..3 {
                d[idx(1, y, x)] = 5.0;
            }
        }
        d[idx(1, 1, 1)] = 0.0; // on the box edge → not a hole, stays outside
        let mut s = vec![0f32; 48];
        s[idx(1, 2, 2)] = 2.0;
        let c = crop_to_nonzero(&d, 1, shape, Some(&s));
        assert_eq!(c.bbox, [[1, 2], [1, 3], [1, 3]]);
        assert_eq!(c.shape, [1, 2, 2]);
        assert_eq!(c.data, vec![0.0, 5.0, 5.0, 5.0]);
        assert_eq!(c.seg, vec![-1.0, 0.0, 0.0, 2.0]);
        // empty mask → whole image
        let c = crop_to_nonzero(&[0f32; 48], 1, shape, None);
        assert_eq!(c.bbox, [[0, 3], [0, 4], [0, 4]]);
        assert!(c.seg.iter().all(|&v| v == -1.0));
    }
}
