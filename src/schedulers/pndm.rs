//! PLMS, the linear multistep half of PNDM (Liu et al. 2022): diffusers' `PNDMScheduler` with
//! `skip_prk_steps`, SD 1.x's default. Adams–Bashforth on the predicted noise; the first step
//! is a two-call Heun-like warm-up, so N steps make N+1 UNet calls.

use super::config::{unsupported, Config, NoiseSchedule, ZeroSnr, DEFAULT_BETAS};
use super::ddim::noise_to;
use super::spacing::{integer_timesteps, TimestepSpacing};
use super::{PredictionType, Scheduler, SchedulerError};
use crate::rng::Rng;

const CLASS: &str = "PNDMScheduler";

/// `PNDMScheduler` (PLMS only).
pub struct Pndm {
    timesteps: Vec<f32>,
    steps: Vec<i64>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    step_ratio: i64,
    prediction: PredictionType,
    /// The last (up to 4) model outputs, oldest first.
    ets: Vec<Vec<f32>>,
    /// The sample of the first warm-up call, reused by the second.
    cur_sample: Option<Vec<f32>>,
    counter: usize,
}

impl Pndm {
    /// `PNDMScheduler.from_config(cfg)` + `set_timesteps(n)`.
    pub fn new(cfg: &Config, n: usize) -> Result<Self, SchedulerError> {
        let schedule = NoiseSchedule::from_config(cfg, CLASS, &DEFAULT_BETAS, ZeroSnr::Ignored)?;
        if !cfg.flag("skip_prk_steps", false)? {
            return Err(unsupported(CLASS, "skip_prk_steps", "false", "true (PLMS; the Runge-Kutta warm-up is not implemented)"));
        }
        let prediction = cfg.prediction_type(CLASS)?;
        if prediction == PredictionType::Sample {
            return Err(unsupported(CLASS, "prediction_type", "sample", "epsilon or v_prediction"));
        }
        let spacing = TimestepSpacing::from_config(cfg, CLASS, "leading")?;
        let t = schedule.num_train_timesteps;
        let desc = integer_timesteps(spacing, t, n, cfg.int("steps_offset", 0)?);
        // The second-largest timestep repeats: both warm-up calls happen there.
        let mut steps = vec![desc[0]];
        if n > 1 {
            steps.push(desc[1]);
        }
        steps.extend(&desc[1..]);
        let ac = schedule.alphas_cumprod;
        let final_alpha_cumprod = if cfg.flag("set_alpha_to_one", false)? { 1.0 } else { ac[0] };
        Ok(Self {
            timesteps: steps.iter().map(|&s| s as f32).collect(),
            steps,
            final_alpha_cumprod,
            alphas_cumprod: ac,
            step_ratio: (t / n) as i64,
            prediction,
            ets: Vec::new(),
            cur_sample: None,
            counter: 0,
        })
    }

    /// Formula (9) of the PNDM paper: x_t → x_{t−δ} given the noise estimate.
    fn prev_sample(&self, sample: &[f32], t: i64, prev_t: i64, model_output: &[f32]) -> Vec<f32> {
        let a_t = self.alphas_cumprod[t as usize];
        let a_prev = if prev_t >= 0 { self.alphas_cumprod[prev_t as usize] } else { self.final_alpha_cumprod };
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let eps: Vec<f32> = match self.prediction {
            PredictionType::VPrediction => {
                let (sa, sb) = (a_t.sqrt(), b_t.sqrt());
                model_output.iter().zip(sample).map(|(m, s)| sa * m + sb * s).collect()
            }
            _ => model_output.to_vec(),
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        let diff = a_prev - a_t;
        sample.iter().zip(&eps).map(|(s, e)| sample_coeff * s - diff * e / denom).collect()
    }
}

/// Adams–Bashforth combinations of the stored outputs (newest last), in diffusers' order.
fn combine(ets: &[Vec<f32>]) -> Vec<f32> {
    let e = |k: usize| &ets[ets.len() - k];
    let n = e(1).len();
    match ets.len() {
        2 => (0..n).map(|i| (3.0 * e(1)[i] - e(2)[i]) / 2.0).collect(),
        3 => (0..n).map(|i| (23.0 * e(1)[i] - 16.0 * e(2)[i] + 5.0 * e(3)[i]) / 12.0).collect(),
        _ => {
            let c = (1.0f64 / 24.0) as f32;
            (0..n).map(|i| c * (55.0 * e(1)[i] - 59.0 * e(2)[i] + 37.0 * e(3)[i] - 9.0 * e(4)[i])).collect()
        }
    }
}

impl Scheduler for Pndm {
    fn name(&self) -> &'static str {
        "pndm"
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut Rng) -> Vec<f32> {
        let mut t = self.steps[index];
        let mut prev_t = t - self.step_ratio;
        if self.counter == 1 {
            // Second warm-up call: redo the first step from its sample with the mean noise.
            prev_t = t;
            t += self.step_ratio;
        } else {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.to_vec());
        }
        let (eps, x) = match (self.ets.len(), self.counter) {
            (1, 0) => {
                self.cur_sample = Some(sample.to_vec());
                (model_output.to_vec(), sample.to_vec())
            }
            (1, 1) => {
                let first = &self.ets[0];
                let eps = model_output.iter().zip(first).map(|(m, e)| (m + e) / 2.0).collect();
                (eps, self.cur_sample.take().unwrap_or_else(|| sample.to_vec()))
            }
            _ => (combine(&self.ets), sample.to_vec()),
        };
        self.counter += 1;
        self.prev_sample(&x, t, prev_t, &eps)
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        noise_to(original, noise, self.alphas_cumprod[self.steps[index] as usize])
    }
}
