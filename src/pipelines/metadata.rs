//! What a generated PNG records about how it was made: our own keys, and the one
//! `parameters` text that AUTOMATIC1111 and the tools around it (image browsers, "PNG info"
//! tabs, Civitai) read. The CLI and the wasm API both write images through here, so the
//! two cannot drift.

use super::image::Rgba;
use super::request::Request;

/// The settings behind one image of a generation.
pub struct ImageInfo<'a> {
    pub request: &'a Request,
    /// The scheduler that ran (Easel's name: `euler`, `dpmpp_2m_karras`, ...).
    pub scheduler: &'a str,
    pub model: &'a str,
    /// Position in the batch.
    pub index: usize,
}

/// A1111's sampler name for a scheduler that ran (its "Sampler:" field).
pub fn a1111_sampler(scheduler: &str) -> &str {
    match scheduler {
        "euler" => "Euler",
        "euler_a" => "Euler a",
        "ddim" => "DDIM",
        "dpmpp_2m" => "DPM++ 2M",
        "dpmpp_2m_karras" => "DPM++ 2M Karras",
        "pndm" => "PLMS",
        "lcm" => "LCM",
        "ddpm" => "DDPM",
        "gan" => "GAN",
        other => other,
    }
}

impl ImageInfo<'_> {
    /// A1111's `parameters` text: the prompt, then "Negative prompt: ..." when there is one,
    /// then one line of "Key: value" settings.
    pub fn parameters(&self) -> String {
        let r = self.request;
        let mut text = r.prompt.clone();
        // A1111 writes the LoRAs into the prompt, `<lora:name:scale>`.
        for l in &r.loras {
            text.push_str(&format!(" <lora:{}:{}>", l.name, l.scale));
        }
        if !r.negative_prompt.is_empty() {
            text.push_str("\nNegative prompt: ");
            text.push_str(&r.negative_prompt);
        }
        let mut settings = vec![
            format!("Steps: {}", r.steps),
            format!("Sampler: {}", a1111_sampler(self.scheduler)),
            format!("CFG scale: {}", r.guidance),
            format!("Seed: {}", r.seed),
            format!("Size: {}x{}", r.width, r.height),
            format!("Model: {}", self.model),
        ];
        if r.init_image.is_some() {
            settings.push(format!("Denoising strength: {}", r.strength));
        }
        if r.batch > 1 {
            settings.push(format!("Batch size: {}, Batch pos: {}", r.batch, self.index));
        }
        if !r.loras.is_empty() {
            let hashes: Vec<String> = r.loras.iter().map(|l| format!("{}: {}", l.name, &l.sha256[..12.min(l.sha256.len())])).collect();
            settings.push(format!("Lora hashes: \"{}\"", hashes.join(", ")));
        }
        settings.push(format!("Version: easel {}", crate::VERSION));
        text.push('\n');
        text.push_str(&settings.join(", "));
        text
    }

    /// Every text chunk of the image: our keys, then `parameters`.
    pub fn text(&self) -> Vec<(&'static str, String)> {
        let r = self.request;
        let mut text = vec![
            ("prompt", r.prompt.clone()),
            ("negative_prompt", r.negative_prompt.clone()),
            ("seed", r.seed.to_string()),
            ("batch_index", self.index.to_string()),
            ("steps", r.steps.to_string()),
            ("guidance", r.guidance.to_string()),
            ("scheduler", self.scheduler.to_string()),
            ("size", format!("{}x{}", r.width, r.height)),
            ("model", self.model.to_string()),
        ];
        if !r.loras.is_empty() {
            text.push(("loras", r.loras.iter().map(|l| format!("{}:{}:{}", l.name, l.scale, l.sha256)).collect::<Vec<_>>().join(";")));
        }
        text.push(("parameters", self.parameters()));
        text
    }
}

/// A PNG for download, and why it carries no metadata when writing the metadata failed:
/// the image itself is never lost to a metadata problem.
pub struct EncodedPng {
    pub bytes: Vec<u8>,
    pub error: Option<String>,
}

/// The image as a PNG with `text`; if that fails, the same image without text and the
/// reason. Fails only when the pixels themselves cannot be encoded.
pub fn encode_png(image: &Rgba, text: &[(&str, String)]) -> Result<EncodedPng, String> {
    match image.to_png(text) {
        Ok(bytes) => Ok(EncodedPng { bytes, error: None }),
        Err(e) => {
            let bytes = image.to_png(&[])?;
            Ok(EncodedPng { bytes, error: Some(format!("the PNG was saved without its settings: {e}")) })
        }
    }
}

/// Every image of a generation as a PNG with its settings.
pub fn encode_pngs(images: &[Rgba], request: &Request, scheduler: &str, model: &str) -> Result<Vec<EncodedPng>, String> {
    images.iter().enumerate().map(|(index, img)| encode_png(img, &ImageInfo { request, scheduler, model, index }.text())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt: &str, negative: &str) -> Request {
        Request { prompt: prompt.into(), negative_prompt: negative.into(), steps: 4, guidance: 7.5, seed: 42, width: 64, height: 48, ..Request::default() }
    }

    #[test]
    fn parameters_follow_a1111() {
        let r = request("一只戴墨镜的柴犬 😎", "blurry");
        let info = ImageInfo { request: &r, scheduler: "euler_a", model: "sd-tiny", index: 0 };
        let want = format!(
            "一只戴墨镜的柴犬 😎\nNegative prompt: blurry\nSteps: 4, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 64x48, Model: sd-tiny, Version: easel {}",
            crate::VERSION
        );
        assert_eq!(info.parameters(), want);
        // No negative prompt: no "Negative prompt:" line, as A1111 writes it.
        let r = request("a fox", "");
        let info = ImageInfo { request: &r, scheduler: "dpmpp_2m_karras", model: "m", index: 0 };
        assert!(info.parameters().starts_with("a fox\nSteps: 4, Sampler: DPM++ 2M Karras, CFG scale: 7.5,"), "{}", info.parameters());
    }

    #[test]
    fn any_script_round_trips_through_the_png() {
        let img = Rgba { width: 2, height: 1, data: vec![1, 2, 3, 255, 4, 5, 6, 255] };
        for prompt in ["一只戴墨镜的柴犬 😎", "café crème", "שלום עולם", "e\u{301}\u{200b}x", "👨\u{200d}👩\u{200d}👧"] {
            let r = request(prompt, "低质量, 模糊 🙈");
            let png = encode_pngs(std::slice::from_ref(&img), &r, "euler", "sd-tiny").unwrap().remove(0);
            assert_eq!(png.error, None);
            let text = Rgba::png_text(&png.bytes).unwrap();
            let get = |k: &str| text.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            assert_eq!(get("prompt").as_deref(), Some(prompt));
            assert_eq!(get("negative_prompt").as_deref(), Some("低质量, 模糊 🙈"));
            assert!(get("parameters").unwrap().starts_with(&format!("{prompt}\nNegative prompt: 低质量, 模糊 🙈\nSteps: 4")));
            assert_eq!(Rgba::from_png(&png.bytes).unwrap(), img);
        }
    }

    #[test]
    fn latin1_text_stays_in_text_chunks() {
        let img = Rgba { width: 1, height: 1, data: vec![0, 0, 0, 255] };
        let png = img.to_png(&[("prompt", "café".into()), ("other", "猫".into())]).unwrap();
        // tEXt for what Latin-1 can hold (every PNG reader shows it), iTXt for the rest.
        let has = |tag: &[u8]| png.windows(4).filter(|w| *w == tag).count();
        assert_eq!((has(b"tEXt"), has(b"iTXt")), (1, 1));
    }

    #[test]
    fn a_metadata_failure_keeps_the_image() {
        let img = Rgba { width: 1, height: 1, data: vec![9, 8, 7, 255] };
        // A keyword past PNG's 79-byte limit cannot be written.
        let long_key = "k".repeat(80);
        let png = encode_png(&img, &[(long_key.as_str(), "v".into())]).unwrap();
        assert_eq!(Rgba::from_png(&png.bytes).unwrap(), img);
        let error = png.error.expect("reported");
        assert!(error.starts_with("the PNG was saved without its settings: "), "{error}");
    }
}
