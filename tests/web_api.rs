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
    let mut e = Engine::create(Some(backend.into())).await.map_err(JsValue::from).expect("engine");
    e.begin_model(MANIFEST).map_err(JsValue::from).expect("manifest");
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
