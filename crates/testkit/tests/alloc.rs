//! The counting allocator counts what the calling thread allocates, and only that: the memory bounds
//! in byollm's tests would pass vacuously if it counted nothing.

use byollm_testkit::alloc::{Counting, peak_of};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn the_peak_covers_what_this_thread_allocated_and_freed() {
    let (len, peak) = peak_of(|| {
        let big = vec![1u8; 1 << 20];
        let len = big.len();
        drop(big);
        let small = vec![2u8; 1 << 10];
        len + small.len()
    });
    assert_eq!(len, (1 << 20) + (1 << 10));
    assert!((1 << 20..(1 << 20) + (64 << 10)).contains(&peak), "peak {peak}");
    // Growing a vector counts its final capacity (realloc), not the sum of its steps.
    let (_, peak) = peak_of(|| {
        let mut grown = Vec::new();
        for i in 0..(1u32 << 20) {
            grown.push(i as u8);
        }
        grown
    });
    assert!((1 << 20..2 << 20).contains(&peak), "grown: peak {peak}");
}

#[test]
fn another_threads_allocations_are_not_counted() {
    let (_, peak) = peak_of(|| std::thread::spawn(|| vec![0u8; 4 << 20].len()).join().unwrap());
    assert!(peak < 1 << 20, "peak {peak}");
}
