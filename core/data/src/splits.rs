//! Cross-validation splits exactly as nnU-Net 2.8.1 makes them (training spec §2.12).
//!
//! * [`kfold_splits`] = `nnunetv2.utilities.crossval_split.generate_crossval_split`, i.e.
//!   `sklearn.model_selection.KFold(n_splits, shuffle=True, random_state=seed)`: numpy's legacy
//!   `RandomState(seed).shuffle(arange(n))` (MT19937 `init_genrand`, Fisher–Yates with masked-rejection
//!   bounded integers), the first `n % n_splits` folds one case larger, `train`/`val` in input order.
//! * [`default_splits`] = what `nnUNetTrainer.do_split` writes to `splits_final.json` when the file is
//!   missing: the case ids sorted, then 5 folds with seed 12345.
//! * [`split_for_fold`] = the rest of `do_split`: `fold == "all"` trains and validates on every case; a
//!   fold index past the end of the splits file gives nnU-Net's seeded random 80:20 split.
//! * [`read_splits`] / [`write_splits`]: `splits_final.json`, written with Python's `json.dump(indent=4)` text.

use crate::rng::Mt19937;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The seed nnU-Net uses for its 5-fold split (and, plus the fold index, for the 80:20 fallback split).
pub const DEFAULT_SEED: u32 = 12345;
/// nnU-Net's number of cross-validation folds.
pub const DEFAULT_N_SPLITS: usize = 5;

/// One fold of `splits_final.json`: `{"train": [...], "val": [...]}` (keys in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

/// The content of `splits_final.json`: a JSON list of folds (a user-provided file may have any number).
pub type SplitsFile = Vec<Split>;

/// Which fold to train: an index into the splits, or nnU-Net's `all` (train and validate on every case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fold {
    Index(usize),
    All,
}

impl Fold {
    /// The output folder name nnU-Net uses: `fold_0` … or `fold_all`.
    pub fn dir_name(&self) -> String {
        format!("fold_{self}")
    }
}

impl std::fmt::Display for Fold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fold::Index(i) => write!(f, "{i}"),
            Fold::All => f.write_str("all"),
        }
    }
}

impl std::str::FromStr for Fold {
    type Err = SplitError;
    /// `"all"` or a non-negative integer (nnU-Net's `fold` argument).
    fn from_str(s: &str) -> Result<Self, SplitError> {
        if s == "all" {
            return Ok(Fold::All);
        }
        s.parse::<usize>().map(Fold::Index).map_err(|_| SplitError::BadFold(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// sklearn's `KFold` refuses fewer samples than folds (and fewer than 2 folds).
    #[error("cannot make {n_splits} cross-validation folds from {n_cases} cases (need at least {n_splits} cases and 2 folds)")]
    TooFewCases { n_cases: usize, n_splits: usize },
    #[error("invalid fold {0:?}: expected \"all\" or a non-negative integer")]
    BadFold(String),
    /// The 80:20 fallback seeds `RandomState(12345 + fold)`; numpy rejects seeds ≥ 2^32.
    #[error("fold {0} is too large for a seeded 80:20 split")]
    FoldTooLarge(usize),
}

/// numpy's legacy `RandomState.shuffle` of a 1-d array (also what `permutation(n)` does on `arange(n)`):
/// for `i = n-1 … 1`, `j = random_interval(i)` (masked rejection, 32-bit draws), swap `i` and `j`.
fn legacy_shuffle<T>(rs: &mut Mt19937, values: &mut [T]) {
    for i in (1..values.len()).rev() {
        let j = rs.randint(i as u64 + 1) as usize;
        values.swap(i, j);
    }
}

/// `np.random.RandomState(seed).permutation(n)` (legacy algorithm).
pub fn legacy_permutation(seed: u32, n: usize) -> Vec<usize> {
    let mut rs = Mt19937::new(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    legacy_shuffle(&mut rs, &mut idx);
    idx
}

/// `generate_crossval_split(ids, seed, n_splits)`: sklearn `KFold(n_splits, shuffle=True, random_state=seed)`
/// over `ids` in the order given (nnU-Net passes them sorted; see [`default_splits`]). Fold `f` validates the
/// `f`-th contiguous chunk of the shuffled indices, the first `n % n_splits` chunks one longer; `train` and
/// `val` keep the order of `ids`.
pub fn kfold_splits(ids: &[String], n_splits: usize, seed: u32) -> Result<Vec<Split>, SplitError> {
    let n = ids.len();
    if n_splits < 2 || n < n_splits {
        return Err(SplitError::TooFewCases { n_cases: n, n_splits });
    }
    let order = legacy_permutation(seed, n);
    let mut fold_of = vec![0usize; n];
    let mut start = 0;
    for f in 0..n_splits {
        let size = n / n_splits + usize::from(f < n % n_splits);
        for &i in &order[start..start + size] {
            fold_of[i] = f;
        }
        start += size;
    }
    Ok((0..n_splits)
        .map(|f| {
            let (val, train): (Vec<_>, Vec<_>) = ids.iter().enumerate().partition(|(i, _)| fold_of[*i] == f);
            Split { train: train.into_iter().map(|(_, s)| s.clone()).collect(), val: val.into_iter().map(|(_, s)| s.clone()).collect() }
        })
        .collect())
}

/// The splits nnU-Net writes when `splits_final.json` is missing: ids sorted (`np.sort`, i.e. by code point),
/// then `KFold(5, shuffle=True, random_state=12345)`.
pub fn default_splits(ids: &[String]) -> Result<Vec<Split>, SplitError> {
    let mut sorted = ids.to_vec();
    sorted.sort();
    kfold_splits(&sorted, DEFAULT_N_SPLITS, DEFAULT_SEED)
}

/// nnU-Net's random 80:20 split for a fold index not present in the splits file:
/// `rnd = RandomState(12345 + fold)`, `keys = np.sort(ids)`,
/// `idx_tr = rnd.choice(len(keys), int(len(keys) * 0.8), replace=False)` (= `permutation(n)[:k]`),
/// `val` = the remaining indices ascending. `train` is in the drawn order (not sorted), as in nnU-Net.
pub fn random_80_20_split(ids: &[String], fold: usize) -> Result<(Vec<String>, Vec<String>), SplitError> {
    let seed = u32::try_from(fold).ok().and_then(|f| DEFAULT_SEED.checked_add(f)).ok_or(SplitError::FoldTooLarge(fold))?;
    let mut keys = ids.to_vec();
    keys.sort();
    let n = keys.len();
    let k = (n as f64 * 0.8) as usize;
    let perm = legacy_permutation(seed, n);
    let mut in_train = vec![false; n];
    let train = perm[..k]
        .iter()
        .map(|&i| {
            in_train[i] = true;
            keys[i].clone()
        })
        .collect();
    let val = (0..n).filter(|&i| !in_train[i]).map(|i| keys[i].clone()).collect();
    Ok((train, val))
}

/// `(train, val)` for `fold`, as `nnUNetTrainer.do_split` picks them.
///
/// * [`Fold::All`]: train and val are all of `all_ids` (in the order given; nnU-Net lists the preprocessed
///   folder's identifiers).
/// * an index `< splits.len()`: that split's lists as stored.
/// * an index `>= splits.len()`: [`random_80_20_split`] of `all_ids`.
pub fn split_for_fold(splits: &[Split], all_ids: &[String], fold: Fold) -> Result<(Vec<String>, Vec<String>), SplitError> {
    match fold {
        Fold::All => Ok((all_ids.to_vec(), all_ids.to_vec())),
        Fold::Index(f) if f < splits.len() => Ok((splits[f].train.clone(), splits[f].val.clone())),
        Fold::Index(f) => random_80_20_split(all_ids, f),
    }
}

/// Read `splits_final.json` (any number of folds).
pub fn read_splits(path: &Path) -> Result<SplitsFile, nnunet_schema::SchemaError> {
    nnunet_schema::json::read_json(path)
}

/// Write `splits_final.json` atomically, with the text Python's `json.dump(splits, f, indent=4)` writes.
pub fn write_splits(path: &Path, splits: &[Split]) -> Result<(), nnunet_schema::SchemaError> {
    nnunet_schema::json::write_json_atomic(path, &splits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, fmt: impl Fn(usize) -> String) -> Vec<String> {
        (0..n).map(fmt).collect()
    }

    fn val_indices(splits: &[Split], all: &[String]) -> Vec<Vec<usize>> {
        splits.iter().map(|s| s.val.iter().map(|v| all.iter().position(|a| a == v).unwrap()).collect()).collect()
    }

    // training spec §8.1
    #[test]
    fn toy_12_cases() {
        assert_eq!(legacy_permutation(12345, 12), [8, 0, 3, 7, 11, 10, 6, 9, 4, 1, 5, 2]);
        let all = ids(12, |i| format!("case_{i:02}"));
        let splits = default_splits(&all).unwrap();
        let val: Vec<Vec<&str>> = splits.iter().map(|s| s.val.iter().map(String::as_str).collect()).collect();
        assert_eq!(
            val,
            [
                vec!["case_00", "case_03", "case_08"],
                vec!["case_07", "case_10", "case_11"],
                vec!["case_06", "case_09"],
                vec!["case_01", "case_04"],
                vec!["case_02", "case_05"],
            ]
        );
        for s in &splits {
            let mut both: Vec<String> = s.train.iter().chain(&s.val).cloned().collect();
            assert!(s.train.windows(2).all(|w| w[0] < w[1]));
            both.sort();
            assert_eq!(both, all);
        }
    }

    // np.random.RandomState(0).permutation(10)
    #[test]
    fn permutation_matches_numpy() {
        assert_eq!(legacy_permutation(0, 10), [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
    }

    // [list(te) for tr, te in KFold(5, shuffle=True, random_state=12345).split(np.arange(n))], scikit-learn
    #[test]
    fn kfold_matches_sklearn() {
        let cases: [(usize, Vec<Vec<usize>>); 3] = [
            (7, vec![vec![3, 6], vec![0, 4], vec![1], vec![5], vec![2]]),
            (13, vec![vec![0, 7, 9], vec![3, 6, 10], vec![8, 11, 12], vec![1, 4], vec![2, 5]]),
            (23, vec![vec![3, 8, 10, 17, 19], vec![0, 7, 12, 15, 16], vec![6, 11, 14, 18, 20], vec![9, 13, 21, 22], vec![1, 2, 4, 5]]),
        ];
        for (n, expected) in cases {
            let all = ids(n, |i| format!("c{i:03}"));
            let splits = kfold_splits(&all, 5, 12345).unwrap();
            assert_eq!(val_indices(&splits, &all), expected, "n = {n}");
        }
    }

    #[test]
    fn too_few_cases() {
        let all = ids(4, |i| format!("c{i}"));
        assert!(matches!(kfold_splits(&all, 5, 12345), Err(SplitError::TooFewCases { n_cases: 4, n_splits: 5 })));
        assert!(kfold_splits(&all, 1, 12345).is_err());
        assert_eq!(kfold_splits(&all, 4, 12345).unwrap().len(), 4);
    }

    // rnd = np.random.RandomState(12345 + fold); idx_tr = rnd.choice(12, int(12 * 0.8), replace=False)
    #[test]
    fn random_split_matches_numpy_toy() {
        let all = ids(12, |i| format!("case_{i:02}"));
        let splits = default_splits(&all).unwrap();
        let name = |v: &[usize]| v.iter().map(|&i| all[i].clone()).collect::<Vec<_>>();
        let (tr, val) = split_for_fold(&splits, &all, Fold::Index(5)).unwrap();
        assert_eq!(tr, name(&[4, 7, 0, 10, 5, 9, 8, 3, 11]));
        assert_eq!(val, name(&[1, 2, 6]));
        let (tr, val) = split_for_fold(&splits, &all, Fold::Index(7)).unwrap();
        assert_eq!(tr, name(&[4, 7, 2, 0, 8, 11, 1, 6, 9]));
        assert_eq!(val, name(&[3, 5, 10]));
        // RandomState(12354).choice(3, 2, replace=False)
        let three = ids(3, |i| format!("x{i}"));
        assert_eq!(random_80_20_split(&three, 9).unwrap(), (vec!["x1".to_string(), "x2".to_string()], vec!["x0".to_string()]));
    }

    #[test]
    fn fold_all_and_existing_index() {
        let all = ids(12, |i| format!("case_{i:02}"));
        let splits = default_splits(&all).unwrap();
        assert_eq!(split_for_fold(&splits, &all, Fold::All).unwrap(), (all.clone(), all.clone()));
        assert_eq!(split_for_fold(&splits, &all, Fold::Index(2)).unwrap(), (splits[2].train.clone(), splits[2].val.clone()));
        assert_eq!("all".parse::<Fold>().unwrap(), Fold::All);
        assert_eq!("3".parse::<Fold>().unwrap(), Fold::Index(3));
        assert!("-1".parse::<Fold>().is_err());
        assert_eq!(Fold::All.dir_name(), "fold_all");
        assert_eq!(Fold::Index(0).dir_name(), "fold_0");
    }

    // The reference splits_final.json nnU-Net 2.8.1 wrote for Dataset004_Hippocampus (220 cases): same splits,
    // same text; plus the 80:20 fallback for fold 5 computed with numpy 2.4.6.
    #[test]
    fn hippocampus_reference() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/Dataset004_Hippocampus/splits_final.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let reference = read_splits(&path).unwrap();
        let mut all: Vec<String> = reference[0].train.iter().chain(&reference[0].val).cloned().collect();
        all.sort();
        assert_eq!(all.len(), 220);
        assert_eq!(&legacy_permutation(12345, 220)[..10], [30, 215, 185, 206, 47, 180, 71, 110, 214, 33]);
        let splits = default_splits(&all).unwrap();
        assert_eq!(splits, reference);
        assert_eq!(nnunet_schema::json::to_python_string(&splits).unwrap(), text);

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("splits_final.json");
        write_splits(&out, &splits).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);

        let (tr, val) = split_for_fold(&splits, &all, Fold::Index(5)).unwrap();
        assert_eq!(tr.len(), 176);
        let first_tr: Vec<usize> = tr[..10].iter().map(|t| all.iter().position(|a| a == t).unwrap()).collect();
        assert_eq!(first_tr, [88, 169, 15, 202, 163, 148, 153, 111, 23, 45]);
        let expected_val: Vec<String> = [
            3, 17, 40, 75, 91, 105, 106, 109, 125, 136, 141, 160, 164, 171, 174, 178, 181, 193, 195, 210, 217, 222, 225, 227, 228, 235,
            238, 248, 264, 282, 287, 295, 320, 325, 328, 331, 335, 338, 340, 358, 360, 374, 375, 383,
        ]
        .iter()
        .map(|i| format!("hippocampus_{i:03}"))
        .collect();
        assert_eq!(val, expected_val);
    }
}
