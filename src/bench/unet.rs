//! Time per UNet step of the SD-Turbo shape (SD 2.1-base's UNet, random full-size weights)
//! on a backend, with peak memory. Printed, never asserted.

use serde::Serialize;

use crate::error::OpError;
use crate::models::random::random_weight;
use crate::models::schema;
use crate::models::unet::{unet, UNetConfig};
use crate::models::{Compiled, Session};
use crate::ops::cpu::HostTensor;
use crate::ops::{StorageType, WeightStore};
use crate::platform::now_ms;

/// SD 2.1-base's UNet config (SD-Turbo shares it).
pub const SD21_UNET_CONFIG: &str = r#"{"_class_name": "UNet2DConditionModel", "attention_head_dim": [5, 10, 20, 20],
 "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 1024,
 "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
 "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
 "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "norm_eps": 1e-05,
 "use_linear_projection": true, "flip_sin_to_cos": true, "freq_shift": 0, "sample_size": 64}"#;

/// One measurement: a UNet step, or a whole decode (`bench::decoder`).
#[derive(Debug, Clone, Serialize)]
pub struct UnetStep {
    /// What ran: "unet" or "vae decoder".
    pub part: String,
    pub backend: String,
    /// The session's arithmetic: "exact" or "fast (..)" (`Session::precision`).
    pub precision: String,
    pub size: usize,
    pub batch: usize,
    pub storage: String,
    /// Per call: a UNet step, or one decode.
    pub millis_per_step: f64,
    /// Every timed run, fastest first (the median is `millis_per_step`).
    pub runs_millis: Vec<f64>,
    pub weight_bytes: u64,
    pub activation_bytes: u64,
    /// With `profile`: the last step's time per kind of op (CPU backend), as a table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// The SD-Turbo UNet's weights at random, stored as `storage` (linear/conv weights).
pub fn sd_turbo_unet_weights(storage: StorageType) -> Result<(UNetConfig, WeightStore), OpError> {
    let cfg = UNetConfig::from_json(&serde_json::from_str(SD21_UNET_CONFIG).expect("valid JSON"))?;
    let mut store = WeightStore::new();
    for (name, shape) in schema::unet(&cfg) {
        // As `easel convert --quant` would store it.
        let s = crate::weights::rules::storage_for(&name, &shape, false, storage);
        store.insert(&name, &shape, s, &random_weight(&name, &shape))?;
    }
    Ok((cfg, store))
}

/// Median time of `runs` UNet calls (at least one, after a warm-up) at `size` x `size` pixels.
/// With `profile`, the last step is also timed per kind of op (CPU backend).
pub async fn unet_step(session: &mut Session, cfg: &UNetConfig, size: usize, batch: usize, runs: usize, storage: StorageType, profile: bool) -> Result<UnetStep, OpError> {
    let h = size / 8;
    let shape = [batch, cfg.in_channels, h, h];
    let mut c = session
        .compile(|g| {
            let x = g.input("sample", &shape);
            let t = g.input("t", &[batch]);
            let e = g.input("ctx", &[batch, 77, cfg.cross_attention_dim]);
            let o = g.scoped("unet", |g| unet(g, cfg, x, t, Some(e)))?;
            g.output(o);
            Ok(())
        })
        .await?;
    let n: usize = shape.iter().product();
    session.set_input(&mut c, "sample", HostTensor::F32((0..n).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect()))?;
    session.set_input(&mut c, "t", HostTensor::F32(vec![999.0; batch]))?;
    session.set_input(&mut c, "ctx", HostTensor::F32((0..batch * 77 * cfg.cross_attention_dim).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect()))?;
    timed_runs(session, &c, "unet", size, batch, runs, storage, profile).await
}

/// Times `runs` calls of the compiled part (at least one, after a warm-up), then, with
/// `profile`, one more per kind of op (CPU backend).
#[allow(clippy::too_many_arguments)]
pub(super) async fn timed_runs(
    session: &mut Session,
    c: &Compiled,
    part: &str,
    size: usize,
    batch: usize,
    runs: usize,
    storage: StorageType,
    profile: bool,
) -> Result<UnetStep, OpError> {
    let mut times = vec![];
    for i in 0..=runs.max(1) {
        let t0 = now_ms();
        session.run(c).await?; // reads the output back: the call is complete
        if i > 0 {
            times.push(now_ms() - t0);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    // A separate call: timing each op costs a little, so it is not one of the timed runs.
    let profile = if profile { session.run_profiled(c).await?.1.map(|p| format!("{}\nthe slowest shapes:\n{}", p.table(), p.shapes_table(15))) } else { None };
    let weight_bytes = session.weight_bytes();
    Ok(UnetStep {
        part: part.into(),
        backend: session.kind().into(),
        precision: session.precision(),
        size,
        batch,
        storage: storage.name().into(),
        millis_per_step: super::median(times.clone()),
        runs_millis: times,
        weight_bytes,
        activation_bytes: c.activation_bytes(),
        profile,
    })
}
