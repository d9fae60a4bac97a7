//! A small seedable RNG (xoshiro256++ seeded through splitmix64).
//!
//! nnU-Net's augmentation is not deterministic (numpy/torch global RNGs in 12 worker processes); only the
//! distributions matter. This generator is fast, reproducible for a given seed, and can derive independent
//! streams (`Rng::derive`) so that batch `k` of a producer is the same whatever thread made it.

/// xoshiro256++ generator.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
    /// spare normal deviate from Box-Muller
    spare: Option<f64>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// Seeds the generator from one 64-bit value.
    pub fn new(seed: u64) -> Self {
        let mut st = seed;
        let s = [splitmix64(&mut st), splitmix64(&mut st), splitmix64(&mut st), splitmix64(&mut st)];
        Rng { s, spare: None }
    }

    /// An independent stream for `(seed, path...)`, e.g. `derive(seed, &[batch_index, sample_index])`.
    pub fn derive(seed: u64, path: &[u64]) -> Self {
        let mut st = seed ^ 0x6A09_E667_F3BC_C908;
        let mut h = splitmix64(&mut st);
        for &p in path {
            let mut t = h ^ p.wrapping_mul(0xD1B5_4A32_D192_ED03);
            h = splitmix64(&mut t);
        }
        Rng::new(h)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3])).rotate_left(23).wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn uniform01(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `np.random.uniform(a, b)`.
    #[inline]
    pub fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.uniform01()
    }

    /// `true` with probability `p` (`rand() < p`).
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform01() < p
    }

    /// Uniform integer in `[lo, hi)` (`np.random.randint(lo, hi)`); `lo` when the range is empty.
    pub fn randint(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let n = (hi - lo) as u64;
        // Lemire's nearly divisionless method with rejection: exactly uniform
        let mut m = (self.next_u64() as u128) * (n as u128);
        let mut l = m as u64;
        if l < n {
            let t = n.wrapping_neg() % n;
            while l < t {
                m = (self.next_u64() as u128) * (n as u128);
                l = m as u64;
            }
        }
        lo + (m >> 64) as i64
    }

    /// Uniform index in `[0, n)`; `n` must be > 0.
    pub fn choice(&mut self, n: usize) -> usize {
        self.randint(0, n as i64) as usize
    }

    /// Standard normal deviate (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = 1.0 - self.uniform01(); // (0, 1]
        let u2 = self.uniform01();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    /// Fills `out` with `N(0, sigma^2)` samples in f32 (fast path for GaussianNoiseTransform).
    pub fn fill_normal_f32(&mut self, out: &mut [f32], sigma: f32) {
        let mut chunks = out.chunks_exact_mut(2);
        for pair in &mut chunks {
            let u1 = 1.0 - (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32); // (0, 1]
            let u2 = (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32);
            let r = (-2.0 * u1.ln()).sqrt() * sigma;
            let (s, c) = (2.0 * std::f32::consts::PI * u2).sin_cos();
            pair[0] = r * c;
            pair[1] = r * s;
        }
        for v in chunks.into_remainder() {
            *v = self.normal() as f32 * sigma;
        }
    }

    /// batchgeneratorsv2 `BGContrast((lo, hi))`: with probability 0.5 (only if `lo < 1`) `U(lo, 1)`, else
    /// `U(max(lo, 1), hi)`.
    pub fn bg_contrast(&mut self, lo: f64, hi: f64) -> f64 {
        if self.uniform01() < 0.5 && lo < 1.0 { self.uniform(lo, 1.0) } else { self.uniform(lo.max(1.0), hi) }
    }
}

/// A random scalar parameter (batchgeneratorsv2 `RandomScalar` subset).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RandomScalar {
    /// a fixed value
    Const(f64),
    /// `np.random.uniform(a, b)` (a == b returns a)
    Uniform(f64, f64),
    /// `BGContrast((a, b))`
    BgContrast(f64, f64),
}

impl RandomScalar {
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        match *self {
            RandomScalar::Const(v) => v,
            RandomScalar::Uniform(a, b) => {
                if a == b {
                    a
                } else {
                    rng.uniform(a, b)
                }
            }
            RandomScalar::BgContrast(a, b) => rng.bg_contrast(a, b),
        }
    }
}
