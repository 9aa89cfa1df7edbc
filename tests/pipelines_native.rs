//! Full pipeline runs against diffusers: every run of the sd1-tiny, sd2-tiny and
//! sd-inpaint-tiny fixtures (txt2img with each deterministic scheduler, SD-Turbo's 1-step
//! Euler, v-prediction, img2img, inpainting), on the CPU backend and natively on the GPU.
//! Final latents must be within 1e-3 relative error and the decoded image within 1e-3; q8_0
//! and f16 weights change the model, so their bounds are the measured errors with margin.

#![cfg(not(target_arch = "wasm32"))]

mod sd;

use easel::gpu::{GpuContext, GpuOptions, KernelChoice, Precision};
use easel::models::Session;
use easel::ops::StorageType;
use easel::pipelines::native::load_model_dir;
use easel::pipelines::{generate, StableDiffusion};
use sd::{fixture, fixture_request, references, rel_err, sd_pipeline_with};

/// Relative error bound on the final latents of an f32 run.
const LATENT_TOL: f64 = 1e-3;
/// ... and on its decoded image (before clamping).
const DECODED_TOL: f64 = 1e-3;
/// q8_0 on the CPU (latents, decoded): measured at most 1.29e-2 and 1.59e-2 (sd1-tiny
/// img2img / LCM), bound at about 2x.
const Q8_TOL: (f64, f64) = (2.5e-2, 3e-2);
/// f16 linear/conv weights on the GPU: measured at most 5.5e-4 and 9.2e-4 (sd2-tiny
/// v-prediction), bound at about 2x.
const F16_TOL: (f64, f64) = (1.1e-3, 1.8e-3);

/// q8_0 weights with the fast precision on the GPU, simple kernels (int8 linears; latents,
/// decoded): measured at most 1.81e-2 and 2.43e-2 (sd1-tiny img2img / LCM), against
/// 1.29e-2 and 1.59e-2 with exact arithmetic on the CPU; bound at about 2x.
const FAST_Q8_TOL: (f64, f64) = (4e-2, 5e-2);
/// ... tiled kernels (int8 linears and convs, f16 tiles): measured at most 5.08e-2 and
/// 5.70e-2 (sd1-tiny LCM 1-step); bound at about 2x. int8 convs cost the most accuracy:
/// before them this set measured 1.96e-2 and 2.58e-2.
const FAST_Q8_TILED_TOL: (f64, f64) = (1e-1, 1.2e-1);
/// f32 weights on f16 tiles (the fast precision's f16 part alone): measured at most
/// 6.79e-3 and 7.93e-3 (sd2-tiny v-prediction), bound at about 2x.
const FAST_F16_TILES_TOL: (f64, f64) = (1.4e-2, 1.6e-2);

fn run_case(case: &str, quant: StorageType, gpu: bool) -> Vec<(String, f64, f64)> {
    run_with(case, quant, gpu.then(GpuOptions::default))
}

/// `run_case` on the GPU opened with `gpu` (or on the CPU).
fn run_with(case: &str, quant: StorageType, gpu: Option<GpuOptions>) -> Vec<(String, f64, f64)> {
    let refs = references(case);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(case).join("reference.json")).unwrap()).unwrap();
    let mut sd = sd_pipeline_with(&fixture(case), quant, gpu);
    let mut results = vec![];
    for run in meta["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        let req = fixture_request(run, &refs);
        let mut steps = 0;
        let out = pollster::block_on(generate(&mut sd, &req, &mut |p| {
            if let easel::pipelines::Progress::Step { .. } = p {
                steps += 1;
            }
            true
        }))
        .unwrap_or_else(|e| panic!("{case} {name}: {e}"));
        assert_eq!(steps, run["num_scheduler_steps"].as_u64().unwrap() as usize, "{case} {name}: scheduler steps");
        let latents = rel_err(&out.latents, &refs[&format!("{name}/final_latents")].values);
        let decoded = rel_err(&out.decoded, &refs[&format!("{name}/decoded_raw")].values);
        println!("{case} {name} [{} {quant:?}, {} precision]: final latents relative error {latents:.2e}, decoded image {decoded:.2e}", sd.session.kind(), sd.session.precision());
        results.push((format!("{case} {name}"), latents, decoded));
    }
    results
}

fn assert_within(results: Vec<(String, f64, f64)>, (latent_tol, decoded_tol): (f64, f64)) {
    assert!(!results.is_empty(), "no runs");
    for (name, latents, decoded) in results {
        assert!(latents <= latent_tol, "{name}: final latents relative error {latents:e} > {latent_tol:e}");
        assert!(decoded <= decoded_tol, "{name}: decoded image relative error {decoded:e} > {decoded_tol:e}");
    }
}

fn assert_f32(results: Vec<(String, f64, f64)>) {
    assert_within(results, (LATENT_TOL, DECODED_TOL));
}

#[test]
fn sd1_tiny_matches_diffusers_on_cpu() {
    assert_f32(run_case("sd1-tiny", StorageType::F32, false));
}

#[test]
fn sd2_tiny_and_inpainting_match_diffusers_on_cpu() {
    assert_f32(run_case("sd2-tiny", StorageType::F32, false));
    assert_f32(run_case("sd-inpaint-tiny", StorageType::F32, false));
}

#[test]
fn every_fixture_run_matches_diffusers_on_the_gpu() {
    for case in ["sd1-tiny", "sd2-tiny", "sd-inpaint-tiny"] {
        assert_f32(run_case(case, StorageType::F32, true));
    }
}

#[test]
fn quantized_and_f16_runs_stay_near_diffusers() {
    for case in ["sd1-tiny", "sd2-tiny"] {
        assert_within(run_case(case, StorageType::Q8_0, false), Q8_TOL);
    }
    // f16 linear/conv weights stay f16 on the GPU (read with unpack2x16float).
    assert_within(run_case("sd2-tiny", StorageType::F16, true), F16_TOL);
}

/// The fast precision against diffusers' f32 runs, printed for every run: on q8_0 weights
/// with both kernel sets (simple: int8 linears; tiled: int8 linears and convs, f16 tiles),
/// and on f32 weights with the tiled kernels (f16 tiles alone).
#[test]
fn fast_precision_runs_stay_near_diffusers() {
    for (kernels, tol) in [(KernelChoice::Simple, FAST_Q8_TOL), (KernelChoice::Tiled, FAST_Q8_TILED_TOL)] {
        let options = GpuOptions { kernels, precision: Precision::Fast, ..Default::default() };
        for case in ["sd1-tiny", "sd2-tiny"] {
            assert_within(run_with(case, StorageType::Q8_0, Some(options.clone())), tol);
        }
    }
    let tiled = GpuOptions { kernels: KernelChoice::Tiled, precision: Precision::Fast, ..Default::default() };
    assert_within(run_with("sd2-tiny", StorageType::F32, Some(tiled)), FAST_F16_TILES_TOL);
}

#[test]
fn nan_in_the_output_is_reported_not_saved() {
    let model = load_model_dir(&fixture("sd2-tiny"), StorageType::F32).unwrap();
    let mut sd = StableDiffusion::new(Session::cpu(model.weights), &model.configs, &model.files).unwrap();
    // NaN starting latents (as a broken kernel or overflowing f16 weights would make).
    let mut latents = vec![0.5f32; 4 * 8 * 8];
    latents[3] = f32::NAN;
    let req = easel::pipelines::Request { steps: 2, width: 16, height: 16, init_latents: Some(latents), ..easel::pipelines::Request::new("a fox") };
    let err = pollster::block_on(generate(&mut sd, &req, &mut |_| true)).err().expect("refused").to_string();
    assert_eq!(
        err,
        "invalid output: the final latents has 256 NaN and 0 infinite values of 256: the model's weights or the backend produced numbers that are not an image \
         (try the other backend, or f32 / q8_0 weights)"
    );
}

#[test]
fn a_device_lost_between_generations_fails_the_next_one_clearly() {
    let model = load_model_dir(&fixture("sd2-tiny"), StorageType::F32).unwrap();
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (mesa-vulkan-drivers)");
    let mut sd = StableDiffusion::new(Session::gpu(ctx.clone(), &model.weights).unwrap(), &model.configs, &model.files).unwrap();
    let req = easel::pipelines::Request { steps: 2, width: 16, height: 16, ..easel::pipelines::Request::new("一只戴墨镜的柴犬 😎") };
    let first = pollster::block_on(generate(&mut sd, &req, &mut |_| true)).expect("a working device generates");
    // Lost during the second step, as a driver reset would do it.
    let mut steps = 0;
    let err = pollster::block_on(generate(&mut sd, &req, &mut |p| {
        if let easel::pipelines::Progress::Step { .. } = p {
            steps += 1;
            if steps == 1 {
                ctx.lose();
            }
        }
        true
    }))
    .err()
    .expect("a lost device cannot finish");
    assert_eq!(err.to_string(), "the GPU device was lost (destroyed); the engine has to reopen the GPU and reload the model");
    // What the engine does next: a new device, the weights again, the same image.
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).unwrap();
    let mut sd = StableDiffusion::new(Session::gpu(ctx, &model.weights).unwrap(), &model.configs, &model.files).unwrap();
    let again = pollster::block_on(generate(&mut sd, &req, &mut |_| true)).unwrap();
    assert_eq!(again.images[0].data, first.images[0].data);
}
