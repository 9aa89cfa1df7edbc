//! What a generation asks for, with diffusers' defaults, checked before any work starts.

use serde::{Deserialize, Serialize};

/// Float image data, NCHW with values in [0, 1] (masks: N1HW, 1 = repaint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatImage {
    pub shape: [usize; 4],
    pub values: Vec<f32>,
}

impl FloatImage {
    pub fn width(&self) -> usize {
        self.shape[3]
    }
    pub fn height(&self) -> usize {
        self.shape[2]
    }
}

/// A point on the way from the request's seed to another's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Walk {
    pub to_seed: u64,
    /// 0 = the request's seed, 1 = `to_seed`.
    pub t: f32,
}

/// A point on the way from the request's prompt to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Morph {
    pub to_prompt: String,
    /// 0 = the request's prompt, 1 = `to_prompt`.
    pub t: f32,
}

/// One generation. `Request::new(prompt)` gives the defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    /// Classifier-free guidance scale; off at 1 or below.
    pub guidance: f32,
    /// euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras, pndm, lcm, ddpm; None: the model's own.
    pub scheduler: Option<String>,
    /// A diffusers `scheduler_config.json` replacing the model's (its `_class_name` picks).
    pub scheduler_config: Option<serde_json::Value>,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    pub batch: usize,
    /// img2img / inpainting source image, [1, 3, H, W] in [0, 1].
    pub init_image: Option<FloatImage>,
    /// How much of the init image is re-noised (1 = all of it).
    pub strength: f32,
    /// Inpainting mask, [1, 1, H, W], 1 = repaint.
    pub mask: Option<FloatImage>,
    /// Replaces the seeded starting noise (unit variance, [batch, 4, h, w]), as diffusers' `latents=`.
    pub init_latents: Option<Vec<f32>>,
    /// A walk between two seeds' starting noise: this request's seed at t = 0, `to_seed`'s
    /// at t = 1, by slerp (the end frames equal plain generations of the two seeds).
    pub walk: Option<Walk>,
    /// A morph toward another prompt: the prompt's conditioning (text embeddings; a class
    /// model's class embedding) moved linearly, `t` = 0 this prompt, 1 `to_prompt`.
    pub morph: Option<Morph>,
    /// The VAE posterior's standard-normal draw (absent: the posterior mean is used).
    pub posterior_noise: Option<Vec<f32>>,
    /// The noise added to the encoded image in img2img (absent: drawn from the seed).
    pub image_noise: Option<Vec<f32>>,
    /// Send a preview image with every step's progress.
    pub previews: bool,
    /// aMUSEd: the sampler's uniforms per step (`sample_u_<i>`, `gumbel_u_<i>`) instead of
    /// the seed's, to reproduce a diffusers run.
    #[serde(skip)]
    pub token_draws: Option<std::collections::BTreeMap<String, Vec<f32>>>,
    /// The LoRAs merged into the model's weights (for the image's metadata).
    #[serde(default)]
    pub loras: Vec<LoraUse>,
}

/// A LoRA a generation ran with: its name, file sha256 and scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraUse {
    pub name: String,
    pub sha256: String,
    pub scale: f32,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            steps: 25,
            guidance: 7.5,
            scheduler: None,
            scheduler_config: None,
            seed: 0,
            width: 512,
            height: 512,
            batch: 1,
            init_image: None,
            strength: 0.8,
            mask: None,
            init_latents: None,
            walk: None,
            morph: None,
            posterior_noise: None,
            image_noise: None,
            previews: false,
            token_draws: None,
            loras: vec![],
        }
    }
}

impl Request {
    /// The defaults with a prompt.
    pub fn new(prompt: &str) -> Self {
        Self { prompt: prompt.into(), ..Self::default() }
    }

    /// A request from JSON (the wasm API's form), with a sentence for each field that is not
    /// what it must be: JavaScript's NaN arrives as null and a seed past 2^64 or with a
    /// fraction as a float, which serde alone would report in its own terms.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("the request is not valid JSON: {e}"))?;
        let fields = value.as_object().ok_or("the request must be a JSON object")?;
        let mut problems = vec![];
        for (key, v) in fields {
            let whole = match key.as_str() {
                "seed" => Some(u64::MAX),
                "steps" | "width" | "height" | "batch" => Some(u32::MAX as u64),
                _ => None,
            };
            if let Some(max) = whole {
                if v.as_u64().is_none_or(|n| n > max) {
                    problems.push(format!("{key} = {v} must be a whole number from 0 to {max}"));
                }
            }
            if ["guidance", "strength"].contains(&key.as_str()) && !v.is_number() {
                problems.push(format!("{key} = {v} must be a number"));
            }
            if ["prompt", "negative_prompt"].contains(&key.as_str()) && !v.is_string() {
                problems.push(format!("{key} must be text"));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))
    }

    /// Every problem with the request, in one message.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_for(8)
    }

    /// `validate` for a model whose image side must be a multiple of `multiple` (SD: 8,
    /// a pixel-space UNet: 2^downsamples).
    pub fn validate_for(&self, multiple: usize) -> Result<(), String> {
        let mut problems = vec![];
        if self.width == 0 || self.height == 0 || !self.width.is_multiple_of(multiple) || !self.height.is_multiple_of(multiple) {
            problems.push(format!("size {}x{} must be positive multiples of {multiple}", self.width, self.height));
        }
        if self.steps == 0 || self.steps > 1000 {
            problems.push(format!("steps = {} must be between 1 and 1000", self.steps));
        }
        if self.batch == 0 || self.batch > 16 {
            problems.push(format!("batch = {} must be between 1 and 16", self.batch));
        }
        if !(0.0..=1.0).contains(&self.strength) {
            problems.push(format!("strength = {} must be between 0 and 1", self.strength));
        }
        if !self.guidance.is_finite() || self.guidance < 0.0 {
            problems.push(format!("guidance = {} must be a number >= 0", self.guidance));
        }
        for (what, img, channels) in [("init image", &self.init_image, 3), ("mask", &self.mask, 1)] {
            if let Some(i) = img {
                if i.shape != [1, channels, self.height, self.width] {
                    problems.push(format!("{what} is {:?}, the generation wants [1, {channels}, {}, {}]", i.shape, self.height, self.width));
                } else if i.values.len() != i.shape.iter().product::<usize>() {
                    problems.push(format!("{what} has {} values for shape {:?}", i.values.len(), i.shape));
                }
            }
        }
        if let Some(m) = &self.mask {
            // diffusers binarizes at 0.5: below it nothing is repainted.
            if m.values.iter().all(|&v| v < 0.5) {
                problems.push("the mask is all black, so nothing would be repainted: paint white where the image should change".into());
            }
        }
        for (what, t) in [("walk", self.walk.map(|w| w.t)), ("morph", self.morph.as_ref().map(|m| m.t))] {
            if t.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
                problems.push(format!("{what} position t = {} must be between 0 and 1", t.unwrap_or_default()));
            }
        }
        if self.mask.is_some() && self.init_image.is_none() {
            problems.push("a mask needs an init image to repaint".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Request;

    /// The wasm API's messages for what JavaScript can send.
    #[test]
    fn json_requests_get_a_sentence_per_bad_field() {
        let cases = [
            (r#"{"seed": -1}"#, "seed = -1 must be a whole number from 0 to 18446744073709551615"),
            (r#"{"seed": 1.5}"#, "seed = 1.5 must be a whole number from 0 to 18446744073709551615"),
            (r#"{"seed": 18446744073709551616}"#, "seed = 1.8446744073709552e+19 must be a whole number from 0 to 18446744073709551615"),
            (r#"{"guidance": null}"#, "guidance = null must be a number"),
            (r#"{"strength": "high"}"#, "strength = \"high\" must be a number"),
            (r#"{"steps": 2.5, "batch": -3}"#, "batch = -3 must be a whole number from 0 to 4294967295; steps = 2.5 must be a whole number from 0 to 4294967295"),
            (r#"{"prompt": 5}"#, "prompt must be text"),
            ("[1]", "the request must be a JSON object"),
        ];
        for (json, want) in cases {
            assert_eq!(Request::from_json(json).unwrap_err(), want, "{json}");
        }
        let r = Request::from_json(r#"{"prompt": "一只戴墨镜的柴犬 😎", "seed": 9007199254740993}"#).unwrap();
        assert_eq!((r.prompt.as_str(), r.seed, r.steps), ("一只戴墨镜的柴犬 😎", 9007199254740993, 25));
    }

    #[test]
    fn out_of_range_values_are_named_together() {
        let r = Request { steps: 10_000, width: 12, height: 0, batch: 1000, strength: 1.5, guidance: f32::NAN, ..Request::new("x") };
        assert_eq!(
            r.validate().unwrap_err(),
            "size 12x0 must be positive multiples of 8; steps = 10000 must be between 1 and 1000; batch = 1000 must be between 1 and 16; \
             strength = 1.5 must be between 0 and 1; guidance = NaN must be a number >= 0"
        );
    }
}
