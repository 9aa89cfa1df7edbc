//! aMUSEd behind the one engine interface: the prompt and the empty negative prompt
//! tokenized (77 ids, padded with id 0 as its tokenizer says), the MaskGIT loop of
//! `amused.rs` with per-step previews of the predicted grid, and the decoded image.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::amused::{sample_tokens_from, Amused, Draws, Sampling, Start, TextCond};
use super::generate::{check_finite, Output, Preview, Progress};
use super::image::Rgba;
use super::request::Request;
use super::PipelineError;
use crate::models::Session;
use crate::rng::Rng;
use crate::text::{model_tokenizer, ClipTokenizer, MAX_TOKENS};

/// An aMUSEd model with its tokenizer.
pub struct AmusedPipeline {
    pub model: Amused,
    pub tokenizer: ClipTokenizer,
    /// The maker's suggested settings (model_index.json's `_easel_defaults`).
    pub suggested: super::family::Suggested,
}

/// diffusers' default micro-conditioning aesthetic score.
const AESTHETIC: f32 = 6.0;

impl AmusedPipeline {
    pub fn new(session: Session, configs: &BTreeMap<String, Value>, files: &HashMap<String, Vec<u8>>) -> Result<Self, PipelineError> {
        let tokenizer = model_tokenizer(files, "tokenizer").map_err(|e| PipelineError::Model(e.to_string()))?;
        let suggested = super::family::Suggested::from_configs(configs)?;
        Ok(Self { model: Amused::new(session, configs)?, tokenizer, suggested })
    }

    /// Image sides must be multiples of the VQ decoder's factor.
    pub fn size_multiple(&self) -> usize {
        self.model.vq_cfg.downscale()
    }

    /// The transformer's grid size times the decoder's factor (256 or 512 for the real ones).
    pub fn default_size(&self) -> usize {
        self.model.uvit_cfg.sample_size * self.size_multiple()
    }
}

/// Text-to-image: one image per run (the token grid is [1, h, w]).
pub async fn generate(p: &mut AmusedPipeline, req: &Request, progress: &mut dyn FnMut(Progress) -> bool) -> Result<Output, PipelineError> {
    let f = p.size_multiple();
    req.validate_for(f).map_err(PipelineError::Request)?;
    if req.batch != 1 {
        return Err(PipelineError::Request(format!("batch = {}: aMUSEd makes one image per run here", req.batch)));
    }
    if req.walk.is_some() {
        return Err(PipelineError::Request("aMUSEd starts from a fully masked token grid, not from noise: there is no noise to walk; morph between prompts instead".into()));
    }
    let guided = req.guidance > 1.0;
    let budget = super::limits::budget(&p.model.session);
    let (uvit, vq) = (&p.model.uvit_cfg, &p.model.vq_cfg.vae);
    budget.check_with(req, &|w, h| super::limits::amused_activations(uvit, vq, w, h, guided)).map_err(PipelineError::TooLarge)?;
    let (h, w) = (req.height / f, req.width / f);
    let texts: Vec<&str> = if guided { vec![&req.prompt, &req.negative_prompt] } else { vec![&req.prompt] };
    let mut ids = Vec::with_capacity(texts.len() * MAX_TOKENS);
    let mut truncated = false;
    for t in &texts {
        let e = p.tokenizer.encode(t).map_err(|e| PipelineError::Model(e.to_string()))?;
        truncated |= e.truncated;
        ids.extend(e.ids);
    }
    let (embeds, hidden) = p.model.encode_text(&ids, MAX_TOKENS).await?;
    let (pe, ph) = (embeds.len() / texts.len(), hidden.len() / texts.len());
    let mut cond = (embeds[..pe].to_vec(), hidden[..ph].to_vec());
    if let Some(m) = &req.morph {
        // The prompt's conditioning (pooled and per token) moves toward to_prompt's, encoded
        // in the same batch layout: t = 1 is exactly what a generation of to_prompt reads.
        let mut to_ids = Vec::with_capacity(ids.len());
        for t in std::iter::once(m.to_prompt.as_str()).chain(texts[1..].iter().copied()) {
            to_ids.extend(p.tokenizer.encode(t).map_err(|e| PipelineError::Model(e.to_string()))?.ids);
        }
        let (to_embeds, to_hidden) = p.model.encode_text(&to_ids, MAX_TOKENS).await?;
        cond = (super::latents::lerp(&cond.0, &to_embeds[..pe], m.t), super::latents::lerp(&cond.1, &to_hidden[..ph], m.t));
    }
    if !progress(Progress::Text { truncated: truncated && !req.prompt.is_empty() }) {
        return Err(PipelineError::Cancelled);
    }
    let text = TextCond { cond, uncond: guided.then(|| (embeds[pe..].to_vec(), hidden[ph..].to_vec())) };
    let sampling =
        Sampling { grid: [h, w], steps: req.steps, guidance: req.guidance, micro_conds: [req.width as f32, req.height as f32, 0.0, 0.0, AESTHETIC], previews: req.previews };
    let mut draws = match &req.token_draws {
        Some(d) => Draws::Saved(d.clone()),
        None => Draws::Seeded(Rng::new(req.seed)),
    };
    let total = req.steps;
    let start = match (&req.init_image, &req.mask) {
        (None, _) => Start { tokens: vec![p.model.mask_token_id; h * w], first_step: 0 },
        (Some(_), None) => return Err(PipelineError::Request("aMUSEd repaints the masked area of an init image: give a mask too (white = repaint)".into())),
        (Some(image), Some(mask)) => {
            let codes = p.model.encode(image.shape, image.values.clone()).await?;
            let tokens = mask_tokens(&codes, &mask.values, [h, w], f, p.model.mask_token_id);
            Start { tokens, first_step: first_step(req.steps, req.strength)? }
        }
    };
    let tokens = sample_tokens_from(&mut p.model, &text, &sampling, start, &mut draws, &mut |t| {
        let preview = t.preview.map(|x| Preview { image: Rgba::from_unit_nchw(&x, req.width, req.height), kind: "tokens" });
        progress(Progress::Step { step: t.step + 1, total, preview })
    })
    .await?;
    if !progress(Progress::Decoding { work: None }) {
        return Err(PipelineError::Cancelled);
    }
    let decoded = p.model.decode([1, h, w], &tokens).await?;
    check_finite(&decoded, "the VQ decoder's output")?;
    Ok(Output {
        images: vec![Rgba::from_unit_nchw(&decoded, req.width, req.height)],
        latents: tokens.iter().map(|&t| t as f32).collect(),
        prompt_embeds: text.cond.1,
        negative_prompt_embeds: text.uncond.map(|u| u.1).unwrap_or_default(),
        decoded,
        prompt_truncated: truncated,
        scheduler: "amused",
    })
}

/// The code grid with every token whose f x f pixel block of the mask [H, W] (1 = repaint)
/// averages at least one half set to the mask token. diffusers resizes the mask to the grid
/// with Lanczos and binarizes at 0.5: the same for masks drawn on whole blocks.
pub fn mask_tokens(codes: &[u32], mask: &[f32], [h, w]: [usize; 2], f: usize, mask_token: u32) -> Vec<u32> {
    let width = w * f;
    (0..h * w)
        .map(|t| {
            let (y, x) = (t / w, t % w);
            let sum: f32 = (0..f).flat_map(|dy| (0..f).map(move |dx| (y * f + dy) * width + x * f + dx)).map(|i| mask[i]).sum();
            if sum / (f * f) as f32 >= 0.5 {
                mask_token
            } else {
                codes[t]
            }
        })
        .collect()
}

/// The first of `steps` schedule steps that inpainting runs: diffusers runs the last
/// int(steps x strength). The strength is taken as the decimal the user typed (0.7, not
/// the f32 0.69999999), as Python multiplies it.
fn first_step(steps: usize, strength: f32) -> Result<usize, PipelineError> {
    let typed: f64 = strength.to_string().parse().unwrap_or(strength as f64);
    let run = (steps as f64 * typed) as usize;
    if run == 0 {
        return Err(PipelineError::Request(format!("strength = {strength} runs no step of {steps}: raise the strength or the steps")));
    }
    Ok(steps - run.min(steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_repainted_when_half_its_block_is_white() {
        // A 2x2 grid of 2x2 blocks: the top-left block all white, the top-right half, the
        // bottom-left one pixel in four, the bottom-right black.
        let mask = [1., 1., 1., 0., 1., 1., 1., 0., 1., 0., 0., 0., 0., 0., 0., 0.];
        assert_eq!(mask_tokens(&[5, 6, 7, 8], &mask, [2, 2], 2, 99), vec![99, 99, 7, 8]);
    }

    #[test]
    fn strength_counts_steps_as_python_does() {
        assert_eq!(first_step(10, 1.0).unwrap(), 0);
        // int(10 * 0.7) = 7 in Python (7.000000000000001); the f32 0.7 would give 6.
        assert_eq!(first_step(10, 0.7).unwrap(), 3);
        assert_eq!(first_step(12, 0.5).unwrap(), 6);
        assert_eq!(first_step(4, 0.1).unwrap_err().to_string(), "request: strength = 0.1 runs no step of 4: raise the strength or the steps");
    }
}
