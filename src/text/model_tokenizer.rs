//! The tokenizer a model ships with. SD 1.x, 2.x and Turbo repositories all carry OpenAI's
//! CLIP vocabulary (byte-identical `vocab.json`), so we bundle its `tokenizer.json` once and
//! only read the model's `tokenizer_config.json` for the pad token; a model with a
//! different vocabulary must bring its own `tokenizer.json`.

use std::collections::HashMap;

use super::clip_tokenizer::{ClipTokenizer, PadToken, TokenizerError};
use crate::weights::manifest::sha256_hex;

/// CLIP's `tokenizer.json` (transformers' fast tokenizer, compact).
const BUNDLED_JSON: &[u8] = include_bytes!("clip_tokenizer.json");
/// sha256 of the `vocab.json` the bundled tokenizer was built from.
const BUNDLED_VOCAB_SHA256: &str = "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349";

/// Builds the tokenizer for a model from its files (`tokenizer/...` paths).
pub fn model_tokenizer(files: &HashMap<String, Vec<u8>>, component: &str) -> Result<ClipTokenizer, TokenizerError> {
    let file = |name: &str| files.get(&format!("{component}/{name}"));
    let pad = match file("tokenizer_config.json") {
        Some(bytes) => {
            let cfg: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| TokenizerError::new(format!("{component}/tokenizer_config.json: {e}")))?;
            // pad_token is a string or an AddedToken object with "content".
            let pad = cfg.get("pad_token").and_then(|p| p.as_str().or_else(|| p.get("content").and_then(|c| c.as_str())));
            PadToken::from_config(pad.unwrap_or("<|endoftext|>"))
        }
        None => return Err(TokenizerError::new(format!("the model has no {component}/tokenizer_config.json, so its pad token is unknown"))),
    };
    if let Some(json) = file("tokenizer.json") {
        return ClipTokenizer::from_json(json, pad);
    }
    match file("vocab.json") {
        Some(vocab) if sha256_hex(vocab) == BUNDLED_VOCAB_SHA256 => ClipTokenizer::from_json(BUNDLED_JSON, pad),
        Some(_) => Err(TokenizerError::new(format!("{component}/vocab.json is not CLIP's vocabulary and the model has no tokenizer.json"))),
        None => Err(TokenizerError::new(format!("the model has no {component}/vocab.json or tokenizer.json"))),
    }
}
