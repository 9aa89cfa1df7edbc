//! Deterministic random weights for a model schema: full-size architectures in tests and
//! benchmarks without a checkpoint. Scales follow common inits so activations stay in a
//! sane range through every layer: weights uniform with variance 1/fan_in, norm gains near
//! 1, small biases and embeddings.

/// A fast xorshift stream (weights for 1.3 billion parameters must not take minutes);
/// seeded from the tensor's name, so each tensor is the same whatever the order.
struct Stream(u64);

impl Stream {
    fn new(name: &str) -> Self {
        // FNV-1a of the name; never zero.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Self(h | 1)
    }

    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        // 23 random mantissa bits in [1, 2), mapped to [-1, 1).
        f32::from_bits(0x3f80_0000 | (x >> 41) as u32) * 2.0 - 3.0
    }
}

/// The values of weight `name` with `shape`.
pub fn random_weight(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
    // Uniform on [-a, a] has variance a^2 / 3.
    let (center, half_width) = if name.contains("embedding.weight") || name.ends_with("embeddings.weight") {
        (0.0, 0.02 * 3f32.sqrt())
    } else if shape.len() == 1 && name.ends_with(".weight") {
        (1.0, 0.05) // norm gains
    } else if name.ends_with(".bias") {
        (0.0, 0.02)
    } else {
        (0.0, (3.0 / fan_in as f32).sqrt())
    };
    let mut s = Stream::new(name);
    (0..n).map(|_| center + half_width * s.next()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_deterministic_and_scaled_by_fan_in() {
        let w = random_weight("unet.conv_in.weight", &[320, 4, 3, 3]);
        assert_eq!(w, random_weight("unet.conv_in.weight", &[320, 4, 3, 3]));
        assert_ne!(w[..8], random_weight("unet.conv_out.weight", &[320, 4, 3, 3])[..8]);
        let var = w.iter().map(|v| (v * v) as f64).sum::<f64>() / w.len() as f64;
        assert!((var * 36.0 - 1.0).abs() < 0.05, "variance x fan_in = {}", var * 36.0);
        let g = random_weight("unet.conv_norm_out.weight", &[320]);
        assert!(g.iter().all(|v| (0.95..=1.05).contains(v)));
    }
}
