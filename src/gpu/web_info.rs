//! Browser-only: the parts of `GPUAdapterInfo` that wgpu's web backend does not pass on.

use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Vendor, architecture and description as the browser reports them.
pub struct WebAdapterInfo {
    pub vendor: String,
    pub architecture: String,
    pub description: String,
    pub is_fallback: bool,
}

fn navigator_gpu() -> Option<JsValue> {
    let global = js_sys::global();
    let navigator = Reflect::get(&global, &"navigator".into()).ok()?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok()?;
    (!gpu.is_undefined() && !gpu.is_null()).then_some(gpu)
}

/// Whether `navigator.gpu` exists (in a window or a worker).
pub fn has_navigator_gpu() -> bool {
    navigator_gpu().is_some()
}

fn string_field(obj: &JsValue, key: &str) -> String {
    Reflect::get(obj, &key.into()).ok().and_then(|v| v.as_string()).unwrap_or_default()
}

/// Asks the browser for an adapter of its own and reads its `info`. Empty strings where the
/// browser withholds a field.
pub async fn adapter_info() -> WebAdapterInfo {
    let empty = WebAdapterInfo { vendor: String::new(), architecture: String::new(), description: String::new(), is_fallback: false };
    let Some(gpu) = navigator_gpu() else { return empty };
    let Ok(request) = Reflect::get(&gpu, &"requestAdapter".into()) else { return empty };
    let Ok(request) = request.dyn_into::<js_sys::Function>() else { return empty };
    let options = js_sys::Object::new();
    let _ = Reflect::set(&options, &"powerPreference".into(), &"high-performance".into());
    let Ok(promise) = request.call1(&gpu, &options) else { return empty };
    let Ok(adapter) = JsFuture::from(js_sys::Promise::from(promise)).await else { return empty };
    if adapter.is_null() || adapter.is_undefined() {
        return empty;
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    // isFallbackAdapter moved from the adapter to its info in 2025; read both.
    let fallback = |o: &JsValue| Reflect::get(o, &"isFallbackAdapter".into()).ok().and_then(|v| v.as_bool());
    WebAdapterInfo {
        vendor: string_field(&info, "vendor"),
        architecture: string_field(&info, "architecture"),
        description: string_field(&info, "description"),
        is_fallback: fallback(&info).or_else(|| fallback(&adapter)).unwrap_or(false),
    }
}
