//! The LoRA fixtures' runs (sd1-tiny-lora, sdxl-tiny-lora: scales, then the base model on
//! the same noise), shared by the native and the browser suites.

use std::collections::HashMap;

use easel::models::{LoraStack, Session};
use easel::pipelines::{generate, StableDiffusion};
use easel::weights::lora::Lora;

use super::refs::{fixture_request, rel_err, Ref};

/// Puts the stack in the state a run names, as the page would: the LoRA added at the run's
/// scale the first time, rescaled after, removed for the base run.
pub async fn set_lora(stack: &mut LoraStack, session: &mut Session, lora: &Lora, run: &serde_json::Value) {
    match (run["lora_scale"].as_f64(), stack.uses().is_empty()) {
        (Some(s), true) => stack.add(session, lora.clone(), s as f32).await.unwrap(),
        (Some(s), false) => stack.set_scale(session, &lora.name, s as f32).await.unwrap(),
        (None, _) => stack.remove(session, &lora.name).await.unwrap(),
    }
}

/// Every run of a LoRA fixture on one loaded model, in order, the LoRA applied, rescaled and
/// removed in place: (run name, final latents' relative error against diffusers).
pub async fn errors(sd: &mut StableDiffusion, lora: &Lora, meta: &serde_json::Value, refs: &HashMap<String, Ref>) -> Vec<(String, f64)> {
    let mut stack = LoraStack::new();
    let mut out = vec![];
    for run in meta["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        set_lora(&mut stack, &mut sd.session, lora, run).await;
        let latents = generate(sd, &fixture_request(run, refs), &mut |_| true).await.unwrap().latents;
        out.push((name.to_string(), rel_err(&latents, &refs[&format!("{name}/final_latents")].values)));
    }
    out
}
