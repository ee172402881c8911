//! The AVX2 tile kernels the 32-value block types share, written once as
//! macros: each type only says how a block unpacks into 32 bytes.
//!
//! Both follow ggml: int8 × int8 products go through `maddubs` (unsigned ×
//! signed, pairs summed to i16) and `madd` (pairs summed to i32), widened
//! to f32 and accumulated scaled by the two blocks' scales. The 32-value
//! tiles come twice, from one body: `avx2`, and `vnni`, where AVX-512
//! VNNI's `vpdpbusd` does `maddubs` + `madd` in one instruction with the
//! same result (a 4-row tile is bound by that arithmetic, so batched
//! generations gain most).

/// `avx2::tile::<R>` for a block with an f16 scale `d` whose 32 values
/// unpack to signed bytes (`$unpack(&block) -> __m256i`, an unsafe AVX2
/// function): Q4_0, Q5_0, Q8_0. The weight's sign moves onto the
/// activation so `maddubs` sees an unsigned operand.
macro_rules! signed_tile {
    ($block:ident, $unpack:path) => {
        signed_tile!(@module avx2, "avx2,fma,f16c", udot_avx2, $block, $unpack);
        signed_tile!(@module vnni, "avx2,fma,f16c,avx512vnni,avx512vl", udot_vnni, $block, $unpack);
    };
    (@module $module:ident, $features:literal, $udot:ident, $block:ident, $unpack:path) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use std::arch::x86_64::*;

            use super::super::tiles::$udot as udot;
            use super::super::{hsum256, BlockQ8};
            use super::$block;

            /// `R` activation rows against every weight row.
            ///
            /// # Safety
            /// Needs the CPU features this module is compiled for; `acts`
            /// holds `R * kb` blocks, `w` a multiple of `kb`, `out` at
            /// least `R` per weight row.
            #[target_feature(enable = $features)]
            pub unsafe fn tile<const R: usize>(
                w: &[$block],
                kb: usize,
                acts: &[BlockQ8],
                out: &mut [f32],
            ) {
                for (j, row) in w.chunks_exact(kb).enumerate() {
                    let mut acc = [_mm256_setzero_ps(); R];
                    for (b, x) in row.iter().enumerate() {
                        let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(x.d as i32)));
                        // SAFETY: the caller's CPU has AVX2 (this function's contract).
                        let qx = unsafe { $unpack(x) };
                        let ax = _mm256_sign_epi8(qx, qx);
                        for (r, acc) in acc.iter_mut().enumerate() {
                            // SAFETY: acts has R * kb blocks and b < kb.
                            let y = unsafe { acts.get_unchecked(r * kb + b) };
                            // SAFETY: `qs` is 32 bytes; unaligned load.
                            let qy = unsafe { _mm256_loadu_si256(y.qs.as_ptr().cast()) };
                            let sy = _mm256_sign_epi8(qy, qx);
                            let pairs = udot(ax, sy);
                            *acc = _mm256_fmadd_ps(
                                _mm256_set1_ps(d * y.d),
                                _mm256_cvtepi32_ps(pairs),
                                *acc,
                            );
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        // SAFETY: out holds R values per weight row (caller's contract).
                        unsafe { *out.get_unchecked_mut(j * R + r) = hsum256(*acc) };
                    }
                }
            }
        }
    };
}

/// `avx2::tile::<R>` for a block with f16 `d` and minimum `m` whose 32
/// values unpack to unsigned bytes (value = d·q + m): Q4_1, Q5_1. The
/// m·s terms (s = d·Σq of the activation block) are summed apart.
macro_rules! min_tile {
    ($block:ident, $unpack:path) => {
        min_tile!(@module avx2, "avx2,fma,f16c", udot_avx2, $block, $unpack);
        min_tile!(@module vnni, "avx2,fma,f16c,avx512vnni,avx512vl", udot_vnni, $block, $unpack);
    };
    (@module $module:ident, $features:literal, $udot:ident, $block:ident, $unpack:path) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use std::arch::x86_64::*;

            use super::super::tiles::$udot as udot;
            use super::super::{hsum256, BlockQ8};
            use super::$block;

            /// `R` activation rows against every weight row.
            ///
            /// # Safety
            /// Needs the CPU features this module is compiled for; `acts`
            /// holds `R * kb` blocks, `w` a multiple of `kb`, `out` at
            /// least `R` per weight row.
            #[target_feature(enable = $features)]
            pub unsafe fn tile<const R: usize>(
                w: &[$block],
                kb: usize,
                acts: &[BlockQ8],
                out: &mut [f32],
            ) {
                for (j, row) in w.chunks_exact(kb).enumerate() {
                    let mut acc = [_mm256_setzero_ps(); R];
                    let mut acc_ms = [_mm_setzero_ps(); R];
                    for (b, x) in row.iter().enumerate() {
                        // [d, m] of the weight block, widened from f16.
                        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(
                            (x.d as u32 | ((x.m as u32) << 16)) as i32,
                        ));
                        // SAFETY: the caller's CPU has AVX2 (this function's contract).
                        let qx = unsafe { $unpack(x) };
                        for (r, (acc, acc_ms)) in acc.iter_mut().zip(acc_ms.iter_mut()).enumerate()
                        {
                            // SAFETY: acts has R * kb blocks and b < kb.
                            let y = unsafe { acts.get_unchecked(r * kb + b) };
                            // [dy, s] of the activation block: its first 8 bytes.
                            // SAFETY: BlockQ8 starts with two f32; unaligned 8-byte load.
                            let ds = _mm_castsi128_ps(unsafe {
                                _mm_loadl_epi64((y as *const BlockQ8).cast())
                            });
                            let prod = _mm_mul_ps(dm, ds); // [d·dy, m·s, 0, 0]
                            *acc_ms = _mm_add_ps(*acc_ms, prod);
                            // SAFETY: `qs` is 32 bytes; unaligned load.
                            let qy = unsafe { _mm256_loadu_si256(y.qs.as_ptr().cast()) };
                            let pairs = udot(qx, qy);
                            *acc = _mm256_fmadd_ps(
                                _mm256_broadcastss_ps(prod),
                                _mm256_cvtepi32_ps(pairs),
                                *acc,
                            );
                        }
                    }
                    for r in 0..R {
                        let ms = _mm_cvtss_f32(_mm_movehdup_ps(acc_ms[r]));
                        // SAFETY: out holds R values per weight row (caller's contract).
                        unsafe { *out.get_unchecked_mut(j * R + r) = hsum256(acc[r]) + ms };
                    }
                }
            }
        }
    };
}

/// `avx2::tile::<R>` for a K-quant super-block with per-32 scales and
/// minimums (value = d·sc·q − dmin·m): Q4_K, Q5_K. `$unpack(&block, c)`
/// gives the unsigned values of its `c`-th 64 as two vectors of 32. Per
/// 64 values: unpacked once, `maddubs` against each activation row,
/// `madd` with the sub-block scale; the minimum term comes from the
/// activation's partial sums.
macro_rules! mins_k_tile {
    ($block:ident, $unpack:path) => {
        #[cfg(target_arch = "x86_64")]
        mod avx2 {
            use std::arch::x86_64::*;

            use super::super::q4_k::scales_mins;
            use super::super::tiles::{hsum128, min_lanes};
            use super::super::{hsum256, BlockQ8K};
            use super::$block;

            /// `R` activation rows against every weight row.
            ///
            /// # Safety
            /// Needs AVX2, FMA and F16C; `acts` holds `R * kb` blocks, `w`
            /// a multiple of `kb`, `out` at least `R` per weight row.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub unsafe fn tile<const R: usize>(
                w: &[$block],
                kb: usize,
                acts: &[BlockQ8K],
                out: &mut [f32],
            ) {
                for (j, row) in w.chunks_exact(kb).enumerate() {
                    let mut acc = [_mm256_setzero_ps(); R];
                    let mut acc_m = [_mm_setzero_ps(); R];
                    for (b, x) in row.iter().enumerate() {
                        let (sc, mn) = scales_mins(&x.scales);
                        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(
                            (x.d as u32 | ((x.dmin as u32) << 16)) as i32,
                        ));
                        let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
                        let mins = _mm_cvtepu8_epi16(_mm_set_epi64x(0, i64::from_le_bytes(mn)));
                        let mut sumi = [_mm256_setzero_si256(); R];
                        for c in 0..4 {
                            // SAFETY: the CPU has AVX2 (this function's contract), c < 4.
                            let (lo, hi) = unsafe { $unpack(x, c) };
                            let s_lo = _mm256_set1_epi16(sc[2 * c] as i16);
                            let s_hi = _mm256_set1_epi16(sc[2 * c + 1] as i16);
                            for (r, sumi) in sumi.iter_mut().enumerate() {
                                // SAFETY: acts has R * kb blocks and b < kb.
                                let y = unsafe { acts.get_unchecked(r * kb + b) };
                                // SAFETY: `qs` is 256 bytes and c < 4; unaligned loads.
                                let (yl, yh) = unsafe {
                                    (
                                        _mm256_loadu_si256(y.qs.as_ptr().add(64 * c).cast()),
                                        _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32).cast()),
                                    )
                                };
                                let pl = _mm256_madd_epi16(s_lo, _mm256_maddubs_epi16(lo, yl));
                                let ph = _mm256_madd_epi16(s_hi, _mm256_maddubs_epi16(hi, yh));
                                *sumi = _mm256_add_epi32(*sumi, _mm256_add_epi32(pl, ph));
                            }
                        }
                        for r in 0..R {
                            // SAFETY: acts has R * kb blocks and b < kb.
                            let y = unsafe { acts.get_unchecked(r * kb + b) };
                            // SAFETY: the CPU has AVX2 (this function's contract).
                            let m = unsafe { min_lanes(mins, y) };
                            acc_m[r] = _mm_fmadd_ps(
                                _mm_set1_ps(-dmin * y.d),
                                _mm_cvtepi32_ps(m),
                                acc_m[r],
                            );
                            acc[r] = _mm256_fmadd_ps(
                                _mm256_set1_ps(d * y.d),
                                _mm256_cvtepi32_ps(sumi[r]),
                                acc[r],
                            );
                        }
                    }
                    for r in 0..R {
                        let v = hsum256(acc[r]) + hsum128(acc_m[r]);
                        // SAFETY: out holds R values per weight row (caller's contract).
                        unsafe { *out.get_unchecked_mut(j * R + r) = v };
                    }
                }
            }
        }
    };
}

/// The sum of four lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn hsum128(s: std::arch::x86_64::__m128) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The minimum term of one K-quant super-block for one activation row,
/// as four i32 lanes: the eight minimums (`mins`, widened to i16) times
/// the activation sums of their 32 values.
///
/// # Safety
/// Needs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn min_lanes(
    mins: std::arch::x86_64::__m128i,
    y: &super::BlockQ8K,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    // SAFETY: `bsums` is 16 i16 = 32 bytes; unaligned load.
    let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
    let sums = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    _mm_madd_epi16(mins, sums)
}

/// `Block::AVX2` for a type whose tile came from one of the macros.
macro_rules! avx2_tiles {
    () => {
        #[cfg(target_arch = "x86_64")]
        const AVX2: [super::Avx2Tile<Self>; 4] = [
            avx2::tile::<1>,
            avx2::tile::<2>,
            avx2::tile::<3>,
            avx2::tile::<4>,
        ];
    };
    (vnni) => {
        avx2_tiles!();
        #[cfg(target_arch = "x86_64")]
        const VNNI: Option<[super::Avx2Tile<Self>; 4]> = Some([
            vnni::tile::<1>,
            vnni::tile::<2>,
            vnni::tile::<3>,
            vnni::tile::<4>,
        ]);
    };
}

/// Unsigned bytes `x` times signed bytes `y`, each four neighbours summed
/// to an i32: `maddubs` then `madd` (AVX2). Exact here: the tiles'
/// operands never reach `maddubs`'s i16 saturation (x ≤ 128, |y| ≤ 127).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn udot_avx2(
    x: std::arch::x86_64::__m256i,
    y: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// [`udot_avx2`] in one instruction (`vpdpbusd`, AVX-512 VNNI and VL),
/// with the same result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
#[inline]
pub(super) fn udot_vnni(
    x: std::arch::x86_64::__m256i,
    y: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
}

/// The 32 nibbles of 16 bytes as bytes, ggml's order: byte `j` holds
/// element `j` in its low nibble and element `j + 16` in its high one.
///
/// # Safety
/// Needs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn nibbles(qs: &[u8; 16]) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // SAFETY: `qs` is 16 bytes; unaligned load.
    let raw = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
        _mm256_set1_epi8(0x0f),
    )
}

/// 32 bits as 32 bytes: 0xFF where the bit is set (ggml's
/// `bytes_from_bits_32`).
///
/// # Safety
/// Needs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn bits_to_bytes(bits: u32) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let shuffle = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuffle);
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1))
}
