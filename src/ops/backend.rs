//! Which backend runs the models. Software adapters (SwiftShader in Chrome, lavapipe, WARP)
//! are 20-100x slower than the CPU backend on the same machine, so `Auto` picks the CPU
//! when that is all there is; the user can force either.

use serde::Serialize;

use crate::gpu::AdapterReport;

/// The user's wish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendPreference {
    /// GPU when it is real hardware, else the CPU.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl std::str::FromStr for BackendPreference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "gpu" | "webgpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!("unknown backend '{other}': use auto, gpu or cpu")),
        }
    }
}

/// The backend that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Gpu,
    Cpu,
}

/// The decision and why, for the diagnostics panel.
#[derive(Debug, Clone, Serialize)]
pub struct BackendChoice {
    pub kind: BackendKind,
    pub reason: String,
}

/// Decides the backend from the preference and the adapter (None when no GPU could be
/// opened; `gpu_error` then says why). Forcing the GPU without one is an error.
pub fn choose_backend(pref: BackendPreference, adapter: Option<&AdapterReport>, gpu_error: Option<&str>) -> Result<BackendChoice, String> {
    let choice = |kind, reason: String| Ok(BackendChoice { kind, reason });
    match (pref, adapter) {
        (BackendPreference::Cpu, _) => choice(BackendKind::Cpu, "CPU backend requested".into()),
        (BackendPreference::Gpu, Some(a)) if a.software => {
            choice(BackendKind::Gpu, format!("GPU backend requested on a software adapter ({}): expect it to be slow", adapter_name(a)))
        }
        (BackendPreference::Gpu, Some(_)) => choice(BackendKind::Gpu, "GPU backend requested".into()),
        (BackendPreference::Gpu, None) => Err(format!("the GPU backend was requested but no GPU is usable: {}", gpu_error.unwrap_or("no adapter"))),
        (BackendPreference::Auto, Some(a)) if a.software => {
            choice(BackendKind::Cpu, format!("the only GPU adapter is a software renderer ({}), 20-100x slower than the CPU backend here", adapter_name(a)))
        }
        (BackendPreference::Auto, Some(a)) => choice(BackendKind::Gpu, format!("hardware adapter {}", adapter_name(a))),
        (BackendPreference::Auto, None) => choice(BackendKind::Cpu, format!("no GPU: {}", gpu_error.unwrap_or("no adapter"))),
    }
}

fn adapter_name(a: &AdapterReport) -> String {
    [a.name.as_str(), a.architecture.as_str(), a.vendor.as_str()].into_iter().find(|s| !s.is_empty()).unwrap_or("unnamed").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::LimitsReport;

    fn report(software: bool) -> AdapterReport {
        AdapterReport {
            name: String::new(),
            vendor: "google".into(),
            architecture: if software { "swiftshader".into() } else { "ampere".into() },
            backend: "webgpu".into(),
            device_type: "other".into(),
            software,
            shader_f16: false,
            subgroups: false,
            features: vec![],
            limits: LimitsReport {
                max_buffer_size: 1 << 30,
                max_storage_buffer_binding_size: 1 << 27,
                max_storage_buffers_per_shader_stage: 8,
                max_compute_workgroup_storage_size: 16384,
                max_compute_invocations_per_workgroup: 256,
                max_compute_workgroup_size_x: 256,
                max_compute_workgroups_per_dimension: 65535,
            },
            kernels: "simple".into(),
            precision: "exact".into(),
        }
    }

    #[test]
    fn software_adapters_default_to_cpu_and_can_be_overridden() {
        let sw = report(true);
        let auto = choose_backend(BackendPreference::Auto, Some(&sw), None).unwrap();
        assert_eq!(auto.kind, BackendKind::Cpu);
        assert!(auto.reason.contains("swiftshader") && auto.reason.contains("software"), "{}", auto.reason);
        assert_eq!(choose_backend(BackendPreference::Gpu, Some(&sw), None).unwrap().kind, BackendKind::Gpu);
        assert_eq!(choose_backend(BackendPreference::Auto, Some(&report(false)), None).unwrap().kind, BackendKind::Gpu);
        assert_eq!(choose_backend(BackendPreference::Cpu, Some(&report(false)), None).unwrap().kind, BackendKind::Cpu);
        let none = choose_backend(BackendPreference::Auto, None, Some("WebGPU is not available")).unwrap();
        assert_eq!(none.kind, BackendKind::Cpu);
        assert!(none.reason.contains("WebGPU is not available"));
        assert!(choose_backend(BackendPreference::Gpu, None, Some("x")).unwrap_err().contains("no GPU is usable"));
        assert_eq!("WebGPU".parse::<BackendPreference>().unwrap(), BackendPreference::Gpu);
        assert!("tpu".parse::<BackendPreference>().is_err());
    }
}
