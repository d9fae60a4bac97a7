//! Device-memory statistics of a LibTorch CUDA run: the figures of PyTorch's CUDA caching allocator that
//! `torch.cuda.max_memory_allocated` / `max_memory_reserved` (and nnU-Net users) read, taken from the LibTorch the
//! process has loaded.
//!
//! LibTorch's C++ API reaches these statistics only through inline functions that call virtual methods of the
//! allocator object (`c10::cuda::CUDACachingAllocator::get()->getDeviceStats(device)`), so there is no exported
//! function to look up. What is exported is the allocator pointer (`c10::cuda::CUDACachingAllocator::allocator`); the
//! methods of its native implementation (`Native::NativeCachingAllocator::{initialized, getDeviceStats,
//! resetPeakStats}`) and its vtable are local symbols of `libc10_cuda.so`'s (unstripped) symbol table. We read their
//! link addresses from that table, relocate them by the library's load bias (the exported pointer's runtime address
//! minus its link address), and call a method only after checking that the allocator object's vtable pointer is the
//! native allocator's vtable, so another allocator backend (`PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync`, a
//! pluggable allocator) is reported as "not measured" instead of being called wrongly.
//!
//! The layout of the returned `c10::CachingDeviceAllocator::DeviceStats` (PyTorch 2.11: nine `StatArray`s of three
//! `Stat {current, peak, allocated, freed}` of `int64_t`, then scalars; 976 bytes, which is what the disassembly of
//! `getDeviceStats` copies: 122 quadwords) is the one ABI assumption; the calling convention is the Itanium C++ one
//! for a method returning a class in memory: the return slot first, then `this`, then the `int8_t` device.

use super::elf;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, Ordering};

const LIBRARY: &str = "libc10_cuda.so";
const ALLOCATOR: &str = "_ZN3c104cuda20CUDACachingAllocator9allocatorE";
const VTABLE: &str = "_ZTVN3c104cuda20CUDACachingAllocator6Native22NativeCachingAllocatorE";
const INITIALIZED: &str = "_ZN3c104cuda20CUDACachingAllocator6Native22NativeCachingAllocator11initializedEv";
const GET_DEVICE_STATS: &str = "_ZN3c104cuda20CUDACachingAllocator6Native22NativeCachingAllocator14getDeviceStatsEa";
const RESET_PEAK_STATS: &str = "_ZN3c104cuda20CUDACachingAllocator6Native22NativeCachingAllocator14resetPeakStatsEa";

/// `int64_t`s in a `Stat` and in a `StatArray` (AGGREGATE, SMALL_POOL, LARGE_POOL).
const STAT: usize = 4;
const STAT_ARRAY: usize = 3 * STAT;
/// `DeviceStats` fields, in `int64_t`s from its start: `allocated_bytes` is the fifth `StatArray` (after allocation,
/// segment, active, inactive_split), `reserved_bytes` the sixth; `[AGGREGATE]` is their first `Stat`.
const ALLOCATED_BYTES: usize = 4 * STAT_ARRAY;
const RESERVED_BYTES: usize = 5 * STAT_ARRAY;
/// sizeof(DeviceStats) in PyTorch 2.11 is 122 `int64_t`s; the return slot is larger so that fields added at its end
/// by a later version cannot write past it.
const SLOT: usize = 512;

type Initialized = unsafe extern "C" fn(*mut c_void) -> bool;
type GetDeviceStats = unsafe extern "C" fn(*mut [i64; SLOT], *mut c_void, i8) -> *mut [i64; SLOT];
type ResetPeakStats = unsafe extern "C" fn(*mut c_void, i8);

/// One `Stat` (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub current: u64,
    pub peak: u64,
}

/// PyTorch's native CUDA caching allocator of the loaded LibTorch.
pub struct CachingAllocator {
    object: *mut c_void,
    initialized: Initialized,
    get_device_stats: GetDeviceStats,
    reset_peak_stats: ResetPeakStats,
}

impl std::fmt::Debug for CachingAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachingAllocator({:p})", self.object)
    }
}

// SAFETY: the allocator is a process-wide singleton whose methods lock internally (PyTorch calls them from any thread).
unsafe impl Send for CachingAllocator {}
// SAFETY: as above.
unsafe impl Sync for CachingAllocator {}

#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

unsafe extern "C" {
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
}

impl CachingAllocator {
    /// The allocator of the `libc10_cuda.so` loaded in this process. Errors say why the statistics cannot be read:
    /// no CUDA LibTorch loaded, a stripped library, another allocator backend.
    pub fn of_loaded_libtorch() -> Result<CachingAllocator, String> {
        let flags = libloading::os::unix::RTLD_NOW | libc_rtld_noload();
        // SAFETY: RTLD_NOLOAD only returns a handle to a library that is already loaded; nothing is initialised
        let lib = unsafe { libloading::os::unix::Library::open(Some(LIBRARY), flags) }
            .map_err(|_| format!("{LIBRARY} is not loaded (no CUDA LibTorch in this process)"))?;
        // SAFETY: the symbol is `std::atomic<CUDAAllocator*>`, which has the representation of a pointer
        let global = unsafe { lib.get::<*mut c_void>(format!("{ALLOCATOR}\0").as_bytes()) }
            .map(|s| *s)
            .map_err(|e| format!("{LIBRARY}: {e}"))?;
        let path = library_path(global)?;
        let v = elf::symbol_values(&path, &[ALLOCATOR, VTABLE, INITIALIZED, GET_DEVICE_STATS, RESET_PEAK_STATS])?;
        let missing: Vec<&str> =
            [ALLOCATOR, VTABLE, INITIALIZED, GET_DEVICE_STATS, RESET_PEAK_STATS].iter().zip(&v).filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect();
        if !missing.is_empty() {
            return Err(format!("{}: symbols not found (another PyTorch version?): {}", path.display(), missing.join(", ")));
        }
        let at = |i: usize| v[i].unwrap_or_default();
        let bias = (global as usize).wrapping_sub(at(0));
        // SAFETY: `global` is the exported atomic pointer (see above); the object it points to starts with its vptr
        let object = unsafe { (*(global as *const AtomicPtr<c_void>)).load(Ordering::Acquire) };
        if object.is_null() {
            return Err(format!("{}: the CUDA allocator is not set", path.display()));
        }
        // SAFETY: a polymorphic C++ object begins with its vtable pointer
        let vptr = unsafe { *(object as *const usize) };
        // the vtable symbol covers offset-to-top and typeinfo before the first virtual function
        if vptr != bias.wrapping_add(at(1)) + 2 * std::mem::size_of::<usize>() {
            return Err("the CUDA allocator is not PyTorch's native caching allocator (PYTORCH_CUDA_ALLOC_CONF backend?)".into());
        }
        // SAFETY: the addresses are those of the native allocator's methods in the loaded library; signatures above
        unsafe {
            Ok(CachingAllocator {
                object,
                initialized: std::mem::transmute::<usize, Initialized>(bias.wrapping_add(at(2))),
                get_device_stats: std::mem::transmute::<usize, GetDeviceStats>(bias.wrapping_add(at(3))),
                reset_peak_stats: std::mem::transmute::<usize, ResetPeakStats>(bias.wrapping_add(at(4))),
            })
        }
    }

    /// Whether the allocator has been set up (LibTorch does that at CUDA's lazy initialisation, for every device).
    pub fn is_initialized(&self) -> bool {
        // SAFETY: `initialized` only compares the allocator's per-device vector against empty
        unsafe { (self.initialized)(self.object) }
    }

    /// `(allocated_bytes, reserved_bytes)` of CUDA device `device` (aggregate pool), or `None` before CUDA's
    /// initialisation. `device` must be a valid CUDA device index of this process.
    pub fn stats(&self, device: i8) -> Option<(Stat, Stat)> {
        if !self.is_initialized() {
            return None;
        }
        let mut slot = Box::new([0i64; SLOT]);
        // SAFETY: initialised, so every device index below the device count is valid; the slot is larger than
        // DeviceStats
        unsafe { (self.get_device_stats)(&mut *slot, self.object, device) };
        let stat = |at: usize| Stat { current: slot[at].max(0) as u64, peak: slot[at + 1].max(0) as u64 };
        Some((stat(ALLOCATED_BYTES), stat(RESERVED_BYTES)))
    }

    /// `torch.cuda.reset_peak_memory_stats(device)`; nothing before CUDA's initialisation.
    pub fn reset_peak(&self, device: i8) {
        if self.is_initialized() {
            // SAFETY: as in `stats`
            unsafe { (self.reset_peak_stats)(self.object, device) }
        }
    }
}

/// glibc's RTLD_NOLOAD (not in libloading's portable set).
fn libc_rtld_noload() -> c_int {
    0x0004
}

/// The file of the loaded library that contains `addr`.
fn library_path(addr: *const c_void) -> Result<PathBuf, String> {
    let mut info = DlInfo { dli_fname: std::ptr::null(), dli_fbase: std::ptr::null_mut(), dli_sname: std::ptr::null(), dli_saddr: std::ptr::null_mut() };
    // SAFETY: dladdr fills `info` for an address inside a loaded object; the name stays valid while it is loaded
    let ok = unsafe { dladdr(addr, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return Err(format!("{LIBRARY}: cannot locate the loaded file"));
    }
    // SAFETY: non-null C string owned by the dynamic loader
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    Ok(PathBuf::from(name))
}
