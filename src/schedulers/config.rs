//! Reading a diffusers `scheduler_config.json` and the noise schedule every scheduler shares
//! (betas → alphas_cumprod), computed in the same float32/float64 order as diffusers on torch.

use serde_json::{Map, Value};

use super::{PredictionType, SchedulerError};

/// Typed access to a scheduler config. A key that is absent or null takes the caller's
/// default, which is the *target* class's default (diffusers' `from_config` semantics).
#[derive(Clone, Copy)]
pub struct Config<'a>(&'a Map<String, Value>);

fn bad(key: &str, expected: &'static str, found: &Value) -> SchedulerError {
    SchedulerError::BadValue { key: key.into(), expected, found: found.to_string() }
}

impl<'a> Config<'a> {
    /// Wraps a config object.
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self(map)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// A number; diffusers writes ±infinity as the strings "inf" / "-inf".
    pub fn opt_float(&self, key: &str) -> Result<Option<f64>, SchedulerError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match v {
            Value::Number(n) => Ok(n.as_f64()),
            Value::String(s) if s == "-inf" => Ok(Some(f64::NEG_INFINITY)),
            Value::String(s) if s == "inf" => Ok(Some(f64::INFINITY)),
            _ => Err(bad(key, "a number", v)),
        }
    }

    /// A number, or `default`.
    pub fn float(&self, key: &str, default: f64) -> Result<f64, SchedulerError> {
        Ok(self.opt_float(key)?.unwrap_or(default))
    }

    /// A non-negative integer, or `default`.
    pub fn int(&self, key: &str, default: usize) -> Result<usize, SchedulerError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| bad(key, "a non-negative integer", v)),
        }
    }

    /// A flag, or `default`; an explicit null is false, as Python's `None` is.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, SchedulerError> {
        match self.0.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(false),
            Some(v) => v.as_bool().ok_or_else(|| bad(key, "true or false", v)),
        }
    }

    /// A string, or `default`.
    pub fn text(&self, key: &str, default: &'a str) -> Result<&'a str, SchedulerError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| bad(key, "a string", v)),
        }
    }

    /// A list of numbers (`trained_betas`), if present.
    pub fn floats(&self, key: &str) -> Result<Option<Vec<f64>>, SchedulerError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let list = v.as_array().ok_or_else(|| bad(key, "a list of numbers", v))?;
        list.iter().map(|x| x.as_f64().ok_or_else(|| bad(key, "a list of numbers", v))).collect::<Result<_, _>>().map(Some)
    }

    /// `prediction_type` (default "epsilon" in every class here).
    pub fn prediction_type(&self, class: &'static str) -> Result<PredictionType, SchedulerError> {
        match self.text("prediction_type", "epsilon")? {
            "epsilon" => Ok(PredictionType::Epsilon),
            "v_prediction" => Ok(PredictionType::VPrediction),
            "sample" => Ok(PredictionType::Sample),
            other => Err(unsupported(class, "prediction_type", other, "epsilon, v_prediction or sample")),
        }
    }

    /// Fails for a true flag this port does not implement (e.g. `thresholding`).
    pub fn require_off(&self, class: &'static str, key: &'static str) -> Result<(), SchedulerError> {
        if self.flag(key, false)? {
            return Err(unsupported(class, key, "true", "false"));
        }
        Ok(())
    }
}

/// An `Unsupported` error with the value quoted.
pub fn unsupported(class: &'static str, key: &'static str, value: &str, supported: &'static str) -> SchedulerError {
    SchedulerError::Unsupported { class, key, value: format!("'{value}'"), supported }
}

/// A class's defaults for the beta keys (most: linear 1e-4..0.02; LCM: scaled_linear).
pub struct BetaDefaults {
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: &'static str,
}

/// The defaults of DDPM, DDIM, PNDM, Euler, Euler ancestral and DPM-Solver.
pub const DEFAULT_BETAS: BetaDefaults = BetaDefaults { beta_start: 0.0001, beta_end: 0.02, beta_schedule: "linear" };

/// How a class treats `rescale_betas_zero_snr`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ZeroSnr {
    /// The class has no such option (PNDM): the key is ignored.
    Ignored,
    /// Rescale the betas (DDIM, DDPM, LCM).
    Rescale,
    /// Rescale, then set the last ᾱ to 2^-24 so sigma stays finite (the sigma schedulers).
    RescaleClampLast,
}

/// The training noise schedule.
pub struct NoiseSchedule {
    pub num_train_timesteps: usize,
    /// ᾱ_t = ∏(1 − β_s), float32 as diffusers stores it.
    pub alphas_cumprod: Vec<f32>,
}

impl NoiseSchedule {
    /// Builds betas from `trained_betas` or `beta_start`/`beta_end`/`beta_schedule`.
    pub fn from_config(cfg: &Config, class: &'static str, d: &BetaDefaults, zero_snr: ZeroSnr) -> Result<Self, SchedulerError> {
        let t = cfg.int("num_train_timesteps", 1000)?;
        let start = cfg.float("beta_start", d.beta_start)?;
        let end = cfg.float("beta_end", d.beta_end)?;
        let mut betas: Vec<f32> = if let Some(b) = cfg.floats("trained_betas")? {
            if b.len() != t {
                return Err(SchedulerError::BadValue {
                    key: "trained_betas".into(),
                    expected: "one beta per training timestep",
                    found: format!("{} values for num_train_timesteps = {t}", b.len()),
                });
            }
            b.iter().map(|&x| x as f32).collect()
        } else {
            match cfg.text("beta_schedule", d.beta_schedule)? {
                "linear" => torch_linspace(start, end, t),
                "scaled_linear" => torch_linspace(start.sqrt(), end.sqrt(), t).iter().map(|b| b * b).collect(),
                "squaredcos_cap_v2" => cosine_betas(t),
                other => return Err(unsupported(class, "beta_schedule", other, "linear, scaled_linear or squaredcos_cap_v2")),
            }
        };
        let rescale = zero_snr != ZeroSnr::Ignored && cfg.flag("rescale_betas_zero_snr", false)?;
        if rescale {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let mut alphas_cumprod = cumprod(betas.iter().map(|b| 1.0 - b));
        if rescale && zero_snr == ZeroSnr::RescaleClampLast {
            *alphas_cumprod.last_mut().expect("num_train_timesteps > 0") = 2f32.powi(-24);
        }
        Ok(Self { num_train_timesteps: t, alphas_cumprod })
    }

    /// Sigma of every training timestep, sqrt((1 − ᾱ)/ᾱ), in float32.
    pub fn sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
    }
}

/// torch.linspace in float32: the CPU kernel computes `start + step·i` for the first half and
/// `end − step·(n−1−i)` for the second, each as one fused multiply-add (checked bit-exact
/// against diffusers' betas).
pub fn torch_linspace(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    if n == 1 {
        return vec![s];
    }
    let step = (e - s) / (n - 1) as f32;
    let half = n / 2;
    (0..n).map(|i| if i < half { step.mul_add(i as f32, s) } else { (-step).mul_add((n - 1 - i) as f32, e) }).collect()
}

/// torch.cumprod on CPU accumulates float32 in float64 and rounds each output.
fn cumprod(x: impl Iterator<Item = f32>) -> Vec<f32> {
    let mut acc = 1.0f64;
    x.map(|v| {
        acc *= v as f64;
        acc as f32
    })
    .collect()
}

/// "squaredcos_cap_v2" (Nichol & Dhariwal's cosine schedule), in f64 then float32.
fn cosine_betas(t: usize) -> Vec<f32> {
    let alpha_bar = |x: f64| libm::cos((x + 0.008) / 1.008 * std::f64::consts::PI / 2.0).powi(2);
    (0..t)
        .map(|i| {
            let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// Lin et al. 2023, Algorithm 1: shift and scale sqrt(ᾱ) so the last timestep is pure noise.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let mut s: Vec<f32> = cumprod(betas.iter().map(|b| 1.0 - b)).iter().map(|a| a.sqrt()).collect();
    let (s0, st) = (s[0], s[s.len() - 1]);
    let scale = s0 / (s0 - st);
    for v in &mut s {
        *v = (*v - st) * scale;
    }
    let bar: Vec<f32> = s.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    out.extend(bar.windows(2).map(|w| 1.0 - w[1] / w[0]));
    out
}
