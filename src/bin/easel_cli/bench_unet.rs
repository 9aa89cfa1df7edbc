//! `easel bench unet` and `easel bench vae`: seconds per UNet step of the SD-Turbo shape, or
//! per VAE decode of SD's, GPU and CPU, with peak memory (GPU weight + activation bytes; the
//! process's peak RSS).

use easel::bench::decoder::{decode_time, sd_vae_decoder_weights};
use easel::bench::unet::{sd_turbo_unet_weights, unet_step, UnetStep};
use easel::error::OpError;
use easel::gpu::GpuContext;
use easel::models::unet::UNetConfig;
use easel::models::vae::VaeConfig;
use easel::models::Session;
use easel::ops::StorageType;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()).map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The part of the model to time.
#[derive(Clone, Copy)]
pub enum Part {
    Unet,
    Decoder,
}

/// The part's config, with its random weights made.
enum Config {
    Unet(UNetConfig),
    Decoder(VaeConfig),
}

pub async fn run(part: Part, size: usize, backend: &str, quant: &str, batch: usize, runs: usize, profile: bool) -> Result<(), easel::GpuError> {
    let storage = match quant {
        "q8_0" => StorageType::Q8_0,
        "q4_0" => StorageType::Q4_0,
        _ => StorageType::F32,
    };
    if !size.is_multiple_of(8) || size == 0 {
        eprintln!("error: --size must be a positive multiple of 8");
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let failed = |e: OpError| easel::GpuError::SelfTest(e.to_string());
    let (config, store, what, per) = match part {
        Part::Unet => {
            let (cfg, store) = sd_turbo_unet_weights(storage).map_err(failed)?;
            (Config::Unet(cfg), store, "SD-Turbo UNet", "step")
        }
        Part::Decoder => {
            let (cfg, store) = sd_vae_decoder_weights(storage).map_err(failed)?;
            (Config::Decoder(cfg), store, "SD VAE decoder", "decode")
        }
    };
    println!("{what}, {size}x{size} px, batch {batch}, {} weights: made in {:.1} s", storage.name(), t0.elapsed().as_secs_f64());
    println!("backend  ms/{per:<6} weights MB  activations MB  peak RSS MB");
    let mut sessions: Vec<Session> = vec![];
    if backend == "gpu" || backend == "both" {
        let ctx = GpuContext::new(&crate::cli::gpu_options()).await?;
        let s = Session::gpu(ctx, &store).map_err(|e| easel::GpuError::SelfTest(e.to_string()))?;
        sessions.push(s);
    }
    let cpu = backend == "cpu" || backend == "both";
    let mut store = Some(store);
    if cpu && sessions.is_empty() {
        sessions.push(Session::cpu(store.take().expect("store")));
    }
    let mut i = 0;
    while i < sessions.len() {
        let timed: Result<UnetStep, OpError> = match &config {
            Config::Unet(cfg) => unet_step(&mut sessions[i], cfg, size, batch, runs, storage, profile).await,
            Config::Decoder(cfg) => decode_time(&mut sessions[i], cfg, size, batch, runs, storage, profile).await,
        };
        match timed {
            Ok(r) => {
                println!("{:<8} {:>9.0} {:>13.1} {:>15.1} {:>12.0}", r.backend, r.millis_per_step, r.weight_bytes as f64 / 1e6, r.activation_bytes as f64 / 1e6, peak_rss_mb());
                match (&r.profile, profile) {
                    (Some(table), _) => println!("\none more {} {per}, per kind of op:\n{table}", r.backend),
                    (None, true) => println!("(the GPU backend's dispatches are not timed one by one: --profile profiles the CPU backend)"),
                    _ => {}
                }
            }
            Err(e) => println!("{:<8} failed: {e}", sessions[i].kind()),
        }
        if cpu && i == 0 && sessions[0].kind() == "gpu" {
            sessions.clear(); // free the GPU copy before the CPU run
            sessions.push(Session::cpu(store.take().expect("store")));
            i = 0;
            continue;
        }
        i += 1;
    }
    Ok(())
}
