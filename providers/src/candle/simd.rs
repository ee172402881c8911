//! f32 vector helpers for attention and f32 weights, with an AVX2/FMA path
//! chosen at run time (release builds may target baseline x86-64), and
//! the CPU feature check and lane sums the quantized kernels share.

/// Whether the AVX2 kernels can run here (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Whether the CPU also has AVX-512 VNNI with 256-bit forms (VL), for
/// the quantized tiles' byte dot products.
#[cfg(target_arch = "x86_64")]
pub fn has_vnni() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2() && is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
    })
}

/// The sum of the eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum256(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Σ a[i]·b[i] over the shorter length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::dot(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// y[i] += a·x[i].
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { avx2::axpy::<f32>(y, a, x) };
        return;
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Σ a[i]·b[i] with `b` in f16 (as bits); same lengths.
pub fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        return unsafe { avx2::dot_f16(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * f16_to_f32(*y)).sum()
}

/// y[i] += a·x[i] with `x` in f16 (as bits).
pub fn axpy_f16(y: &mut [f32], a: f32, x: &[u16]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        unsafe { avx2::axpy::<u16>(y, a, x) };
        return;
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * f16_to_f32(*x);
    }
}

/// Σ a[i]·x[i] with `x` in Q8_0: quants `q` and one f16 scale in `d` per
/// 32 values (`q.len() == 32 · d.len()`).
pub fn dot_q8(a: &[f32], q: &[i8], d: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        return unsafe { avx2::dot_q8(a, q, d) };
    }
    a.chunks_exact(32)
        .zip(q.chunks_exact(32))
        .zip(d)
        .map(|((a, q), d)| {
            let s: f32 = a.iter().zip(q).map(|(a, q)| a * f32::from(*q)).sum();
            s * f16_to_f32(*d)
        })
        .sum()
}

/// y[i] += a·x[i] with `x` in Q8_0 (see [`dot_q8`]).
pub fn axpy_q8(y: &mut [f32], a: f32, q: &[i8], d: &[u16]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        unsafe { avx2::axpy_q8(y, a, q, d) };
        return;
    }
    for ((y, q), d) in y.chunks_exact_mut(32).zip(q.chunks_exact(32)).zip(d) {
        let s = a * f16_to_f32(*d);
        for (y, q) in y.iter_mut().zip(q) {
            *y += s * f32::from(*q);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// A stored number type [`axpy`] widens to f32 lanes.
    pub trait Widen: Copy {
        /// Eight values at `p`, widened.
        ///
        /// # Safety
        /// Needs AVX2, FMA and F16C; 8 values readable at `p`.
        unsafe fn load8(p: *const Self) -> __m256;
        fn widen(self) -> f32;
    }

    impl Widen for f32 {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable values at `p`.
            unsafe { _mm256_loadu_ps(p) }
        }
        fn widen(self) -> f32 {
            self
        }
    }

    /// f16, as bits.
    impl Widen for u16 {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const u16) -> __m256 {
            // SAFETY: the caller guarantees 8 readable values at `p`.
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
        }
        fn widen(self) -> f32 {
            super::f16_to_f32(self)
        }
    }

    /// Σ a[i]·b[i] over the shorter length, with four accumulators.
    ///
    /// # Safety
    /// Needs AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8j + 8 <= n for both slices; unaligned loads.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(i + 8 * j)),
                        _mm256_loadu_ps(b.as_ptr().add(i + 8 * j)),
                    )
                };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices; unaligned loads.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                )
            };
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = super::hsum256(sum);
        for k in i..n {
            total += a[k] * b[k];
        }
        total
    }

    /// Σ a[i]·b[i] with `b` in f16, with two accumulators. (Its own
    /// summation order, not [`dot`]'s: the default model's greedy answers
    /// were measured with it.)
    ///
    /// # Safety
    /// Needs AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        while i + 16 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8j + 8 <= n for both slices.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(i + 8 * j)),
                        u16::load8(b.as_ptr().add(i + 8 * j)),
                    )
                };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 16;
        }
        let mut total = super::hsum256(_mm256_add_ps(acc[0], acc[1]));
        for k in i..n {
            total += a[k] * b[k].widen();
        }
        total
    }

    /// y[i] += a·x[i] over the shorter length.
    ///
    /// # Safety
    /// Needs AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy<T: Widen>(y: &mut [f32], a: f32, x: &[T]) {
        let n = y.len().min(x.len());
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices; unaligned loads and store.
            unsafe {
                let v = _mm256_fmadd_ps(
                    av,
                    T::load8(x.as_ptr().add(i)),
                    _mm256_loadu_ps(y.as_ptr().add(i)),
                );
                _mm256_storeu_ps(y.as_mut_ptr().add(i), v);
            }
            i += 8;
        }
        for k in i..n {
            y[k] += a * x[k].widen();
        }
    }

    /// Eight i8 values at `p`, widened.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_i8(p: *const i8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable values at `p`.
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
    }

    /// # Safety
    /// Needs AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8(a: &[f32], q: &[i8], d: &[u16]) -> f32 {
        let blocks = d.len().min(q.len() / 32).min(a.len() / 32);
        let mut total = _mm256_setzero_ps();
        for (b, scale) in d.iter().enumerate().take(blocks) {
            let mut acc = _mm256_setzero_ps();
            for j in 0..4 {
                let at = 32 * b + 8 * j;
                // SAFETY: at + 8 <= 32 · blocks, within `a` and `q`.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(at)),
                        load_i8(q.as_ptr().add(at)),
                    )
                };
                acc = _mm256_fmadd_ps(x, y, acc);
            }
            let scale = _mm256_set1_ps(super::f16_to_f32(*scale));
            total = _mm256_fmadd_ps(scale, acc, total);
        }
        super::hsum256(total)
    }

    /// # Safety
    /// Needs AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_q8(y: &mut [f32], a: f32, q: &[i8], d: &[u16]) {
        let blocks = d.len().min(q.len() / 32).min(y.len() / 32);
        for (b, d) in d.iter().enumerate().take(blocks) {
            let scale = _mm256_set1_ps(a * super::f16_to_f32(*d));
            for j in 0..4 {
                let at = 32 * b + 8 * j;
                // SAFETY: at + 8 <= 32 · blocks, within `y` and `q`.
                unsafe {
                    let v = _mm256_fmadd_ps(
                        scale,
                        load_i8(q.as_ptr().add(at)),
                        _mm256_loadu_ps(y.as_ptr().add(at)),
                    );
                    _mm256_storeu_ps(y.as_mut_ptr().add(at), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn f16_and_q8_kernels_match_plain_loops() {
        let n = 96;
        let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        let h: Vec<u16> = x
            .iter()
            .map(|v| half::f16::from_f32(*v).to_bits())
            .collect();
        let q: Vec<i8> = x.iter().map(|v| (v * 127.0).round() as i8).collect();
        let d = vec![half::f16::from_f32(1.0 / 127.0).to_bits(); n / 32];
        let exact: f32 = a.iter().zip(&x).map(|(a, x)| a * x).sum();
        assert!((super::dot_f16(&a, &h) - exact).abs() < 1e-2);
        assert!((super::dot_q8(&a, &q, &d) - exact).abs() < 5e-2);
        let (mut y1, mut y2) = (a.clone(), a.clone());
        super::axpy_f16(&mut y1, 0.5, &h);
        super::axpy_q8(&mut y2, 0.5, &q, &d);
        for i in 0..n {
            let want = a[i] + 0.5 * x[i];
            assert!(
                (y1[i] - want).abs() < 1e-3 && (y2[i] - want).abs() < 1e-2,
                "{i}"
            );
        }
        // The scalar paths agree with the SIMD ones.
        let plain_f16: f32 = a
            .iter()
            .zip(&h)
            .map(|(a, h)| a * super::f16_to_f32(*h))
            .sum();
        assert!((super::dot_f16(&a, &h) - plain_f16).abs() < 1e-4);
    }

    #[test]
    fn dot_and_axpy_match_plain_loops() {
        for n in [0usize, 1, 7, 8, 31, 32, 33, 64, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((super::dot(&a, &b) - plain).abs() < 1e-4, "n {n}");
            let mut y = b.clone();
            super::axpy(&mut y, 0.5, &a);
            for i in 0..n {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
            }
        }
    }
}
