//! Sample tensors: `(channels, z, y, x)` in C order; 2D data is `(channels, 1, y, x)`.

/// A dense `(channels, shape[0], shape[1], shape[2])` tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    pub data: Vec<T>,
    pub channels: usize,
    pub shape: [usize; 3],
}

impl<T: Copy> Tensor<T> {
    pub fn new(data: Vec<T>, channels: usize, shape: [usize; 3]) -> Self {
        assert_eq!(data.len(), channels * shape[0] * shape[1] * shape[2], "tensor data length does not match its shape");
        Tensor { data, channels, shape }
    }

    pub fn filled(value: T, channels: usize, shape: [usize; 3]) -> Self {
        Tensor { data: vec![value; channels * shape[0] * shape[1] * shape[2]], channels, shape }
    }

    /// voxels per channel
    pub fn numel_spatial(&self) -> usize {
        self.shape[0] * self.shape[1] * self.shape[2]
    }

    pub fn channel(&self, c: usize) -> &[T] {
        let n = self.numel_spatial();
        &self.data[c * n..(c + 1) * n]
    }

    pub fn channel_mut(&mut self, c: usize) -> &mut [T] {
        let n = self.numel_spatial();
        &mut self.data[c * n..(c + 1) * n]
    }

    #[inline]
    pub fn at(&self, c: usize, z: usize, y: usize, x: usize) -> T {
        self.data[((c * self.shape[0] + z) * self.shape[1] + y) * self.shape[2] + x]
    }
}

/// One training sample flowing through the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// image `(c, z, y, x)`
    pub image: Tensor<f32>,
    /// working segmentation `(1, z, y, x)` (label values; −1 = outside / padding), or region channels (0/1) after
    /// `ConvertSegmentationToRegionsTransform`
    pub seg: Tensor<i16>,
    /// deep-supervision targets (full resolution first), filled by `DownsampleSegForDSTransform`; empty otherwise
    pub targets: Vec<Tensor<i16>>,
}

impl Sample {
    pub fn new(image: Tensor<f32>, seg: Tensor<i16>) -> Self {
        assert_eq!(image.shape, seg.shape, "image and segmentation must have the same spatial shape");
        Sample { image, seg, targets: Vec::new() }
    }

    /// the targets a loss sees: `targets` if DS downsampling ran, else the segmentation itself
    pub fn into_targets(self) -> Vec<Tensor<i16>> {
        if self.targets.is_empty() { vec![self.seg] } else { self.targets }
    }
}

/// Python `round()` on floats: half to even.
#[inline]
pub fn round_half_even(v: f64) -> f64 {
    v.round_ties_even()
}

/// Rounds an f32 to the nearest IEEE half-precision value (ties to even) and returns it as f32, like
/// `tensor.to(torch.float16)`.
pub fn round_to_f16(x: f32) -> f32 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let a = x.abs();
    if a >= 65520.0 {
        return f32::INFINITY.copysign(x);
    }
    let quantum = if a < 6.103_515_6e-5 {
        // subnormal half: spacing 2^-24
        5.960_464_5e-8_f32
    } else {
        let e = ((a.to_bits() >> 23) & 0xff) as i32 - 127;
        f32::from_bits(((e - 10 + 127) as u32) << 23)
    };
    ((a / quantum).round_ties_even() * quantum).copysign(x)
}

/// Rounds an f64 to the nearest IEEE half-precision value (ties to even) directly, without passing through f32, like
/// numpy's `astype(np.float16)` of a float64 array; returned as f32 (exact).
pub fn round_f64_to_f16(x: f64) -> f32 {
    if x == 0.0 || !x.is_finite() {
        return x as f32;
    }
    let a = x.abs();
    if a >= 65520.0 {
        return f32::INFINITY.copysign(x as f32);
    }
    let quantum = if a < 6.103_515_625e-5 {
        2f64.powi(-24) // subnormal half
    } else {
        let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        2f64.powi(e - 10)
    };
    ((a / quantum).round_ties_even() * quantum).copysign(x) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rounding_from_f64_has_no_double_rounding() {
        // 1 + 2^-11 + 2^-40: above the f16 tie, but f32 rounding first would land on the tie and round to even (1.0)
        let x = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(round_f64_to_f16(x), 1.0 + 2f32.powi(-10));
        assert_eq!(round_to_f16(x as f32), 1.0);
        for v in [500.1, 500.13, 500.125, -3.3e-6, 1.0e-7, 65519.0, 0.1, 2.0 - 1e-12, 1024.0] {
            assert_eq!(round_f64_to_f16(v), round_to_f16(v as f32), "{v}");
        }
        assert_eq!(round_f64_to_f16(70000.0), f32::INFINITY);
    }

    #[test]
    fn f16_rounding() {
        assert_eq!(round_to_f16(500.1), 500.0);
        assert_eq!(round_to_f16(500.13), 500.25);
        assert_eq!(round_to_f16(500.125), 500.0); // tie to even mantissa
        assert_eq!(round_to_f16(1000.3), 1000.5);
        assert_eq!(round_to_f16(1.0e-6), 17.0 * 5.960_464_5e-8); // 17 * 2^-24
        assert_eq!(round_to_f16(-3.0), -3.0);
    }
}
