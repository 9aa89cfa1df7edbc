//! A plain description of the adapter and device, shown in the page's diagnostics panel
//! and printed by `easel info`.

use serde::Serialize;

/// The device limits the engine plans its buffers and dispatches around.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LimitsReport {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

impl From<&wgpu::Limits> for LimitsReport {
    fn from(l: &wgpu::Limits) -> Self {
        Self {
            max_buffer_size: l.max_buffer_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        }
    }
}

/// Who made the GPU, what it is, and what the opened device may do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterReport {
    /// Adapter name (native) or description (browser; may be empty for privacy).
    pub name: String,
    /// Vendor: a name in the browser ("google", "nvidia"), PCI id and name natively.
    pub vendor: String,
    /// Architecture in the browser ("swiftshader", "ampere"); driver info natively.
    pub architecture: String,
    /// "vulkan" natively, "webgpu" in the browser.
    pub backend: String,
    /// discrete / integrated / virtual / cpu / other.
    pub device_type: String,
    /// A software rasterizer (SwiftShader, lavapipe, WARP): far slower than the CPU backend.
    pub software: bool,
    /// Whether the device was opened with `shader-f16`.
    pub shader_f16: bool,
    /// Whether the reducing kernels use subgroup operations (the device was opened with
    /// `subgroups`; never in the browser yet: wgpu's web backend cannot request it).
    pub subgroups: bool,
    /// Every feature the adapter offers, kebab-case as in WebGPU.
    pub features: Vec<String>,
    /// The opened device's limits (equal to the adapter's: we ask for all of them).
    pub limits: LimitsReport,
    /// The matmul-like kernels in use: "tiled" (workgroup-memory tiles) or "simple".
    pub kernels: String,
    /// The kernels' arithmetic: "exact", or "fast (..)" with what it uses (`Precision`).
    pub precision: String,
}

impl AdapterReport {
    /// Describes an adapter and the device opened on it.
    pub async fn describe(adapter: &wgpu::Adapter, device: &wgpu::Device) -> Self {
        let info = adapter.get_info();
        let features = adapter.features().iter().filter_map(|f| f.as_str()).map(String::from).collect();
        let limits = LimitsReport::from(&device.limits());
        let shader_f16 = device.features().contains(wgpu::Features::SHADER_F16);
        let subgroups = device.features().contains(wgpu::Features::SUBGROUP);
        let device_type = device_type_name(info.device_type).to_string();

        #[cfg(target_arch = "wasm32")]
        {
            // wgpu's web backend leaves vendor/architecture empty; read GPUAdapterInfo directly.
            let web = super::web_info::adapter_info().await;
            let software = info.device_type == wgpu::DeviceType::Cpu || web.is_fallback || is_software_name(&web.architecture) || is_software_name(&web.description);
            Self {
                name: web.description,
                vendor: web.vendor,
                architecture: web.architecture,
                backend: "webgpu".into(),
                device_type,
                software,
                shader_f16,
                subgroups,
                features,
                limits,
                kernels: String::new(),
                precision: String::new(),
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let software = info.device_type == wgpu::DeviceType::Cpu || is_software_name(&info.name);
            Self {
                vendor: format!("{:#06x} ({})", info.vendor, pci_vendor_name(info.vendor)),
                architecture: [info.driver.as_str(), info.driver_info.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" "),
                name: info.name,
                backend: info.backend.to_str().to_string(),
                device_type,
                software,
                shader_f16,
                subgroups,
                features,
                limits,
                // Set by GpuContext::new, which knows the kernel choice and precision.
                kernels: String::new(),
                precision: String::new(),
            }
        }
    }

    /// A short human summary, one line.
    pub fn summary(&self) -> String {
        format!(
            "{} [{}; {}; {}{}] via {}{}, {} kernels, {} precision",
            if self.name.is_empty() { "(unnamed adapter)" } else { &self.name },
            self.vendor,
            self.architecture,
            self.device_type,
            if self.software { ", software" } else { "" },
            self.backend,
            if self.subgroups { ", subgroup reductions" } else { "" },
            self.kernels,
            self.precision
        )
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Names under which CPU implementations of Vulkan/WebGPU show up.
fn is_software_name(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    ["swiftshader", "llvmpipe", "lavapipe", "warp", "software"].iter().any(|n| s.contains(n))
}

#[cfg(not(target_arch = "wasm32"))]
fn pci_vendor_name(id: u32) -> &'static str {
    match id {
        0x10de => "NVIDIA",
        0x1002 | 0x1022 => "AMD",
        0x8086 => "Intel",
        0x13b5 => "ARM",
        0x5143 => "Qualcomm",
        0x106b => "Apple",
        0x1af4 => "virtio",
        0x10005 => "Mesa",
        0x1ae0 => "Google",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_names_are_recognised() {
        assert!(is_software_name("llvmpipe (LLVM 15.0.6, 256 bits)"));
        assert!(is_software_name("SwiftShader Device (Subzero)"));
        assert!(!is_software_name("NVIDIA GeForce RTX 4090"));
    }
}
