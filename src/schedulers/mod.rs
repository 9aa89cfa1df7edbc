//! Diffusion schedulers on host f32 vectors, one file each, matching diffusers'
//! `<Class>.from_config(config)` + `set_timesteps(steps)` step for step (the arithmetic
//! follows torch's float32 order, so results agree with diffusers to about 1e-7).
//!
//! A pipeline builds one with [`create`] from the model's `scheduler_config.json`, then for
//! each `index` in `0..timesteps().len()` (from `begin_index` for img2img) calls
//! `scale_model_input`, the UNet at `timesteps()[index]`, and `step`.

pub mod config;
pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod euler_ancestral;
pub mod lcm;
pub mod pndm;
pub mod spacing;

use serde_json::Value;
use thiserror::Error;

use crate::rng::Rng;
use config::Config;

/// What the denoising model predicts (`prediction_type` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionType {
    /// The added noise ("epsilon").
    Epsilon,
    /// The velocity sqrt(ᾱ)·ε − sqrt(1−ᾱ)·x₀ ("v_prediction", SD 2.x 768).
    VPrediction,
    /// The clean sample x₀ ("sample").
    Sample,
}

/// A denoising schedule: which timesteps the model is called at and how each model
/// output moves the sample.
pub trait Scheduler: Send {
    /// Short name: "euler", "euler_a", "ddim", "dpmpp_2m", "dpmpp_2m_karras", "pndm", "lcm", "ddpm".
    fn name(&self) -> &'static str;
    /// Timesteps of the UNet calls, in order (PNDM: N+1 entries including the repeated one).
    fn timesteps(&self) -> &[f32];
    /// diffusers' `scheduler.order` (img2img skips `t_start * order` timesteps); 1 for every
    /// scheduler here (PNDM's PLMS steps and DPM++ 2M are order 1 in diffusers too).
    fn order(&self) -> usize {
        1
    }
    /// Standard deviation of the starting noise (the pipeline multiplies unit noise by it).
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
    /// The UNet input for the sample at `timesteps()[index]` (unscaled unless sigma-based).
    /// Steps are addressed by index, so starting part-way (img2img) needs no set-up call.
    fn scale_model_input(&self, sample: &[f32], _index: usize) -> Vec<f32> {
        sample.to_vec()
    }
    /// One denoising step at `timesteps()[index]`; returns the previous (less noisy) sample.
    /// Multistep schedulers keep history, so call it once per index, in order.
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], rng: &mut Rng) -> Vec<f32>;
    /// `original` noised to the level of `timesteps()[index]` (img2img's starting latents).
    /// The clean sample x₀ predicted at the last `step`, where the scheduler forms one
    /// (DDIM, DDPM): the step preview of a pixel-space model.
    fn predicted_original(&self) -> Option<&[f32]> {
        None
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32>;
    /// The sigma schedule (len = timesteps + 1) for the Karras-style schedulers, else None.
    fn sigmas(&self) -> Option<&[f32]> {
        None
    }
}

/// The scheduler classes [`create`] understands (diffusers' `_class_name`).
pub const KNOWN_CLASSES: &str = "EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DDIMScheduler, \
     DPMSolverMultistepScheduler, PNDMScheduler, LCMScheduler, DDPMScheduler";
/// The short names [`create`] accepts in place of the config's class.
pub const KNOWN_NAMES: &str = "euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras, pndm, lcm, ddpm";

/// Why a scheduler could not be built from a config.
#[derive(Debug, Error)]
pub enum SchedulerError {
    #[error("The scheduler config is not a JSON object.")]
    NotAnObject,
    #[error("The scheduler config has no \"_class_name\"; name a scheduler ({KNOWN_NAMES}).")]
    NoClass,
    #[error("Scheduler class '{0}' is not supported; supported classes: {KNOWN_CLASSES}.")]
    UnknownClass(String),
    #[error("Unknown scheduler '{0}'; choose one of: {KNOWN_NAMES}.")]
    UnknownName(String),
    #[error("Scheduler config key \"{key}\" should be {expected}, but is {found}.")]
    BadValue { key: String, expected: &'static str, found: String },
    #[error("{class}: {key} = {value} is not supported; use {supported}.")]
    Unsupported { class: &'static str, key: &'static str, value: String, supported: &'static str },
    #[error("{steps} inference steps is not possible: choose 1 to {max} ({limit}).")]
    Steps { steps: usize, max: usize, limit: &'static str },
}

/// Builds a scheduler like diffusers' `<Class>.from_config(config)` + `set_timesteps(steps)`.
/// `name` = None uses `config["_class_name"]`; Some("euler"|"euler_a"|"ddim"|"dpmpp_2m"|
/// "dpmpp_2m_karras"|"pndm"|"lcm"|"ddpm") overrides the class. As in diffusers, keys the
/// config lacks take the target class's defaults, not the source class's.
pub fn create(config: &Value, name: Option<&str>, num_inference_steps: usize) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let mut map = config.as_object().ok_or(SchedulerError::NotAnObject)?.clone();
    // diffusers drops the keys a saved config lists as defaults it filled in.
    if let Some(Value::Array(defaults)) = map.remove("_use_default_values") {
        for key in defaults.iter().filter_map(Value::as_str) {
            map.remove(key);
        }
    }
    let class = match name {
        None => map.get("_class_name").and_then(Value::as_str).ok_or(SchedulerError::NoClass)?.to_string(),
        Some(name) => {
            let class = match name {
                "euler" => "EulerDiscreteScheduler",
                "euler_a" => "EulerAncestralDiscreteScheduler",
                "ddim" => "DDIMScheduler",
                "dpmpp_2m" | "dpmpp_2m_karras" => "DPMSolverMultistepScheduler",
                "pndm" => "PNDMScheduler",
                "lcm" => "LCMScheduler",
                "ddpm" => "DDPMScheduler",
                other => return Err(SchedulerError::UnknownName(other.to_string())),
            };
            if class == "DPMSolverMultistepScheduler" {
                // The names promise DPM-Solver++(2M), whatever DPM variant the config had.
                map.insert("algorithm_type".into(), "dpmsolver++".into());
                map.insert("solver_order".into(), 2.into());
                map.insert("use_karras_sigmas".into(), (name == "dpmpp_2m_karras").into());
            }
            class.to_string()
        }
    };
    let cfg = Config::new(&map);
    let max = cfg.int("num_train_timesteps", 1000)?;
    if num_inference_steps == 0 || num_inference_steps > max {
        return Err(SchedulerError::Steps { steps: num_inference_steps, max, limit: "num_train_timesteps" });
    }
    let n = num_inference_steps;
    Ok(match class.as_str() {
        "EulerDiscreteScheduler" => Box::new(euler::Euler::new(&cfg, n)?),
        "EulerAncestralDiscreteScheduler" => Box::new(euler_ancestral::EulerAncestral::new(&cfg, n)?),
        "DDIMScheduler" => Box::new(ddim::Ddim::new(&cfg, n)?),
        "DPMSolverMultistepScheduler" => Box::new(dpm_solver::DpmSolver::new(&cfg, n)?),
        "PNDMScheduler" => Box::new(pndm::Pndm::new(&cfg, n)?),
        "LCMScheduler" => Box::new(lcm::Lcm::new(&cfg, n)?),
        "DDPMScheduler" => Box::new(ddpm::Ddpm::new(&cfg, n)?),
        other => return Err(SchedulerError::UnknownClass(other.to_string())),
    })
}
