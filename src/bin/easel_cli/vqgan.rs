//! `easel vqgan encode|decode`: an image to VQ code indices and back, with a taming VQGAN
//! or a diffusers VQModel. Files hold what the references hold: `indices` (int64, B x h x
//! w), `z_q` (NCHW) and the decoder's raw `image`.

use std::path::PathBuf;

use clap::Subcommand;
use easel::models::Session;
use easel::ops::StorageType;
use easel::pipelines::native::{load_model_dir, read_image, read_int_tensor, write_tensors, write_values, ImageFile};
use easel::pipelines::vqgan::prepare;
use easel::pipelines::{PipelineError, Rgba, VqGan};
use easel::weights::safetensors::Values;

use super::generate::{open_session, output_path};

#[derive(Subcommand)]
pub enum VqganCommand {
    /// Encode an image into code indices (`indices`) and the quantized latent (`z_q`).
    Encode {
        /// A taming folder (config.yaml + model.safetensors or model.ckpt), a diffusers
        /// VQModel folder, or either converted by `easel convert`.
        #[arg(long)]
        model: PathBuf,
        /// PNG, or safetensors with a float tensor `image` (NCHW in [0, 1]).
        #[arg(long)]
        image: PathBuf,
        /// safetensors file to write.
        #[arg(long)]
        out: PathBuf,
        /// gpu, cpu or auto (auto: the CPU on software adapters).
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// Decode code indices (`indices`, B x h x w) into an image.
    Decode {
        /// As for encode.
        #[arg(long)]
        model: PathBuf,
        /// safetensors with an integer tensor `indices` (B x h x w, or h x w).
        #[arg(long)]
        codes: PathBuf,
        /// Output PNG (a batch: out-0.png ... out-(B-1).png).
        #[arg(long)]
        out: PathBuf,
        /// Also writes `image`: the decoder's raw output, before clamping or rescaling.
        #[arg(long)]
        save_image_tensor: Option<PathBuf>,
        #[arg(long, default_value = "auto")]
        backend: String,
    },
}

/// The model at `path` on the chosen backend. f32: the GPU's codebook search needs it.
async fn load(path: &std::path::Path, backend: &str) -> Result<VqGan, PipelineError> {
    let model = load_model_dir(path, StorageType::F32)?;
    let (cfg, weights) = prepare(&model.family, &model.configs, model.weights)?;
    let session: Session = open_session(backend, weights).await?;
    Ok(VqGan::new(session, cfg))
}

fn request(message: String) -> PipelineError {
    PipelineError::Request(message)
}

pub async fn run(command: VqganCommand) -> Result<(), PipelineError> {
    match command {
        VqganCommand::Encode { model, image, out, backend } => {
            let input = match read_image(&image, "image")? {
                ImageFile::Pixels(p) => p.to_float_rgb(),
                ImageFile::Floats(f) => f,
            };
            let mut vq = load(&model, &backend).await?;
            let e = vq.encode_image(&input).await?;
            let indices: Vec<i64> = e.indices.iter().map(|&i| i as i64).collect();
            let zq_shape = [e.grid[0], vq.cfg.embed_dim, e.grid[1], e.grid[2]];
            write_values(&out, &[("indices", &e.grid, Values::I64(&indices)), ("z_q", &zq_shape, Values::F32(&e.z_q))])?;
            eprintln!("wrote {} ({} x {} x {} codes of {})", out.display(), e.grid[0], e.grid[1], e.grid[2], vq.cfg.num_embeddings);
        }
        VqganCommand::Decode { model, codes, out, save_image_tensor, backend } => {
            let (shape, values) = read_int_tensor(&codes, "indices")?;
            let grid: [usize; 3] = match shape[..] {
                [b, h, w] => [b, h, w],
                [h, w] => [1, h, w],
                _ => return Err(request(format!("{}: 'indices' has shape {shape:?}; want [B, h, w]", codes.display()))),
            };
            let mut indices = Vec::with_capacity(values.len());
            for v in values {
                indices.push(u32::try_from(v).map_err(|_| request(format!("{}: 'indices' holds {v}, which is no codebook index", codes.display())))?);
            }
            let mut vq = load(&model, &backend).await?;
            let image = vq.decode(grid, &indices).await?;
            let f = vq.cfg.downscale();
            let (c, h, w) = (vq.cfg.vae.out_channels, grid[1] * f, grid[2] * f);
            if let Some(p) = &save_image_tensor {
                write_tensors(p, &[("image", &[grid[0], c, h, w], &image)])?;
                eprintln!("wrote {}", p.display());
            }
            if c != 3 {
                return Err(request(format!("the decoder makes {c} channels; a PNG needs 3 (use --save-image-tensor)")));
            }
            for (i, item) in image.chunks(c * h * w).enumerate() {
                let path = output_path(&out, i, grid[0]);
                let png = Rgba::from_nchw(item, w, h).to_png(&[("Software", "Easel".into())]).map_err(request)?;
                std::fs::write(&path, png).map_err(|e| request(format!("{}: {e}", path.display())))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
