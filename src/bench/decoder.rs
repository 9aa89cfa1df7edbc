//! Time per VAE decode of SD's shape (SD 2.1-base's AutoencoderKL decoder, random weights)
//! on a backend. At 512 px the decoder is 2.5 TFLOP, over three times SD-Turbo's UNet step
//! (0.7 TFLOP): on the CPU it is most of a one-step generation. Printed, never asserted.

use crate::error::OpError;
use crate::models::random::random_weight;
use crate::models::schema;
use crate::models::vae::{decode_within, VaeConfig};
use crate::models::Session;
use crate::ops::cpu::HostTensor;
use crate::ops::{StorageType, WeightStore};

use super::unet::{timed_runs, UnetStep};

/// SD 2.1-base's VAE config (SD 1.x, SD-Turbo and SDXL's decoders have the same shape).
pub const SD21_VAE_CONFIG: &str = include_str!("../../tests/fixtures/configs/stable-diffusion-2-1-base/vae/config.json");

/// The decoder's weights at random (post_quant_conv and `vae.decoder.*`), stored as
/// `storage` (conv weights; norms and biases stay f32).
pub fn sd_vae_decoder_weights(storage: StorageType) -> Result<(VaeConfig, WeightStore), OpError> {
    let cfg = VaeConfig::from_json(&serde_json::from_str(SD21_VAE_CONFIG).expect("valid JSON"))?;
    let mut store = WeightStore::new();
    for (name, shape) in schema::vae(&cfg) {
        if name.starts_with("vae.decoder.") || name.starts_with("vae.post_quant_conv.") {
            let s = crate::weights::rules::storage_for(&name, &shape, false, storage);
            store.insert(&name, &shape, s, &random_weight(&name, &shape))?;
        }
    }
    Ok((cfg, store))
}

/// Median time of `runs` decodes (at least one, after a warm-up) of `batch` latents of a
/// `size` x `size` image, cut into bands as generation cuts them. With `profile`, one more
/// decode is timed per kind of op (CPU backend).
pub async fn decode_time(session: &mut Session, cfg: &VaeConfig, size: usize, batch: usize, runs: usize, storage: StorageType, profile: bool) -> Result<UnetStep, OpError> {
    let h = size / cfg.downscale();
    let shape = [batch, cfg.latent_channels, h, h];
    let max_tensor = crate::pipelines::limits::budget(session).max_tensor;
    let mut c = session
        .compile(|g| {
            let z = g.input("z", &shape);
            let o = g.scoped("vae", |g| decode_within(g, cfg, z, max_tensor))?;
            g.output(o);
            Ok(())
        })
        .await?;
    let n: usize = shape.iter().product();
    session.set_input(&mut c, "z", HostTensor::F32((0..n).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect()))?;
    timed_runs(session, &c, "vae decoder", size, batch, runs, storage, profile).await
}
