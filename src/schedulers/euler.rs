//! Euler (Karras et al. 2022, Algorithm 2 without churn): diffusers' `EulerDiscreteScheduler`.
//! Works in sigma space: x_σ = x₀ + σ·ε; the UNet sees x / sqrt(σ² + 1).

use super::config::{unsupported, Config, NoiseSchedule, ZeroSnr, DEFAULT_BETAS};
use super::spacing::{final_sigma, integer_timesteps, interp, karras_sigmas, np_linspace, sigma_to_t, TimestepSpacing};
use super::{PredictionType, Scheduler, SchedulerError};
use crate::rng::Rng;

const CLASS: &str = "EulerDiscreteScheduler";

/// `EulerDiscreteScheduler` (linear interpolation, optional Karras sigmas).
pub struct Euler {
    timesteps: Vec<f32>,
    /// One per timestep plus the final one (0 for `final_sigmas_type` "zero").
    sigmas: Vec<f32>,
    prediction: PredictionType,
    init_noise_sigma: f32,
}

impl Euler {
    /// `EulerDiscreteScheduler.from_config(cfg)` + `set_timesteps(n)`.
    pub fn new(cfg: &Config, n: usize) -> Result<Self, SchedulerError> {
        let schedule = NoiseSchedule::from_config(cfg, CLASS, &DEFAULT_BETAS, ZeroSnr::RescaleClampLast)?;
        let prediction = cfg.prediction_type(CLASS)?;
        let spacing = TimestepSpacing::from_config(cfg, CLASS, "linspace")?;
        let interpolation = cfg.text("interpolation_type", "linear")?;
        if interpolation != "linear" {
            return Err(unsupported(CLASS, "interpolation_type", interpolation, "linear"));
        }
        let timestep_type = cfg.text("timestep_type", "discrete")?;
        // Continuous timesteps only change anything for v-prediction (0.25·ln σ as the UNet's t).
        if timestep_type != "discrete" && (timestep_type != "continuous" || prediction == PredictionType::VPrediction) {
            return Err(unsupported(CLASS, "timestep_type", timestep_type, "discrete"));
        }
        cfg.require_off(CLASS, "use_exponential_sigmas")?;
        cfg.require_off(CLASS, "use_beta_sigmas")?;
        let karras = cfg.flag("use_karras_sigmas", false)?;

        let t = schedule.num_train_timesteps;
        let train = schedule.sigmas();
        // diffusers keeps Euler's timesteps in float32 (linspace ones are fractional).
        let ts: Vec<f64> = match spacing {
            TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n, true).iter().rev().map(|&x| x as f32 as f64).collect(),
            _ => integer_timesteps(spacing, t, n, cfg.int("steps_offset", 0)?).iter().map(|&x| x as f64).collect(),
        };
        let mut sigmas: Vec<f64> = ts.iter().map(|&x| interp(x, &train)).collect();
        let mut timesteps: Vec<f32> = ts.iter().map(|&x| x as f32).collect();
        if karras {
            let sigma_min = cfg.opt_float("sigma_min")?.unwrap_or(sigmas[n - 1]);
            let sigma_max = cfg.opt_float("sigma_max")?.unwrap_or(sigmas[0]);
            sigmas = karras_sigmas(sigma_min, sigma_max, n);
            let log_sigmas: Vec<f32> = train.iter().map(|&s| libm::logf(s)).collect();
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas) as f32).collect();
        }
        let mut sigmas: Vec<f32> = sigmas.iter().map(|&s| s as f32).collect();
        sigmas.push(final_sigma(cfg, CLASS, train[0])?);
        let max = sigmas.iter().fold(0.0f32, |m, &s| m.max(s));
        // Leading spacing never starts at σ_max's timestep, so diffusers scales the noise as
        // for the variance-preserving x (sqrt(σ² + 1)) there.
        let init_noise_sigma = if spacing == TimestepSpacing::Leading { (max * max + 1.0).sqrt() } else { max };
        Ok(Self { timesteps, sigmas, prediction, init_noise_sigma })
    }
}

/// x₀ predicted from the model output at noise level `sigma` (Euler and Euler ancestral).
pub(crate) fn denoised(prediction: PredictionType, model_output: &[f32], sample: &[f32], sigma: f32) -> Vec<f32> {
    match prediction {
        PredictionType::Epsilon => sample.iter().zip(model_output).map(|(s, m)| s - sigma * m).collect(),
        PredictionType::VPrediction => {
            let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
            let c_skip_den = sigma * sigma + 1.0;
            sample.iter().zip(model_output).map(|(s, m)| m * c_out + s / c_skip_den).collect()
        }
        PredictionType::Sample => model_output.to_vec(),
    }
}

/// An Euler step of the ODE dx/dσ = (x − x₀)/σ from `sigma` by `dt`.
pub(crate) fn euler_update(sample: &[f32], denoised: &[f32], sigma: f32, dt: f32) -> Vec<f32> {
    sample.iter().zip(denoised).map(|(s, d)| s + (s - d) / sigma * dt).collect()
}

/// sample / sqrt(σ² + 1): the UNet was trained on variance-preserving inputs.
pub(crate) fn scale_by_sigma(sample: &[f32], sigma: f32) -> Vec<f32> {
    let d = (sigma * sigma + 1.0).sqrt();
    sample.iter().map(|s| s / d).collect()
}

impl Scheduler for Euler {
    fn name(&self) -> &'static str {
        "euler"
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
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut Rng) -> Vec<f32> {
        let sigma = self.sigmas[index];
        let x0 = denoised(self.prediction, model_output, sample, sigma);
        euler_update(sample, &x0, sigma, self.sigmas[index + 1] - sigma)
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let sigma = self.sigmas[index];
        original.iter().zip(noise).map(|(o, n)| o + n * sigma).collect()
    }
    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }
}
