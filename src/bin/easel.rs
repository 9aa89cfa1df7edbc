//! The native CLI: diagnostics, conversion, generation, morphs and walks, VQ encode/decode
//! and benchmarks.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
#[path = "easel_cli/generate.rs"]
mod generate;

#[cfg(not(target_arch = "wasm32"))]
#[path = "easel_cli/bench_unet.rs"]
mod bench_unet;

#[cfg(not(target_arch = "wasm32"))]
#[path = "easel_cli/bench_load.rs"]
mod bench_load;

#[cfg(not(target_arch = "wasm32"))]
#[path = "easel_cli/vqgan.rs"]
mod vqgan;

#[cfg(not(target_arch = "wasm32"))]
#[path = "easel_cli/morph.rs"]
mod morph;

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use super::bench_unet::Part;
    use super::{generate, morph, vqgan};
    use clap::{Args, Parser, Subcommand};
    use easel::bench::BenchOptions;
    use easel::gpu::{self, GpuContext, GpuOptions, KernelChoice, Precision};
    use easel::ops::{choose_backend, BackendChoice, BackendKind, BackendPreference};
    use std::process::ExitCode;
    use std::sync::OnceLock;

    #[derive(Parser)]
    #[command(name = "easel", version, about = "Easel: image generation on WebGPU / Vulkan")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
        /// GPU matmul/conv kernels: auto (tiled on hardware GPUs, simple on software
        /// adapters), tiled (workgroup-memory tiles) or simple.
        #[arg(long, global = true, default_value = "auto")]
        kernels: KernelChoice,
        /// Arithmetic: exact (f32, direct) or fast. On the GPU, fast is int8 dot products
        /// for q8_0 linears (and q8_0 convs with the tiled kernels) and f16 tiles where the
        /// GPU has shader-f16; on the CPU, Winograd F(2x2,3x3) for 3x3 convolutions (2.25x
        /// fewer multiplies). `easel bench ops --compare-precision` prints the GPU's error.
        #[arg(long, global = true, default_value = "exact")]
        precision: Precision,
        /// GPU reductions (norms, softmax): auto (on subgroups where the GPU has
        /// `subgroups`) or off (workgroup-memory trees).
        #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "off"])]
        subgroups: String,
    }

    static KERNELS: OnceLock<(KernelChoice, Precision, bool)> = OnceLock::new();

    /// How every command opens the GPU: the default options with `--kernels`,
    /// `--precision` and `--subgroups`.
    pub fn gpu_options() -> GpuOptions {
        let (kernels, precision, allow_subgroups) = KERNELS.get().copied().unwrap_or((KernelChoice::Auto, Precision::Exact, true));
        GpuOptions { kernels, precision, allow_subgroups, ..Default::default() }
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
        /// Convert a diffusers folder or a taming checkpoint into Easel's sharded format.
        Convert {
            /// A diffusers repository or component folder, a taming .ckpt or .safetensors.
            source: std::path::PathBuf,
            /// Output folder (manifest.json + shards).
            #[arg(long)]
            out: std::path::PathBuf,
            /// Storage of linear and conv weights: f32, f16, q8_0 or q4_0.
            #[arg(long, default_value = "q8_0")]
            quant: String,
            /// Shard size in MiB (at most 32).
            #[arg(long, default_value_t = 32)]
            shard_mb: u64,
            /// A TAESD folder (diffusers AutoencoderTiny: config.json + safetensors) whose
            /// decoder draws the per-step previews.
            #[arg(long)]
            taesd: Option<std::path::PathBuf>,
        },
        /// Generate images with a Stable Diffusion model (txt2img, img2img, inpainting).
        Generate(Box<generate::GenerateArgs>),
        /// Frames from one prompt to another, or from one seed's noise to another's, written
        /// as frame-000.png ... and morph.png (an animated PNG).
        Morph(Box<morph::MorphArgs>),
        /// Encode images to VQ codes and decode codes to images (taming VQGAN, VQModel).
        Vqgan {
            #[command(subcommand)]
            what: vqgan::VqganCommand,
        },
        /// Benchmarks (figures printed, not asserted).
        Bench {
            #[command(subcommand)]
            what: BenchWhat,
        },
    }

    #[derive(Subcommand)]
    enum BenchWhat {
        /// Matmul (f32, Q8_0, Q4_0), conv, attention and group norm at SD's shapes, on the
        /// GPU and CPU backends, next to the adapter's ceilings.
        Ops {
            /// Timed runs per case (median reported, after at least 0.5 s of untimed warm-up runs).
            #[arg(long, default_value_t = 3)]
            runs: usize,
            /// gpu, cpu or both.
            #[arg(long, default_value = "both")]
            backend: String,
            /// Only cases whose op, shape or storage type contains this (numbers match whole: "4x4" is not in 77x1024x4096).
            #[arg(long)]
            filter: Option<String>,
            /// Print JSON rows instead of the table.
            #[arg(long)]
            json: bool,
            /// Time the GPU rows with both kernel sets, simple and tiled, side by side.
            #[arg(long)]
            compare_kernels: bool,
            /// Time the GPU rows in both precisions, exact and fast, side by side, with the
            /// fast output's error against the exact one.
            #[arg(long)]
            compare_precision: bool,
            /// Time the GPU rows with the norms reducing in workgroup memory and on
            /// subgroups, side by side (where the GPU has `subgroups`).
            #[arg(long)]
            compare_subgroups: bool,
            /// Time the tiled GPU rows in 64-row tiles and in the tiles each case's M calls
            /// for (16-64 rows), side by side.
            #[arg(long)]
            compare_tiles: bool,
        },
        /// Time per UNet step of the SD-Turbo shape (random full-size weights) and peak memory.
        Unet(PartArgs),
        /// Time per VAE decode of SD's decoder (random weights; 2.5 TFLOP at 512 px, over
        /// three times SD-Turbo's UNet step) and peak memory.
        Vae(PartArgs),
        /// Seconds per GB from a model folder to a ready generator, on full-size SD-Turbo with
        /// random weights (written into --out first if it is not there). The page's time from
        /// Cache Storage to ready: `node scripts/bench/run-browser.mjs --load`.
        Load {
            /// The model folder (written once; the browser bench serves it from here).
            #[arg(long, default_value = "www/bench-models/sd-turbo-q8_0")]
            out: std::path::PathBuf,
            /// Storage of linear/conv weights when writing: f32, f16, q8_0 or q4_0.
            #[arg(long, default_value = "q8_0")]
            quant: String,
            /// gpu, cpu or auto.
            #[arg(long, default_value = "auto")]
            backend: String,
            /// The CLIP tokenizer files to ship with the model (every SD 2.x repository has them).
            #[arg(long, default_value = "www/models/emoji-sd/tokenizer")]
            tokenizer: std::path::PathBuf,
        },
    }

    /// What `bench unet` and `bench vae` take.
    #[derive(Args)]
    struct PartArgs {
        /// Image size in pixels (square).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// gpu, cpu or both.
        #[arg(long, default_value = "both")]
        backend: String,
        /// Storage of linear/conv weights: f32, q8_0 or q4_0.
        #[arg(long, default_value = "f32")]
        quant: String,
        /// Batch (1: SD-Turbo without guidance; 2: with classifier-free guidance; the
        /// decoder decodes each image).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed calls (median reported, after one warm-up).
        #[arg(long, default_value_t = 2)]
        runs: usize,
        /// Then one more call timed per kind of op (CPU backend): ms, GFLOP/s, GB/s.
        #[arg(long)]
        profile: bool,
    }

    /// Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set" at every
    /// device open when the variable is missing (as under sudo, cron or CI): nothing the
    /// user did is wrong, so give them a private runtime directory instead.
    fn ensure_runtime_dir() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir()) {
            return;
        }
        // One per user, reused by later runs (the owner's uid, as /proc/self shows it).
        let uid = std::fs::metadata("/proc/self").map_or(std::process::id(), |m| m.uid());
        let dir = std::env::temp_dir().join(format!("easel-runtime-{uid}"));
        if std::fs::create_dir_all(&dir).and_then(|_| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))).is_ok() {
            // Single-threaded here: nothing else reads the environment yet.
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        KERNELS.get_or_init(|| (cli.kernels, cli.precision, cli.subgroups != "off"));
        easel::ops::cpu::winograd::set_fast_precision(cli.precision == Precision::Fast);
        ensure_runtime_dir();
        if let Command::Convert { source, out, quant, shard_mb, taesd } = &cli.command {
            return convert(source, taesd.as_deref(), out, quant, *shard_mb);
        }
        if let Command::Bench { what: BenchWhat::Load { out, quant, backend, tokenizer } } = &cli.command {
            return match pollster::block_on(super::bench_load::run(out, quant, backend, tokenizer)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        let result = match cli.command {
            Command::Generate(args) => pollster::block_on(generate::run(*args)).map_err(|e| e.to_string()),
            Command::Morph(args) => pollster::block_on(morph::run(*args)).map_err(|e| e.to_string()),
            Command::Vqgan { what } => pollster::block_on(vqgan::run(what)).map_err(|e| e.to_string()),
            command => pollster::block_on(run(command)).map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn run(command: Command) -> Result<(), easel::GpuError> {
        if let Command::Bench { what: BenchWhat::Ops { runs, backend, filter, json, compare_kernels, compare_precision, compare_subgroups, compare_tiles } } = command {
            let options =
                BenchOptions { runs: runs.max(1), gpu: backend != "cpu", cpu: backend != "gpu", filter, compare_kernels, compare_precision, compare_subgroups, compare_tiles };
            return bench_ops(options, json).await;
        }
        if let Command::Bench { what: BenchWhat::Unet(a) | BenchWhat::Vae(a) } = &command {
            let part = match command {
                Command::Bench { what: BenchWhat::Vae(_) } => Part::Decoder,
                _ => Part::Unet,
            };
            return super::bench_unet::run(part, a.size, &a.backend, &a.quant, a.batch, a.runs, a.profile).await;
        }
        let ctx = GpuContext::new(&gpu_options()).await?;
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
            Command::Bench { .. } | Command::Convert { .. } | Command::Generate(_) | Command::Morph(_) | Command::Vqgan { .. } => unreachable!("handled above"),
        }
        Ok(())
    }

    fn convert(source: &std::path::Path, taesd: Option<&std::path::Path>, out: &std::path::Path, quant: &str, shard_mb: u64) -> ExitCode {
        use easel::ops::StorageType;
        let Some(quant) = StorageType::from_name(quant) else {
            eprintln!("error: unknown --quant '{quant}': use f32, f16, q8_0 or q4_0");
            return ExitCode::FAILURE;
        };
        if shard_mb == 0 || shard_mb > 32 {
            eprintln!("error: --shard-mb must be between 1 and 32");
            return ExitCode::FAILURE;
        }
        let options = easel::weights::convert::ConvertOptions { quant, shard_bytes: shard_mb << 20 };
        match easel::weights::convert::convert_with_taesd(source, taesd, out, &options) {
            Ok(summary) => {
                println!("{summary}");
                println!("wrote {}", out.join("manifest.json").display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn bench_ops(options: BenchOptions, json: bool) -> Result<(), easel::GpuError> {
        use easel::bench::{bench_ops, ceilings, format_table};
        let ctx = if options.gpu { Some(GpuContext::new(&gpu_options()).await?) } else { None };
        if let Some(ctx) = &ctx {
            eprintln!("GPU: {}", ctx.report.summary());
            if ctx.is_software() {
                eprintln!("  (a software adapter: the tiled kernels and the fast precision are shaped for hardware GPUs and cannot show their gain here)");
            }
        }
        eprintln!("CPU backend: candle on {} threads", std::thread::available_parallelism().map_or(1, |n| n.get()));
        let rows = bench_ops(ctx.as_ref(), &options, |r| {
            eprintln!("  {} {} {} {}: {}", r.op, r.shape, r.storage, r.backend, r.millis.map_or_else(|| r.error.clone().unwrap_or_default(), |ms| format!("{ms:.1} ms")));
        })
        .await;
        let c = ceilings(ctx.as_ref(), &rows, 256).await;
        if json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "rows": rows, "ceilings": c })).unwrap_or_default());
        } else {
            print!("{}", format_table(&rows, &c));
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
        println!("subgroups     {}", if r.subgroups { "yes (reductions on subgroups)" } else { "no" });
        println!("kernels       {}", r.kernels);
        println!("precision     {}", r.precision);
        let l = &r.limits;
        println!("limits        maxBufferSize {} MiB, maxStorageBufferBindingSize {} MiB,", l.max_buffer_size >> 20, l.max_storage_buffer_binding_size >> 20);
        println!(
            "              {} storage buffers/stage, {} B workgroup storage, {} invocations/workgroup",
            l.max_storage_buffers_per_shader_stage, l.max_compute_workgroup_storage_size, l.max_compute_invocations_per_workgroup
        );
        println!("features      {}", r.features.join(", "));
    }
}
