//! Memory reserved for a whole context window but paid for page by page.
//!
//! A KV cache sized for the context window up front never reallocates (no
//! copy, no moment with two caches alive), yet costs resident memory only
//! for the positions written: the mapping is anonymous and `MAP_NORESERVE`,
//! so the OS commits a page when it is first touched. Truncating hands the
//! pages past the new end back (`madvise(MADV_DONTNEED)`), and dropping
//! unmaps the lot — the memory really returns to the OS, which freeing a
//! `Vec` through malloc does not promise.

use std::marker::PhantomData;

/// `capacity` elements of `T` in an anonymous private mapping, zeroed.
/// `T` is a plain number type, for which all-zero bytes are a value.
pub struct Reserved<T: Copy> {
    ptr: *mut T,
    capacity: usize,
    bytes: usize,
    _owns: PhantomData<T>,
}

// SAFETY: `Reserved` owns its mapping outright, like a `Box<[T]>`.
unsafe impl<T: Copy + Send> Send for Reserved<T> {}
// SAFETY: shared access only reads.
unsafe impl<T: Copy + Sync> Sync for Reserved<T> {}

/// Plain numbers whose all-zero bytes are a valid value.
pub trait Zeroable: Copy {}
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

impl<T: Zeroable> Reserved<T> {
    /// Reserves room for `capacity` elements (address space only).
    pub fn new(capacity: usize) -> std::io::Result<Self> {
        let bytes = capacity
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| std::io::Error::other("KV cache size overflows"))?;
        if bytes == 0 {
            return Ok(Reserved {
                ptr: std::ptr::NonNull::dangling().as_ptr(),
                capacity,
                bytes,
                _owns: PhantomData,
            });
        }
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
        // With transparent huge pages always on, the first touch would
        // commit 2 MiB per mapping (two or four per layer): the cache
        // must grow by small pages to be paid for by position.
        #[cfg(target_os = "linux")]
        // SAFETY: advice on the mapping just made; it changes no contents.
        unsafe {
            libc::madvise(ptr, bytes, libc::MADV_NOHUGEPAGE)
        };
        Ok(Reserved {
            ptr: ptr.cast(),
            capacity,
            bytes,
            _owns: PhantomData,
        })
    }

    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the mapping holds `capacity` zero-initialised (or
        // written) elements of a type valid for any bytes, and lives as
        // long as `self`; page alignment satisfies `T`'s alignment.
        unsafe { std::slice::from_raw_parts(self.ptr, self.capacity) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as `as_slice`, with `&mut self` making this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.capacity) }
    }

    /// Returns the whole pages from element `from` on to the OS; they read
    /// as zeros afterwards.
    pub fn release_from(&mut self, from: usize) {
        let page = page_size();
        let start = (from * std::mem::size_of::<T>()).div_ceil(page) * page;
        if start >= self.bytes {
            return;
        }
        // SAFETY: [start, bytes) lies inside our own mapping; any views of
        // it are borrowed from `self`, which `&mut self` excludes.
        let rc = unsafe {
            libc::madvise(
                self.ptr.cast::<u8>().add(start).cast(),
                self.bytes - start,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            tracing::debug!(
                "madvise on the KV cache failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

impl<T: Copy> Drop for Reserved<T> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            // SAFETY: the mapping is ours and nothing borrows it any more.
            unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
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
}
