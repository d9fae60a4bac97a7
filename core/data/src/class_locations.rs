//! Foreground locations for oversampling (planning spec §7.5), identical to nnU-Net 2.8.1's
//! `DefaultPreprocessor._sample_foreground_locations`: same classes, same counts, same coordinates
//! (`RandomState(1234)` shared by the classes of a case, `choice(total, k, replace=False)` = the first
//! `k` entries of a legacy Fisher–Yates permutation of `arange(total)`).

use crate::rng::Mt19937;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// nnU-Net's `min_num_samples`.
pub const MIN_NUM_SAMPLES: usize = 10_000;
/// nnU-Net's `min_percent_coverage`.
pub const MIN_PERCENT_COVERAGE: f64 = 0.01;
/// nnU-Net's seed.
pub const SEED: u32 = 1234;

/// A class to collect: a label (`int` key) or a region / ignore-label key (`tuple` key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClassKey {
    Label(i64),
    Region(Vec<i64>),
}

impl ClassKey {
    /// The labels this key stands for, in order.
    pub fn labels(&self) -> Vec<i64> {
        match self {
            ClassKey::Label(l) => vec![*l],
            ClassKey::Region(r) => r.clone(),
        }
    }
    /// The JSON key: `"1"` for a label, Python's `str(tuple)` (`"(1, 2)"`, `"(3,)"`) for a region.
    pub fn json_key(&self) -> String {
        match self {
            ClassKey::Label(l) => l.to_string(),
            ClassKey::Region(r) if r.len() == 1 => format!("({},)", r[0]),
            ClassKey::Region(r) => format!("({})", r.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")),
        }
    }
    /// Inverse of [`ClassKey::json_key`] (also accepts `"[1, 2]"`).
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        if let Ok(l) = t.parse::<i64>() {
            return Some(ClassKey::Label(l));
        }
        let inner =
            t.strip_prefix('(').and_then(|r| r.strip_suffix(')')).or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?;
        let v: Option<Vec<i64>> = inner.split(',').map(str::trim).filter(|p| !p.is_empty()).map(|p| p.parse().ok()).collect();
        v.map(ClassKey::Region)
    }
}

/// `class_locations`: per class (in collection order) the sampled voxels as `[0, d0, d1, d2]` rows
/// (the `(k, 4)` int64 array nnU-Net stores; column 0 is the seg's channel index).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassLocations(pub Vec<(ClassKey, Vec<[i64; 4]>)>);

impl ClassLocations {
    pub fn get(&self, key: &ClassKey) -> Option<&[[i64; 4]]> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }
}

impl Serialize for ClassLocations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(&k.json_key(), v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for ClassLocations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClassLocations;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of class key to a list of [c, z, y, x] rows")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Vec<[i64; 4]>>()? {
                    let key = ClassKey::parse(&k).ok_or_else(|| de::Error::custom(format!("bad class key '{k}'")))?;
                    out.push((key, v));
                }
                Ok(ClassLocations(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The classes nnU-Net collects for a label manager: regions if region-based, else the foreground
/// labels; plus `[-1] + all_labels` when there is an ignore label.
pub fn classes_to_collect(lm: &nnunet_schema::LabelManager) -> Vec<ClassKey> {
    let mut out: Vec<ClassKey> = match &lm.regions {
        Some(r) => r.iter().map(|r| ClassKey::Region(r.clone())).collect(),
        None => lm.foreground_labels().into_iter().map(ClassKey::Label).collect(),
    };
    if lm.ignore_label.is_some() {
        let mut k = vec![-1];
        k.extend(&lm.all_labels);
        out.push(ClassKey::Region(k));
    }
    out
}

/// `k = max(min(10000, total), ceil(0.01 · total))`.
pub fn num_samples(total: usize) -> usize {
    let k = MIN_NUM_SAMPLES.min(total);
    k.max((total as f64 * MIN_PERCENT_COVERAGE).ceil() as usize)
}

/// `_sample_foreground_locations(seg, classes, seed=1234)` for a `(1, d0, d1, d2)` seg given as
/// `(d0, d1, d2)` values (integral labels, `-1` allowed).
pub fn sample_foreground_locations(seg: &[i16], shape: [usize; 3], classes: &[ClassKey]) -> ClassLocations {
    assert_eq!(seg.len(), shape.iter().product::<usize>());
    // requested labels → C-order voxel lists
    let mut requested: Vec<i64> = classes.iter().flat_map(ClassKey::labels).collect();
    requested.sort_unstable();
    requested.dedup();
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); requested.len()];
    // fast path for small label ranges: direct lookup table
    let (lo, hi) = (requested.first().copied().unwrap_or(0), requested.last().copied().unwrap_or(0));
    if !requested.is_empty() && hi - lo < 1 << 16 {
        let mut lut = vec![usize::MAX; (hi - lo + 1) as usize];
        for (i, &l) in requested.iter().enumerate() {
            lut[(l - lo) as usize] = i;
        }
        for (i, &v) in seg.iter().enumerate() {
            let v = v as i64;
            if v >= lo && v <= hi {
                let j = lut[(v - lo) as usize];
                if j != usize::MAX {
                    lists[j].push(i as u32);
                }
            }
        }
    } else {
        for (i, &v) in seg.iter().enumerate() {
            if let Ok(j) = requested.binary_search(&(v as i64)) {
                lists[j].push(i as u32);
            }
        }
    }
    let [_, n1, n2] = shape;
    let coord = |flat: u32| -> [i64; 4] {
        let f = flat as usize;
        [0, (f / (n1 * n2)) as i64, ((f / n2) % n1) as i64, (f % n2) as i64]
    };
    let mut rs = Mt19937::new(SEED);
    let mut perm: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(classes.len());
    for c in classes {
        let blocks: Vec<&[u32]> = c
            .labels()
            .iter()
            .filter_map(|l| requested.binary_search(l).ok())
            .map(|j| lists[j].as_slice())
            .filter(|b| !b.is_empty())
            .collect();
        let total: usize = blocks.iter().map(|b| b.len()).sum();
        if total == 0 {
            out.push((c.clone(), Vec::new()));
            continue;
        }
        let k = num_samples(total);
        // legacy RandomState.permutation(total): shuffle arange with random_interval(i), i = n-1 .. 1
        perm.clear();
        perm.extend(0..total as u32);
        for i in (1..total).rev() {
            let j = rs.randint(i as u64 + 1) as usize;
            perm.swap(i, j);
        }
        let mut rows = Vec::with_capacity(k);
        for &off in &perm[..k] {
            let mut off = off as usize;
            for b in &blocks {
                if off < b.len() {
                    rows.push(coord(b[off]));
                    break;
                }
                off -= b.len();
            }
        }
        out.push((c.clone(), rows));
    }
    ClassLocations(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for k in [ClassKey::Label(3), ClassKey::Region(vec![1, 2]), ClassKey::Region(vec![-1, 0, 1]), ClassKey::Region(vec![4])] {
            assert_eq!(ClassKey::parse(&k.json_key()), Some(k.clone()));
        }
        assert_eq!(ClassKey::Region(vec![1, 2]).json_key(), "(1, 2)");
    }

    #[test]
    fn sample_counts() {
        assert_eq!(num_samples(5), 5);
        assert_eq!(num_samples(10_000), 10_000);
        assert_eq!(num_samples(2_000_000), 20_000);
        assert_eq!(num_samples(1_000_001), 10_001);
    }

    // np.random.RandomState(1234).permutation(10)[:k] drives the selection; expected values from
    // DefaultPreprocessor._sample_foreground_locations (nnunetv2 2.8.1) on this seg.
    #[test]
    fn matches_nnunet_small() {
        // seg (1, 2, 3, 4)
        let seg: Vec<i16> = vec![0, 1, 1, 2, -1, 2, 2, 1, 0, 0, 1, 3, 3, 1, 0, 2, 1, 1, 0, 0, 2, 2, -1, 1];
        let classes = vec![ClassKey::Label(1), ClassKey::Label(2), ClassKey::Region(vec![2, 3]), ClassKey::Label(5)];
        let got = sample_foreground_locations(&seg, [2, 3, 4], &classes);
        let want = expected_small();
        assert_eq!(got.0.len(), 4);
        for ((k, v), (wk, wv)) in got.0.iter().zip(want) {
            assert_eq!(k, &wk);
            assert_eq!(v, &wv, "{k:?}");
        }
    }

    fn expected_small() -> Vec<(ClassKey, Vec<[i64; 4]>)> {
        include!("../tests/data/class_locations_small.in")
    }
}
