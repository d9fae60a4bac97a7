//! numpy's legacy `RandomState` as far as nnU-Net's fingerprint needs it (planning spec §3.3):
//! MT19937 seeded with `init_genrand(seed)` and the masked-rejection bounded integers of
//! `RandomState.randint` / `RandomState.choice(a, k, replace=True)`.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// MT19937 with numpy's legacy integer seeding (`np.random.RandomState(seed)` for an int seed < 2^32).
#[derive(Clone)]
pub struct Mt19937 {
    mt: Box<[u32; N]>,
    idx: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937")
            .field("idx", &self.idx)
            .finish_non_exhaustive()
    }
}

impl Mt19937 {
    /// `init_genrand(seed)`, exactly what `RandomState(seed)` does for an integer seed.
    pub fn new(seed: u32) -> Self {
        let mut mt = Box::new([0u32; N]);
        mt[0] = seed;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { mt, idx: N }
    }

    #[inline(never)]
    fn generate(&mut self) {
        let mt = &mut *self.mt;
        #[inline(always)]
        fn twist(a: u32, b: u32, c: u32) -> u32 {
            let y = (a & UPPER_MASK) | (b & LOWER_MASK);
            c ^ (y >> 1) ^ ((y & 1).wrapping_neg() & MATRIX_A)
        }
        for k in 0..N - M {
            mt[k] = twist(mt[k], mt[k + 1], mt[k + M]);
        }
        for k in N - M..N - 1 {
            mt[k] = twist(mt[k], mt[k + 1], mt[k + M - N]);
        }
        mt[N - 1] = twist(mt[N - 1], mt[0], mt[M - 1]);
        self.idx = 0;
    }

    /// One `genrand_int32` output.
    #[inline(always)]
    pub fn next_u32(&mut self) -> u32 {
        if self.idx >= N {
            self.generate();
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// Legacy `randint(0, n)` for `1 <= n < 2^32` (masked rejection sampling). `n == 1` consumes nothing.
    /// (numpy takes a different path for `n == 2^32`; populations that large never occur here.)
    #[inline]
    pub fn randint(&mut self, n: u64) -> u64 {
        debug_assert!((1..1 << 32).contains(&n));
        let r = n - 1;
        if r == 0 {
            return 0;
        }
        let mask = mask_for(r) as u32;
        let r = r as u32;
        loop {
            let v = self.next_u32() & mask;
            if v <= r {
                return v as u64;
            }
        }
    }

    /// `rs.choice(values, k, replace=True)`: `k` values drawn with replacement (`values[randint(0, len, k)]`).
    /// Panics if `values` is empty or has 2^32 or more elements.
    pub fn choice_with_replacement<T: Copy>(&mut self, values: &[T], k: usize, out: &mut Vec<T>) {
        assert!(
            !values.is_empty() && (values.len() as u64) < 1 << 32,
            "choice from an empty or huge population"
        );
        out.reserve(k);
        let r = (values.len() - 1) as u32;
        if r == 0 {
            out.extend(std::iter::repeat_n(values[0], k));
            return;
        }
        let mask = mask_for(r as u64) as u32;
        for _ in 0..k {
            let v = loop {
                let v = self.next_u32() & mask;
                if v <= r {
                    break v;
                }
            };
            out.push(values[v as usize]);
        }
    }
}

#[inline]
fn mask_for(r: u64) -> u64 {
    let mut m = r;
    m |= m >> 1;
    m |= m >> 2;
    m |= m >> 4;
    m |= m >> 8;
    m |= m >> 16;
    m |= m >> 32;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed with numpy 2.4.6.
    #[test]
    fn randint_matches_numpy() {
        let mut rs = Mt19937::new(1234);
        let v: Vec<u64> = (0..10).map(|_| rs.randint(1000)).collect();
        assert_eq!(v, [815, 723, 294, 53, 204, 372, 664, 655, 689, 279]);
        // randint(0,1,3) consumes nothing, then randint(0,3,5)
        let mut rs = Mt19937::new(1234);
        let mut v: Vec<u64> = (0..3).map(|_| rs.randint(1)).collect();
        v.extend((0..5).map(|_| rs.randint(3)));
        assert_eq!(v, [0, 0, 0, 2, 1, 0, 0, 0]);
        let mut rs = Mt19937::new(1234);
        let v: Vec<u64> = (0..3).map(|_| rs.randint((1 << 31) - 1)).collect();
        assert_eq!(v, [822569775, 2137449171, 524453158]);
    }

    #[test]
    fn choice_matches_numpy() {
        // np.random.RandomState(1234).choice(np.arange(5, dtype=np.float32) * 1.5, 8)
        let pop: Vec<f32> = (0..5).map(|i| i as f32 * 1.5).collect();
        let mut out = Vec::new();
        Mt19937::new(1234).choice_with_replacement(&pop, 8, &mut out);
        assert_eq!(out, [4.5, 6.0, 6.0, 0.0, 1.5, 1.5, 1.5, 3.0]);
    }
}
