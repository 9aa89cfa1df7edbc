//! A Stable Diffusion model (SD 1.x / 2.x / Turbo / SDXL) on a backend: tokenizer(s), text
//! encoder(s) (sd_text.rs), UNet, VAE and the optional TAESD preview decoder with their
//! configs, and the compiled graphs (built once per shape, replayed every step).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::sd_text::SecondEncoder;
use super::PipelineError;
use crate::models::clip::ClipTextConfig;
use crate::models::session::f32s;
use crate::models::taesd::{self, TaesdConfig};
use crate::models::unet::{unet_added, Added, UNetConfig};
use crate::models::vae::{decode_within, encode, VaeConfig};
use crate::models::{Compiled, Session};
use crate::ops::cpu::HostTensor;
use crate::text::{model_tokenizer, ClipTokenizer, MAX_TOKENS};

/// Weights from which a model runs lean (see `StableDiffusion::lean`).
const LEAN_WEIGHT_BYTES: u64 = 1_500_000_000;

/// The stages of a generation, each with its own compiled graph(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Text,
    Encode,
    Denoise,
    Decode,
}

/// SDXL's conditioning besides the text context, for one UNet call's batch.
pub struct AddedInputs {
    /// The second encoder's pooled embeddings [B, P].
    pub text_embeds: Vec<f32>,
    /// (original h, w, crop top, left, target h, w) per sample [B, 6].
    pub time_ids: Vec<f32>,
}
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
    /// SDXL's second text encoder.
    pub text2: Option<SecondEncoder>,
    /// SDXL: an empty negative prompt is zero embeddings, not the encoded "" (model_index.json).
    pub force_zeros_for_empty_prompt: bool,
    pub(super) text_nested: bool,
    pub(super) text: Option<(usize, Compiled)>,
    /// The most activation bytes held at once (lean mode drops graphs between stages).
    peak_activations: u64,
    unet: Option<([usize; 4], Compiled)>,
    /// Floating-point operations of the last UNet graph compiled (one call, CFG batch
    /// included): what a step costs, against which the decode's cost is told.
    unet_flops: f64,
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
        let text2 = match configs.get("text_encoder_2") {
            Some(c) => Some(SecondEncoder {
                cfg: ClipTextConfig::from_json(c)?,
                tokenizer: model_tokenizer(files, "tokenizer_2").map_err(|e| PipelineError::Model(e.to_string()))?,
                nested: session.shapes.contains("text_encoder_2.text_model.embeddings.token_embedding.weight"),
            }),
            None => None,
        };
        let index = configs.get("model_index");
        let force_zeros_for_empty_prompt = text2.is_some() && index.and_then(|i| i.get("force_zeros_for_empty_prompt")).and_then(|v| v.as_bool()).unwrap_or(true);
        let sd = Self {
            session,
            text_cfg,
            unet_cfg,
            vae_cfg,
            taesd_cfg,
            scheduler_config,
            tokenizer,
            suggested,
            text2,
            force_zeros_for_empty_prompt,
            text_nested,
            text: None,
            peak_activations: 0,
            unet_flops: 0.0,
            unet: None,
            decoder: None,
            encoder: None,
            preview: None,
        };
        sd.check_conditioning()?;
        Ok(sd)
    }

    /// The UNet must read what the text side makes: the context width, and SDXL's pooled
    /// embedding and time ids exactly when there is a second encoder.
    fn check_conditioning(&self) -> Result<(), PipelineError> {
        let (ctx, want) = (self.context_dim(), self.unet_cfg.cross_attention_dim);
        if ctx != want {
            return Err(PipelineError::Model(format!("the text encoders give {ctx}-wide embeddings, the UNet's cross_attention_dim is {want}")));
        }
        match (self.unet_cfg.text_time, self.text2.is_some()) {
            (Some(tt), true) if self.pooled_dim() + 6 * tt.time_dim != tt.input_dim => Err(PipelineError::Model(format!(
                "text_encoder_2's projection ({}) and 6 time ids of {} do not make the UNet's projection_class_embeddings_input_dim {}",
                self.pooled_dim(),
                tt.time_dim,
                tt.input_dim
            ))),
            (Some(_), false) => Err(PipelineError::Model("the UNet is SDXL's (text_time conditioning) but the model has no text_encoder_2".into())),
            (None, true) => Err(PipelineError::Model("the model has a text_encoder_2 but its UNet has no text_time conditioning".into())),
            _ => Ok(()),
        }
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

    /// Peak bytes of activations the compiled GPU graphs held at once.
    pub fn activation_bytes(&self) -> u64 {
        self.peak_activations.max(self.held_activation_bytes())
    }

    fn held_activation_bytes(&self) -> u64 {
        self.activation_breakdown().iter().map(|(_, b)| b).sum()
    }

    /// Records the activations held now if they are the most so far.
    pub(super) fn note_peak(&mut self) {
        self.peak_activations = self.peak_activations.max(self.held_activation_bytes());
    }

    /// Large models (weights of 1.5 GB or more: SDXL is about 2.1 GB at q4_0) hold one
    /// stage's activations at a time: each stage's graph is dropped when the stage ends, so
    /// the peak is the weights plus the largest stage instead of the sum of all stages, at
    /// the cost of planning the graphs again next generation (shaders stay cached).
    pub fn lean(&self) -> bool {
        self.session.weight_bytes() >= LEAN_WEIGHT_BYTES
    }

    /// Ends a stage in lean mode: frees its graph's activations.
    pub(super) fn end_stage(&mut self, stage: Stage) {
        if !self.lean() {
            return;
        }
        match stage {
            Stage::Text => self.text = None,
            Stage::Encode => self.encoder = None,
            Stage::Denoise => (self.unet, self.preview) = (None, None),
            Stage::Decode => self.decoder = None,
        }
    }

    /// Bytes of activations each compiled GPU graph holds, by stage.
    pub fn activation_breakdown(&self) -> Vec<(&'static str, u64)> {
        let graphs = [("unet", &self.unet), ("vae decoder", &self.decoder), ("vae encoder", &self.encoder), ("preview", &self.preview)];
        let mut out = vec![("text", self.text.as_ref().map_or(0, |t| t.1.activation_bytes()))];
        out.extend(graphs.iter().map(|(name, g)| (*name, g.as_ref().map_or(0, |(_, c)| c.activation_bytes()))));
        out
    }

    /// Compiles the UNet for `shape` unless compiled for it already; true when it compiled.
    async fn unet_graph(&mut self, shape: [usize; 4]) -> Result<bool, PipelineError> {
        if self.unet.as_ref().is_some_and(|(s, _)| *s == shape) {
            return Ok(false);
        }
        let cfg = self.unet_cfg.clone();
        let (ctx_dim, pooled_dim) = (self.context_dim(), self.pooled_dim());
        let c = self
            .session
            .compile(|g| {
                let x = g.input("sample", &shape);
                let t = g.input("timestep", &[shape[0]]);
                let e = g.input("encoder_hidden_states", &[shape[0], MAX_TOKENS, ctx_dim]);
                let added = cfg.text_time.map(|_| Added { text_embeds: g.input("text_embeds", &[shape[0], pooled_dim]), time_ids: g.input("time_ids", &[shape[0], 6]) });
                let o = g.scoped("unet", |g| unet_added(g, &cfg, x, t, Some(e), added))?;
                g.output(o);
                Ok(())
            })
            .await?;
        self.unet_flops = self.session.work(&c);
        self.unet = Some((shape, c));
        self.note_peak();
        Ok(true)
    }

    /// Compiles the VAE decoder for latents of `shape` unless compiled for it already.
    async fn decoder_graph(&mut self, shape: [usize; 4]) -> Result<(), PipelineError> {
        if self.decoder.as_ref().is_some_and(|(s, _)| *s == shape) {
            return Ok(());
        }
        let cfg = self.vae_cfg.clone();
        // Maps over one buffer's limit are decoded in bands of rows.
        let max_tensor = super::limits::budget(&self.session).max_tensor;
        let c = self.session.compile(|g| {
            let z = g.input("z", &shape);
            let o = g.scoped("vae", |g| decode_within(g, &cfg, z, max_tensor))?;
            g.output(o);
            Ok(())
        });
        self.decoder = Some((shape, c.await?));
        self.note_peak();
        Ok(())
    }

    /// Plans a text-to-image generation without running it: compiles its stages in order
    /// (text for `prompts` rows, the UNet for `unet` [B, C, h, w], the decoder for `latents`)
    /// and ends each as a generation does. Returns each stage's activation bytes; the peak
    /// is then `activation_bytes()`, what a run of that size holds at most, since compiled
    /// graphs allocate nothing while they run.
    pub async fn plan(&mut self, prompts: usize, unet: [usize; 4], latents: [usize; 4]) -> Result<Vec<(&'static str, u64)>, PipelineError> {
        fn bytes<K>(graph: &Option<(K, Compiled)>) -> u64 {
            graph.as_ref().map_or(0, |(_, c)| c.activation_bytes())
        }
        self.text_graph(prompts).await?;
        let text = bytes(&self.text);
        self.end_stage(Stage::Text);
        self.unet_graph(unet).await?;
        let denoise = bytes(&self.unet);
        self.end_stage(Stage::Denoise);
        self.decoder_graph(latents).await?;
        let decode = bytes(&self.decoder);
        self.end_stage(Stage::Decode);
        Ok(vec![("text", text), ("unet", denoise), ("vae decoder", decode)])
    }

    /// One UNet call: `sample` [B, C, h, w], one timestep per sample, `context` [B, 77, D]
    /// and SDXL's `added` inputs. Context and added inputs stay on the device between calls
    /// given None (the same generation).
    pub async fn unet(&mut self, shape: [usize; 4], sample: Vec<f32>, t: f32, context: Option<Vec<f32>>, added: Option<AddedInputs>) -> Result<Vec<f32>, PipelineError> {
        if self.unet_graph(shape).await? && context.is_none() {
            return Err(PipelineError::Model("the UNet was recompiled without its text context".into()));
        }
        let (_, c) = self.unet.as_mut().expect("compiled above");
        if let Some(ctx) = context {
            self.session.set_input(c, "encoder_hidden_states", HostTensor::F32(ctx))?;
        }
        if let Some(a) = added {
            self.session.set_input(c, "text_embeds", HostTensor::F32(a.text_embeds))?;
            self.session.set_input(c, "time_ids", HostTensor::F32(a.time_ids))?;
        }
        self.session.set_input(c, "sample", HostTensor::F32(sample))?;
        self.session.set_input(c, "timestep", HostTensor::F32(vec![t; shape[0]]))?;
        let out = self.session.run(c).await?;
        Ok(f32s(out.into_iter().next().expect("one output")))
    }

    /// `vae.decode(latents / scaling_factor)` -> [B, 3, H, W] in about [-1, 1].
    /// The decode of latents of `shape` in UNet steps of work (its floating-point operations
    /// over the last UNet call's, as `Session::work` counts them), compiling the decoder: SD's decoder at 512x512 is about
    /// 3.1 steps of SD-Turbo's UNet. None before any UNet call.
    pub async fn decode_work(&mut self, shape: [usize; 4]) -> Result<Option<f64>, PipelineError> {
        self.decoder_graph(shape).await?;
        let (_, c) = self.decoder.as_ref().expect("compiled above");
        Ok((self.unet_flops > 0.0).then(|| self.session.work(c) / self.unet_flops))
    }

    pub async fn decode(&mut self, shape: [usize; 4], latents: &[f32]) -> Result<Vec<f32>, PipelineError> {
        let cfg = self.vae_cfg.clone();
        self.decoder_graph(shape).await?;
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
            self.note_peak();
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
            self.note_peak();
        }
        let (_, c) = self.encoder.as_mut().expect("compiled above");
        self.session.set_input(c, "image", HostTensor::F32(image))?;
        let moments = f32s(self.session.run(c).await?.into_iter().next().expect("one output"));
        let (lc, hw) = (cfg.latent_channels, shape[2] * shape[3] / (cfg.downscale() * cfg.downscale()));
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for b in moments.chunks(2 * lc * hw) {
            mean.extend_from_slice(&b[..lc * hw]);
            std.extend(b[lc * hw..].iter().map(|lv| libm::expf(0.5 * lv.clamp(-30.0, 20.0))));
        }
        Ok((mean, std))
    }
}
