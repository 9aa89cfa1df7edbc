//! The real SD-Turbo architecture (stable-diffusion-2-1-base configs with sd-turbo's
//! scheduler) with random full-size weights, made tensor by tensor: one 64x64 generation
//! (8x8 latents, 1-step trailing Euler, guidance 0) on the GPU (lavapipe, f32) and on the
//! CPU backend, which must agree. Prints peak GPU bytes.

#![cfg(not(target_arch = "wasm32"))]

use easel::gpu::{GpuContext, GpuOptions, KernelChoice, Precision};
use easel::models::random::random_weight;
use easel::models::{Backend, Session};
use easel::ops::{StorageType, WeightStore};
use easel::pipelines::native::{read_tensor, write_tensors};
use easel::pipelines::{generate, StableDiffusion};

#[path = "turbo/candle_reference.rs"]
mod candle_reference;
#[path = "turbo/setup.rs"]
mod setup;
use setup::rel_err;

/// Every weight random, stored as `easel convert --quant q8_0` stores it.
fn q8_0_store(configs: &std::collections::BTreeMap<String, serde_json::Value>) -> WeightStore {
    let mut store = WeightStore::new();
    for (name, shape, storage) in setup::weight_specs(configs, StorageType::Q8_0) {
        store.insert(&name, &shape, storage, &random_weight(&name, &shape)).unwrap();
    }
    store
}

/// The tests hold gigabytes each: run them one after the other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn sd_turbo_shape_runs_at_64px_and_backends_agree() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = std::time::Instant::now();
    let configs = setup::configs();
    let files = setup::files();
    let mut store = WeightStore::new();
    for (name, shape) in setup::weight_list(&configs) {
        store.insert_f32(&name, &shape, &random_weight(&name, &shape)).unwrap();
    }
    let params: usize = store.names().iter().map(|n| store.get(n).unwrap().numel()).sum();
    println!("SD-Turbo shape: {:.0}M parameters, {:.2} GB f32, made in {:.1} s", params as f64 / 1e6, store.byte_size() as f64 / 1e9, t0.elapsed().as_secs_f64());
    assert!(params > 1_200_000_000, "text encoder + UNet + VAE of SD 2.1 are about 1.3B parameters");

    let req = setup::request();
    let gpu_out = {
        let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)");
        let t = std::time::Instant::now();
        let mut sd = StableDiffusion::new(Session::gpu(ctx, &store).unwrap(), &configs, &files).unwrap();
        let out = pollster::block_on(generate(&mut sd, &req, &mut |_| true)).unwrap();
        let weights = match &sd.session.backend {
            Backend::Gpu { weights, .. } => weights.bytes,
            Backend::Cpu { .. } => unreachable!(),
        };
        println!(
            "GPU ({}): {:.1} s; peak GPU bytes {:.2} GB = weights {:.2} GB + activations {:.1} MB",
            sd.session.kind(),
            t.elapsed().as_secs_f64(),
            (weights + sd.activation_bytes()) as f64 / 1e9,
            weights as f64 / 1e9,
            sd.activation_bytes() as f64 / 1e6
        );
        out
    };
    // candle-transformers' SD 2.1 on the same weights: a second, independent implementation.
    let t = std::time::Instant::now();
    let reference = candle_reference::Reference::new(&store);
    let mut session = Session::cpu(store);
    candle_reference::compare(&reference, &mut session, &configs);
    drop(reference);
    println!("candle-transformers comparison: {:.1} s", t.elapsed().as_secs_f64());

    let t = std::time::Instant::now();
    let mut sd = StableDiffusion::new(session, &configs, &files).unwrap();
    let cpu_out = pollster::block_on(generate(&mut sd, &req, &mut |_| true)).unwrap();
    println!("CPU: {:.1} s", t.elapsed().as_secs_f64());

    for (what, g, c) in [
        ("prompt embeddings", &gpu_out.prompt_embeds, &cpu_out.prompt_embeds),
        ("final latents", &gpu_out.latents, &cpu_out.latents),
        ("decoded image", &gpu_out.decoded, &cpu_out.decoded),
    ] {
        assert!(c.iter().all(|v| v.is_finite()), "{what}: CPU values are finite");
        let e = rel_err(g, c);
        println!("GPU vs CPU {what}: relative error {e:.2e}");
        assert!(e <= 1e-3, "{what}: GPU and CPU differ by {e:e}");
    }
    let spread = cpu_out.decoded.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(spread.1 - spread.0 > 1e-3, "the image is not flat: {spread:?}");
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}

/// The CPU backend's outputs on the q8_0 weights are the reference of the browser test
/// (tests/web_turbo.rs), whose page cannot also hold the CPU run. This checks the committed
/// file is current; `EASEL_WRITE_REFERENCE=1` rewrites it (after changing the random
/// weights, the schema or the quantizer).
#[test]
fn q8_0_cpu_reference_is_current() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let configs = setup::configs();
    let store = q8_0_store(&configs);
    let mut sd = StableDiffusion::new(Session::cpu(store), &configs, &setup::files()).unwrap();
    let out = pollster::block_on(generate(&mut sd, &setup::request(), &mut |_| true)).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(setup::Q8_0_REFERENCE);
    let tensors: [(&str, &[usize], &[f32]); 3] =
        [("prompt_embeds", &[1, 77, 1024], &out.prompt_embeds), ("latents", &[1, 4, 8, 8], &out.latents), ("decoded", &[1, 3, 64, 64], &out.decoded)];
    if std::env::var_os("EASEL_WRITE_REFERENCE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_tensors(&path, &tensors).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    for (name, _, values) in tensors {
        let committed = read_tensor(&path, name).unwrap();
        let e = rel_err(values, &committed.1);
        println!("q8_0 CPU {name} vs {}: relative error {e:.2e}", setup::Q8_0_REFERENCE);
        assert!(e <= 1e-5, "{name} differs from the committed reference by {e:e}: rewrite it with EASEL_WRITE_REFERENCE=1 if the change is intended");
    }
}

/// Issue 14's memory figure: SD-Turbo with q8_0 weights (as `easel convert --quant q8_0`
/// stores them) generating at 512x512 on the GPU (lavapipe without one). Prints weight
/// bytes, peak GPU bytes (weights + every activation buffer the run held) and the time;
/// the target is under 2.0 GB in all. Minutes on 2 cores, so on request:
///   cargo test --release --test turbo_native -- --ignored --nocapture sd_turbo_q8_0_at_512
#[test]
#[ignore = "minutes: run with --ignored (see the comment)"]
fn sd_turbo_q8_0_at_512px_peak_gpu_bytes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let configs = setup::configs();
    let store = q8_0_store(&configs);
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)");
    let t = std::time::Instant::now();
    let mut sd = StableDiffusion::new(Session::gpu(ctx, &store).unwrap(), &configs, &setup::files()).unwrap();
    drop(store);
    let req = easel::pipelines::Request { width: 512, height: 512, ..setup::request() };
    let out = pollster::block_on(generate(&mut sd, &req, &mut |_| true)).unwrap();
    assert!(out.decoded.iter().all(|v| v.is_finite()));
    let (weights, host) = match &sd.session.backend {
        Backend::Gpu { weights, .. } => (weights.bytes, weights.host_bytes()),
        Backend::Cpu { .. } => unreachable!(),
    };
    let peak = weights + sd.activation_bytes();
    let stages: Vec<String> = sd.activation_breakdown().iter().map(|(s, b)| format!("{s} {:.0} MB", *b as f64 / 1e6)).collect();
    println!(
        "SD-Turbo q8_0 at 512x512 on {}: {:.1} s; peak GPU bytes {:.2} GB = weights {:.2} GB + activations {:.0} MB ({}); token table on the host {:.0} MB",
        sd.session.kind(),
        t.elapsed().as_secs_f64(),
        peak as f64 / 1e9,
        weights as f64 / 1e9,
        sd.activation_bytes() as f64 / 1e6,
        stages.join(", "),
        host as f64 / 1e6
    );
    assert!(peak < 2_000_000_000, "peak GPU bytes {peak} over issue 14's 2.0 GB");
}

/// Issue 14's memory target for every kernel set and precision a GPU can get: SD-Turbo
/// q8_0 generating at 512x512 (guidance 0, one prompt) planned without running, since a
/// compiled graph allocates nothing while it runs. A hardware GPU gets the tiled kernels,
/// and `--precision fast` adds the int8 path's scratch (a conv's quantized taps), which the
/// 512px run above (simple kernels on lavapipe) cannot show. Under 2.0 GB in all for each.
#[test]
fn sd_turbo_q8_0_512px_plan_fits_every_kernel_set_and_precision() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let configs = setup::configs();
    let store = q8_0_store(&configs);
    for kernels in [KernelChoice::Simple, KernelChoice::Tiled] {
        for precision in [Precision::Exact, Precision::Fast] {
            let opts = GpuOptions { kernels, precision, ..GpuOptions::default() };
            let ctx = pollster::block_on(GpuContext::new(&opts)).expect("a Vulkan adapter (install mesa-vulkan-drivers)");
            let arithmetic = ctx.report.precision.clone();
            let mut sd = StableDiffusion::new(Session::gpu(ctx, &store).unwrap(), &configs, &setup::files()).unwrap();
            let latents = [1, 4, 64, 64];
            let stages = pollster::block_on(sd.plan(1, latents, latents)).unwrap();
            let activations = sd.activation_bytes();
            let weights = match &sd.session.backend {
                Backend::Gpu { weights, .. } => weights.bytes,
                Backend::Cpu { .. } => unreachable!(),
            };
            let peak = weights + activations;
            let stages: Vec<String> = stages.iter().map(|(s, b)| format!("{s} {:.0} MB", *b as f64 / 1e6)).collect();
            println!(
                "SD-Turbo q8_0 at 512x512, {kernels:?} kernels, {arithmetic}: planned peak {:.3} GB = weights {:.3} GB + activations {:.0} MB ({})",
                peak as f64 / 1e9,
                weights as f64 / 1e9,
                activations as f64 / 1e6,
                stages.join(", ")
            );
            assert!(peak < 2_000_000_000, "{kernels:?} / {arithmetic}: planned peak {peak} bytes over issue 14's 2.0 GB");
        }
    }
}
