//! Euler ancestral: diffusers' `EulerAncestralDiscreteScheduler`. Each step goes down to
//! σ_down by Euler, then adds fresh noise of σ_up, with σ_down² + σ_up² = σ_next².

use super::config::{unsupported, Config, NoiseSchedule, ZeroSnr, DEFAULT_BETAS};
use super::euler::{denoised, euler_update, scale_by_sigma};
use super::spacing::{integer_timesteps, interp, np_linspace, TimestepSpacing};
use super::{PredictionType, Scheduler, SchedulerError};
use crate::rng::Rng;

const CLASS: &str = "EulerAncestralDiscreteScheduler";

/// `EulerAncestralDiscreteScheduler`.
pub struct EulerAncestral {
    timesteps: Vec<f32>,
    /// One per timestep plus a final 0.
    sigmas: Vec<f32>,
    prediction: PredictionType,
    init_noise_sigma: f32,
}

impl EulerAncestral {
    /// `EulerAncestralDiscreteScheduler.from_config(cfg)` + `set_timesteps(n)`.
    pub fn new(cfg: &Config, n: usize) -> Result<Self, SchedulerError> {
        let schedule = NoiseSchedule::from_config(cfg, CLASS, &DEFAULT_BETAS, ZeroSnr::RescaleClampLast)?;
        let prediction = cfg.prediction_type(CLASS)?;
        if prediction == PredictionType::Sample {
            // diffusers raises NotImplementedError for it too.
            return Err(unsupported(CLASS, "prediction_type", "sample", "epsilon or v_prediction"));
        }
        let spacing = TimestepSpacing::from_config(cfg, CLASS, "linspace")?;
        let t = schedule.num_train_timesteps;
        let train = schedule.sigmas();
        let ts: Vec<f64> = match spacing {
            TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n, true).iter().rev().map(|&x| x as f32 as f64).collect(),
            _ => integer_timesteps(spacing, t, n, cfg.int("steps_offset", 0)?).iter().map(|&x| x as f64).collect(),
        };
        let mut sigmas: Vec<f32> = ts.iter().map(|&x| interp(x, &train) as f32).collect();
        sigmas.push(0.0);
        let max = sigmas.iter().fold(0.0f32, |m, &s| m.max(s));
        let init_noise_sigma = if spacing == TimestepSpacing::Leading { (max * max + 1.0).sqrt() } else { max };
        Ok(Self { timesteps: ts.iter().map(|&x| x as f32).collect(), sigmas, prediction, init_noise_sigma })
    }
}

/// (σ_up, σ_down) for an ancestral step from `from` to `to`.
pub fn ancestral_sigmas(from: f32, to: f32) -> (f32, f32) {
    let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
    let down = (to * to - up * up).sqrt();
    (up, down)
}

impl Scheduler for EulerAncestral {
    fn name(&self) -> &'static str {
        "euler_a"
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }
    fn scale_model_input(&self, sample: &[f32], index: usize) -> Vec<f32> {
        scale_by_sigma(sample, self.sigmas[index])
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], rng: &mut Rng) -> Vec<f32> {
        let sigma = self.sigmas[index];
        let (up, down) = ancestral_sigmas(sigma, self.sigmas[index + 1]);
        let x0 = denoised(self.prediction, model_output, sample, sigma);
        let prev = euler_update(sample, &x0, sigma, down - sigma);
        let noise = rng.normal_vec(prev.len());
        prev.iter().zip(&noise).map(|(p, z)| p + z * up).collect()
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let sigma = self.sigmas[index];
        original.iter().zip(noise).map(|(o, n)| o + n * sigma).collect()
    }
    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }
}
