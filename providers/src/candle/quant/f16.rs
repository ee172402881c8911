//! IEEE half-precision conversions for block scales. GGUF stores them as raw
//! `u16` bits; both directions are exact ports of the usual bit-level
//! algorithms (round to nearest, ties to even), so the scalar kernels agree
//! with the F16C instructions the SIMD kernels use.

/// The `f32` value of half-precision bits (exact).
#[inline]
pub fn to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = (h >> 10) & 0x1f;
    let man = (h & 0x3ff) as u32;
    match exp {
        // Zero and subnormals: man × 2⁻²⁴, exact in f32.
        0 => sign * man as f32 * f32::from_bits(0x3380_0000),
        0x1f if man == 0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        _ => f32::from_bits(((h as u32 & 0x8000) << 16) | ((exp as u32 + 112) << 23) | (man << 13)),
    }
}

/// The nearest half-precision value to `x` (ties to even), as bits.
#[inline]
pub fn from_f32(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        let nan = if man != 0 { 0x0200 } else { 0 };
        return sign | 0x7c00 | nan | (man >> 13) as u16;
    }
    let half_exp = exp - 127 + 15;
    if half_exp >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exp <= 0 {
        // Subnormal half (or zero): shift the full mantissa into place.
        if 14 - half_exp > 24 {
            return sign;
        }
        let man = man | 0x0080_0000;
        let shift = (14 - half_exp) as u32;
        let mut half_man = man >> shift;
        let round_bit = 1u32 << (shift - 1);
        if man & round_bit != 0 && man & (3 * round_bit - 1) != 0 {
            half_man += 1;
        }
        return sign | half_man as u16;
    }
    let half = ((half_exp as u32) << 10) | (man >> 13);
    let round_bit = 0x1000u32;
    let rounded = if man & round_bit != 0 && man & (3 * round_bit - 1) != 0 {
        half + 1
    } else {
        half
    };
    sign | rounded as u16
}

/// `x` rounded to half precision and back.
#[inline]
pub fn round(x: f32) -> f32 {
    to_f32(from_f32(x))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn matches_candle_half_conversions() {
        let mut values = vec![
            0.0f32, -0.0, 1.0, -2.5, 65504.0, 65520.0, 1e-8, 6.1e-5, 5.96e-8,
        ];
        let mut x = 0x1234_5678u32;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Spread over many magnitudes, normals and subnormals of f16.
            let mantissa = (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            values.push(mantissa * 2f32.powi((x % 48) as i32 - 30));
        }
        let t = Tensor::new(values.as_slice(), &Device::Cpu).unwrap();
        let expected: Vec<f32> = t
            .to_dtype(DType::F16)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1())
            .unwrap();
        for (v, e) in values.iter().zip(expected) {
            assert_eq!(super::round(*v).to_bits(), e.to_bits(), "value {v:e}");
        }
    }
}
