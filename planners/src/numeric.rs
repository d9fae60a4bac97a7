//! numpy / Python numeric semantics the planners depend on (planning spec §4, §9.1).

/// Python's `round(x)` for floats: round half to even.
pub fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// `int(round(x))` as i64.
pub fn py_round(x: f64) -> i64 {
    round_half_even(x) as i64
}

/// `np.percentile(v, q)` with numpy's default *linear* method, f64 data.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    assert!(!values.is_empty(), "percentile of an empty list");
    let mut x = values.to_vec();
    x.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = x.len();
    let vi = (q / 100.0) * (n - 1) as f64;
    let lo = vi.floor();
    let g = vi - lo;
    let lo = lo as usize;
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (x[lo], x[hi]);
    let d = b - a;
    if g >= 0.5 { b - d * (1.0 - g) } else { a + d * g }
}

/// `np.median(v)`: the middle element, or the mean `(a + b) / 2` of the two middle elements.
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of an empty list");
    let mut x = values.to_vec();
    x.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = x.len();
    if n % 2 == 1 { x[n / 2] } else { (x[n / 2 - 1] + x[n / 2]) / 2.0 }
}

/// Per-axis statistic over rows (`np.f(rows, axis=0)`).
pub fn per_axis(rows: &[Vec<f64>], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let dim = rows[0].len();
    (0..dim).map(|i| f(&rows.iter().map(|r| r[i]).collect::<Vec<_>>())).collect()
}

/// `np.argmax`: first index of the maximum.
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Sequential product (numpy's multiply reduction) in f64.
pub fn prod(v: &[f64]) -> f64 {
    v.iter().fold(1.0, |acc, &x| acc * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_to_even() {
        assert_eq!(py_round(0.5), 0);
        assert_eq!(py_round(1.5), 2);
        assert_eq!(py_round(2.5), 2);
        assert_eq!(py_round(-2.5), -2);
        assert_eq!(py_round(6187.5), 6188);
        assert_eq!(py_round(7312.5), 7312);
        assert_eq!(py_round(309.4), 309);
        // f64::round would give 3 here
        assert_ne!(py_round(2.5), 2.5f64.round() as i64);
    }

    #[test]
    fn numpy_percentile_and_median() {
        let v = [3.0, 1.0, 2.0, 4.0];
        assert_eq!(median(&v), 2.5);
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        // numpy: np.percentile([1,2,3,4,5,6,7,8,9,10], 10) == 1.9
        let w: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&w, 10.0), 1.9);
        assert_eq!(percentile(&[2.5, 5.0, 3.0], 10.0), 2.6);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }
}
