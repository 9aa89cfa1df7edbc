//! The generator half of the wasm surface: tokenizer files, building the model family's
//! pipeline over the loaded weights, and one generation with progress, previews and cancel.

use std::collections::HashMap;

use js_sys::{Array, Object, Reflect, Uint8Array, Uint8ClampedArray};
use wasm_bindgen::prelude::*;

use super::{Engine, LoadedModel};
use crate::models::Session;
use crate::pipelines::{encode_pngs, Generator, Progress, Request, Rgba};

pub(super) fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(o, &k.into(), &v.into());
}

pub(super) fn image_object(img: &Rgba) -> Object {
    let o = Object::new();
    set(&o, "width", img.width as u32);
    set(&o, "height", img.height as u32);
    set(&o, "rgba", Uint8ClampedArray::from(img.data.as_slice()));
    o
}

/// Model files (tokenizer) that came with the manifest, by path.
#[derive(Default)]
pub(super) struct ModelFiles(pub HashMap<String, Vec<u8>>);

#[wasm_bindgen]
impl Engine {
    /// Adds a file listed in the manifest's `files` (tokenizer files), already verified.
    #[wasm_bindgen(js_name = addFile)]
    pub fn add_file(&mut self, path: String, bytes: Vec<u8>) {
        self.files.0.insert(path, bytes);
    }

    pub(super) fn pipeline(&mut self) -> Result<&mut Generator, JsError> {
        if self.generator.is_none() {
            let model = self.model.take().ok_or_else(|| JsError::new("load a model first"))?;
            let (configs, family, session) = match model {
                LoadedModel::Gpu(m, w) => {
                    let ctx = self.gpu.clone().ok_or_else(|| JsError::new("the GPU is gone"))?;
                    (m.configs.clone(), m.family.clone(), Session::gpu_streamed(ctx, &m, w))
                }
                LoadedModel::Cpu(m, w) => (m.configs.clone(), m.family.clone(), Session::cpu(w)),
            };
            self.generator = Some(Generator::new(&family, session, &configs, &self.files.0).map_err(|e| JsError::new(&e.to_string()))?);
        }
        Ok(self.generator.as_mut().expect("built above"))
    }

    /// The loaded model's defaults and the controls that apply to it, as JSON
    /// `{family, width, height, steps, guidance, scheduler, size_multiple, conditional,
    /// init_image, preview, roundtrip, codes}` (see `pipelines::Defaults`).
    #[wasm_bindgen(js_name = modelDefaults)]
    pub fn model_defaults(&mut self) -> Result<String, JsError> {
        Ok(serde_json::to_string(&self.pipeline()?.defaults()).unwrap_or_default())
    }

    /// Runs one generation. `request_json` is a `pipelines::Request` (missing fields take
    /// their defaults). `on_progress(event)` gets `{stage: "text"|"step"|"decode", step,
    /// total, truncated, preview, previewKind: "taesd"|"latent", work}` and returns false to
    /// cancel. Resolves to `{images: [{width, height, rgba}], pngs: [Uint8Array], pngErrors:
    /// [null | why that PNG has no settings], pngError?: why there are no PNGs, scheduler,
    /// truncated, note?: what a class-conditional model drew for the prompt}`. A request's
    /// `walk: {to_seed, t}` starts from the noise that far from its seed's toward to_seed's.
    pub async fn generate(&mut self, request_json: String, on_progress: js_sys::Function) -> Result<JsValue, JsError> {
        let mut req = Request::from_json(&request_json).map_err(|e| JsError::new(&e))?;
        // The images' metadata names the LoRAs they were made with.
        req.loras = self.loras.uses();
        let model_name = self.model_name.clone();
        let model = self.pipeline()?;
        let mut report = |p: Progress| -> bool {
            let o = Object::new();
            match p {
                Progress::Text { truncated } => {
                    set(&o, "stage", "text");
                    set(&o, "truncated", truncated);
                }
                Progress::Step { step, total, preview } => {
                    set(&o, "stage", "step");
                    set(&o, "step", step as u32);
                    set(&o, "total", total as u32);
                    if let Some(p) = preview {
                        set(&o, "preview", image_object(&p.image));
                        set(&o, "previewKind", p.kind);
                    }
                }
                Progress::Decoding { work } => {
                    set(&o, "stage", "decode");
                    if let Some(w) = work {
                        set(&o, "work", w);
                    }
                }
            }
            on_progress.call1(&JsValue::NULL, &o).map(|v| v.as_bool() != Some(false)).unwrap_or(true)
        };
        let note = model.prompt_note(&req.prompt);
        let out = model.generate(&req, &mut report).await.map_err(|e| JsError::new(&e.to_string()))?;
        let result = Object::new();
        if let Some(n) = note {
            set(&result, "note", n);
        }
        let (images, pngs, png_errors) = (Array::new(), Array::new(), Array::new());
        for img in &out.images {
            images.push(&image_object(img));
        }
        // The images go back even when their PNGs cannot be made: the page can still show
        // them and offer the canvas's own PNG, with the reason beside it.
        match encode_pngs(&out.images, &req, out.scheduler, &model_name) {
            Ok(encoded) => {
                for png in encoded {
                    pngs.push(&Uint8Array::from(png.bytes.as_slice()));
                    png_errors.push(&png.error.map_or(JsValue::NULL, |e| e.into()));
                }
            }
            Err(e) => set(&result, "pngError", format!("the PNG could not be written: {e}")),
        }
        set(&result, "images", images);
        set(&result, "pngs", pngs);
        set(&result, "pngErrors", png_errors);
        set(&result, "scheduler", out.scheduler);
        set(&result, "truncated", out.prompt_truncated);
        Ok(result.into())
    }
}
