//! txt2img, img2img and inpainting as diffusers' StableDiffusion(Img2Img|Inpaint)Pipeline
//! run them: CFG batch [negative..., positive...], the scheduler on the host, one UNet call
//! per step on the backend, the VAE at the end.

use super::latents::{blend, cfg_combine, latent_preview, lerp, mask_to_latent, repeat, starting_noise};
use super::request::Request;
use super::sd::{AddedInputs, StableDiffusion, Stage};
use super::PipelineError;
use crate::rng::Rng;
use crate::schedulers::{self, Scheduler};

/// What the caller hears during a generation.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The prompt was encoded; `truncated` when it was cut to 77 tokens.
    Text { truncated: bool },
    /// A denoising step finished (1-based), with an optional preview.
    Step { step: usize, total: usize, preview: Option<Preview> },
    /// The VAE is decoding. `work`: the decode's cost in UNet steps (floating-point
    /// operations over one step's), for an estimate of its time from the steps' pace (SD's
    /// decoder at 512 px is about 3.1 steps of SD-Turbo's UNet without guidance); None
    /// where a pipeline does not count it.
    Decoding { work: Option<f64> },
}

/// A step's preview of the first image.
#[derive(Debug, Clone)]
pub struct Preview {
    pub image: super::image::Rgba,
    /// "taesd" (the model's tiny decoder) or "latent" (the fixed latent-to-RGB map).
    pub kind: &'static str,
}

/// The result of a generation.
pub struct Output {
    /// One RGBA image per batch entry.
    pub images: Vec<super::image::Rgba>,
    /// Final latents [batch, 4, h, w], before 1/scaling_factor.
    pub latents: Vec<f32>,
    /// [batch, 77, D] each (negative empty without CFG).
    pub prompt_embeds: Vec<f32>,
    pub negative_prompt_embeds: Vec<f32>,
    /// The VAE output [batch, 3, H, W], not clamped.
    pub decoded: Vec<f32>,
    pub prompt_truncated: bool,
    pub scheduler: &'static str,
}

/// Runs one generation. `progress` returns false to cancel (checked between steps).
pub async fn generate(sd: &mut StableDiffusion, req: &Request, progress: &mut dyn FnMut(Progress) -> bool) -> Result<Output, PipelineError> {
    req.validate().map_err(PipelineError::Request)?;
    super::limits::budget(&sd.session).check(&sd.unet_cfg, &sd.vae_cfg, req).map_err(PipelineError::TooLarge)?;
    let f = sd.vae_cfg.downscale();
    let (lc, h, w, b) = (sd.vae_cfg.latent_channels, req.height / f, req.width / f, req.batch);
    let latent_len = lc * h * w;
    let inpaint_unet = sd.unet_cfg.in_channels == 2 * lc + 1;
    if req.mask.is_none() && inpaint_unet {
        return Err(PipelineError::Request("this is an inpainting model: give it an init image and a mask".into()));
    }
    let mut rng = Rng::new(req.seed);

    // Text: [negative, positive] in one batch of the encoder.
    let do_cfg = req.guidance > 1.0;
    let texts: Vec<&str> = if do_cfg { vec![&req.negative_prompt, &req.prompt] } else { vec![&req.prompt] };
    let text = sd.encode_text(&texts).await?;
    let truncated = text.truncated;
    let (mut ctx, mut pooled) = text.row(texts.len() - 1, texts.len());
    if let Some(m) = &req.morph {
        // The prompt's embeddings move toward to_prompt's; the negative ones are the same for
        // both. Encoded in the same batch layout as the prompt: the compiled encoder is
        // reused, and t = 1 gives exactly the embeddings a plain generation of to_prompt uses.
        let to_texts: Vec<&str> = if do_cfg { vec![&req.negative_prompt, &m.to_prompt] } else { vec![&m.to_prompt] };
        let (to_ctx, to_pooled) = sd.encode_text(&to_texts).await?.row(to_texts.len() - 1, to_texts.len());
        ctx = lerp(&ctx, &to_ctx, m.t);
        pooled = lerp(&pooled, &to_pooled, m.t);
    }
    let (neg_ctx, neg_pooled) = if !do_cfg {
        (vec![], vec![])
    } else if sd.force_zeros_for_empty_prompt && req.negative_prompt.is_empty() {
        // SDXL as diffusers runs it: no negative prompt means zero negative embeddings.
        (vec![0.0; ctx.len()], vec![0.0; pooled.len()])
    } else {
        text.row(0, texts.len())
    };
    let (neg, pos) = (repeat(&neg_ctx, b), repeat(&ctx, b));
    let context = [neg.as_slice(), pos.as_slice()].concat();
    // SDXL's added conditioning: pooled text and the time ids (original size = target size =
    // the request's, no crop), in the same [negative..., positive...] order.
    let mut added = sd.unet_cfg.text_time.map(|_| {
        let ids = [req.height as f32, req.width as f32, 0.0, 0.0, req.height as f32, req.width as f32];
        let copies = if do_cfg { 2 * b } else { b };
        AddedInputs { text_embeds: [repeat(&neg_pooled, b), repeat(&pooled, b)].concat(), time_ids: repeat(&ids, copies) }
    });
    sd.end_stage(Stage::Text);
    if !progress(Progress::Text { truncated }) {
        return Err(PipelineError::Cancelled);
    }

    let config = req.scheduler_config.as_ref().unwrap_or(&sd.scheduler_config);
    let mut sched: Box<dyn Scheduler> = schedulers::create(config, req.scheduler.as_deref(), req.steps)?;

    // Starting point: pure noise, or the (masked) image encoded and noised part-way.
    let noise = starting_noise(req, &mut rng, &[b, lc, h, w])?;
    let mut rng = super::latents::after_start(req, rng, noise.len());
    let mut begin = 0;
    let mut image_latents = None;
    let mut inpaint = None;
    if let Some(img) = &req.init_image {
        let pixels: Vec<f32> = img.values.iter().map(|v| 2.0 * v - 1.0).collect();
        if let Some(mask) = &req.mask {
            // diffusers binarizes the mask and blanks the area to repaint before encoding.
            let keep: Vec<f32> = mask.values.iter().map(|&m| if m < 0.5 { 1.0 } else { 0.0 }).collect();
            let masked: Vec<f32> = pixels.iter().enumerate().map(|(i, p)| p * keep[i % keep.len()]).collect();
            let masked_latents = encode_image(sd, req, &masked, &mut rng).await?;
            let mask_latent = mask_to_latent(&mask.values, req.height, req.width, h, w);
            inpaint = Some((repeat(&mask_latent, b), repeat(&masked_latents, b)));
        }
        if !inpaint_unet || req.strength < 1.0 {
            image_latents = Some(repeat(&encode_image(sd, req, &pixels, &mut rng).await?, b));
        }
        let init = ((req.steps as f32 * req.strength) as usize).min(req.steps);
        begin = (req.steps - init) * sched.order();
        if begin >= sched.timesteps().len() {
            return Err(PipelineError::Request(format!("strength {} with {} steps leaves no step to run", req.strength, req.steps)));
        }
    }
    let mut latents = match (&image_latents, req.strength < 1.0 || req.mask.is_none()) {
        (Some(img), true) => {
            let n = match &req.image_noise {
                Some(n) if n.len() == b * latent_len => n.clone(),
                Some(n) => return Err(PipelineError::Request(format!("image noise has {} values, wants {}", n.len(), b * latent_len))),
                None => rng.normal_vec(b * latent_len),
            };
            sched.add_noise(img, &n, begin)
        }
        _ => noise.iter().map(|v| v * sched.init_noise_sigma()).collect(),
    };
    let blend_noise = noise.clone();
    sd.end_stage(Stage::Encode);

    let total = sched.timesteps().len() - begin;
    let in_c = sd.unet_cfg.in_channels;
    let copies = if do_cfg { 2 } else { 1 };
    let shape = [copies * b, in_c, h, w];
    let mut first = true;
    for (k, i) in (begin..sched.timesteps().len()).enumerate() {
        let t = sched.timesteps()[i];
        let scaled = sched.scale_model_input(&latents, i);
        let mut input = repeat(&scaled, copies);
        if let Some((m, ml)) = &inpaint {
            if inpaint_unet {
                input = concat_channels(&[&input, &repeat(m, copies), &repeat(ml, copies)], copies * b, &[lc, 1, lc], h * w);
            }
        }
        let out = sd.unet(shape, input, t, first.then(|| context.clone()), if first { added.take() } else { None }).await?;
        first = false;
        let noise_pred = if do_cfg { cfg_combine(&out, req.guidance) } else { out };
        latents = sched.step(&noise_pred, i, &latents, &mut rng);
        if let (Some((m, _)), false, Some(img)) = (&inpaint, inpaint_unet, &image_latents) {
            // Ordinary models inpaint by keeping the known area at the next noise level.
            let proper = if i + 1 < sched.timesteps().len() { sched.add_noise(img, &blend_noise, i + 1) } else { img.clone() };
            latents = blend(&proper, &latents, m, lc, h * w);
        }
        let preview = if req.previews { Some(preview(sd, &latents[..latent_len], [lc, h, w]).await?) } else { None };
        if !progress(Progress::Step { step: k + 1, total, preview }) {
            return Err(PipelineError::Cancelled);
        }
        crate::platform::yield_now().await;
    }

    sd.end_stage(Stage::Denoise);
    check_finite(&latents, "the final latents")?;
    let work = sd.decode_work([b, lc, h, w]).await?;
    if !progress(Progress::Decoding { work }) {
        return Err(PipelineError::Cancelled);
    }
    let decoded = sd.decode([b, lc, h, w], &latents).await?;
    sd.end_stage(Stage::Decode);
    check_finite(&decoded, "the VAE decoder's output")?;
    let images = decoded.chunks(3 * req.height * req.width).map(|d| super::image::Rgba::from_nchw(d, req.width, req.height)).collect();
    Ok(Output { images, latents, prompt_embeds: pos, negative_prompt_embeds: neg, decoded, prompt_truncated: truncated, scheduler: sched.name() })
}

/// Refuses NaN and infinities, which would otherwise be saved as a black image.
pub(crate) fn check_finite(values: &[f32], what: &str) -> Result<(), PipelineError> {
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let inf = values.iter().filter(|v| v.is_infinite()).count();
    if nan + inf == 0 {
        return Ok(());
    }
    Err(PipelineError::NotFinite(format!(
        "{what} has {nan} NaN and {inf} infinite values of {}: the model's weights or the backend produced numbers that are not an image (try the other backend, or f32 / q8_0 weights)",
        values.len()
    )))
}

/// The preview of one image's latents [c, h, w]. It shows the current latents, as diffusers'
/// step callbacks hand them out, not the scheduler's x0 prediction: every scheduler has
/// them (x0 is internal to each, and LCM/PNDM/DPM++ form it differently), and both preview
/// kinds then show the same state. TAESD costs about 70 GMAC at 512x512 (counted from its
/// convs), against several hundred for SD's UNet step; a model without one gets the
/// latent-to-RGB map, which costs nothing.
async fn preview(sd: &mut StableDiffusion, latents: &[f32], [c, h, w]: [usize; 3]) -> Result<Preview, PipelineError> {
    Ok(match sd.preview_decode([1, c, h, w], latents).await? {
        Some(rgb) => {
            let f = sd.vae_cfg.downscale();
            Preview { image: super::image::Rgba::from_nchw(&rgb, w * f, h * f), kind: "taesd" }
        }
        None => Preview { image: latent_preview(latents, c, h, w), kind: "latent" },
    })
}

/// Encodes one [-1, 1] image to scaled latents: scaling * (mean + std * draw).
async fn encode_image(sd: &mut StableDiffusion, req: &Request, pixels: &[f32], _rng: &mut Rng) -> Result<Vec<f32>, PipelineError> {
    let (mean, std) = sd.encode([1, 3, req.height, req.width], pixels.to_vec()).await?;
    let s = sd.vae_cfg.scaling_factor;
    Ok(match &req.posterior_noise {
        Some(d) if d.len() == mean.len() => mean.iter().zip(&std).zip(d).map(|((m, sd), e)| s * (m + sd * e)).collect(),
        Some(d) => return Err(PipelineError::Request(format!("posterior noise has {} values, wants {}", d.len(), mean.len()))),
        None => mean.iter().map(|m| s * m).collect(),
    })
}

/// Concatenates per-sample channel groups: parts[i] is [n, channels[i], hw].
fn concat_channels(parts: &[&Vec<f32>], n: usize, channels: &[usize], hw: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for s in 0..n {
        for (p, &c) in parts.iter().zip(channels) {
            out.extend_from_slice(&p[s * c * hw..(s + 1) * c * hw]);
        }
    }
    out
}
