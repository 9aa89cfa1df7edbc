//! The CPU backend's threads: parallel loops over tasks, on every core natively and, in the
//! page, on a pool of Web Workers sharing the module's memory (a build with atomics, in a
//! cross-origin isolated page). Elsewhere (a plain wasm build) every loop runs in place.
//!
//! Work is split so that each task's arithmetic does not depend on the thread count: a
//! result is the same bits on 1 thread as on 8.

use std::sync::Mutex;

/// Threads the parallel loops use now (1 where there are none).
pub fn count() -> usize {
    imp::count()
}

/// Calls `f(i)` for every `i` in `0..tasks`, spread over the threads (idle ones take the
/// next task); returns when all are done.
pub fn for_each(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if tasks <= 1 || count() <= 1 {
        (0..tasks).for_each(f);
    } else {
        imp::for_each(tasks, f);
    }
}

/// Splits `data` into consecutive pieces of `piece` values (the last may be shorter) and
/// calls `f(index, piece)` on each, spread over the threads.
pub fn for_each_piece<T: Send>(data: &mut [T], piece: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let pieces: Vec<Mutex<&mut [T]>> = data.chunks_mut(piece.max(1)).map(Mutex::new).collect();
    for_each(pieces.len(), &|i| f(i, &mut pieces[i].lock().expect("each piece is taken once")));
}

/// `f(i)` for every `i` in `0..tasks`, spread over the threads, collected in order.
pub fn map<R: Send>(tasks: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut out: Vec<Option<R>> = (0..tasks).map(|_| None).collect();
    for_each_piece(&mut out, 1, |i, slot| slot[0] = Some(f(i)));
    out.into_iter().map(|r| r.expect("every task ran")).collect()
}

/// Natively: scoped threads per loop, as many as the machine has cores (EASEL_THREADS=N
/// caps them, to compare thread counts in one run).
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    pub fn count() -> usize {
        static COUNT: OnceLock<usize> = OnceLock::new();
        *COUNT.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |t| t.get());
            std::env::var("EASEL_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0).unwrap_or(cores)
        })
    }

    pub fn for_each(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                break;
            }
            f(i);
        };
        std::thread::scope(|s| {
            for _ in 1..count().min(tasks) {
                s.spawn(work);
            }
            work();
        });
    }
}

/// A wasm build without atomics: one thread.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod imp {
    pub fn count() -> usize {
        1
    }

    pub fn for_each(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..tasks).for_each(f);
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub use imp::{serve, set_count};

/// A wasm build with atomics: the page starts Web Workers on this module and memory, each
/// of which calls [`serve`] and waits there for jobs. The engine's own thread (itself a
/// worker, so it may block) posts a job, takes tasks like any worker, and waits for the rest.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
mod imp {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};

    /// One parallel loop. `f` borrows the poster's stack: the poster does not return until
    /// `finished == tasks`, and no thread calls `f` after drawing an index past the end.
    struct Job {
        f: &'static (dyn Fn(usize) + Sync),
        tasks: usize,
        next: AtomicUsize,
        finished: AtomicUsize,
    }

    impl Job {
        fn work(&self) {
            loop {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                if i >= self.tasks {
                    return;
                }
                (self.f)(i);
                if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == self.tasks {
                    let _guard = POOL.state.lock().expect("pool lock");
                    POOL.done.notify_all();
                }
            }
        }
    }

    /// Polls of an atomic before a thread blocks on the pool's lock (some tens of
    /// microseconds): a conv's rounds of the pool follow each other within microseconds,
    /// and a Web Worker blocked in `Atomics.wait` takes far longer than that to wake.
    const SPINS: u32 = 50_000;

    /// `State::generation`, readable without the lock (what a spinning thread polls).
    static POSTED: AtomicUsize = AtomicUsize::new(0);

    /// Polls `ready` up to [`SPINS`] times; whether it came true.
    fn spin_until(ready: impl Fn() -> bool) -> bool {
        (0..SPINS).any(|_| {
            std::hint::spin_loop();
            ready()
        })
    }

    struct State {
        job: Option<Arc<Job>>,
        generation: usize,
        /// Threads the loops are split for: the engine's and the workers the page started.
        count: usize,
        busy: bool,
    }

    struct Pool {
        state: Mutex<State>,
        posted: Condvar,
        done: Condvar,
    }

    static POOL: Pool = Pool { state: Mutex::new(State { job: None, generation: 0, count: 1, busy: false }), posted: Condvar::new(), done: Condvar::new() };

    pub fn count() -> usize {
        POOL.state.lock().map_or(1, |s| if s.busy { 1 } else { s.count })
    }

    /// Sets how many threads the loops are split for (the page calls it with the number of
    /// workers it started, plus one).
    pub fn set_count(n: usize) {
        POOL.state.lock().expect("pool lock").count = n.max(1);
    }

    /// A worker's loop: waits for each job and works on it. Never returns.
    pub fn serve() {
        let mut seen = 0;
        loop {
            spin_until(|| POSTED.load(Ordering::Acquire) != seen);
            let job = {
                let mut s = POOL.state.lock().expect("pool lock");
                while s.generation == seen {
                    s = POOL.posted.wait(s).expect("pool lock");
                }
                seen = s.generation;
                s.job.clone()
            };
            if let Some(job) = job {
                job.work();
            }
        }
    }

    pub fn for_each(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        // SAFETY: the job outlives every call of `f` (see `Job`); only the lifetime is erased.
        let f: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        let job = Arc::new(Job { f, tasks, next: AtomicUsize::new(0), finished: AtomicUsize::new(0) });
        {
            let mut s = POOL.state.lock().expect("pool lock");
            // A loop inside a task runs in place (count() says 1 meanwhile).
            s.busy = true;
            s.job = Some(job.clone());
            s.generation += 1;
            POSTED.store(s.generation, Ordering::Release);
            POOL.posted.notify_all();
        }
        job.work();
        spin_until(|| job.finished.load(Ordering::Acquire) >= tasks);
        let mut s = POOL.state.lock().expect("pool lock");
        while job.finished.load(Ordering::Acquire) < tasks {
            s = POOL.done.wait(s).expect("pool lock");
        }
        s.job = None;
        s.busy = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_pieces_cover_the_data() {
        let hits: Vec<std::sync::atomic::AtomicUsize> = (0..37).map(|_| Default::default()).collect();
        for_each(hits.len(), &|i| {
            hits[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(std::sync::atomic::Ordering::Relaxed) == 1));
        let mut data = vec![0usize; 10];
        for_each_piece(&mut data, 4, |i, p| p.iter_mut().for_each(|v| *v = i + 1));
        assert_eq!(data, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
        assert_eq!(map(5, |i| i * i), [0, 1, 4, 9, 16]);
    }
}
