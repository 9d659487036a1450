//! The process allocator: the system allocator, except that very large blocks
//! are reserved with `MAP_NORESERVE`.
//!
//! Why: the `kafka-protocol` crate's decoders size a `Vec` from an array count
//! read off the wire before decoding any element (`Vec::with_capacity(n)`). A
//! few-byte request declaring two billion topics asks for over 100 GB; the
//! kernel's overcommit heuristic refuses that, Rust aborts on the failed
//! allocation, and one malformed request would take the broker down. Reserved
//! with `MAP_NORESERVE`, such a block costs only address space: the decoder fails
//! on the first missing element, touches a page or two, and the block is
//! unmapped again, so the request gets its error (the connection is closed) and
//! nothing else is affected. Ordinary allocations never come near the threshold.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Blocks at least this large are mapped directly.
const HUGE: usize = 1 << 30;
/// mmap returns page-aligned memory.
const PAGE: usize = 4096;

/// See the module documentation.
pub(crate) struct Allocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: huge blocks come from mmap and go back to munmap with the same size
// (GlobalAlloc guarantees dealloc/realloc receive the layout the block was
// allocated with); every other block is the system allocator's.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            return System.alloc(layout);
        }
        let p = libc::mmap(
            ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            self.alloc(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_larger_than_memory_is_reserved_not_refused() {
        // 200 GiB: far beyond this machine's memory and swap.
        let layout = Layout::from_size_align(200 << 30, 8).expect("layout");
        // SAFETY: the block is only written at its start and freed with its layout.
        unsafe {
            let p = Allocator.alloc(layout);
            assert!(!p.is_null(), "huge reservation must succeed");
            p.write(7);
            assert_eq!(p.read(), 7);
            Allocator.dealloc(p, layout);
        }
    }

    #[test]
    fn growing_across_the_threshold_keeps_the_contents() {
        let small = Layout::from_size_align(16, 8).expect("layout");
        // SAFETY: blocks are used within their sizes and freed with their layouts.
        unsafe {
            let p = Allocator.alloc(small);
            p.copy_from_nonoverlapping([1u8, 2, 3].as_ptr(), 3);
            let q = Allocator.realloc(p, small, HUGE);
            assert!(!q.is_null());
            assert_eq!(std::slice::from_raw_parts(q, 3), &[1, 2, 3]);
            Allocator.dealloc(q, Layout::from_size_align(HUGE, 8).expect("layout"));
        }
    }
}
