//! The process's allocator: mimalloc v3 (the bundled C library of `libmimalloc-sys`), called
//! through our own `GlobalAlloc` rather than the `mimalloc` crate's, and its start-up options.
//!
//! Why our own: the `mimalloc` crate sends every request through `mi_malloc_aligned`, even
//! for the word alignment every mimalloc block has anyway. In mimalloc v3 that call only
//! takes a block from a size class whose current page already has a free block at hand;
//! otherwise it falls back to over-allocating `size + align - 1` bytes, i.e. the next size
//! class. Nothing but plain `mi_malloc` ever refills that page, so a size allocated only
//! through the aligned call always lands one class up: the head's 160-byte series objects
//! all took 192-byte blocks (2.6 MB more at 80k series, seen with a walk over mimalloc's
//! pages), and every such allocation took the slow path. Requests aligned to at most a word
//! go to `mi_malloc` / `mi_zalloc` / `mi_realloc` here; larger alignments keep the aligned
//! calls.
//!
//! Options (set before the first allocation, see [`set_options`]):
//! - `arena_eager_commit = 0`: its default (2: eager on overcommit systems) costs ~70 % peak
//!   RSS in the scrape race; 0 commits arena memory on use.
//! - `page_reclaim_on_free = 1`: a free into a full page that another thread gave up takes
//!   the page back for reuse (default 0: only the thread that allocated it). The scrape
//!   thread allocates what the WAL writer and the tokio workers free; the scrape race held
//!   ~0.9 MB less, the dashboard queries were unchanged (31 interleaved runs: 1.01 / 1.01 /
//!   0.99). A shorter purge delay (100 ms) saved ~0.5 MB more but made Q1/Q2 7–10 % slower:
//!   freed query memory went back to the OS between queries and was faulted in again.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Every mimalloc block is aligned to at least a machine word (block sizes are whole words
/// and pages start aligned), so such requests need no aligned call.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc, with plain calls for word-aligned requests (see the module docs).
pub struct Mimalloc;

// SAFETY: each method forwards to the matching mimalloc call, which returns memory of at
// least `layout.size()` bytes aligned to `layout.align()` (plain calls only when the
// alignment is at most a word, which every mimalloc block satisfies), or null on failure;
// `dealloc`/`realloc` receive only pointers this allocator returned.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl comment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl comment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; see the impl comment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// `mi_option_arena_eager_commit` in the bundled mimalloc v3 header (enum index, pinned
/// crate version).
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: mi::mi_option_t = 4;

/// `mi_option_page_reclaim_on_free` (same header).
#[cfg(target_os = "linux")]
const MI_OPTION_PAGE_RECLAIM_ON_FREE: mi::mi_option_t = 35;

/// Sets the allocator options before the first allocation reserves an arena (setting them
/// in `main` is too late: the runtime allocates before `main`).
#[cfg(target_os = "linux")]
extern "C" fn set_options() {
    // SAFETY: sets plain integer options; no allocation, no other state touched.
    unsafe {
        mi::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        mi::mi_option_set(MI_OPTION_PAGE_RECLAIM_ON_FREE, 1);
    }
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static SET_OPTIONS: extern "C" fn() = set_options;

#[cfg(test)]
mod tests {
    use super::*;

    /// The usable size of a block this allocator returns for `layout` (freed again).
    fn block_size(layout: Layout) -> usize {
        // SAFETY: a non-zero-size layout; the pointer is checked, measured and freed here.
        unsafe {
            let p = Mimalloc.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
            let n = mi::mi_usable_size(p.cast::<c_void>());
            Mimalloc.dealloc(p, layout);
            n
        }
    }

    #[test]
    fn word_aligned_requests_take_their_own_size_class() {
        // 160 is a mimalloc size class; through `mi_malloc_aligned` it took 192-byte blocks.
        for size in [48, 80, 96, 112, 160, 224, 320, 640] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            for _ in 0..1000 {
                assert_eq!(block_size(layout), size, "{layout:?}");
            }
        }
    }

    #[test]
    fn larger_alignments_are_honoured() {
        for (size, align) in [(24, 16), (48, 32), (160, 64), (100, 4096), (5000, 128)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            assert!(block_size(layout) >= size);
        }
    }

    #[test]
    fn zeroed_and_grown_blocks_keep_contents_and_alignment() {
        // SAFETY: layouts are non-zero; pointers are checked before use and freed once.
        unsafe {
            for align in [8, 64] {
                let layout = Layout::from_size_align(40, align).unwrap();
                let p = Mimalloc.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert!(std::slice::from_raw_parts(p, 40).iter().all(|&b| b == 0));
                p.write_bytes(7, 40);
                let q = Mimalloc.realloc(p, layout, 4000);
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0);
                assert!(std::slice::from_raw_parts(q, 40).iter().all(|&b| b == 7));
                Mimalloc.dealloc(q, Layout::from_size_align(4000, align).unwrap());
            }
        }
    }
}
