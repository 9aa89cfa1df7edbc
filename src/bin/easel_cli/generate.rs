//! `easel generate`: one txt2img / img2img / inpainting run (Stable Diffusion), one
//! unconditional sample (DDPM) or one GAN draw (DCGAN) from the command line, with the hooks that reproduce
//! diffusers exactly (fixed starting latents and noise, saved latents and embeddings).

use std::path::{Path, PathBuf};

use clap::Args;
use easel::gpu::GpuContext;
use easel::models::Session;
use easel::ops::{choose_backend, BackendKind, BackendPreference, StorageType, WeightStore};
use easel::pipelines::native::{load_model_dir, read_image, read_tensor, read_tensor_opt, write_tensors};
use easel::pipelines::request::Walk;
use easel::pipelines::{encode_pngs, styles, Generator, LoraUse, PipelineError, Progress, Request};
use easel::weights::lora::Lora;

#[derive(Args)]
pub struct GenerateArgs {
    /// A converted model folder (manifest.json) or a diffusers repository folder.
    #[arg(long)]
    model: PathBuf,
    /// What to draw (unconditional models such as DDPM take none).
    #[arg(long, default_value = "")]
    prompt: String,
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// A style preset that adds its words to the prompt and negative prompt (the page's list,
    /// www/styles.txt: Twemoji, Noto, Watercolor, Oil painting, Pixel art, Line drawing).
    #[arg(long)]
    style: Option<String>,
    /// Your own style list (one per line: name | prompt words | negative words) for --style.
    #[arg(long)]
    styles: Option<PathBuf>,
    /// Denoising steps (default: 25 for Stable Diffusion, 50 for DDPM).
    #[arg(long, allow_negative_numbers = true)]
    steps: Option<usize>,
    /// Classifier-free guidance scale (off at 1 or below; default 7.5).
    #[arg(long, allow_negative_numbers = true)]
    guidance: Option<f32>,
    /// euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras, pndm, lcm or ddpm (default: the model's own).
    #[arg(long)]
    scheduler: Option<String>,
    /// A diffusers scheduler_config.json replacing the model's.
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Multiple of 8 (DDPM: of its downsampling factor); default: the model's sample size.
    #[arg(long, allow_negative_numbers = true)]
    width: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    height: Option<usize>,
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    batch: usize,
    /// A latent walk: start from the noise on the way from --seed's (t = 0) to this seed's (t = 1).
    #[arg(long, allow_negative_numbers = true)]
    walk_to_seed: Option<u64>,
    /// Where on the walk, from 0 to 1 (with --walk-to-seed).
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    walk_t: f32,
    /// PNG, or safetensors with a float tensor `image` (NCHW in [0, 1]).
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// How much of the init image is re-noised (default 0.8; inpainting: 1).
    #[arg(long, allow_negative_numbers = true)]
    strength: Option<f32>,
    /// PNG (white = repaint), or safetensors with `mask` (N1HW, 1 = repaint).
    #[arg(long)]
    mask: Option<PathBuf>,
    /// A LoRA (diffusers / peft as save_lora_weights writes it, or kohya / A1111 safetensors)
    /// merged into the model's weights; repeat for several.
    #[arg(long)]
    lora: Vec<PathBuf>,
    /// The scale of each --lora, in the same order (1 for those without one).
    #[arg(long, allow_negative_numbers = true)]
    lora_scale: Vec<f32>,
    /// gpu, cpu or auto (auto: the CPU on software adapters).
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Storage when converting a diffusers folder on the fly: f32, f16, q8_0, q4_0.
    #[arg(long, default_value = "f32")]
    quant: String,
    /// safetensors with `latents`: replaces the seeded starting noise (DDPM: x_T in pixels).
    #[arg(long)]
    init_latents: Option<PathBuf>,
    /// safetensors with `posterior` (VAE sample draw) and/or `noise` (img2img noise); for
    /// aMUSEd, `sample_u_<step>` and `gumbel_u_<step>` (the sampler's uniforms).
    #[arg(long)]
    noise: Option<PathBuf>,
    /// aMUSEd: writes the final token grid (tensor `tokens`, h x w, int64).
    #[arg(long)]
    save_tokens: Option<PathBuf>,
    /// Writes the final latents (tensor `latents`; DDPM: the last sample before /2+0.5 and clamping).
    #[arg(long)]
    save_latents: Option<PathBuf>,
    /// Writes `prompt_embeds` and `negative_prompt_embeds`.
    #[arg(long)]
    save_embeddings: Option<PathBuf>,
    /// Output PNG (with --batch N: out-0.png ... out-(N-1).png); `easel morph`: a folder.
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_quant(q: &str) -> Result<StorageType, PipelineError> {
    Ok(match q {
        "f32" => StorageType::F32,
        "f16" => StorageType::F16,
        "q8_0" | "q8" => StorageType::Q8_0,
        "q4_0" | "q4" => StorageType::Q4_0,
        other => return Err(PipelineError::Request(format!("unknown --quant '{other}': use f32, f16, q8_0 or q4_0"))),
    })
}

/// A session on the backend `backend` (gpu, cpu or auto) asks for, said on stderr.
pub async fn open_session(backend: &str, weights: WeightStore) -> Result<Session, PipelineError> {
    let pref: BackendPreference = backend.parse().map_err(PipelineError::Request)?;
    let ctx = if pref == BackendPreference::Cpu { None } else { GpuContext::new(&crate::cli::gpu_options()).await.ok() };
    let choice = choose_backend(pref, ctx.as_ref().map(|c| &c.report), None).map_err(PipelineError::Request)?;
    let session = match (choice.kind, ctx) {
        (BackendKind::Gpu, Some(ctx)) => Session::gpu(ctx, &weights)?,
        _ => Session::cpu(weights),
    };
    eprintln!("backend: {} ({})", session.kind(), choice.reason);
    Ok(session)
}

/// `out`, or with a batch, `out-{i}.png` beside it.
pub fn output_path(out: &Path, i: usize, batch: usize) -> PathBuf {
    if batch == 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    out.with_file_name(format!("{stem}-{i}.png"))
}

/// Merges each LoRA file at its scale into `weights`, saying so on stderr.
fn merge_loras(weights: &mut WeightStore, files: &[PathBuf], scales: &[f32]) -> Result<Vec<LoraUse>, PipelineError> {
    if scales.len() > files.len() {
        return Err(PipelineError::Request(format!("{} --lora-scale values for {} --lora files: give one scale per LoRA, in order", scales.len(), files.len())));
    }
    let mut used = vec![];
    for (i, path) in files.iter().enumerate() {
        let scale = scales.get(i).copied().unwrap_or(1.0);
        let bytes = std::fs::read(path).map_err(|e| PipelineError::Request(format!("{}: {e}", path.display())))?;
        let lora = Lora::parse(&path.display().to_string(), &bytes).map_err(PipelineError::Model)?;
        lora.merge_into(weights, scale).map_err(PipelineError::Model)?;
        eprintln!("LoRA {} ({} layers, sha256 {}) merged at scale {scale}", lora.name, lora.layers.len(), &lora.sha256[..12]);
        used.push(LoraUse { name: lora.name, sha256: lora.sha256, scale });
    }
    Ok(used)
}

/// The prompt and negative prompt with --style's words added.
fn styled(a: &GenerateArgs) -> Result<(String, String), PipelineError> {
    let Some(name) = &a.style else { return Ok((a.prompt.clone(), a.negative_prompt.clone())) };
    let text = match &a.styles {
        Some(p) => std::fs::read_to_string(p).map_err(|e| PipelineError::Request(format!("{}: {e}", p.display())))?,
        None => styles::DEFAULT_STYLES.to_string(),
    };
    let list = styles::parse(&text);
    let (prompt, negative) = styles::find(&list, name).map_err(PipelineError::Request)?.apply(&a.prompt, &a.negative_prompt);
    eprintln!("style {name}: prompt \"{prompt}\", negative prompt \"{negative}\"");
    Ok((prompt, negative))
}

/// The loaded model and the request the flags describe (shared with `easel morph`).
pub struct Prepared {
    pub model_gen: Generator,
    pub req: Request,
    pub model_name: String,
}

pub async fn prepare(a: &GenerateArgs) -> Result<Prepared, PipelineError> {
    let mut model = load_model_dir(&a.model, parse_quant(&a.quant)?)?;
    let loras = merge_loras(&mut model.weights, &a.lora, &a.lora_scale)?;
    let session = open_session(&a.backend, model.weights).await?;
    let model_gen = Generator::new(&model.family, session, &model.configs, &model.files)?;
    let defaults = model_gen.defaults();
    let prompted = !a.prompt.is_empty() || !a.negative_prompt.is_empty();
    if !defaults.conditional && prompted {
        eprintln!("note: this {} model is unconditional: the prompt is not used", defaults.family);
    }
    let (prompt, negative_prompt) = styled(a)?;
    let mut req = Request {
        prompt,
        negative_prompt,
        steps: a.steps.unwrap_or(defaults.steps),
        guidance: a.guidance.unwrap_or(defaults.guidance),
        scheduler: a.scheduler.clone(),
        seed: a.seed,
        width: a.width.unwrap_or(defaults.width),
        height: a.height.unwrap_or(defaults.height),
        batch: a.batch,
        strength: a.strength.unwrap_or(if a.mask.is_some() { 1.0 } else { 0.8 }),
        walk: a.walk_to_seed.map(|to_seed| Walk { to_seed, t: a.walk_t }),
        loras,
        ..Request::default()
    };
    if let Some(note) = model_gen.prompt_note(&req.prompt) {
        eprintln!("{note}");
    }
    if let Some(p) = &a.scheduler_config {
        let text = std::fs::read(p).map_err(|e| PipelineError::Request(format!("{}: {e}", p.display())))?;
        req.scheduler_config = Some(serde_json::from_slice(&text).map_err(|e| PipelineError::Request(format!("{}: {e}", p.display())))?);
    }
    if let Some(p) = &a.init_image {
        let file = read_image(p, "image")?;
        if a.width.is_none() && a.height.is_none() {
            // The image's own size, down to the model's size unit.
            let (w, h) = file.size();
            let m = defaults.size_multiple;
            (req.width, req.height) = ((w / m * m).max(m), (h / m * m).max(m));
        }
        let (image, note) = file.to_input("init image", req.width, req.height);
        req.init_image = Some(image);
        if let Some(n) = note {
            eprintln!("note: {n}");
        }
    }
    if let Some(p) = &a.mask {
        let (mask, note) = read_image(p, "mask")?.to_input("mask", req.width, req.height);
        req.mask = Some(mask);
        if let Some(n) = note {
            eprintln!("note: {n}");
        }
    }
    if let Some(p) = &a.init_latents {
        req.init_latents = Some(read_tensor(p, "latents")?.1);
    }
    if let Some(p) = &a.noise {
        req.posterior_noise = read_tensor_opt(p, "posterior")?.map(|t| t.1);
        req.image_noise = read_tensor_opt(p, "noise")?.map(|t| t.1);
        if defaults.family == "amused" {
            let mut draws = std::collections::BTreeMap::new();
            for i in 0..req.steps {
                for kind in ["sample_u", "gumbel_u"] {
                    let name = format!("{kind}_{i}");
                    if let Some((_, values)) = read_tensor_opt(p, &name)? {
                        draws.insert(name, values);
                    }
                }
            }
            req.token_draws = Some(draws);
        }
    }
    Ok(Prepared { model_gen, req, model_name: model.name })
}

/// Prints a generation's progress on stderr (`label` prefixes the step lines).
/// The decode's line says about how long it will take: its work in steps at the last
/// step's pace (the first step also compiles the UNet, so a one-step run overestimates).
pub fn reporter(t0: std::time::Instant, label: String) -> impl FnMut(Progress) -> bool {
    let mut last = t0;
    let mut pace = None;
    move |p: Progress| {
        match p {
            Progress::Text { truncated } => {
                last = std::time::Instant::now();
                if truncated {
                    eprintln!("note: the prompt was cut to 77 tokens");
                }
            }
            Progress::Step { step, total, .. } => {
                pace = Some(last.elapsed().as_secs_f64());
                last = std::time::Instant::now();
                eprintln!("{label}step {step}/{total} ({:.1} s)", t0.elapsed().as_secs_f64());
            }
            Progress::Decoding { work } => match work.zip(pace) {
                Some((w, secs)) => eprintln!("{label}decoding (about {:.0} s: {w:.1} steps' work)", w * secs),
                None => eprintln!("{label}decoding"),
            },
        }
        true
    }
}

pub async fn run(a: GenerateArgs) -> Result<(), PipelineError> {
    let t0 = std::time::Instant::now();
    let Prepared { mut model_gen, req, model_name } = prepare(&a).await?;
    let out = model_gen.generate(&req, &mut reporter(t0, String::new())).await?;
    if let Some(p) = &a.save_tokens {
        let Generator::Amused(_) = &model_gen else {
            return Err(PipelineError::Request("--save-tokens: only aMUSEd models make token grids".into()));
        };
        let [_, _, h, w] = model_gen.latent_shape(&req);
        let tokens: Vec<i64> = out.latents.iter().map(|&t| t as i64).collect();
        easel::pipelines::native::write_values(p, &[("tokens", &[h, w], easel::weights::safetensors::Values::I64(&tokens))])?;
    }
    if let Some(p) = &a.save_latents {
        write_tensors(p, &[("latents", &model_gen.latent_shape(&req), &out.latents)])?;
    }
    if let Some(p) = &a.save_embeddings {
        let Generator::StableDiffusion(sd) = &model_gen else {
            return Err(PipelineError::Request("--save-embeddings: this model has no text encoder".into()));
        };
        let d = sd.text_cfg.hidden_size;
        let neg_shape = [out.negative_prompt_embeds.len() / (77 * d).max(1), 77, d];
        write_tensors(p, &[("prompt_embeds", &[req.batch, 77, d], &out.prompt_embeds), ("negative_prompt_embeds", &neg_shape, &out.negative_prompt_embeds)])?;
    }
    let pngs = encode_pngs(&out.images, &req, out.scheduler, &model_name).map_err(PipelineError::Request)?;
    for (i, png) in pngs.iter().enumerate() {
        let path = output_path(&a.out, i, req.batch);
        std::fs::write(&path, &png.bytes).map_err(|e| PipelineError::Request(format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
        if let Some(e) = &png.error {
            eprintln!("warning: {}: {e}", path.display());
        }
    }
    eprintln!("done in {:.1} s on {} (peak GPU activation bytes {})", t0.elapsed().as_secs_f64(), model_gen.session().kind(), model_gen.activation_bytes());
    Ok(())
}
