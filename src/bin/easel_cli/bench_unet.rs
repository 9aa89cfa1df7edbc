//! `easel bench unet`: seconds per UNet step of the SD-Turbo shape, GPU and CPU, with peak
//! memory (GPU weight + activation bytes; the process's peak RSS).

use easel::bench::unet::{sd_turbo_unet_weights, unet_step};
use easel::gpu::GpuContext;
use easel::models::Session;
use easel::ops::StorageType;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()).map_or(f64::NAN, |kb| kb / 1024.0)
}

pub async fn run(size: usize, backend: &str, quant: &str, batch: usize, runs: usize, profile: bool) -> Result<(), easel::GpuError> {
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
    let (cfg, store) = sd_turbo_unet_weights(storage).map_err(|e| easel::GpuError::SelfTest(e.to_string()))?;
    println!("SD-Turbo UNet, {size}x{size} px, batch {batch}, {} weights: made in {:.1} s", storage.name(), t0.elapsed().as_secs_f64());
    println!("backend  ms/step    weights MB  activations MB  peak RSS MB");
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
        match unet_step(&mut sessions[i], &cfg, size, batch, runs, storage, profile).await {
            Ok(r) => {
                println!("{:<8} {:>9.0} {:>13.1} {:>15.1} {:>12.0}", r.backend, r.millis_per_step, r.weight_bytes as f64 / 1e6, r.activation_bytes as f64 / 1e6, peak_rss_mb());
                match (&r.profile, profile) {
                    (Some(table), _) => println!("\none more {} step, per kind of op:\n{table}", r.backend),
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
