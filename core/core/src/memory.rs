//! Measured memory: a counting global allocator (current and peak heap bytes, peak resettable) and the process's
//! resident set (Linux `/proc/self/status`, peak resettable through `/proc/self/clear_refs`).
//!
//! On the CPU backend the tensors live on the heap, so "allocated" (live heap bytes, like PyTorch's
//! `max_memory_allocated`) and "reserved" (resident pages, like `max_memory_reserved`) are the two numbers a
//! training run and `nnunet calibrate-vram` report. The binary opts in with
//! `#[global_allocator] static A: nnunet_core::memory::CountingAlloc = nnunet_core::memory::CountingAlloc;`
//! (the CLI crate does); without it the allocated figures are `None`.

pub mod elf;
#[cfg(feature = "tch")]
pub mod libtorch_cuda;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting live and peak bytes.
pub struct CountingAlloc;

impl CountingAlloc {
    #[inline]
    fn grow(n: usize) {
        let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are side information only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            if !INSTALLED.load(Ordering::Relaxed) {
                INSTALLED.store(true, Ordering::Relaxed);
            }
            Self::grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                Self::grow(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Live heap bytes, if the counting allocator is installed.
pub fn allocated_bytes() -> Option<u64> {
    INSTALLED.load(Ordering::Relaxed).then(|| CURRENT.load(Ordering::Relaxed) as u64)
}

/// Peak live heap bytes since the start or the last [`reset_peak`], if the counting allocator is installed.
pub fn peak_allocated_bytes() -> Option<u64> {
    INSTALLED.load(Ordering::Relaxed).then(|| PEAK.load(Ordering::Relaxed) as u64)
}

/// Restart peak tracking (allocated: at the current value; resident: Linux `clear_refs` 5, where permitted).
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Resident set size in bytes (Linux `VmRSS`), if known.
pub fn resident_bytes() -> Option<u64> {
    status_kb("VmRSS:")
}

/// Peak resident set size in bytes (Linux `VmHWM`) since the start or the last [`reset_peak`], if known.
pub fn peak_resident_bytes() -> Option<u64> {
    status_kb("VmHWM:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            let r = resident_bytes().unwrap();
            assert!(r > 0 && peak_resident_bytes().unwrap() >= r);
        }
    }

    #[test]
    fn counters_follow_alloc_and_dealloc() {
        // drive the allocator directly (the test binary does not install it globally)
        let a = CountingAlloc;
        let layout = Layout::from_size_align(1 << 20, 8).unwrap();
        let before = CURRENT.load(Ordering::Relaxed);
        // SAFETY: valid non-zero layout; freed below with the same layout.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(CURRENT.load(Ordering::Relaxed), before + (1 << 20));
        assert!(PEAK.load(Ordering::Relaxed) >= before + (1 << 20));
        // SAFETY: grows the same block; `p` came from this allocator with `layout`.
        let q = unsafe { a.realloc(p, layout, 2 << 20) };
        assert_eq!(CURRENT.load(Ordering::Relaxed), before + (2 << 20));
        // SAFETY: `q` came from this allocator with size 2 MiB, align 8.
        unsafe { a.dealloc(q, Layout::from_size_align(2 << 20, 8).unwrap()) };
        assert_eq!(CURRENT.load(Ordering::Relaxed), before);
        assert_eq!(allocated_bytes(), Some(before as u64));
    }
}

/// Peak or current memory figures in bytes, named as PyTorch names them: "allocated" (live tensors,
/// `torch.cuda.max_memory_allocated`) and "reserved" (what the allocator holds, `max_memory_reserved`; on the CPU the
/// resident set). `None`: not measured on that device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryFigures {
    pub allocated: Option<u64>,
    pub reserved: Option<u64>,
}

enum Source {
    /// flex: tensors are Rust heap allocations (counting allocator) + resident set
    Heap,
    /// a backend that allocates outside the Rust heap, on the host (LibTorch CPU): resident set only
    Resident,
    /// PyTorch's CUDA caching allocator, device index
    #[cfg(feature = "tch")]
    Cuda(libtorch_cuda::CachingAllocator, i8),
}

/// How a run's memory is measured on its device, chosen once per device: the CPU backends report the heap and the
/// resident set, a LibTorch CUDA device reports the CUDA caching allocator's figures (as PyTorch nnU-Net would).
pub struct MemoryProbe {
    source: Source,
    measured_on: String,
}

impl MemoryProbe {
    /// The probe for a run on `device`.
    #[allow(deprecated)] // burn-tch's device type (ADR 0012)
    pub fn for_device(device: &burn::tensor::Device) -> MemoryProbe {
        let base = device.as_dispatch().clone().inner();
        #[cfg(feature = "flex")]
        if matches!(base, burn::backend::DispatchDevice::Flex(_)) {
            return MemoryProbe { source: Source::Heap, measured_on: "host (CPU backend: tensors live on the Rust heap)".into() };
        }
        #[cfg(feature = "tch")]
        if let burn::backend::DispatchDevice::LibTorch(burn::backend::LibTorchDevice::Cuda(i)) = base {
            let index = i8::try_from(i).unwrap_or(i8::MAX);
            return match libtorch_cuda::CachingAllocator::of_loaded_libtorch() {
                Ok(a) => MemoryProbe {
                    source: Source::Cuda(a, index),
                    measured_on: format!("cuda:{i} (PyTorch's CUDA caching allocator: allocated and reserved bytes)"),
                },
                Err(why) => MemoryProbe {
                    source: Source::Resident,
                    measured_on: format!("host resident set only: cuda:{i} device memory not measured ({why})"),
                },
            };
        }
        let _ = base;
        MemoryProbe {
            source: Source::Resident,
            measured_on: "host resident set only (the backend allocates outside the Rust heap)".into(),
        }
    }

    /// What the figures measure (for logs and debug.json).
    pub fn measured_on(&self) -> &str {
        &self.measured_on
    }

    /// Live figures now.
    pub fn current(&self) -> MemoryFigures {
        match &self.source {
            Source::Heap => MemoryFigures { allocated: allocated_bytes(), reserved: resident_bytes() },
            Source::Resident => MemoryFigures { allocated: None, reserved: resident_bytes() },
            #[cfg(feature = "tch")]
            Source::Cuda(a, i) => a
                .stats(*i)
                .map_or(MemoryFigures::default(), |(al, re)| MemoryFigures { allocated: Some(al.current), reserved: Some(re.current) }),
        }
    }

    /// Peak figures since the start or the last [`MemoryProbe::reset_peak`].
    pub fn peak(&self) -> MemoryFigures {
        match &self.source {
            Source::Heap => MemoryFigures { allocated: peak_allocated_bytes(), reserved: peak_resident_bytes() },
            Source::Resident => MemoryFigures { allocated: None, reserved: peak_resident_bytes() },
            #[cfg(feature = "tch")]
            Source::Cuda(a, i) => {
                a.stats(*i).map_or(MemoryFigures::default(), |(al, re)| MemoryFigures { allocated: Some(al.peak), reserved: Some(re.peak) })
            }
        }
    }

    /// Restart peak tracking (`torch.cuda.reset_peak_memory_stats` on CUDA).
    pub fn reset_peak(&self) {
        match &self.source {
            Source::Heap | Source::Resident => reset_peak(),
            #[cfg(feature = "tch")]
            Source::Cuda(a, i) => a.reset_peak(*i),
        }
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[cfg(feature = "flex")]
    #[test]
    fn flex_reports_heap_and_resident_set() {
        let dev = burn::tensor::Device::flex();
        let p = MemoryProbe::for_device(&dev);
        assert!(p.measured_on().starts_with("host (CPU backend"), "{}", p.measured_on());
        // the test binary does not install the counting allocator: allocated is unknown, the resident set is known
        let peak = p.peak();
        assert_eq!(peak.allocated, None);
        assert!(peak.reserved.unwrap() > 0);
    }
}
