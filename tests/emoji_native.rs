//! The bundled, trained emoji-sd model (www/models/emoji-sd, q8_0) against diffusers on the
//! same weights: tests/fixtures/emoji-sd-parity holds diffusers' run with every tensor read
//! back from the committed shards (scripts/train/make_parity.py), so both sides compute with
//! identical weights and the f32 bounds of the SD fixtures apply. Unlike the random fixture
//! models, the latents here come from a trained denoiser over 20 guided steps. The same for
//! the bundled emoji-amused (tests/fixtures/emoji-amused-parity): its final tokens exactly.

#![cfg(not(target_arch = "wasm32"))]

mod sd;

use std::path::Path;

use easel::ops::StorageType;
use easel::pipelines::generate;
use sd::{fixture, fixture_request, references, rel_err, sd_pipeline};

/// Relative error bounds (final latents, decoded image): those of the f32 SD fixture runs.
const TOL: (f64, f64) = (1e-3, 1e-3);

fn run(gpu: bool) -> (f64, f64, f64) {
    let case = "emoji-sd-parity";
    let refs = references(case);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(case).join("reference.json")).unwrap()).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/emoji-sd");
    // The fixture was made from these exact shards; a retrained bundle needs a new fixture.
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["content_sha256"], meta["model_content_sha256"], "www/models/emoji-sd changed: rerun scripts/train/make_parity.py");
    let mut sd = sd_pipeline(&dir, StorageType::Q8_0, gpu);
    let run = &meta["runs"][0];
    let name = run["name"].as_str().unwrap();
    let out = pollster::block_on(generate(&mut sd, &fixture_request(run, &refs), &mut |_| true)).unwrap();
    let want = &refs[&format!("{name}/final_latents")].values;
    let max_abs = out.latents.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) as f64;
    let latents = rel_err(&out.latents, want);
    let decoded = rel_err(&out.decoded, &refs[&format!("{name}/decoded_raw")].values);
    println!("emoji-sd [{}]: final latents relative error {latents:.2e} (max abs {max_abs:.2e}), decoded image {decoded:.2e}", sd.session.kind());
    (latents, decoded, max_abs)
}

fn check((latents, decoded, _): (f64, f64, f64)) {
    assert!(latents <= TOL.0, "final latents relative error {latents:e} > {:e}", TOL.0);
    assert!(decoded <= TOL.1, "decoded image relative error {decoded:e} > {:e}", TOL.1);
}

#[test]
fn bundled_emoji_sd_matches_diffusers_on_cpu() {
    check(run(false));
}

#[test]
fn bundled_emoji_sd_matches_diffusers_on_the_gpu() {
    check(run(true));
}

/// The bundled emoji-amused against diffusers' AmusedPipeline on the same weights, with
/// diffusers' multinomial and Gumbel draws replaced by saved uniforms that Easel reads as its
/// draws (scripts/train/make_amused_parity.py): the final token grid must be identical.
fn amused_parity(gpu: bool) {
    use easel::pipelines::{Generator, Request};
    let case = "emoji-amused-parity";
    let refs = references(case);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(case).join("reference.json")).unwrap()).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/emoji-amused");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["content_sha256"], meta["model_content_sha256"], "www/models/emoji-amused changed: rerun scripts/train/make_amused_parity.py");
    let m = easel::pipelines::native::load_model_dir(&dir, StorageType::Q8_0).unwrap();
    let session = if gpu {
        let ctx = pollster::block_on(easel::gpu::GpuContext::new(&easel::gpu::GpuOptions::default())).expect("a Vulkan adapter (mesa-vulkan-drivers)");
        easel::models::Session::gpu(ctx, &m.weights).unwrap()
    } else {
        easel::models::Session::cpu(m.weights)
    };
    let mut g = Generator::new(&m.family, session, &m.configs, &m.files).unwrap();
    let call = &meta["runs"][0]["call"];
    let steps = call["num_inference_steps"].as_u64().unwrap() as usize;
    let mut draws = std::collections::BTreeMap::new();
    for i in 0..steps {
        draws.insert(format!("sample_u_{i}"), refs[&format!("run/multinomial_u_{i}")].values.clone());
        if let Some(u) = refs.get(&format!("run/gumbel_u_{i}")) {
            draws.insert(format!("gumbel_u_{i}"), u.values.clone());
        }
    }
    let req = Request {
        steps,
        guidance: call["guidance_scale"].as_f64().unwrap() as f32,
        width: 32,
        height: 32,
        token_draws: Some(draws),
        ..Request::new(call["prompt"].as_str().unwrap())
    };
    let out = pollster::block_on(g.generate(&req, &mut |_| true)).unwrap();
    let want = &refs["run/final_tokens"].values;
    let wrong = out.latents.iter().zip(want).filter(|(a, b)| a != b).count();
    println!("emoji-amused [{}]: {wrong} of {} final tokens differ from diffusers'", g.session().kind(), want.len());
    assert_eq!(out.latents, *want);
}

#[test]
fn bundled_emoji_amused_matches_diffusers_on_cpu() {
    amused_parity(false);
}

#[test]
fn bundled_emoji_amused_matches_diffusers_on_the_gpu() {
    amused_parity(true);
}

/// The CPU's fast precision (Winograd F(2x2,3x3) for 3x3 convolutions) on the bundled
/// emoji-sd at 128 px, where its UNet's and decoder's convolutions run at 64x64 and 128x128
/// and take that path: against the exact CPU run, the same picture to within the last bits.
#[test]
fn fast_precision_on_the_cpu_stays_within_a_level_of_exact() {
    use easel::gpu::Precision;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/emoji-sd");
    let mut sd = sd_pipeline(&dir, StorageType::Q8_0, false);
    let req = easel::pipelines::Request { steps: 2, width: 128, height: 128, seed: 7, ..easel::pipelines::Request::new("一只戴墨镜的柴犬 😎") };
    assert_eq!(sd.session.precision(), "exact");
    let exact = pollster::block_on(generate(&mut sd, &req, &mut |_| true)).unwrap();
    sd.session.set_cpu_precision(Precision::Fast);
    assert_eq!(sd.session.precision(), "fast (Winograd 3x3 convolutions)");
    let fast = pollster::block_on(generate(&mut sd, &req, &mut |_| true)).unwrap();
    let (latents, decoded) = (rel_err(&fast.latents, &exact.latents), rel_err(&fast.decoded, &exact.decoded));
    let levels = fast.images[0].data.iter().zip(&exact.images[0].data).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    println!("emoji-sd 128 px, fast against exact on the CPU: final latents {latents:.2e}, decoded {decoded:.2e}, max {levels} of 255");
    // Not the exact run's bits (the path ran), and an f32 rounding's distance from them.
    assert!(decoded > 0.0, "the fast precision computed the exact bits: Winograd did not run");
    // Measured: 7.2e-6 and 4.6e-6; the f32 fixtures allow 1e-3 against diffusers.
    assert!(latents <= 2e-5 && decoded <= 2e-5, "latents {latents:e}, decoded {decoded:e}");
    assert!(levels <= 1, "{levels} levels of 255 apart");
}
