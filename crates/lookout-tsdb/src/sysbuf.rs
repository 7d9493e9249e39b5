//! Growable blocks in the C library's allocator (`std::alloc::System`) instead of the
//! process's global one, for the open head chunks' bit writers ([`crate::bits::BitWriter`]).
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
//! A capacity is rounded up to the bytes the C library's allocator hands out anyway (glibc on
//! 64-bit: blocks of 16 bytes with an 8-byte header, so 24, 40, 56, ... usable bytes): a
//! 32-byte request gets a 40-byte block, and without the rounding those 8 bytes would sit
//! unused in every open chunk until its next growth step (~0.6 MB over 80k series). It is
//! kept as a count of 16-byte units in a `u16` (at most 1 MiB; a head chunk is cut long
//! before), so that the owner ([`crate::bits::BitWriter`]) is 16 bytes.

use std::alloc::{GlobalAlloc, Layout, System, handle_alloc_error};
use std::ptr::NonNull;

/// Bytes of a block of `units` 16-byte units (0 for none).
#[inline]
pub fn capacity(units: u16) -> usize {
    if units == 0 {
        0
    } else {
        usize::from(units) * 16 - SLACK
    }
}

/// glibc's size header on 64-bit Linux: a block of `16k` bytes holds `16k - 8`.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
const SLACK: usize = 8;

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
const SLACK: usize = 0;

/// Units of the smallest block holding `n` bytes.
fn units_for(n: usize) -> u16 {
    let units = n
        .checked_add(SLACK + 15)
        .map_or(usize::MAX, |x| x / 16)
        .max(2);
    u16::try_from(units).unwrap_or_else(|_| capacity_overflow())
}

/// Grows (or first allocates, when `units` is 0) the block at `ptr` to hold at least `need`
/// bytes; returns the new block and its units. Keeps the contents, like `realloc`.
///
/// # Safety
/// `ptr` and `units` describe a block this module returned (or `units` is 0), and `need` is
/// more than its capacity.
pub unsafe fn grow(ptr: NonNull<u8>, units: u16, need: usize) -> (NonNull<u8>, u16) {
    let new_units = units_for(need);
    let new_cap = capacity(new_units);
    let new_layout = Layout::array::<u8>(new_cap).unwrap_or_else(|_| capacity_overflow());
    let p = if units == 0 {
        // SAFETY: `new_cap > 0` (at least two units), so the layout is not zero-sized.
        unsafe { System.alloc(new_layout) }
    } else {
        // SAFETY: per the contract, `ptr` came from `System` with `capacity(units)` bytes, and
        // `new_cap` is non-zero and fits `isize`.
        unsafe { System.realloc(ptr.as_ptr(), layout(units), new_cap) }
    };
    let Some(p) = NonNull::new(p) else {
        handle_alloc_error(new_layout)
    };
    (p, new_units)
}

/// Frees a block this module returned (nothing for 0 units).
///
/// # Safety
/// `ptr` and `units` describe a live block from [`grow`] (or `units` is 0).
pub unsafe fn release(ptr: NonNull<u8>, units: u16) {
    if units > 0 {
        // SAFETY: allocated by `System` with exactly this layout.
        unsafe { System.dealloc(ptr.as_ptr(), layout(units)) }
    }
}

fn layout(units: u16) -> Layout {
    // `capacity(units)` is at most ~1 MiB, far below `isize::MAX`.
    Layout::array::<u8>(capacity(units)).unwrap_or_else(|_| capacity_overflow())
}

#[cold]
fn capacity_overflow() -> ! {
    panic!("head chunk buffer larger than 1 MiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_cover_requests_and_round_trip() {
        for n in 1..5000usize {
            let u = units_for(n);
            assert!(capacity(u) >= n, "{n}");
            assert!(u == 2 || capacity(u - 1) < n, "{n}: smallest");
        }
        assert_eq!(capacity(0), 0);
        // SAFETY: blocks from `grow` are written within their capacity and released once.
        unsafe {
            let (mut p, mut u) = grow(NonNull::dangling(), 0, 5);
            for i in 0..capacity(u) {
                p.as_ptr().add(i).write(i as u8);
            }
            let old = capacity(u);
            (p, u) = grow(p, u, old + 1);
            assert!(capacity(u) > old);
            assert!((0..old).all(|i| *p.as_ptr().add(i) == i as u8));
            release(p, u);
        }
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    fn capacities_fill_glibc_blocks() {
        let sizes: Vec<usize> = [1, 24, 25, 32, 40, 41, 56, 57, 100]
            .map(|n| capacity(units_for(n)))
            .to_vec();
        assert_eq!(sizes, [24, 24, 40, 40, 40, 56, 56, 72, 104]);
        for n in 1..2000 {
            // SAFETY: a fresh block, measured and released.
            unsafe {
                let (p, u) = grow(NonNull::dangling(), 0, n);
                let usable = libc::malloc_usable_size(p.as_ptr().cast());
                // Equal for a block cut to size; glibc hands out a free block up to 16 bytes
                // larger whole (the rest would be too small to split off).
                assert!(
                    capacity(u) <= usable && usable <= capacity(u) + 16,
                    "request {n}: capacity {} usable {usable}",
                    capacity(u)
                );
                release(p, u);
            }
        }
    }
}
