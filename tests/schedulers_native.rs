//! The schedulers against diffusers 0.42.1 (tests/fixtures/*/reference.*): every recorded
//! pipeline run's timesteps, init_noise_sigma, scale_model_input and step, plus hand-computed
//! checks for what the fixtures do not cover and the error messages.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use easel::rng::Rng;
use easel::schedulers::config::{Config, NoiseSchedule, ZeroSnr, DEFAULT_BETAS};
use easel::schedulers::create;
use easel::weights::safetensors;
use serde_json::{json, Value};

/// The largest relative error (max |a − b| / max |b|) a step may have.
const TOL: f64 = 1e-5;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

fn read_json(p: &str) -> Value {
    serde_json::from_slice(&fs::read(fixture(p)).unwrap()).unwrap()
}

/// A fixture case: reference.json and the float tensors of reference.safetensors.
struct Case {
    json: Value,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Case {
    fn load(case: &str) -> Self {
        let bytes = fs::read(fixture(&format!("{case}/reference.safetensors"))).unwrap();
        let h = safetensors::parse(case, &bytes).unwrap();
        let mut tensors = HashMap::new();
        for (name, info) in &h.tensors {
            let raw = &bytes[(h.data_start + info.begin) as usize..(h.data_start + info.end) as usize];
            if let Ok(v) = safetensors::to_f32(case, name, info, raw) {
                tensors.insert(name.clone(), (info.shape.clone(), v));
            }
        }
        Self { json: read_json(&format!("{case}/reference.json")), tensors }
    }

    fn get(&self, name: &str) -> Option<&[f32]> {
        self.tensors.get(name).map(|t| t.1.as_slice())
    }

    fn tensor(&self, name: &str) -> &[f32] {
        self.get(name).unwrap_or_else(|| panic!("fixture has no tensor {name}"))
    }

    fn shape(&self, name: &str) -> &[usize] {
        &self.tensors[name].0
    }
}

fn rel_err(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let diff = ours.iter().zip(reference).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
    let scale = reference.iter().map(|b| b.abs() as f64).fold(0.0, f64::max);
    diff / scale.max(1e-30)
}

/// Replays one pipeline run's scheduler calls; returns the worst relative error.
fn check_run(case: &Case, run: &Value) -> f64 {
    let name = run["name"].as_str().unwrap();
    let steps = run["call"]["num_inference_steps"].as_u64().unwrap() as usize;
    let mut s = create(&run["scheduler"], None, steps).unwrap();
    let t = |suffix: &str| case.tensor(&format!("{name}/{suffix}"));

    assert_eq!(s.timesteps(), t("scheduler_timesteps"), "{name}: timesteps");
    let mut worst = 0.0f64;
    if let Some(reference) = case.get(&format!("{name}/scheduler_sigmas")) {
        worst = worst.max(rel_err(s.sigmas().expect("a sigma scheduler"), reference));
    }
    // Recorded for the runs that start from noise (img2img starts from the image).
    if let Some(init) = run["init_noise_sigma"].as_f64() {
        assert!((s.init_noise_sigma() as f64 - init).abs() <= 1e-7 * init, "{name}: init_noise_sigma {} vs {init}", s.init_noise_sigma());
    }

    // img2img and inpaint start part-way: the UNet's timesteps are a suffix.
    let calls = run["num_scheduler_steps"].as_u64().unwrap() as usize;
    let begin = s.timesteps().len() - calls;
    assert_eq!(&s.timesteps()[begin..], t("unet_timesteps"), "{name}: UNet timesteps");

    let sample_in = t("step_sample_in");
    let n = sample_in.len() / calls;
    if let Some(latents) = case.get(&format!("{name}/init_latents")) {
        let scaled: Vec<f32> = latents.iter().map(|x| x * s.init_noise_sigma()).collect();
        worst = worst.max(rel_err(&scaled, &sample_in[..n]));
    }
    if let Some(noise) = case.get(&format!("{name}/randn_draw_1")) {
        // img2img: init = scaling_factor · (mean + std · draw0), noised to the first timestep.
        let sf = case.json["model_configs"]["vae"]["scaling_factor"].as_f64().unwrap() as f32;
        let (mean, std, draw) = (t("posterior_mean"), t("posterior_std"), t("randn_draw_0"));
        let init: Vec<f32> = (0..n).map(|i| sf * (mean[i] + std[i] * draw[i])).collect();
        let e = rel_err(&s.add_noise(&init, noise, begin), &sample_in[..n]);
        println!("{name}: add_noise rel err {e:.2e}");
        worst = worst.max(e);
    }

    let (unet_in, shape) = (t("unet_inputs"), case.shape(&format!("{name}/unet_inputs")));
    let per_call: usize = shape[1..].iter().product();
    let (model_out, prev_ref) = (t("step_model_output"), t("step_prev_sample"));
    let mut rng = Rng::new(0);
    for k in 0..calls {
        let idx = begin + k;
        let x = &sample_in[k * n..(k + 1) * n];
        // Batch 0, the first 4 channels (inpainting appends mask and masked-image latents).
        let e_in = rel_err(&s.scale_model_input(x, idx), &unet_in[k * per_call..k * per_call + n]);
        let prev = s.step(&model_out[k * n..(k + 1) * n], idx, x, &mut rng);
        let e_step = rel_err(&prev, &prev_ref[k * n..(k + 1) * n]);
        assert!(e_in <= TOL && e_step <= TOL, "{name} step {k}: scale_model_input {e_in:.2e}, step {e_step:.2e}");
        worst = worst.max(e_in).max(e_step);
    }
    println!("{name} ({}): worst relative error {worst:.2e} over {calls} steps", s.name());
    worst
}

fn check_case(case: &str) {
    let c = Case::load(case);
    let runs = c.json["runs"].as_array().unwrap();
    assert!(!runs.is_empty());
    for run in runs {
        assert!(check_run(&c, run) <= TOL);
    }
}

#[test]
fn sd1_tiny_runs_match_diffusers() {
    check_case("sd1-tiny");
}

#[test]
fn sd2_tiny_runs_match_diffusers() {
    check_case("sd2-tiny");
}

#[test]
fn sd_inpaint_tiny_runs_match_diffusers() {
    check_case("sd-inpaint-tiny");
}

#[test]
fn alphas_cumprod_bit_exact() {
    let c = Case::load("sd1-tiny");
    let cfg = read_json("sd1-tiny/scheduler/scheduler_config.json");
    let s = NoiseSchedule::from_config(&Config::new(cfg.as_object().unwrap()), "DDPMScheduler", &DEFAULT_BETAS, ZeroSnr::Rescale).unwrap();
    assert_eq!(s.alphas_cumprod, c.tensor("ddpm/alphas_cumprod"));
}

#[test]
fn repo_configs_convert_like_from_config() {
    let sd1 = Case::load("sd1-tiny");
    let sd2 = Case::load("sd2-tiny");
    let cfg1 = read_json("sd1-tiny/scheduler/scheduler_config.json");
    let cfg2 = read_json("sd2-tiny/scheduler/scheduler_config.json");
    let euler = create(&cfg1, Some("euler"), 5).unwrap();
    assert_eq!(euler.timesteps(), sd1.tensor("txt2img_euler/scheduler_timesteps"));
    assert_eq!(euler.sigmas().unwrap(), sd1.tensor("txt2img_euler/scheduler_sigmas"));
    assert_eq!(create(&cfg1, Some("dpmpp_2m"), 5).unwrap().timesteps(), sd1.tensor("txt2img_dpmpp2m/scheduler_timesteps"));
    assert_eq!(create(&cfg1, None, 5).unwrap().timesteps(), sd1.tensor("txt2img_pndm/scheduler_timesteps"));
    assert_eq!(create(&cfg1, Some("lcm"), 1).unwrap().timesteps(), sd1.tensor("txt2img_lcm_1step/scheduler_timesteps"));
    assert_eq!(create(&cfg2, Some("ddim"), 4).unwrap().timesteps(), sd2.tensor("txt2img_ddim/scheduler_timesteps"));
    assert_eq!(create(&cfg2, None, 1).unwrap().timesteps(), sd2.tensor("turbo_1step/scheduler_timesteps"));
    // SD 2.1-base's real config has no timestep_spacing: PNDM's own default is "leading",
    // but Euler built from it takes Euler's default, "linspace" (np.linspace(0, 999, 5)).
    let real = read_json("configs/stable-diffusion-2-1-base/scheduler/scheduler_config.json");
    assert_eq!(create(&real, None, 5).unwrap().timesteps(), [801.0, 601.0, 601.0, 401.0, 201.0, 1.0]);
    let e = create(&real, Some("euler"), 5).unwrap();
    assert_eq!(e.timesteps(), [999.0, 749.25, 499.5, 249.75, 0.0]);
    assert_eq!(e.init_noise_sigma(), e.sigmas().unwrap()[0], "linspace: init sigma is σ_max itself");
}

/// σ(t) = sqrt((1 − ᾱ_t)/ᾱ_t) from the reference ᾱ, in f64.
fn train_sigma(ac: &[f32], t: usize) -> f64 {
    let a = ac[t] as f64;
    ((1.0 - a) / a).sqrt()
}

/// Karras et al. (2022) eq. 5 with ρ = 7, written out for `n` steps.
// The platform's own functions (or candle's) as the reference: a second implementation.
#[allow(clippy::disallowed_methods)]
fn karras_by_hand(min: f64, max: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| (max.powf(1.0 / 7.0) + i as f64 / (n - 1) as f64 * (min.powf(1.0 / 7.0) - max.powf(1.0 / 7.0))).powi(7)).collect()
}

#[test]
fn karras_sigmas_by_hand() {
    let ac = Case::load("sd1-tiny").tensor("ddpm/alphas_cumprod").to_vec();
    let cfg = read_json("sd1-tiny/scheduler/scheduler_config.json");
    // DPM++ 2M Karras spans the whole training range, σ(999) down to σ(0).
    let dpm = create(&cfg, Some("dpmpp_2m_karras"), 4).unwrap();
    assert_eq!(dpm.name(), "dpmpp_2m_karras");
    let want = karras_by_hand(train_sigma(&ac, 0), train_sigma(&ac, 999), 4);
    let got = dpm.sigmas().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-6 * w, "{got:?} vs {want:?}");
    }
    assert_eq!(got[4], 0.0);
    let ts = dpm.timesteps();
    assert_eq!((ts[0], ts[3]), (999.0, 0.0));
    assert!(ts.windows(2).all(|w| w[0] > w[1]) && ts.iter().all(|t| t.fract() == 0.0), "{ts:?}");

    // Euler Karras spans the spaced timesteps' range (leading + offset 1: 751 .. 1).
    let mut ek = cfg.clone();
    ek["use_karras_sigmas"] = json!(true);
    let euler = create(&ek, Some("euler"), 4).unwrap();
    let want = karras_by_hand(train_sigma(&ac, 1), train_sigma(&ac, 751), 4);
    for (g, w) in euler.sigmas().unwrap().iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-6 * w);
    }
    let ts = euler.timesteps();
    assert!((ts[0] - 751.0).abs() < 1e-3 && (ts[3] - 1.0).abs() < 1e-3, "{ts:?}");
    let smax = want[0];
    assert!((euler.init_noise_sigma() as f64 - (smax * smax + 1.0).sqrt()).abs() < 1e-6 * smax);
}

#[test]
fn euler_ancestral_noise_by_hand() {
    let cfg = read_json("sd1-tiny/scheduler/scheduler_config.json");
    let n = 20_000;
    let sample = Rng::new(9).normal_vec(n);
    let zero = vec![0.0f32; n];
    let run = |seed: u64| {
        let mut s = create(&cfg, Some("euler_a"), 5).unwrap();
        let prev = s.step(&zero, 1, &sample, &mut Rng::new(seed));
        (s.sigmas().unwrap().to_vec(), prev)
    };
    let (sigmas, a) = run(3);
    assert_eq!(a, run(3).1, "same seed, same step");
    assert_ne!(a, run(4).1);
    // ε = 0 → x₀ = x: no drift, only σ_up·z with σ_up² = σ_to²(σ_from² − σ_to²)/σ_from².
    let (from, to) = (sigmas[1] as f64, sigmas[2] as f64);
    let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
    let z = Rng::new(3).normal_vec(n);
    for i in 0..n {
        assert!(((a[i] - sample[i]) as f64 - up * z[i] as f64).abs() < 1e-5 * (1.0 + sample[i].abs() as f64));
    }
    let var = (0..n).map(|i| ((a[i] - sample[i]) as f64).powi(2)).sum::<f64>() / n as f64;
    assert!((var / (up * up) - 1.0).abs() < 0.05, "noise variance {var} vs σ_up² {}", up * up);
}

#[test]
fn ddpm_variance_by_hand() {
    let ac = Case::load("sd1-tiny").tensor("ddpm/alphas_cumprod").to_vec();
    let cfg = read_json("sd1-tiny/scheduler/scheduler_config.json");
    let n = 4096;
    let zero = vec![0.0f32; n];
    let mut s = create(&cfg, Some("ddpm"), 10).unwrap();
    assert_eq!(s.timesteps()[..3], [901.0, 801.0, 701.0]);
    // x = 0, ε = 0 → posterior mean 0, so the step is exactly std·z, with the posterior
    // variance β̃ = (1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev) ("fixed_small", DDPM's default).
    let prev = s.step(&zero, 2, &zero, &mut Rng::new(11));
    let (at, ap) = (ac[701] as f64, ac[601] as f64);
    let std = ((1.0 - ap) / (1.0 - at) * (1.0 - at / ap)).sqrt();
    let z = Rng::new(11).normal_vec(n);
    for i in 0..n {
        assert!((prev[i] as f64 - std * z[i] as f64).abs() <= 1e-5 * std * (1.0 + z[i].abs() as f64));
    }
    assert_eq!(prev, create(&cfg, Some("ddpm"), 10).unwrap().step(&zero, 2, &zero, &mut Rng::new(11)));

    // "fixed_large" (CIFAR-10 DDPM): std = sqrt(β_t) on the linear schedule, by hand.
    let cifar = read_json("ddpm-tiny/scheduler/scheduler_config.json");
    let mut s = create(&cifar, None, 1000).unwrap();
    let prev = s.step(&zero, 499, &zero, &mut Rng::new(12));
    let beta: f64 = 1e-4 + 500.0 * (0.02 - 1e-4) / 999.0;
    let z = Rng::new(12).normal_vec(n);
    let ratio = prev[0] as f64 / z[0] as f64;
    assert!((ratio - beta.sqrt()).abs() < 1e-4 * beta.sqrt(), "{ratio} vs {}", beta.sqrt());
}

#[test]
fn lcm_schedule_and_final_step() {
    let cfg = read_json("sd1-tiny/scheduler/scheduler_config.json");
    let mut s = create(&cfg, Some("lcm"), 4).unwrap();
    // k = 1000/50 = 20: timesteps 999, 979, …, 19; four of them at floor(i·50/4) = 0, 12, 25, 37.
    assert_eq!(s.timesteps(), [999.0, 759.0, 499.0, 259.0]);
    let x = Rng::new(1).normal_vec(256);
    let eps = Rng::new(2).normal_vec(256);
    let a = s.step(&eps, 2, &x, &mut Rng::new(5));
    assert_ne!(a, s.step(&eps, 2, &x, &mut Rng::new(6)), "intermediate steps re-noise");
    let last = s.step(&eps, 3, &x, &mut Rng::new(5));
    assert_eq!(last, s.step(&eps, 3, &x, &mut Rng::new(6)), "the last step adds no noise");
    // At t = 259: c_skip = 0.25/(2590² + 0.25), c_out = 2590/sqrt(2590² + 0.25); x₀ from ε.
    let ac = Case::load("sd1-tiny").tensor("ddpm/alphas_cumprod")[259] as f64;
    let (c_skip, c_out) = (0.25 / (2590f64.powi(2) + 0.25), 2590.0 / (2590f64.powi(2) + 0.25).sqrt());
    for i in 0..256 {
        let x0 = (x[i] as f64 - (1.0 - ac).sqrt() * eps[i] as f64) / ac.sqrt();
        let want = c_out * x0 + c_skip * x[i] as f64;
        assert!((last[i] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
    }
}

fn err(config: Value, name: Option<&str>, steps: usize) -> String {
    match create(&config, name, steps) {
        Ok(s) => panic!("{} was accepted", s.name()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_configs_say_what_to_do() {
    let cfg = read_json("sd1-tiny/scheduler/scheduler_config.json");
    let with = |k: &str, v: Value| {
        let mut c = cfg.clone();
        c[k] = v;
        c
    };
    assert!(err(json!([1]), None, 5).contains("not a JSON object"));
    assert!(err(json!({}), None, 5).contains("dpmpp_2m_karras"));
    let m = err(json!({"_class_name": "HeunDiscreteScheduler"}), None, 5);
    assert!(m.contains("HeunDiscreteScheduler") && m.contains("EulerDiscreteScheduler"), "{m}");
    let m = err(cfg.clone(), Some("karras"), 5);
    assert!(m.contains("'karras'") && m.contains("euler_a"), "{m}");
    let m = err(with("timestep_spacing", json!("sideways")), Some("euler"), 5);
    assert!(m.contains("timestep_spacing = 'sideways'") && m.contains("linspace, leading or trailing"), "{m}");
    for steps in [0, 1001] {
        let m = err(cfg.clone(), Some("ddim"), steps);
        assert!(m.contains(&format!("{steps} inference steps")) && m.contains("1 to 1000"), "{m}");
    }
    assert!(err(with("beta_schedule", json!("sigmoid")), Some("ddpm"), 5).contains("squaredcos_cap_v2"));
    let m = err(with("steps_offset", json!("one")), None, 5);
    assert!(m.contains("\"steps_offset\"") && m.contains("non-negative integer"), "{m}");
    assert!(err(cfg.clone(), Some("lcm"), 51).contains("original_inference_steps"));
    assert!(err(with("skip_prk_steps", json!(false)), None, 5).contains("skip_prk_steps"));
    assert!(err(with("prediction_type", json!("flow")), Some("euler"), 5).contains("epsilon, v_prediction or sample"));
    assert!(err(with("thresholding", json!(true)), Some("ddim"), 5).contains("thresholding"));
}
