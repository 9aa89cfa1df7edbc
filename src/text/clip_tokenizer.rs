//! CLIP's BPE tokenizer through the `tokenizers` crate, from a `tokenizer.json`, with Stable
//! Diffusion's conventions: 77 ids, `<|startoftext|>` ... `<|endoftext|>`, truncated to
//! bos + 75 + eos, padded with `<|endoftext|>` (SD 1.x) or `!` (SD 2.x / Turbo).

use thiserror::Error;
use tokenizers::{AddedToken, PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// Length of every encoded prompt.
pub const MAX_TOKENS: usize = 77;

/// How prompts are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadToken {
    /// `<|endoftext|>` (id 49407), as SD 1.x repositories configure it.
    EndOfText,
    /// `!` (id 0), as SD 2.x repositories do. `!` is then an added special token, so a `!`
    /// in the prompt is split out as id 0 before BPE, exactly as transformers does.
    Exclamation,
}

impl PadToken {
    /// From `tokenizer_config.json`'s `pad_token` text.
    pub fn from_config(pad_token: &str) -> Self {
        if pad_token == "!" {
            Self::Exclamation
        } else {
            Self::EndOfText
        }
    }
}

/// Why a tokenizer could not be built or used.
#[derive(Debug, Error)]
#[error("tokenizer: {0}")]
pub struct TokenizerError(String);

impl TokenizerError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

/// A prompt as ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Exactly `MAX_TOKENS` ids.
    pub ids: Vec<u32>,
    /// The prompt was longer than 75 tokens and was cut (the page says so).
    pub truncated: bool,
}

/// The CLIP tokenizer with SD's padding and truncation.
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
}

impl ClipTokenizer {
    /// Builds it from `tokenizer.json` bytes.
    pub fn from_json(json: &[u8], pad: PadToken) -> Result<Self, TokenizerError> {
        let mut tokenizer = Tokenizer::from_bytes(json).map_err(|e| TokenizerError(format!("tokenizer.json: {e}")))?;
        let (pad_token, pad_id) = match pad {
            PadToken::EndOfText => ("<|endoftext|>", tokenizer.token_to_id("<|endoftext|>")),
            PadToken::Exclamation => {
                tokenizer.add_special_tokens([AddedToken::from("!", true)]).map_err(|e| TokenizerError(e.to_string()))?;
                ("!", tokenizer.token_to_id("!"))
            }
        };
        let pad_id = pad_id.ok_or_else(|| TokenizerError(format!("the vocabulary has no '{pad_token}'")))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, strategy: TruncationStrategy::LongestFirst, direction: TruncationDirection::Right, stride: 0 }))
            .map_err(|e| TokenizerError(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(MAX_TOKENS),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token: pad_token.into(),
        }));
        Ok(Self { tokenizer })
    }

    /// Encodes a prompt to 77 ids.
    pub fn encode(&self, text: &str) -> Result<Encoded, TokenizerError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| TokenizerError(e.to_string()))?;
        Ok(Encoded { ids: enc.get_ids().to_vec(), truncated: !enc.get_overflowing().is_empty() })
    }
}
