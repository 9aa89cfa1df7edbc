//! A Stable Diffusion model on a backend: tokenizer, text encoder, UNet, VAE and the optional
//! TAESD preview decoder with their configs, and the compiled graphs (built once per shape,
//! replayed every step).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::PipelineError;
use crate::models::clip::{text_model, ClipTextConfig};
use crate::models::session::f32s;
use crate::models::taesd::{self, TaesdConfig};
use crate::models::unet::{unet, UNetConfig};
use crate::models::vae::{decode_within, encode, VaeConfig};
use crate::models::{Compiled, Session};
use crate::ops::cpu::HostTensor;
use crate::text::{model_tokenizer, ClipTokenizer, MAX_TOKENS};
use crate::weights::rules::TAESD;

/// A loaded SD 1.x / 2.x / Turbo model.
pub struct StableDiffusion {
    pub session: Session,
    pub text_cfg: ClipTextConfig,
    pub unet_cfg: UNetConfig,
    pub vae_cfg: VaeConfig,
    /// The preview decoder's config, when the model carries one (`taesd.*` weights).
    pub taesd_cfg: Option<TaesdConfig>,
    pub scheduler_config: Value,
    pub tokenizer: ClipTokenizer,
    /// What the model's maker suggests (model_index.json's `_easel_defaults`).
    pub suggested: super::family::Suggested,
    text_nested: bool,
    text: Option<(usize, Compiled)>,
    unet: Option<([usize; 4], Compiled)>,
    decoder: Option<([usize; 4], Compiled)>,
    encoder: Option<([usize; 4], Compiled)>,
    preview: Option<([usize; 4], Compiled)>,
}

fn config<'a>(configs: &'a BTreeMap<String, Value>, name: &str) -> Result<&'a Value, PipelineError> {
    configs.get(name).ok_or_else(|| PipelineError::Model(format!("the model has no '{name}' config (is it a Stable Diffusion repository?)")))
}

impl StableDiffusion {
    /// Wraps a session holding `text_encoder.*`, `unet.*` and `vae.*` weights, with the
    /// model's configs and its tokenizer files.
    pub fn new(session: Session, configs: &BTreeMap<String, Value>, files: &HashMap<String, Vec<u8>>) -> Result<Self, PipelineError> {
        let text_cfg = ClipTextConfig::from_json(config(configs, "text_encoder")?)?;
        let unet_cfg = UNetConfig::from_json(config(configs, "unet")?)?;
        let vae_cfg = VaeConfig::from_json(config(configs, "vae")?)?;
        let scheduler_config = config(configs, "scheduler")?.clone();
        let tokenizer = model_tokenizer(files, "tokenizer").map_err(|e| PipelineError::Model(e.to_string()))?;
        let text_nested = session.shapes.contains("text_encoder.text_model.embeddings.token_embedding.weight");
        let taesd_cfg = match configs.get(TAESD) {
            Some(c) if session.shapes.contains("taesd.decoder.layers.0.weight") => Some(Self::taesd_config(c, &vae_cfg)?),
            _ => None,
        };
        let suggested = super::family::Suggested::from_configs(configs)?;
        Ok(Self {
            session,
            text_cfg,
            unet_cfg,
            vae_cfg,
            taesd_cfg,
            scheduler_config,
            tokenizer,
            suggested,
            text_nested,
            text: None,
            unet: None,
            decoder: None,
            encoder: None,
            preview: None,
        })
    }

    /// A TAESD must read the VAE's latents and make images of the same size.
    fn taesd_config(config: &Value, vae: &VaeConfig) -> Result<TaesdConfig, PipelineError> {
        let t = TaesdConfig::from_json(config)?;
        if t.latent_channels != vae.latent_channels || t.upscale() != vae.downscale() {
            let message = format!("its TAESD decodes {} channels {}x, the VAE {} channels {}x", t.latent_channels, t.upscale(), vae.latent_channels, vae.downscale());
            return Err(PipelineError::Model(format!("the preview decoder does not fit this model: {message}")));
        }
        Ok(t)
    }

    /// The UNet's `sample_size` (latent pixels; the model's default image size / 8).
    pub fn unet_cfg_sample_size(&self) -> usize {
        self.unet_cfg.sample_size
    }

    /// Peak bytes of activations the compiled GPU graphs hold.
    pub fn activation_bytes(&self) -> u64 {
        let graphs = [&self.unet, &self.decoder, &self.encoder, &self.preview];
        let text = self.text.as_ref().map_or(0, |t| t.1.activation_bytes());
        text + graphs.iter().filter_map(|g| g.as_ref().map(|(_, c)| c.activation_bytes())).sum::<u64>()
    }

    /// Tokenizes and encodes `texts`: [n, 77, D] last hidden states, and whether any text
    /// was cut to 77 tokens.
    pub async fn encode_text(&mut self, texts: &[&str]) -> Result<(Vec<f32>, bool), PipelineError> {
        let mut ids = Vec::with_capacity(texts.len() * MAX_TOKENS);
        let mut truncated = false;
        for t in texts {
            let e = self.tokenizer.encode(t).map_err(|e| PipelineError::Model(e.to_string()))?;
            truncated |= e.truncated;
            ids.extend(e.ids);
        }
        let n = texts.len();
        if self.text.as_ref().is_none_or(|(b, _)| *b != n) {
            let (cfg, nested) = (self.text_cfg.clone(), self.text_nested);
            let c = self
                .session
                .compile(|g| {
                    let x = g.input_u32("input_ids", &[n, MAX_TOKENS]);
                    let o = g.scoped("text_encoder", |g| text_model(g, &cfg, x, nested))?;
                    g.output(o.last_hidden_state);
                    Ok(())
                })
                .await?;
            self.text = Some((n, c));
        }
        let (_, c) = self.text.as_mut().expect("compiled above");
        self.session.set_input(c, "input_ids", HostTensor::U32(ids))?;
        let out = self.session.run(c).await?;
        Ok((f32s(out.into_iter().next().expect("one output")), truncated))
    }

    /// One UNet call: `sample` [B, C, h, w], one timestep per sample, `context` [B, 77, D].
    /// The context stays on the device between calls with the same `context_changed = false`.
    pub async fn unet(&mut self, shape: [usize; 4], sample: Vec<f32>, t: f32, context: Option<Vec<f32>>) -> Result<Vec<f32>, PipelineError> {
        if self.unet.as_ref().is_none_or(|(s, _)| *s != shape) {
            let cfg = self.unet_cfg.clone();
            let ctx_dim = self.text_cfg.hidden_size;
            let c = self
                .session
                .compile(|g| {
                    let x = g.input("sample", &shape);
                    let t = g.input("timestep", &[shape[0]]);
                    let e = g.input("encoder_hidden_states", &[shape[0], MAX_TOKENS, ctx_dim]);
                    let o = g.scoped("unet", |g| unet(g, &cfg, x, t, Some(e)))?;
                    g.output(o);
                    Ok(())
                })
                .await?;
            self.unet = Some((shape, c));
            if context.is_none() {
                return Err(PipelineError::Model("the UNet was recompiled without its text context".into()));
            }
        }
        let (_, c) = self.unet.as_mut().expect("compiled above");
        if let Some(ctx) = context {
            self.session.set_input(c, "encoder_hidden_states", HostTensor::F32(ctx))?;
        }
        self.session.set_input(c, "sample", HostTensor::F32(sample))?;
        self.session.set_input(c, "timestep", HostTensor::F32(vec![t; shape[0]]))?;
        let out = self.session.run(c).await?;
        Ok(f32s(out.into_iter().next().expect("one output")))
    }

    /// `vae.decode(latents / scaling_factor)` -> [B, 3, H, W] in about [-1, 1].
    pub async fn decode(&mut self, shape: [usize; 4], latents: &[f32]) -> Result<Vec<f32>, PipelineError> {
        let cfg = self.vae_cfg.clone();
        if self.decoder.as_ref().is_none_or(|(s, _)| *s != shape) {
            // Maps over one buffer's limit are decoded in bands of rows.
            let max_tensor = super::limits::budget(&self.session).max_tensor;
            let c = self.session.compile(|g| {
                let z = g.input("z", &shape);
                let o = g.scoped("vae", |g| decode_within(g, &cfg, z, max_tensor))?;
                g.output(o);
                Ok(())
            });
            self.decoder = Some((shape, c.await?));
        }
        let z: Vec<f32> = latents.iter().map(|v| v / cfg.scaling_factor + cfg.shift_factor).collect();
        let (_, c) = self.decoder.as_mut().expect("compiled above");
        self.session.set_input(c, "z", HostTensor::F32(z))?;
        Ok(f32s(self.session.run(c).await?.into_iter().next().expect("one output")))
    }

    /// TAESD's `decode(latents / scaling_factor + shift_factor)` -> [B, 3, H, W] in about
    /// [-1, 1]; None when the model has no TAESD.
    pub async fn preview_decode(&mut self, shape: [usize; 4], latents: &[f32]) -> Result<Option<Vec<f32>>, PipelineError> {
        let Some(cfg) = self.taesd_cfg.clone() else { return Ok(None) };
        if self.preview.as_ref().is_none_or(|(s, _)| *s != shape) {
            let c = self.session.compile(|g| {
                let z = g.input("z", &shape);
                let o = g.scoped(TAESD, |g| taesd::decode(g, &cfg, z))?;
                g.output(o);
                Ok(())
            });
            self.preview = Some((shape, c.await?));
        }
        let z: Vec<f32> = latents.iter().map(|v| v / cfg.scaling_factor + cfg.shift_factor).collect();
        let (_, c) = self.preview.as_mut().expect("compiled above");
        self.session.set_input(c, "z", HostTensor::F32(z))?;
        Ok(Some(f32s(self.session.run(c).await?.into_iter().next().expect("one output"))))
    }

    /// The VAE encoder's posterior for `image` [B, 3, H, W] in [-1, 1]: (mean, std), with
    /// logvar clamped to [-30, 20] as diffusers does.
    pub async fn encode(&mut self, shape: [usize; 4], image: Vec<f32>) -> Result<(Vec<f32>, Vec<f32>), PipelineError> {
        let cfg = self.vae_cfg.clone();
        if self.encoder.as_ref().is_none_or(|(s, _)| *s != shape) {
            let c = self.session.compile(|g| {
                let x = g.input("image", &shape);
                let o = g.scoped("vae", |g| encode(g, &cfg, x))?;
                g.output(o);
                Ok(())
            });
            self.encoder = Some((shape, c.await?));
        }
        let (_, c) = self.encoder.as_mut().expect("compiled above");
        self.session.set_input(c, "image", HostTensor::F32(image))?;
        let moments = f32s(self.session.run(c).await?.into_iter().next().expect("one output"));
        let (lc, hw) = (cfg.latent_channels, shape[2] * shape[3] / (cfg.downscale() * cfg.downscale()));
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for b in moments.chunks(2 * lc * hw) {
            mean.extend_from_slice(&b[..lc * hw]);
            std.extend(b[lc * hw..].iter().map(|lv| (0.5 * lv.clamp(-30.0, 20.0)).exp()));
        }
        Ok((mean, std))
    }
}
