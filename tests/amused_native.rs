//! aMUSEd natively against diffusers (tests/fixtures/amused-tiny, copied from the shared
//! fixtures): CLIPTextModelWithProjection's text_embeds and penultimate hidden states, one
//! UVit2DModel call's logits (relative error <= 1e-4), on the CPU backend and the GPU
//! (lavapipe).

#![cfg(not(target_arch = "wasm32"))]

#[allow(dead_code)]
#[path = "sd/refs.rs"]
mod refs;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::clip::{eos_one_hot, text_embeds, text_model, ClipTextConfig};
use easel::models::session::f32s;
use easel::models::uvit::{uvit, UVitConfig, UVitInputs};
use easel::models::Session;
use easel::ops::cpu::HostTensor;
use easel::ops::StorageType;
use easel::pipelines::amused::{sample_tokens, Amused, Draws, Sampling, StepTrace, TextCond};
use easel::pipelines::masking::{AmusedScheduler, StepDraws};
use easel::pipelines::native::{load_model_dir, ModelFiles};
use easel::pipelines::Generator;
use refs::{parse_references, rel_err, Ref};

const TOL: f64 = 1e-4;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amused-tiny")
}

fn references() -> HashMap<String, Ref> {
    parse_references("amused-tiny", &std::fs::read(fixture().join("reference.safetensors")).unwrap())
}

fn model() -> ModelFiles {
    load_model_dir(&fixture(), StorageType::F32).unwrap()
}

fn session(m: &ModelFiles, on_gpu: bool) -> Session {
    if on_gpu {
        let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)");
        Session::gpu(ctx, &m.weights).unwrap()
    } else {
        Session::cpu(m.weights.clone())
    }
}

fn kind(on_gpu: bool) -> &'static str {
    if on_gpu {
        "gpu"
    } else {
        "cpu"
    }
}

fn close(name: &str, on_gpu: bool, got: &[f32], want: &Ref) {
    assert_eq!(got.len(), want.values.len(), "{name}: length");
    let e = rel_err(got, &want.values);
    println!("amused-tiny {name} [{}]: relative error {e:.2e}", kind(on_gpu));
    assert!(e <= TOL, "{name} on {}: relative error {e:e} > {TOL:e}", kind(on_gpu));
}

fn text_encoder(on_gpu: bool) {
    let (m, r) = (model(), references());
    let cfg = ClipTextConfig::from_json(&m.configs["text_encoder"]).unwrap();
    let mut s = session(&m, on_gpu);
    let ids_ref = &r["text/input_ids"];
    let (b, l) = (ids_ref.shape[0], ids_ref.shape[1]);
    let ids: Vec<u32> = ids_ref.values.iter().map(|&v| v as u32).collect();
    let c = pollster::block_on(s.compile(|g| {
        let x = g.input_u32("ids", &[b, l]);
        let sel = g.input("eos_select", &[b, 1, l]);
        g.scoped("text_encoder", |g| -> Result<(), easel::error::OpError> {
            let o = text_model(g, &cfg, x, true)?;
            let e = text_embeds(g, &cfg, o.last_hidden_state, sel)?;
            g.output(e);
            g.output(o.penultimate);
            g.output(o.last_hidden_state);
            Ok(())
        })
    }))
    .unwrap();
    let mut c = c;
    s.set_input(&mut c, "ids", HostTensor::U32(ids.clone())).unwrap();
    s.set_input(&mut c, "eos_select", HostTensor::F32(eos_one_hot(&ids, l))).unwrap();
    let out: Vec<Vec<f32>> = pollster::block_on(s.run(&c)).unwrap().into_iter().map(f32s).collect();
    close("text/text_embeds", on_gpu, &out[0], &r["text/text_embeds"]);
    close("text/hidden_states_penultimate", on_gpu, &out[1], &r["text/hidden_states_penultimate"]);
    close("text/last_hidden_state", on_gpu, &out[2], &r["text/last_hidden_state"]);
}

fn transformer_call(on_gpu: bool) {
    let (m, r) = (model(), references());
    let cfg = UVitConfig::from_json(&m.configs["transformer"]).unwrap();
    let mut s = session(&m, on_gpu);
    let ids = &r["transformer_call/input_ids"];
    let ehs = &r["transformer_call/encoder_hidden_states"];
    let pooled = &r["transformer_call/pooled_text_emb"];
    let mc = &r["transformer_call/micro_conds"];
    let mut c = pollster::block_on(s.compile(|g| {
        let x = UVitInputs {
            ids: g.input_u32("ids", &ids.shape),
            encoder_hidden_states: g.input("ehs", &ehs.shape),
            pooled_text_emb: g.input("pooled", &pooled.shape),
            micro_conds: g.input("micro_conds", &mc.shape),
        };
        let o = g.scoped("transformer", |g| uvit(g, &cfg, &x))?;
        g.output(o);
        Ok(())
    }))
    .unwrap();
    s.set_input(&mut c, "ids", HostTensor::U32(ids.values.iter().map(|&v| v as u32).collect())).unwrap();
    s.set_input(&mut c, "ehs", HostTensor::F32(ehs.values.clone())).unwrap();
    s.set_input(&mut c, "pooled", HostTensor::F32(pooled.values.clone())).unwrap();
    s.set_input(&mut c, "micro_conds", HostTensor::F32(mc.values.clone())).unwrap();
    let out = f32s(pollster::block_on(s.run(&c)).unwrap().remove(0));
    close("transformer_call/logits", on_gpu, &out, &r["transformer_call/logits"]);
}

#[test]
fn text_encoder_matches_diffusers_on_cpu() {
    text_encoder(false);
}

#[test]
fn text_encoder_matches_diffusers_on_gpu() {
    text_encoder(true);
}

#[test]
fn transformer_matches_diffusers_on_cpu() {
    transformer_call(false);
}

#[test]
fn transformer_matches_diffusers_on_gpu() {
    transformer_call(true);
}

fn ints(r: &Ref) -> Vec<u32> {
    r.values.iter().map(|&v| v as u32).collect()
}

/// The reference's draws for step `i` (none for the Gumbel noise on the last step).
fn draws(r: &HashMap<String, Ref>, i: usize) -> (Vec<f32>, Option<Vec<f32>>) {
    (r[&format!("run/multinomial_u_{i}")].values.clone(), r.get(&format!("run/gumbel_u_{i}")).map(|g| g.values.clone()))
}

#[test]
fn scheduler_steps_match_diffusers_exactly() {
    let r = references();
    let steps = r["run/timesteps"].values.len();
    let sched = AmusedScheduler::new(71, true, steps);
    assert_eq!(sched.temperatures, r["run/temperatures"].values, "temperatures");
    let (n, k) = (64, 64);
    for i in 0..steps {
        let logits = &r["run/step_model_output"].values[i * k * n..(i + 1) * k * n];
        let sample = &ints(&r["run/step_sample_in"])[i * n..(i + 1) * n];
        let (u, gu) = draws(&r, i);
        let out = sched.step(i, 1, logits, sample, &StepDraws { sample_u: &u, gumbel_u: gu.as_deref() });
        let want_pred = &ints(&r["run/step_pred_original_sample"])[i * n..(i + 1) * n];
        let want_prev = &ints(&r["run/step_prev_sample"])[i * n..(i + 1) * n];
        let wrong = |a: &[u32], b: &[u32]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        println!("step {i}: pred_original {} wrong, prev_sample {} wrong", wrong(&out.pred_original, want_pred), wrong(&out.prev_sample, want_prev));
        assert_eq!(out.pred_original, want_pred, "step {i} pred_original_sample");
        assert_eq!(out.prev_sample, want_prev, "step {i} prev_sample");
    }
}

/// The whole run from the reference's draws: per-step logits, final tokens exact, decode.
fn run(on_gpu: bool) {
    let (m, r) = (model(), references());
    let mut a = Amused::new(session(&m, on_gpu), &m.configs).unwrap();
    let ids = ints(&r["text/input_ids"]);
    let (embeds, pen) = pollster::block_on(a.encode_text(&ids, 77)).unwrap();
    let (pe, ph) = (embeds.len() / 2, pen.len() / 2);
    let text = TextCond { cond: (embeds[..pe].to_vec(), pen[..ph].to_vec()), uncond: Some((embeds[pe..].to_vec(), pen[ph..].to_vec())) };
    let mut saved = BTreeMap::new();
    for i in 0..4 {
        let (u, gu) = draws(&r, i);
        saved.insert(format!("sample_u_{i}"), u);
        if let Some(gu) = gu {
            saved.insert(format!("gumbel_u_{i}"), gu);
        }
    }
    let want_logits = &r["run/transformer_logits"];
    let step_len = want_logits.values.len() / 4;
    let mut on_step = |t: StepTrace| {
        let want = &want_logits.values[t.step * step_len..(t.step + 1) * step_len];
        let e = rel_err(t.logits, want);
        println!("amused-tiny run/transformer_logits step {} [{}]: relative error {e:.2e}", t.step, kind(on_gpu));
        assert!(e <= TOL, "step {} logits: {e:e}", t.step);
        let n = t.prev_sample.len();
        assert_eq!(t.pred_original, &ints(&r["run/step_pred_original_sample"])[t.step * n..(t.step + 1) * n], "step {} pred_original_sample", t.step);
        assert_eq!(t.prev_sample, &ints(&r["run/step_prev_sample"])[t.step * n..(t.step + 1) * n], "step {} prev_sample", t.step);
        true
    };
    let tokens = pollster::block_on(sample_tokens(
        &mut a,
        &text,
        &Sampling { grid: [8, 8], steps: 4, guidance: 10.0, micro_conds: [16.0, 16.0, 0.0, 0.0, 6.0], previews: false },
        &mut Draws::Saved(saved),
        &mut on_step,
    ))
    .unwrap();
    assert_eq!(tokens, ints(&r["run/final_tokens"]), "final tokens on {}", kind(on_gpu));
    println!("amused-tiny run/final_tokens [{}]: exact", kind(on_gpu));
    let decoded = pollster::block_on(a.decode([1, 8, 8], &tokens)).unwrap();
    close("run/decoded_raw", on_gpu, &decoded, &r["run/decoded_raw"]);
    let image: Vec<f32> = decoded.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    let want = &r["run/image_np"].values; // NHWC
    let nchw: Vec<f32> = (0..3).flat_map(|c| (0..256).map(move |p| want[p * 3 + c])).collect();
    close("run/image_np", on_gpu, &image, &Ref { shape: vec![1, 3, 16, 16], values: nchw });
}

#[test]
fn run_matches_diffusers_on_cpu() {
    run(false);
}

#[test]
fn run_matches_diffusers_on_gpu() {
    run(true);
}

/// The fixture's draws under the names `--noise` files use.
fn saved_draws(r: &HashMap<String, Ref>) -> BTreeMap<String, Vec<f32>> {
    let mut d = BTreeMap::new();
    for i in 0..4 {
        d.insert(format!("sample_u_{i}"), r[&format!("run/multinomial_u_{i}")].values.clone());
        if let Some(g) = r.get(&format!("run/gumbel_u_{i}")) {
            d.insert(format!("gumbel_u_{i}"), g.values.clone());
        }
    }
    d
}

const PROMPT: &str = "a photo of an astronaut riding a horse on mars";

/// The whole pipeline as the CLI and the page run it: the prompt tokenized here, the
/// engine's family dispatch, per-step previews, and the image clipped to [0, 1].
fn generator_run(on_gpu: bool) {
    let r = references();
    let m = model();
    assert_eq!(m.family, "amused");
    let mut g = easel::pipelines::Generator::new(&m.family, session(&m, on_gpu), &m.configs, &m.files).unwrap();
    let d = g.defaults();
    assert_eq!((d.steps, d.guidance, d.width, d.conditional, d.init_image), (12, 10.0, 16, true, true));
    let req =
        easel::pipelines::Request { steps: 4, guidance: 10.0, width: 16, height: 16, previews: true, token_draws: Some(saved_draws(&r)), ..easel::pipelines::Request::new(PROMPT) };
    let mut previews = 0;
    let out = pollster::block_on(g.generate(&req, &mut |p| {
        if let easel::pipelines::Progress::Step { preview: Some(p), .. } = p {
            assert_eq!((p.kind, p.image.width), ("tokens", 16));
            previews += 1;
        }
        true
    }))
    .unwrap();
    assert_eq!(previews, 4);
    // The CLI prints this peak: every compiled GPU graph counts (none on the CPU).
    assert_eq!(g.activation_bytes() > 0, on_gpu, "peak GPU activation bytes {}", g.activation_bytes());
    let tokens: Vec<u32> = out.latents.iter().map(|&t| t as u32).collect();
    assert_eq!(tokens, ints(&r["run/final_tokens"]), "final tokens [{}]", kind(on_gpu));
    close("run/decoded_raw (via Generator)", on_gpu, &out.decoded, &r["run/decoded_raw"]);
    let want = &r["run/image_np"].values;
    let worst = (0..16 * 16 * 3).map(|i| (out.images[0].data[(i / 3) * 4 + i % 3] as f32 / 255.0 - want[i]).abs()).fold(0f32, f32::max);
    assert!(worst <= 0.5 / 255.0 + 1e-4, "pixel off by {worst}");
}

#[test]
fn generator_reproduces_the_diffusers_run_on_cpu() {
    generator_run(false);
}

#[test]
fn generator_reproduces_the_diffusers_run_on_gpu() {
    generator_run(true);
}

#[test]
fn cli_generate_reproduces_the_run_from_a_noise_file() {
    let r = references();
    let dir = std::env::temp_dir().join(format!("easel-amused-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let noise = dir.join("noise.safetensors");
    let draws = saved_draws(&r);
    let shapes: Vec<(String, [usize; 1])> = draws.iter().map(|(k, v)| (k.clone(), [v.len()])).collect();
    let list: Vec<(&str, &[usize], &[f32])> = draws.iter().zip(&shapes).map(|((k, v), (_, s))| (k.as_str(), &s[..], v.as_slice())).collect();
    easel::pipelines::native::write_tensors(&noise, &list).unwrap();
    let tokens = dir.join("tokens.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["generate", "--model", fixture().to_str().unwrap(), "--prompt", PROMPT, "--steps", "4", "--guidance", "10", "--width", "16", "--height", "16"])
        .args(["--backend", "cpu", "--noise", noise.to_str().unwrap(), "--save-tokens", tokens.to_str().unwrap(), "--out", dir.join("out.png").to_str().unwrap()])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (shape, got) = easel::pipelines::native::read_int_tensor(&tokens, "tokens").unwrap();
    assert_eq!(shape, [8, 8]);
    let want: Vec<i64> = ints(&r["run/final_tokens"]).into_iter().map(i64::from).collect();
    assert_eq!(got, want);
}

/// Inpainting (diffusers' AmusedInpaintPipeline): the init image's VQ codes with the
/// brushed tokens masked, then the MaskGIT steps fill only those. A mask over everything
/// at strength 1 starts from a fully masked grid: exactly the text-to-image run.
fn inpaint(on_gpu: bool) {
    use easel::pipelines::{FloatImage, Request};
    let r = references();
    let m = model();
    let mut g = easel::pipelines::Generator::new(&m.family, session(&m, on_gpu), &m.configs, &m.files).unwrap();
    // Any picture will do as the init image: the fixture's own output.
    let image = FloatImage { shape: [1, 3, 16, 16], values: r["run/decoded_raw"].values.iter().map(|v| v.clamp(0.0, 1.0)).collect() };
    let req = |mask: Vec<f32>| Request {
        steps: 4,
        guidance: 10.0,
        width: 16,
        height: 16,
        strength: 1.0,
        init_image: Some(image.clone()),
        mask: Some(FloatImage { shape: [1, 1, 16, 16], values: mask }),
        token_draws: Some(saved_draws(&r)),
        ..Request::new(PROMPT)
    };
    let tokens = |req: &Request, g: &mut easel::pipelines::Generator| -> Vec<u32> {
        let out = pollster::block_on(g.generate(req, &mut |_| true)).unwrap();
        out.latents.iter().map(|&t| t as u32).collect()
    };
    let all = tokens(&req(vec![1.0; 256]), &mut g);
    assert_eq!(all, ints(&r["run/final_tokens"]), "an all-white mask [{}]", kind(on_gpu));
    // The left half brushed: the right half keeps the image's codes.
    let left: Vec<f32> = (0..256).map(|i| if i % 16 < 8 { 1.0 } else { 0.0 }).collect();
    let got = tokens(&req(left), &mut g);
    let Generator::Amused(p) = &mut g else { panic!("an aMUSEd generator") };
    let codes = pollster::block_on(p.model.encode([1, 3, 16, 16], image.values.clone())).unwrap();
    let right = |t: &[u32]| -> Vec<u32> { (0..64).filter(|i| i % 8 >= 4).map(|i| t[i]).collect() };
    assert_eq!(right(&got), right(&codes), "unbrushed tokens [{}]", kind(on_gpu));
    assert!((0..64).filter(|i| i % 8 < 4).all(|i| got[i] != p.model.mask_token_id), "every brushed token is filled");
    // No mask: refused with the reason.
    let err = pollster::block_on(g.generate(&Request { mask: None, ..req(vec![]) }, &mut |_| true)).err().unwrap().to_string();
    assert_eq!(err, "request: aMUSEd repaints the masked area of an init image: give a mask too (white = repaint)");
}

#[test]
fn inpainting_matches_text_to_image_under_a_full_mask_and_keeps_unmasked_codes_on_cpu() {
    inpaint(false);
}

#[test]
fn inpainting_matches_text_to_image_under_a_full_mask_and_keeps_unmasked_codes_on_gpu() {
    inpaint(true);
}
