//! Out of memory in the page. wasm32 memory stops at 4 GB; past it an allocation fails,
//! Rust aborts without a panic (so the panic hook never runs) and JS sees only
//! "RuntimeError: unreachable". This allocator is the system one, except that it notes the
//! size of a request it could not serve, so the worker can say the engine ran out of memory
//! and how much it asked for (`lastAllocFailure`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_bindgen::prelude::*;

/// Bytes of the last request that failed; 0: none has.
static FAILED: AtomicUsize = AtomicUsize::new(0);

struct NotingAllocator;

// SAFETY: every call is `System`'s with the same arguments; failures are only noted.
unsafe impl GlobalAlloc for NotingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        noted(System.alloc(layout), layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        noted(System.alloc_zeroed(layout), layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        noted(System.realloc(ptr, layout, new_size), new_size)
    }
}

fn noted(ptr: *mut u8, size: usize) -> *mut u8 {
    if ptr.is_null() {
        FAILED.store(size, Ordering::Relaxed);
    }
    ptr
}

#[global_allocator]
static ALLOCATOR: NotingAllocator = NotingAllocator;

/// The memory the module has now, in bytes (what it has grown to; it never shrinks).
fn memory_bytes() -> usize {
    core::arch::wasm32::memory_size(0) * 65536
}

/// The last allocation the engine could not get, if one failed: `{ requested, memory }` in
/// bytes (`memory`: what the module had then, and still has: wasm memory never shrinks).
#[wasm_bindgen(js_name = lastAllocFailure)]
pub fn last_alloc_failure() -> JsValue {
    match FAILED.load(Ordering::Relaxed) {
        0 => JsValue::UNDEFINED,
        requested => {
            let out = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&out, &"requested".into(), &(requested as f64).into());
            let _ = js_sys::Reflect::set(&out, &"memory".into(), &(memory_bytes() as f64).into());
            out.into()
        }
    }
}
