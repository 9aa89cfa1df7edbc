//! Every weight (checkpoint name and shape) of a model, derived from its graph builder: the
//! builder runs once against a recorder that answers each declared parameter (`Graph::param`)
//! with its declared shape and keeps the list. Each architecture is written once; the schema
//! makes full-size models with random weights (tests and benchmarks) without a checkpoint,
//! and is checked against the fixtures' real tensor lists.

use std::cell::RefCell;
use std::collections::HashSet;

use super::clip::{self, ClipTextConfig};
use super::dcgan::{self, Condition, DcganConfig};
use super::taesd::{self, TaesdConfig};
use super::unet::{self, UNetConfig};
use super::uvit::{self, UVitConfig, UVitInputs};
use super::vae::{self, VaeConfig};
use super::vqgan::{self, VqConfig};
use crate::error::OpError;
use crate::ops::{Graph, WeightShapes};

/// (name, shape) of each weight, in the order the model first uses them.
pub type Schema = Vec<(String, Vec<usize>)>;

/// Has every parameter it is asked for, and writes it down.
#[derive(Default)]
struct Recorder {
    list: RefCell<Schema>,
    seen: RefCell<HashSet<String>>,
}

impl WeightShapes for Recorder {
    fn weight_shape(&self, _: &str) -> Option<Vec<usize>> {
        None
    }

    fn record(&self, name: &str, shape: &[usize]) -> bool {
        // Banded convs and the VQ codebook declare the same parameter more than once.
        if self.seen.borrow_mut().insert(name.to_string()) {
            self.list.borrow_mut().push((name.to_string(), shape.to_vec()));
        }
        true
    }

    fn recording(&self) -> bool {
        true
    }
}

/// The parameters `build` declares. Inputs only need the right widths: nothing runs.
pub fn record(build: impl FnOnce(&mut Graph) -> Result<(), OpError>) -> Result<Schema, OpError> {
    let recorder = Recorder::default();
    let mut g = Graph::new(&recorder);
    build(&mut g)?;
    drop(g);
    Ok(recorder.list.into_inner())
}

fn expect(what: &str, schema: Result<Schema, OpError>) -> Schema {
    // Configs were validated when parsed; a builder that fails on its own config is a bug.
    schema.unwrap_or_else(|e| panic!("the {what} builder fails on its config: {e}"))
}

/// `text_encoder.*` of a CLIP text model (transformers-5 names), with `text_projection`
/// for `CLIPTextModelWithProjection`.
pub fn clip_text_as(cfg: &ClipTextConfig, with_projection: bool) -> Schema {
    expect(
        "CLIP text",
        record(|g| {
            let len = cfg.max_positions;
            let ids = g.input_u32("ids", &[1, len]);
            g.scoped("text_encoder", |g| {
                let o = clip::text_model(g, cfg, ids, false)?;
                if with_projection {
                    let select = g.input("eos_select", &[1, 1, len]);
                    clip::text_embeds(g, cfg, o.last_hidden_state, select)?;
                }
                Ok(())
            })
        }),
    )
}

/// `text_encoder.*` of a `CLIPTextModel`.
pub fn clip_text(cfg: &ClipTextConfig) -> Schema {
    clip_text_as(cfg, false)
}

/// `unet.*` of a UNet2DConditionModel or UNet2DModel.
pub fn unet(cfg: &UNetConfig) -> Schema {
    expect(
        "UNet",
        record(|g| {
            let side = 1 << cfg.block_out_channels.len();
            let sample = g.input("sample", &[1, cfg.in_channels, side, side]);
            let t = g.input("timestep", &[1]);
            let context = (!cfg.unconditional).then(|| g.input("context", &[1, 77, cfg.cross_attention_dim]));
            let added = cfg.text_time.map(|tt| unet::Added { text_embeds: g.input("text_embeds", &[1, tt.input_dim - 6 * tt.time_dim]), time_ids: g.input("time_ids", &[1, 6]) });
            g.scoped("unet", |g| unet::unet_added(g, cfg, sample, t, context, added)).map(drop)
        }),
    )
}

/// `vae.*` of an AutoencoderKL: encoder and decoder.
pub fn vae(cfg: &VaeConfig) -> Schema {
    expect("VAE", record(|g| g.scoped("vae", |g| autoencoder(g, cfg))))
}

fn autoencoder(g: &mut Graph, cfg: &VaeConfig) -> Result<(), OpError> {
    let side = cfg.downscale();
    let image = g.input("image", &[1, cfg.in_channels, side, side]);
    vae::encode(g, cfg, image)?;
    let z = g.input("z", &[1, cfg.vq_embed_dim.unwrap_or(cfg.latent_channels), 1, 1]);
    vae::decode(g, cfg, z).map(drop)
}

/// `vqvae.*` of a VQ model (diffusers' VQModel, or taming's renamed): encoder, codebook,
/// decoder.
pub fn vq(cfg: &VqConfig) -> Schema {
    expect(
        "VQ",
        record(|g| {
            let side = cfg.downscale();
            let image = g.input("image", &[1, cfg.vae.in_channels, side, side]);
            let h = vqgan::encode(g, cfg, image)?;
            let (_, z_q) = vqgan::quantize(g, cfg, h)?;
            vqgan::decode(g, cfg, z_q).map(drop)
        }),
    )
}

/// `taesd.decoder.*` of an AutoencoderTiny.
pub fn taesd_decoder(cfg: &TaesdConfig) -> Schema {
    expect(
        "TAESD",
        record(|g| {
            let z = g.input("z", &[1, cfg.latent_channels, 1, 1]);
            g.scoped("taesd", |g| taesd::decode(g, cfg, z)).map(drop)
        }),
    )
}

/// `transformer.*` of aMUSEd's UVit2DModel.
pub fn uvit(cfg: &UVitConfig) -> Schema {
    expect(
        "UVit2D",
        record(|g| {
            let x = UVitInputs {
                ids: g.input_u32("ids", &[1, 4, 4]),
                encoder_hidden_states: g.input("encoder_hidden_states", &[1, 77, cfg.encoder_hidden_size]),
                pooled_text_emb: g.input("pooled_text_emb", &[1, cfg.cond_embed_dim]),
                micro_conds: g.input("micro_conds", &[1, 5]),
            };
            g.scoped("transformer", |g| uvit::uvit(g, cfg, &x)).map(drop)
        }),
    )
}

/// `generator.*` of Easel's DCGAN.
pub fn dcgan(cfg: &DcganConfig) -> Schema {
    expect(
        "DCGAN",
        record(|g| {
            let z = g.input("z", &[1, cfg.z_dim]);
            let ids = |g: &mut Graph, name: &str| g.input_u32(name, &[1]);
            let cond = (!cfg.classes.is_empty()).then(|| Condition {
                class: [ids(g, "class"), ids(g, "class_to")],
                style: (!cfg.styles.is_empty()).then(|| [ids(g, "style"), ids(g, "style_to")]),
                keep: g.input("keep", &[1, 1]),
                t: g.input("t", &[1, 1]),
            });
            g.scoped("generator", |g| dcgan::generator(g, cfg, z, cond)).map(drop)
        }),
    )
}
