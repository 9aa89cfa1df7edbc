//! diffusers' `AmusedScheduler` (MaskGIT sampling over image tokens) on the host: every step
//! samples a token for each masked position from softmax(logits), then re-masks the
//! least confident of the new tokens (log prob + temperature x Gumbel noise) down to the
//! cosine (or linear) schedule's count. Arithmetic is f32 in torch's order.

use std::f32::consts::PI;

/// The uniforms one step consumes: one per token for the categorical draw, and one per
/// token for the Gumbel noise (absent on the last step, which re-masks nothing).
pub struct StepDraws<'a> {
    pub sample_u: &'a [f32],
    pub gumbel_u: Option<&'a [f32]>,
}

/// Tokens after one step.
pub struct StepOutput {
    /// Masked positions filled with their sampled token (diffusers' pred_original_sample).
    pub pred_original: Vec<u32>,
    /// `pred_original` with the re-masked positions set back to the mask token.
    pub prev_sample: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct AmusedScheduler {
    pub mask_token_id: u32,
    pub cosine: bool,
    /// torch.linspace(2, 0, steps), one per step.
    pub temperatures: Vec<f32>,
    /// The share of tokens masked at the start (inpainting: the brushed region's; 1 for
    /// text-to-image): it scales the schedule's mask count, as diffusers' `step` does.
    pub starting_mask_ratio: f32,
}

impl AmusedScheduler {
    /// `set_timesteps(steps)` with the default temperature range (2, 0).
    pub fn new(mask_token_id: u32, cosine: bool, steps: usize) -> Self {
        Self { mask_token_id, cosine, temperatures: torch_linspace(2.0, 0.0, steps), starting_mask_ratio: 1.0 }
    }

    pub fn steps(&self) -> usize {
        self.temperatures.len()
    }

    /// One step at index `i` over `logits` [B, K, N] (after guidance) and `sample` [B, N].
    pub fn step(&self, i: usize, batch: usize, logits: &[f32], sample: &[u32], draws: &StepDraws) -> StepOutput {
        let n_tok = sample.len();
        let k = logits.len() / n_tok;
        let per_item = n_tok / batch;
        let mut pred = sample.to_vec();
        let mut selected = vec![f32::MAX; n_tok];
        let mut probs = vec![0f32; k];
        for (t, tok) in sample.iter().enumerate() {
            let (b, p) = (t / per_item, t % per_item);
            let base = b * k * per_item + p;
            let row = |j: usize| logits[base + j * per_item];
            let max = (0..k).map(row).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (j, pj) in probs.iter_mut().enumerate() {
                *pj = libm::expf(row(j) - max);
                sum += *pj;
            }
            for pj in probs.iter_mut() {
                *pj /= sum;
            }
            if *tok != self.mask_token_id {
                continue;
            }
            // Inverse CDF: the number of cumulative sums <= u, clamped to the last class.
            let (mut cum, mut idx) = (0f32, 0usize);
            for &pj in &probs {
                cum += pj;
                if cum <= draws.sample_u[t] {
                    idx += 1;
                }
            }
            let idx = idx.min(k - 1);
            pred[t] = idx as u32;
            selected[t] = probs[idx];
        }
        let Some(gumbel_u) = draws.gumbel_u.filter(|_| i + 1 < self.steps()) else {
            return StepOutput { prev_sample: pred.clone(), pred_original: pred };
        };
        let ratio = (i + 1) as f32 / self.steps() as f32;
        let mask_ratio = self.starting_mask_ratio * if self.cosine { libm::cosf(ratio * PI / 2.0) } else { 1.0 - ratio };
        let temp = self.temperatures[i];
        let mut prev = pred.clone();
        for b in 0..batch {
            let r = b * per_item..(b + 1) * per_item;
            let unknown = sample[r.clone()].iter().filter(|&&s| s == self.mask_token_id).count() as f32;
            let mask_len = (per_item as f32 * mask_ratio).floor().min(unknown - 1.0).max(1.0) as usize;
            let conf: Vec<f32> = r.clone().map(|t| libm::logf(selected[t].max(1e-20)) + temp * gumbel(gumbel_u[t])).collect();
            let mut sorted = conf.clone();
            sorted.sort_by(f32::total_cmp);
            let cut = sorted[mask_len.min(per_item - 1)];
            for (j, c) in conf.iter().enumerate() {
                if *c < cut {
                    prev[r.start + j] = self.mask_token_id;
                }
            }
        }
        StepOutput { pred_original: pred, prev_sample: prev }
    }
}

/// -log(-log(u)), both logs clamped at 1e-20 as diffusers' `gumbel_noise`.
fn gumbel(u: f32) -> f32 {
    -libm::logf((-libm::logf(u.max(1e-20))).max(1e-20))
}

/// torch.linspace in f32: the first half counts up from `start`, the second down from `end`.
fn torch_linspace(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    (0..n).map(|i| if i < n / 2 { start + step * i as f32 } else { end - step * (n - 1 - i) as f32 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inpainting_scales_the_mask_counts_by_the_share_masked_at_the_start() {
        // 64 tokens, the first 32 masked (share 0.5), 4 steps, cosine: floor(64 x 0.5 x
        // cos(pi/8 k)) for k = 1, 2, 3 = 29, 22, 12 stay masked, then none.
        let mut sched = AmusedScheduler::new(99, true, 4);
        sched.starting_mask_ratio = 0.5;
        let (k, n) = (4, 64);
        let logits: Vec<f32> = (0..k * n).map(|i| ((i * 7919) % 13) as f32 / 5.0).collect();
        let mut sample: Vec<u32> = (0..n as u32).map(|t| if t < 32 { 99 } else { t % 4 }).collect();
        let known = sample.clone();
        let u: Vec<f32> = (0..n).map(|i| ((i * 37) % 100) as f32 / 100.0 + 0.005).collect();
        let mut counts = vec![];
        for i in 0..4 {
            let gumbel = (i < 3).then_some(u.as_slice());
            let out = sched.step(i, 1, &logits, &sample, &StepDraws { sample_u: &u, gumbel_u: gumbel });
            counts.push(out.prev_sample.iter().filter(|&&t| t == 99).count());
            // Tokens given at the start never change.
            assert_eq!(out.prev_sample[32..], known[32..]);
            sample = out.prev_sample;
        }
        assert_eq!(counts, [29, 22, 12, 0]);
    }
}
