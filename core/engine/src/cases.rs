//! The training loop's case source: the fold's preprocessed cases read patch by patch from their `.npy` files
//! ([`nnunet_data::npy::NpyFile::read_box`]) instead of being loaded whole, as nnU-Net's data loader reads its blosc2
//! files lazily. Memory then stays at the class locations (12 bytes per stored location, held once) and the patches
//! in flight whatever the dataset's size; the operating system's page cache keeps a small dataset in memory after the
//! first epoch. A cascade stage carries the previous stage's segmentation (a separate `.npz`, see `cascade.rs`) as a
//! second segmentation channel; those are int16 volumes held in memory.

use nnunet_augment::{AugmentError, CaseMeta, CaseSource, ClassKey as AugKey, ClassLocations, Tensor, crop_and_pad};
use nnunet_data::class_locations::ClassKey as DataKey;
use nnunet_data::storage::StoredCase;
use std::path::Path;
use std::sync::Arc;

struct Case {
    stored: StoredCase,
    /// the previous stage's segmentation (cascade), `(1, z, y, x)`
    prev: Option<Tensor<i16>>,
    meta: Arc<CaseMeta>,
}

/// Preprocessed cases of one fold, on disk.
pub struct DiskSource {
    cases: Vec<Case>,
}

fn convert_key(k: &DataKey) -> AugKey {
    match k {
        DataKey::Label(l) => AugKey::Label(*l as i32),
        DataKey::Region(r) => AugKey::Region(r.iter().map(|&x| x as i32).collect()),
    }
}

/// The sampler's form of a case's stored class locations: spatial coordinates `[z, y, x]`, each checked to lie in
/// the case's `shape` (nnU-Net's `[c, z, y, x]` has the channel index first; it must be 0).
fn compact_locations(stored: &nnunet_data::class_locations::ClassLocations, shape: [usize; 3]) -> Result<ClassLocations, String> {
    stored
        .0
        .iter()
        .map(|(k, voxels)| {
            let inside = |v: &[i64; 4]| -> Option<[u32; 3]> {
                let ok = v[0] == 0 && (0..3).all(|d| v[d + 1] >= 0 && (v[d + 1] as u64) < shape[d] as u64);
                ok.then(|| [v[1] as u32, v[2] as u32, v[3] as u32])
            };
            let compact: Option<Vec<[u32; 3]>> = voxels.iter().map(inside).collect();
            match compact {
                Some(c) => Ok((convert_key(k), c)),
                None => {
                    let bad = voxels.iter().find(|v| inside(v).is_none()).unwrap();
                    Err(format!("class_locations[{}] holds {bad:?}, not a voxel [0, z, y, x] of the case's shape {shape:?}", k.json_key()))
                }
            }
        })
        .collect()
}

/// The previous stage's segmentation of `id`, which must have the preprocessed case's shape.
pub(crate) fn read_prev_stage(folder: &Path, id: &str, shape: [usize; 3]) -> Result<Vec<i16>, String> {
    let (seg, s) = crate::cascade::read_previous_stage_segmentation(folder, id).map_err(|e| e.to_string())?;
    if s != shape {
        return Err(format!("{}: previous-stage segmentation of {id} has shape {s:?}, the preprocessed case {shape:?}", folder.display()));
    }
    Ok(seg)
}

impl DiskSource {
    /// Open the cases `ids` of the preprocessed folder `dir` (headers, properties; with `prev_stage`, the previous
    /// stage's segmentations). Every case is checked; the error lists all cases that failed, one per line.
    pub fn open(dir: &Path, ids: &[String], prev_stage: Option<&Path>) -> Result<DiskSource, String> {
        let mut cases = Vec::with_capacity(ids.len());
        let mut problems = Vec::new();
        for id in ids {
            let opened = nnunet_data::storage::open_case(dir, id).map_err(|e| e.to_string()).and_then(|mut stored| {
                let prev = match prev_stage {
                    Some(folder) => Some(Tensor::new(read_prev_stage(folder, id, stored.shape)?, 1, stored.shape)),
                    None => None,
                };
                // held once, compactly, for the whole run: the properties' own copy is dropped
                let class_locations = match stored.properties.class_locations.take() {
                    Some(l) => compact_locations(&l, stored.shape)
                        .map_err(|e| format!("{}: {e}", nnunet_data::storage::properties_path(dir, id).display()))?,
                    None => Vec::new(),
                };
                let meta = Arc::new(CaseMeta { shape: stored.shape, num_channels: stored.channels, class_locations });
                Ok(Case { stored, prev, meta })
            });
            match opened {
                Ok(c) => cases.push(c),
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(DiskSource { cases })
        } else {
            Err(format!("{} of {} cases cannot be read:\n{}", problems.len(), ids.len(), problems.join("\n")))
        }
    }
}

impl CaseSource for DiskSource {
    fn num_cases(&self) -> usize {
        self.cases.len()
    }

    fn case_meta(&self, case: usize) -> Result<Arc<CaseMeta>, AugmentError> {
        self.cases.get(case).map(|c| c.meta.clone()).ok_or(AugmentError::NoSuchCase(case))
    }

    fn read_patch(&self, case: usize, start: [i64; 3], size: [usize; 3]) -> Result<(Tensor<f32>, Tensor<i16>), AugmentError> {
        let c = self.cases.get(case).ok_or(AugmentError::NoSuchCase(case))?;
        let source = |e: nnunet_data::DataError| AugmentError::Source(e.to_string());
        let image = Tensor::new(c.stored.data.read_box_padded(start, size, 0.0f32).map_err(source)?, c.stored.channels, size);
        let mut seg = c.stored.seg.read_box_padded(start, size, -1i16).map_err(source)?;
        let channels = match &c.prev {
            None => 1,
            Some(prev) => {
                seg.extend(crop_and_pad(prev, start, size, -1).data);
                2
            }
        };
        Ok((image, Tensor::new(seg, channels, size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnunet_augment::InMemorySource;

    /// Cases of odd shapes, two channels, written as preprocessing writes them.
    fn write_cases(dir: &Path) -> Vec<String> {
        let mut ids = Vec::new();
        for (k, shape) in [[7usize, 9, 11], [12, 5, 8], [3, 14, 6]].into_iter().enumerate() {
            let n: usize = shape.iter().product();
            let data = (0..2 * n).map(|i| (i as f32 * 0.37 + k as f32).sin()).collect();
            let seg = (0..n).map(|i| ((i * 7 + k) % 4) as i16 - 1).collect();
            let properties = nnunet_data::CaseProperties::uncropped(shape, [1.0; 3]);
            let pc = nnunet_data::PreprocessedCase { data, channels: 2, shape, seg, properties };
            let id = format!("case_{k}");
            nnunet_data::storage::write_case(dir, &id, &pc, &[4, 4, 4]).unwrap();
            ids.push(id);
        }
        ids
    }

    /// Patches read from disk equal those cut from the whole case in memory, inside and across every border.
    #[test]
    fn disk_patches_equal_in_memory_patches() {
        let dir = std::env::temp_dir().join(format!("disk_source_eq_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ids = write_cases(&dir);
        let disk = DiskSource::open(&dir, &ids, None).unwrap();
        let mut mem = InMemorySource::default();
        for id in &ids {
            let c = nnunet_data::storage::read_case(&dir, id).unwrap();
            mem.push(Tensor::new(c.data, c.channels, c.shape), Tensor::new(c.seg, 1, c.shape), Vec::new());
        }
        assert_eq!(disk.num_cases(), 3);
        for case in 0..ids.len() {
            let shape = disk.case_meta(case).unwrap().shape;
            assert_eq!(shape, mem.case_meta(case).unwrap().shape);
            let s = shape.map(|v| v as i64);
            for (start, size) in [([0, 0, 0], shape), ([-3, 2, -4], [8, 6, 15]), ([s[0] - 2, -2, s[2] - 3], [5, 4, 6]), ([1, 1, 1], [2, 3, 4])] {
                let (di, ds) = disk.read_patch(case, start, size).unwrap();
                let (mi, ms) = mem.read_patch(case, start, size).unwrap();
                assert_eq!(di.data, mi.data, "image {case} {start:?} {size:?}");
                assert_eq!(ds.data, ms.data, "seg {case} {start:?} {size:?}");
                assert_eq!((di.channels, ds.channels, di.shape), (mi.channels, ms.channels, mi.shape));
            }
        }
        assert!(matches!(disk.read_patch(3, [0; 3], [1; 3]), Err(AugmentError::NoSuchCase(3))));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The class locations are held once, as spatial coordinates; a location outside the case is an error naming
    /// the properties file.
    #[test]
    fn class_locations_are_held_once_and_checked() {
        use nnunet_data::class_locations::{ClassKey as K, ClassLocations as L};
        let dir = std::env::temp_dir().join(format!("disk_source_locs_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shape = [4usize, 5, 6];
        let n: usize = shape.iter().product();
        let write = |id: &str, locs: L| {
            let mut properties = nnunet_data::CaseProperties::uncropped(shape, [1.0; 3]);
            properties.class_locations = Some(locs);
            let pc = nnunet_data::PreprocessedCase { data: vec![0.0; n], channels: 1, shape, seg: vec![0; n], properties };
            nnunet_data::storage::write_case(&dir, id, &pc, &[4, 4, 4]).unwrap();
        };
        write("good", L(vec![(K::Label(1), vec![[0, 3, 4, 5], [0, 0, 0, 0]]), (K::Region(vec![1, 2]), vec![]), (K::Label(2), vec![[0, 1, 2, 3]])]));
        let disk = DiskSource::open(&dir, &["good".into()], None).unwrap();
        let meta = disk.case_meta(0).unwrap();
        let want = vec![(AugKey::Label(1), vec![[3, 4, 5], [0, 0, 0]]), (AugKey::Region(vec![1, 2]), vec![]), (AugKey::Label(2), vec![[1, 2, 3]])];
        assert_eq!(meta.class_locations, want);
        assert!(disk.cases[0].stored.properties.class_locations.is_none(), "the properties' copy is dropped");
        for (id, bad) in [("outside", [0i64, 4, 0, 0]), ("negative", [0, 0, -1, 0]), ("channel", [1, 0, 0, 0])] {
            write(id, L(vec![(K::Label(1), vec![[0, 1, 1, 1], bad])]));
            let err = DiskSource::open(&dir, &[id.to_string()], None).err().unwrap();
            assert!(err.contains(&format!("{id}.pkl")) && err.contains(&format!("{bad:?}")) && err.contains("class_locations[1]"), "{err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn open_lists_every_case_that_cannot_be_read() {
        let dir = std::env::temp_dir().join(format!("disk_source_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = DiskSource::open(&dir, &["a".into(), "b".into()], None).err().unwrap();
        assert!(err.starts_with("2 of 2 cases cannot be read"), "{err}");
        assert!(err.contains("a.npy") && err.contains("b.npy"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
