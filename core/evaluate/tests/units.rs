//! numpy-exact means, keys, and the per-case metric formulas.

use nnunet_evaluate::summary::{np_mean, np_nanmean, np_pairwise_sum, py_join};
use nnunet_evaluate::*;

#[test]
fn keys_are_python_str() {
    assert_eq!(LabelOrRegion::Label(3).key(), "3");
    assert_eq!(LabelOrRegion::Region(vec![1, 2]).key(), "(1, 2)");
    assert_eq!(LabelOrRegion::Region(vec![2]).key(), "(2,)");
    for k in ["3", "(1, 2)", "(2,)"] {
        assert_eq!(LabelOrRegion::from_key(k).unwrap().key(), k);
    }
    assert_eq!(py_join("a/", "b"), "a/b");
    assert_eq!(py_join("a", "b"), "a/b");
    assert_eq!(evaluate::py_splitext_ext("x/case.nii.gz"), ".gz");
    assert_eq!(evaluate::py_splitext_ext(".hidden"), "");
}

#[test]
fn pairwise_sum_matches_numpy_grouping() {
    // values chosen so that sequential and pairwise summation differ
    let v: Vec<f64> = (0..300).map(|i| 0.1 * (i as f64) + 1e-3 / (i as f64 + 1.0)).collect();
    let seq: f64 = v.iter().sum();
    let pw = np_pairwise_sum(&v);
    // np.sum(np.array([0.1*i + 1e-3/(i+1) for i in range(300)])) == 4485.0062826638805 (numpy 2.4.6); math.fsum-free sequential sum gives 4485.006282663879
    assert_eq!(pw, 4485.0062826638805, "sequential would give {seq}");
    assert_ne!(seq, pw);
    assert!(np_mean(&[]).is_nan());
    assert!(np_nanmean(&[f64::NAN, f64::NAN]).is_nan());
    assert_eq!(np_nanmean(&[1.0, f64::NAN, 2.0]), 1.5);
}

#[test]
fn metrics_from_counts() {
    let m = CaseMetrics::from_counts(3, 1, 2, 10);
    assert_eq!(m.Dice, 6.0 / 9.0);
    assert_eq!(m.IoU, 0.5);
    assert_eq!((m.n_pred, m.n_ref), (4, 5));
    let e = CaseMetrics::from_counts(0, 0, 0, 7);
    assert!(e.Dice.is_nan() && e.IoU.is_nan());
    // ignore label: voxels with reference == 3 do not count anywhere
    let r = [0.0, 1.0, 1.0, 3.0, 3.0, 2.0];
    let p = [1.0, 1.0, 0.0, 1.0, 2.0, 2.0];
    let m = compute_metrics_arrays(&r, &p, &[LabelOrRegion::Label(1), LabelOrRegion::Region(vec![1, 2])], Some(3));
    let l1 = m["1"];
    assert_eq!((l1.TP, l1.FP, l1.FN, l1.TN), (1, 1, 1, 1));
    let r12 = m["(1, 2)"];
    assert_eq!((r12.TP, r12.FP, r12.FN, r12.TN), (2, 1, 1, 0));
}
