//! A counting allocator for tests that bound what parsing costs in memory: it counts the bytes live
//! on each thread and their peak. A test binary installs it itself —
//! `#[global_allocator] static ALLOCATOR: Counting = Counting;` — this library never does, so no
//! other test binary pays for it. Counts are per thread: a measurement covers work done on the
//! calling thread only (parsers are synchronous, so that is all of it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting per thread.
pub struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: the thread's slots may already be gone while it exits.
    let _ = CURRENT.try_with(|current| {
        let now = current.get() + delta;
        current.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed on to `System` unchanged; only the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            track(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

/// Bytes allocated at the peak of `work` on this thread, above what was live before it. Zero
/// unless the test binary installed [`Counting`] as its global allocator.
pub fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let start = CURRENT.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = work();
    let peak = (PEAK.with(Cell::get) - start).max(0) as usize;
    (result, peak)
}
