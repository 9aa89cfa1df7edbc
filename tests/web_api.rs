//! The wasm API as the page's worker calls it, in headless Chrome: the bundled sd-tiny loaded
//! through beginModel/addShard/addFile/finishModel, then `generate` with prompts in any
//! script (read back exactly from the PNGs) and every bad request the page can send, each
//! with its message asserted word for word.

#![cfg(target_arch = "wasm32")]

use easel::api::Engine;
use easel::pipelines::Rgba;
use js_sys::{Array, Function, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const MANIFEST: &str = include_str!("../www/models/sd-tiny/manifest.json");
const SHARD: &[u8] = include_bytes!("../www/models/sd-tiny/shard-00000.bin");
const FILES: [(&str, &[u8]); 4] = [
    ("tokenizer/merges.txt", include_bytes!("../www/models/sd-tiny/tokenizer/merges.txt")),
    ("tokenizer/special_tokens_map.json", include_bytes!("../www/models/sd-tiny/tokenizer/special_tokens_map.json")),
    ("tokenizer/tokenizer_config.json", include_bytes!("../www/models/sd-tiny/tokenizer/tokenizer_config.json")),
    ("tokenizer/vocab.json", include_bytes!("../www/models/sd-tiny/tokenizer/vocab.json")),
];

async fn engine(backend: &str) -> Engine {
    let mut e = Engine::create(Some(backend.into()), None, None).await.map_err(JsValue::from).expect("engine");
    e.begin_model(MANIFEST.into()).await.map_err(JsValue::from).expect("manifest");
    e.add_shard(0, SHARD).map_err(JsValue::from).expect("shard");
    for (path, bytes) in FILES {
        e.add_file(path.into(), bytes.to_vec());
    }
    e.finish_model().map_err(JsValue::from).expect("finish");
    e
}

fn get(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &key.into()).unwrap()
}

/// The message of a failed generate, or the result.
async fn run(e: &mut Engine, json: &str) -> Result<JsValue, String> {
    let progress = Function::new_with_args("p", "return true");
    e.generate(json.into(), progress).await.map_err(|err| get(&JsValue::from(err), "message").as_string().unwrap())
}

fn text_of(png: &JsValue) -> Vec<(String, String)> {
    Rgba::png_text(&png.dyn_ref::<Uint8Array>().unwrap().to_vec()).unwrap()
}

fn value(text: &[(String, String)], key: &str) -> String {
    text.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no '{key}'"))
}

async fn unicode_prompts_round_trip(backend: &str) {
    let mut e = engine(backend).await;
    for (prompt, negative) in [("一只戴墨镜的柴犬 😎", "模糊, 低质量"), ("שלום 👋🏽 cafe\u{301}\u{200b}", "")] {
        let req = serde_json::json!({ "prompt": prompt, "negative_prompt": negative, "steps": 2, "width": 16, "height": 16, "seed": 3, "batch": 2 });
        let out = run(&mut e, &req.to_string()).await.unwrap_or_else(|m| panic!("{backend} {prompt}: {m}"));
        let pngs: Array = get(&out, "pngs").dyn_into().unwrap();
        let errors: Array = get(&out, "pngErrors").dyn_into().unwrap();
        assert_eq!((pngs.length(), errors.length()), (2, 2));
        for i in 0..2 {
            assert!(errors.get(i).is_null(), "PNG {i} has no metadata error");
            let t = text_of(&pngs.get(i));
            assert_eq!(value(&t, "prompt"), prompt);
            assert_eq!(value(&t, "negative_prompt"), negative);
            assert_eq!(value(&t, "batch_index"), i.to_string());
            let neg = if negative.is_empty() { String::new() } else { format!("\nNegative prompt: {negative}") };
            let head = format!("{prompt}{neg}\nSteps: 2, Sampler: Euler, CFG scale: 7.5, Seed: 3, Size: 16x16, Model: sd2-tiny, Batch size: 2, Batch pos: {i}");
            assert_eq!(value(&t, "parameters"), format!("{head}, Version: easel {}", easel::VERSION));
        }
    }
    // A prompt past 77 tokens is cut, and the result says so.
    let long = "一只戴墨镜的柴犬 ".repeat(40);
    let out = run(&mut e, &serde_json::json!({ "prompt": long, "steps": 1, "width": 16, "height": 16 }).to_string()).await.unwrap();
    assert_eq!(get(&out, "truncated").as_bool(), Some(true));
}

#[wasm_bindgen_test]
async fn prompts_in_any_script_round_trip_on_the_wasm_cpu() {
    unicode_prompts_round_trip("cpu").await;
}

#[wasm_bindgen_test]
async fn prompts_in_any_script_round_trip_on_webgpu() {
    unicode_prompts_round_trip("gpu").await;
}

#[wasm_bindgen_test]
async fn bad_requests_get_their_sentence() {
    let mut e = engine("cpu").await;
    let cases = [
        (r#"{"seed": -1}"#, "seed = -1 must be a whole number from 0 to 18446744073709551615"),
        (r#"{"seed": 0.5}"#, "seed = 0.5 must be a whole number from 0 to 18446744073709551615"),
        (r#"{"seed": 1e20}"#, "seed = 1e+20 must be a whole number from 0 to 18446744073709551615"),
        (r#"{"guidance": null}"#, "guidance = null must be a number"),
        (r#"{"steps": 0, "width": 16, "height": 16}"#, "request: steps = 0 must be between 1 and 1000"),
        (r#"{"steps": 10000, "width": 16, "height": 16}"#, "request: steps = 10000 must be between 1 and 1000"),
        (r#"{"width": 12, "height": 16}"#, "request: size 12x16 must be positive multiples of 8"),
        (r#"{"width": 16, "height": 16, "batch": 1000}"#, "request: batch = 1000 must be between 1 and 16"),
        (r#"{"width": 16, "height": 16, "guidance": -2}"#, "request: guidance = -2 must be a number >= 0"),
        (r#"{"width": 16, "height": 16, "strength": 1.5}"#, "request: strength = 1.5 must be between 0 and 1"),
        ("not json", "the request is not valid JSON: expected ident at line 1 column 2"),
    ];
    for (json, want) in cases {
        assert_eq!(run(&mut e, json).await.err().as_deref(), Some(want), "{json}");
    }
    // Too large for wasm32's memory: refused at once, with the largest size that fits.
    let err = run(&mut e, r#"{"width": 8192, "height": 8192, "guidance": 0}"#).await.unwrap_err();
    let head = "too large: 8192x8192 needs 8.0 GiB for the UNet's feed-forward activations (16777216 tokens x 128), \
                but the page's memory limit (wasm32: 4 GiB in all, 2 GiB in one piece) is 2.0 GiB: the largest square size that fits is ";
    assert!(err.starts_with(head), "{err}");
    // The engine is still usable after every refusal.
    run(&mut e, r#"{"prompt": "a fox", "steps": 1, "width": 16, "height": 16}"#).await.unwrap();
}

fn message(err: wasm_bindgen::JsError) -> String {
    get(&JsValue::from(err), "message").as_string().unwrap()
}

/// A manifest listing `count` f32 tensors of `shape`, each over as many 32 MiB shards as it
/// needs: the fit check reads the manifest only, so no shard bytes have to exist.
fn manifest_with(name: &str, shape: &[usize], count: usize) -> String {
    use easel::weights::manifest::{Part, ShardEntry, TensorEntry};
    const SHARD: u64 = 32 << 20;
    let bytes = 4 * shape.iter().product::<usize>() as u64;
    let (mut shards, mut tensors) = (vec![], vec![]);
    for t in 0..count {
        let first = shards.len();
        for i in 0..bytes.div_ceil(SHARD) {
            shards.push(ShardEntry { file: format!("shard-{:05}.bin", shards.len()), size: SHARD.min(bytes - i * SHARD), sha256: "0".repeat(64) });
        }
        let parts = (first..shards.len()).map(|i| Part { shard: i, offset: 0, length: shards[i].size }).collect();
        tensors.push(TensorEntry { name: format!("unet.conv_{t}.weight"), shape: shape.to_vec(), storage: easel::ops::StorageType::F32, parts });
    }
    let mut m: easel::weights::Manifest = serde_json::from_str(MANIFEST).unwrap();
    (m.name, m.tensors, m.shards, m.files) = (name.into(), tensors, shards, vec![]);
    m.content_sha256 = m.compute_hash();
    m.to_json_pretty()
}

#[wasm_bindgen_test]
async fn a_model_too_large_for_the_backend_is_refused_from_its_manifest() {
    let cpu = Engine::create(Some("cpu".into()), None, None).await.map_err(JsValue::from).unwrap();
    // 4 GiB of f32 weights: more than a page can hold on the CPU backend.
    let err = message(cpu.check_model(&manifest_with("big-f32", &[1024, 1 << 18], 4)).unwrap_err());
    assert_eq!(
        err,
        "manifest: big-f32 is too large for the CPU backend: its weights need 5.00 GiB (4.00 GiB as stored, plus its largest tensor as f32 while in use), \
         more than the 3.50 GiB a web page's CPU backend can give weights (wasm32 addresses 4 GiB in all): \
         use a browser with WebGPU, or convert the model with --quant q8_0 (a quarter of the size)"
    );
    let ok: serde_json::Value = serde_json::from_str(&cpu.check_model(MANIFEST).unwrap()).unwrap();
    assert_eq!(ok["backend"], "cpu");
    // On WebGPU, a row wider than the adapter's binding limit cannot be split.
    let gpu = Engine::create(Some("gpu".into()), None, None).await.map_err(JsValue::from).unwrap();
    let report: serde_json::Value = serde_json::from_str(&gpu.adapter_report().unwrap()).unwrap();
    let binding = report["limits"]["maxStorageBufferBindingSize"].as_u64().unwrap() as usize;
    let wide = binding / 4 + 8;
    let mut gpu = gpu;
    let err = message(gpu.begin_model(manifest_with("wide", &[2, wide], 1)).await.unwrap_err());
    assert_eq!(err, format!("manifest: wide cannot be placed on this GPU: unet.conv_0.weight: one row of {} bytes exceeds the {binding}-byte binding limit", 4 * wide as u64));
}

#[wasm_bindgen_test]
async fn a_lost_gpu_device_fails_the_generation_and_a_new_engine_works() {
    let req = r#"{"prompt": "一只戴墨镜的柴犬 😎", "steps": 2, "width": 16, "height": 16}"#;
    let mut e = engine("gpu").await;
    let gpu = e.gpu_handle().expect("a GPU");
    assert_eq!(gpu.lost(), None);
    run(&mut e, req).await.expect("a working device generates");
    gpu.lose();
    assert_eq!(run(&mut e, req).await.unwrap_err(), "the GPU device was lost (destroyed); the engine has to reopen the GPU and reload the model");
    assert_eq!(gpu.lost().as_deref(), Some("destroyed"));
    // What the worker does next: a new engine, the model again from the cache.
    let mut fresh = engine("gpu").await;
    run(&mut fresh, req).await.expect("a new device generates");
}

/// Hub mode: the fit check runs on the tensors the safetensors headers announce, before
/// any weight byte is downloaded.
#[wasm_bindgen_test]
async fn a_hub_conversion_too_large_for_the_backend_is_refused_from_its_headers() {
    use easel::api::hub::HubConverter;
    let cpu = Engine::create(Some("cpu".into()), None, None).await.map_err(JsValue::from).unwrap();
    let index = r#"{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}"#;
    let mut conv = HubConverter::new("https://hub.test/big/", "big", index, "f32", 0.0, false).map_err(JsValue::from).unwrap();
    // Four [1024, 262144] f32 tensors: 4 GiB, as in the manifest case above.
    let bytes_each = 4u64 * 1024 * (1 << 18);
    let mut header = serde_json::Map::new();
    for t in 0..4u64 {
        header.insert(format!("conv_{t}.weight"), serde_json::json!({ "dtype": "F32", "shape": [1024, 1 << 18], "data_offsets": [t * bytes_each, (t + 1) * bytes_each] }));
    }
    let header = serde_json::to_vec(&header).unwrap();
    let size = 8 + header.len() as u64 + 4 * bytes_each;
    conv.add_weights("unet", "unet/diffusion_pytorch_model.safetensors", &header, size as f64, (1u64 << 30) as f64).map_err(JsValue::from).unwrap();
    let err = message(cpu.check_conversion(&conv).unwrap_err());
    assert_eq!(
        err,
        "manifest: big is too large for the CPU backend: its weights need 5.00 GiB (4.00 GiB as stored, plus its largest tensor as f32 while in use), \
         more than the 3.50 GiB a web page's CPU backend can give weights (wasm32 addresses 4 GiB in all): \
         use a browser with WebGPU, or convert the model with --quant q8_0 (a quarter of the size)"
    );
}
