//! DDIM (Song et al. 2020) with η = 0: diffusers' `DDIMScheduler`. Deterministic: predicts
//! x₀, then moves it to the previous timestep along the predicted noise.

use super::config::{Config, NoiseSchedule, ZeroSnr, DEFAULT_BETAS};
use super::spacing::{integer_timesteps, TimestepSpacing};
use super::{PredictionType, Scheduler, SchedulerError};
use crate::rng::Rng;

const CLASS: &str = "DDIMScheduler";

/// `DDIMScheduler` with eta = 0 (the pipelines' default).
pub struct Ddim {
    timesteps: Vec<f32>,
    steps: Vec<i64>,
    alphas_cumprod: Vec<f32>,
    /// ᾱ after the last step: 1 with `set_alpha_to_one`, else ᾱ₀.
    final_alpha_cumprod: f32,
    step_ratio: i64,
    prediction: PredictionType,
    /// `clip_sample_range` when `clip_sample` is on.
    clip: Option<f32>,
    /// x₀ predicted at the last step (the preview of pixel-space models).
    x0: Vec<f32>,
}

impl Ddim {
    /// `DDIMScheduler.from_config(cfg)` + `set_timesteps(n)`.
    pub fn new(cfg: &Config, n: usize) -> Result<Self, SchedulerError> {
        let schedule = NoiseSchedule::from_config(cfg, CLASS, &DEFAULT_BETAS, ZeroSnr::Rescale)?;
        let spacing = TimestepSpacing::from_config(cfg, CLASS, "leading")?;
        cfg.require_off(CLASS, "thresholding")?;
        let t = schedule.num_train_timesteps;
        let steps = integer_timesteps(spacing, t, n, cfg.int("steps_offset", 0)?);
        let ac = schedule.alphas_cumprod;
        let final_alpha_cumprod = if cfg.flag("set_alpha_to_one", true)? { 1.0 } else { ac[0] };
        Ok(Self {
            timesteps: steps.iter().map(|&s| s as f32).collect(),
            steps,
            final_alpha_cumprod,
            alphas_cumprod: ac,
            step_ratio: (t / n) as i64,
            prediction: cfg.prediction_type(CLASS)?,
            clip: clip_range(cfg, true)?,
            x0: Vec::new(),
        })
    }
}

/// `clip_sample_range` if `clip_sample` (default per class) is on.
pub(crate) fn clip_range(cfg: &Config, default_on: bool) -> Result<Option<f32>, SchedulerError> {
    Ok(if cfg.flag("clip_sample", default_on)? { Some(cfg.float("clip_sample_range", 1.0)? as f32) } else { None })
}

/// x₀ and ε predicted at ᾱ = `alpha_prod` (DDIM, DDPM, LCM), x₀ optionally clipped.
pub(crate) fn predict_x0(p: PredictionType, model_output: &[f32], sample: &[f32], alpha_prod: f32, clip: Option<f32>) -> Vec<f32> {
    let beta_prod = 1.0 - alpha_prod;
    let (sa, sb) = (alpha_prod.sqrt(), beta_prod.sqrt());
    let mut x0: Vec<f32> = match p {
        PredictionType::Epsilon => sample.iter().zip(model_output).map(|(s, m)| (s - sb * m) / sa).collect(),
        PredictionType::Sample => model_output.to_vec(),
        PredictionType::VPrediction => sample.iter().zip(model_output).map(|(s, m)| sa * s - sb * m).collect(),
    };
    if let Some(r) = clip {
        x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
    }
    x0
}

/// sqrt(ᾱ)·x + sqrt(1 − ᾱ)·ε: the forward process at one timestep.
pub(crate) fn noise_to(original: &[f32], noise: &[f32], alpha_prod: f32) -> Vec<f32> {
    let (sa, sb) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    original.iter().zip(noise).map(|(o, n)| sa * o + sb * n).collect()
}

impl Scheduler for Ddim {
    fn name(&self) -> &'static str {
        "ddim"
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut Rng) -> Vec<f32> {
        let t = self.steps[index];
        let prev_t = t - self.step_ratio;
        let alpha_prod = self.alphas_cumprod[t as usize];
        let alpha_prev = if prev_t >= 0 { self.alphas_cumprod[prev_t as usize] } else { self.final_alpha_cumprod };
        let x0 = predict_x0(self.prediction, model_output, sample, alpha_prod, self.clip);
        self.x0.clone_from(&x0);
        let (sa, sb) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
        // diffusers derives ε from the unclipped prediction.
        let eps: Vec<f32> = match self.prediction {
            PredictionType::Epsilon => model_output.to_vec(),
            PredictionType::Sample => sample.iter().zip(model_output).map(|(s, x)| (s - sa * x) / sb).collect(),
            PredictionType::VPrediction => model_output.iter().zip(sample).map(|(m, s)| sa * m + sb * s).collect(),
        };
        let dir = (1.0 - alpha_prev).sqrt();
        let keep = alpha_prev.sqrt();
        x0.iter().zip(&eps).map(|(x, e)| keep * x + dir * e).collect()
    }
    fn predicted_original(&self) -> Option<&[f32]> {
        (!self.x0.is_empty()).then_some(self.x0.as_slice())
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        noise_to(original, noise, self.alphas_cumprod[self.steps[index] as usize])
    }
}
