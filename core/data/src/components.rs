//! Connected components of a binary 3-D mask with full connectivity (26 neighbours; 8 in a 2-D image stored as
//! `(1, h, w)`), like `skimage.measure.label(mask, connectivity=None)`: used by postprocessing (acvl_utils'
//! `remove_all_but_largest_component`) and by the cascade's `RemoveRandomConnectedComponentFromOneHotEncodingTransform`.

/// Label the components of the non-zero (`true`) voxels of `mask` (`shape` in array order, C-contiguous). Returns the
/// label image (0 = background, components numbered from 1 in raster order of their first voxel, as skimage does) and
/// the size of every component (`sizes[k - 1]` for label `k`).
pub fn label_components<T: Copy + Default + PartialEq>(mask: &[T], shape: [usize; 3]) -> (Vec<u32>, Vec<usize>) {
    let zero = T::default();
    let [nz, ny, nx] = shape;
    assert_eq!(mask.len(), nz * ny * nx, "mask size does not match the shape");
    let mut labels = vec![0u32; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == zero || labels[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        let mut size = 0usize;
        labels[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            size += 1;
            let (z, y, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
            for dz in -1i64..=1 {
                let zz = z as i64 + dz;
                if zz < 0 || zz >= nz as i64 {
                    continue;
                }
                for dy in -1i64..=1 {
                    let yy = y as i64 + dy;
                    if yy < 0 || yy >= ny as i64 {
                        continue;
                    }
                    for dx in -1i64..=1 {
                        let xx = x as i64 + dx;
                        if xx < 0 || xx >= nx as i64 {
                            continue;
                        }
                        let j = (zz as usize * ny + yy as usize) * nx + xx as usize;
                        if mask[j] != zero && labels[j] == 0 {
                            labels[j] = id;
                            stack.push(j);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// acvl_utils' `remove_all_but_largest_component`: the voxels of every component whose size equals the largest
/// size (ties: all of them are kept). An empty mask stays empty.
pub fn keep_largest_component(mask: &[bool], shape: [usize; 3]) -> Vec<bool> {
    let (labels, sizes) = label_components(mask, shape);
    let Some(&max) = sizes.iter().max() else {
        return vec![false; mask.len()];
    };
    let keep: Vec<bool> = std::iter::once(false).chain(sizes.iter().map(|&s| s == max)).collect();
    labels.iter().map(|&l| keep[l as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_neighbours_connect_and_ties_are_kept() {
        // 1 x 4 x 4: a diagonal pair (one component under full connectivity), and two single voxels
        let mut m = vec![false; 16];
        m[0] = true;
        m[5] = true; // (1,1) touches (0,0) diagonally
        m[3] = true; // (0,3)
        m[15] = true; // (3,3)
        let (labels, sizes) = label_components(&m, [1, 4, 4]);
        assert_eq!(sizes, vec![2, 1, 1]);
        assert_eq!(labels[5], 1);
        let k = keep_largest_component(&m, [1, 4, 4]);
        assert_eq!(k.iter().filter(|&&b| b).count(), 2);
        // tie: two components of one voxel each are both kept
        let mut t = vec![false; 16];
        t[0] = true;
        t[15] = true;
        assert_eq!(keep_largest_component(&t, [1, 4, 4]), t);
        // corner-only contact across slices connects in 3-D
        let mut c = vec![false; 8];
        c[0] = true;
        c[7] = true;
        assert_eq!(label_components(&c, [2, 2, 2]).1, vec![2]);
        assert!(keep_largest_component(&[false; 8], [2, 2, 2]).iter().all(|&b| !b));
    }
}
