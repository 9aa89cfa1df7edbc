//! `easel bench load`: how long a full-size model takes from storage to ready, in seconds
//! per GB. It writes SD-Turbo's shape (SD 2.1-base's text encoder, UNet and VAE) with random
//! weights as a converted model folder once, then times the CLI's path from that folder to a
//! generator: read and verify every shard, open the backend's session, build the pipeline.
//! The page's path (Cache Storage to ready) is timed on the same folder by
//! `node scripts/bench/run-browser.mjs --load`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use easel::bench::decoder::SD21_VAE_CONFIG;
use easel::bench::unet::SD21_UNET_CONFIG;
use easel::models::random::random_weight;
use easel::models::schema;
use easel::models::{clip::ClipTextConfig, unet::UNetConfig, vae::VaeConfig};
use easel::ops::StorageType;
use easel::pipelines::native::load_model_dir;
use easel::pipelines::Generator;
use easel::weights::builder::{ModelBuilder, ModelInfo};

use super::generate::open_session;

const TEXT_ENCODER: &str = include_str!("../../../tests/fixtures/configs/stable-diffusion-2-1-base/text_encoder/config.json");
const SCHEDULER: &str = include_str!("../../../tests/fixtures/configs/sd-turbo/scheduler/scheduler_config.json");
/// The tokenizer files every SD 2.x repository carries.
const TOKENIZER_FILES: [&str; 4] = ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"];

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("a committed config is JSON")
}

/// Writes the random SD-Turbo model into `out` (manifest.json, shards, tokenizer files),
/// one shard at a time.
fn write_model(out: &Path, quant: StorageType, tokenizer: &Path) -> Result<(), String> {
    let configs: BTreeMap<String, serde_json::Value> =
        [("text_encoder", json(TEXT_ENCODER)), ("unet", json(SD21_UNET_CONFIG)), ("vae", json(SD21_VAE_CONFIG)), ("scheduler", json(SCHEDULER))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut weights = schema::clip_text(&ClipTextConfig::from_json(&configs["text_encoder"]).map_err(|e| err(&e))?);
    weights.extend(schema::unet(&UNetConfig::from_json(&configs["unet"]).map_err(|e| err(&e))?));
    weights.extend(schema::vae(&VaeConfig::from_json(&configs["vae"]).map_err(|e| err(&e))?));
    let name = format!("sd-turbo-random-{}", quant.name());
    let mut info = ModelInfo { family: "stable-diffusion".into(), name, configs, files: vec![], source_bytes: 0 };
    let mut files = vec![];
    for f in TOKENIZER_FILES {
        let path = tokenizer.join(f);
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e} (--tokenizer names a folder with {})", path.display(), TOKENIZER_FILES.join(", ")))?;
        info.add_file(&format!("tokenizer/{f}"), &bytes);
        files.push((format!("tokenizer/{f}"), bytes));
    }
    fs::create_dir_all(out.join("tokenizer")).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |file: &str, bytes: &[u8]| fs::write(out.join(file), bytes).map_err(|e| format!("{}: {e}", out.join(file).display()));
    let mut builder = ModelBuilder::new(quant, 32 << 20);
    for (name, shape) in &weights {
        // The source is "f32": norms and biases stay f32, linear and conv weights take `quant`.
        let values = random_weight(name, shape);
        info.source_bytes += 4 * values.len() as u64;
        builder.push_f32(name, shape, &values, false);
        for (entry, bytes) in builder.take_ready() {
            write(&entry.file, &bytes)?;
        }
    }
    let done = builder.finish(info);
    for (entry, bytes) in done.shards {
        write(&entry.file, &bytes)?;
    }
    for (path, bytes) in files {
        write(&path, &bytes)?;
    }
    // The manifest last: a folder interrupted while writing has none, and is written again.
    write("manifest.json", done.manifest.to_json_pretty().as_bytes())?;
    println!("{}", done.summary);
    Ok(())
}

pub async fn run(out: &Path, quant: &str, backend: &str, tokenizer: &Path) -> Result<(), String> {
    let quant = StorageType::from_name(quant).ok_or_else(|| format!("unknown --quant '{quant}': use f32, f16, q8_0 or q4_0"))?;
    if !out.join("manifest.json").is_file() {
        let t0 = Instant::now();
        write_model(out, quant, tokenizer)?;
        println!("wrote {} in {:.1} s", out.display(), t0.elapsed().as_secs_f64());
    } else {
        println!("{}: already written (delete the folder to write it again)", out.display());
    }
    // The CLI's own path: shards read and verified, session opened, pipeline built.
    let t0 = Instant::now();
    let model = load_model_dir(out, quant).map_err(|e| e.to_string())?;
    let read = t0.elapsed().as_secs_f64();
    let gb = model.weights.byte_size() as f64 / 1e9;
    let session = open_session(backend, model.weights).await.map_err(|e| e.to_string())?;
    let kind = session.kind();
    let opened = t0.elapsed().as_secs_f64();
    let _generator = Generator::new(&model.family, session, &model.configs, &model.files).map_err(|e| e.to_string())?;
    let ready = t0.elapsed().as_secs_f64();
    println!("{} ({:.2} GB stored), folder to ready on the {kind} backend (page cache is a separate run: scripts/bench/run-browser.mjs --load):", model.name, gb);
    println!("  read + sha256   {read:>6.2} s");
    println!("  session         {:>6.2} s", opened - read);
    println!("  pipeline        {:>6.2} s", ready - opened);
    println!("  ready after     {:>6.2} s = {:.2} s per GB", ready, ready / gb);
    Ok(())
}
