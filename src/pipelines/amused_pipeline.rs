//! aMUSEd behind the one engine interface: the prompt and the empty negative prompt
//! tokenized (77 ids, padded with id 0 as its tokenizer says), the MaskGIT loop of
//! `amused.rs` with per-step previews of the predicted grid, and the decoded image.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::amused::{sample_tokens, Amused, Draws, Sampling, TextCond};
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
}

/// diffusers' default micro-conditioning aesthetic score.
const AESTHETIC: f32 = 6.0;

impl AmusedPipeline {
    pub fn new(session: Session, configs: &BTreeMap<String, Value>, files: &HashMap<String, Vec<u8>>) -> Result<Self, PipelineError> {
        let tokenizer = model_tokenizer(files, "tokenizer").map_err(|e| PipelineError::Model(e.to_string()))?;
        Ok(Self { model: Amused::new(session, configs)?, tokenizer })
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
    if req.init_image.is_some() {
        return Err(PipelineError::Request("aMUSEd text-to-image takes no init image here".into()));
    }
    let budget = super::limits::budget(&p.model.session);
    let (uvit, vq) = (&p.model.uvit_cfg, &p.model.vq_cfg.vae);
    budget.check_with(req, &|w, h| super::limits::amused_activations(uvit, vq, w, h, req.guidance > 1.0)).map_err(PipelineError::TooLarge)?;
    let (h, w) = (req.height / f, req.width / f);
    let guided = req.guidance > 1.0;
    let texts: Vec<&str> = if guided { vec![&req.prompt, &req.negative_prompt] } else { vec![&req.prompt] };
    let mut ids = Vec::with_capacity(texts.len() * MAX_TOKENS);
    let mut truncated = false;
    for t in &texts {
        let e = p.tokenizer.encode(t).map_err(|e| PipelineError::Model(e.to_string()))?;
        truncated |= e.truncated;
        ids.extend(e.ids);
    }
    let (embeds, hidden) = p.model.encode_text(&ids, MAX_TOKENS).await?;
    if !progress(Progress::Text { truncated: truncated && !req.prompt.is_empty() }) {
        return Err(PipelineError::Cancelled);
    }
    let (pe, ph) = (embeds.len() / texts.len(), hidden.len() / texts.len());
    let text = TextCond { cond: (embeds[..pe].to_vec(), hidden[..ph].to_vec()), uncond: guided.then(|| (embeds[pe..].to_vec(), hidden[ph..].to_vec())) };
    let sampling =
        Sampling { grid: [h, w], steps: req.steps, guidance: req.guidance, micro_conds: [req.width as f32, req.height as f32, 0.0, 0.0, AESTHETIC], previews: req.previews };
    let mut draws = match &req.token_draws {
        Some(d) => Draws::Saved(d.clone()),
        None => Draws::Seeded(Rng::new(req.seed)),
    };
    let total = req.steps;
    let tokens = sample_tokens(&mut p.model, &text, &sampling, &mut draws, &mut |t| {
        let preview = t.preview.map(|x| Preview { image: Rgba::from_unit_nchw(&x, req.width, req.height), kind: "tokens" });
        progress(Progress::Step { step: t.step + 1, total, preview })
    })
    .await?;
    if !progress(Progress::Decoding) {
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
