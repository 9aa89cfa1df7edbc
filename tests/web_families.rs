//! The families besides Stable Diffusion in headless Chrome, on WebGPU (SwiftShader) and
//! on the wasm CPU backend, against the same PyTorch references the native suites use
//! (ddpm_native.rs, vqgan_native.rs, amused_native.rs): the browser build compiles its own
//! WGSL and runs its own f32 math, so agreement natively says little about the page.
//! DDPM: one UNet2DModel call (1e-4) and the 10-step DDIM sample (1e-3). VQ (taming VQGAN
//! and diffusers VQModel): code indices exact, latents, z_q and decodes within 1e-4.
//! aMUSEd: one UVit2DModel call's logits (1e-4) and the fixture's whole run from its saved
//! draws, final tokens exact. DCGAN: the bundled emoji-dcgan's images against PyTorch (1e-5).

#![cfg(target_arch = "wasm32")]

#[allow(dead_code)]
#[path = "sd/refs.rs"]
mod refs;

use std::collections::{BTreeMap, HashMap};

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::Session;
use easel::ops::WeightStore;
use easel::pipelines::amused_pipeline::{self, AmusedPipeline};
use easel::pipelines::ddpm::{self, Ddpm};
use easel::pipelines::vqgan::prepare;
use easel::pipelines::{Progress, Request, VqGan};
use easel::weights::safetensors;
use refs::{parse_references, rel_err, Ref};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The native suites' bounds, unchanged: the browser must do as well as lavapipe does.
const TOL: f64 = 1e-4;
/// Ten DDIM steps compound the UNet's rounding (ddpm_native.rs).
const DDIM_TOL: f64 = 1e-3;

/// Safetensors weights as a loaded model holds them: `prefix.name` (or bare names where
/// the family renames them itself), f32.
fn add_weights(store: &mut WeightStore, prefix: &str, bytes: &[u8]) {
    let header = safetensors::parse(prefix, bytes).unwrap();
    for (name, info) in &header.tensors {
        let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        store.insert_f32(&full, &info.shape, &safetensors::to_f32(prefix, name, info, raw).unwrap()).unwrap();
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

/// WebGPU first, then the wasm CPU backend, over the same weights.
async fn sessions(store: &WeightStore) -> [Session; 2] {
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    [Session::gpu(ctx, store).unwrap(), Session::cpu(store.clone())]
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Logs and checks one float result against its reference.
fn close(case: &str, kind: &str, name: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{case} {name} on {kind}: length");
    let e = rel_err(got, want);
    console_log!("{case} {name} [{kind}, wasm]: relative error {e:.2e}, max |diff| {:.2e}", max_abs(got, want));
    assert!(e <= tol, "{case} {name} on {kind}: relative error {e:e} > {tol:e}");
}

/// Logs and checks discrete results (code indices, tokens), which must agree exactly.
fn exact(case: &str, kind: &str, name: &str, got: &[u32], want: &Ref) {
    let want = ints(want);
    let wrong = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    console_log!("{case} {name} [{kind}, wasm]: {wrong} of {} differ", want.len());
    assert_eq!(got, &want[..], "{case} {name} on {kind}");
}

fn ints(r: &Ref) -> Vec<u32> {
    r.values.iter().map(|&v| v as u32).collect()
}

fn shape4(r: &Ref) -> [usize; 4] {
    r.shape.clone().try_into().unwrap()
}

/// Largest |pixel / 255 - reference| over an RGBA image against an NHWC [0, 1] reference.
fn worst_pixel(rgba: &[u8], nhwc: &[f32]) -> f32 {
    (0..nhwc.len()).map(|i| (rgba[(i / 3) * 4 + i % 3] as f32 / 255.0 - nhwc[i]).abs()).fold(0.0, f32::max)
}

#[wasm_bindgen_test]
async fn ddpm_unet_and_ddim_sampling_match_diffusers_on_webgpu_and_wasm_cpu() {
    let case = "ddpm-tiny";
    let refs = parse_references(case, include_bytes!("fixtures/ddpm-tiny/reference.safetensors"));
    let mut store = WeightStore::new();
    add_weights(&mut store, "unet", include_bytes!("fixtures/ddpm-tiny/unet/diffusion_pytorch_model.safetensors"));
    let configs = BTreeMap::from([
        ("unet".to_string(), json(include_str!("fixtures/ddpm-tiny/unet/config.json"))),
        ("scheduler".to_string(), json(include_str!("fixtures/ddpm-tiny/scheduler/scheduler_config.json"))),
    ]);
    for session in sessions(&store).await {
        let mut m = Ddpm::new(session, &configs).unwrap();
        let kind = m.session.kind();
        let t = refs["unet_call/timestep"].values[0];
        let out = m.unet([1, 3, 16, 16], refs["unet_call/sample"].values.clone(), t).await.unwrap();
        close(case, kind, "unet_call/output", &out, &refs["unet_call/output"].values, TOL);

        // The fixture ran DDIMPipeline (eta 0, so x_T is its only draw) from a DDPM repo.
        let req = Request { steps: 10, width: 16, height: 16, scheduler: Some("ddim".into()), init_latents: Some(refs["ddim/init_noise"].values.clone()), ..Request::new("") };
        let mut steps = 0;
        let out = ddpm::generate(&mut m, &req, &mut |p| {
            steps += matches!(p, Progress::Step { .. }) as usize;
            true
        })
        .await
        .unwrap();
        assert_eq!((steps, out.scheduler), (10, "ddim"));
        close(case, kind, "ddim/final_sample", &out.latents, &refs["ddim/final_sample"].values, DDIM_TOL);
        // The 8-bit image is the sample /2 + 0.5: within rounding of diffusers' image_np.
        let worst = worst_pixel(&out.images[0].data, &refs["ddim/image_np"].values);
        console_log!("{case} ddim/image_np [{kind}, wasm]: worst pixel off by {worst:.2e}");
        assert!(worst <= 0.5 / 255.0 + 1e-3, "{case} ddim image on {kind}: pixel off by {worst}");
    }
}

#[wasm_bindgen_test]
async fn taming_vqgan_matches_the_reference_on_webgpu_and_wasm_cpu() {
    let case = "vqgan-taming-tiny";
    let refs = parse_references(case, include_bytes!("fixtures/vqgan-taming-tiny/reference.safetensors"));
    // Taming's own names; `prepare` renames them and reads the config from the YAML.
    let mut raw = WeightStore::new();
    add_weights(&mut raw, "", include_bytes!("fixtures/vqgan-taming-tiny/model.safetensors"));
    let configs = BTreeMap::from([("taming".to_string(), serde_json::json!({ "yaml": include_str!("fixtures/vqgan-taming-tiny/config.yaml") }))]);
    let (cfg, store) = prepare("vqgan-taming", &configs, raw).unwrap();
    for session in sessions(&store).await {
        let mut vq = VqGan::new(session, cfg.clone());
        let kind = vq.session.kind();
        let image = &refs["encode/image"];
        let e = vq.encode(shape4(image), image.values.clone()).await.unwrap();
        assert_eq!(e.grid, [1, 16, 16]);
        close(case, kind, "encode/h", &e.latents, &refs["encode/h"].values, TOL);
        exact(case, kind, "encode/indices", &e.indices, &refs["encode/indices"]);
        close(case, kind, "encode/quant", &e.z_q, &refs["encode/quant"].values, TOL);
        let codes = &refs["decode_code/codes"];
        let out = vq.decode(codes.shape.clone().try_into().unwrap(), &ints(codes)).await.unwrap();
        close(case, kind, "decode_code/output", &out, &refs["decode_code/output"].values, TOL);
        // model.decode(quant): quant is the codebook rows up to rounding, so the same decode.
        close(case, kind, "decode/output", &out, &refs["decode/output"].values, TOL);
    }
}

#[wasm_bindgen_test]
async fn diffusers_vqmodel_matches_the_reference_on_webgpu_and_wasm_cpu() {
    let case = "vqmodel-tiny";
    let refs = parse_references(case, include_bytes!("fixtures/vqmodel-tiny/reference.safetensors"));
    let mut raw = WeightStore::new();
    add_weights(&mut raw, "vqvae", include_bytes!("fixtures/vqmodel-tiny/diffusion_pytorch_model.safetensors"));
    let configs = BTreeMap::from([("vqvae".to_string(), json(include_str!("fixtures/vqmodel-tiny/config.json")))]);
    let (cfg, store) = prepare("vqmodel", &configs, raw).unwrap();
    for session in sessions(&store).await {
        let mut vq = VqGan::new(session, cfg.clone());
        let kind = vq.session.kind();
        let image = &refs["encode/image"];
        let e = vq.encode(shape4(image), image.values.clone()).await.unwrap();
        assert_eq!(e.grid, [1, 8, 8]);
        close(case, kind, "encode/latents", &e.latents, &refs["encode/latents"].values, TOL);
        exact(case, kind, "quantize/indices", &e.indices, &refs["quantize/indices"]);
        close(case, kind, "quantize/quant", &e.z_q, &refs["quantize/quant"].values, TOL);
        // VQModel.decode(latents) quantizes first: a second graph, besides the code decoder.
        let latents = &refs["encode/latents"];
        let out = vq.decode_latents(shape4(latents), latents.values.clone()).await.unwrap();
        close(case, kind, "decode/from_latents", &out, &refs["decode/from_latents"].values, TOL);
        let codes = &refs["decode/codes"];
        let out = vq.decode(codes.shape.clone().try_into().unwrap(), &ints(codes)).await.unwrap();
        close(case, kind, "decode/from_indices", &out, &refs["decode/from_indices"].values, TOL);
    }
}

#[wasm_bindgen_test]
async fn amused_transformer_and_run_match_diffusers_on_webgpu_and_wasm_cpu() {
    let case = "amused-tiny";
    let refs = parse_references(case, include_bytes!("fixtures/amused-tiny/reference.safetensors"));
    let mut store = WeightStore::new();
    add_weights(&mut store, "text_encoder", include_bytes!("fixtures/amused-tiny/text_encoder/model.safetensors"));
    add_weights(&mut store, "transformer", include_bytes!("fixtures/amused-tiny/transformer/diffusion_pytorch_model.safetensors"));
    add_weights(&mut store, "vqvae", include_bytes!("fixtures/amused-tiny/vqvae/diffusion_pytorch_model.safetensors"));
    let configs = BTreeMap::from([
        ("text_encoder".to_string(), json(include_str!("fixtures/amused-tiny/text_encoder/config.json"))),
        ("transformer".to_string(), json(include_str!("fixtures/amused-tiny/transformer/config.json"))),
        ("vqvae".to_string(), json(include_str!("fixtures/amused-tiny/vqvae/config.json"))),
        ("scheduler".to_string(), json(include_str!("fixtures/amused-tiny/scheduler/scheduler_config.json"))),
    ]);
    // The page tokenizes the prompt itself; the vocabulary is CLIP's (the bundled merges).
    let files = HashMap::from([
        ("tokenizer/vocab.json".to_string(), include_bytes!("fixtures/amused-tiny/tokenizer/vocab.json").to_vec()),
        ("tokenizer/tokenizer_config.json".to_string(), include_bytes!("fixtures/amused-tiny/tokenizer/tokenizer_config.json").to_vec()),
    ]);
    let meta = json(include_str!("fixtures/amused-tiny/reference.json"));
    let call = &meta["runs"][0]["call"];
    // diffusers' torch.multinomial and Gumbel noise, replaced in the fixture by these
    // uniforms: the run is deterministic, so its tokens must come out identical.
    let mut draws = BTreeMap::new();
    for i in 0..call["num_inference_steps"].as_u64().unwrap() {
        draws.insert(format!("sample_u_{i}"), refs[&format!("run/multinomial_u_{i}")].values.clone());
        if let Some(g) = refs.get(&format!("run/gumbel_u_{i}")) {
            draws.insert(format!("gumbel_u_{i}"), g.values.clone());
        }
    }
    let req = Request {
        steps: call["num_inference_steps"].as_u64().unwrap() as usize,
        guidance: call["guidance_scale"].as_f64().unwrap() as f32,
        width: call["width"].as_u64().unwrap() as usize,
        height: call["height"].as_u64().unwrap() as usize,
        token_draws: Some(draws),
        ..Request::new(call["prompt"][0].as_str().unwrap())
    };
    for session in sessions(&store).await {
        let mut p = AmusedPipeline::new(session, &configs, &files).unwrap();
        let kind = p.model.session.kind();
        let ids = &refs["transformer_call/input_ids"];
        let logits = p
            .model
            .logits(
                [1, 8, 8],
                &ints(ids),
                &refs["transformer_call/encoder_hidden_states"].values,
                &refs["transformer_call/pooled_text_emb"].values,
                &refs["transformer_call/micro_conds"].values,
            )
            .await
            .unwrap();
        close(case, kind, "transformer_call/logits", &logits, &refs["transformer_call/logits"].values, TOL);

        let out = amused_pipeline::generate(&mut p, &req, &mut |_| true).await.unwrap();
        // Both prompts' penultimate states: the tokenizer and text encoder as the page runs them.
        let pen = &refs["text/hidden_states_penultimate"].values;
        close(case, kind, "run prompt penultimate", &out.prompt_embeds, &pen[..pen.len() / 2], TOL);
        close(case, kind, "run negative penultimate", &out.negative_prompt_embeds, &pen[pen.len() / 2..], TOL);
        let tokens: Vec<u32> = out.latents.iter().map(|&t| t as u32).collect();
        exact(case, kind, "run/final_tokens", &tokens, &refs["run/final_tokens"]);
        close(case, kind, "run/decoded_raw", &out.decoded, &refs["run/decoded_raw"].values, TOL);
    }
}

/// The bundled emoji-dcgan (q8_0 shards read as the page reads them) against PyTorch on the
/// same weights (tests/fixtures/emoji-dcgan-parity, dcgan_native.rs): the transposed convs
/// in the browser's WGSL and wasm f32, within the native bound.
#[wasm_bindgen_test]
async fn emoji_dcgan_matches_pytorch_on_webgpu_and_wasm_cpu() {
    use easel::ops::HostWeight;
    use easel::pipelines::Generator;
    use easel::weights::manifest::Manifest;
    let case = "emoji-dcgan-parity";
    let refs = parse_references(case, include_bytes!("fixtures/emoji-dcgan-parity/reference.safetensors"));
    let meta = json(include_str!("fixtures/emoji-dcgan-parity/reference.json"));
    let manifest = Manifest::parse(include_bytes!("../www/models/emoji-dcgan/manifest.json")).unwrap();
    assert_eq!(manifest.content_sha256, meta["model_content_sha256"].as_str().unwrap(), "www/models/emoji-dcgan changed: rerun scripts/train/make_dcgan_parity.py");
    let shard: &[u8] = include_bytes!("../www/models/emoji-dcgan/shard-00000.bin");
    let mut store = WeightStore::new();
    for t in &manifest.tensors {
        let bytes: Vec<u8> = t.parts.iter().flat_map(|p| shard[p.offset as usize..(p.offset + p.length) as usize].to_vec()).collect();
        store.insert_raw(&t.name, HostWeight { shape: t.shape.clone(), storage: t.storage, bytes }).unwrap();
    }
    for session in sessions(&store).await {
        let kind = session.kind();
        let mut g = Generator::new("dcgan", session, &manifest.configs, &HashMap::new()).unwrap();
        for run in meta["runs"].as_array().unwrap() {
            let name = run["name"].as_str().unwrap();
            let req = Request {
                width: 32,
                height: 32,
                batch: run["batch"].as_u64().unwrap() as usize,
                init_latents: Some(refs[&format!("{name}/z")].values.clone()),
                ..Request::new(run["prompt"].as_str().unwrap())
            };
            let out = g.generate(&req, &mut |_| true).await.unwrap();
            close(case, kind, &format!("{name}/images"), &out.decoded, &refs[&format!("{name}/images")].values, 1e-5);
        }
    }
}
