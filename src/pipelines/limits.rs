//! Will a generation fit? An estimate of its largest activations, from the model's configs
//! and the request's size, checked against what the backend can hold before any step runs,
//! so that a request too large fails at once with the largest size that fits instead of
//! minutes later with an allocation or binding error.

use super::request::Request;
use crate::models::session::Backend;
use crate::models::unet::UNetConfig;
use crate::models::vae::VaeConfig;

/// What a backend can hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryBudget {
    /// The largest single activation (GPU: maxBufferSize; wasm: a 2 GiB allocation).
    pub max_tensor: u64,
    /// All activations together (unknown on a GPU: u64::MAX).
    pub total: u64,
    /// Whether attention materializes whole score matrices (the native CPU path, through
    /// candle); the GPU kernels and the wasm CPU path work in blocks of queries.
    pub full_attention_scores: bool,
    /// What the limits are, for the message: "this GPU's buffer limit (maxBufferSize)", ...
    pub name: &'static str,
}

/// One of the activations that can set a generation's peak.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub bytes: u64,
    /// What it is, for the message.
    pub what: String,
    pub kind: Kind,
}

/// How an activation is held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A feature map or token rows: one buffer, bound in windows on the GPU.
    Map,
    /// The VAE decoder's full-size maps: cut into bands of rows where one buffer is too
    /// small (`models::vae_bands`), so only the total counts.
    Bands,
    /// An attention score matrix: whole only on backends that materialize it.
    Scores,
}

/// The product in u64, saturating: usize is 32 bits in wasm, and a request can ask for
/// anything.
fn bytes_of(factors: &[usize]) -> u64 {
    factors.iter().fold(4u64, |acc, &f| acc.saturating_mul(f as u64))
}

/// The SD activations that set the peak for `batch` images of `width` x `height` (f32).
pub fn activations(unet: &UNetConfig, vae: &VaeConfig, width: usize, height: usize, batch: usize, cfg: bool) -> Vec<Activation> {
    let f = vae.downscale();
    let tokens = (width / f) as u64 * (height / f) as u64;
    let unet_batch = batch * if cfg { 2 } else { 1 };
    // The VAE decoder's last up block runs at full size on block_out[1] channels (the
    // channels it receives): the widest map of the whole generation.
    let wide = vae.block_out_channels.iter().take(2).copied().max().unwrap_or(0);
    let c0 = unet.block_out_channels[0];
    let per_token = |n: usize| bytes_of(&[unet_batch, n]).saturating_mul(tokens);
    let mut out = vec![
        Activation { bytes: bytes_of(&[batch, wide, width, height]), what: format!("the VAE decoder's {wide}-channel {width}x{height} feature map"), kind: Kind::Bands },
        Activation { bytes: per_token(c0), what: format!("the UNet's {c0}-channel feature map"), kind: Kind::Map },
    ];
    // The first level that attends has the most tokens of any attention (emoji-sd's first
    // block has none: its scores sit one level down, a quarter of the tokens).
    if let Some(level) = unet.down_attention.iter().position(|a| *a == crate::models::unet::Attn::Cross) {
        let side = |n: usize| (n / f).div_ceil(1 << level) as u64;
        let tokens = side(width) * side(height);
        let per_token = |n: usize| bytes_of(&[unet_batch, n]).saturating_mul(tokens);
        let (heads, c) = (unet.heads[level], unet.block_out_channels[level]);
        let plural = if heads == 1 { "" } else { "s" };
        let scores = per_token(heads).saturating_mul(tokens);
        out.push(Activation { bytes: scores, what: format!("the UNet's self-attention scores ({tokens} tokens, {heads} head{plural})"), kind: Kind::Scores });
        // GEGLU's projection: 2 x 4 x the block's channels per token.
        out.push(Activation { bytes: per_token(8 * c), what: format!("the UNet's feed-forward activations ({tokens} tokens x {})", 8 * c), kind: Kind::Map });
    }
    out
}

/// The activations that set a pixel-space UNet2DModel's peak (DDPM): its level-0 map at
/// full size, and the self-attention scores of its first attention block.
pub fn pixel_unet_activations(unet: &UNetConfig, width: usize, height: usize, batch: usize) -> Vec<Activation> {
    let c0 = unet.block_out_channels[0];
    let mut out = vec![Activation { bytes: bytes_of(&[batch, c0, width, height]), what: format!("the UNet's {c0}-channel {width}x{height} feature map"), kind: Kind::Map }];
    if let Some(level) = unet.down_attention.iter().position(|&a| a == crate::models::unet::Attn::SelfAttn) {
        let tokens = (width >> level) as u64 * (height >> level) as u64;
        let heads = unet.heads[level];
        let scores = bytes_of(&[batch, heads]).saturating_mul(tokens).saturating_mul(tokens);
        out.push(Activation { bytes: scores, what: format!("the UNet's self-attention scores ({tokens} tokens, {heads} head(s))"), kind: Kind::Scores });
    }
    out
}

/// The activations that set aMUSEd's peak: the transformer's MLP rows and attention
/// scores over the token grid (with CFG, two rows per image), and the VQ decoder's widest
/// full-size map (cut into bands unless its last blocks have attention).
pub fn amused_activations(uvit: &crate::models::uvit::UVitConfig, vq: &VaeConfig, width: usize, height: usize, cfg: bool) -> Vec<Activation> {
    let f = vq.downscale();
    let tokens = (width / f) as u64 * (height / f) as u64;
    let rows = if cfg { 2 } else { 1 };
    let heads = uvit.num_attention_heads;
    let wide = vq.block_out_channels.iter().take(2).copied().max().unwrap_or(0);
    let banded = !vq.up_attention.last().copied().unwrap_or(false);
    vec![
        Activation {
            bytes: bytes_of(&[rows, 4 * uvit.hidden_size]).saturating_mul(tokens),
            what: format!("the transformer's MLP activations ({tokens} tokens x {})", 4 * uvit.hidden_size),
            kind: Kind::Map,
        },
        Activation {
            bytes: bytes_of(&[rows, heads]).saturating_mul(tokens).saturating_mul(tokens),
            what: format!("the transformer's attention scores ({tokens} tokens, {heads} heads)"),
            kind: Kind::Scores,
        },
        Activation {
            bytes: bytes_of(&[wide, width, height]),
            what: format!("the VQ decoder's {wide}-channel {width}x{height} feature map"),
            kind: if banded { Kind::Bands } else { Kind::Map },
        },
    ]
}

impl MemoryBudget {
    /// None when a generation of this size fits, else (bytes needed, for what, bytes there,
    /// which limit).
    fn shortfall(&self, acts: Vec<Activation>) -> Option<(u64, String, u64, &'static str)> {
        let acts: Vec<Activation> = acts.into_iter().filter(|a| self.full_attention_scores || a.kind != Kind::Scores).collect();
        let largest = acts.iter().max_by_key(|a| a.bytes)?;
        if let Some(whole) = acts.iter().filter(|a| a.kind != Kind::Bands).max_by_key(|a| a.bytes).filter(|a| a.bytes > self.max_tensor) {
            return Some((whole.bytes, whole.what.clone(), self.max_tensor, self.name));
        }
        // A map, its GroupNorm and the conv's output are alive together; scores and their
        // softmax too.
        let peak: u64 = acts.iter().map(|a| if a.kind == Kind::Scores { a.bytes.saturating_mul(2) } else { a.bytes.saturating_mul(3) }).max().unwrap_or(0);
        (peak > self.total).then(|| (peak, format!("activations ({} and what is alive with it)", largest.what), self.total, self.name))
    }

    /// `check_with` for a Stable Diffusion model.
    pub fn check(&self, unet: &UNetConfig, vae: &VaeConfig, req: &Request) -> Result<(), String> {
        let cfg = req.guidance > 1.0;
        self.check_with(req, &|w, h| activations(unet, vae, w, h, req.batch, cfg))
    }

    /// Refuses `req` when its activations (`acts(width, height)`, the model family's
    /// estimate) would not fit, naming what is too large and the largest square size (a
    /// multiple of 64) that fits at the same batch.
    pub fn check_with(&self, req: &Request, acts: &dyn Fn(usize, usize) -> Vec<Activation>) -> Result<(), String> {
        let Some((need, what, have, limit)) = self.shortfall(acts(req.width, req.height)) else { return Ok(()) };
        // Activations grow with the size: bisect for the largest multiple of 64 that fits.
        let fits_at = |k: usize| self.shortfall(acts(64 * k, 64 * k)).is_none();
        let (mut lo, mut hi) = (0, req.width.max(req.height) / 64 + 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits_at(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let fits = (lo > 0).then_some(64 * lo);
        let advice = match fits {
            Some(s) => format!("the largest square size that fits is {s}x{s}"),
            None => "no size fits with this batch: lower the batch or use a smaller model".into(),
        };
        let batch = if req.batch > 1 { format!(" (batch {})", req.batch) } else { String::new() };
        Err(format!("{}x{}{batch} needs {} for {what}, but {limit} is {}: {advice}", req.width, req.height, bytes(need), bytes(have)))
    }
}

/// What `session`'s backend can hold of a generation's activations.
pub fn budget(session: &crate::models::Session) -> MemoryBudget {
    match &session.backend {
        Backend::Gpu { ctx, .. } => {
            let limits = ctx.device.limits();
            MemoryBudget { max_tensor: limits.max_buffer_size, total: u64::MAX, full_attention_scores: false, name: "this GPU's buffer limit (maxBufferSize)" }
        }
        #[cfg(not(target_arch = "wasm32"))]
        Backend::Cpu { .. } => {
            let total = host_available();
            let name = "the memory available";
            MemoryBudget { max_tensor: total, total, full_attention_scores: crate::ops::cpu::attention_makes_whole_scores(), name }
        }
        #[cfg(target_arch = "wasm32")]
        Backend::Cpu { .. } => {
            // wasm32 addresses 4 GiB, weights included; one allocation stays under 2 GiB.
            let used = core::arch::wasm32::memory_size(0) as u64 * 65536;
            let total = (4u64 << 30).saturating_sub(used);
            let max_tensor = total.min((2 << 30) - 1);
            let name = "the page's memory limit (wasm32: 4 GiB in all, 2 GiB in one piece)";
            MemoryBudget { max_tensor, total, full_attention_scores: false, name }
        }
    }
}

/// Bytes for a person: "17.2 GB", "256 MiB" style, in binary units.
pub fn bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if n as f64 >= GIB {
        format!("{:.1} GiB", n as f64 / GIB)
    } else {
        format!("{:.0} MiB", (n as f64 / MIB).ceil())
    }
}

/// Memory the native process can use: MemAvailable on Linux, else 8 GiB.
#[cfg(not(target_arch = "wasm32"))]
pub fn host_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemAvailable:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(8 << 30, |kib| kib << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (UNetConfig, VaeConfig) {
        // The bundled sd-tiny's configs: a VAE that downsamples by 2, 2 heads at level 0.
        let unet: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/sd2-tiny/unet/config.json")).unwrap();
        let vae: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/sd2-tiny/vae/config.json")).unwrap();
        (UNetConfig::from_json(&unet).unwrap(), VaeConfig::from_json(&vae).unwrap())
    }

    /// emoji-sd: no attention in its first block, so its largest scores are one level down.
    /// At 512 the native CPU backend was OOM-killed at 24 GB before this was counted.
    #[test]
    fn scores_of_a_unet_whose_first_block_does_not_attend_are_counted() {
        let unet: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/emoji-sd/manifest.json")).unwrap()).unwrap();
        let (unet_cfg, vae_cfg) = (UNetConfig::from_json(&unet["configs"]["unet"]).unwrap(), VaeConfig::from_json(&unet["configs"]["vae"]).unwrap());
        assert_eq!(unet_cfg.down_attention[0], crate::models::unet::Attn::None);
        let scores = activations(&unet_cfg, &vae_cfg, 512, 512, 1, true).into_iter().find(|a| a.kind == Kind::Scores).unwrap();
        // 256x256 latents, 128x128 = 16,384 tokens at level 1, its heads, CFG batch 2.
        let heads = unet_cfg.heads[1] as u64;
        assert_eq!(scores.bytes, 2 * heads * 16384 * 16384 * 4);
        let budget = MemoryBudget { max_tensor: 24 << 30, total: 24 << 30, full_attention_scores: true, name: "the memory available" };
        let req = Request { width: 512, height: 512, guidance: 4.0, ..Request::default() };
        assert!(budget.check(&unet_cfg, &vae_cfg, &req).unwrap_err().starts_with("512x512 needs "));
        assert!(budget.check(&unet_cfg, &vae_cfg, &Request { width: 32, height: 32, guidance: 4.0, ..Request::default() }).is_ok());
    }

    #[test]
    fn the_bundled_model_at_512_is_refused_on_a_cpu_that_makes_whole_scores() {
        let (unet, vae) = tiny();
        // 256x256 latents: 65,536 tokens, 2 heads, CFG batch 2: 2 x 2 x 65536^2 x 4 bytes.
        let scores = activations(&unet, &vae, 512, 512, 1, true).into_iter().find(|a| a.kind == Kind::Scores).unwrap();
        assert_eq!(scores.bytes, 4 * 65536u64 * 65536 * 4);
        let budget = MemoryBudget { max_tensor: 24 << 30, total: 24 << 30, full_attention_scores: true, name: "the memory available" };
        let req = Request { width: 512, height: 512, guidance: 7.5, ..Request::default() };
        let err = budget.check(&unet, &vae, &req).unwrap_err();
        assert_eq!(err, "512x512 needs 64.0 GiB for the UNet's self-attention scores (65536 tokens, 2 heads), but the memory available is 24.0 GiB: the largest square size that fits is 320x320");
        // Scores and their softmax together: at 320, 2 x 4 x 25,600^2 x 4 B = 19.5 GiB fits;
        // at 384, 2 x 4 x 36,864^2 x 4 B = 40.5 GiB does not.
        assert!(budget.check(&unet, &vae, &Request { width: 320, height: 320, ..req.clone() }).is_ok());
        assert!(budget.check(&unet, &vae, &Request { width: 384, height: 384, ..req.clone() }).is_err());
    }

    #[test]
    fn on_a_gpu_activations_must_fit_one_buffer_but_the_vae_decoder_cuts_its_maps() {
        let (unet, vae) = tiny();
        // A 1 GiB buffer limit. Scores do not count (the kernel works in blocks of queries);
        // GEGLU's 8 x 16 channels per token do: (W/2)^2 x 128 x 4 B <= 1 GiB gives W <= 2896.
        let budget = MemoryBudget { max_tensor: 1 << 30, total: u64::MAX, full_attention_scores: false, name: "this GPU's buffer limit (maxBufferSize)" };
        let req = Request { width: 4096, height: 4096, guidance: 0.0, ..Request::default() };
        let err = budget.check(&unet, &vae, &req).unwrap_err();
        assert_eq!(
            err,
            "4096x4096 needs 2.0 GiB for the UNet's feed-forward activations (4194304 tokens x 128), but this GPU's buffer limit (maxBufferSize) is 1.0 GiB: \
             the largest square size that fits is 2880x2880"
        );
        assert!(budget.check(&unet, &vae, &Request { width: 2880, height: 2880, ..req.clone() }).is_ok());
        // The decoder's 32 x 2048 x 2048 x 4 B = 512 MiB map is over a 256 MiB buffer, but it
        // is decoded in bands: the UNet's rows set the limit, (W/2)^2 x 128 x 4 B <= 256 MiB.
        let small = MemoryBudget { max_tensor: 256 << 20, ..budget };
        let err = small.check(&unet, &vae, &Request { width: 2048, height: 2048, ..req }).unwrap_err();
        assert!(err.contains("for the UNet's feed-forward activations") && err.ends_with("is 256 MiB: the largest square size that fits is 1408x1408"), "{err}");
    }

    #[test]
    fn amused_is_refused_by_its_transformer_scores_and_its_decoder_is_cut_in_bands() {
        let uvit: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/amused-tiny/transformer/config.json")).unwrap();
        let vq: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/amused-tiny/vqvae/config.json")).unwrap();
        let (uvit, vq) = (crate::models::uvit::UVitConfig::from_json(&uvit).unwrap(), VaeConfig::from_json_as("vqvae", &vq).unwrap());
        // The CPU makes whole scores: at 512 (a 256x256 grid, VQ factor 2), 2 x 4 heads x
        // 65536^2 x 4 B = 128 GiB.
        let cpu = MemoryBudget { max_tensor: 24 << 30, total: 24 << 30, full_attention_scores: true, name: "the memory available" };
        let req = Request { width: 512, height: 512, guidance: 4.0, ..Request::default() };
        let err = cpu.check_with(&req, &|w, h| amused_activations(&uvit, &vq, w, h, true)).unwrap_err();
        // 2 x 4 x t^2 x 4 B, twice over (scores and softmax), <= 24 GiB: t <= 20,066 tokens,
        // a grid side of 141, 282 px: 256 is the largest multiple of 64.
        assert_eq!(err, "512x512 needs 128.0 GiB for the transformer's attention scores (65536 tokens, 4 heads), but the memory available is 24.0 GiB: the largest square size that fits is 256x256");
        // On a GPU (scores in blocks) with a 1 MiB buffer limit the decoder's 32-channel
        // 512x512 map (32 MiB) is cut in bands; the MLP rows, 2 x 65536 x 128 x 4 B = 64 MiB, set the limit.
        let gpu = MemoryBudget { max_tensor: 1 << 20, total: u64::MAX, full_attention_scores: false, name: "this GPU's buffer limit (maxBufferSize)" };
        let err = gpu.check_with(&req, &|w, h| amused_activations(&uvit, &vq, w, h, true)).unwrap_err();
        // 64x64: 1024 tokens x 128 x 2 x 4 B = 1 MiB.
        assert_eq!(err, "512x512 needs 64 MiB for the transformer's MLP activations (65536 tokens x 128), but this GPU's buffer limit (maxBufferSize) is 1 MiB: the largest square size that fits is 64x64");
    }
}
