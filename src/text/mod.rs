//! Text side of the pipelines: the CLIP BPE tokenizer (the text encoders are models, in `models/clip.rs`).

mod clip_tokenizer;
pub mod labels;
mod model_tokenizer;

pub use clip_tokenizer::{ClipTokenizer, Encoded, PadToken, TokenizerError, MAX_TOKENS};
pub use model_tokenizer::model_tokenizer;
