//! One engine, many model families: the manifest's family picks the pipeline, and the CLI,
//! the wasm API and the page see one interface (load, defaults, generate with progress and
//! cancel, the same `Output` and PNG metadata).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::amused_pipeline::{self, AmusedPipeline};
use super::dcgan::{self, Dcgan};
use super::ddpm::{self, Ddpm};
use super::generate::{Output, Progress};
use super::request::Request;
use super::sd::StableDiffusion;
use super::vqgan::{self, VqGan};
use super::PipelineError;
use crate::models::Session;

/// A loaded model of any family that makes images.
#[allow(clippy::large_enum_variant)] // one per engine
pub enum Generator {
    StableDiffusion(StableDiffusion),
    Ddpm(Ddpm),
    /// A VQ autoencoder (taming VQGAN, diffusers VQModel): round trips, and random codes.
    Vq(VqGan),
    /// aMUSEd: text -> token grid (MaskGIT) -> VQ decoder.
    Amused(AmusedPipeline),
    /// A class-conditional GAN generator: one call from z.
    Dcgan(Dcgan),
}

/// What the page and the CLI start from for a model, and which controls apply to it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Defaults {
    pub family: &'static str,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance: f32,
    /// The scheduler class of the model's own config ("" for a VQ model).
    pub scheduler: String,
    /// Image sides must be multiples of this.
    pub size_multiple: usize,
    /// Reads a prompt (and negative prompt, guidance).
    pub conditional: bool,
    /// Takes an init image and mask (img2img, inpainting).
    pub init_image: bool,
    /// What the per-step preview shows: "latents", "x0" or "" (none).
    pub preview: &'static str,
    /// A VQ model: encode / decode round trips (the page's code-grid panel).
    pub roundtrip: bool,
    /// Codebook size (VQ models; 0 otherwise).
    pub codes: usize,
    /// A prompt the model knows ("" when it suggests none): the page's first prompt.
    pub prompt: String,
    /// Starts from a seeded noise that a latent walk can move between two seeds.
    pub walk: bool,
    /// Reads a prompt whose conditioning a morph can move toward another prompt's.
    pub morph: bool,
    /// The prompt picks one of a fixed set of classes by name (no text encoder).
    pub classes: bool,
}

/// Settings a model's maker suggests, from `_easel_defaults` in model_index.json (a private
/// key: diffusers ignores names that start with "_"): `{"steps": 20, "guidance": 4.0,
/// "prompt": "red heart, twemoji style"}`, each optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suggested {
    pub steps: Option<usize>,
    pub guidance: Option<f32>,
    pub prompt: Option<String>,
}

impl Suggested {
    pub fn from_configs(configs: &BTreeMap<String, Value>) -> Result<Self, PipelineError> {
        Self::from_value(configs.get("model_index").and_then(|m| m.get("_easel_defaults")), "model_index.json")
    }

    /// `_easel_defaults` of a config file (`file` names it in errors).
    pub fn from_value(defaults: Option<&Value>, file: &str) -> Result<Self, PipelineError> {
        let Some(d) = defaults else { return Ok(Self::default()) };
        let bad = |key: &str| PipelineError::Model(format!("{file}: _easel_defaults.{key} is not valid"));
        let steps = d.get("steps").map(|v| v.as_u64().filter(|&s| (1..=1000).contains(&s)).map(|s| s as usize).ok_or_else(|| bad("steps"))).transpose()?;
        let guidance = d.get("guidance").map(|v| v.as_f64().filter(|g| (0.0..=30.0).contains(g)).map(|g| g as f32).ok_or_else(|| bad("guidance"))).transpose()?;
        let prompt = d.get("prompt").map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("prompt"))).transpose()?;
        Ok(Self { steps, guidance, prompt })
    }
}

impl Generator {
    /// The pipeline for `family` (the manifest's) over `session`'s weights.
    pub fn new(family: &str, session: Session, configs: &BTreeMap<String, Value>, files: &HashMap<String, Vec<u8>>) -> Result<Self, PipelineError> {
        match family {
            "stable-diffusion" | "stable-diffusion-xl" => Ok(Self::StableDiffusion(StableDiffusion::new(session, configs, files)?)),
            "ddpm" => Ok(Self::Ddpm(Ddpm::new(session, configs)?)),
            "amused" => Ok(Self::Amused(AmusedPipeline::new(session, configs, files)?)),
            "dcgan" => Ok(Self::Dcgan(Dcgan::new(session, configs)?)),
            // The weights must be under diffusers' names already: the browser renames a
            // taming manifest before streaming (`taming::rename_manifest`), natively
            // `vqgan::prepare` renames the store.
            "vqgan-taming" | "vqmodel" => {
                let cfg = vqgan::config(family, configs, &session.shapes)?;
                let v = VqGan::new(session, cfg);
                v.check_codebook()?;
                Ok(Self::Vq(v))
            }
            other => Err(PipelineError::Model(format!("'{other}' models do not generate images here yet (Stable Diffusion 1.x/2.x/XL, aMUSEd, DDPM, DCGAN and VQ models do)"))),
        }
    }

    pub fn defaults(&self) -> Defaults {
        let class = |c: &Value| c.get("_class_name").and_then(|v| v.as_str()).unwrap_or("").to_string();
        match self {
            Self::StableDiffusion(sd) => {
                let size = sd.unet_cfg_sample_size() * sd.vae_cfg.downscale();
                Defaults {
                    family: if sd.text2.is_some() { "stable-diffusion-xl" } else { "stable-diffusion" },
                    width: size,
                    height: size,
                    steps: sd.suggested.steps.unwrap_or(25),
                    guidance: sd.suggested.guidance.unwrap_or(7.5),
                    scheduler: class(&sd.scheduler_config),
                    size_multiple: 8,
                    conditional: true,
                    init_image: true,
                    preview: "latents",
                    roundtrip: false,
                    codes: 0,
                    prompt: sd.suggested.prompt.clone().unwrap_or_default(),
                    walk: true,
                    morph: true,
                    classes: false,
                }
            }
            Self::Ddpm(m) => Defaults {
                family: "ddpm",
                width: m.sample_size(),
                height: m.sample_size(),
                steps: 50,
                guidance: 0.0,
                scheduler: class(&m.scheduler_config),
                size_multiple: m.size_multiple(),
                conditional: false,
                init_image: false,
                preview: "x0",
                roundtrip: false,
                codes: 0,
                prompt: String::new(),
                walk: true,
                morph: false,
                classes: false,
            },
            Self::Amused(p) => Defaults {
                family: "amused",
                width: p.default_size(),
                height: p.default_size(),
                steps: p.suggested.steps.unwrap_or(12),
                guidance: p.suggested.guidance.unwrap_or(10.0),
                scheduler: "AmusedScheduler".into(),
                size_multiple: p.size_multiple(),
                conditional: true,
                init_image: true,
                preview: "tokens",
                roundtrip: false,
                codes: 0,
                prompt: p.suggested.prompt.clone().unwrap_or_default(),
                walk: false,
                morph: true,
                classes: false,
            },
            Self::Dcgan(m) => Defaults {
                family: "dcgan",
                width: m.cfg.image_size,
                height: m.cfg.image_size,
                steps: 1,
                guidance: 0.0,
                scheduler: String::new(),
                size_multiple: m.cfg.image_size,
                conditional: m.conditional(),
                init_image: false,
                preview: "",
                roundtrip: false,
                codes: 0,
                prompt: m.suggested.prompt.clone().unwrap_or_default(),
                walk: true,
                morph: m.conditional(),
                classes: m.conditional(),
            },
            Self::Vq(v) => {
                let f = v.cfg.downscale();
                Defaults {
                    family: "vqgan",
                    width: 16 * f,
                    height: 16 * f,
                    steps: 1,
                    guidance: 0.0,
                    scheduler: String::new(),
                    size_multiple: f,
                    conditional: false,
                    init_image: false,
                    preview: "",
                    roundtrip: true,
                    codes: v.cfg.num_embeddings,
                    prompt: String::new(),
                    walk: false,
                    morph: false,
                    classes: false,
                }
            }
        }
    }

    /// Runs one generation; `progress` returns false to cancel between steps.
    pub async fn generate(&mut self, req: &Request, progress: &mut dyn FnMut(Progress) -> bool) -> Result<Output, PipelineError> {
        match self {
            Self::StableDiffusion(sd) => super::generate(sd, req, progress).await,
            Self::Ddpm(m) => ddpm::generate(m, req, progress).await,
            Self::Vq(v) => vqgan::random_codes(v, req, progress).await,
            Self::Amused(p) => amused_pipeline::generate(p, req, progress).await,
            Self::Dcgan(m) => dcgan::generate(m, req, progress).await,
        }
    }

    /// What a class-conditional model will draw for `prompt` ("draws: red heart ❤️ (twemoji)");
    /// None for models that read prompts with a text encoder.
    pub fn prompt_note(&self, prompt: &str) -> Option<String> {
        let Self::Dcgan(m) = self else { return None };
        match m.label(prompt) {
            Ok(Some(l)) => {
                let c = &m.cfg.classes[l.class];
                let style = m.cfg.styles.get(l.style).map(|s| format!(" ({s})")).unwrap_or_default();
                Some(format!("draws: {} {}{style}", c.names[0], c.emoji).replace("  ", " "))
            }
            // The generation itself reports a prompt that names no class.
            Ok(None) | Err(_) => None,
        }
    }

    /// The shape of `Output::latents` for `req`: SD's latents, DDPM's pixels.
    pub fn latent_shape(&self, req: &Request) -> [usize; 4] {
        match self {
            Self::StableDiffusion(sd) => {
                let f = sd.vae_cfg.downscale();
                [req.batch, sd.vae_cfg.latent_channels, req.height / f, req.width / f]
            }
            Self::Ddpm(m) => [req.batch, m.unet_cfg.in_channels, req.height, req.width],
            Self::Vq(v) => [req.batch, 1, req.height / v.cfg.downscale(), req.width / v.cfg.downscale()],
            Self::Amused(p) => [1, 1, req.height / p.size_multiple(), req.width / p.size_multiple()],
            Self::Dcgan(m) => [req.batch, m.cfg.z_dim, 1, 1],
        }
    }

    pub fn session(&self) -> &Session {
        match self {
            Self::StableDiffusion(sd) => &sd.session,
            Self::Ddpm(m) => &m.session,
            Self::Vq(v) => &v.session,
            Self::Amused(p) => &p.model.session,
            Self::Dcgan(m) => &m.session,
        }
    }

    /// Peak bytes of activations the compiled GPU graphs hold.
    pub fn activation_bytes(&self) -> u64 {
        match self {
            Self::StableDiffusion(sd) => sd.activation_bytes(),
            Self::Ddpm(m) => m.activation_bytes(),
            Self::Vq(v) => v.activation_bytes(),
            Self::Amused(p) => p.model.activation_bytes(),
            Self::Dcgan(m) => m.activation_bytes(),
        }
    }
}

#[cfg(test)]
mod suggested_tests {
    use super::*;

    fn configs(defaults: Value) -> BTreeMap<String, Value> {
        BTreeMap::from([("model_index".to_string(), serde_json::json!({ "_class_name": "StableDiffusionPipeline", "_easel_defaults": defaults }))])
    }

    #[test]
    fn a_model_index_suggests_steps_guidance_and_a_prompt() {
        let s = Suggested::from_configs(&configs(serde_json::json!({ "steps": 20, "guidance": 4.0, "prompt": "red heart, twemoji style" }))).unwrap();
        assert_eq!(s, Suggested { steps: Some(20), guidance: Some(4.0), prompt: Some("red heart, twemoji style".into()) });
        assert_eq!(Suggested::from_configs(&BTreeMap::new()).unwrap(), Suggested::default());
        let err = Suggested::from_configs(&configs(serde_json::json!({ "steps": 0 }))).unwrap_err().to_string();
        assert!(err.ends_with("model_index.json: _easel_defaults.steps is not valid"), "{err}");
    }
}
