//! What this machine offers: its NVIDIA GPUs as NVML reports them, or a CPU-only profile
//! with the reason there is no GPU; and the capability flags the contracts match model
//! requirements against.
//!
//! The report is measured, never self-declared: names, memory and compute capability come
//! from the driver. Its JSON (`ciro-worker hardware`) is what the worker sends to the
//! coordinator and hashes into its on-chain attestation.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::{cuda_driver_version_major, cuda_driver_version_minor, Nvml};
use serde::{Deserialize, Serialize};

/// Capability flag bits, shared with the contracts' model requirements (u64 bitfield),
/// defined once in `ciro-protocol`.
pub use ciro_protocol::flags;

/// One NVIDIA GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub vram_mb: u64,
    pub vram_used_mb: u64,
    /// CUDA compute capability, major and minor (9.0 for Hopper).
    pub compute_capability: (i32, i32),
    pub utilization_percent: Option<u32>,
    pub temperature_c: Option<u32>,
    pub confidential_compute: bool,
    /// This GPU's capability flags ([`flags`]).
    pub flags: u64,
}

/// The host's CPU and memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub logical_cores: usize,
    pub ram_mb: u64,
}

/// Everything the worker reports about its hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardwareReport {
    pub gpus: Vec<GpuInfo>,
    pub cpu: CpuInfo,
    pub driver_version: Option<String>,
    /// CUDA version the driver supports, as "major.minor".
    pub cuda_version: Option<String>,
    /// Flags of the best GPU (the one the worker advertises), or 0 on a CPU-only machine.
    pub flags: u64,
    /// Why there is no GPU in the report, when there is none.
    pub no_gpu_reason: Option<String>,
}

impl HardwareReport {
    /// The GPU the worker advertises: the one with the most VRAM.
    pub fn best_gpu(&self) -> Option<&GpuInfo> {
        self.gpus.iter().max_by_key(|gpu| gpu.vram_mb)
    }
}

/// Capability flags implied by a compute capability and confidential-compute state.
pub fn flags_for(compute_capability: (i32, i32), confidential_compute: bool) -> u64 {
    let at_least = |major: i32, minor: i32| compute_capability >= (major, minor);
    let mut bits = flags::CUDA;
    if at_least(6, 0) {
        bits |= flags::FP16;
    }
    if at_least(6, 1) {
        bits |= flags::INT8;
    }
    if at_least(8, 0) {
        bits |= flags::BF16;
    }
    if confidential_compute {
        bits |= flags::TEE;
    }
    bits
}

/// Detects the hardware. Never fails: without an NVIDIA driver (or with NVML unusable) the
/// report is CPU-only and says why.
pub fn detect() -> HardwareReport {
    let cpu = cpu_info();
    let nvml = match Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => return cpu_only(cpu, format!("NVML unavailable (no NVIDIA driver?): {e}")),
    };
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(e) => return cpu_only(cpu, format!("NVML could not count devices: {e}")),
    };
    let mut gpus = Vec::new();
    let mut errors = Vec::new();
    for index in 0..count {
        match gpu_info(&nvml, index) {
            Ok(gpu) => gpus.push(gpu),
            Err(e) => errors.push(format!("GPU {index}: {e}")),
        }
    }
    if gpus.is_empty() {
        let reason = if count == 0 {
            "NVML reports no GPU".to_owned()
        } else {
            errors.join("; ")
        };
        return cpu_only(cpu, reason);
    }
    let flags = gpus.iter().max_by_key(|g| g.vram_mb).map_or(0, |g| g.flags);
    let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            cuda_driver_version_major(v),
            cuda_driver_version_minor(v)
        )
    });
    HardwareReport {
        gpus,
        cpu,
        driver_version: nvml.sys_driver_version().ok(),
        cuda_version,
        flags,
        no_gpu_reason: None,
    }
}

fn gpu_info(nvml: &Nvml, index: u32) -> Result<GpuInfo, nvml_wrapper::error::NvmlError> {
    let device = nvml.device_by_index(index)?;
    let memory = device.memory_info()?;
    let cc = device.cuda_compute_capability()?;
    let compute_capability = (cc.major, cc.minor);
    let confidential_compute = device.is_cc_enabled().unwrap_or(false);
    Ok(GpuInfo {
        index,
        name: device.name()?,
        uuid: device.uuid()?,
        vram_mb: memory.total / (1024 * 1024),
        vram_used_mb: memory.used / (1024 * 1024),
        compute_capability,
        utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        confidential_compute,
        flags: flags_for(compute_capability, confidential_compute),
    })
}

fn cpu_only(cpu: CpuInfo, reason: String) -> HardwareReport {
    HardwareReport {
        gpus: Vec::new(),
        cpu,
        driver_version: None,
        cuda_version: None,
        flags: 0,
        no_gpu_reason: Some(reason),
    }
}

fn cpu_info() -> CpuInfo {
    CpuInfo {
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ram_mb: total_ram_mb().unwrap_or(0),
    }
}

/// `MemTotal` from /proc/meminfo.
pub fn total_ram_mb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_compute_capability() {
        assert_eq!(flags_for((5, 2), false), flags::CUDA);
        assert_eq!(flags_for((6, 0), false), flags::CUDA | flags::FP16);
        assert_eq!(
            flags_for((7, 5), false),
            flags::CUDA | flags::FP16 | flags::INT8
        );
        assert_eq!(
            flags_for((9, 0), false),
            flags::CUDA | flags::FP16 | flags::INT8 | flags::BF16
        );
        assert_eq!(flags_for((9, 0), true) & flags::TEE, flags::TEE);
    }

    #[test]
    fn detect_never_panics_and_explains_a_missing_gpu() {
        let report = detect();
        assert!(report.cpu.logical_cores >= 1);
        assert!(report.cpu.ram_mb > 0);
        if report.gpus.is_empty() {
            assert_eq!(report.flags, 0);
            assert!(report
                .no_gpu_reason
                .as_deref()
                .is_some_and(|r| !r.is_empty()));
        } else {
            assert!(report.no_gpu_reason.is_none());
            assert!(report.flags & flags::CUDA != 0);
            assert!(report.best_gpu().is_some_and(|g| g.vram_mb > 0));
        }
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(
            serde_json::from_str::<HardwareReport>(&json).unwrap(),
            report
        );
    }
}
