//! Morphs and walks (issue 19) on the bundled, trained emoji-sd: a prompt morph and a seed
//! walk whose end frames are `generate`'s images bit for bit, whose middle frames differ from
//! both ends, whose input moves steadily away from frame 0 and whose images change
//! gradually; and `easel morph`'s animated PNG, which must decode to the frames it wrote.

#![cfg(not(target_arch = "wasm32"))]

mod sd;

use std::path::Path;
use std::process::Command;

use easel::ops::StorageType;
use easel::pipelines::animation::apng_frames;
use easel::pipelines::request::{Morph, Walk};
use easel::pipelines::{generate, Output, Request, Rgba};
use sd::sd_pipeline;

fn model_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/emoji-sd")
}

/// The page's settings for emoji-sd at fewer steps (the property does not depend on them).
fn base() -> Request {
    Request { prompt: "red heart, twemoji style".into(), steps: 6, guidance: 4.0, seed: 42, width: 32, height: 32, ..Request::default() }
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt()
}

/// Frames at t = 0, 1/4, .. 1 against the plain generations of the two ends. `inputs` are
/// the walked quantity per frame (the starting noise, or the prompt embeddings): their
/// distance to frame 0 must grow at every frame. The images follow a trained model, so
/// their distance need not grow at every frame (the seed walk's last quarter here goes
/// from 27.28 to 26.91); they must change gradually: no step between neighbours as large
/// as the jump from the first frame to the last.
fn check_frames(name: &str, frames: &[Output], start: &Output, end: &Output, inputs: &[Vec<f32>]) {
    assert_eq!(frames[0].images[0].data, start.images[0].data, "{name}: frame 0 is not the start's image");
    assert_eq!(frames[0].latents, start.latents, "{name}: frame 0's latents");
    let last = frames.len() - 1;
    assert_eq!(frames[last].images[0].data, end.images[0].data, "{name}: the last frame is not the end's image");
    assert_eq!(frames[last].latents, end.latents, "{name}: the last frame's latents");
    let d: Vec<f64> = inputs.iter().map(|x| distance(x, &inputs[0])).collect();
    println!("{name}: input distance to frame 0 along the way {d:.3?}");
    assert!(d.windows(2).all(|w| w[1] > w[0]), "{name}: the input does not move steadily away from frame 0: {d:?}");
    let images: Vec<f64> = frames.iter().map(|f| distance(&f.decoded, &frames[0].decoded)).collect();
    let steps: Vec<f64> = frames.windows(2).map(|w| distance(&w[1].decoded, &w[0].decoded)).collect();
    println!("{name}: image distance to frame 0 {images:.3?}, between neighbours {steps:.3?}");
    assert!(steps.iter().all(|&s| s < images[last]), "{name}: a jump between neighbours: {steps:?} vs {}", images[last]);
    for f in &frames[1..last] {
        assert!(f.images[0].data != start.images[0].data && f.images[0].data != end.images[0].data, "{name}: a middle frame equals an end");
    }
}

#[test]
fn prompt_morph_and_seed_walk_end_on_generates_images() {
    let mut sd = sd_pipeline(&model_dir(), StorageType::Q8_0, false);
    let mut run = |req: &Request| pollster::block_on(generate(&mut sd, req, &mut |_| true)).unwrap();
    let ts = [0.0, 0.25, 0.5, 0.75, 1.0];

    let to = "grinning face, noto style";
    let start = run(&base());
    let end = run(&Request { prompt: to.into(), ..base() });
    let frames: Vec<Output> = ts.iter().map(|&t| run(&Request { morph: Some(Morph { to_prompt: to.into(), t }), ..base() })).collect();
    let embeds: Vec<Vec<f32>> = frames.iter().map(|f| f.prompt_embeds.clone()).collect();
    check_frames("prompt morph", &frames, &start, &end, &embeds);

    let end = run(&Request { seed: 7, ..base() });
    let walk = |t: f32| Request { walk: Some(Walk { to_seed: 7, t }), ..base() };
    let frames: Vec<Output> = ts.iter().map(|&t| run(&walk(t))).collect();
    let noise = |r: &Request| easel::pipelines::latents::starting_noise(r, &mut easel::rng::Rng::new(r.seed), &[1, 4, 16, 16]).unwrap();
    let noises: Vec<Vec<f32>> = ts.iter().map(|&t| noise(&walk(t))).collect();
    check_frames("seed walk", &frames, &start, &end, &noises);
    // slerp keeps the starting noise's variance (a straight line mid-way would lose ~half).
    let var = |r: &Request| noise(r).iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 1024.0;
    // Every frame's variance stays between the two ends' (within 1%); a straight line's
    // middle frame would have about half.
    let (v0, v1) = (var(&base()), var(&Request { seed: 7, ..base() }));
    for t in ts {
        let v = var(&walk(t));
        println!("seed walk t {t}: noise variance {v:.4}");
        assert!(v >= v0.min(v1) * 0.99 && v <= v0.max(v1) * 1.01, "t {t}: noise variance {v} outside [{v0}, {v1}]");
    }
}

#[test]
fn easel_morph_writes_frames_and_an_animation_that_decodes_to_them() {
    let out = std::env::temp_dir().join(format!("easel-morph-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["morph", "--model"])
        .arg(model_dir())
        .args(["--prompt", "red heart, twemoji style", "--to-prompt", "grinning face, noto style", "--frames", "3", "--seed", "42"])
        .args(["--steps", "4", "--guidance", "4", "--backend", "cpu", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("prompt morph: \"red heart, twemoji style\" -> \"grinning face, noto style\" at seed 42"), "{stderr}");
    let apng = std::fs::read(out.join("morph.png")).unwrap();
    let frames: Vec<Rgba> = (0..3).map(|i| Rgba::from_png(&std::fs::read(out.join(format!("frame-{i:03}.png"))).unwrap()).unwrap()).collect();
    assert_eq!(apng_frames(&apng).unwrap(), frames);
    let text = Rgba::png_text(&apng).unwrap();
    let animation = text.iter().find(|(k, _)| k == "animation").map(|(_, v)| v.as_str());
    assert_eq!(animation, Some("prompt morph: \"red heart, twemoji style\" -> \"grinning face, noto style\" at seed 42, 3 frames, 125 ms each"));
    // The GIF beside it: 3 frames (a graphic control block each), the settings in its
    // comment. (Its pixels are checked by the browser's decoder in tests/e2e/morph.test.mjs.)
    let gif = std::fs::read(out.join("morph.gif")).unwrap();
    assert!(gif.starts_with(b"GIF89a") && gif.ends_with(&[0x3b]));
    assert_eq!(gif.windows(4).filter(|w| w == &[0x21, 0xf9, 4, 0x04]).count(), 3);
    assert!(gif.windows(9).any(|w| w == b"animation"));
    // Either end alone is refused with the flag to use.
    let o = Command::new(env!("CARGO_BIN_EXE_easel")).args(["morph", "--model"]).arg(model_dir()).args(["--prompt", "x", "--out"]).arg(&out).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "error: request: give either --to-prompt (a prompt morph) or --to-seed (a walk between seeds)");
    let _ = std::fs::remove_dir_all(&out);
}

/// SDXL (sdxl-tiny): a prompt morph moves both encoders' embeddings and the pooled one,
/// a seed walk the noise; the end frames are `generate`'s images bit for bit and the middle
/// frames differ from both, on the CPU backend and the GPU.
#[test]
fn sdxl_morph_and_walk_end_on_generates_images() {
    for gpu in [false, true] {
        let mut sd = sd_pipeline(&sd::sdxl_repo(), StorageType::F32, gpu);
        let mut run = |req: &Request| pollster::block_on(generate(&mut sd, req, &mut |_| true)).unwrap();
        let base =
            Request { prompt: "a red fox in the snow".into(), negative_prompt: "blurry".into(), steps: 3, guidance: 5.0, seed: 3, width: 16, height: 16, ..Request::default() };
        let ts = [0.0, 0.25, 0.5, 0.75, 1.0];
        let to = "一只戴墨镜的柴犬 😎";
        let start = run(&base);
        let end = run(&Request { prompt: to.into(), ..base.clone() });
        let frames: Vec<Output> = ts.iter().map(|&t| run(&Request { morph: Some(Morph { to_prompt: to.into(), t }), ..base.clone() })).collect();
        let embeds: Vec<Vec<f32>> = frames.iter().map(|f| f.prompt_embeds.clone()).collect();
        check_frames(&format!("sdxl prompt morph [gpu {gpu}]"), &frames, &start, &end, &embeds);
        let end = run(&Request { seed: 4, ..base.clone() });
        let frames: Vec<Output> = ts.iter().map(|&t| run(&Request { walk: Some(Walk { to_seed: 4, t }), ..base.clone() })).collect();
        let latents: Vec<Vec<f32>> = frames.iter().map(|f| f.latents.clone()).collect();
        assert_eq!(frames[0].images[0].data, start.images[0].data);
        assert_eq!(frames[4].images[0].data, end.images[0].data);
        assert!(latents.windows(2).all(|w| w[0] != w[1]), "every walk frame differs from its neighbour");
    }
}

/// aMUSEd (the bundled emoji-amused): a prompt morph moves the text conditioning (pooled and
/// per token); its ends are `generate`'s images exactly and its middle is neither. A seed
/// walk is refused with a sentence (there is no starting noise: the grid starts masked).
#[test]
fn amused_morph_ends_on_generates_images() {
    let model = easel::pipelines::native::load_model_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/emoji-amused"), StorageType::Q8_0).unwrap();
    let mut g = easel::pipelines::Generator::new(&model.family, easel::models::Session::cpu(model.weights), &model.configs, &model.files).unwrap();
    let d = g.defaults();
    assert!(d.morph && !d.walk, "aMUSEd morphs but does not walk");
    let base = Request { prompt: "red heart, twemoji style".into(), steps: 4, guidance: d.guidance, seed: 42, width: d.width, height: d.height, ..Request::default() };
    let to = "grinning face, noto style";
    let mut run = |req: &Request| pollster::block_on(g.generate(req, &mut |_| true)).unwrap();
    let (start, end) = (run(&base), run(&Request { prompt: to.into(), ..base.clone() }));
    let frames: Vec<Output> = [0.0, 0.5, 1.0].iter().map(|&t| run(&Request { morph: Some(Morph { to_prompt: to.into(), t }), ..base.clone() })).collect();
    assert_eq!(frames[0].images[0].data, start.images[0].data, "frame 0 is the prompt's image");
    assert_eq!(frames[2].images[0].data, end.images[0].data, "the last frame is the other prompt's image");
    assert!(frames[1].images[0].data != start.images[0].data && frames[1].images[0].data != end.images[0].data, "the middle frame is neither end");
    let err = pollster::block_on(g.generate(&Request { walk: Some(Walk { to_seed: 7, t: 0.5 }), ..base }, &mut |_| true)).err().unwrap().to_string();
    assert!(err.contains("no noise to walk; morph between prompts instead"), "{err}");
}
