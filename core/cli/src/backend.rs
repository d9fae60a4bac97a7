//! `-device cpu|cuda|mps` → burn devices of the backends compiled into this binary (docs/gpu.md, ADR 0012).
//!
//! - `flex` (default build): burn's pure-Rust CPU backend.
//! - `tch` (feature `tch`): LibTorch, PyTorch's C++ library, for the CPU and for CUDA GPUs (cuDNN kernels). The binary
//!   links LibTorch's CPU library; `-device cuda` loads the CUDA part (`libtorch_cuda.so`, next to the LibTorch the
//!   process loaded) at run time, so one binary serves CPU-only and GPU machines. On the CPU it is the default when
//!   compiled; `NNUNET_CPU_BACKEND=flex|tch` chooses explicitly.

use burn::tensor::Device;
use nnunet_core::{MixedPrecision, Precision};
use std::sync::Arc;

/// The devices of `-device NAME` for `n` data-parallel replicas, with a label for logs and debug.json.
pub fn devices(name: &str, n: usize) -> anyhow::Result<(Vec<Device>, String)> {
    #[cfg(feature = "tch")]
    libtorch::convolution_backward_from_env()?;
    match name {
        "cpu" => {
            let (d, label) = cpu()?;
            if n == 1 {
                return Ok((vec![d], label));
            }
            // nnU-Net allows DDP on cuda only; on the CPU the replicas share the device, one thread each
            Ok((vec![d; n], format!("{label} x {n} data-parallel replicas")))
        }
        "cuda" => cuda(n),
        "mps" => Err(crate::user("-device mps: Apple GPUs are not supported by this build; use -device cpu")),
        other => Err(crate::user(format!("-device must be either cpu, mps or cuda. Got: {other}"))),
    }
}

/// One device for `-device NAME`.
pub fn device(name: &str) -> anyhow::Result<(Device, String)> {
    let (mut d, label) = devices(name, 1)?;
    Ok((d.remove(0), label))
}

/// `--precision auto|fp32|fp16|bf16` for a run on `device` (from `-device NAME`). `auto` is nnU-Net's choice: fp16
/// autocast with loss scaling on cuda, fp32 on the CPU. Half precision needs the backend's autocast (LibTorch).
pub fn mixed_precision(device: &Device, device_name: &str, choice: Option<&str>) -> anyhow::Result<Option<Arc<dyn MixedPrecision>>> {
    let precision = match choice.unwrap_or("auto") {
        "auto" => {
            if device_name == "cuda" {
                Precision::Fp16
            } else {
                Precision::Fp32
            }
        }
        other => Precision::parse(other).ok_or_else(|| crate::user(format!("--precision {other}: expected auto, fp32, fp16 or bf16")))?,
    };
    if precision == Precision::Fp32 {
        return Ok(None);
    }
    autocast(device, device_name == "cuda", precision)
}

#[cfg(feature = "tch")]
fn autocast(device: &Device, cuda: bool, precision: Precision) -> anyhow::Result<Option<Arc<dyn MixedPrecision>>> {
    if !matches!(device.as_dispatch(), burn::backend::DispatchDevice::LibTorch(_)) {
        return Err(crate::user(format!(
            "--precision {}: half precision needs the LibTorch backend's autocast; this run uses flex (unset NNUNET_CPU_BACKEND)",
            precision.name()
        )));
    }
    let a = nnunet_core::precision::libtorch::Autocast::new(cuda, precision).map_err(|e| crate::user(format!("--precision: {e}")))?;
    Ok(Some(Arc::new(a)))
}

#[cfg(not(feature = "tch"))]
fn autocast(_device: &Device, _cuda: bool, precision: Precision) -> anyhow::Result<Option<Arc<dyn MixedPrecision>>> {
    Err(crate::user(format!(
        "--precision {}: half precision needs the LibTorch backend's autocast (a build with --features tch, docs/gpu.md); \
         this binary has {}",
        precision.name(),
        nnunet_core::compiled_backends().join(", ")
    )))
}

fn cpu() -> anyhow::Result<(Device, String)> {
    let choice = std::env::var("NNUNET_CPU_BACKEND").ok().filter(|s| !s.is_empty());
    match choice.as_deref() {
        #[cfg(feature = "tch")]
        Some("tch") => Ok(libtorch::cpu()),
        #[cfg(feature = "flex")]
        Some("flex") => Ok(flex()),
        Some(other) => Err(crate::user(format!(
            "NNUNET_CPU_BACKEND={other}: not a CPU backend of this binary (compiled: {})",
            nnunet_core::compiled_backends().join(", ")
        ))),
        None => default_cpu(),
    }
}

#[cfg(feature = "flex")]
fn flex() -> (Device, String) {
    (Device::flex(), "cpu (burn flex)".to_string())
}

/// LibTorch when compiled (its CPU kernels are ~7x faster than flex's on 3D convolutions, docs/benchmarks.md), else flex.
#[cfg(feature = "tch")]
fn default_cpu() -> anyhow::Result<(Device, String)> {
    Ok(libtorch::cpu())
}

#[cfg(all(feature = "flex", not(feature = "tch")))]
fn default_cpu() -> anyhow::Result<(Device, String)> {
    Ok(flex())
}

#[cfg(not(any(feature = "flex", feature = "tch")))]
fn default_cpu() -> anyhow::Result<(Device, String)> {
    Err(crate::user("this binary was built without any backend"))
}

#[cfg(not(feature = "tch"))]
fn cuda(_n: usize) -> anyhow::Result<(Vec<Device>, String)> {
    Err(crate::user(format!(
        "-device cuda: this binary was built without a GPU backend (compiled backends: {}). Use -device cpu, or build \
         with `--features tch` against a CUDA build of PyTorch (docs/gpu.md)",
        nnunet_core::compiled_backends().join(", ")
    )))
}

#[cfg(feature = "tch")]
#[allow(deprecated)]
fn cuda(n: usize) -> anyhow::Result<(Vec<Device>, String)> {
    let count = libtorch::load_cuda().map_err(|e| crate::user(format!("-device cuda: {e}")))?;
    if n > count {
        return Err(crate::user(format!("-num_gpus {n}: LibTorch sees {count} CUDA device(s)")));
    }
    let devs = (0..n).map(|i| Device::new(burn::backend::LibTorchDevice::Cuda(i))).collect();
    let label = if n == 1 { "cuda:0 (burn tch, LibTorch)".to_string() } else { format!("cuda:0..{} (burn tch, LibTorch)", n - 1) };
    Ok((devs, label))
}

// burn 0.22 marks its LibTorch backend deprecated (to be replaced by CubeCL backends); ADR 0012 says why we use it anyway
#[cfg(feature = "tch")]
#[allow(deprecated)]
mod libtorch {
    use burn::tensor::Device;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    /// `NNUNET_CONV_BACKWARD=auto|libtorch|burn`: how LibTorch computes convolution gradients (ADR 0015). `auto`
    /// (default): PyTorch's own `convolution_backward` on CUDA, burn's formulas on the CPU (where both cost the same);
    /// the others force one way on every device (for measurements).
    pub fn convolution_backward_from_env() -> anyhow::Result<()> {
        use nnunet_core::ConvolutionBackward as C;
        let mode = match std::env::var("NNUNET_CONV_BACKWARD").ok().filter(|s| !s.is_empty()).as_deref() {
            None | Some("auto") => C::Auto,
            Some("libtorch") => C::LibTorch,
            Some("burn") => C::BurnDefault,
            Some(other) => return Err(crate::user(format!("NNUNET_CONV_BACKWARD={other}: expected auto, libtorch or burn"))),
        };
        nnunet_core::set_convolution_backward(mode);
        Ok(())
    }

    pub fn cpu() -> (Device, String) {
        (Device::new(burn::backend::LibTorchDevice::Cpu), "cpu (burn tch, LibTorch)".to_string())
    }

    /// The directory of the LibTorch this process loaded (from `/proc/self/maps`).
    fn loaded_libtorch_dir() -> Option<PathBuf> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.ends_with("/libtorch_cpu.so"))
            .and_then(|p| PathBuf::from(p).parent().map(PathBuf::from))
    }

    /// Load `libtorch_cuda.so` from the loaded LibTorch's directory (globally, so its CUDA hooks register with
    /// LibTorch) and return the number of CUDA devices. Once per process.
    pub fn load_cuda() -> Result<usize, String> {
        static LOADED: OnceLock<Result<usize, String>> = OnceLock::new();
        LOADED
            .get_or_init(|| {
                let dir = loaded_libtorch_dir().ok_or("LibTorch (libtorch_cpu.so) is not loaded in this process")?;
                let lib = dir.join("libtorch_cuda.so");
                if !lib.exists() {
                    return Err(format!(
                        "{} does not exist: the LibTorch in {} is a CPU-only build. Point LD_LIBRARY_PATH at the lib \
                         folder of a CUDA build of PyTorch (pip install torch; see docs/gpu.md)",
                        lib.display(),
                        dir.display()
                    ));
                }
                let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
                // SAFETY: loading LibTorch's own CUDA library; its initialisers only register CUDA hooks and kernels
                let handle = unsafe { libloading::os::unix::Library::open(Some(&lib), flags) }
                    .map_err(|e| format!("{}: cannot be loaded ({e}); the CUDA libraries of that PyTorch installation (its nvidia-* packages) and the NVIDIA driver must be present", lib.display()))?;
                // stays loaded for the life of the process
                std::mem::forget(handle);
                let n = tch::Cuda::device_count();
                if n <= 0 {
                    return Err(format!(
                        "LibTorch ({}) finds no CUDA device (driver missing, or CUDA_VISIBLE_DEVICES hides them)",
                        dir.display()
                    ));
                }
                // nnU-Net sets torch.backends.cudnn.benchmark = True
                tch::Cuda::cudnn_set_benchmark(true);
                Ok(n as usize)
            })
            .clone()
    }
}

#[cfg(all(test, feature = "tch"))]
mod tests {
    /// Our LibTorch link folder has no libtorch_cuda.so (the CUDA part is loaded at run time). burn-tch 0.22.1 then
    /// compiled a panic into every CUDA device; the vendored copy does not (vendor/README.md).
    #[test]
    #[allow(deprecated)]
    fn a_cuda_device_converts_although_the_build_linked_only_the_cpu_part() {
        let d: tch::Device = burn::backend::LibTorchDevice::Cuda(0).into();
        assert_eq!(d, tch::Device::Cuda(0));
    }
}
