//! Text side of the pipelines: the CLIP BPE tokenizer (text encoders are models, under
//! `models/` when they land).

mod clip_tokenizer;

pub use clip_tokenizer::{ClipTokenizer, Encoded, PadToken, MAX_TOKENS};
