//! Memory reserved for a whole context window but paid for page by page.
//!
//! A KV cache sized for the context window up front never reallocates (no
//! copy, no moment with two caches alive), yet costs resident memory only
//! for the positions written: the mapping is anonymous and `MAP_NORESERVE`,
//! so the OS commits a page when it is first touched. Truncating hands the
//! pages past the new end back, and dropping unmaps the lot — the memory
//! really returns to the OS, which freeing a `Vec` through malloc does not
//! promise.
//!
//! Where the address space cannot be had (strict overcommit, which
//! ignores `MAP_NORESERVE`; an `RLIMIT_AS` under the window's size), the
//! storage falls back to a heap vector grown as positions are written:
//! slower to grow and less prompt to give memory back, but the model runs.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

/// Up to `capacity` elements of `T`, zero until written. `T` is a plain
/// number type, for which all-zero bytes are a value.
pub struct Reserved<T: Copy> {
    backing: Backing<T>,
    capacity: usize,
}

enum Backing<T> {
    /// An anonymous private mapping of the whole capacity.
    Mapped {
        ptr: *mut T,
        bytes: usize,
        _owns: PhantomData<T>,
    },
    /// The fallback: as long as what was written.
    Heap(Vec<T>),
}

// SAFETY: `Reserved` owns its mapping outright, like a `Box<[T]>`.
unsafe impl<T: Copy + Send> Send for Reserved<T> {}
// SAFETY: shared access only reads.
unsafe impl<T: Copy + Sync> Sync for Reserved<T> {}

/// Plain numbers whose all-zero bytes are a valid value (their default).
pub trait Zeroable: Copy + Default {}
impl Zeroable for f32 {}
impl Zeroable for u16 {}
impl Zeroable for i8 {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| *s > 0)
        .unwrap_or(4096)
}

/// Whether the fallback was announced (once per process is enough).
static FELL_BACK: AtomicBool = AtomicBool::new(false);

impl<T: Zeroable> Reserved<T> {
    /// Room for `capacity` elements: address space only, or failing that
    /// a heap vector that grows with [`Reserved::grow_to`].
    pub fn new(capacity: usize) -> std::io::Result<Self> {
        let bytes = capacity
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| std::io::Error::other("KV cache size overflows"))?;
        if bytes == 0 {
            return Ok(Self::on_heap(capacity));
        }
        match map(bytes) {
            Ok(ptr) => Ok(Reserved {
                backing: Backing::Mapped {
                    ptr: ptr.cast(),
                    bytes,
                    _owns: PhantomData,
                },
                capacity,
            }),
            Err(e) => {
                if !FELL_BACK.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        bytes,
                        "cannot reserve address space for the KV cache ({e}); \
                         using heap memory that grows with the cache"
                    );
                }
                Ok(Self::on_heap(capacity))
            }
        }
    }

    /// The fallback storage, empty.
    pub fn on_heap(capacity: usize) -> Self {
        Reserved {
            backing: Backing::Heap(Vec::new()),
            capacity,
        }
    }

    /// Whether this is the heap fallback.
    #[cfg(test)]
    pub fn is_on_heap(&self) -> bool {
        matches!(self.backing, Backing::Heap(_))
    }

    /// Makes the first `len` elements (at most the capacity) available.
    /// On the heap this allocates, doubling but never past the capacity;
    /// an allocation the system refuses is an error, not an abort.
    pub fn grow_to(&mut self, len: usize) -> std::io::Result<()> {
        let Backing::Heap(v) = &mut self.backing else {
            return Ok(());
        };
        let len = len.min(self.capacity);
        if v.len() >= len {
            return Ok(());
        }
        if v.capacity() < len {
            let doubled = len.max(v.capacity().saturating_mul(2)).min(self.capacity);
            if v.try_reserve_exact(doubled - v.len()).is_err() {
                v.try_reserve_exact(len - v.len()).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::OutOfMemory, e.to_string())
                })?;
            }
        }
        v.resize(len, T::default());
        Ok(())
    }

    /// The elements available: the whole capacity when mapped, what was
    /// grown to on the heap.
    pub fn as_slice(&self) -> &[T] {
        match &self.backing {
            // SAFETY: the mapping holds `capacity` zero-initialised (or
            // written) elements of a type valid for any bytes, and lives
            // as long as `self`; page alignment satisfies `T`'s alignment.
            Backing::Mapped { ptr, .. } => unsafe {
                std::slice::from_raw_parts(*ptr, self.capacity)
            },
            Backing::Heap(v) => v,
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match &mut self.backing {
            // SAFETY: as `as_slice`, with `&mut self` making this the only view.
            Backing::Mapped { ptr, .. } => unsafe {
                std::slice::from_raw_parts_mut(*ptr, self.capacity)
            },
            Backing::Heap(v) => v,
        }
    }

    /// Returns the whole pages from element `from` on to the OS; they read
    /// as zeros afterwards.
    pub fn release_from(&mut self, from: usize) {
        let (ptr, bytes) = match &mut self.backing {
            Backing::Mapped { ptr, bytes, .. } => (*ptr, *bytes),
            Backing::Heap(v) => {
                v.truncate(from);
                v.shrink_to_fit();
                return;
            }
        };
        let page = page_size();
        let start = (from * std::mem::size_of::<T>()).div_ceil(page) * page;
        if start >= bytes {
            return;
        }
        // SAFETY: [start, bytes) lies inside our own mapping; any views of
        // it are borrowed from `self`, which `&mut self` excludes.
        let released = unsafe { release(ptr.cast::<u8>().add(start), bytes - start) };
        if let Err(e) = released {
            tracing::debug!("releasing KV cache pages failed: {e}");
        }
    }
}

/// A fresh anonymous mapping of `bytes`, committed page by page.
fn map(bytes: usize) -> std::io::Result<*mut libc::c_void> {
    #[cfg(target_os = "linux")]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    #[cfg(not(target_os = "linux"))]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANON;
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // With transparent huge pages always on, the first touch would commit
    // 2 MiB per mapping (two or four per layer): the cache must grow by
    // small pages to be paid for by position.
    #[cfg(target_os = "linux")]
    // SAFETY: advice on the mapping just made; it changes no contents.
    unsafe {
        libc::madvise(ptr, bytes, libc::MADV_NOHUGEPAGE)
    };
    Ok(ptr)
}

/// Hands `len` bytes of our mapping at `at` back to the OS, reading as
/// zeros afterwards.
///
/// # Safety
/// `[at, at + len)` is page-aligned, inside a private anonymous mapping
/// of ours, and not borrowed.
unsafe fn release(at: *mut u8, len: usize) -> std::io::Result<()> {
    // Linux frees private anonymous pages at once on MADV_DONTNEED. macOS
    // and the BSDs only mark them reclaimable (RSS stays), so there the
    // range is mapped afresh over itself, which frees the old pages now.
    #[cfg(target_os = "linux")]
    let failed = unsafe { libc::madvise(at.cast(), len, libc::MADV_DONTNEED) } != 0;
    #[cfg(not(target_os = "linux"))]
    let failed = unsafe {
        libc::mmap(
            at.cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANON | libc::MAP_FIXED,
            -1,
            0,
        )
    } == libc::MAP_FAILED;
    // A failed MAP_FIXED may leave the range unmapped, and the cache would
    // then write into nothing: stop rather than corrupt.
    #[cfg(not(target_os = "linux"))]
    if failed {
        eprintln!(
            "fatal: remapping KV cache pages failed: {}",
            std::io::Error::last_os_error()
        );
        std::process::abort();
    }
    if failed {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl<T: Copy> Drop for Reserved<T> {
    fn drop(&mut self) {
        if let Backing::Mapped { ptr, bytes, .. } = self.backing {
            // SAFETY: the mapping is ours and nothing borrows it any more.
            unsafe { libc::munmap(ptr.cast(), bytes) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_memory_reads_zero_keeps_writes_and_zeroes_released_pages() {
        let mut r = Reserved::<f32>::new(100_000).unwrap();
        assert!(r.as_slice().iter().all(|v| *v == 0.0));
        r.as_mut_slice()[5] = 1.5;
        r.as_mut_slice()[90_000] = 2.5;
        r.release_from(50_000);
        assert_eq!(r.as_slice()[5], 1.5, "pages before the cut are kept");
        assert_eq!(r.as_slice()[90_000], 0.0, "pages after it are released");
        let empty = Reserved::<i8>::new(0).unwrap();
        assert!(empty.as_slice().is_empty());
    }

    #[test]
    fn the_heap_fallback_grows_to_what_is_written_and_no_further() {
        let mut r = Reserved::<u16>::on_heap(1000);
        assert!(r.is_on_heap() && r.as_slice().is_empty());
        r.grow_to(10).unwrap();
        r.as_mut_slice()[9] = 7;
        r.grow_to(5_000).unwrap();
        assert_eq!(r.as_slice().len(), 1000, "bounded by the capacity");
        assert_eq!((r.as_slice()[9], r.as_slice()[999]), (7, 0));
        r.release_from(5);
        assert_eq!(r.as_slice().len(), 5);
        r.grow_to(10).unwrap();
        assert_eq!(r.as_slice()[9], 0, "released elements read as zeros");
    }
}
