//! The VQ family at full size, shared by the native and the browser tests: a decoder of the
//! vqgan_imagenet_f16_16384 shape (taming's model.yaml) decoding a code grid (16x16 codes:
//! 256x256 pixels), and aMUSEd-256's UVit2D transformer (its Hub config.json) over a token
//! grid (16x16 at 256 px). Random weights from the schema the builders declare, stored as
//! `easel convert --quant q8_0` would store them; deterministic inputs; the graphs each test
//! compiles, at any grid side (neither model has a position table tied to its size).

#![allow(dead_code)] // each test binary uses a different part of this file

use easel::error::OpError;
use easel::models::schema;
use easel::models::taming;
use easel::models::uvit::{self, UVitConfig, UVitInputs};
use easel::models::vqgan::{self, VqConfig};
use easel::ops::cpu::HostTensor;
use easel::ops::{Graph, StorageType};
use easel::weights::rules::storage_for;

pub const VQGAN_YAML: &str = include_str!("../fixtures/configs/vqgan_imagenet_f16_16384/model.yaml");
pub const AMUSED_256_TRANSFORMER: &str = include_str!("../fixtures/configs/amused-256/transformer/config.json");

/// The two models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// vqgan_imagenet_f16_16384's decoder (with its codebook and post_quant_conv).
    VqganDecoder,
    /// aMUSEd-256's transformer.
    Amused256,
}

/// Codes / tokens per side at the models' own size: 256 px at 16x downsampling. The native
/// test runs this size on both backends.
pub const SIDE: usize = 16;
/// The browser test's grid (128 px): the same weights, kernels and binding limits as at 256
/// px, with a quarter of the arithmetic (SwiftShader took 290 s for both models at 16x16).
pub const WEB_SIDE: usize = 8;

impl Shape {
    pub fn name(self, side: usize) -> String {
        match self {
            Shape::VqganDecoder => format!("vqgan_imagenet_f16_16384 decoder, {side}x{side} codes -> {0}x{0}", 16 * side),
            Shape::Amused256 => format!("aMUSEd-256 transformer, {side}x{side} tokens"),
        }
    }

    /// Where the CPU backend's outputs at WEB_SIDE (every `STRIDE`-th value) are kept for the
    /// browser test; checked by the native test, rewritten with EASEL_WRITE_REFERENCE=1.
    pub fn reference(self) -> &'static str {
        match self {
            Shape::VqganDecoder => "tests/fixtures/vq_full/vqgan_decoder_8x8_cpu.safetensors",
            Shape::Amused256 => "tests/fixtures/vq_full/amused_256_8x8_cpu.safetensors",
        }
    }

    /// Every weight the pass reads, with its storage.
    pub fn weight_specs(self) -> Vec<(String, Vec<usize>, StorageType)> {
        let list = match self {
            // The encoder is not part of a decode: leave it out (as a decode-only model would).
            Shape::VqganDecoder => schema::vq(&vqgan_config()).into_iter().filter(|(n, _)| !n.contains(".encoder.") && !n.contains(".quant_conv.")).collect(),
            Shape::Amused256 => schema::uvit(&amused_config()),
        };
        list.into_iter()
            .map(|(n, s)| {
                let storage = storage_for(&n, &s, false, StorageType::Q8_0);
                (n, s, storage)
            })
            .collect()
    }

    /// The pass over a `side` x `side` grid: decode the codes, or one transformer call.
    pub fn build(self, g: &mut Graph, side: usize) -> Result<(), OpError> {
        match self {
            Shape::VqganDecoder => {
                let cfg = vqgan_config();
                let ids = g.input_u32("indices", &[1, side, side]);
                let z_q = vqgan::lookup(g, &cfg, ids)?;
                let image = vqgan::decode(g, &cfg, z_q)?;
                g.output(image);
            }
            Shape::Amused256 => {
                let cfg = amused_config();
                let x = UVitInputs {
                    ids: g.input_u32("ids", &[1, side, side]),
                    encoder_hidden_states: g.input("encoder_hidden_states", &[1, 77, cfg.encoder_hidden_size]),
                    pooled_text_emb: g.input("pooled_text_emb", &[1, cfg.cond_embed_dim]),
                    micro_conds: g.input("micro_conds", &[1, 5]),
                };
                let logits = g.scoped("transformer", |g| uvit::uvit(g, &cfg, &x))?;
                g.output(logits);
            }
        }
        Ok(())
    }

    /// Deterministic inputs of the pass over a `side` x `side` grid.
    pub fn inputs(self, side: usize) -> Vec<(&'static str, HostTensor)> {
        let n = side * side;
        let wave = |len: usize, period: usize| (0..len).map(|i| ((i % period) as f32 - (period / 2) as f32) / period as f32).collect::<Vec<_>>();
        match self {
            Shape::VqganDecoder => {
                let k = vqgan_config().num_embeddings as u32;
                vec![("indices", HostTensor::U32((0..n as u32).map(|i| i.wrapping_mul(2_654_435_761) % k).collect()))]
            }
            Shape::Amused256 => {
                let cfg = amused_config();
                let px = (16 * side) as f32;
                // Half the tokens masked (the mask id is the last of the vocabulary), half codes.
                let mask = (cfg.vocab_size - 1) as u32;
                let ids = (0..n as u32).map(|i| if i % 2 == 0 { mask } else { i * 31 % cfg.codebook_size as u32 }).collect();
                vec![
                    ("ids", HostTensor::U32(ids)),
                    ("encoder_hidden_states", HostTensor::F32(wave(77 * cfg.encoder_hidden_size, 13))),
                    ("pooled_text_emb", HostTensor::F32(wave(cfg.cond_embed_dim, 11))),
                    // width, height, crop top-left, aesthetic score: the pipeline's defaults.
                    ("micro_conds", HostTensor::F32(vec![px, px, 0.0, 0.0, 6.0])),
                ]
            }
        }
    }

    /// Shape of the output over a `side` x `side` grid.
    pub fn output_shape(self, side: usize) -> Vec<usize> {
        match self {
            Shape::VqganDecoder => vec![1, 3, 16 * side, 16 * side],
            Shape::Amused256 => vec![1, amused_config().codebook_size, side, side],
        }
    }
}

pub fn vqgan_config() -> VqConfig {
    taming::config_from_yaml(VQGAN_YAML).unwrap()
}

pub fn amused_config() -> UVitConfig {
    UVitConfig::from_json(&serde_json::from_str(AMUSED_256_TRANSFORMER).unwrap()).unwrap()
}

/// Every STRIDE-th output value goes into the committed reference (a prime, so that the
/// sample walks through channels and positions).
pub const STRIDE: usize = 97;

pub fn sample(values: &[f32]) -> Vec<f32> {
    values.iter().step_by(STRIDE).copied().collect()
}

pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}
