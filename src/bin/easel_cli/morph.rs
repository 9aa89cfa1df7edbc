//! `easel morph`: N frames from --prompt to --to-prompt at one seed (the prompt's conditioning
//! moved linearly), or from --seed's starting noise to --to-seed's (slerp), each frame an
//! ordinary generation with the usual flags; written as `frame-000.png` ... (each with its
//! settings), `morph.png`, an animated PNG whose text records the whole morph, and
//! `morph.gif`, the same animation as a GIF.

use clap::Args;
use easel::pipelines::animation::encode_apng;
use easel::pipelines::request::{Morph, Walk};
use easel::pipelines::{encode_pngs, PipelineError, Request};

use super::generate::{prepare, reporter, GenerateArgs, Prepared};

#[derive(Args)]
pub struct MorphArgs {
    #[command(flatten)]
    gen: GenerateArgs,
    /// The prompt of the last frame (a prompt morph at --seed).
    #[arg(long)]
    to_prompt: Option<String>,
    /// The seed of the last frame (a walk at --prompt).
    #[arg(long)]
    to_seed: Option<u64>,
    /// Frames, both ends included.
    #[arg(long, default_value_t = 8)]
    frames: usize,
    /// Milliseconds each frame shows in morph.png.
    #[arg(long, default_value_t = 125)]
    delay_ms: u16,
}

fn bad(message: String) -> PipelineError {
    PipelineError::Request(message)
}

/// The request of frame `i` of `n`.
fn frame_request(base: &Request, a: &MorphArgs, i: usize) -> Request {
    let t = i as f32 / (a.frames - 1) as f32;
    Request { morph: a.to_prompt.as_ref().map(|to_prompt| Morph { to_prompt: to_prompt.clone(), t }), walk: a.to_seed.map(|to_seed| Walk { to_seed, t }), ..base.clone() }
}

pub async fn run(a: MorphArgs) -> Result<(), PipelineError> {
    let t0 = std::time::Instant::now();
    if a.to_prompt.is_some() == a.to_seed.is_some() {
        return Err(bad("give either --to-prompt (a prompt morph) or --to-seed (a walk between seeds)".into()));
    }
    if !(2..=240).contains(&a.frames) {
        return Err(bad(format!("--frames {} must be between 2 and 240", a.frames)));
    }
    let Prepared { mut model_gen, req, model_name } = prepare(&a.gen).await?;
    if req.batch != 1 {
        return Err(bad("--batch: a morph makes one image per frame".into()));
    }
    let dir = &a.gen.out;
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
    let mut images = Vec::with_capacity(a.frames);
    for i in 0..a.frames {
        let frame = frame_request(&req, &a, i);
        let out = model_gen.generate(&frame, &mut reporter(t0, format!("frame {}/{}: ", i + 1, a.frames))).await?;
        let png = encode_pngs(&out.images, &frame, out.scheduler, &model_name).map_err(bad)?.remove(0);
        let path = dir.join(format!("frame-{i:03}.png"));
        std::fs::write(&path, &png.bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        images.extend(out.images);
    }
    let what = match (&a.to_prompt, a.to_seed) {
        (Some(p), _) => format!("prompt morph: \"{}\" -> \"{p}\" at seed {}", req.prompt, req.seed),
        (_, Some(s)) => format!("seed walk: {} -> {s} at \"{}\"", req.seed, req.prompt),
        _ => unreachable!("checked above"),
    };
    // The first frame's settings, and what the animation is.
    let mut text = easel::pipelines::ImageInfo { request: &frame_request(&req, &a, 0), scheduler: "", model: &model_name, index: 0 }.text();
    text.retain(|(k, _)| *k != "scheduler");
    text.push(("animation", format!("{what}, {} frames, {} ms each", a.frames, a.delay_ms)));
    let apng = encode_apng(&images, a.delay_ms, &text).map_err(bad)?;
    let path = dir.join("morph.png");
    std::fs::write(&path, apng).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    // The same animation as a GIF (256 colours a frame) for viewers without APNG.
    let comment = text.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("\n");
    let gif = easel::pipelines::gif::encode_gif(&images, a.delay_ms, &comment).map_err(bad)?;
    let gif_path = dir.join("morph.gif");
    std::fs::write(&gif_path, gif).map_err(|e| bad(format!("{}: {e}", gif_path.display())))?;
    eprintln!("wrote {} frames, {} and {} ({what}) in {:.1} s", a.frames, path.display(), gif_path.display(), t0.elapsed().as_secs_f64());
    Ok(())
}
