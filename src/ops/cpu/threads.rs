//! The CPU backend's threads: parallel loops over tasks, on every core natively and, in the
//! page, on a pool of Web Workers sharing the module's memory (a build with atomics, in a
//! cross-origin isolated page). Elsewhere (a plain wasm build) every loop runs in place.
//!
//! Work is split so that each task's arithmetic does not depend on the thread count: a
//! result is the same bits on 1 thread as on 8.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Threads the parallel loops use now (1 where there are none).
pub fn count() -> usize {
    imp::count()
}

/// Calls `f(i)` for every `i` in `0..tasks`, spread over the threads (idle ones take the
/// next task); returns when all are done.
pub fn for_each(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if armed(&FAULT_ON_CALLER) {
        panic!("simulated fault in a parallel loop on the engine's thread (test hook)");
    }
    if armed(&FAULT_MEMORY) {
        exhaust_memory();
    }
    if tasks <= 1 || count() <= 1 {
        (0..tasks).for_each(f);
    } else if MEASURING.with(|m| m.get().is_some()) {
        measured_loop(tasks, f);
    } else {
        imp::for_each(tasks, f);
    }
}

/// How the parallel loops of a stretch of work used the threads (see [`measured`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoopUse {
    /// Parallel loops run.
    pub loops: usize,
    /// Wall time inside them, on the thread that posted them (the rest of the stretch ran
    /// on that thread alone).
    pub wall_ms: f64,
    /// Their wall time times the threads each was split for: what the threads could give.
    pub capacity_ms: f64,
    /// Time the threads spent in tasks: what they gave.
    pub busy_ms: f64,
}

impl std::ops::AddAssign for LoopUse {
    fn add_assign(&mut self, o: Self) {
        self.loops += o.loops;
        self.wall_ms += o.wall_ms;
        self.capacity_ms += o.capacity_ms;
        self.busy_ms += o.busy_ms;
    }
}

thread_local! {
    /// What the loops posted from this thread used, while it is being [`measured`].
    static MEASURING: std::cell::Cell<Option<LoopUse>> = const { std::cell::Cell::new(None) };
}

/// Runs `f`, timing every parallel loop it posts and each of their tasks (a profile's
/// thread use: whether a kind of op loses its threads' time in serial stretches between
/// loops or in threads idle within them). Loops other threads post are not counted.
pub fn measured<R>(f: impl FnOnce() -> R) -> (R, LoopUse) {
    let outer = MEASURING.with(|m| m.replace(Some(LoopUse::default())));
    let r = f();
    let inner = MEASURING.with(|m| m.replace(outer)).unwrap_or_default();
    if let Some(mut o) = outer {
        o += inner;
        MEASURING.with(|m| m.set(Some(o)));
    }
    (r, inner)
}

/// One parallel loop, its wall time and its tasks' times added to [`MEASURING`].
fn measured_loop(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    use crate::platform::now_ms;
    // Nanoseconds: an integer the tasks add to from any thread.
    let busy_ns = std::sync::atomic::AtomicU64::new(0);
    let threads = count().min(tasks);
    let t0 = now_ms();
    imp::for_each(tasks, &|i| {
        let s = now_ms();
        f(i);
        busy_ns.fetch_add(((now_ms() - s) * 1e6) as u64, Ordering::Relaxed);
    });
    let wall_ms = now_ms() - t0;
    let used = LoopUse { loops: 1, wall_ms, capacity_ms: wall_ms * threads as f64, busy_ms: busy_ns.into_inner() as f64 / 1e6 };
    MEASURING.with(|m| {
        m.set(m.get().map(|mut u| {
            u += used;
            u
        }))
    });
}

/// Splits `data` into consecutive pieces of `piece` values (the last may be shorter) and
/// calls `f(index, piece)` on each, spread over the threads.
pub fn for_each_piece<T: Send>(data: &mut [T], piece: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let pieces: Vec<Mutex<&mut [T]>> = data.chunks_mut(piece.max(1)).map(Mutex::new).collect();
    for_each(pieces.len(), &|i| f(i, &mut pieces[i].lock().expect("each piece is taken once")));
}

/// Values written below which [`written`] stays on the calling thread (1 MB): a loop's
/// round of threads costs more than writing that much.
const WRITTEN_ON_THREADS: usize = 1 << 18;

/// `len` values written by `f(index, piece)` in consecutive pieces of `piece` values,
/// spread over the threads: a GEMM's starting C (a bias per row or column, 10 MB for the
/// UNet's feed-forward at 1,024 positions) written on one thread held the others idle
/// while it touched fresh pages. The vector starts as calloc's untouched pages, so each
/// page's first touch is a thread's write (see `gemm::written_zeros` for reads first).
pub fn written(len: usize, piece: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut v = vec![0.0f32; len];
    if len < WRITTEN_ON_THREADS {
        v.chunks_mut(piece.max(1)).enumerate().for_each(|(i, p)| f(i, p));
    } else {
        for_each_piece(&mut v, piece, f);
    }
    v
}

/// `f(i)` for every `i` in `0..tasks`, spread over the threads, collected in order.
pub fn map<R: Send>(tasks: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut out: Vec<Option<R>> = (0..tasks).map(|_| None).collect();
    for_each_piece(&mut out, 1, |i, slot| slot[0] = Some(f(i)));
    out.into_iter().map(|r| r.expect("every task ran")).collect()
}

/// Where [`arm_test_fault`] makes the next parallel loop panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestFault {
    /// The thread that called the loop (the engine's): every build.
    Caller,
    /// A task on one of the page's thread workers (the threaded wasm build only).
    Worker,
    /// The engine's thread runs out of memory (the page only: natively it would take the
    /// machine's memory with it).
    Memory,
}

static FAULT_ON_CALLER: AtomicBool = AtomicBool::new(false);
static FAULT_ON_WORKER: AtomicBool = AtomicBool::new(false);
static FAULT_MEMORY: AtomicBool = AtomicBool::new(false);

/// Whether a fault is armed, disarming it (a plain load first: a swap on every loop or
/// task would bounce the flag's cache line between the threads).
fn armed(fault: &AtomicBool) -> bool {
    fault.load(Ordering::Relaxed) && fault.swap(false, Ordering::Relaxed)
}

/// Test hook: the next parallel loop (or, for `Worker`, the next task a thread worker
/// takes) panics, so the page's handling of an engine that fails mid-generation can be
/// tested. Errs where there are no thread workers to fault.
pub fn arm_test_fault(place: TestFault) -> Result<(), String> {
    match place {
        TestFault::Caller => FAULT_ON_CALLER.store(true, Ordering::Relaxed),
        TestFault::Worker if cfg!(all(target_arch = "wasm32", target_feature = "atomics")) && count() > 1 => FAULT_ON_WORKER.store(true, Ordering::Relaxed),
        TestFault::Worker => return Err("this engine runs on one thread: there is no thread worker to fault".into()),
        TestFault::Memory if cfg!(target_arch = "wasm32") => FAULT_MEMORY.store(true, Ordering::Relaxed),
        TestFault::Memory => return Err("running out of memory is simulated in the page only (wasm memory stops at 4 GB)".into()),
    }
    Ok(())
}

/// Asks for memory a gigabyte at a time, keeping it, until an allocation fails (the
/// process aborts there), as a model or an image too large for the page would.
fn exhaust_memory() -> ! {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(Vec::with_capacity(1 << 30));
        // The blocks are never read: without this the optimizer may drop them.
        std::hint::black_box(&held);
    }
}

/// Called by the panic hook: a panic on a thread worker marks its task done and the job
/// failed, so the thread waiting for the loop panics with `message` instead of waiting for
/// the task forever (a thread worker that panicked is gone). Elsewhere it does nothing:
/// natively a scoped thread's panic reaches the caller by itself.
pub fn task_panicked(message: &str) {
    #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
    imp::task_panicked(message);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
    let _ = message;
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
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};

    /// One parallel loop. `f` borrows the poster's stack: the poster does not return until
    /// `finished == tasks`, and no thread calls `f` after drawing an index past the end.
    struct Job {
        f: &'static (dyn Fn(usize) + Sync),
        tasks: usize,
        next: AtomicUsize,
        /// Tasks done, or ended by a panic on a thread worker (see `failure`).
        finished: AtomicUsize,
        /// The first panic message of a task on a thread worker.
        failure: Mutex<Option<String>>,
    }

    impl Job {
        /// Takes tasks until none are left; `on_worker`: this is a thread worker.
        fn work(&self, on_worker: bool) {
            loop {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                if i >= self.tasks {
                    return;
                }
                if on_worker && super::armed(&super::FAULT_ON_WORKER) {
                    panic!("simulated fault in a task on a CPU thread worker (test hook)");
                }
                (self.f)(i);
                self.finish_one();
            }
        }

        fn finish_one(&self) {
            if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == self.tasks {
                let _guard = POOL.state.lock().expect("pool lock");
                POOL.done.notify_all();
            }
        }
    }

    thread_local! {
        /// The job this thread worker is working on (none on the engine's thread).
        static CURRENT: RefCell<Option<Arc<Job>>> = const { RefCell::new(None) };
    }

    /// A thread worker's task panicked: its wasm instance traps once the hook returns, so
    /// count the task as ended and leave the message for the thread that posted the job.
    /// (The build aborts on panic: no lock is ever poisoned, and a task holds none.)
    pub fn task_panicked(message: &str) {
        let job = CURRENT.with(|c| c.borrow().clone());
        if let Some(job) = job {
            job.failure.lock().expect("job failure").get_or_insert_with(|| message.to_string());
            job.finish_one();
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
                CURRENT.with(|c| *c.borrow_mut() = Some(job.clone()));
                job.work(true);
                CURRENT.with(|c| *c.borrow_mut() = None);
            }
        }
    }

    pub fn for_each(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        // SAFETY: the job outlives every call of `f` (see `Job`); only the lifetime is erased.
        let f: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        let job = Arc::new(Job { f, tasks, next: AtomicUsize::new(0), finished: AtomicUsize::new(0), failure: Mutex::new(None) });
        {
            let mut s = POOL.state.lock().expect("pool lock");
            // A loop inside a task runs in place (count() says 1 meanwhile).
            s.busy = true;
            s.job = Some(job.clone());
            s.generation += 1;
            POSTED.store(s.generation, Ordering::Release);
            POOL.posted.notify_all();
        }
        job.work(false);
        spin_until(|| job.finished.load(Ordering::Acquire) >= tasks);
        let mut s = POOL.state.lock().expect("pool lock");
        while job.finished.load(Ordering::Acquire) < tasks {
            s = POOL.done.wait(s).expect("pool lock");
        }
        s.job = None;
        s.busy = false;
        drop(s);
        // Every other task ran (`f`'s borrows end here); the result is incomplete.
        let failure = job.failure.lock().expect("job failure").take();
        if let Some(message) = failure {
            panic!("a CPU thread failed: {message}");
        }
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

    #[test]
    fn written_pieces_cover_the_values_in_order() {
        // Below the threshold (on this thread) and past it (on the threads), a short last piece.
        for len in [1000, WRITTEN_ON_THREADS + 7] {
            let v = written(len, 999, |i, p| p.iter_mut().enumerate().for_each(|(j, x)| *x = (i * 999 + j) as f32));
            assert_eq!(v.len(), len);
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32), "len {len}");
        }
    }

    #[test]
    fn measured_loops_count_wall_and_busy_time() {
        let sleep = |_| std::thread::sleep(std::time::Duration::from_millis(20));
        let ((), used) = measured(|| for_each(4, &sleep));
        if count() < 2 {
            // Run in place: nothing parallel to count.
            assert_eq!(used, LoopUse::default());
            return;
        }
        // Four 20 ms tasks: 80 ms of work; on 2 or more threads, two rounds or one.
        assert_eq!(used.loops, 1);
        // (A sleep never ends early, but may end late on a busy machine: no upper bound in
        // ms; busy time counted twice would pass the loop's capacity.)
        assert!(used.busy_ms >= 79.0, "{used:?}");
        assert!(used.wall_ms >= 19.0 && used.capacity_ms >= used.busy_ms * 0.99, "{used:?}");
        // A nested measurement counts for the outer one too; loops outside count for none.
        let ((((), inner), ()), outer) = measured(|| (measured(|| for_each(2, &sleep)), for_each(2, &sleep)));
        assert_eq!((inner.loops, outer.loops), (1, 2));
        assert!(outer.busy_ms >= 2.0 * inner.busy_ms * 0.99, "{inner:?} {outer:?}");
        for_each(2, &sleep);
        assert!(MEASURING.with(|m| m.get().is_none()));
    }

    // Natively there are no thread workers (a scoped thread's panic reaches the caller by
    // itself), so the hook refuses and arms nothing. (Arming the caller's fault here would
    // hit whichever test's loop runs next: the page's tests in tests/e2e cover it.)
    #[test]
    fn a_worker_fault_needs_thread_workers() {
        assert_eq!(arm_test_fault(TestFault::Worker), Err("this engine runs on one thread: there is no thread worker to fault".to_string()));
        assert!(!FAULT_ON_WORKER.load(Ordering::Relaxed));
    }

    #[test]
    fn a_memory_fault_is_for_the_page_only() {
        assert_eq!(arm_test_fault(TestFault::Memory), Err("running out of memory is simulated in the page only (wasm memory stops at 4 GB)".to_string()));
        assert!(!FAULT_MEMORY.load(Ordering::Relaxed));
    }
}
