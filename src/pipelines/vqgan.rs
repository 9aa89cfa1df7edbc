//! A VQ autoencoder (taming VQGAN or diffusers VQModel) on a backend: image -> code indices
//! and z_q, indices -> image, latents -> image (quantizing first, as `VQModel.decode`).
//! Each graph is compiled once per shape.

use std::collections::BTreeMap;

use serde_json::Value;

use super::PipelineError;
use crate::models::session::f32s;
use crate::models::taming;
use crate::models::vqgan::{self, VqConfig, SCOPE};
use crate::models::{Compiled, Session};
use crate::ops::cpu::HostTensor;
use crate::ops::{WeightShapes, WeightStore};

/// A model's weights under diffusers' names (`vqvae.*`) and its config, from a loaded
/// model's family, configs and weights: `vqmodel` (or `amused`: its `vqvae` component) with
/// config.json, or `vqgan-taming` with its config.yaml text (`configs["taming"]["yaml"]`),
/// or none (the config then comes from the weights' shapes).
pub fn prepare(family: &str, configs: &BTreeMap<String, Value>, weights: WeightStore) -> Result<(VqConfig, WeightStore), PipelineError> {
    let weights = if family == "vqgan-taming" { taming::rename_store(weights)? } else { weights };
    let cfg = config(family, configs, &crate::models::session::ShapeMap::from_store(&weights))?;
    let name = format!("{SCOPE}.quantize.embedding.weight");
    let codebook = &weights.get(&name)?.shape;
    if codebook[..] != [cfg.num_embeddings, cfg.embed_dim] {
        let message = format!("the config says {} codes of {} values, but {name} is {codebook:?}", cfg.num_embeddings, cfg.embed_dim);
        return Err(PipelineError::Model(message));
    }
    Ok((cfg, weights))
}

/// The config of a VQ model whose weights are under diffusers' names (see `prepare`).
pub fn config(family: &str, configs: &BTreeMap<String, Value>, shapes: &dyn WeightShapes) -> Result<VqConfig, PipelineError> {
    Ok(match family {
        "vqmodel" | "amused" => VqConfig::from_json(configs.get(SCOPE).ok_or_else(|| PipelineError::Model(format!("the model has no '{SCOPE}' config")))?)?,
        "vqgan-taming" => match configs.get("taming").and_then(|t| t.get("yaml")).and_then(Value::as_str) {
            Some(yaml) => taming::config_from_yaml(yaml)?,
            None => VqConfig::infer(shapes)?,
        },
        other => return Err(PipelineError::Model(format!("'{other}' is not a VQ model (vqgan-taming, vqmodel or amused)"))),
    })
}

/// What encoding an image gives.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// [B, h, w]: the code grid.
    pub grid: [usize; 3],
    /// quant_conv(encoder(x)) before quantization, [B, D, h, w].
    pub latents: Vec<f32>,
    /// Nearest codebook index per position, [B, h, w] row-major.
    pub indices: Vec<u32>,
    /// The codebook rows of `indices`, [B, D, h, w].
    pub z_q: Vec<f32>,
}

/// A loaded VQ model.
pub struct VqGan {
    pub session: Session,
    pub cfg: VqConfig,
    encoder: Option<([usize; 4], Compiled)>,
    decoder: Option<([usize; 3], Compiled)>,
    latents_decoder: Option<([usize; 4], Compiled)>,
}

fn u32s(t: HostTensor) -> Vec<u32> {
    match t {
        HostTensor::U32(v) => v,
        HostTensor::F32(v) => v.into_iter().map(|x| x as u32).collect(),
    }
}

impl VqGan {
    /// Wraps a session holding `vqvae.*` weights (see `prepare`).
    pub fn new(session: Session, cfg: VqConfig) -> Self {
        Self { session, cfg, encoder: None, decoder: None, latents_decoder: None }
    }

    /// The code grid [B, h, w] of an image of `shape`; refuses what the encoder cannot take.
    pub fn grid(&self, shape: [usize; 4]) -> Result<[usize; 3], PipelineError> {
        let f = self.cfg.downscale();
        let channels = self.cfg.vae.in_channels;
        if shape[1] != channels {
            return Err(PipelineError::Request(format!("the image has {} channels, the model takes {channels}", shape[1])));
        }
        if shape[0] == 0 || shape[2] == 0 || shape[3] == 0 || !shape[2].is_multiple_of(f) || !shape[3].is_multiple_of(f) {
            return Err(PipelineError::Request(format!("the image is {}x{}; this model needs sides that are non-zero multiples of {f}", shape[3], shape[2])));
        }
        Ok([shape[0], shape[2] / f, shape[3] / f])
    }

    /// Encodes and quantizes `image` [B, C, H, W] with values in [-1, 1].
    pub async fn encode(&mut self, shape: [usize; 4], image: Vec<f32>) -> Result<Encoded, PipelineError> {
        let grid = self.grid(shape)?;
        if image.len() != shape.iter().product::<usize>() {
            return Err(PipelineError::Request(format!("{} image values for shape {shape:?}", image.len())));
        }
        if self.encoder.as_ref().is_none_or(|(s, _)| *s != shape) {
            let cfg = self.cfg.clone();
            let c = self.session.compile(|g| {
                let x = g.input("image", &shape);
                let h = vqgan::encode(g, &cfg, x)?;
                let (indices, z_q) = vqgan::quantize(g, &cfg, h)?;
                for t in [h, indices, z_q] {
                    g.output(t);
                }
                Ok(())
            });
            self.encoder = Some((shape, c.await?));
        }
        let (_, c) = self.encoder.as_mut().expect("compiled above");
        self.session.set_input(c, "image", HostTensor::F32(image))?;
        let mut out = self.session.run(c).await?.into_iter();
        let mut next = || out.next().expect("three outputs");
        let (latents, indices, z_q) = (f32s(next()), u32s(next()), f32s(next()));
        Ok(Encoded { grid, latents, indices, z_q })
    }

    /// Decodes code indices [B, h, w] -> image [B, C, h*f, w*f], not clamped.
    pub async fn decode(&mut self, grid: [usize; 3], indices: &[u32]) -> Result<Vec<f32>, PipelineError> {
        decode_codes(&mut self.session, &mut self.decoder, &self.cfg, grid, indices).await
    }

    /// Encodes an image with values in [0, 1] (a PNG's pixels, the page's canvas): the
    /// encoder takes [-1, 1]. The CLI and the page both come through here, so they give
    /// the same codes for the same pixels.
    pub async fn encode_image(&mut self, image: &super::FloatImage) -> Result<Encoded, PipelineError> {
        let x = image.values.iter().map(|v| v * 2.0 - 1.0).collect();
        self.encode(image.shape, x).await
    }

    /// diffusers' `VQModel.decode(latents)`: quantizes latents [B, D, h, w], then decodes.
    pub async fn decode_latents(&mut self, shape: [usize; 4], latents: Vec<f32>) -> Result<Vec<f32>, PipelineError> {
        if shape[1] != self.cfg.embed_dim || latents.len() != shape.iter().product::<usize>() {
            return Err(PipelineError::Request(format!("latents of shape {shape:?} ({} values); the codes are {} wide", latents.len(), self.cfg.embed_dim)));
        }
        if self.latents_decoder.as_ref().is_none_or(|(s, _)| *s != shape) {
            let cfg = self.cfg.clone();
            let c = self.session.compile(|g| {
                let h = g.input("latents", &shape);
                let (_, z_q) = vqgan::quantize(g, &cfg, h)?;
                let image = vqgan::decode(g, &cfg, z_q)?;
                g.output(image);
                Ok(())
            });
            self.latents_decoder = Some((shape, c.await?));
        }
        let (_, c) = self.latents_decoder.as_mut().expect("compiled above");
        self.session.set_input(c, "latents", HostTensor::F32(latents))?;
        Ok(f32s(self.session.run(c).await?.into_iter().next().expect("one output")))
    }
}

/// Decodes code indices [B, h, w] with `cfg`'s VQ decoder (under `vqvae.` in `session`),
/// compiled into `slot` once per grid: VQ models and aMUSEd share it. Indices outside the
/// codebook are refused with their position (the GPU would read zero rows).
pub async fn decode_codes(session: &mut Session, slot: &mut Option<([usize; 3], Compiled)>, cfg: &VqConfig, grid: [usize; 3], indices: &[u32]) -> Result<Vec<f32>, PipelineError> {
    let k = cfg.num_embeddings;
    if indices.len() != grid.iter().product::<usize>() || grid.contains(&0) {
        return Err(PipelineError::Request(format!("{} indices for a {grid:?} grid", indices.len())));
    }
    if let Some(p) = indices.iter().position(|&i| i as usize >= k) {
        let (b, y, x) = (p / (grid[1] * grid[2]), p / grid[2] % grid[1], p % grid[2]);
        return Err(PipelineError::Request(format!("index {} at (batch {b}, row {y}, column {x}) is outside the codebook (0..{k})", indices[p])));
    }
    if slot.as_ref().is_none_or(|(s, _)| *s != grid) {
        let cfg = cfg.clone();
        let max_tensor = super::limits::budget(session).max_tensor;
        let c = session.compile(|g| {
            let ids = g.input_u32("indices", &grid);
            let z_q = vqgan::lookup(g, &cfg, ids)?;
            let image = vqgan::decode_within(g, &cfg, z_q, max_tensor)?;
            g.output(image);
            Ok(())
        });
        *slot = Some((grid, c.await?));
    }
    let (_, c) = slot.as_mut().expect("compiled above");
    session.set_input(c, "indices", HostTensor::U32(indices.to_vec()))?;
    Ok(f32s(session.run(c).await?.into_iter().next().expect("one output")))
}

/// The code indices [B, h, w] of `image` [B, C, H, W] (values as the encoder takes them:
/// [-1, 1] for taming and VQModel, [0, 1] for aMUSEd's), compiled into `slot` once per shape.
pub async fn encode_codes(session: &mut Session, slot: &mut Option<([usize; 4], Compiled)>, cfg: &VqConfig, shape: [usize; 4], image: Vec<f32>) -> Result<Vec<u32>, PipelineError> {
    if image.len() != shape.iter().product::<usize>() {
        return Err(PipelineError::Request(format!("{} image values for shape {shape:?}", image.len())));
    }
    if slot.as_ref().is_none_or(|(s, _)| *s != shape) {
        let cfg = cfg.clone();
        let c = session.compile(|g| {
            let x = g.input("image", &shape);
            let h = vqgan::encode(g, &cfg, x)?;
            let (indices, _) = vqgan::quantize(g, &cfg, h)?;
            g.output(indices);
            Ok(())
        });
        *slot = Some((shape, c.await?));
    }
    let (_, c) = slot.as_mut().expect("compiled above");
    session.set_input(c, "image", HostTensor::F32(image))?;
    Ok(u32s(session.run(c).await?.into_iter().next().expect("one output")))
}

/// "Generate" for a VQ model on its own: a grid of codes drawn uniformly from the seed,
/// decoded. It shows what the codebook's textures look like; text-to-image on a code grid
/// is aMUSEd's job.
pub async fn random_codes(v: &mut VqGan, req: &super::Request, progress: &mut dyn FnMut(super::Progress) -> bool) -> Result<super::Output, PipelineError> {
    let f = v.cfg.downscale();
    req.validate_for(f).map_err(PipelineError::Request)?;
    if req.init_image.is_some() {
        return Err(PipelineError::Request("a VQ model makes images from codes: use the round-trip panel to encode an image".into()));
    }
    if req.walk.is_some() || req.morph.is_some() {
        return Err(PipelineError::Request("a VQ model's random codes have no noise to walk or prompt to morph".into()));
    }
    let grid = [req.batch, req.height / f, req.width / f];
    let k = v.cfg.num_embeddings as u64;
    let mut rng = crate::rng::Rng::new(req.seed);
    let indices: Vec<u32> = (0..grid.iter().product::<usize>()).map(|_| (rng.next_u64() % k) as u32).collect();
    if !progress(super::Progress::Decoding { work: None }) {
        return Err(PipelineError::Cancelled);
    }
    let decoded = v.decode(grid, &indices).await?;
    super::generate::check_finite(&decoded, "the decoder's output")?;
    let plane = 3 * req.height * req.width;
    // VQ decoders output [-1, 1] images (taming; aMUSEd's VQ clips [0, 1] in its pipeline).
    let images = decoded.chunks(plane).map(|x| super::Rgba::from_nchw(x, req.width, req.height)).collect();
    Ok(super::Output {
        images,
        latents: indices.iter().map(|&i| i as f32).collect(),
        prompt_embeds: vec![],
        negative_prompt_embeds: vec![],
        decoded,
        prompt_truncated: false,
        scheduler: "random codes",
    })
}

impl VqGan {
    /// Peak bytes of activations the compiled GPU graphs hold.
    pub fn activation_bytes(&self) -> u64 {
        let e = self.encoder.as_ref().map_or(0, |(_, c)| c.activation_bytes());
        let d = self.decoder.as_ref().map_or(0, |(_, c)| c.activation_bytes());
        let l = self.latents_decoder.as_ref().map_or(0, |(_, c)| c.activation_bytes());
        e + d + l
    }

    /// Refuses weights whose codebook disagrees with the config.
    pub fn check_codebook(&self) -> Result<(), PipelineError> {
        let name = format!("{SCOPE}.quantize.embedding.weight");
        match self.session.shapes.weight_shape(&name) {
            Some(s) if s == [self.cfg.num_embeddings, self.cfg.embed_dim] => Ok(()),
            other => Err(PipelineError::Model(format!("the config says {} codes of {} values, but {name} is {other:?}", self.cfg.num_embeddings, self.cfg.embed_dim))),
        }
    }
}
