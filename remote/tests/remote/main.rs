//! Host tests of the remote API: real TLS connections on loopback through the listener to a
//! real berthd on a temporary root, and to a stand-in for init's System service (see
//! `common::FakeSystem` for why). `load_*` and `bench_*` are ignored by default.

mod abuse;
mod applet;
mod bench;
mod calls;
mod common;
mod fetch;
mod handshake;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation since it was last reset (the 1 GiB header test reads it).
pub static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every method forwards to the system allocator with the caller's arguments; the
// only addition is an atomic maximum of the requested size.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: `ptr` came from the system allocator with `layout`; contract passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Not a test: the re-executed test binary becomes berthd here (see `common::start_berthd`);
/// in an ordinary run it returns at once.
#[test]
fn berthd_child() {
    common::berthd_child_entry();
}

/// Not a test: the re-executed test binary becomes berth-apid here (see `applet`).
#[test]
fn apid_child() {
    applet::apid_child_entry();
}
