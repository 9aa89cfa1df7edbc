//! A Rust panic in the page aborts: the wasm call traps and JS sees only "unreachable". The
//! hook keeps what the panic said, so the worker can tell the person why the engine stopped
//! (`lastPanic`), and hands a thread worker's panic to the loop waiting for its task.

use std::sync::Mutex;

use wasm_bindgen::prelude::*;

use crate::ops::cpu::threads::{self, TestFault};

static LAST: Mutex<Option<String>> = Mutex::new(None);

/// Installs the hook (on every thread's start; the hook itself is shared).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let message = payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("a panic without a message");
            let message = match info.location() {
                Some(at) => format!("{message} (at {}:{})", at.file(), at.line()),
                None => message.to_string(),
            };
            *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
            threads::task_panicked(&message);
            console_error_panic_hook::hook(info);
        }));
    });
}

/// What the engine's last panic said, if it panicked.
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    LAST.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Test hook: the engine's next parallel loop panics, on the engine's thread ('engine') or
/// in a task on a CPU thread worker ('thread'), as a bug there would, or runs out of
/// memory ('memory'), as a request too large for the page would.
#[wasm_bindgen(js_name = testFault)]
pub fn test_fault(place: &str) -> Result<(), JsError> {
    let place = match place {
        "engine" => TestFault::Caller,
        "thread" => TestFault::Worker,
        "memory" => TestFault::Memory,
        other => return Err(JsError::new(&format!("testFault '{other}': expected 'engine', 'thread' or 'memory'"))),
    };
    threads::arm_test_fault(place).map_err(|e| JsError::new(&e))
}
