//! LoRAs on a loaded model, changed between generations without loading it again: the page
//! adds, rescales and removes them while the weights stay on the GPU (or in the CPU
//! backend's store).
//!
//! How: the first time a LoRA touches a weight, its stored base is kept on the host (read
//! back from the GPU, exactly). Every change then recomputes each touched weight as
//! base + sum of scale x (alpha / rank) x up @ down over the stack, in f32, stores it in the
//! base's own format (so q8_0 / q4_0 bases are requantized once, as the CLI's merge does) and
//! writes it over the old bytes. A weight no LoRA touches any more, or whose LoRAs are all at
//! scale 0, gets its base bytes back: removing a LoRA restores the model exactly.

use std::collections::BTreeMap;

use super::Session;
use crate::ops::quant;
use crate::ops::weights::HostWeight;
use crate::pipelines::LoraUse;
use crate::weights::lora::{Lora, LoraLayer};

/// A scale that would fill the weights with inf or NaN is refused.
fn finite(scale: f32) -> Result<(), String> {
    if scale.is_finite() {
        Ok(())
    } else {
        Err(format!("a LoRA scale must be a finite number, not {scale}"))
    }
}

/// One LoRA on the model: the file, its scale and the weights it changes.
struct Applied {
    lora: Lora,
    scale: f32,
    /// (model weight, the file's module name for it).
    targets: Vec<(String, String)>,
}

/// The LoRAs applied to one session, in the order they were added.
#[derive(Default)]
pub struct LoraStack {
    applied: Vec<Applied>,
    /// The stored base of every weight some LoRA changes.
    base: BTreeMap<String, HostWeight>,
}

impl LoraStack {
    pub fn new() -> Self {
        Self::default()
    }

    /// Name, hash and scale of each LoRA, for the images' metadata.
    pub fn uses(&self) -> Vec<LoraUse> {
        self.applied.iter().map(|a| LoraUse { name: a.lora.name.clone(), sha256: a.lora.sha256.clone(), scale: a.scale }).collect()
    }

    /// Bytes of base weights kept on the host.
    pub fn base_bytes(&self) -> usize {
        self.base.values().map(|w| w.bytes.len()).sum()
    }

    /// Applies `lora` at `scale` on top of the others. A LoRA whose layers do not all fit
    /// this model, or whose name is already applied, is refused before anything changes.
    pub async fn add(&mut self, session: &mut Session, lora: Lora, scale: f32) -> Result<(), String> {
        finite(scale)?;
        if self.applied.iter().any(|a| a.lora.name == lora.name) {
            return Err(format!("LoRA '{}' is already applied: change its scale, or remove it first", lora.name));
        }
        let targets = {
            let names = session.shapes.names();
            let plan = lora.resolve(&names, |n| session.shapes.get(n).cloned())?;
            plan.into_iter().map(|(target, module, _)| (target, module.to_string())).collect::<Vec<_>>()
        };
        let touched: Vec<String> = targets.iter().map(|(t, _)| t.clone()).collect();
        self.applied.push(Applied { lora, scale, targets });
        if let Err(e) = self.sync(session, &touched).await {
            // Put back what was written, so a failed add leaves the model as it was.
            self.applied.pop();
            let _ = self.sync(session, &touched).await;
            return Err(e);
        }
        Ok(())
    }

    /// Changes the scale of the applied LoRA called `name`.
    pub async fn set_scale(&mut self, session: &mut Session, name: &str, scale: f32) -> Result<(), String> {
        finite(scale)?;
        let a = self.applied.iter_mut().find(|a| a.lora.name == name).ok_or_else(|| format!("no LoRA called '{name}' is applied"))?;
        a.scale = scale;
        let touched: Vec<String> = a.targets.iter().map(|(t, _)| t.clone()).collect();
        self.sync(session, &touched).await
    }

    /// Removes the LoRA called `name`, restoring every weight only it changed.
    pub async fn remove(&mut self, session: &mut Session, name: &str) -> Result<(), String> {
        let i = self.applied.iter().position(|a| a.lora.name == name).ok_or_else(|| format!("no LoRA called '{name}' is applied"))?;
        let a = self.applied.remove(i);
        let touched: Vec<String> = a.targets.iter().map(|(t, _)| t.clone()).collect();
        self.sync(session, &touched).await
    }

    /// Rewrites each of `targets` from its base and the LoRAs that change it.
    async fn sync(&mut self, session: &mut Session, targets: &[String]) -> Result<(), String> {
        for target in targets {
            let users: Vec<(&LoraLayer, f32)> =
                self.applied.iter().flat_map(|a| a.targets.iter().filter(|(t, _)| t == target).map(move |(_, m)| (&a.lora.layers[m], a.scale))).collect();
            if users.iter().all(|(_, s)| *s == 0.0) {
                let base = if users.is_empty() { self.base.remove(target) } else { self.base.get(target).cloned() };
                if let Some(b) = base {
                    session.write_weight(target, &b).map_err(|e| e.to_string())?;
                }
                continue;
            }
            if !self.base.contains_key(target) {
                let b = session.read_weight(target).await.map_err(|e| e.to_string())?;
                self.base.insert(target.clone(), b);
            }
            let b = &self.base[target];
            let mut values = b.to_f32();
            for (layer, scale) in users {
                layer.add_to(&mut values, scale);
            }
            let merged = HostWeight { shape: b.shape.clone(), storage: b.storage, bytes: quant::quantize(b.storage, &values) };
            session.write_weight(target, &merged).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
