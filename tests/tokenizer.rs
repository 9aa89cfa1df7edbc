//! The CLIP tokenizer gives exactly transformers' ids (CLIPTokenizerFast, as diffusers uses
//! it) for every prompt in the fixture's cases.json, padded both the SD 1.x and SD 2.x way.

use easel::text::{ClipTokenizer, PadToken};

const TOKENIZER: &[u8] = include_bytes!("fixtures/tokenizer/tokenizer.json");
const CASES: &str = include_str!("fixtures/tokenizer/cases.json");

fn check(pad: PadToken, key: &str) {
    let tok = ClipTokenizer::from_json(TOKENIZER, pad).unwrap();
    let cases: serde_json::Value = serde_json::from_str(CASES).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 174);
    let mut mismatches = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tok.encode(text).unwrap();
        assert_eq!(got.ids.len(), 77);
        if got.ids != want {
            mismatches.push(format!("case {} ({}): {text:?}\n got  {:?}\n want {:?}", c["index"], c["category"], got.ids, want));
        }
        let unpadded = c["fast_ids"].as_array().unwrap().len();
        assert_eq!(got.truncated, unpadded > 77, "case {}: truncation flag", c["index"]);
    }
    assert!(mismatches.is_empty(), "{} of {} cases differ:\n{}", mismatches.len(), cases.len(), mismatches.join("\n"));
}

#[test]
fn sd1_ids_match_transformers_on_every_case() {
    check(PadToken::EndOfText, "fast_ids_sd1_77");
}

#[test]
fn sd2_ids_match_transformers_on_every_case() {
    check(PadToken::Exclamation, "fast_ids_sd2_77");
}
