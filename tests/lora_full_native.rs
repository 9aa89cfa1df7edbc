//! Benchmark (ignored; run by hand): how long a LoRA takes to apply, rescale and remove on a
//! full-size SD 1.5-shaped model (CLIP-L text encoder, SD 1.5 UNet: 1.07B parameters of
//! random q8_0 weights, as the page would hold them) on the GPU backend (lavapipe without a
//! GPU) and the CPU backend. The LoRA is a typical kohya SD 1.5 one: rank 32 on all 192 UNet
//! attention / projection / feed-forward layers and the 72 text-encoder attention and MLP
//! layers. Removing it restores every weight's bytes, checked.
//!
//!     cargo test --release --test lora_full_native -- --ignored --nocapture

#![cfg(not(target_arch = "wasm32"))]

use std::time::Instant;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::clip::ClipTextConfig;
use easel::models::random::random_weight;
use easel::models::unet::UNetConfig;
use easel::models::{schema, LoraStack, Session};
use easel::ops::{StorageType, WeightStore};
use easel::weights::lora::Lora;
use easel::weights::rules::storage_for;

/// SD 1.5's configs: SD 2.1-base's with CLIP-L (768 wide, 12 layers, quick_gelu), cross
/// attention 768, 8 heads and conv projections.
fn configs() -> (ClipTextConfig, UNetConfig) {
    let mut te: serde_json::Value = serde_json::from_str(include_str!("fixtures/configs/stable-diffusion-2-1-base/text_encoder/config.json")).unwrap();
    for (k, v) in [("hidden_size", 768), ("intermediate_size", 3072), ("num_attention_heads", 12), ("num_hidden_layers", 12), ("projection_dim", 768)] {
        te[k] = v.into();
    }
    te["hidden_act"] = "quick_gelu".into();
    let mut unet: serde_json::Value = serde_json::from_str(include_str!("fixtures/configs/stable-diffusion-2-1-base/unet/config.json")).unwrap();
    unet["cross_attention_dim"] = 768.into();
    unet["attention_head_dim"] = 8.into();
    unet["use_linear_projection"] = false.into();
    (ClipTextConfig::from_json(&te).unwrap(), UNetConfig::from_json(&unet).unwrap())
}

/// The weights a typical SD 1.5 LoRA adapts.
fn adapted(name: &str) -> bool {
    let unet = name.starts_with("unet.")
        && name.contains(".attentions.")
        && [".to_q.", ".to_k.", ".to_v.", ".to_out.0.", ".proj_in.", ".proj_out.", ".ff.net.0.proj.", ".ff.net.2."].iter().any(|k| name.contains(k));
    let te = name.starts_with("text_encoder.") && [".q_proj.", ".k_proj.", ".v_proj.", ".out_proj.", ".fc1.", ".fc2."].iter().any(|k| name.contains(k));
    (unet || te) && name.ends_with(".weight")
}

#[test]
#[ignore = "benchmark: builds a 1.07B-parameter model; run by hand with --release"]
fn a_lora_applies_to_a_full_size_sd15_model_in_place() {
    let (te, unet) = configs();
    let mut list = schema::clip_text(&te);
    list.extend(schema::unet(&unet));
    let t = Instant::now();
    let mut store = WeightStore::new();
    for (name, shape) in &list {
        store.insert(name, shape, storage_for(name, shape, false, StorageType::Q8_0), &random_weight(name, shape)).unwrap();
    }
    let params: usize = list.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    println!(
        "SD 1.5 shape (text encoder + UNet): {:.0}M parameters, {:.2} GB q8_0, made in {:.1} s",
        params as f64 / 1e6,
        store.byte_size() as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );

    const RANK: usize = 32;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![];
    for (name, shape) in list.iter().filter(|(n, _)| adapted(n)) {
        let module = name.trim_end_matches(".weight");
        let inp: usize = shape[1..].iter().product();
        let mut down_shape = vec![RANK];
        down_shape.extend(&shape[1..]);
        let mut up_shape = vec![shape[0], RANK];
        up_shape.extend(std::iter::repeat_n(1, shape.len() - 2));
        tensors.push((format!("{module}.lora_A.weight"), down_shape, random_weight(&format!("{module}.down"), &[RANK, inp])));
        tensors.push((format!("{module}.lora_B.weight"), up_shape, random_weight(&format!("{module}.up"), &[shape[0], RANK])));
    }
    let refs: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())).collect();
    let file = easel::weights::safetensors::write_f32(&refs);
    let lora = Lora::parse("style.safetensors", &file).unwrap();
    let flops: usize = lora.layers.values().map(|l| 2 * l.rank * l.up.len() / l.rank * l.down.len() / l.rank).sum();
    println!("LoRA: {} layers, rank {RANK}, {:.1} MB as f32, {:.1} GFLOP per merge", lora.layers.len(), file.len() as f64 / 1e6, flops as f64 / 1e9);
    assert_eq!(lora.layers.len(), 264);

    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (mesa-vulkan-drivers)");
    let sessions = [("gpu", Session::gpu(ctx, &store).unwrap()), ("cpu", Session::cpu(store.clone()))];
    for (kind, mut session) in sessions {
        let targets: Vec<String> = store.names().into_iter().filter(|n| adapted(n)).map(String::from).collect();
        let before: Vec<Vec<u8>> = targets.iter().map(|n| pollster::block_on(session.read_weight(n)).unwrap().bytes).collect();
        let mut stack = LoraStack::new();
        let t = Instant::now();
        pollster::block_on(stack.add(&mut session, lora.clone(), 1.0)).unwrap();
        let add = t.elapsed().as_secs_f64();
        let t = Instant::now();
        pollster::block_on(stack.set_scale(&mut session, &lora.name, 0.6)).unwrap();
        let rescale = t.elapsed().as_secs_f64();
        let kept = stack.base_bytes();
        let t = Instant::now();
        pollster::block_on(stack.remove(&mut session, &lora.name)).unwrap();
        let remove = t.elapsed().as_secs_f64();
        println!("{kind} ({}): apply {add:.2} s, new scale {rescale:.2} s, remove {remove:.2} s; base weights kept while applied {:.0} MB", session.kind(), kept as f64 / 1e6);
        for (n, b) in targets.iter().zip(&before) {
            assert_eq!(&pollster::block_on(session.read_weight(n)).unwrap().bytes, b, "{kind}: {n} is restored");
        }
    }
}
