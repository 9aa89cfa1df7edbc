//! LoRA against diffusers (tests/fixtures/sd1-tiny-lora: a peft LoRA on sd1-tiny's UNet and
//! text encoder, `load_lora_weights` + `cross_attention_kwargs={"scale": s}`): every run
//! (scales 1.0 and 0.6, and the base model on the same noise) on the CPU backend and the GPU
//! (lavapipe without one), final latents within 1e-3 relative error; then the same LoRA on
//! q8_0 weights (merged, requantized) against the f32 result; then `easel generate --lora`.

#![cfg(not(target_arch = "wasm32"))]

mod sd;

use std::process::Command;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::{LoraStack, Session};
use easel::ops::{StorageType, WeightStore};
use easel::pipelines::native::load_model_dir;
use easel::pipelines::{generate, StableDiffusion};
use easel::weights::lora::Lora;
use easel::weights::rules::storage_for;
use sd::{fixture, references, rel_err};

const LORA: &str = "sd1-tiny-lora";

/// The final latents of `run` with the LoRA merged at the run's scale into sd1-tiny loaded
/// as `quant`; with `then_quantize`, loaded as f32, merged, then stored as that format
/// (what converting an already merged model gives).
fn run_latents_as(run: &serde_json::Value, quant: StorageType, gpu: bool, then_quantize: Option<StorageType>) -> Vec<f32> {
    let mut model = load_model_dir(&fixture("sd1-tiny"), quant).unwrap();
    if let Some(scale) = run["lora_scale"].as_f64() {
        let path = fixture(LORA).join("pytorch_lora_weights.safetensors");
        let lora = Lora::parse(&path.display().to_string(), &std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(lora.layers.len(), 40, "UNet and text-encoder attention layers");
        lora.merge_into(&mut model.weights, scale as f32).unwrap();
    }
    if let Some(q) = then_quantize {
        let mut store = WeightStore::new();
        for name in model.weights.names() {
            let w = model.weights.get(name).unwrap();
            store.insert(name, &w.shape, storage_for(name, &w.shape, false, q), &w.to_f32()).unwrap();
        }
        model.weights = store;
    }
    let session = if gpu {
        Session::gpu(pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (mesa-vulkan-drivers)"), &model.weights).unwrap()
    } else {
        Session::cpu(model.weights)
    };
    let mut sd = StableDiffusion::new(session, &model.configs, &model.files).unwrap();
    latents(&mut sd, run)
}

/// The final latents of `run` (its prompt, scheduler and saved noise) on `sd` as it is.
fn latents(sd: &mut StableDiffusion, run: &serde_json::Value) -> Vec<f32> {
    pollster::block_on(generate(sd, &sd::fixture_request(run, &references(LORA)), &mut |_| true)).unwrap().latents
}

fn run_latents(run: &serde_json::Value, quant: StorageType, gpu: bool) -> Vec<f32> {
    run_latents_as(run, quant, gpu, None)
}

fn runs() -> Vec<serde_json::Value> {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(LORA).join("reference.json")).unwrap()).unwrap();
    meta["runs"].as_array().unwrap().clone()
}

#[test]
fn lora_runs_match_diffusers_on_cpu_and_gpu() {
    let refs = references(LORA);
    for gpu in [false, true] {
        for run in runs() {
            let name = run["name"].as_str().unwrap();
            let want = &refs[&format!("{name}/final_latents")].values;
            let e = rel_err(&run_latents(&run, StorageType::F32, gpu), want);
            println!("{name} [{}]: final latents relative error {e:.2e}", if gpu { "gpu" } else { "cpu" });
            assert!(e <= 1e-3, "{name}: {e:e}");
        }
    }
    // The LoRA matters: scale 1 moves the latents well away from the base model's.
    let e = rel_err(&refs["lora_scale_1/final_latents"].values, &refs["no_lora_same_noise/final_latents"].values);
    assert!(e > 1e-2, "the LoRA changes the result ({e:e})");
}

/// q8_0 and q4_0 bases: the LoRA merged into the dequantized weights and requantized. Its
/// error against the f32 merge is about that of the merged model quantized once (what
/// converting a merged f32 model gives): requantizing adds little. Both printed, with the
/// base model's own quantization error for scale (this fixture's LoRA is strong: its
/// random factors widen the weights' range, and so each block's quantization step).
#[test]
fn lora_on_quantized_weights_errs_as_a_merged_model_quantized_once() {
    let runs = runs();
    let pick = |name: &str| runs.iter().find(|r| r["name"] == name).unwrap();
    let (with, without) = (pick("lora_scale_1"), pick("no_lora_same_noise"));
    let (f32_with, f32_without) = (run_latents(with, StorageType::F32, false), run_latents(without, StorageType::F32, false));
    for quant in [StorageType::Q8_0, StorageType::Q4_0] {
        let e_lora = rel_err(&run_latents(with, quant, false), &f32_with);
        let e_once = rel_err(&run_latents_as(with, StorageType::F32, false, Some(quant)), &f32_with);
        let e_base = rel_err(&run_latents(without, quant, false), &f32_without);
        println!("{} vs f32, final latents: LoRA merged into {0} weights {e_lora:.2e}; merged in f32 then quantized {e_once:.2e}; base model alone {e_base:.2e}", quant.name());
        assert!(e_lora <= 1.5 * e_once, "{}: requantizing adds error beyond one quantization: {e_lora:e} vs {e_once:e}", quant.name());
    }
}

#[test]
fn easel_generate_lora_records_it_in_the_png() {
    let out = std::env::temp_dir().join(format!("easel-lora-{}.png", std::process::id()));
    let lora = fixture(LORA).join("pytorch_lora_weights.safetensors");
    let status = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["generate", "--model"])
        .arg(fixture("sd1-tiny"))
        .args(["--prompt", "a fox", "--steps", "2", "--width", "16", "--height", "16", "--backend", "cpu", "--lora"])
        .arg(&lora)
        .args(["--lora-scale", "0.6", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(String::from_utf8_lossy(&status.stderr).contains("LoRA pytorch_lora_weights (40 layers"), "{}", String::from_utf8_lossy(&status.stderr));
    let png = std::fs::read(&out).unwrap();
    let text = String::from_utf8_lossy(&png);
    assert!(text.contains("a fox <lora:pytorch_lora_weights:0.6>"), "A1111's prompt form");
    assert!(text.contains("Lora hashes: \"pytorch_lora_weights: "), "A1111's Lora hashes field");
    // Wrong count of scales, and a LoRA for a model of another width, are refused by name.
    let bad = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["generate", "--model"])
        .arg(fixture("sd2-tiny"))
        .args(["--prompt", "a fox", "--steps", "1", "--width", "16", "--height", "16", "--backend", "cpu", "--lora"])
        .arg(&lora)
        .args(["--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("another architecture"), "{err}");
    std::fs::remove_file(&out).ok();
}

/// The fixture's LoRA renamed the way kohya / A1111 files name it (`lora_unet_…`,
/// `lora_te_text_model_…`, `.lora_down` / `.lora_up`, an `.alpha` per layer) merges into
/// exactly the same weights as the peft file.
#[test]
fn a_kohya_named_lora_merges_as_the_peft_one() {
    let path = fixture(LORA).join("pytorch_lora_weights.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let peft = Lora::parse("peft.safetensors", &bytes).unwrap();
    // Rename every tensor and write a safetensors file of f32s.
    let header = easel::weights::safetensors::parse("peft", &bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![];
    for (key, info) in &header.tensors {
        let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
        let values = easel::weights::safetensors::to_f32("peft", key, info, raw).unwrap();
        let (module, factor) = key.rsplit_once(".lora_").unwrap();
        let kohya = match module.split_once('.') {
            Some(("unet", rest)) => format!("lora_unet_{}", rest.replace('.', "_")),
            Some(("text_encoder", rest)) => format!("lora_te_text_model_{}", rest.replace('.', "_")),
            other => panic!("{other:?}"),
        };
        let factor = if factor == "A.weight" { "lora_down.weight" } else { "lora_up.weight" };
        if factor == "lora_down.weight" {
            tensors.push((format!("{kohya}.alpha"), vec![], vec![info.shape[0] as f32]));
        }
        tensors.push((format!("{kohya}.{factor}"), info.shape.clone(), values));
    }
    let refs: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())).collect();
    let file = easel::weights::safetensors::write_f32(&refs);
    let kohya = Lora::parse("kohya.safetensors", &file).unwrap();
    assert_eq!(kohya.layers.len(), peft.layers.len());

    let mut a = load_model_dir(&fixture("sd1-tiny"), StorageType::F32).unwrap().weights;
    let mut b = load_model_dir(&fixture("sd1-tiny"), StorageType::F32).unwrap().weights;
    peft.merge_into(&mut a, 0.6).unwrap();
    kohya.merge_into(&mut b, 0.6).unwrap();
    let base = load_model_dir(&fixture("sd1-tiny"), StorageType::F32).unwrap().weights;
    let changed = a.names().iter().filter(|n| a.get(n).unwrap().bytes != base.get(n).unwrap().bytes).count();
    assert_eq!(changed, 40, "every adapted layer changed");
    for n in a.names() {
        assert_eq!(a.get(n).unwrap().bytes, b.get(n).unwrap().bytes, "{n}");
    }
}

/// The page's way (models::LoraStack): one loaded model, a LoRA applied in place, rescaled,
/// stacked with a second and removed, with no reload. On the CPU backend and the GPU at f32
/// every run matches diffusers; the applied weights equal the CLI's merge byte for byte (f16,
/// q8_0 and q4_0 on the GPU too: read back exactly, requantized once); removing both restores
/// every weight's bytes exactly.
#[test]
fn a_lora_stack_rescales_stacks_and_removes_in_place() {
    let refs = references(LORA);
    let runs = runs();
    let pick = |name: &str| runs.iter().find(|r| r["name"] == name).unwrap();
    let path = fixture(LORA).join("pytorch_lora_weights.safetensors");
    let lora = Lora::parse(&path.display().to_string(), &std::fs::read(&path).unwrap()).unwrap();
    let diffusers = |sd: &mut StableDiffusion, run: &str, what: &str| {
        let e = rel_err(&latents(sd, pick(run)), &refs[&format!("{run}/final_latents")].values);
        println!("{what}: {run} final latents vs diffusers, relative error {e:.2e}");
        assert!(e <= 1e-3, "{what}: {run}: {e:e}");
    };
    let cases = [(false, StorageType::F32), (true, StorageType::F32), (true, StorageType::F16), (true, StorageType::Q8_0), (true, StorageType::Q4_0)];
    for (gpu, quant) in cases {
        let what = format!("{} {}", if gpu { "gpu" } else { "cpu" }, quant.name());
        let model = load_model_dir(&fixture("sd1-tiny"), quant).unwrap();
        let base = model.weights.clone();
        let session = if gpu {
            Session::gpu(pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (mesa-vulkan-drivers)"), &model.weights).unwrap()
        } else {
            Session::cpu(model.weights)
        };
        let mut sd = StableDiffusion::new(session, &model.configs, &model.files).unwrap();
        let mut stack = LoraStack::new();
        let t = std::time::Instant::now();
        pollster::block_on(stack.add(&mut sd.session, lora.clone(), 1.0)).unwrap();
        println!("{what}: LoRA applied in {:.1} ms, {} KB of base weights kept", t.elapsed().as_secs_f64() * 1e3, stack.base_bytes() / 1000);
        let mut merged = base.clone();
        lora.merge_into(&mut merged, 1.0).unwrap();
        let stored = |sd: &StableDiffusion, n: &str| pollster::block_on(sd.session.read_weight(n)).unwrap().bytes;
        let changed: Vec<&str> = base.names().into_iter().filter(|n| base.get(n).unwrap().bytes != merged.get(n).unwrap().bytes).collect();
        assert_eq!(changed.len(), 40);
        for n in &changed {
            assert_eq!(stored(&sd, n), merged.get(n).unwrap().bytes, "{what}: {n} as the CLI merges it");
        }
        if quant == StorageType::F32 {
            diffusers(&mut sd, "lora_scale_1", &what);
            pollster::block_on(stack.set_scale(&mut sd.session, &lora.name, 0.6)).unwrap();
            diffusers(&mut sd, "lora_scale_0_6", &what);
            // Stacked: the same file again under another name at 0.4 sums to scale 1.
            let mut twin = lora.clone();
            twin.name = "twin".into();
            pollster::block_on(stack.add(&mut sd.session, twin.clone(), 0.4)).unwrap();
            assert_eq!(stack.uses().iter().map(|u| (u.name.as_str(), u.scale)).collect::<Vec<_>>(), [(lora.name.as_str(), 0.6), ("twin", 0.4)]);
            diffusers(&mut sd, "lora_scale_1", &format!("{what}, 0.6 + 0.4 stacked"));
            let again = pollster::block_on(stack.add(&mut sd.session, twin, 1.0)).unwrap_err();
            assert!(again.contains("already applied"), "{again}");
            let nan = pollster::block_on(stack.set_scale(&mut sd.session, "twin", f32::NAN)).unwrap_err();
            assert!(nan.contains("finite"), "{nan}");
            pollster::block_on(stack.remove(&mut sd.session, "twin")).unwrap();
        }
        pollster::block_on(stack.remove(&mut sd.session, &lora.name)).unwrap();
        assert_eq!(stack.base_bytes(), 0);
        for n in &changed {
            assert_eq!(stored(&sd, n), base.get(n).unwrap().bytes, "{what}: {n} is the base's again");
        }
        if quant == StorageType::F32 {
            diffusers(&mut sd, "no_lora_same_noise", &what);
        }
    }
    // A LoRA for another model is refused and keeps nothing.
    let sd2 = load_model_dir(&fixture("sd2-tiny"), StorageType::F32).unwrap();
    let mut session = Session::cpu(sd2.weights);
    let mut stack = LoraStack::new();
    let err = pollster::block_on(stack.add(&mut session, lora, 1.0)).unwrap_err();
    assert!(err.contains("another architecture"), "{err}");
    assert!(stack.uses().is_empty() && stack.base_bytes() == 0);
}

/// An SDXL LoRA in kohya's own SDXL names (sgm UNet blocks, `lora_te1_` / `lora_te2_`, an
/// alpha of rank / 2) against diffusers (tests/fixtures/sdxl-tiny-lora, made by
/// scripts/fixtures/sdxl_lora_case.py): scales 1 and 0.5 and the base, applied in place on
/// the CPU backend and the GPU; the same LoRA as diffusers writes it back (peft names,
/// alphas in the metadata) merges into the same weights.
#[test]
fn an_sdxl_kohya_lora_matches_diffusers_and_its_peft_copy() {
    const CASE: &str = "sdxl-tiny-lora";
    let refs = references(CASE);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(CASE).join("reference.json")).unwrap()).unwrap();
    let read = |f: &str| {
        let path = fixture(CASE).join(f);
        Lora::parse(&path.display().to_string(), &std::fs::read(&path).unwrap()).unwrap()
    };
    let (kohya, peft) = (read("kohya_sdxl_lora.safetensors"), read("pytorch_lora_weights.safetensors"));
    assert_eq!((kohya.layers.len(), peft.layers.len()), (149, 149), "125 UNet layers and 12 in each text encoder");
    let model = load_model_dir(&sd::sdxl_repo(), StorageType::F32).unwrap();
    let (mut a, mut b) = (model.weights.clone(), model.weights.clone());
    kohya.merge_into(&mut a, 0.5).unwrap();
    peft.merge_into(&mut b, 0.5).unwrap();
    let changed = a.names().into_iter().filter(|n| a.get(n).unwrap().bytes != model.weights.get(n).unwrap().bytes).count();
    assert_eq!(changed, 149, "every layer found its weight");
    for n in a.names() {
        let e = rel_err(&a.get(n).unwrap().to_f32(), &b.get(n).unwrap().to_f32());
        assert!(e <= 1e-6, "{n}: the peft copy merges to other weights ({e:e})");
    }
    for gpu in [false, true] {
        let session = if gpu {
            Session::gpu(pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (mesa-vulkan-drivers)"), &model.weights).unwrap()
        } else {
            Session::cpu(model.weights.clone())
        };
        let mut sd = StableDiffusion::new(session, &model.configs, &model.files).unwrap();
        for (name, e) in pollster::block_on(sd::lora_runs::errors(&mut sd, &kohya, &meta, &refs)) {
            println!("sdxl-tiny-lora {name} [{}]: final latents relative error {e:.2e}", if gpu { "gpu" } else { "cpu" });
            assert!(e <= 1e-3, "{name}: {e:e}");
        }
    }
    let e = rel_err(&refs["lora_scale_1/final_latents"].values, &refs["no_lora_same_noise/final_latents"].values);
    assert!(e > 1e-2, "the LoRA changes the result ({e:e})");
}
