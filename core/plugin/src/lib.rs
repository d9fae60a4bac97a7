//! Dynamic plugins (tier 2, ADR 0002 and ADR 0009): a plugin is a `cdylib` that links its own copy of the whole
//! engine and talks to the host only through C strings holding JSON.
//!
//! A plugin crate invokes [`export_plugin!`] once; the macro exports one `#[repr(C)]` [`PluginHeader`] under the
//! symbol [`HEADER_SYMBOL`]: magic bytes, ABI version, header size, a JSON [`Fingerprint`] of the build and two
//! `extern "C"` functions (`call`, `free`). The host [`load`]s the library with libloading, checks magic, ABI version
//! and header size before it reads anything else, and never unloads it.
//!
//! Protocol (requests and answers are JSON objects in NUL-terminated UTF-8 strings; the plugin allocates an answer and
//! frees it in its own `free`, so no allocation crosses the boundary):
//! - `{"op":"fingerprint"}` → the plugin's [`Fingerprint`];
//! - `{"op":"list"}` → `{"components": {"architectures": [{name, aliases, summary, origin_crate}], …}}`;
//! - `{"op":"run","argv":[…],"host_fingerprint":{…},"library":"/path"}` → `{"exit_code": N}`: a whole `nnunet`
//!   command run inside the plugin by its own engine;
//! - any failure → `{"error": "…"}`; a panic inside the plugin is caught and answered as an error.
//!
//! No Rust trait object, burn tensor or Rust allocation crosses the boundary (architecture invariant 7): a burn
//! module built in a cdylib runs forward from the host but its backward panics, because the plugin has its own copy
//! of burn's process-global autodiff/device state.

mod fingerprint;
mod guest;
mod loader;

pub use fingerprint::{BURN_VERSION, Fingerprint, PROFILE, RUSTC_VERSION, TARGET};
pub use guest::{ExitStatus, RunProvenance, active_run};
pub use loader::{Component, Plugin, load};

#[doc(hidden)]
pub use fingerprint::{__fingerprint_bytes, __fingerprint_len};
#[doc(hidden)]
pub use guest::{__guest_call, __guest_free};

use std::ffi::c_char;
use std::path::PathBuf;

/// The first eight bytes of every plugin header.
pub const MAGIC: [u8; 8] = *b"NNUNETPL";

/// Version of the header layout and of the JSON protocol. A host refuses a plugin of another version.
pub const ABI_VERSION: u32 = 1;

/// The one symbol a plugin exports (a `static PluginHeader`).
pub const HEADER_SYMBOL: &str = "NNUNET_PLUGIN_HEADER";

/// The header a plugin exports under [`HEADER_SYMBOL`]. Its first three fields ([`HeaderPrefix`]) keep their
/// layout in every ABI version, so a host can read them from any plugin and refuse a foreign one cleanly.
#[repr(C)]
pub struct PluginHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`ABI_VERSION`] of the plugin's build.
    pub abi_version: u32,
    /// `size_of::<PluginHeader>()` of the plugin's build.
    pub header_size: u32,
    /// NUL-terminated JSON [`Fingerprint`], static for the library's lifetime.
    pub fingerprint: *const c_char,
    /// Answer one JSON request; the answer must be released with `free`. Never null for a valid request.
    pub call: extern "C" fn(*const c_char) -> *mut c_char,
    /// Release an answer of `call`.
    pub free: extern "C" fn(*mut c_char),
}

// SAFETY: the header is immutable and its pointer points to immutable static data.
unsafe impl Sync for PluginHeader {}

/// The ABI-stable start of [`PluginHeader`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub magic: [u8; 8],
    pub abi_version: u32,
    pub header_size: u32,
}

/// Why a header was refused (see [`check_header`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("symbol {HEADER_SYMBOL} does not start with the magic bytes \"NNUNETPL\" (found {found:?})")]
    Magic { found: [u8; 8] },
    #[error(
        "the plugin was built for plugin ABI version {plugin}, but this nnunet speaks ABI version {host}: rebuild the plugin \
         against this nnunet version (nnunet-core {core})",
        core = nnunet_core::CORE_VERSION
    )]
    AbiVersion { plugin: u32, host: u32 },
    #[error(
        "the plugin header is {plugin} bytes, but ABI version {abi} headers are {host} bytes on this platform (a library for another platform?)"
    )]
    Size { plugin: u32, host: u32, abi: u32 },
}

/// Check magic, ABI version and header size, in that order.
pub fn check_header(h: &HeaderPrefix) -> Result<(), HeaderError> {
    if h.magic != MAGIC {
        return Err(HeaderError::Magic { found: h.magic });
    }
    if h.abi_version != ABI_VERSION {
        return Err(HeaderError::AbiVersion { plugin: h.abi_version, host: ABI_VERSION });
    }
    let size = std::mem::size_of::<PluginHeader>() as u32;
    if h.header_size != size {
        return Err(HeaderError::Size { plugin: h.header_size, host: size, abi: ABI_VERSION });
    }
    Ok(())
}

/// Errors of loading and calling a plugin. Every message names the library.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{}: no such file", .path.display())]
    NotFound { path: PathBuf },
    #[error("{}: not a loadable shared library: {reason}", .path.display())]
    Open { path: PathBuf, reason: String },
    #[error("{} is not an nnunet plugin: symbol {symbol} not found", .path.display())]
    NoHeader { path: PathBuf, symbol: &'static str },
    #[error("{} is not a usable nnunet plugin: {source}", .path.display())]
    Header { path: PathBuf, source: HeaderError },
    #[error("{}: the plugin's fingerprint is not valid: {reason}", .path.display())]
    Fingerprint { path: PathBuf, reason: String },
    #[error("{}: plugin request '{op}' failed: {message}", .path.display())]
    Call { path: PathBuf, op: String, message: String },
    #[error("{}: invalid answer to plugin request '{op}': {reason}", .path.display())]
    Protocol { path: PathBuf, op: String, reason: String },
}

/// Export the dynamic-plugin header from a plugin crate (build it as a `cdylib`). Invoke once, at the crate root,
/// with the function that runs a full `nnunet` command line inside the plugin:
///
/// ```ignore
/// nnunet_plugin::export_plugin!(nnunet_cli::run);
/// ```
///
/// The function takes the argv (`Vec<String>`, argv[0] first) and returns an [`ExitStatus`] (`ExitCode`, `u8`,
/// `i32`). The fingerprint records the invoking crate's name and version.
#[macro_export]
macro_rules! export_plugin {
    ($run:expr $(,)?) => {
        #[doc(hidden)]
        static __NNUNET_PLUGIN_FINGERPRINT: [u8; $crate::__fingerprint_len(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))] =
            $crate::__fingerprint_bytes(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));

        #[doc(hidden)]
        extern "C" fn __nnunet_plugin_call(request: *const ::std::ffi::c_char) -> *mut ::std::ffi::c_char {
            let run = |argv: ::std::vec::Vec<::std::string::String>| $crate::ExitStatus::code(($run)(argv));
            // SAFETY: the host passes a NUL-terminated request that lives for the duration of the call.
            unsafe { $crate::__guest_call(request, env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"), &run) }
        }

        #[doc(hidden)]
        extern "C" fn __nnunet_plugin_free(answer: *mut ::std::ffi::c_char) {
            // SAFETY: the host hands back answers of `__nnunet_plugin_call`, each once.
            unsafe { $crate::__guest_free(answer) }
        }

        /// The nnunet dynamic-plugin header (crate `nnunet-plugin`).
        #[unsafe(no_mangle)]
        pub static NNUNET_PLUGIN_HEADER: $crate::PluginHeader = $crate::PluginHeader {
            magic: $crate::MAGIC,
            abi_version: $crate::ABI_VERSION,
            header_size: ::core::mem::size_of::<$crate::PluginHeader>() as u32,
            fingerprint: ::core::ptr::addr_of!(__NNUNET_PLUGIN_FINGERPRINT).cast::<::std::ffi::c_char>(),
            call: __nnunet_plugin_call,
            free: __nnunet_plugin_free,
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(abi: u32) -> HeaderPrefix {
        HeaderPrefix { magic: MAGIC, abi_version: abi, header_size: std::mem::size_of::<PluginHeader>() as u32 }
    }

    #[test]
    fn header_of_this_version_passes() {
        assert_eq!(check_header(&prefix(ABI_VERSION)), Ok(()));
    }

    #[test]
    fn other_abi_version_is_refused_naming_both() {
        let err = check_header(&prefix(ABI_VERSION + 1)).unwrap_err();
        assert_eq!(err, HeaderError::AbiVersion { plugin: ABI_VERSION + 1, host: ABI_VERSION });
        let msg = err.to_string();
        assert!(msg.contains(&format!("ABI version {}", ABI_VERSION + 1)) && msg.contains(&format!("ABI version {ABI_VERSION}")), "{msg}");
    }

    #[test]
    fn magic_is_checked_before_the_version() {
        let mut h = prefix(ABI_VERSION + 7);
        h.magic = *b"NOTAPLUG";
        assert!(matches!(check_header(&h), Err(HeaderError::Magic { .. })));
    }

    #[test]
    fn header_size_is_checked() {
        let mut h = prefix(ABI_VERSION);
        h.header_size -= 8;
        let msg = check_header(&h).unwrap_err().to_string();
        assert!(msg.contains("bytes"), "{msg}");
    }

    #[test]
    fn prefix_is_the_start_of_the_header() {
        assert_eq!(std::mem::offset_of!(PluginHeader, magic), std::mem::offset_of!(HeaderPrefix, magic));
        assert_eq!(std::mem::offset_of!(PluginHeader, abi_version), std::mem::offset_of!(HeaderPrefix, abi_version));
        assert_eq!(std::mem::offset_of!(PluginHeader, header_size), std::mem::offset_of!(HeaderPrefix, header_size));
        assert_eq!(std::mem::size_of::<HeaderPrefix>(), 16);
    }
}
