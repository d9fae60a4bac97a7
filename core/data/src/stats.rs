//! numpy-exact statistics (planning spec §3.4): pairwise summation, `np.mean`, `np.std`,
//! `np.percentile` (linear method) and `np.median` of a list of doubles.
//!
//! Everything is generic over `f32` and `f64` so the float64 fallback numpy takes when an empty
//! (float64) sample list is concatenated with float32 samples is reproduced too.

/// The float types numpy's reductions are reproduced for.
pub trait NpFloat:
    Copy
    + PartialOrd
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::fmt::Debug
    + 'static
{
    const NEG_ZERO: Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn sqrt(self) -> Self;
    fn is_nan(self) -> bool;
    /// The values of ranks `ks` (sorted, unique, `< a.len()`) of the ascending order of `a`.
    /// May reorder `a`.
    fn order_statistics(a: &mut [Self], ks: &[usize]) -> Vec<Self> {
        select_many(a, ks, 0);
        ks.iter().map(|&k| a[k]).collect()
    }
}

impl NpFloat for f32 {
    const NEG_ZERO: Self = -0.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn order_statistics(a: &mut [Self], ks: &[usize]) -> Vec<Self> {
        radix_order_statistics(a, ks)
    }
}

impl NpFloat for f64 {
    const NEG_ZERO: Self = -0.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

const PW_BLOCKSIZE: usize = 128;
/// Sub-trees at least this large are summed on separate rayon tasks (same tree, same result).
const PARALLEL_MIN: usize = 1 << 21;

/// numpy's `pairwise_sum` (what `np.add.reduce` does on a contiguous 1-D array), applied to
/// `f(x)` for each element.
fn pairwise_map<T: NpFloat, F: Fn(T) -> T + Sync>(a: &[T], f: &F) -> T {
    let n = a.len();
    if n < 8 {
        let mut res = T::NEG_ZERO;
        for &x in a {
            res = res + f(x);
        }
        res
    } else if n <= PW_BLOCKSIZE {
        let mut r = [T::NEG_ZERO; 8];
        for j in 0..8 {
            r[j] = f(a[j]);
        }
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] = r[j] + f(a[i + j]);
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res = res + f(a[i]);
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        let (l, r) = a.split_at(n2);
        if n >= PARALLEL_MIN {
            let (x, y) = rayon::join(|| pairwise_map(l, f), || pairwise_map(r, f));
            x + y
        } else {
            pairwise_map(l, f) + pairwise_map(r, f)
        }
    }
}

/// `np.sum(a)` for a contiguous 1-D float array (identity 0 plus the pairwise sum).
pub fn pairwise_sum<T: NpFloat>(a: &[T]) -> T {
    if a.is_empty() {
        return T::from_f64(0.0);
    }
    T::from_f64(0.0) + pairwise_map(a, &|x| x)
}

/// `np.mean(a)`: pairwise sum in `T`, divided by the count in double precision, rounded to `T`.
pub fn mean<T: NpFloat>(a: &[T]) -> T {
    T::from_f64(pairwise_sum(a).to_f64() / a.len() as f64)
}

/// `np.std(a)` (ddof 0): deviations and squares in `T`, pairwise summed, divided in double precision,
/// rounded to `T`, square root in `T`.
pub fn std<T: NpFloat>(a: &[T]) -> T {
    let m = mean(a);
    let ss = T::from_f64(0.0)
        + pairwise_map(a, &|x| {
            let d = x - m;
            d * d
        });
    T::from_f64(ss.to_f64() / a.len() as f64).sqrt()
}

/// `np.percentile(a, qs)` with the default linear method, for finite data. Reorders `a` (partial
/// selection instead of a full sort). `qs` in percent. Returns doubles (numpy's result is float64).
pub fn percentiles<T: NpFloat>(a: &mut [T], qs: &[f64]) -> Vec<f64> {
    let n = a.len();
    assert!(n > 0, "percentile of an empty array");
    // the order statistics needed
    let mut plan = Vec::new();
    for &q in qs {
        let vi = (n - 1) as f64 * (q / 100.0);
        let lo = vi.floor();
        let g = vi - lo;
        let lo = (lo as usize).min(n - 1);
        let hi = (lo + 1).min(n - 1);
        plan.push((lo, hi, g));
    }
    let mut ks: Vec<usize> = plan.iter().flat_map(|&(l, h, _)| [l, h]).collect();
    ks.sort_unstable();
    ks.dedup();
    let vals = T::order_statistics(a, &ks);
    let at = |k: usize| vals[ks.binary_search(&k).unwrap_or(0)];
    plan.iter()
        .map(|&(lo, hi, g)| {
            let (xl, xh) = (at(lo), at(hi));
            let d = (xh - xl).to_f64();
            if g < 0.5 {
                xl.to_f64() + d * g
            } else {
                xh.to_f64() - d * (1.0 - g)
            }
        })
        .collect()
}

fn cmp<T: NpFloat>(x: &T, y: &T) -> std::cmp::Ordering {
    x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal)
}

/// Place the order statistics `ks` (sorted, relative to the full array; `offset` = index of `a[0]`).
fn select_many<T: NpFloat>(a: &mut [T], ks: &[usize], offset: usize) {
    if ks.is_empty() || a.is_empty() {
        return;
    }
    let mid = ks.len() / 2;
    let k = ks[mid] - offset;
    let (left, _, right) = a.select_nth_unstable_by(k, cmp);
    select_many(left, &ks[..mid], offset);
    select_many(right, &ks[mid + 1..], offset + k + 1);
}

/// Total order on finite f32 as u32 keys (negative values bit-inverted, positive ones with the sign
/// bit set). NaN-free input assumed; -0.0 sorts just below +0.0.
#[inline(always)]
fn f32_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline(always)]
fn f32_from_key(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
}

const RADIX_CHUNK: usize = 1 << 20;

/// Exact order statistics of f32 data by a two-level (16 + 16 bit) radix histogram: two parallel
/// linear passes instead of a sort or repeated selection (does not reorder `a`).
fn radix_order_statistics(a: &[f32], ks: &[usize]) -> Vec<f32> {
    use rayon::prelude::*;
    let hist_hi: Vec<u64> = a
        .par_chunks(RADIX_CHUNK)
        .fold(
            || vec![0u64; 1 << 16],
            |mut h, chunk| {
                for &x in chunk {
                    h[(f32_key(x) >> 16) as usize] += 1;
                }
                h
            },
        )
        .reduce(
            || vec![0u64; 1 << 16],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    // high bin and rank within the bin of every k
    let mut located = Vec::with_capacity(ks.len());
    let mut cum = 0u64;
    let mut bin = 0usize;
    for &k in ks {
        let k = k as u64;
        while cum + hist_hi[bin] <= k {
            cum += hist_hi[bin];
            bin += 1;
        }
        located.push((bin, k - cum));
    }
    let mut bins: Vec<usize> = located.iter().map(|l| l.0).collect();
    bins.dedup();
    let mut slot = vec![u8::MAX; 1 << 16];
    for (i, &b) in bins.iter().enumerate() {
        slot[b] = i as u8;
    }
    let nb = bins.len();
    let hist_lo: Vec<u64> = a
        .par_chunks(RADIX_CHUNK)
        .fold(
            || vec![0u64; nb << 16],
            |mut h, chunk| {
                for &x in chunk {
                    let k = f32_key(x);
                    let s = slot[(k >> 16) as usize];
                    if s != u8::MAX {
                        h[((s as usize) << 16) | (k & 0xffff) as usize] += 1;
                    }
                }
                h
            },
        )
        .reduce(
            || vec![0u64; nb << 16],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    located
        .iter()
        .map(|&(b, r)| {
            let s = bins.iter().position(|&x| x == b).unwrap_or(0);
            let h = &hist_lo[s << 16..(s + 1) << 16];
            let mut cum = 0u64;
            let mut lo = 0usize;
            while cum + h[lo] <= r {
                cum += h[lo];
                lo += 1;
            }
            f32_from_key(((b as u32) << 16) | lo as u32)
        })
        .collect()
}

/// `np.median` of a list of doubles (mean of the two middle values for an even count).
pub fn median_f64(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of an empty list");
    let mut v = values.to_vec();
    v.sort_by(cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (-0.0 + v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// min and max (NaN-free data).
pub fn min_max<T: NpFloat>(a: &[T]) -> (T, T) {
    let mut lo = a[0];
    let mut hi = a[0];
    for &x in a {
        if x < lo {
            lo = x;
        }
        if x > hi {
            hi = x;
        }
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Mt19937;

    /// `(np.random.RandomState(1234).randint(0, 1000000, n) / 7.0).astype(np.float32)`
    fn data(n: usize) -> Vec<f32> {
        let mut rs = Mt19937::new(1234);
        (0..n)
            .map(|_| (rs.randint(1_000_000) as f64 / 7.0) as f32)
            .collect()
    }

    // expected values from numpy 2.4.6
    #[test]
    #[allow(clippy::excessive_precision)] // the exact float32 results, as numpy printed them
    fn sums_match_numpy() {
        let a = data(100_003);
        assert_eq!(pairwise_sum(&a[..5]), 427013.875f32);
        assert_eq!(pairwise_sum(&a[..100]), 6865225.5f32);
        assert_eq!(pairwise_sum(&a[..1000]), 71850032.0f32);
        assert_eq!(pairwise_sum(&a), 7159327744.0f32);
        assert_eq!(mean(&a), 71591.1328125f32);
        assert_eq!(std(&a), 41167.234375f32);
    }

    #[test]
    fn percentiles_match_numpy() {
        let mut a = data(100_003);
        let p = percentiles(&mut a, &[0.5, 50.0, 99.5]);
        assert_eq!(p, vec![764.1585974121093, 71664.859375, 142168.37046875]);
    }

    #[test]
    fn radix_selection_equals_sorting() {
        let mut rs = Mt19937::new(7);
        let mut a: Vec<f32> = (0..50_000)
            .map(|_| (rs.randint(2001) as f32 - 1000.0) * 0.37)
            .collect();
        a.extend([0.0, -0.0, f32::MAX, f32::MIN, 1e-40, -1e-40]);
        let mut sorted = a.clone();
        sorted.sort_by(|x, y| x.partial_cmp(y).unwrap());
        let ks = [0, 1, 17, 25_000, 25_001, 49_999, a.len() - 1];
        let got = radix_order_statistics(&a, &ks);
        for (k, v) in ks.iter().zip(got) {
            assert_eq!(v, sorted[*k], "rank {k}");
        }
        let mut b: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let p32 = percentiles(&mut a, &[0.5, 50.0, 99.5]);
        let p64 = percentiles(&mut b, &[0.5, 50.0, 99.5]);
        assert_eq!(p32, p64);
    }

    #[test]
    fn median_of_doubles() {
        assert_eq!(median_f64(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_f64(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
