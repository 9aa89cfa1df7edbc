//! LoRAs in the page: applied to the loaded Stable Diffusion model's weights where they are
//! (GPU buffers or the CPU store), rescaled and removed between generations without loading
//! the model again (see `models::lora_stack`).

use wasm_bindgen::prelude::*;

use super::Engine;
use crate::pipelines::Generator;
use crate::weights::lora::Lora;

#[wasm_bindgen]
impl Engine {
    /// Applies a LoRA (safetensors bytes; `file` is its file name, whose stem names it) at
    /// `scale`. Resolves to the applied LoRAs' JSON (see `loras`). A LoRA for another
    /// architecture, or with a key this model has no weight for, is refused by name and
    /// changes nothing.
    #[wasm_bindgen(js_name = addLora)]
    pub async fn add_lora(&mut self, file: String, bytes: Vec<u8>, scale: f32) -> Result<String, JsError> {
        let lora = Lora::parse(&file, &bytes).map_err(|e| JsError::new(&e))?;
        let (stack, session) = self.sd_parts()?;
        stack.add(session, lora, scale).await.map_err(|e| JsError::new(&e))?;
        Ok(self.loras())
    }

    /// Sets the scale of the applied LoRA called `name` (no reload).
    #[wasm_bindgen(js_name = setLoraScale)]
    pub async fn set_lora_scale(&mut self, name: String, scale: f32) -> Result<String, JsError> {
        let (stack, session) = self.sd_parts()?;
        stack.set_scale(session, &name, scale).await.map_err(|e| JsError::new(&e))?;
        Ok(self.loras())
    }

    /// Removes the LoRA called `name`; the weights it changed are the base model's again.
    #[wasm_bindgen(js_name = removeLora)]
    pub async fn remove_lora(&mut self, name: String) -> Result<String, JsError> {
        let (stack, session) = self.sd_parts()?;
        stack.remove(session, &name).await.map_err(|e| JsError::new(&e))?;
        Ok(self.loras())
    }

    /// The applied LoRAs as JSON `[{name, sha256, scale}]`, in the order they were added.
    pub fn loras(&self) -> String {
        let list: Vec<_> = self.loras.uses().into_iter().map(|u| serde_json::json!({ "name": u.name, "sha256": u.sha256, "scale": u.scale })).collect();
        serde_json::Value::Array(list).to_string()
    }

    /// The LoRA stack and the loaded model's session, when it is a Stable Diffusion model
    /// (the family LoRAs are for).
    fn sd_parts(&mut self) -> Result<(&mut crate::models::LoraStack, &mut crate::models::Session), JsError> {
        self.pipeline()?;
        match self.generator.as_mut() {
            Some(Generator::StableDiffusion(sd)) => Ok((&mut self.loras, &mut sd.session)),
            Some(other) => Err(JsError::new(&format!("LoRAs apply to Stable Diffusion models; the loaded model is a {}", other.defaults().family))),
            None => Err(JsError::new("load a model first")),
        }
    }
}
