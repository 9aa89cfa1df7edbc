//! DPM-Solver++ (Lu et al. 2022), multistep, data prediction: diffusers'
//! `DPMSolverMultistepScheduler` with `algorithm_type` "dpmsolver++" and the midpoint
//! second-order update ("DPM++ 2M"), optionally on Karras sigmas.

use super::config::{unsupported, Config, NoiseSchedule, ZeroSnr, DEFAULT_BETAS};
use super::spacing::{final_sigma, interp, karras_sigmas, np_linspace, sigma_to_t, trailing, TimestepSpacing};
use super::{PredictionType, Scheduler, SchedulerError};
use crate::rng::Rng;

const CLASS: &str = "DPMSolverMultistepScheduler";

/// `DPMSolverMultistepScheduler` (dpmsolver++, solver_order 1 or 2, midpoint).
pub struct DpmSolver {
    timesteps: Vec<f32>,
    /// One per timestep plus the final one.
    sigmas: Vec<f32>,
    prediction: PredictionType,
    solver_order: usize,
    /// Use first order on the last step(s) of short schedules (stabler below 15 steps).
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigma_zero: bool,
    karras: bool,
    /// The previous step's x₀ prediction.
    last_x0: Option<Vec<f32>>,
    /// Steps taken so far (the history available to the multistep update).
    lower_order_nums: usize,
}

/// (α_t, σ_t) of the variance-preserving process at sigma σ = σ_t/α_t.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// λ = ln(α/σ), the half log-SNR the solver steps in.
fn lambda(alpha: f32, sigma: f32) -> f32 {
    libm::logf(alpha) - libm::logf(sigma)
}

impl DpmSolver {
    /// `DPMSolverMultistepScheduler.from_config(cfg)` + `set_timesteps(n)`.
    pub fn new(cfg: &Config, n: usize) -> Result<Self, SchedulerError> {
        let schedule = NoiseSchedule::from_config(cfg, CLASS, &DEFAULT_BETAS, ZeroSnr::RescaleClampLast)?;
        let algorithm = cfg.text("algorithm_type", "dpmsolver++")?;
        if algorithm != "dpmsolver++" {
            return Err(unsupported(CLASS, "algorithm_type", algorithm, "dpmsolver++"));
        }
        let solver_type = cfg.text("solver_type", "midpoint")?;
        if solver_type != "midpoint" {
            return Err(unsupported(CLASS, "solver_type", solver_type, "midpoint"));
        }
        let solver_order = cfg.int("solver_order", 2)?;
        if !(1..=2).contains(&solver_order) {
            return Err(unsupported(CLASS, "solver_order", &solver_order.to_string(), "1 or 2"));
        }
        for key in ["thresholding", "use_lu_lambdas", "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"] {
            cfg.require_off(CLASS, key)?;
        }
        let variance_type = cfg.text("variance_type", "")?;
        if !variance_type.is_empty() {
            return Err(unsupported(CLASS, "variance_type", variance_type, "null"));
        }
        let prediction = cfg.prediction_type(CLASS)?;
        let spacing = TimestepSpacing::from_config(cfg, CLASS, "linspace")?;
        let karras = cfg.flag("use_karras_sigmas", false)?;
        let t = schedule.num_train_timesteps;
        let train = schedule.sigmas();

        // lambda_min_clipped cuts off the noisiest timesteps (for cosine schedules).
        let lambda_min = cfg.float("lambda_min_clipped", f64::NEG_INFINITY)? as f32;
        let clipped = schedule.alphas_cumprod.iter().rev().take_while(|&&a| lambda(a.sqrt(), (1.0 - a).sqrt()) < lambda_min).count();
        let last = t - clipped;
        let offset = cfg.int("steps_offset", 0)?;
        let ts: Vec<i64> = match spacing {
            // N+1 points with the final 0 dropped: the last step goes to σ_final, not to t = 0.
            TimestepSpacing::Linspace => np_linspace(0.0, last as f64 - 1.0, n + 1, true).iter().rev().take(n).map(|x| x.round_ties_even() as i64).collect(),
            TimestepSpacing::Leading => (1..=n).rev().map(|i| (i * (last / (n + 1)) + offset) as i64).collect(),
            TimestepSpacing::Trailing => trailing(last as f64, t, n),
        };
        let (timesteps, sigmas): (Vec<f32>, Vec<f64>) = if karras {
            // Like Euler, a sigma_min/sigma_max left in a converted config still applies.
            let sigma_min = cfg.opt_float("sigma_min")?.unwrap_or(train[0] as f64);
            let sigma_max = cfg.opt_float("sigma_max")?.unwrap_or(train[t - 1] as f64);
            let sigmas = karras_sigmas(sigma_min, sigma_max, n);
            let log_sigmas: Vec<f32> = train.iter().map(|&s| libm::logf(s)).collect();
            let cosine = cfg.text("beta_schedule", "linear")? == "squaredcos_cap_v2";
            let ts = sigmas
                .iter()
                .map(|&s| {
                    let x = sigma_to_t(s, &log_sigmas);
                    // diffusers rounds (except for cosine betas), then stores int64 either way.
                    (if cosine { x.trunc() } else { x.round_ties_even() }) as f32
                })
                .collect();
            (ts, sigmas)
        } else {
            (ts.iter().map(|&x| x as f32).collect(), ts.iter().map(|&x| interp(x as f64, &train)).collect())
        };
        let mut sigmas: Vec<f32> = sigmas.iter().map(|&s| s as f32).collect();
        let final_sigma_zero = cfg.text("final_sigmas_type", "zero")? == "zero";
        sigmas.push(final_sigma(cfg, CLASS, train[0])?);
        Ok(Self {
            timesteps,
            sigmas,
            prediction,
            solver_order,
            lower_order_final: cfg.flag("lower_order_final", true)?,
            euler_at_final: cfg.flag("euler_at_final", false)?,
            final_sigma_zero,
            karras,
            last_x0: None,
            lower_order_nums: 0,
        })
    }

    /// The model output converted to a data (x₀) prediction.
    fn x0(&self, model_output: &[f32], sample: &[f32], sigma: f32) -> Vec<f32> {
        let (alpha_t, sigma_t) = alpha_sigma(sigma);
        match self.prediction {
            PredictionType::Epsilon => sample.iter().zip(model_output).map(|(s, m)| (s - sigma_t * m) / alpha_t).collect(),
            PredictionType::Sample => model_output.to_vec(),
            PredictionType::VPrediction => sample.iter().zip(model_output).map(|(s, m)| alpha_t * s - sigma_t * m).collect(),
        }
    }
}

impl Scheduler for DpmSolver {
    fn name(&self) -> &'static str {
        if self.karras {
            "dpmpp_2m_karras"
        } else {
            "dpmpp_2m"
        }
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _rng: &mut Rng) -> Vec<f32> {
        let n = self.timesteps.len();
        let short = self.lower_order_final && n < 15;
        let final_first_order = index == n - 1 && (self.euler_at_final || short || self.final_sigma_zero);
        let x0 = self.x0(model_output, sample, self.sigmas[index]);
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[index + 1]);
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[index]);
        let h = lambda(alpha_t, sigma_t) - lambda(alpha_s0, sigma_s0);
        let ratio = sigma_t / sigma_s0;
        let phi = alpha_t * (libm::expf(-h) - 1.0);
        let prev = match &self.last_x0 {
            Some(m1) if self.solver_order == 2 && self.lower_order_nums >= 1 && !final_first_order => {
                // Midpoint 2M: D1 = (m0 − m1)/r0 with r0 = h_prev/h.
                let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[index - 1]);
                let h0 = lambda(alpha_s0, sigma_s0) - lambda(alpha_s1, sigma_s1);
                let inv_r0 = 1.0 / (h0 / h);
                let half_phi = 0.5 * phi;
                sample.iter().zip(&x0).zip(m1).map(|((s, d0), m1)| ratio * s - phi * d0 - half_phi * (inv_r0 * (d0 - m1))).collect()
            }
            // First order: DDIM in λ, x_t = (σ_t/σ_s)·x − α_t(e^−h − 1)·x₀.
            _ => sample.iter().zip(&x0).map(|(s, d0)| ratio * s - phi * d0).collect(),
        };
        self.last_x0 = Some(x0);
        self.lower_order_nums = (self.lower_order_nums + 1).min(self.solver_order);
        prev
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[index]);
        original.iter().zip(noise).map(|(o, z)| alpha_t * o + sigma_t * z).collect()
    }
    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }
}
