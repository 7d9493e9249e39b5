//! A growable byte buffer in the C library's allocator (`std::alloc::System`) instead of the
//! process's global one, for open head chunks.
//!
//! Every active series holds an open chunk that grows from 32 bytes to a few hundred, a
//! quarter at a time, and all series do so at once, each at its own pace. The global
//! allocator (mimalloc) keeps blocks of one size class in pages of their own: every growth
//! step frees a block that only that class can reuse, and with lifetimes that differ from
//! series to series the pages stay partly empty. In the 80k-series scrape race the memory
//! behind open chunks came out about twice their bytes (+10–15 MiB peak RSS at 3–5 minutes;
//! the same binary on glibc's allocator held 15 MiB less). glibc's best-fit heap grows such a
//! buffer in place when it can and reuses a freed block for any size, so the memory stays
//! close to the bytes. The price: growth steps are few (about one per 16 samples), yet the
//! scrape race measured +2.4 % CPU in one 300-second pair.
//!
//! Length and capacity are 32-bit (chunks are cut long before 4 GiB). A capacity is rounded
//! up to the bytes the C library's allocator hands out anyway (glibc on 64-bit: blocks of 16
//! bytes with an 8-byte header, so 24, 40, 56, ... usable bytes): a 32-byte request gets a
//! 40-byte block, and without the rounding those 8 bytes would sit unused in every open chunk
//! until its next growth step (~0.6 MB over 80k series).

use std::alloc::{GlobalAlloc, Layout, System, handle_alloc_error};
use std::ptr::NonNull;

pub struct SysBuf {
    ptr: NonNull<u8>,
    len: u32,
    cap: u32,
}

// SAFETY: `SysBuf` owns its allocation exclusively, like `Vec<u8>`; shared references only
// read it.
unsafe impl Send for SysBuf {}
// SAFETY: as above; `&SysBuf` gives read-only access.
unsafe impl Sync for SysBuf {}

impl SysBuf {
    pub const fn new() -> Self {
        SysBuf {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
        }
    }

    pub fn with_capacity(cap: usize) -> Self {
        let mut b = SysBuf::new();
        if cap > 0 {
            b.grow_to(cap);
        }
        b
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes (dangling and 0 when empty).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len as usize) }
    }

    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len as usize) }
    }

    /// Makes room for at least `additional` more bytes, exactly (no rounding up).
    pub fn reserve_exact(&mut self, additional: usize) {
        let need = (self.len as usize)
            .checked_add(additional)
            .unwrap_or_else(|| capacity_overflow());
        if need > self.cap as usize {
            self.grow_to(need);
        }
    }

    #[inline]
    pub fn push(&mut self, b: u8) {
        if self.len == self.cap {
            self.reserve_exact(1);
        }
        // SAFETY: `len < cap` after the reserve, so the byte is inside the allocation.
        unsafe { self.ptr.as_ptr().add(self.len as usize).write(b) };
        self.len += 1;
    }

    fn grow_to(&mut self, new_cap: usize) {
        let new_cap = block_size(new_cap);
        let Ok(new_cap32) = u32::try_from(new_cap) else {
            capacity_overflow()
        };
        let new_layout = Layout::array::<u8>(new_cap).unwrap_or_else(|_| capacity_overflow());
        let ptr = if self.cap == 0 {
            // SAFETY: `new_cap > 0` (callers grow past the current capacity), so the layout
            // is not zero-sized.
            unsafe { System.alloc(new_layout) }
        } else {
            let old =
                Layout::array::<u8>(self.cap as usize).unwrap_or_else(|_| capacity_overflow());
            // SAFETY: `ptr` was allocated by `System` with layout `old`, and `new_cap` is
            // non-zero and fits `isize` (checked by `Layout::array`).
            unsafe { System.realloc(self.ptr.as_ptr(), old, new_cap) }
        };
        let Some(ptr) = NonNull::new(ptr) else {
            handle_alloc_error(new_layout)
        };
        self.ptr = ptr;
        self.cap = new_cap32;
    }
}

/// The usable size of the block the C library's allocator returns for `n` bytes.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn block_size(n: usize) -> usize {
    // glibc: chunks are multiples of 16 bytes, at least 32, with an 8-byte size header.
    n.checked_add(8 + 15).map_or(n, |x| (x & !15).max(32) - 8)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
fn block_size(n: usize) -> usize {
    n
}

#[cold]
fn capacity_overflow() -> ! {
    panic!("chunk buffer larger than 4 GiB")
}

impl Drop for SysBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated by `System` with exactly this layout.
            unsafe {
                System.dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.cap as usize, 1),
                )
            };
        }
    }
}

impl Default for SysBuf {
    fn default() -> Self {
        SysBuf::new()
    }
}

impl Clone for SysBuf {
    fn clone(&self) -> Self {
        let mut b = SysBuf::with_capacity(self.len as usize);
        for &x in self.as_slice() {
            b.push(x);
        }
        b
    }
}

impl std::fmt::Debug for SysBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_keeps_bytes_and_clones() {
        let mut b = SysBuf::new();
        assert!(b.len() == 0 && b.capacity() == 0 && b.as_slice().is_empty());
        for i in 0..1000u32 {
            b.push(i as u8);
        }
        assert_eq!(b.len(), 1000);
        assert!(b.capacity() >= 1000);
        assert!(b.as_slice().iter().enumerate().all(|(i, &x)| x == i as u8));
        b.as_mut_slice()[3] = 0xee;
        let c = b.clone();
        assert_eq!(c.as_slice(), b.as_slice());
        assert_eq!(c.as_slice()[3], 0xee);
        drop(b);
        assert_eq!(c.len(), 1000);
        let mut e = SysBuf::with_capacity(5);
        assert_eq!((e.len(), e.capacity()), (0, block_size(5)));
        e.reserve_exact(2);
        assert_eq!(e.capacity(), block_size(5), "room already there");
        e.reserve_exact(block_size(5) + 1);
        assert_eq!(e.capacity(), block_size(block_size(5) + 1));
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    fn capacities_fill_glibc_blocks() {
        let sizes: Vec<usize> = [1, 24, 25, 32, 40, 41, 56, 57, 100]
            .map(block_size)
            .to_vec();
        assert_eq!(sizes, [24, 24, 40, 40, 40, 56, 56, 72, 104]);
        for n in 1..2000 {
            let b = SysBuf::with_capacity(n);
            // SAFETY: `b` owns a live block from glibc's malloc.
            let usable = unsafe { libc::malloc_usable_size(b.ptr.as_ptr().cast()) };
            assert_eq!(b.capacity(), usable, "request {n}");
        }
    }

    proptest! {
        #[test]
        fn matches_a_vec(ops in proptest::collection::vec(prop_oneof![
            any::<u8>().prop_map(Some),
            (0usize..100).prop_map(|_| None),
        ], 0..400), reserve in 0usize..64) {
            let mut b = SysBuf::with_capacity(reserve);
            let mut v = Vec::new();
            for op in ops {
                match op {
                    Some(x) => { b.push(x); v.push(x); }
                    None => b.reserve_exact(b.len() / 4 + 1),
                }
                prop_assert_eq!(b.as_slice(), &v[..]);
                prop_assert!(b.capacity() >= b.len());
            }
        }
    }
}
