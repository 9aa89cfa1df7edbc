//! SDXL against diffusers (the sdxl-tiny fixture: two text encoders, text_time added
//! conditioning, transformer depth per block, VAE scaling 0.13025): the tokenizers' ids,
//! the prompt and pooled embeddings, one UNet call, the VAE decode, and every pipeline run
//! (Turbo 1-step, CFG with a negative prompt, CFG with zero negative embeddings), on the CPU
//! backend and natively on the GPU (lavapipe without one).

#![cfg(not(target_arch = "wasm32"))]

mod sd;

use easel::models::unet::{unet_added, Added};
use easel::ops::cpu::HostTensor;
use easel::ops::StorageType;
use easel::pipelines::{generate, StableDiffusion};
use sd::{fixture_request, references, rel_err, sd_pipeline, sdxl_repo, Ref};
use std::collections::HashMap;

/// f32 runs: relative error of every compared tensor (the bound for final latents
/// is 1e-3; the embeddings and single calls are held to the same).
const TOL: f64 = 1e-3;

fn refs() -> HashMap<String, Ref> {
    references("sdxl-tiny")
}

fn meta() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(sd::fixture("sdxl-tiny").join("reference.json")).unwrap()).unwrap()
}

fn check(what: &str, ours: &[f32], theirs: &[f32]) -> f64 {
    let e = rel_err(ours, theirs);
    println!("sdxl-tiny {what}: relative error {e:.2e}");
    assert!(e <= TOL, "{what}: relative error {e:e} > {TOL:e}");
    e
}

const PROMPTS: [&str; 3] = ["a photo of an astronaut riding a horse on mars", "a watercolor painting of a red fox in the snow, highly detailed!", ""];

fn text_matches(sd: &mut StableDiffusion, r: &HashMap<String, Ref>) {
    // Token ids: CLIP-L pads with <|endoftext|>, bigG's tokenizer with '!'.
    for (i, p) in PROMPTS.iter().enumerate() {
        let ids: Vec<f32> = sd.tokenizer.encode(p).unwrap().ids.iter().map(|&v| v as f32).collect();
        assert_eq!(ids, r["text/input_ids"].values[i * 77..(i + 1) * 77], "tokenizer ids of {p:?}");
        let ids2: Vec<f32> = sd.text2.as_ref().unwrap().tokenizer.encode(p).unwrap().ids.iter().map(|&v| v as f32).collect();
        assert_eq!(ids2, r["text_2/input_ids"].values[i * 77..(i + 1) * 77], "tokenizer_2 ids of {p:?}");
    }
    let e = pollster::block_on(sd.encode_text(&PROMPTS)).unwrap();
    // The context is both penultimate layers side by side: [3, 77, 8 + 12].
    let (a, b) = (&r["text/hidden_states_penultimate"].values, &r["text_2/hidden_states_penultimate"].values);
    let want: Vec<f32> = a.chunks(8).zip(b.chunks(12)).flat_map(|(x, y)| x.iter().chain(y).copied()).collect();
    check("prompt embeddings (concatenated penultimate states)", &e.context, &want);
    check("pooled embeddings (text_encoder_2 text_embeds)", &e.pooled, &r["text_2/text_embeds"].values);
}

fn unet_call_matches(sd: &mut StableDiffusion, r: &HashMap<String, Ref>) {
    let cfg = sd.unet_cfg.clone();
    let mut c = pollster::block_on(sd.session.compile(|g| {
        let x = g.input("sample", &[2, 4, 8, 8]);
        let t = g.input("timestep", &[2]);
        let e = g.input("encoder_hidden_states", &[2, 77, 20]);
        let added = Added { text_embeds: g.input("text_embeds", &[2, 12]), time_ids: g.input("time_ids", &[2, 6]) };
        let o = g.scoped("unet", |g| unet_added(g, &cfg, x, t, Some(e), Some(added)))?;
        g.output(o);
        Ok(())
    }))
    .unwrap();
    for (input, key) in
        [("sample", "sample"), ("timestep", "timestep"), ("encoder_hidden_states", "encoder_hidden_states"), ("text_embeds", "text_embeds"), ("time_ids", "time_ids")]
    {
        sd.session.set_input(&mut c, input, HostTensor::F32(r[&format!("unet_call/{key}")].values.clone())).unwrap();
    }
    let out = pollster::block_on(sd.session.run(&c)).unwrap();
    let out = easel::models::session::f32s(out.into_iter().next().unwrap());
    check("one UNet call (timesteps 999 and 500, text_time conditioning)", &out, &r["unet_call/output"].values);
}

fn vae_matches(sd: &mut StableDiffusion, r: &HashMap<String, Ref>) {
    assert_eq!(sd.vae_cfg.scaling_factor, 0.13025);
    // decode() divides by the scaling factor; the reference z is already divided.
    let latents: Vec<f32> = r["vae_decode/z"].values.iter().map(|v| v * sd.vae_cfg.scaling_factor).collect();
    let out = pollster::block_on(sd.decode([1, 4, 8, 8], &latents)).unwrap();
    check("VAE decode", &out, &r["vae_decode/output"].values);
}

fn runs_match(sd: &mut StableDiffusion, r: &HashMap<String, Ref>) {
    let meta = meta();
    let runs = meta["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let name = run["name"].as_str().unwrap();
        let req = fixture_request(run, r);
        let out = pollster::block_on(generate(sd, &req, &mut |_| true)).unwrap_or_else(|e| panic!("{name}: {e}"));
        // With CFG the reference batch is [negative, positive]; ours keeps them apart.
        let embeds = &r[&format!("{name}/prompt_embeds")].values;
        let one = out.prompt_embeds.len();
        check(&format!("{name} prompt embeddings"), &out.prompt_embeds, &embeds[embeds.len() - one..]);
        if embeds.len() > one {
            let neg = &embeds[..one];
            if neg.iter().all(|&v| v == 0.0) {
                assert!(out.negative_prompt_embeds.iter().all(|&v| v == 0.0), "{name}: zero negative embeddings (force_zeros_for_empty_prompt)");
            } else {
                check(&format!("{name} negative embeddings"), &out.negative_prompt_embeds, neg);
            }
        }
        check(&format!("{name} final latents [{}]", sd.session.kind()), &out.latents, &r[&format!("{name}/final_latents")].values);
        check(&format!("{name} decoded image [{}]", sd.session.kind()), &out.decoded, &r[&format!("{name}/decoded_raw")].values);
    }
}

#[test]
fn sdxl_tiny_matches_diffusers_on_cpu() {
    let r = refs();
    let mut sd = sd_pipeline(&sdxl_repo(), StorageType::F32, false);
    text_matches(&mut sd, &r);
    unet_call_matches(&mut sd, &r);
    vae_matches(&mut sd, &r);
    runs_match(&mut sd, &r);
}

#[test]
fn sdxl_tiny_matches_diffusers_on_the_gpu() {
    let r = refs();
    let mut sd = sd_pipeline(&sdxl_repo(), StorageType::F32, true);
    text_matches(&mut sd, &r);
    unet_call_matches(&mut sd, &r);
    vae_matches(&mut sd, &r);
    runs_match(&mut sd, &r);
}

#[test]
fn sdxl_defaults_follow_the_model() {
    let model = easel::pipelines::native::load_model_dir(&sdxl_repo(), StorageType::F32).unwrap();
    assert_eq!(model.family, "stable-diffusion-xl");
    let g = easel::pipelines::family::Generator::new(&model.family, easel::models::Session::cpu(model.weights), &model.configs, &model.files).unwrap();
    let d = g.defaults();
    assert_eq!((d.family, d.width, d.height), ("stable-diffusion-xl", 16, 16), "sample_size 8 x the VAE's 2x");
    assert_eq!(d.scheduler, "EulerAncestralDiscreteScheduler");
}
