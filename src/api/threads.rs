//! The CPU backend's threads in the page (see `ops::cpu::threads`), in the build with
//! atomics only (www/engine-pkg.js loads it in a cross-origin isolated page): it hands its
//! module and shared memory to the Web Workers the page starts (`threadStart`), each of which
//! calls `threadServe` and stays there, and is then told how many threads to split loops for
//! (`setThreads`).

use wasm_bindgen::prelude::*;

/// [module, memory]: what a thread's worker instantiates the engine with.
#[wasm_bindgen(js_name = threadStart)]
pub fn thread_start() -> js_sys::Array {
    js_sys::Array::of2(&wasm_bindgen::module(), &wasm_bindgen::memory())
}

/// A thread worker's loop: takes part in every parallel loop; never returns.
#[wasm_bindgen(js_name = threadServe)]
pub fn thread_serve() {
    crate::ops::cpu::threads::serve();
}

/// Splits the CPU backend's loops for `n` threads: the engine's and n - 1 started workers.
#[wasm_bindgen(js_name = setThreads)]
pub fn set_threads(n: usize) {
    crate::ops::cpu::threads::set_count(n);
}
