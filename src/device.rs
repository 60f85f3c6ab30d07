//! Choosing the compute device from a string (`cpu`, `cuda`, `cuda:N`, `auto`).
//!
//! CUDA support lives in `libtorch_cuda.so`, which the linker may drop from our binaries when
//! nothing references it directly (`--as-needed`). It is therefore loaded explicitly, once,
//! before CUDA is queried.

use std::sync::OnceLock;

use tch::Device;

/// Why a device string cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device \"{0}\" (expected cpu, cuda, cuda:N or auto)")]
    Unknown(String),
    #[error("device \"{spec}\" asked for, but CUDA is not available: {reason}")]
    CudaUnavailable { spec: String, reason: String },
    #[error("device \"{spec}\" asked for, but only {count} CUDA device(s) exist")]
    NoSuchCudaDevice { spec: String, count: i64 },
}

/// Loads `libtorch_cuda.so` (once). Returns why CUDA cannot be used, if it cannot.
pub fn load_cuda_runtime() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let dir = env!("UNMASK_LIBTORCH_LIB");
            let candidates = [
                format!("{dir}/libtorch_cuda.so"),
                "libtorch_cuda.so".to_owned(),
            ];
            let mut errors = Vec::new();
            for path in &candidates {
                // SAFETY: loading libtorch's own CUDA library, whose initialisers only register
                // CUDA support with the already loaded libtorch.
                let lib = unsafe {
                    libloading::os::unix::Library::open(
                        Some(path),
                        libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                    )
                };
                match lib {
                    Ok(lib) => {
                        // Keep it loaded for the life of the process.
                        std::mem::forget(lib);
                        return Ok(());
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(format!(
                "libtorch_cuda.so could not be loaded ({})",
                errors.join("; ")
            ))
        })
        .clone()
}

/// Whether a CUDA device can be used.
pub fn cuda_available() -> bool {
    load_cuda_runtime().is_ok() && tch::Cuda::is_available()
}

/// Parses a device string and checks the device exists.
pub fn parse_device(spec: &str) -> Result<Device, DeviceError> {
    let s = spec.trim().to_ascii_lowercase();
    let cuda_index = match s.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "auto" => {
            return Ok(if cuda_available() {
                Device::Cuda(0)
            } else {
                Device::Cpu
            });
        }
        "cuda" | "gpu" => 0,
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => i,
            _ => return Err(DeviceError::Unknown(spec.to_owned())),
        },
    };
    load_cuda_runtime().map_err(|reason| DeviceError::CudaUnavailable {
        spec: spec.to_owned(),
        reason,
    })?;
    if !tch::Cuda::is_available() {
        return Err(DeviceError::CudaUnavailable {
            spec: spec.to_owned(),
            reason: "no CUDA device or driver found".into(),
        });
    }
    let count = tch::Cuda::device_count();
    if cuda_index as i64 >= count {
        return Err(DeviceError::NoSuchCudaDevice {
            spec: spec.to_owned(),
            count,
        });
    }
    Ok(Device::Cuda(cuda_index))
}

/// A device's canonical name (`cpu`, `cuda:0`).
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device(" CPU ").unwrap(), Device::Cpu);
        for bad in ["", "tpu", "cuda:", "cuda:x", "cuda:-1"] {
            assert!(
                matches!(parse_device(bad), Err(DeviceError::Unknown(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn cuda_request_matches_availability() {
        match parse_device("cuda") {
            Ok(d) => assert!(cuda_available() && d == Device::Cuda(0)),
            Err(e) => {
                assert!(!cuda_available());
                assert!(e.to_string().contains("CUDA is not available"), "{e}");
            }
        }
        let auto = parse_device("auto").unwrap();
        assert_eq!(auto.is_cuda(), cuda_available());
    }

    #[test]
    fn cuda_runtime_library_is_found() {
        // The pinned PyTorch wheel ships CUDA support: the library must load even without a GPU.
        assert_eq!(load_cuda_runtime(), Ok(()));
    }

    #[test]
    fn names_devices() {
        assert_eq!(device_name(Device::Cpu), "cpu");
        assert_eq!(device_name(Device::Cuda(1)), "cuda:1");
    }
}
