//! The SDXL-Turbo architecture at full size (UNet 2.6B, CLIP-L and OpenCLIP bigG text
//! encoders, the SDXL VAE) with random weights stored as `easel convert --quant q4_0`
//! stores them, made tensor by tensor: one 1-step Turbo generation at 64x64 on the GPU
//! (lavapipe without one) and on the CPU backend, which must agree; and the 512x512 run the
//! browser budget is set for (under 2.5 GB of GPU memory in all). Prints weight bytes, peak
//! GPU bytes and times.
//!
//! These hold gigabytes and take minutes on a 2-core machine, so they run on request:
//!   cargo test --release --test sdxl_full_native -- --ignored --nocapture --test-threads 1

#![cfg(not(target_arch = "wasm32"))]

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::random::random_weight;
use easel::models::{Backend, Session};
use easel::ops::{StorageType, WeightStore};
use easel::pipelines::native::{read_tensor, write_tensors};
use easel::pipelines::{generate, Output, StableDiffusion};

#[path = "sdxl_full/setup.rs"]
mod setup;
use setup::rel_err;

/// The browser budget for SDXL-Turbo q4_0 at 512x512: weights and activations together.
const BUDGET_512: u64 = 2_500_000_000;

fn q4_store() -> WeightStore {
    let t = std::time::Instant::now();
    let configs = setup::configs();
    let mut store = WeightStore::new();
    for (name, shape, storage) in setup::weight_specs(&configs, StorageType::Q4_0) {
        store.insert(&name, &shape, storage, &random_weight(&name, &shape)).unwrap();
    }
    let params: usize = store.names().iter().map(|n| store.get(n).unwrap().numel()).sum();
    println!(
        "SDXL-Turbo shape: {:.0}M parameters, {:.2} GB as q4_0 from fp16 files (norms and embeddings f16), made in {:.1} s",
        params as f64 / 1e6,
        store.byte_size() as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    assert!(params > 3_300_000_000, "UNet 2.6B + CLIP-L 0.12B + bigG 0.69B + VAE 0.08B");
    store
}

/// One generation on the GPU; prints the time and the peak GPU bytes, returns them.
fn gpu_run(store: &WeightStore, side: usize) -> (Output, u64) {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)");
    let t = std::time::Instant::now();
    let mut sd = StableDiffusion::new(Session::gpu(ctx, store).unwrap(), &setup::configs(), &setup::files()).unwrap();
    let out = pollster::block_on(generate(&mut sd, &setup::request(side), &mut |_| true)).unwrap();
    let weights = match &sd.session.backend {
        Backend::Gpu { weights, .. } => weights.bytes,
        Backend::Cpu { .. } => unreachable!(),
    };
    let peak = weights + sd.activation_bytes();
    println!(
        "GPU ({}) at {side}x{side}: {:.1} s; peak GPU bytes {:.2} GB = weights {:.2} GB + activations {:.0} MB",
        sd.session.kind(),
        t.elapsed().as_secs_f64(),
        peak as f64 / 1e9,
        weights as f64 / 1e9,
        sd.activation_bytes() as f64 / 1e6
    );
    (out, peak)
}

fn cpu_run(store: WeightStore, side: usize) -> Output {
    let t = std::time::Instant::now();
    // The quantized store stays as it is; each weight is expanded only while it is read.
    let mut sd = StableDiffusion::new(Session::cpu_streaming(store), &setup::configs(), &setup::files()).unwrap();
    let out = pollster::block_on(generate(&mut sd, &setup::request(side), &mut |_| true)).unwrap();
    println!("CPU at {side}x{side}: {:.1} s", t.elapsed().as_secs_f64());
    out
}

#[test]
#[ignore = "minutes and gigabytes: run with --ignored (see the file's header)"]
fn sdxl_turbo_q4_0_runs_at_64px_and_backends_agree() {
    let t0 = std::time::Instant::now();
    let store = q4_store();
    let (gpu, _) = gpu_run(&store, 64);
    let cpu = cpu_run(store, 64);
    for (what, g, c) in
        [("prompt embeddings", &gpu.prompt_embeds, &cpu.prompt_embeds), ("final latents", &gpu.latents, &cpu.latents), ("decoded image", &gpu.decoded, &cpu.decoded)]
    {
        assert!(c.iter().all(|v| v.is_finite()), "{what}: CPU values are finite");
        let e = rel_err(g, c);
        println!("GPU vs CPU {what}: relative error {e:.2e}");
        assert!(e <= 1e-3, "{what}: GPU and CPU differ by {e:e}");
    }
    let spread = cpu.decoded.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(spread.1 - spread.0 > 1e-3, "the image is not flat: {spread:?}");

    // The browser test compares against these (it cannot also hold the CPU run).
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(setup::Q4_0_REFERENCE);
    let tensors: [(&str, &[usize], &[f32]); 2] = [("latents", &[1, 4, 8, 8], &cpu.latents), ("decoded", &[1, 3, 64, 64], &cpu.decoded)];
    if std::env::var_os("EASEL_WRITE_REFERENCE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_tensors(&path, &tensors).unwrap();
        println!("wrote {}", path.display());
    } else {
        for (name, _, values) in tensors {
            let e = rel_err(values, &read_tensor(&path, name).unwrap().1);
            println!("q4_0 CPU {name} vs {}: relative error {e:.2e}", setup::Q4_0_REFERENCE);
            assert!(e <= 1e-5, "{name} differs from the committed reference by {e:e}: rewrite it with EASEL_WRITE_REFERENCE=1 if the change is intended");
        }
    }
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
#[ignore = "minutes and gigabytes: run with --ignored (see the file's header)"]
fn sdxl_turbo_q4_0_at_512px_fits_the_browser_budget() {
    let store = q4_store();
    let (out, peak) = gpu_run(&store, 512);
    assert!(out.decoded.iter().all(|v| v.is_finite()));
    assert!(peak <= BUDGET_512, "peak GPU bytes {:.2} GB > {:.1} GB", peak as f64 / 1e9, BUDGET_512 as f64 / 1e9);
}

/// Plans (compiles) the text encoders', the UNet's and the VAE decoder's GPU graphs at
/// 512x512 without running them (`StableDiffusion::plan`): the activation bytes a run holds,
/// by stage, in seconds instead of minutes (nothing is allocated while a compiled graph runs).
#[test]
#[ignore = "gigabytes: run with --ignored (see the file's header)"]
fn sdxl_turbo_512px_activation_plan() {
    let store = q4_store();
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter");
    let mut sd = StableDiffusion::new(Session::gpu(ctx, &store).unwrap(), &setup::configs(), &setup::files()).unwrap();
    drop(store);
    let stages = pollster::block_on(sd.plan(1, [1, 4, 64, 64], [1, 4, 64, 64])).unwrap();
    let (weights, host) = match &sd.session.backend {
        Backend::Gpu { weights, .. } => (weights.bytes, weights.host_bytes()),
        Backend::Cpu { .. } => unreachable!(),
    };
    // SDXL is lean: one stage's activations at a time.
    let peak = weights + sd.activation_bytes();
    let stages: Vec<String> = stages.iter().map(|(s, b)| format!("{s} {:.0} MB", *b as f64 / 1e6)).collect();
    println!(
        "SDXL-Turbo at 512x512: {}; weights on the GPU {:.2} GB (token tables on the host: {:.0} MB); planned peak {:.2} GB",
        stages.join(", "),
        weights as f64 / 1e9,
        host as f64 / 1e6,
        peak as f64 / 1e9
    );
    assert!(sd.lean(), "SDXL holds one stage at a time");
    assert!(peak <= BUDGET_512, "planned peak {peak} bytes");
}
