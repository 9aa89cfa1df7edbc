//! The prompt side of Stable Diffusion: SD 1.x / 2.x condition on one CLIP encoder's last
//! hidden state; SDXL concatenates the penultimate hidden states of two encoders (CLIP-L and
//! OpenCLIP bigG, each with its own tokenizer and padding) and adds the second one's
//! projected pooled embedding, which the UNet reads with the time ids.

use crate::models::clip::{eos_one_hot, text_embeds, text_model, ClipTextConfig};
use crate::models::session::f32s;
use crate::ops::cpu::HostTensor;
use crate::text::{ClipTokenizer, MAX_TOKENS};

use super::sd::StableDiffusion;
use super::PipelineError;

/// SDXL's second text encoder (`CLIPTextModelWithProjection`) and its tokenizer.
pub struct SecondEncoder {
    pub cfg: ClipTextConfig,
    pub tokenizer: ClipTokenizer,
    /// transformers 4 checkpoints nest the model under `text_model.`.
    pub nested: bool,
}

/// Encoded prompts: `context` [n, 77, D] (the UNet's cross-attention input) and, for SDXL,
/// `pooled` [n, P] (empty otherwise).
pub struct TextEmbeddings {
    pub context: Vec<f32>,
    pub pooled: Vec<f32>,
    /// Some prompt was cut to 77 tokens.
    pub truncated: bool,
}

impl TextEmbeddings {
    /// The embeddings of prompt `i` of the batch.
    pub fn row(&self, i: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let (c, p) = (self.context.len() / n, self.pooled.len() / n);
        (self.context[i * c..(i + 1) * c].to_vec(), self.pooled[i * p..(i + 1) * p].to_vec())
    }
}

fn tokenize(tokenizer: &ClipTokenizer, texts: &[&str]) -> Result<(Vec<u32>, bool), PipelineError> {
    let mut ids = Vec::with_capacity(texts.len() * MAX_TOKENS);
    let mut truncated = false;
    for t in texts {
        let e = tokenizer.encode(t).map_err(|e| PipelineError::Model(e.to_string()))?;
        truncated |= e.truncated;
        ids.extend(e.ids);
    }
    Ok((ids, truncated))
}

impl StableDiffusion {
    /// The width of the UNet's text context: one encoder's hidden size, or both of SDXL's.
    pub fn context_dim(&self) -> usize {
        self.text_cfg.hidden_size + self.text2.as_ref().map_or(0, |t| t.cfg.hidden_size)
    }

    /// The width of SDXL's pooled embedding (0 for SD 1.x / 2.x).
    pub fn pooled_dim(&self) -> usize {
        self.text2.as_ref().map_or(0, |t| t.cfg.projection_dim)
    }

    /// Compiles the text encoder(s) for `n` prompts, unless compiled for that many already.
    pub(super) async fn text_graph(&mut self, n: usize) -> Result<(), PipelineError> {
        if self.text.as_ref().is_some_and(|(b, _)| *b == n) {
            return Ok(());
        }
        let (cfg, nested) = (self.text_cfg.clone(), self.text_nested);
        let second = self.text2.as_ref().map(|t| (t.cfg.clone(), t.nested));
        let c = self
            .session
            .compile(|g| {
                let x = g.input_u32("input_ids", &[n, MAX_TOKENS]);
                let o = g.scoped("text_encoder", |g| text_model(g, &cfg, x, nested))?;
                let Some((cfg2, nested2)) = &second else {
                    g.output(o.last_hidden_state);
                    return Ok(());
                };
                // SDXL: both encoders' penultimate layers side by side, and the pooled
                // embedding of the second.
                let x2 = g.input_u32("input_ids_2", &[n, MAX_TOKENS]);
                let sel = g.input("eos_select", &[n, 1, MAX_TOKENS]);
                let (pen2, pooled) = g.scoped("text_encoder_2", |g| -> Result<_, crate::error::OpError> {
                    let o2 = text_model(g, cfg2, x2, *nested2)?;
                    Ok((o2.penultimate, text_embeds(g, cfg2, o2.last_hidden_state, sel)?))
                })?;
                let context = g.concat(&[o.penultimate, pen2], 2)?;
                g.output(context);
                g.output(pooled);
                Ok(())
            })
            .await?;
        self.text = Some((n, c));
        self.note_peak();
        Ok(())
    }

    /// Tokenizes and encodes `texts` in one batch of the encoder(s).
    pub async fn encode_text(&mut self, texts: &[&str]) -> Result<TextEmbeddings, PipelineError> {
        let n = texts.len();
        let (ids, mut truncated) = tokenize(&self.tokenizer, texts)?;
        let ids2 = match &self.text2 {
            Some(t) => {
                let (ids2, cut) = tokenize(&t.tokenizer, texts)?;
                truncated |= cut;
                Some(ids2)
            }
            None => None,
        };
        self.text_graph(n).await?;
        let (_, c) = self.text.as_mut().expect("compiled above");
        if let Some(ids2) = ids2 {
            self.session.set_input(c, "eos_select", HostTensor::F32(eos_one_hot(&ids2, MAX_TOKENS)))?;
            self.session.set_input(c, "input_ids_2", HostTensor::U32(ids2))?;
        }
        self.session.set_input(c, "input_ids", HostTensor::U32(ids))?;
        let mut out = self.session.run(c).await?.into_iter().map(f32s);
        let context = out.next().expect("the context output");
        Ok(TextEmbeddings { context, pooled: out.next().unwrap_or_default(), truncated })
    }
}
