//! The bundled, trained emoji-dcgan (www/models/emoji-dcgan, q8_0) against PyTorch on the
//! same weights: tests/fixtures/emoji-dcgan-parity holds torch's images for saved z and the
//! class/style the prompt names (scripts/train/make_dcgan_parity.py). Also the latent walk's
//! ends and middle, and the errors a visitor can meet.

#![cfg(not(target_arch = "wasm32"))]

mod sd;

use std::path::Path;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::Session;
use easel::ops::StorageType;
use easel::pipelines::request::Walk;
use easel::pipelines::{Generator, Request};
use sd::{fixture, references, rel_err};

/// Relative error bound on the images: f32 transposed convs summing up to 144 x 16 terms.
const TOL: f64 = 1e-5;

fn model(gpu: bool) -> Generator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/emoji-dcgan");
    let m = easel::pipelines::native::load_model_dir(&dir, StorageType::Q8_0).unwrap();
    let session = if gpu {
        let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (mesa-vulkan-drivers)");
        Session::gpu(ctx, &m.weights).unwrap()
    } else {
        Session::cpu(m.weights)
    };
    Generator::new(&m.family, session, &m.configs, &m.files).unwrap()
}

fn generate(g: &mut Generator, req: &Request) -> Result<easel::pipelines::Output, String> {
    pollster::block_on(g.generate(req, &mut |_| true)).map_err(|e| e.to_string())
}

fn parity(gpu: bool) {
    let case = "emoji-dcgan-parity";
    let refs = references(case);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(case).join("reference.json")).unwrap()).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/emoji-dcgan");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["content_sha256"], meta["model_content_sha256"], "www/models/emoji-dcgan changed: rerun scripts/train/make_dcgan_parity.py");
    let mut g = model(gpu);
    for run in meta["runs"].as_array().unwrap() {
        let (name, prompt) = (run["name"].as_str().unwrap(), run["prompt"].as_str().unwrap());
        // The engine's prompt lookup picks the class and style the reference was run with.
        let Generator::Dcgan(m) = &g else { panic!("emoji-dcgan loads as a DCGAN") };
        let label = m.label(prompt).unwrap().unwrap();
        assert_eq!((label.class as u64, label.style as u64), (run["class"].as_u64().unwrap(), run["style"].as_u64().unwrap()), "{prompt}");
        let req = Request {
            prompt: prompt.into(),
            width: 32,
            height: 32,
            batch: run["batch"].as_u64().unwrap() as usize,
            init_latents: Some(refs[&format!("{name}/z")].values.clone()),
            ..Request::default()
        };
        let out = generate(&mut g, &req).unwrap();
        let err = rel_err(&out.decoded, &refs[&format!("{name}/images")].values);
        println!("emoji-dcgan {name} [{}]: image relative error {err:.2e}", g.session().kind());
        assert!(err <= TOL, "{name}: relative error {err:e} > {TOL:e}");
    }
}

#[test]
fn bundled_emoji_dcgan_matches_pytorch_on_cpu() {
    parity(false);
}

#[test]
fn bundled_emoji_dcgan_matches_pytorch_on_the_gpu() {
    parity(true);
}

/// A walk from seed 3 to seed 8: its ends are the plain generations of the two seeds bit for
/// bit, the middle frames differ from both and move steadily away from frame 0.
#[test]
fn latent_walk_ends_at_both_seeds_and_moves_away_from_the_first() {
    let mut g = model(false);
    let req = |seed: u64, walk: Option<Walk>| Request { prompt: "red heart, twemoji style".into(), width: 32, height: 32, seed, walk, ..Request::default() };
    let plain3 = generate(&mut g, &req(3, None)).unwrap();
    let plain8 = generate(&mut g, &req(8, None)).unwrap();
    let frames: Vec<_> = [0.0, 0.25, 0.5, 0.75, 1.0].iter().map(|&t| generate(&mut g, &req(3, Some(Walk { to_seed: 8, t }))).unwrap()).collect();
    assert_eq!(frames[0].images[0].data, plain3.images[0].data);
    assert_eq!(frames[4].images[0].data, plain8.images[0].data);
    assert_eq!(frames[0].latents, plain3.latents);
    assert_eq!(frames[4].latents, plain8.latents);
    let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
    let d: Vec<f64> = frames.iter().map(|f| dist(&f.decoded, &frames[0].decoded)).collect();
    println!("distance to frame 0 along the walk: {d:?}");
    assert!(d.windows(2).all(|w| w[1] > w[0]), "the walk does not move steadily away from frame 0: {d:?}");
    for f in &frames[1..4] {
        assert_ne!(f.images[0].data, plain3.images[0].data);
        assert_ne!(f.images[0].data, plain8.images[0].data);
    }
    // slerp keeps z's norm between the two ends' (a straight line would lose ~30% mid-way).
    let norm = |z: &[f32]| dist(z, &vec![0.0; z.len()]);
    let (n0, n1) = (norm(&plain3.latents), norm(&plain8.latents));
    for f in &frames {
        let n = norm(&f.latents);
        assert!(n >= n0.min(n1) * 0.99 && n <= n0.max(n1) * 1.01, "z norm {n} outside [{n0}, {n1}]");
    }
}

#[test]
fn prompts_sizes_and_images_it_cannot_take_are_refused_by_name() {
    let mut g = model(false);
    let base = Request { prompt: "red heart".into(), width: 32, height: 32, ..Request::default() };
    let err = generate(&mut g, &Request { prompt: "ضوء القمر".into(), ..base.clone() }).err().unwrap();
    assert!(err.contains("name one such as 'grinning face' (in English, or in Chinese where it lists Chinese names), or type its emoji (no class matches 'ضوء القمر')"), "{err}");
    // The emoji itself works, with or without U+FE0F, and so does its Chinese name (CLDR's
    // 红心) inside a sentence.
    let c = generate(&mut g, &base).unwrap();
    for prompt in ["❤️", "❤", "请画一颗红心"] {
        let a = generate(&mut g, &Request { prompt: prompt.into(), ..base.clone() }).unwrap();
        assert_eq!(a.images[0].data, c.images[0].data, "{prompt}");
    }
    assert_eq!(g.prompt_note("一只戴墨镜的柴犬 😎").unwrap(), "draws: smiling face with sunglasses 😎 (twemoji)");
    let err = generate(&mut g, &Request { width: 64, height: 64, ..base.clone() }).err().unwrap();
    assert_eq!(err, "request: this generator draws 32x32 images only (asked for 64x64)");
    let image = easel::pipelines::FloatImage { shape: [1, 3, 32, 32], values: vec![0.5; 3 * 32 * 32] };
    let err = generate(&mut g, &Request { init_image: Some(image), ..base.clone() }).err().unwrap();
    assert_eq!(err, "request: a GAN generator draws from its latent z only: it takes no init image or mask");
    assert_eq!(g.prompt_note("grinning face, noto style").unwrap(), "draws: grinning face 😀 (noto)");
    let d = g.defaults();
    assert_eq!((d.family, d.width, d.steps, d.conditional, d.classes, d.walk, d.init_image), ("dcgan", 32, 1, true, true, true, false));
}
