//! One layer's KV cache: keys and values per position, `[position][kv
//! head][head_dim]`, stored as f32, f16 or Q8_0 (blocks of 32 values as
//! 8-bit integers with an f16 scale, as ggml's `q8_0`).
//!
//! The storage is [`Reserved`] for the whole context window, so the cache
//! is bounded by it, never reallocates, and costs memory only for the
//! positions it holds. f16 (the default) takes half of f32's memory, Q8_0
//! a little over a quarter; [`attend`](super::attention::attend) reads
//! every type through [`KvRows`].

use half::f16;

use super::reserved::Reserved;
pub use crate::candle::error::KvError;
use crate::candle::simd;
pub use crate::config::KvType;

/// Values per Q8_0 block.
pub const Q8_BLOCK: usize = 32;

/// Keys or values of every position.
enum Rows {
    F32(Reserved<f32>),
    F16(Reserved<u16>),
    Q8 { q: Reserved<i8>, d: Reserved<u16> },
}

impl Rows {
    fn new(kind: KvType, values: usize) -> std::io::Result<Rows> {
        Ok(match kind {
            KvType::F32 => Rows::F32(Reserved::new(values)?),
            KvType::F16 => Rows::F16(Reserved::new(values)?),
            KvType::Q8_0 => Rows::Q8 {
                q: Reserved::new(values)?,
                d: Reserved::new(values / Q8_BLOCK)?,
            },
        })
    }

    /// Makes the first `values` values writable; fails only when heap
    /// storage cannot grow.
    fn grow(&mut self, values: usize) -> Result<(), KvError> {
        match self {
            Rows::F32(r) => r.grow_to(values),
            Rows::F16(r) => r.grow_to(values),
            Rows::Q8 { q, d } => q
                .grow_to(values)
                .and_then(|()| d.grow_to(values / Q8_BLOCK)),
        }
        .map_err(KvError::Reserve)
    }

    /// Copies the first `values` values of `from` (stored alike).
    fn copy_from(&mut self, from: &Rows, values: usize) -> std::io::Result<()> {
        fn copy<T: super::reserved::Zeroable>(
            to: &mut Reserved<T>,
            from: &Reserved<T>,
            n: usize,
        ) -> std::io::Result<()> {
            to.grow_to(n)?;
            to.as_mut_slice()[..n].copy_from_slice(&from.as_slice()[..n]);
            Ok(())
        }
        match (self, from) {
            (Rows::F32(to), Rows::F32(from)) => copy(to, from, values),
            (Rows::F16(to), Rows::F16(from)) => copy(to, from, values),
            (Rows::Q8 { q, d }, Rows::Q8 { q: fq, d: fd }) => {
                copy(q, fq, values)?;
                copy(d, fd, values / Q8_BLOCK)
            }
            _ => Err(std::io::Error::other("KV rows are stored differently")),
        }
    }

    /// Stores `x` from value `at` on (grown to by [`Rows::grow`] first;
    /// growing again here is a no-op then).
    fn write(&mut self, at: usize, x: &[f32]) -> std::io::Result<()> {
        let end = at + x.len();
        match self {
            Rows::F32(r) => r.grow_to(end)?,
            Rows::F16(r) => r.grow_to(end)?,
            Rows::Q8 { q, d } => {
                q.grow_to(end)?;
                d.grow_to(end / Q8_BLOCK)?;
            }
        }
        match self {
            Rows::F32(r) => r.as_mut_slice()[at..at + x.len()].copy_from_slice(x),
            Rows::F16(r) => {
                for (o, v) in r.as_mut_slice()[at..at + x.len()].iter_mut().zip(x) {
                    *o = f16::from_f32(*v).to_bits();
                }
            }
            Rows::Q8 { q, d } => {
                let qs = &mut q.as_mut_slice()[at..at + x.len()];
                let ds = &mut d.as_mut_slice()[at / Q8_BLOCK..(at + x.len()) / Q8_BLOCK];
                for ((block, qb), d) in x
                    .chunks_exact(Q8_BLOCK)
                    .zip(qs.chunks_exact_mut(Q8_BLOCK))
                    .zip(ds)
                {
                    // ggml's quantize_row_q8_0.
                    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let scale = amax / 127.0;
                    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                    for (q, v) in qb.iter_mut().zip(block) {
                        *q = (v * inv).round() as i8;
                    }
                    *d = f16::from_f32(scale).to_bits();
                }
            }
        }
        Ok(())
    }

    fn release_from(&mut self, at: usize) {
        match self {
            Rows::F32(r) => r.release_from(at),
            Rows::F16(r) => r.release_from(at),
            Rows::Q8 { q, d } => {
                q.release_from(at);
                d.release_from(at / Q8_BLOCK);
            }
        }
    }

    fn view(&self) -> RowsView<'_> {
        match self {
            Rows::F32(r) => RowsView::F32(r.as_slice()),
            Rows::F16(r) => RowsView::F16(r.as_slice()),
            Rows::Q8 { q, d } => RowsView::Q8(q.as_slice(), d.as_slice()),
        }
    }
}

/// Read access to keys or values, for attention.
#[derive(Clone, Copy)]
pub enum RowsView<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    Q8(&'a [i8], &'a [u16]),
}

/// What attention needs of stored rows: a dot product with a stored
/// vector and adding a multiple of one. `at` is the vector's first value
/// and `n` its length (a Q8_0 vector starts on a block).
pub trait KvRows: Sync {
    fn dot(&self, q: &[f32], at: usize, n: usize) -> f32;
    fn axpy(&self, y: &mut [f32], a: f32, at: usize, n: usize);
}

/// f32 rows.
pub struct F32Rows<'a>(pub &'a [f32]);
/// f16 rows (as bits).
pub struct F16Rows<'a>(pub &'a [u16]);
/// Q8_0 rows: quants and one f16 scale per block.
pub struct Q8Rows<'a>(pub &'a [i8], pub &'a [u16]);

impl KvRows for F32Rows<'_> {
    fn dot(&self, q: &[f32], at: usize, n: usize) -> f32 {
        simd::dot(q, &self.0[at..at + n])
    }
    fn axpy(&self, y: &mut [f32], a: f32, at: usize, n: usize) {
        simd::axpy(y, a, &self.0[at..at + n]);
    }
}

impl KvRows for F16Rows<'_> {
    fn dot(&self, q: &[f32], at: usize, n: usize) -> f32 {
        simd::dot_f16(q, &self.0[at..at + n])
    }
    fn axpy(&self, y: &mut [f32], a: f32, at: usize, n: usize) {
        simd::axpy_f16(y, a, &self.0[at..at + n]);
    }
}

impl KvRows for Q8Rows<'_> {
    fn dot(&self, q: &[f32], at: usize, n: usize) -> f32 {
        let d = &self.1[at / Q8_BLOCK..(at + n) / Q8_BLOCK];
        simd::dot_q8(q, &self.0[at..at + n], d)
    }
    fn axpy(&self, y: &mut [f32], a: f32, at: usize, n: usize) {
        let d = &self.1[at / Q8_BLOCK..(at + n) / Q8_BLOCK];
        simd::axpy_q8(y, a, &self.0[at..at + n], d);
    }
}

/// One layer's keys and values.
pub struct KvCache {
    kind: KvType,
    /// Values per position: KV heads × head width.
    width: usize,
    /// Positions the context window holds.
    capacity: usize,
    len: usize,
    /// `None` until the first position is written, and after `clear`.
    kv: Option<(Rows, Rows)>,
}

impl KvCache {
    /// An empty cache of `capacity` positions of `width` values. Q8_0
    /// falls back to f16 when `head_dim` is not a multiple of its block.
    pub fn new(kind: KvType, width: usize, head_dim: usize, capacity: usize) -> KvCache {
        let kind = if kind == KvType::Q8_0 && !head_dim.is_multiple_of(Q8_BLOCK) {
            KvType::F16
        } else {
            kind
        };
        KvCache {
            kind,
            width,
            capacity,
            len: 0,
            kv: None,
        }
    }

    pub fn kind(&self) -> KvType {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes the stored positions take.
    pub fn bytes(&self) -> u64 {
        (self.len as f64 * self.width as f64 * 2.0 * self.kind.bytes_per_value()) as u64
    }

    /// Makes room for `more` positions after the stored ones, so that
    /// appending them cannot fail: the context window must hold them and
    /// the storage must grow (it only can fail on the heap fallback).
    pub fn reserve(&mut self, more: usize) -> Result<(), KvError> {
        let end = self.len + more;
        if end > self.capacity {
            return Err(KvError::Full {
                capacity: self.capacity,
            });
        }
        let values = end * self.width;
        let (ks, vs) = self.rows()?;
        ks.grow(values)?;
        vs.grow(values)?;
        Ok(())
    }

    /// The storage, created on first use.
    fn rows(&mut self) -> Result<&mut (Rows, Rows), KvError> {
        if self.kv.is_none() {
            let values = self.capacity * self.width;
            let keys = Rows::new(self.kind, values).map_err(KvError::Reserve)?;
            let vals = Rows::new(self.kind, values).map_err(KvError::Reserve)?;
            self.kv = Some((keys, vals));
        }
        Ok(self.kv.as_mut().expect("created above"))
    }

    /// Appends the keys and values of `k.len() / width` positions.
    pub fn append(&mut self, k: &[f32], v: &[f32]) -> Result<(), KvError> {
        let positions = k.len() / self.width;
        self.reserve(positions)?;
        let at = self.len * self.width;
        let (ks, vs) = self.rows()?;
        ks.write(at, k).map_err(KvError::Reserve)?;
        vs.write(at, v).map_err(KvError::Reserve)?;
        self.len += positions;
        Ok(())
    }

    /// A new cache holding a copy of this one's first `positions`
    /// positions (what a later request sharing the prefix starts from).
    pub fn copy_prefix(&self, positions: usize) -> Result<KvCache, KvError> {
        let positions = positions.min(self.len);
        let mut copy = KvCache {
            kind: self.kind,
            width: self.width,
            capacity: self.capacity,
            len: 0,
            kv: None,
        };
        if let (Some((k, v)), true) = (&self.kv, positions > 0) {
            let values = positions * self.width;
            let (ck, cv) = copy.rows()?;
            ck.copy_from(k, values).map_err(KvError::Reserve)?;
            cv.copy_from(v, values).map_err(KvError::Reserve)?;
            copy.len = positions;
        }
        Ok(copy)
    }

    /// Keeps the first `positions` positions, returning the memory of the
    /// rest to the OS.
    pub fn truncate(&mut self, positions: usize) {
        if positions >= self.len {
            return;
        }
        self.len = positions;
        if let Some((k, v)) = &mut self.kv {
            k.release_from(positions * self.width);
            v.release_from(positions * self.width);
        }
    }

    /// Keys and values for attention.
    pub fn views(&self) -> Option<(RowsView<'_>, RowsView<'_>)> {
        self.kv.as_ref().map(|(k, v)| (k.view(), v.view()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seed: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 + seed) * 0.731).sin() * 3.0)
            .collect()
    }

    #[test]
    fn every_type_reads_back_what_was_written_within_its_precision() {
        let (width, head_dim) = (128, 64);
        for (kind, tolerance) in [
            (KvType::F32, 1e-6),
            (KvType::F16, 2e-3),
            (KvType::Q8_0, 0.02),
        ] {
            let mut cache = KvCache::new(kind, width, head_dim, 8);
            let (k, v) = (row(1.0, 2 * width), row(7.0, 2 * width));
            cache.append(&k, &v).unwrap();
            assert_eq!(cache.len(), 2);
            let q = row(3.0, head_dim);
            let (kv, vv) = cache.views().unwrap();
            let rows: Box<dyn KvRows> = match kv {
                RowsView::F32(r) => Box::new(F32Rows(r)),
                RowsView::F16(r) => Box::new(F16Rows(r)),
                RowsView::Q8(q, d) => Box::new(Q8Rows(q, d)),
            };
            for at in [0, head_dim, width, width + head_dim] {
                let exact: f32 = q
                    .iter()
                    .zip(&k[at..at + head_dim])
                    .map(|(a, b)| a * b)
                    .sum();
                let got = rows.dot(&q, at, head_dim);
                let scale: f32 = q.iter().map(|v| v.abs()).sum::<f32>() * 3.0;
                assert!(
                    (got - exact).abs() <= tolerance * scale,
                    "{kind}: {got} vs {exact}"
                );
            }
            assert!(matches!(
                (kind, vv),
                (KvType::F32, RowsView::F32(_))
                    | (KvType::F16, RowsView::F16(_))
                    | (KvType::Q8_0, RowsView::Q8(..))
            ));
        }
    }

    /// Under an address-space limit below the context window the cache
    /// falls back to the heap and still works. Runs in a child process
    /// of this test binary: the limit would starve the other tests.
    #[cfg(target_os = "linux")]
    #[test]
    fn under_an_address_space_limit_the_cache_falls_back_to_the_heap() {
        use super::super::reserved::Reserved;
        const CHILD: &str = "SKILLKERNEL_KV_RLIMIT_CHILD";
        const NAME: &str = "under_an_address_space_limit_the_cache_falls_back_to_the_heap";
        if std::env::var_os(CHILD).is_none() {
            let module = module_path!().split_once("::").map_or("", |(_, m)| m);
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", &format!("{module}::{NAME}"), "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("heap fallback works"),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let vm_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmSize in /proc/self/status");
        let limit = (vm_kib + 256 * 1024) * 1024;
        let rlimit = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: setrlimit reads the struct; this process is the child.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);
        // The limit bites: a 1 GiB reservation is refused, while a 4 MiB
        // one is still mapped (the positive control).
        assert!(Reserved::<f32>::new(1 << 28).unwrap().is_on_heap());
        assert!(!Reserved::<f32>::new(1 << 20).unwrap().is_on_heap());
        // A window of 1 GiB of f16 keys (and as much for values).
        let width = 256;
        let mut cache = KvCache::new(KvType::F16, width, 64, (1 << 30) / (2 * width));
        let (k, v) = (row(1.0, 3 * width), row(2.0, 3 * width));
        cache.append(&k, &v).unwrap();
        cache.append(&k[..width], &v[..width]).unwrap();
        assert_eq!(cache.len(), 4);
        let Some((RowsView::F16(keys), _)) = cache.views() else {
            panic!("f16 rows");
        };
        let q = row(3.0, 64);
        let dot = |x: &[f32]| -> f32 { q.iter().zip(x).map(|(a, b)| a * b).sum() };
        // Position 1 is the second row of `k`, position 3 its first again.
        for (at, exact) in [(width, dot(&k[width..])), (3 * width, dot(&k[..64]))] {
            let got = F16Rows(keys).dot(&q, at, 64);
            assert!(
                (got - exact).abs() < 0.05 * exact.abs().max(1.0),
                "{got} vs {exact}"
            );
        }
        cache.truncate(1);
        assert_eq!(cache.len(), 1);
        println!("heap fallback works");
    }

    #[test]
    fn the_context_window_bounds_the_cache_and_a_copy_holds_its_prefix() {
        let mut cache = KvCache::new(KvType::Q8_0, 64, 64, 3);
        let x = row(0.0, 64 * 2);
        cache.append(&x, &x).unwrap();
        assert!(cache.append(&x, &x).is_err(), "4 positions do not fit in 3");
        assert_eq!(cache.len(), 2);
        cache.truncate(1);
        assert_eq!((cache.len(), cache.bytes()), (1, 136));
        let copy = cache.copy_prefix(1).unwrap();
        assert_eq!(
            (copy.len(), copy.bytes(), copy.kind()),
            (1, 136, KvType::Q8_0)
        );
        let (RowsView::Q8(q, d), RowsView::Q8(cq, cd)) =
            (cache.views().unwrap().0, copy.views().unwrap().0)
        else {
            panic!("stored as Q8_0");
        };
        assert_eq!((&q[..64], &d[..2]), (&cq[..64], &cd[..2]));
        assert!(KvCache::new(KvType::F16, 64, 64, 3)
            .copy_prefix(0)
            .unwrap()
            .views()
            .is_none());
        assert_eq!(KvCache::new(KvType::Q8_0, 48, 48, 4).kind(), KvType::F16);
    }
}
