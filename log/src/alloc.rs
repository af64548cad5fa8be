//! A global allocator that makes absurd allocation requests harmless.
//!
//! The `kafka-protocol` decoders (0.18) pre-allocate arrays with `Vec::with_capacity(n)`,
//! where `n` is read off the wire before a single element is decoded. A 20-byte request
//! claiming two billion elements asks for hundreds of gigabytes; the system allocator
//! refuses and the process aborts — one frame would take the broker down.
//!
//! [`WireSafeAllocator`] serves every allocation of at least [`HUGE_BYTES`] from
//! `mmap(MAP_NORESERVE)`: address space that costs nothing until written. The bogus
//! vector is created, decoding fails on the next element (the frame has no more bytes),
//! and the mapping is returned untouched. Ordinary allocations go to the system allocator.
//!
//! Install it in any process that decodes frames from the network:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: freshet_log::alloc::WireSafeAllocator = freshet_log::alloc::WireSafeAllocator;
//! ```
//!
//! The `freshet` binary does; an application embedding [`crate::broker::Broker`] should too.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved, not committed.
pub const HUGE_BYTES: usize = 1 << 30;
/// mmap returns page-aligned memory; larger alignments go to the system allocator.
const PAGE_BYTES: usize = 4096;

/// See the [module documentation](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct WireSafeAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from a
// private anonymous mapping of exactly `layout.size()` bytes (and unmapped with that size);
// which one is decided by `is_huge(layout)`, a pure function of the layout that Rust passes
// unchanged to `dealloc`.
unsafe impl GlobalAlloc for WireSafeAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED { std::ptr::null_mut() } else { ptr.cast() }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from the mmap above with this exact size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `layout.align()` with `new_size` forms a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides belong to `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if is_huge(&layout) && is_huge(&new_layout) {
            // SAFETY: `ptr` is our mapping of `layout.size()` bytes; mremap moves the pages
            // without touching (and so committing) them.
            let moved = unsafe { libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE) };
            return if moved == libc::MAP_FAILED { std::ptr::null_mut() } else { moved.cast() };
        }
        // SAFETY: allocate, copy the common prefix (at most the small side, since one side
        // is small), free the old block, each through the matching path above.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_requests_are_reserved_and_small_ones_work_as_usual() {
        let a = WireSafeAllocator;
        unsafe {
            // 200 GiB: far beyond this machine, but only reserved.
            let huge = Layout::from_size_align(200 << 30, 8).unwrap();
            let p = a.alloc(huge);
            assert!(!p.is_null());
            p.write(7);
            assert_eq!(p.read(), 7);
            let grown = a.realloc(p, huge, 201 << 30);
            assert!(!grown.is_null());
            assert_eq!(grown.read(), 7);
            a.dealloc(grown, Layout::from_size_align(201 << 30, 8).unwrap());

            let small = Layout::from_size_align(64, 8).unwrap();
            let s = a.alloc(small);
            s.write(9);
            let big = a.realloc(s, small, HUGE_BYTES);
            assert_eq!(big.read(), 9);
            let back = a.realloc(big, Layout::from_size_align(HUGE_BYTES, 8).unwrap(), 128);
            assert_eq!(back.read(), 9);
            a.dealloc(back, Layout::from_size_align(128, 8).unwrap());
        }
    }
}
