//! Unconditional pixel-space diffusion, as diffusers' `DDPMPipeline` / `DDIMPipeline` run
//! it: x_T ~ N(0, 1) in image space, one `UNet2DModel` call per step, the scheduler on the
//! host, and the image is the last sample /2 + 0.5, clamped. There is no text, guidance
//! or VAE; the preview is the scheduler's current x0 prediction.

use std::collections::BTreeMap;

use serde_json::Value;

use super::generate::{check_finite, Output, Preview, Progress};
use super::image::Rgba;
use super::request::Request;
use super::PipelineError;
use crate::models::session::f32s;
use crate::models::unet::{unet, UNetConfig};
use crate::models::{Compiled, Session};
use crate::ops::cpu::HostTensor;
use crate::rng::Rng;
use crate::schedulers::{self, Scheduler};

/// A loaded DDPM model (UNet2DModel + scheduler config) on a backend.
pub struct Ddpm {
    pub session: Session,
    pub unet_cfg: UNetConfig,
    pub scheduler_config: Value,
    unet: Option<([usize; 4], Compiled)>,
}

impl Ddpm {
    /// Wraps a session holding `unet.*` weights with the model's configs.
    pub fn new(session: Session, configs: &BTreeMap<String, Value>) -> Result<Self, PipelineError> {
        let get = |name: &str| configs.get(name).ok_or_else(|| PipelineError::Model(format!("the model has no '{name}' config (is it a DDPM repository?)")));
        let unet_cfg = UNetConfig::from_json(get("unet")?)?;
        if !unet_cfg.unconditional {
            return Err(PipelineError::Model("a DDPM pipeline needs an unconditional UNet2DModel; this UNet attends to text".into()));
        }
        Ok(Self { session, unet_cfg, scheduler_config: get("scheduler")?.clone(), unet: None })
    }

    /// Image sides must be multiples of this (each down block halves them).
    pub fn size_multiple(&self) -> usize {
        1 << self.unet_cfg.downsamples()
    }

    /// The size the model was trained at (pixels).
    pub fn sample_size(&self) -> usize {
        self.unet_cfg.sample_size
    }

    /// Peak bytes of activations the compiled GPU graph holds.
    pub fn activation_bytes(&self) -> u64 {
        self.unet.as_ref().map_or(0, |(_, c)| c.activation_bytes())
    }

    /// One UNet call: `sample` [B, C, H, W] at timestep `t` -> the model output.
    pub async fn unet(&mut self, shape: [usize; 4], sample: Vec<f32>, t: f32) -> Result<Vec<f32>, PipelineError> {
        if self.unet.as_ref().is_none_or(|(s, _)| *s != shape) {
            let cfg = self.unet_cfg.clone();
            let c = self
                .session
                .compile(|g| {
                    let x = g.input("sample", &shape);
                    let t = g.input("timestep", &[shape[0]]);
                    let o = g.scoped("unet", |g| unet(g, &cfg, x, t, None))?;
                    g.output(o);
                    Ok(())
                })
                .await?;
            self.unet = Some((shape, c));
        }
        let (_, c) = self.unet.as_mut().expect("compiled above");
        self.session.set_input(c, "sample", HostTensor::F32(sample))?;
        self.session.set_input(c, "timestep", HostTensor::F32(vec![t; shape[0]]))?;
        let out = self.session.run(c).await?;
        Ok(f32s(out.into_iter().next().expect("one output")))
    }
}

/// Samples `req.batch` images. The prompt, guidance and init image do not apply (an
/// unconditional model has nothing to read them with); `init_latents` replaces x_T, and a
/// walk moves x_T toward another seed's.
pub async fn generate(m: &mut Ddpm, req: &Request, progress: &mut dyn FnMut(Progress) -> bool) -> Result<Output, PipelineError> {
    req.validate_for(m.size_multiple()).map_err(PipelineError::Request)?;
    let budget = super::limits::budget(&m.session);
    budget.check_with(req, &|w, h| super::limits::pixel_unet_activations(&m.unet_cfg, w, h, req.batch)).map_err(PipelineError::TooLarge)?;
    if req.morph.is_some() {
        return Err(PipelineError::Request("this unconditional model reads no prompt, so there is nothing to morph: walk between seeds instead".into()));
    }
    if req.init_image.is_some() {
        return Err(PipelineError::Request("this unconditional model generates from noise only: it takes no init image or mask".into()));
    }
    let c = m.unet_cfg.in_channels;
    if c != 3 || m.unet_cfg.out_channels != 3 {
        return Err(PipelineError::Model(format!("this UNet makes {c}-channel images; Easel draws RGB (3 channels) only")));
    }
    let (b, h, w) = (req.batch, req.height, req.width);
    let mut rng = Rng::new(req.seed);
    let config = req.scheduler_config.as_ref().unwrap_or(&m.scheduler_config);
    let mut sched: Box<dyn Scheduler> = schedulers::create(config, req.scheduler.as_deref(), req.steps)?;
    let noise = super::latents::starting_noise(req, &mut rng, &[b, c, h, w])?;
    let mut rng = super::latents::after_start(req, rng, noise.len());
    if !progress(Progress::Text { truncated: false }) {
        return Err(PipelineError::Cancelled);
    }
    let mut sample: Vec<f32> = noise.iter().map(|v| v * sched.init_noise_sigma()).collect();
    let total = sched.timesteps().len();
    for i in 0..total {
        let t = sched.timesteps()[i];
        let input = sched.scale_model_input(&sample, i);
        let out = m.unet([b, c, h, w], input, t).await?;
        sample = sched.step(&out, i, &sample, &mut rng);
        let preview = if req.previews {
            let x0 = sched.predicted_original().unwrap_or(&sample);
            Some(Preview { image: Rgba::from_nchw(&x0[..c * h * w], w, h), kind: "x0" })
        } else {
            None
        };
        if !progress(Progress::Step { step: i + 1, total, preview }) {
            return Err(PipelineError::Cancelled);
        }
        crate::platform::yield_now().await;
    }
    check_finite(&sample, "the final sample")?;
    let images = sample.chunks(c * h * w).map(|x| Rgba::from_nchw(x, w, h)).collect();
    Ok(Output { images, latents: sample.clone(), prompt_embeds: vec![], negative_prompt_embeds: vec![], decoded: sample, prompt_truncated: false, scheduler: sched.name() })
}
