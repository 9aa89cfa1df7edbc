//! A class-conditional GAN generator (`models::dcgan`): the prompt picks a class and style
//! by name (`text::labels`), the seed draws z, and one generator call makes the image.
//! There are no steps, no guidance and no init image; a walk moves z toward another seed's
//! along the sphere (the page's latent walk).

use std::collections::BTreeMap;

use serde_json::Value;

use super::family::Suggested;
use super::generate::{check_finite, Output, Progress};
use super::image::Rgba;
use super::request::Request;
use super::PipelineError;
use crate::models::dcgan::{generator, Condition, DcganConfig};
use crate::models::session::f32s;
use crate::models::{Compiled, Session};
use crate::ops::cpu::HostTensor;
use crate::ops::WeightShapes;
use crate::rng::Rng;
use crate::text::labels::{match_prompt, LabelMatch};

/// A loaded generator on a backend (weights under `generator.`, as `easel convert` names a
/// DCGAN folder's component).
pub struct Dcgan {
    pub session: Session,
    pub cfg: DcganConfig,
    pub suggested: Suggested,
    compiled: Option<(usize, Compiled)>,
}

impl Dcgan {
    pub fn new(session: Session, configs: &BTreeMap<String, Value>) -> Result<Self, PipelineError> {
        let config = configs.get("generator").ok_or_else(|| PipelineError::Model("the model has no 'generator' config (is it a DCGAN folder?)".into()))?;
        let cfg = DcganConfig::from_json(config)?;
        if !cfg.classes.is_empty() && !session.shapes.contains("generator.class_embedding.weight") {
            return Err(PipelineError::Model(format!("config.json lists {} classes but the weights have no class_embedding.weight", cfg.classes.len())));
        }
        if let Some(shape) = session.shapes.weight_shape("generator.class_embedding.weight") {
            if shape[0] != cfg.classes.len() {
                return Err(PipelineError::Model(format!("class_embedding.weight has shape {shape:?} but config.json lists {} classes", cfg.classes.len())));
            }
        }
        if let Some(shape) = session.shapes.weight_shape("generator.style_embedding.weight") {
            if shape[0] != cfg.styles.len() {
                return Err(PipelineError::Model(format!("style_embedding.weight has shape {shape:?} but config.json lists {} styles", cfg.styles.len())));
            }
        }
        let suggested = Suggested::from_value(config.get("_easel_defaults"), "config.json")?;
        Ok(Self { session, cfg, suggested, compiled: None })
    }

    /// Whether prompts choose what is drawn.
    pub fn conditional(&self) -> bool {
        !self.cfg.classes.is_empty()
    }

    fn has_styles(&self) -> bool {
        self.session.shapes.contains("generator.style_embedding.weight")
    }

    /// The class and style `prompt` asks for (None for an unconditional generator).
    pub fn label(&self, prompt: &str) -> Result<Option<LabelMatch>, PipelineError> {
        if !self.conditional() {
            return Ok(None);
        }
        match_prompt(prompt, &self.cfg.classes, &self.cfg.styles).map(Some).map_err(PipelineError::Request)
    }

    pub fn activation_bytes(&self) -> u64 {
        self.compiled.as_ref().map_or(0, |(_, c)| c.activation_bytes())
    }

    /// One generator call for `z` [B, z_dim]: the images [B, 3, S, S] in [-1, 1]. `label`
    /// is the class asked for; `morph` the class to move toward and how far (0..=1).
    pub async fn run(&mut self, z: Vec<f32>, label: Option<LabelMatch>, morph: Option<(LabelMatch, f32)>, batch: usize) -> Result<Vec<f32>, PipelineError> {
        let (conditional, styles) = (label.is_some(), self.has_styles());
        if self.compiled.as_ref().is_none_or(|(b, _)| *b != batch) {
            let cfg = self.cfg.clone();
            let c = self
                .session
                .compile(|g| {
                    let z = g.input("z", &[batch, cfg.z_dim]);
                    let cond = conditional.then(|| Condition {
                        class: [g.input_u32("class", &[batch]), g.input_u32("class_to", &[batch])],
                        style: styles.then(|| [g.input_u32("style", &[batch]), g.input_u32("style_to", &[batch])]),
                        keep: g.input("keep", &[batch, 1]),
                        t: g.input("t", &[batch, 1]),
                    });
                    let image = g.scoped("generator", |g| generator(g, &cfg, z, cond))?;
                    g.output(image);
                    Ok(())
                })
                .await?;
            self.compiled = Some((batch, c));
        }
        let (_, c) = self.compiled.as_mut().expect("compiled above");
        self.session.set_input(c, "z", HostTensor::F32(z))?;
        if let Some(m) = label {
            let (to, t) = morph.unwrap_or((m.clone(), 0.0));
            let ids = |v: usize| HostTensor::U32(vec![v as u32; batch]);
            self.session.set_input(c, "class", ids(m.class))?;
            self.session.set_input(c, "class_to", ids(to.class))?;
            if styles {
                self.session.set_input(c, "style", ids(m.style))?;
                self.session.set_input(c, "style_to", ids(to.style))?;
            }
            self.session.set_input(c, "keep", HostTensor::F32(vec![1.0 - t; batch]))?;
            self.session.set_input(c, "t", HostTensor::F32(vec![t; batch]))?;
        }
        let out = self.session.run(c).await?;
        Ok(f32s(out.into_iter().next().expect("one output")))
    }
}

/// Draws `req.batch` images of the prompt's class.
pub async fn generate(m: &mut Dcgan, req: &Request, progress: &mut dyn FnMut(Progress) -> bool) -> Result<Output, PipelineError> {
    let s = m.cfg.image_size;
    req.validate_for(s).map_err(PipelineError::Request)?;
    if req.width != s || req.height != s {
        return Err(PipelineError::Request(format!("this generator draws {s}x{s} images only (asked for {}x{})", req.width, req.height)));
    }
    if req.init_image.is_some() {
        return Err(PipelineError::Request("a GAN generator draws from its latent z only: it takes no init image or mask".into()));
    }
    let label = m.label(&req.prompt)?;
    // A morph moves the class (and style) embedding toward to_prompt's class.
    let morph = match (&req.morph, &label) {
        (Some(mo), Some(_)) => m.label(&mo.to_prompt)?.map(|to| (to, mo.t)),
        (Some(_), None) => return Err(PipelineError::Request("this generator has no classes, so there is no prompt to morph: walk between seeds instead".into())),
        _ => None,
    };
    if !progress(Progress::Text { truncated: false }) {
        return Err(PipelineError::Cancelled);
    }
    let mut rng = Rng::new(req.seed);
    let z = super::latents::starting_noise(req, &mut rng, &[req.batch, m.cfg.z_dim])?;
    let pixels = m.run(z.clone(), label, morph, req.batch).await?;
    check_finite(&pixels, "the generated image")?;
    if !progress(Progress::Step { step: 1, total: 1, preview: None }) {
        return Err(PipelineError::Cancelled);
    }
    let images = pixels.chunks(3 * s * s).map(|x| Rgba::from_nchw(x, s, s)).collect();
    Ok(Output { images, latents: z, prompt_embeds: vec![], negative_prompt_embeds: vec![], decoded: pixels, prompt_truncated: false, scheduler: "gan" })
}
