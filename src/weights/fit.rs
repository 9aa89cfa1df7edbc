//! Will a model's weights fit the backend? Answered from the manifest alone, before any
//! shard is downloaded: a visitor should not wait for gigabytes that cannot be used.

use super::Manifest;
use crate::ops::gpu::GpuWeights;
use crate::ops::StorageType;
use crate::WeightsError;

/// Of wasm32's 4 GiB, what the CPU backend's weights may take: the rest holds the engine,
/// the largest weight expanded to f32 while it is used, and the image's activations.
pub const WASM_WEIGHT_BUDGET: u64 = 3584 << 20;

/// Where the weights will live.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// GPU buffers, each tensor split into bindings of at most `max_binding` bytes.
    Gpu { max_binding: u64 },
    /// The CPU backend in a web page: weights as stored, one expanded to f32 at a time.
    WasmCpu,
    /// The CPU backend natively (`available` bytes of memory).
    NativeCpu { available: u64 },
}

/// Bytes the model will occupy on `target`, or why it cannot be loaded there.
pub fn check(manifest: &Manifest, target: Target) -> Result<u64, WeightsError> {
    let specs: Vec<TensorSpec> = manifest.tensors.iter().map(|t| (t.name.clone(), t.shape.clone(), t.storage)).collect();
    check_tensors(&manifest.name, &specs, target)
}

/// A tensor as it will be stored: name, shape, storage.
pub type TensorSpec = (String, Vec<usize>, StorageType);

/// `check` for model `name` from its tensors alone: a Hub conversion knows them from the
/// safetensors headers, before any weight byte is downloaded.
pub fn check_tensors(name: &str, specs: &[TensorSpec], target: Target) -> Result<u64, WeightsError> {
    match target {
        Target::Gpu { max_binding } => GpuWeights::plan(specs, max_binding).map_err(|e| WeightsError::Manifest(format!("{name} cannot be placed on this GPU: {e}"))),
        Target::WasmCpu | Target::NativeCpu { .. } => {
            // From shapes (equal to the parts' lengths in a validated manifest).
            let stored = specs.iter().fold(0u64, |a, (_, shape, storage)| {
                let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                a.saturating_add(numel.and_then(|n| storage.checked_byte_len(n)).map_or(u64::MAX, |b| b as u64))
            });
            let widest = specs.iter().map(|(_, shape, _)| 4 * shape.iter().product::<usize>() as u64).max().unwrap_or(0);
            let need = stored.saturating_add(widest);
            let (limit, what) = match target {
                Target::NativeCpu { available } => (available, "the memory available".to_string()),
                _ => (WASM_WEIGHT_BUDGET, format!("the {} a web page's CPU backend can give weights (wasm32 addresses 4 GiB in all)", gib(WASM_WEIGHT_BUDGET))),
            };
            if need > limit {
                // What fits instead: q8_0 weights as q4_0 (18 bytes a block of 32, not 34).
                let as_q4 = specs.iter().fold(0u64, |a, (_, shape, storage)| {
                    let n = shape.iter().product::<usize>();
                    let s = if *storage == StorageType::Q8_0 { StorageType::Q4_0 } else { *storage };
                    a.saturating_add(s.checked_byte_len(n).map_or(u64::MAX, |b| b as u64))
                });
                let q8 = specs.iter().any(|(_, _, storage)| *storage == StorageType::Q8_0);
                let quantized = specs.iter().any(|(_, _, storage)| storage.is_quantized());
                let advice = if q8 && as_q4.saturating_add(widest) <= limit {
                    format!(
                        "use a browser with WebGPU, or the model as q4_0 (easel convert --quant q4_0, or q4_0 in Hub mode): it would need {}, which fits",
                        gib(as_q4.saturating_add(widest))
                    )
                } else if quantized {
                    "use a browser with WebGPU, or a smaller model".to_string()
                } else {
                    "use a browser with WebGPU, or convert the model with --quant q8_0 (a quarter of the size)".to_string()
                };
                return Err(WeightsError::Manifest(format!(
                    "{name} is too large for the CPU backend: its weights need {} ({} as stored, plus its largest tensor as f32 while in use), more than {what}: {advice}",
                    gib(need),
                    gib(stored)
                )));
            }
            Ok(need)
        }
    }
}

fn gib(n: u64) -> String {
    format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::StorageType;
    use crate::weights::manifest::tests::manifest;

    /// The test manifest with one more tensor of `shape`, claiming bytes it does not have
    /// (the fit check reads shapes only).
    fn with_tensor(shape: &[usize], storage: StorageType) -> Manifest {
        let (mut m, _) = manifest();
        let mut t = m.tensors[0].clone();
        t.name = "unet.huge.weight".into();
        t.shape = shape.to_vec();
        t.storage = storage;
        m.tensors.push(t);
        m.name = "huge".into();
        m
    }

    #[test]
    fn an_f32_model_past_the_page_budget_is_refused_with_the_sizes() {
        // 1024 x 1M f32 values: 4 GiB stored, 8 GiB with the f32 copy.
        let m = with_tensor(&[1024, 1 << 20], StorageType::F32);
        let err = check(&m, Target::WasmCpu).unwrap_err().to_string();
        assert_eq!(
            err,
            "manifest: huge is too large for the CPU backend: its weights need 8.00 GiB (4.00 GiB as stored, plus its largest tensor as f32 while in use), \
             more than the 3.50 GiB a web page's CPU backend can give weights (wasm32 addresses 4 GiB in all): \
             use a browser with WebGPU, or convert the model with --quant q8_0 (a quarter of the size)"
        );
        // The same shape in q8_0 (1.06 GiB + one 4 GiB f32 expansion) is still too much; a smaller one fits.
        assert!(check(&with_tensor(&[1024, 1 << 20], StorageType::Q8_0), Target::WasmCpu).unwrap_err().to_string().ends_with("use a browser with WebGPU, or a smaller model"));
        let fits = check(&with_tensor(&[1024, 1 << 18], StorageType::Q8_0), Target::WasmCpu).unwrap();
        assert_eq!(fits, 1024 * (1 << 18) / 32 * 34 + 4 * 1024 * (1 << 18) + 80);
    }

    #[test]
    fn a_q8_0_model_that_would_fit_as_q4_0_is_told_so() {
        // 56 tensors of 64M values: 3.72 GiB as q8_0 (+ 0.25 GiB for one f32 copy), 1.97 GiB as q4_0.
        let mut m = with_tensor(&[1024, 1 << 16], StorageType::Q8_0);
        let t = m.tensors.last().unwrap().clone();
        for i in 1..56 {
            m.tensors.push(crate::weights::manifest::TensorEntry { name: format!("unet.huge{i}.weight"), ..t.clone() });
        }
        let err = check(&m, Target::WasmCpu).unwrap_err().to_string();
        assert!(err.contains("its weights need 3.97 GiB"), "{err}");
        assert!(err.ends_with("use a browser with WebGPU, or the model as q4_0 (easel convert --quant q4_0, or q4_0 in Hub mode): it would need 2.22 GiB, which fits"), "{err}");
    }

    #[test]
    fn a_row_wider_than_a_gpu_binding_is_named() {
        let m = with_tensor(&[2, 64 << 20], StorageType::F32);
        let err = check(&m, Target::Gpu { max_binding: 128 << 20 }).unwrap_err().to_string();
        assert_eq!(err, "manifest: huge cannot be placed on this GPU: unet.huge.weight: one row of 268435456 bytes exceeds the 134217728-byte binding limit");
        // Split along rows, a tall tensor of the same size fits: f32 bytes in whole.
        assert_eq!(check(&with_tensor(&[1 << 20, 64], StorageType::F32), Target::Gpu { max_binding: 128 << 20 }).unwrap(), (1 << 20) * 64 * 4 + 80);
    }
}
