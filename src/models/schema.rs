//! Every weight (checkpoint name and shape) of the CLIP text model, the UNet, the VAE and TAESD,
//! enumerated from their configs exactly as the graph builders read them. Used to make
//! full-size models with random weights (tests and benchmarks) without a checkpoint, and
//! checked against the fixtures' real tensor lists.

#![allow(clippy::needless_range_loop)] // block indices mirror diffusers' loops
use super::clip::ClipTextConfig;
use super::taesd::{Layer, TaesdConfig};
use super::unet::{Attn, UNetConfig};
use super::vae::VaeConfig;

/// (name, shape) of each weight, in a stable order.
pub type Schema = Vec<(String, Vec<usize>)>;

struct Out<'a> {
    list: &'a mut Schema,
    prefix: String,
}

impl Out<'_> {
    fn add(&mut self, name: &str, shape: &[usize]) {
        self.list.push((format!("{}{name}", self.prefix), shape.to_vec()));
    }
    fn scoped(&mut self, scope: &str, f: impl FnOnce(&mut Out)) {
        let mut inner = Out { list: self.list, prefix: format!("{}{scope}.", self.prefix) };
        f(&mut inner);
    }
    fn norm(&mut self, name: &str, c: usize) {
        self.add(&format!("{name}.weight"), &[c]);
        self.add(&format!("{name}.bias"), &[c]);
    }
    fn dense(&mut self, name: &str, out: usize, inp: usize, bias: bool) {
        self.add(&format!("{name}.weight"), &[out, inp]);
        if bias {
            self.add(&format!("{name}.bias"), &[out]);
        }
    }
    fn conv(&mut self, name: &str, out: usize, inp: usize, k: usize) {
        self.add(&format!("{name}.weight"), &[out, inp, k, k]);
        self.add(&format!("{name}.bias"), &[out]);
    }
}

/// `text_encoder.*` of a CLIP text model (transformers-5 names).
pub fn clip_text(cfg: &ClipTextConfig) -> Schema {
    let (vocab, intermediate) = (cfg.vocab_size, cfg.intermediate_size);
    let mut list = Schema::new();
    let mut o = Out { list: &mut list, prefix: "text_encoder.".into() };
    let d = cfg.hidden_size;
    o.add("embeddings.token_embedding.weight", &[vocab, d]);
    o.add("embeddings.position_embedding.weight", &[cfg.max_positions, d]);
    for i in 0..cfg.layers {
        o.scoped(&format!("encoder.layers.{i}"), |o| {
            o.norm("layer_norm1", d);
            for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                o.dense(&format!("self_attn.{p}"), d, d, true);
            }
            o.norm("layer_norm2", d);
            o.dense("mlp.fc1", intermediate, d, true);
            o.dense("mlp.fc2", d, intermediate, true);
        });
    }
    o.norm("final_layer_norm", d);
    list
}

fn resnet(o: &mut Out, inp: usize, out: usize, temb: Option<usize>) {
    o.norm("norm1", inp);
    o.conv("conv1", out, inp, 3);
    if let Some(t) = temb {
        o.dense("time_emb_proj", out, t, true);
    }
    o.norm("norm2", out);
    o.conv("conv2", out, out, 3);
    if inp != out {
        o.conv("conv_shortcut", out, inp, 1);
    }
}

fn transformer(o: &mut Out, c: usize, layers: usize, cross: usize, linear: bool) {
    o.norm("norm", c);
    let proj = |o: &mut Out, name: &str| if linear { o.dense(name, c, c, true) } else { o.conv(name, c, c, 1) };
    proj(o, "proj_in");
    for k in 0..layers {
        o.scoped(&format!("transformer_blocks.{k}"), |o| {
            for (n, ctx) in [("attn1", c), ("attn2", cross)] {
                o.dense(&format!("{n}.to_q"), c, c, false);
                o.dense(&format!("{n}.to_k"), c, ctx, false);
                o.dense(&format!("{n}.to_v"), c, ctx, false);
                o.dense(&format!("{n}.to_out.0"), c, c, true);
            }
            for n in ["norm1", "norm2", "norm3"] {
                o.norm(n, c);
            }
            o.dense("ff.net.0.proj", 8 * c, c, true);
            o.dense("ff.net.2", c, 4 * c, true);
        });
    }
    proj(o, "proj_out");
}

/// `unet.*` of a UNet2DConditionModel.
pub fn unet(cfg: &UNetConfig) -> Schema {
    let mut list = Schema::new();
    let mut o = Out { list: &mut list, prefix: "unet.".into() };
    let ch = &cfg.block_out_channels;
    let n = ch.len();
    let t = 4 * ch[0];
    let cross = cfg.cross_attention_dim;
    o.conv("conv_in", ch[0], cfg.in_channels, 3);
    o.dense("time_embedding.linear_1", t, ch[0], true);
    o.dense("time_embedding.linear_2", t, t, true);
    let mut prev = ch[0];
    for i in 0..n {
        o.scoped(&format!("down_blocks.{i}"), |o| {
            for j in 0..cfg.layers_per_block {
                o.scoped(&format!("resnets.{j}"), |o| resnet(o, if j == 0 { prev } else { ch[i] }, ch[i], Some(t)));
                if cfg.down_attention[i] == Attn::Cross {
                    o.scoped(&format!("attentions.{j}"), |o| transformer(o, ch[i], cfg.transformer_layers[i], cross, cfg.linear_projection));
                }
            }
            if i + 1 < n {
                o.conv("downsamplers.0.conv", ch[i], ch[i], 3);
            }
        });
        prev = ch[i];
    }
    o.scoped("mid_block", |o| {
        o.scoped("resnets.0", |o| resnet(o, ch[n - 1], ch[n - 1], Some(t)));
        o.scoped("attentions.0", |o| transformer(o, ch[n - 1], cfg.transformer_layers[n - 1], cross, cfg.linear_projection));
        o.scoped("resnets.1", |o| resnet(o, ch[n - 1], ch[n - 1], Some(t)));
    });
    let mut prev_out = ch[n - 1];
    for i in 0..n {
        let (out, block) = (ch[n - 1 - i], n - 1 - i);
        // diffusers: the last resnet's skip comes from the down block one level shallower.
        let input = ch[(n - 1).saturating_sub(i + 1)];
        o.scoped(&format!("up_blocks.{i}"), |o| {
            for j in 0..=cfg.layers_per_block {
                let skip = if j == cfg.layers_per_block { input } else { out };
                let res_in = if j == 0 { prev_out } else { out };
                o.scoped(&format!("resnets.{j}"), |o| resnet(o, res_in + skip, out, Some(t)));
                if cfg.up_attention[i] == Attn::Cross {
                    o.scoped(&format!("attentions.{j}"), |o| transformer(o, out, cfg.transformer_layers[block], cross, cfg.linear_projection));
                }
            }
            if i + 1 < n {
                o.conv("upsamplers.0.conv", out, out, 3);
            }
        });
        prev_out = out;
    }
    o.norm("conv_norm_out", ch[0]);
    o.conv("conv_out", cfg.out_channels, ch[0], 3);
    list
}

/// A VAE block's single-head spatial attention.
fn vae_attention(o: &mut Out, c: usize) {
    o.norm("group_norm", c);
    for p in ["to_q", "to_k", "to_v", "to_out.0"] {
        o.dense(p, c, c, true);
    }
}

fn vae_mid(o: &mut Out, c: usize, attention: bool) {
    o.scoped("mid_block", |o| {
        o.scoped("resnets.0", |o| resnet(o, c, c, None));
        if attention {
            o.scoped("attentions.0", |o| vae_attention(o, c));
        }
        o.scoped("resnets.1", |o| resnet(o, c, c, None));
    });
}

/// `vae.*` of an AutoencoderKL (encoder and decoder).
pub fn vae(cfg: &VaeConfig) -> Schema {
    let mut list = Schema::new();
    let mut o = Out { list: &mut list, prefix: "vae.".into() };
    let ch = &cfg.block_out_channels;
    let (n, l) = (ch.len(), cfg.latent_channels);
    o.scoped("encoder", |o| {
        o.conv("conv_in", ch[0], cfg.in_channels, 3);
        let mut prev = ch[0];
        for i in 0..n {
            o.scoped(&format!("down_blocks.{i}"), |o| {
                for j in 0..cfg.layers_per_block {
                    o.scoped(&format!("resnets.{j}"), |o| resnet(o, if j == 0 { prev } else { ch[i] }, ch[i], None));
                    if cfg.down_attention[i] {
                        o.scoped(&format!("attentions.{j}"), |o| vae_attention(o, ch[i]));
                    }
                }
                if i + 1 < n {
                    o.conv("downsamplers.0.conv", ch[i], ch[i], 3);
                }
            });
            prev = ch[i];
        }
        vae_mid(o, ch[n - 1], cfg.mid_attention);
        o.norm("conv_norm_out", ch[n - 1]);
        o.conv("conv_out", 2 * l, ch[n - 1], 3);
    });
    if cfg.quant_conv {
        o.conv("quant_conv", 2 * l, 2 * l, 1);
    }
    if cfg.post_quant_conv {
        o.conv("post_quant_conv", l, l, 1);
    }
    o.scoped("decoder", |o| {
        o.conv("conv_in", ch[n - 1], l, 3);
        vae_mid(o, ch[n - 1], cfg.mid_attention);
        let mut prev = ch[n - 1];
        for i in 0..n {
            let out = ch[n - 1 - i];
            o.scoped(&format!("up_blocks.{i}"), |o| {
                for j in 0..=cfg.layers_per_block {
                    o.scoped(&format!("resnets.{j}"), |o| resnet(o, if j == 0 { prev } else { out }, out, None));
                    if cfg.up_attention[i] {
                        o.scoped(&format!("attentions.{j}"), |o| vae_attention(o, out));
                    }
                }
                if i + 1 < n {
                    o.conv("upsamplers.0.conv", out, out, 3);
                }
            });
            prev = out;
        }
        o.norm("conv_norm_out", ch[0]);
        o.conv("conv_out", cfg.out_channels, ch[0], 3);
    });
    list
}

/// `taesd.decoder.*` of an AutoencoderTiny: the decoder only (previews never encode, so the
/// converter leaves the encoder out).
pub fn taesd_decoder(cfg: &TaesdConfig) -> Schema {
    let mut list = Schema::new();
    let mut o = Out { list: &mut list, prefix: "taesd.decoder.layers.".into() };
    for (i, layer) in cfg.layers().into_iter().enumerate() {
        match layer {
            Layer::Conv { inp, out, bias } => {
                o.add(&format!("{i}.weight"), &[out, inp, 3, 3]);
                if bias {
                    o.add(&format!("{i}.bias"), &[out]);
                }
            }
            Layer::Block { channels: c } => o.scoped(&i.to_string(), |o| {
                for k in [0, 2, 4] {
                    o.conv(&format!("conv.{k}"), c, c, 3);
                }
            }),
            Layer::Relu | Layer::Upsample => {}
        }
    }
    list
}
