//! The pixel-space DDPM family against diffusers (ddpm-tiny fixture: UNet2DModel in the
//! google/ddpm-cifar10-32 layout, DDIMPipeline run with given x_T): one UNet call within
//! 1e-4 relative error and the 10-step DDIM sample within 1e-3, on the CPU backend and
//! natively on the GPU.

#![cfg(not(target_arch = "wasm32"))]

mod sd;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::Session;
use easel::ops::StorageType;
use easel::pipelines::ddpm::{generate, Ddpm};
use easel::pipelines::native::load_model_dir;
use easel::pipelines::{Progress, Request};
use sd::{fixture, references, rel_err};

const CASE: &str = "ddpm-tiny";

fn model(gpu: bool) -> Ddpm {
    let files = load_model_dir(&fixture(CASE), StorageType::F32).unwrap();
    assert_eq!(files.family, "ddpm");
    let session = if gpu {
        let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (mesa-vulkan-drivers)");
        Session::gpu(ctx, &files.weights).unwrap()
    } else {
        Session::cpu(files.weights)
    };
    Ddpm::new(session, &files.configs).unwrap()
}

fn unet_call_matches(gpu: bool) {
    let refs = references(CASE);
    let mut m = model(gpu);
    let t = refs["unet_call/timestep"].values[0];
    let out = pollster::block_on(m.unet([1, 3, 16, 16], refs["unet_call/sample"].values.clone(), t)).unwrap();
    let err = rel_err(&out, &refs["unet_call/output"].values);
    println!("ddpm-tiny unet call [{}]: relative error {err:.2e}", m.session.kind());
    assert!(err < 1e-4, "relative error {err}");
}

/// The fixture's DDIM run (10 steps, eta 0, clip_sample) from its x_T.
fn ddim_run_matches(gpu: bool) {
    let refs = references(CASE);
    let mut m = model(gpu);
    let req = Request {
        steps: 10,
        width: 16,
        height: 16,
        scheduler: Some("ddim".into()),
        init_latents: Some(refs["ddim/init_noise"].values.clone()),
        previews: true,
        ..Request::new("")
    };
    let mut previews = 0;
    let out = pollster::block_on(generate(&mut m, &req, &mut |p| {
        if let Progress::Step { preview: Some(p), .. } = p {
            assert_eq!((p.kind, p.image.width, p.image.height), ("x0", 16, 16));
            previews += 1;
        }
        true
    }))
    .unwrap();
    assert_eq!(previews, 10);
    assert_eq!(out.scheduler, "ddim");
    let err = rel_err(&out.latents, &refs["ddim/final_sample"].values);
    println!("ddpm-tiny ddim run [{}]: final sample relative error {err:.2e}", m.session.kind());
    assert!(err < 1e-3, "final sample relative error {err}");
    // The image is the sample /2 + 0.5, clamped: compare with diffusers' image_np (NHWC).
    let want = &refs["ddim/image_np"].values;
    let got = &out.images[0].data;
    let worst = (0..16 * 16 * 3).map(|i| ((got[(i / 3) * 4 + i % 3] as f32 / 255.0) - want[i]).abs()).fold(0f32, f32::max);
    assert!(worst <= 0.5 / 255.0 + 1e-3, "pixel off by {worst}");
}

#[test]
fn unet2d_matches_diffusers_on_cpu() {
    unet_call_matches(false);
}

#[test]
fn unet2d_matches_diffusers_on_the_gpu() {
    unet_call_matches(true);
}

#[test]
fn ddim_sampling_matches_diffusers_on_cpu() {
    ddim_run_matches(false);
}

#[test]
fn ddim_sampling_matches_diffusers_on_the_gpu() {
    ddim_run_matches(true);
}

#[test]
fn sizes_follow_the_models_downsampling_and_conditioning_is_refused() {
    let mut m = model(false);
    assert_eq!(m.size_multiple(), 2);
    // Any multiple of 2 works for a 2-level UNet (not only multiples of 8).
    let req = Request { steps: 2, width: 10, height: 6, ..Request::new("") };
    let out = pollster::block_on(generate(&mut m, &req, &mut |_| true)).unwrap();
    assert_eq!((out.images[0].width, out.images[0].height), (10, 6));
    let odd = Request { width: 15, ..req.clone() };
    assert_eq!(pollster::block_on(generate(&mut m, &odd, &mut |_| true)).err().unwrap().to_string(), "request: size 15x6 must be positive multiples of 2");
    let wrong = Request { init_latents: Some(vec![0.0; 5]), ..req };
    assert_eq!(pollster::block_on(generate(&mut m, &wrong, &mut |_| true)).err().unwrap().to_string(), "request: init latents have 5 values, the generation wants 180 (1x3x6x10)");
}

#[test]
fn a_size_past_memory_is_refused_before_any_step() {
    // At 32768 px one 16-channel full-size feature map of the UNet is 64 GiB (attention works
    // in blocks of rows and adds no whole scores).
    let mut m = model(false);
    let req = Request { steps: 2, width: 32768, height: 32768, ..Request::new("") };
    let mut steps = 0;
    let err = pollster::block_on(generate(&mut m, &req, &mut |_| {
        steps += 1;
        true
    }))
    .err()
    .unwrap()
    .to_string();
    assert_eq!(steps, 0, "refused before anything ran");
    assert!(err.starts_with("too large: 32768x32768 needs 64.0 GiB for the UNet's 16-channel 32768x32768 feature map, but the memory available is "), "{err}");
    // The size it names is a real one below the request (it depends on this machine's memory).
    let size: usize = err.rsplit(' ').next().unwrap().split('x').next().unwrap().parse().unwrap();
    assert!((64..32768).contains(&size) && size.is_multiple_of(64), "{size}");
}
