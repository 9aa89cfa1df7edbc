//! The native CLI: diagnostics now; conversion, generation and benchmarks as they land.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use clap::{Parser, Subcommand};
    use easel::gpu::{self, GpuContext, GpuOptions};
    use easel::ops::{choose_backend, BackendChoice, BackendKind, BackendPreference};
    use std::process::ExitCode;

    #[derive(Parser)]
    #[command(name = "easel", version, about = "Easel: image generation on WebGPU / Vulkan")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Show the GPU adapter, its limits and features.
        Info {
            /// Print JSON instead of text.
            #[arg(long)]
            json: bool,
        },
        /// Run a small matmul on the GPU and check it against the CPU backend.
        Selftest,
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        match pollster::block_on(run(cli.command)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn run(command: Command) -> Result<(), easel::GpuError> {
        let ctx = GpuContext::new(&GpuOptions::default()).await?;
        match command {
            Command::Info { json } => {
                let choice = choose_backend(BackendPreference::Auto, Some(&ctx.report), None).unwrap_or_else(|e| BackendChoice { kind: BackendKind::Cpu, reason: e });
                if json {
                    let v = serde_json::json!({ "adapter": ctx.report, "backend": choice });
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    print_report(&ctx.report);
                    println!("backend       {:?} by default: {}", choice.kind, choice.reason);
                }
            }
            Command::Selftest => {
                let r = gpu::self_test(&ctx).await?;
                println!(
                    "self-test passed on {}: matmul {}x{}x{} relative error {:.2e} (max |diff| {:.2e}) in {:.1} ms",
                    ctx.report.summary(),
                    r.shape[0],
                    r.shape[1],
                    r.shape[2],
                    r.relative_error,
                    r.max_abs_error,
                    r.millis
                );
            }
        }
        Ok(())
    }

    fn print_report(r: &easel::gpu::AdapterReport) {
        println!("adapter       {}", r.name);
        println!("vendor        {}", r.vendor);
        println!("architecture  {}", r.architecture);
        println!("backend       {}", r.backend);
        println!("device type   {}{}", r.device_type, if r.software { " (software: the CPU backend is faster)" } else { "" });
        println!("shader-f16    {}", if r.shader_f16 { "yes" } else { "no" });
        let l = &r.limits;
        println!("limits        maxBufferSize {} MiB, maxStorageBufferBindingSize {} MiB,", l.max_buffer_size >> 20, l.max_storage_buffer_binding_size >> 20);
        println!("              {} storage buffers/stage, {} B workgroup storage, {} invocations/workgroup",
            l.max_storage_buffers_per_shader_stage, l.max_compute_workgroup_storage_size, l.max_compute_invocations_per_workgroup);
        println!("features      {}", r.features.join(", "));
    }
}
