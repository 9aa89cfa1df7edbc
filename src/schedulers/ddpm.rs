//! DDPM ancestral sampling (Ho et al. 2020): diffusers' `DDPMScheduler`. Each step samples
//! the posterior q(x_{t−1} | x_t, x₀) around the predicted x₀ (eq. 7).

use super::config::{unsupported, Config, NoiseSchedule, ZeroSnr, DEFAULT_BETAS};
use super::ddim::{clip_range, noise_to, predict_x0};
use super::spacing::{integer_timesteps, TimestepSpacing};
use super::{PredictionType, Scheduler, SchedulerError};
use crate::rng::Rng;

const CLASS: &str = "DDPMScheduler";

/// `variance_type`: which posterior variance the step's noise gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarianceType {
    /// β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, the true posterior variance.
    FixedSmall,
    /// The same, through exp(½·ln β̃_t).
    FixedSmallLog,
    /// β_t, the upper bound (CIFAR-10 DDPM).
    FixedLarge,
}

/// `DDPMScheduler` with a fixed variance.
pub struct Ddpm {
    timesteps: Vec<f32>,
    steps: Vec<i64>,
    alphas_cumprod: Vec<f32>,
    prediction: PredictionType,
    clip: Option<f32>,
    variance: VarianceType,
    /// x₀ predicted at the last step (the preview of pixel-space models).
    x0: Vec<f32>,
}

impl Ddpm {
    /// `DDPMScheduler.from_config(cfg)` + `set_timesteps(n)`.
    pub fn new(cfg: &Config, n: usize) -> Result<Self, SchedulerError> {
        let schedule = NoiseSchedule::from_config(cfg, CLASS, &DEFAULT_BETAS, ZeroSnr::Rescale)?;
        cfg.require_off(CLASS, "thresholding")?;
        let variance = match cfg.text("variance_type", "fixed_small")? {
            "fixed_small" => VarianceType::FixedSmall,
            "fixed_small_log" => VarianceType::FixedSmallLog,
            "fixed_large" => VarianceType::FixedLarge,
            other => return Err(unsupported(CLASS, "variance_type", other, "fixed_small, fixed_small_log or fixed_large")),
        };
        let spacing = TimestepSpacing::from_config(cfg, CLASS, "leading")?;
        let steps = integer_timesteps(spacing, schedule.num_train_timesteps, n, cfg.int("steps_offset", 0)?);
        Ok(Self {
            timesteps: steps.iter().map(|&s| s as f32).collect(),
            steps,
            alphas_cumprod: schedule.alphas_cumprod,
            prediction: cfg.prediction_type(CLASS)?,
            clip: clip_range(cfg, true)?,
            variance,
            x0: Vec::new(),
        })
    }

    /// Standard deviation of the noise added when stepping from timestep `t` (ᾱ_t) to one with
    /// ᾱ_prev, in diffusers' float32 order.
    pub fn noise_std(&self, alpha_prod: f32, alpha_prev: f32) -> f32 {
        let beta = 1.0 - alpha_prod / alpha_prev;
        let small = ((1.0 - alpha_prev) / (1.0 - alpha_prod) * beta).max(1e-20);
        match self.variance {
            VarianceType::FixedSmall => small.sqrt(),
            VarianceType::FixedSmallLog => libm::expf(0.5 * libm::logf(small)),
            VarianceType::FixedLarge => beta.sqrt(),
        }
    }
}

impl Scheduler for Ddpm {
    fn name(&self) -> &'static str {
        "ddpm"
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], rng: &mut Rng) -> Vec<f32> {
        let t = self.steps[index];
        let alpha_prod = self.alphas_cumprod[t as usize];
        let alpha_prev = match self.steps.get(index + 1) {
            Some(&p) => self.alphas_cumprod[p as usize],
            None => 1.0,
        };
        let (beta_prod, beta_prev) = (1.0 - alpha_prod, 1.0 - alpha_prev);
        let current_alpha = alpha_prod / alpha_prev;
        let current_beta = 1.0 - current_alpha;
        let x0 = predict_x0(self.prediction, model_output, sample, alpha_prod, self.clip);
        self.x0.clone_from(&x0);
        // Posterior mean coefficients (eq. 7).
        let c_x0 = alpha_prev.sqrt() * current_beta / beta_prod;
        let c_xt = current_alpha.sqrt() * beta_prev / beta_prod;
        let mean = x0.iter().zip(sample).map(|(x, s)| c_x0 * x + c_xt * s);
        if t == 0 {
            return mean.collect();
        }
        let std = self.noise_std(alpha_prod, alpha_prev);
        let noise = rng.normal_vec(sample.len());
        mean.zip(&noise).map(|(m, z)| m + std * z).collect()
    }
    fn predicted_original(&self) -> Option<&[f32]> {
        (!self.x0.is_empty()).then_some(self.x0.as_slice())
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        noise_to(original, noise, self.alphas_cumprod[self.steps[index] as usize])
    }
}
