//! The CUDA memory statistics reader against a real CUDA build of LibTorch, on a machine without a GPU: it must find
//! PyTorch's native caching allocator in `libc10_cuda.so` (symbols, vtable check) and report "not initialised"
//! (no statistics, reset a no-op) instead of calling into an allocator that has no devices. Runs with
//! `--features tch` when the loaded LibTorch's folder holds `libc10_cuda.so` (a CUDA wheel) and its `libcudart` can
//! be loaded; otherwise it says why it skipped. On a GPU the figures themselves are checked by benches/gpu.sh (they
//! sit next to torch.cuda.max_memory_allocated for the same network).
#![cfg(feature = "tch")]
#![allow(deprecated)] // burn-tch (ADR 0012)

use burn::tensor::{Device, Tensor};
use nnunet_core::memory::libtorch_cuda::CachingAllocator;
use std::path::PathBuf;

fn loaded_libtorch_dir() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/maps")
        .ok()?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| PathBuf::from(p).parent().map(PathBuf::from))
}

#[test]
fn finds_the_native_caching_allocator_and_reads_nothing_before_cuda_initialisation() {
    // load LibTorch (a tensor on its CPU device)
    let dev = Device::new(burn::backend::LibTorchDevice::Cpu);
    let t = Tensor::<1>::from_floats([1.0, 2.0], &dev);
    assert_eq!(t.sum().into_scalar::<f32>(), 3.0);
    assert!(CachingAllocator::of_loaded_libtorch().unwrap_err().contains("not loaded"));
    let Some(dir) = loaded_libtorch_dir() else { panic!("LibTorch is not loaded") };
    let lib = dir.join("libc10_cuda.so");
    if !lib.exists() {
        eprintln!("skipped: {} does not exist (a CPU-only LibTorch)", lib.display());
        return;
    }
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    // SAFETY: LibTorch's own CUDA support library; its initialisers set up the allocator object only
    let handle = match unsafe { libloading::os::unix::Library::open(Some(&lib), flags) } {
        Ok(h) => h,
        Err(e) => {
            eprintln!("skipped: {} cannot be loaded ({e}): put libcudart on LD_LIBRARY_PATH", lib.display());
            return;
        }
    };
    let a = CachingAllocator::of_loaded_libtorch().expect("the native caching allocator of the loaded libc10_cuda.so");
    assert!(!a.is_initialized(), "no CUDA initialisation happened in this process");
    assert_eq!(a.stats(0), None);
    a.reset_peak(0);
    std::mem::forget(handle);
}
