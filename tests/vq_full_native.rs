//! The VQ family at full size natively (vq_full/setup.rs): a vqgan_imagenet_f16_16384
//! decoder at 256x256 and aMUSEd-256's transformer over 16x16 tokens, random q8_0 weights,
//! one pass on the GPU backend (lavapipe without a GPU) and on the CPU backend. The backends
//! agree, the time and peak GPU bytes are printed, and the CPU outputs on the browser test's
//! smaller grid match the committed reference that web_vq_full.rs compares WebGPU with.

#![cfg(not(target_arch = "wasm32"))]

#[path = "vq_full/setup.rs"]
mod setup;

use std::path::Path;
use std::time::Instant;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::random::random_weight;
use easel::models::session::f32s;
use easel::models::Session;
use easel::ops::WeightStore;
use easel::pipelines::native::{read_tensor, write_tensors};
use setup::{rel_err, sample, Shape, SIDE, WEB_SIDE};

/// Each test holds a gigabyte or more: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn store(shape: Shape) -> WeightStore {
    let mut store = WeightStore::new();
    for (name, dims, storage) in shape.weight_specs() {
        store.insert(&name, &dims, storage, &random_weight(&name, &dims)).unwrap();
    }
    store
}

/// One pass over a `side` x `side` grid: (output, seconds, weight bytes, activation bytes).
fn run(session: &mut Session, shape: Shape, side: usize) -> (Vec<f32>, f64, u64, u64) {
    let mut c = pollster::block_on(session.compile(|g| shape.build(g, side))).unwrap();
    for (name, value) in shape.inputs(side) {
        session.set_input(&mut c, name, value).unwrap();
    }
    let t = Instant::now();
    let out = pollster::block_on(session.run(&c)).unwrap();
    let seconds = t.elapsed().as_secs_f64();
    let weights = session.weight_bytes();
    (f32s(out.into_iter().next().unwrap()), seconds, weights, c.activation_bytes())
}

fn check(shape: Shape) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let store = store(shape);
    let params: usize = store.names().iter().map(|n| store.get(n).unwrap().numel()).sum();
    println!("{}: {:.1}M parameters, {:.0} MB as q8_0, made in {:.1} s", shape.name(SIDE), params as f64 / 1e6, store.byte_size() as f64 / 1e6, t0.elapsed().as_secs_f64());

    let gpu = {
        let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)");
        let mut session = Session::gpu(ctx, &store).unwrap();
        let (out, s, w, a) = run(&mut session, shape, SIDE);
        println!("GPU ({}): {s:.1} s; peak GPU bytes {:.0} MB = weights {:.0} MB + activations {:.0} MB", session.kind(), (w + a) as f64 / 1e6, w as f64 / 1e6, a as f64 / 1e6);
        out
    };
    let mut session = Session::cpu(store);
    let (cpu, s, _, a) = run(&mut session, shape, SIDE);
    println!("CPU: {s:.1} s; activations {:.0} MB", a as f64 / 1e6);

    assert_eq!(cpu.len(), shape.output_shape(SIDE).iter().product::<usize>());
    assert!(cpu.iter().all(|v| v.is_finite()), "CPU values are finite");
    let spread = cpu.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(spread.1 - spread.0 > 1e-3, "the output is not flat: {spread:?}");
    let e = rel_err(&gpu, &cpu);
    println!("GPU vs CPU: relative error {e:.2e}");
    assert!(e <= 1e-3, "GPU and CPU differ by {e:e}");

    // The browser's grid, on the CPU backend: the reference WebGPU is held to there.
    let (web, s, _, _) = run(&mut session, shape, WEB_SIDE);
    println!("CPU at {WEB_SIDE}x{WEB_SIDE}: {s:.1} s");
    assert_eq!(web.len(), shape.output_shape(WEB_SIDE).iter().product::<usize>());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(shape.reference());
    let picked = sample(&web);
    if std::env::var_os("EASEL_WRITE_REFERENCE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_tensors(&path, &[("sample", &[picked.len()], &picked)]).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    let committed = read_tensor(&path, "sample").unwrap();
    let e = rel_err(&picked, &committed.1);
    println!("CPU vs {}: relative error {e:.2e}", shape.reference());
    assert!(e <= 1e-5, "the CPU output differs from the committed reference by {e:e}: rewrite it with EASEL_WRITE_REFERENCE=1 if the change is intended");
}

#[test]
fn vqgan_f16_16384_decoder_decodes_256px_and_backends_agree() {
    check(Shape::VqganDecoder);
}

#[test]
fn amused_256_transformer_runs_and_backends_agree() {
    check(Shape::Amused256);
}
