//! The signing pool: [`SIGNING_THREADS`] threads of its own that sign tokens, so an RSA signature
//! (most of a millisecond) neither stalls an async worker thread nor waits behind whatever else
//! runs on tokio's blocking pool (file reads, a stuck lookup, another crate's blocking work).
//!
//! Owns: its threads (started on first use, alive as long as the process) and the bound on jobs
//! queued or running ([`SIGNING_QUEUE`]; more wait asynchronously for a place, costing no thread).
//! Must never: run anything but signing, grow past its threads, or lose a caller's wake-up when a
//! job panics (the caller then gets `None`).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::Semaphore;

/// Threads that sign. Two keep a burst of new runs moving on a small machine without taking it.
pub const SIGNING_THREADS: usize = 2;
/// Jobs queued or running at once.
pub const SIGNING_QUEUE: usize = 256;
/// The name of the signing threads (`/proc/<pid>/task/*/comm`, debuggers).
pub const THREAD_NAME: &str = "byollm-sign";

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    sender: SyncSender<Job>,
    places: Arc<Semaphore>,
    threads: usize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let (sender, receiver) = sync_channel::<Job>(SIGNING_QUEUE);
    let receiver = Arc::new(Mutex::new(receiver));
    let mut threads = 0;
    for _ in 0..SIGNING_THREADS {
        let receiver = receiver.clone();
        match std::thread::Builder::new().name(THREAD_NAME.into()).spawn(move || work(&receiver)) {
            Ok(_) => threads += 1,
            Err(error) => tracing::error!(%error, "cannot start a signing thread"),
        }
    }
    Pool { sender, places: Arc::new(Semaphore::new(SIGNING_QUEUE)), threads }
});

fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Run `sign` on the signing pool and wait for it without blocking. `None` if it panicked.
pub async fn run<T: Send + 'static>(sign: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let pool = &*POOL;
    if pool.threads == 0 {
        // No thread could be started (the process is out of them): sign here rather than never.
        return std::panic::catch_unwind(AssertUnwindSafe(sign)).ok();
    }
    // Never closed; a place is free once a queued job has run.
    let place = pool.places.clone().acquire_owned().await.ok()?;
    let (done, answer) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _place = place;
        if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(sign)) {
            let _ = done.send(value);
        }
    });
    // Holding a place means the channel has room: this never finds it full.
    pool.sender.try_send(job).ok()?;
    answer.await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Threads of this process named `name`.
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim() == name)
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_jobs_share_a_fixed_number_of_threads() {
        let jobs: Vec<_> = (0..500u64).map(|i| tokio::spawn(run(move || i * 2))).collect();
        let mut sum = 0;
        for job in jobs {
            sum += job.await.unwrap().unwrap();
        }
        assert_eq!(sum, (0..500u64).map(|i| i * 2).sum::<u64>());
        assert_eq!(threads_named(THREAD_NAME), SIGNING_THREADS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_fails_alone_and_the_threads_go_on() {
        assert_eq!(run(|| -> u8 { panic!("boom") }).await, None);
        for _ in 0..2 * SIGNING_THREADS {
            assert_eq!(run(|| 7).await, Some(7));
        }
    }

    /// The reason for the pool: tokio's blocking pool full of stuck work (as `getaddrinfo` on a
    /// dead DNS server made it) must not delay a signature.
    #[test]
    fn signing_does_not_wait_behind_the_blocking_pool() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stuck: Vec<_> =
                (0..3).map(|_| tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(3)))).collect();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started = Instant::now();
            assert_eq!(run(|| "signed").await, Some("signed"));
            let took = started.elapsed();
            assert!(took < Duration::from_secs(2), "a signature waited {took:?} behind the blocking pool");
            drop(stuck);
        });
        runtime.shutdown_background();
    }
}
