//! Which training timesteps an N-step schedule visits (`timestep_spacing`, Lin et al. 2023
//! Table 2) and the sigma-schedule helpers the Karras-style schedulers share. The numpy
//! calls diffusers makes (linspace, arange, round-half-even) are reproduced exactly, so the
//! timesteps are equal, not just close.

use super::config::{unsupported, Config};
use super::SchedulerError;

/// `timestep_spacing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// Evenly from T−1 down to 0.
    Linspace,
    /// Multiples of T/N (floored) plus `steps_offset`: never reaches T−1.
    Leading,
    /// From T−1 down in steps of T/N: always starts at pure noise.
    Trailing,
}

impl TimestepSpacing {
    /// Reads `timestep_spacing`, with the class's default.
    pub fn from_config(cfg: &Config, class: &'static str, default: &'static str) -> Result<Self, SchedulerError> {
        match cfg.text("timestep_spacing", default)? {
            "linspace" => Ok(Self::Linspace),
            "leading" => Ok(Self::Leading),
            "trailing" => Ok(Self::Trailing),
            other => Err(unsupported(class, "timestep_spacing", other, "linspace, leading or trailing")),
        }
    }
}

/// The integer timesteps of DDIM, DDPM and PNDM (and, but for linspace, Euler), descending.
pub fn integer_timesteps(spacing: TimestepSpacing, t: usize, n: usize, steps_offset: usize) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n, true).iter().rev().map(|x| x.round_ties_even() as i64).collect(),
        TimestepSpacing::Leading => (0..n).rev().map(|i| (i * (t / n) + steps_offset) as i64).collect(),
        TimestepSpacing::Trailing => trailing(t as f64, t, n),
    }
}

/// `np.arange(start, 0, -T/N).round() - 1`. numpy's float arange can yield N+1 values
/// (the last rounding to timestep −1) when (T/N)·N falls just short of T; we keep N.
pub fn trailing(start: f64, t: usize, n: usize) -> Vec<i64> {
    let mut v: Vec<i64> = np_arange(start, 0.0, -(t as f64 / n as f64)).iter().map(|x| x.round_ties_even() as i64 - 1).collect();
    v.truncate(n);
    v
}

/// numpy.linspace(start, stop, num, endpoint) in f64: `i·step + start`, the end point exact.
pub fn np_linspace(start: f64, stop: f64, num: usize, endpoint: bool) -> Vec<f64> {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    let step = (stop - start) / div as f64;
    let mut y: Vec<f64> = (0..num).map(|i| if div > 0 { i as f64 * step + start } else { start }).collect();
    if endpoint && num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// numpy.arange(start, stop, step) for floats: length ceil((stop−start)/step), values
/// `start + i·d` with d = (start + step) − start, as numpy's fill does.
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil().max(0.0) as usize;
    let d = (start + step) - start;
    (0..len).map(|i| if i == 1 { start + step } else { start + i as f64 * d }).collect()
}

/// numpy.interp at `x` over the grid 0, 1, …, len−1 (the training timesteps).
pub fn interp(x: f64, fp: &[f32]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return fp[0] as f64;
    }
    if x >= last as f64 {
        return fp[last] as f64;
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return fp[j] as f64;
    }
    let (a, b) = (fp[j] as f64, fp[j + 1] as f64);
    (b - a) * (x - j as f64) + a
}

/// Karras et al. 2022 (eq. 5): N sigmas evenly spaced in sigma^(1/7) from max to min.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (libm::pow(sigma_min, 1.0 / rho), libm::pow(sigma_max, 1.0 / rho));
    np_linspace(0.0, 1.0, n, true).iter().map(|r| libm::pow(max_inv + r * (min_inv - max_inv), rho)).collect()
}

/// The (fractional) training timestep whose sigma is `sigma`, interpolating linearly in
/// log sigma; `log_sigmas` is ln of the training sigmas in float32, ascending.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = libm::log(sigma.max(1e-10));
    // The last training timestep at or below this sigma (0 when none is).
    let low = log_sigmas.iter().rposition(|&l| log_sigma - l as f64 >= 0.0).unwrap_or(0).min(log_sigmas.len() - 2);
    // numpy subtracts the two float32 neighbours in float32.
    let (lo, gap) = (log_sigmas[low] as f64, (log_sigmas[low] - log_sigmas[low + 1]) as f64);
    let w = ((lo - log_sigma) / gap).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// How a sigma scheduler ends: at sigma 0 (a clean sample) or at the smallest training sigma.
pub fn final_sigma(cfg: &Config, class: &'static str, train_sigma0: f32) -> Result<f32, SchedulerError> {
    match cfg.text("final_sigmas_type", "zero")? {
        "zero" => Ok(0.0),
        "sigma_min" => Ok(train_sigma0),
        other => Err(unsupported(class, "final_sigmas_type", other, "zero or sigma_min")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_arange_and_linspace() {
        assert_eq!(np_arange(1000.0, 0.0, -250.0), vec![1000.0, 750.0, 500.0, 250.0]);
        assert_eq!(np_linspace(0.0, 999.0, 4, true), vec![0.0, 333.0, 666.0, 999.0]);
        assert_eq!(np_linspace(0.0, 50.0, 4, false), vec![0.0, 12.5, 25.0, 37.5]);
        // numpy gives 62 values here (the last ~1e-13, i.e. timestep -1); we keep 61.
        assert_eq!(np_arange(1000.0, 0.0, -1000.0 / 61.0).len(), 62);
        let t = trailing(1000.0, 1000, 61);
        assert_eq!((t.len(), t[0], t[60]), (61, 999, 15));
    }

    #[test]
    fn spacings_by_hand() {
        use TimestepSpacing::*;
        assert_eq!(integer_timesteps(Leading, 1000, 5, 1), vec![801, 601, 401, 201, 1]);
        assert_eq!(integer_timesteps(Trailing, 1000, 4, 1), vec![999, 749, 499, 249]);
        // np.linspace(0, 999, 4).round() = [0, 333, 666, 999]
        assert_eq!(integer_timesteps(Linspace, 1000, 4, 0), vec![999, 666, 333, 0]);
        // 1000/3 steps: 1000, 666.67, 333.33 round to 1000, 667, 333.
        assert_eq!(integer_timesteps(Trailing, 1000, 3, 0), vec![999, 666, 332]);
    }

    // The platform's own functions (or candle's) as the reference: a second implementation.
    #[allow(clippy::disallowed_methods)]
    #[test]
    fn sigma_to_t_inverts_the_training_sigmas() {
        let log: Vec<f32> = (0..10).map(|i| (i as f32 * 0.5).ln_1p()).collect();
        assert!((sigma_to_t((log[3] as f64).exp(), &log) - 3.0).abs() < 1e-9);
        let mid = ((log[3] as f64 + log[4] as f64) / 2.0).exp();
        assert!((sigma_to_t(mid, &log) - 3.5).abs() < 1e-9);
        assert_eq!(sigma_to_t(1e-3, &log), 0.0);
        assert_eq!(sigma_to_t(1e6, &log), 9.0);
    }
}
