//! aMUSEd text-to-image as diffusers' `AmusedPipeline` runs it: CLIPTextModelWithProjection
//! gives the pooled `text_embeds` and the penultimate hidden states; every step calls the
//! UVit2DModel on the token grid ([uncond, cond] under guidance), mixes the logits, and the
//! AmusedScheduler (masking.rs) unmasks tokens; the VQModel decodes the final grid, clipped
//! to [0, 1] (no /2 + 0.5).

use std::collections::BTreeMap;

use serde_json::Value;

use super::masking::{AmusedScheduler, StepDraws};
use super::PipelineError;
use crate::models::clip::{eos_one_hot, text_embeds, text_model, ClipTextConfig};
use crate::models::session::f32s;
use crate::models::uvit::{uvit, UVitConfig, UVitInputs};
use crate::models::vqgan::VqConfig;
use crate::models::{Compiled, Session};
use crate::ops::cpu::HostTensor;
use crate::rng::Rng;

/// A loaded aMUSEd model (text_encoder, transformer, vqvae weights) on a backend.
pub struct Amused {
    pub session: Session,
    pub text_cfg: ClipTextConfig,
    pub uvit_cfg: UVitConfig,
    pub vq_cfg: VqConfig,
    pub mask_token_id: u32,
    pub cosine: bool,
    text_nested: bool,
    text: Option<(usize, Compiled)>,
    transformer: Option<([usize; 3], Compiled)>,
    decoder: Option<([usize; 3], Compiled)>,
    encoder: Option<([usize; 4], Compiled)>,
}

/// Where the scheduler's uniforms come from: the seeded generator, or saved per-step
/// tensors `sample_u_<i>` (one per token) and `gumbel_u_<i>` (all but the last step).
pub enum Draws {
    Seeded(Rng),
    Saved(BTreeMap<String, Vec<f32>>),
}

impl Draws {
    fn take(&mut self, kind: &str, i: usize, n: usize) -> Result<Vec<f32>, PipelineError> {
        match self {
            Draws::Seeded(rng) => Ok((0..n).map(|_| rng.uniform() as f32).collect()),
            Draws::Saved(m) => {
                let name = format!("{kind}_{i}");
                match m.get(&name) {
                    Some(v) if v.len() == n => Ok(v.clone()),
                    Some(v) => Err(PipelineError::Request(format!("noise tensor '{name}' has {} values, the step needs {n}", v.len()))),
                    None => Err(PipelineError::Request(format!("the noise file has no '{name}'"))),
                }
            }
        }
    }
}

impl Amused {
    pub fn new(session: Session, configs: &BTreeMap<String, Value>) -> Result<Self, PipelineError> {
        let get = |name: &str| configs.get(name).ok_or_else(|| PipelineError::Model(format!("the model has no '{name}' config (is it an aMUSEd repository?)")));
        let sched = get("scheduler")?;
        let mask_token_id = sched.get("mask_token_id").and_then(Value::as_u64).ok_or_else(|| PipelineError::Model("the scheduler config has no mask_token_id".into()))? as u32;
        let cosine = match sched.get("masking_schedule").and_then(Value::as_str).unwrap_or("cosine") {
            "cosine" => true,
            "linear" => false,
            other => return Err(PipelineError::Model(format!("masking_schedule '{other}' is not supported (cosine, linear)"))),
        };
        let text_nested = session.shapes.contains("text_encoder.text_model.embeddings.token_embedding.weight");
        Ok(Self {
            text_cfg: ClipTextConfig::from_json(get("text_encoder")?)?,
            uvit_cfg: UVitConfig::from_json(get("transformer")?)?,
            vq_cfg: VqConfig::from_json(get("vqvae")?)?,
            session,
            mask_token_id,
            cosine,
            text_nested,
            text: None,
            transformer: None,
            decoder: None,
            encoder: None,
        })
    }

    /// Text encoder over 77-token rows `ids` [B, L]: (text_embeds [B, P], penultimate [B, L, D]).
    pub async fn encode_text(&mut self, ids: &[u32], len: usize) -> Result<(Vec<f32>, Vec<f32>), PipelineError> {
        let b = ids.len() / len;
        if self.text.as_ref().is_none_or(|(s, _)| *s != b) {
            let (cfg, nested) = (self.text_cfg.clone(), self.text_nested);
            let c = self.session.compile(|g| {
                let x = g.input_u32("ids", &[b, len]);
                let sel = g.input("eos_select", &[b, 1, len]);
                g.scoped("text_encoder", |g| -> Result<(), crate::error::OpError> {
                    let o = text_model(g, &cfg, x, nested)?;
                    let e = text_embeds(g, &cfg, o.last_hidden_state, sel)?;
                    g.output(e);
                    g.output(o.penultimate);
                    Ok(())
                })
            });
            self.text = Some((b, c.await?));
        }
        let (_, c) = self.text.as_mut().expect("compiled above");
        self.session.set_input(c, "ids", HostTensor::U32(ids.to_vec()))?;
        self.session.set_input(c, "eos_select", HostTensor::F32(eos_one_hot(ids, len)))?;
        let mut out = self.session.run(c).await?.into_iter().map(f32s);
        Ok((out.next().expect("two outputs"), out.next().expect("two outputs")))
    }

    /// One transformer call: tokens [B, h, w] -> logits [B, K, h, w].
    pub async fn logits(&mut self, grid: [usize; 3], tokens: &[u32], ehs: &[f32], pooled: &[f32], micro_conds: &[f32]) -> Result<Vec<f32>, PipelineError> {
        let b = grid[0];
        if self.transformer.as_ref().is_none_or(|(s, _)| *s != grid) {
            let cfg = self.uvit_cfg.clone();
            let (l, d, p) = (ehs.len() / b / self.text_cfg.hidden_size, self.text_cfg.hidden_size, pooled.len() / b);
            let c = self.session.compile(|g| {
                let x = UVitInputs {
                    ids: g.input_u32("ids", &grid),
                    encoder_hidden_states: g.input("ehs", &[b, l, d]),
                    pooled_text_emb: g.input("pooled", &[b, p]),
                    micro_conds: g.input("micro_conds", &[b, micro_conds.len() / b]),
                };
                let o = g.scoped("transformer", |g| uvit(g, &cfg, &x))?;
                g.output(o);
                Ok(())
            });
            self.transformer = Some((grid, c.await?));
        }
        let (_, c) = self.transformer.as_mut().expect("compiled above");
        self.session.set_input(c, "ids", HostTensor::U32(tokens.to_vec()))?;
        self.session.set_input(c, "ehs", HostTensor::F32(ehs.to_vec()))?;
        self.session.set_input(c, "pooled", HostTensor::F32(pooled.to_vec()))?;
        self.session.set_input(c, "micro_conds", HostTensor::F32(micro_conds.to_vec()))?;
        Ok(f32s(self.session.run(c).await?.into_iter().next().expect("one output")))
    }

    /// VQModel decode of tokens [B, h, w] -> image [B, 3, h*f, w*f], not clipped.
    /// Peak bytes of activations the compiled GPU graphs hold (text encoder, transformer,
    /// VQ decoder and encoder).
    pub fn activation_bytes(&self) -> u64 {
        let text = self.text.as_ref().map_or(0, |(_, c)| c.activation_bytes());
        let grids = [&self.transformer, &self.decoder].iter().filter_map(|g| g.as_ref().map(|(_, c)| c.activation_bytes())).sum::<u64>();
        text + grids + self.encoder.as_ref().map_or(0, |(_, c)| c.activation_bytes())
    }

    /// The VQ codes of `image` [1, 3, H, W] with values in [0, 1] (aMUSEd's VQ takes its
    /// pixels unnormalized).
    pub async fn encode(&mut self, shape: [usize; 4], image: Vec<f32>) -> Result<Vec<u32>, PipelineError> {
        super::vqgan::encode_codes(&mut self.session, &mut self.encoder, &self.vq_cfg, shape, image).await
    }

    pub async fn decode(&mut self, grid: [usize; 3], tokens: &[u32]) -> Result<Vec<f32>, PipelineError> {
        super::vqgan::decode_codes(&mut self.session, &mut self.decoder, &self.vq_cfg, grid, tokens).await
    }
}

/// What one sampling step saw and made (for previews and tests).
pub struct StepTrace<'a> {
    pub step: usize,
    pub logits: &'a [f32],
    pub pred_original: &'a [u32],
    pub prev_sample: &'a [u32],
    /// The decoded `pred_original` [1, 3, H, W] (not clipped), when `Sampling::previews`.
    pub preview: Option<Vec<f32>>,
}

/// Text conditioning for a batch: `cond`/`uncond` = (text_embeds, penultimate) of one prompt.
pub struct TextCond {
    pub cond: (Vec<f32>, Vec<f32>),
    pub uncond: Option<(Vec<f32>, Vec<f32>)>,
}

#[derive(Debug, Clone, Copy)]
/// How to sample: the token grid [h, w], steps, guidance and the micro-conditioning
/// [width, height, crop x, crop y, aesthetic score] (pixels).
pub struct Sampling {
    pub grid: [usize; 2],
    pub steps: usize,
    pub guidance: f32,
    pub micro_conds: [f32; 5],
    /// Decode each step's predicted grid for a preview.
    pub previews: bool,
}

/// The MaskGIT loop over a fully masked [1, h, w] grid; returns the final tokens.
pub async fn sample_tokens(m: &mut Amused, text: &TextCond, s: &Sampling, draws: &mut Draws, on_step: &mut dyn FnMut(StepTrace) -> bool) -> Result<Vec<u32>, PipelineError> {
    let start = Start { tokens: vec![m.mask_token_id; s.grid[0] * s.grid[1]], first_step: 0 };
    sample_tokens_from(m, text, s, start, draws, on_step).await
}

/// Where the loop starts: a grid whose masked positions (the mask token) are to be filled,
/// and the first of the schedule's steps to run (diffusers' inpainting runs the last
/// `strength x steps`).
pub struct Start {
    pub tokens: Vec<u32>,
    pub first_step: usize,
}

/// The MaskGIT loop from `start`: only masked positions change, and the schedule's mask
/// counts scale with the share masked at the start (`AmusedInpaintPipeline`).
pub async fn sample_tokens_from(
    m: &mut Amused,
    text: &TextCond,
    s: &Sampling,
    start: Start,
    draws: &mut Draws,
    on_step: &mut dyn FnMut(StepTrace) -> bool,
) -> Result<Vec<u32>, PipelineError> {
    let Sampling { grid, steps, guidance, micro_conds, previews } = *s;
    let n = grid[0] * grid[1];
    if start.tokens.len() != n || start.first_step >= steps {
        return Err(PipelineError::Request(format!("{} start tokens for a {grid:?} grid, from step {} of {steps}", start.tokens.len(), start.first_step)));
    }
    let mut sched = AmusedScheduler::new(m.mask_token_id, m.cosine, steps);
    // torch: mask.sum() / latents.numel(), a float32 division.
    sched.starting_mask_ratio = start.tokens.iter().filter(|&&t| t == m.mask_token_id).count() as f32 / n as f32;
    let cfg = guidance > 1.0;
    let (pooled, ehs, b) = match (&text.uncond, cfg) {
        (Some(u), true) => ([u.0.clone(), text.cond.0.clone()].concat(), [u.1.clone(), text.cond.1.clone()].concat(), 2),
        (None, true) => return Err(PipelineError::Request("guidance > 1 needs the negative prompt's encoding".into())),
        _ => (text.cond.0.clone(), text.cond.1.clone(), 1),
    };
    let mc: Vec<f32> = (0..b).flat_map(|_| micro_conds).collect();
    let mut tokens = start.tokens;
    for i in start.first_step..steps {
        let input: Vec<u32> = (0..b).flat_map(|_| tokens.iter().copied()).collect();
        let raw = m.logits([b, grid[0], grid[1]], &input, &ehs, &pooled, &mc).await?;
        let logits: Vec<f32> = if cfg { super::latents::cfg_combine(&raw, guidance) } else { raw.clone() };
        let sample_u = draws.take("sample_u", i, n)?;
        let gumbel_u = if i + 1 < steps { Some(draws.take("gumbel_u", i, n)?) } else { None };
        let out = sched.step(i, 1, &logits, &tokens, &StepDraws { sample_u: &sample_u, gumbel_u: gumbel_u.as_deref() });
        let preview = if previews { Some(m.decode([1, grid[0], grid[1]], &out.pred_original).await?) } else { None };
        if !on_step(StepTrace { step: i, logits: &raw, pred_original: &out.pred_original, prev_sample: &out.prev_sample, preview }) {
            return Err(PipelineError::Cancelled);
        }
        tokens = out.prev_sample;
    }
    Ok(tokens)
}
