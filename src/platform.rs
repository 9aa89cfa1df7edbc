//! The few things that differ between the browser and a native process.

/// Milliseconds from an arbitrary origin, for timing only.
#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    // performance.now() exists in windows and workers alike; Date.now() is the fallback.
    use js_sys::Reflect;
    use wasm_bindgen::JsCast;
    let perf = Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = perf.as_ref().and_then(|p| Reflect::get(p, &"now".into()).ok()).and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    match (perf, now) {
        (Some(p), Some(f)) => f.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or_else(js_sys::Date::now),
        _ => js_sys::Date::now(),
    }
}

/// Milliseconds from an arbitrary origin, for timing only.
#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

/// Lets the browser's event loop run (a message asking to cancel, say) between steps of a
/// long computation; natively there is nothing to wait for.
#[cfg(target_arch = "wasm32")]
pub async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &"setTimeout".into()).ok().and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&global, &resolve, &0.into());
            }
            None => {
                let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Lets the browser's event loop run between steps; natively there is nothing to wait for.
#[cfg(not(target_arch = "wasm32"))]
pub async fn yield_now() {}
