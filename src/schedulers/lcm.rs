//! Latent consistency models (Luo et al. 2023): diffusers' `LCMScheduler`. Each step jumps to
//! a denoised estimate (consistency boundary conditions c_skip, c_out), then re-noises it to
//! the next timestep with fresh noise; the last step returns the estimate itself.

use super::config::{BetaDefaults, Config, NoiseSchedule, ZeroSnr};
use super::ddim::{clip_range, noise_to, predict_x0};
use super::spacing::np_linspace;
use super::{PredictionType, Scheduler, SchedulerError};
use crate::rng::Rng;

const CLASS: &str = "LCMScheduler";
/// LCM's own beta defaults are Stable Diffusion's.
const LCM_BETAS: BetaDefaults = BetaDefaults { beta_start: 0.00085, beta_end: 0.012, beta_schedule: "scaled_linear" };

/// `LCMScheduler` (strength 1: the txt2img schedule).
pub struct Lcm {
    timesteps: Vec<f32>,
    steps: Vec<i64>,
    alphas_cumprod: Vec<f32>,
    timestep_scaling: f32,
    prediction: PredictionType,
    clip: Option<f32>,
}

impl Lcm {
    /// `LCMScheduler.from_config(cfg)` + `set_timesteps(n)`.
    pub fn new(cfg: &Config, n: usize) -> Result<Self, SchedulerError> {
        let schedule = NoiseSchedule::from_config(cfg, CLASS, &LCM_BETAS, ZeroSnr::Rescale)?;
        cfg.require_off(CLASS, "thresholding")?;
        let t = schedule.num_train_timesteps;
        let original = cfg.int("original_inference_steps", 50)?;
        if original == 0 || original > t {
            return Err(SchedulerError::Steps { steps: original, max: t, limit: "original_inference_steps vs num_train_timesteps" });
        }
        if n > original {
            return Err(SchedulerError::Steps { steps: n, max: original, limit: "original_inference_steps of the LCM config" });
        }
        // The distillation schedule: every k-th timestep ending at T−1, descending; N of them
        // evenly by index.
        let k = t / original;
        let origin: Vec<i64> = (1..=original).rev().map(|i| (i * k) as i64 - 1).collect();
        let steps: Vec<i64> = np_linspace(0.0, origin.len() as f64, n, false).iter().map(|&x| origin[x.floor() as usize]).collect();
        let ac = schedule.alphas_cumprod;
        Ok(Self {
            timesteps: steps.iter().map(|&s| s as f32).collect(),
            steps,
            alphas_cumprod: ac,
            timestep_scaling: cfg.float("timestep_scaling", 10.0)? as f32,
            prediction: cfg.prediction_type(CLASS)?,
            clip: clip_range(cfg, false)?,
        })
    }
}

impl Scheduler for Lcm {
    fn name(&self) -> &'static str {
        "lcm"
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], rng: &mut Rng) -> Vec<f32> {
        let t = self.steps[index];
        let last = index + 1 == self.steps.len();
        let alpha_prod = self.alphas_cumprod[t as usize];
        // Boundary conditions with σ_data = 0.5: c_skip → 1 and c_out → 0 as t → 0.
        let scaled = t as f32 * self.timestep_scaling;
        let c_skip = 0.25 / (scaled * scaled + 0.25);
        let c_out = scaled / (scaled * scaled + 0.25).sqrt();
        let x0 = predict_x0(self.prediction, model_output, sample, alpha_prod, self.clip);
        let denoised: Vec<f32> = x0.iter().zip(sample).map(|(x, s)| c_out * x + c_skip * s).collect();
        if last {
            return denoised;
        }
        let noise = rng.normal_vec(denoised.len());
        // LCM timesteps are all ≥ k − 1 ≥ 0, so `set_alpha_to_one` never comes into play.
        noise_to(&denoised, &noise, self.alphas_cumprod[self.steps[index + 1] as usize])
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        noise_to(original, noise, self.alphas_cumprod[self.steps[index] as usize])
    }
}
