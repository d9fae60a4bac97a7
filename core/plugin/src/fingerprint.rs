//! The build fingerprint: what a plugin (or the host) was compiled with. It is JSON built at compile time, so the
//! header can point to it as static data and the host reads it without running plugin code.

use serde::{Deserialize, Serialize};

/// burn version of this build. The workspace pins burn exactly (`=0.22.1` in the root Cargo.toml, checked by a test),
/// so the version of nnunet-core implies it.
pub const BURN_VERSION: &str = "0.22.1";

/// `rustc -V` of the compiler that built this crate (recorded by build.rs).
pub const RUSTC_VERSION: &str = env!("NNUNET_PLUGIN_RUSTC");

/// Target triple of this build.
pub const TARGET: &str = env!("NNUNET_PLUGIN_TARGET");

/// Cargo profile of this build (`debug` or `release`).
pub const PROFILE: &str = env!("NNUNET_PLUGIN_PROFILE");

/// `ABI_VERSION` as text, for the compile-time JSON (a test checks they agree).
const ABI_VERSION_STR: &str = "1";

/// The compiled backends (`nnunet_core::compiled_backends()`, a test checks they agree) as JSON.
const BACKENDS: &[&str] = if cfg!(feature = "flex") { &["flex"] } else { &[] };
const BACKENDS_JSON: &str = if cfg!(feature = "flex") { "[\"flex\"]" } else { "[]" };

/// What a library was built with. Two builds whose fingerprints differ (apart from the crate name and version) may
/// still talk to each other (the protocol is JSON), but their numbers may differ: the host prints a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub abi_version: u32,
    /// Version of nnunet-core.
    pub nnunet_core: String,
    pub burn: String,
    /// `rustc -V`.
    pub rustc: String,
    pub target: String,
    pub profile: String,
    /// Compiled backends, e.g. `["flex"]`.
    pub backends: Vec<String>,
    /// The crate that was built: the plugin crate, or `nnunet-cli` for the host.
    pub crate_name: String,
    pub crate_version: String,
}

impl Fingerprint {
    /// The fingerprint of this build for crate `crate_name` `crate_version`.
    pub fn of_this_build(crate_name: &str, crate_version: &str) -> Self {
        Fingerprint {
            abi_version: crate::ABI_VERSION,
            nnunet_core: nnunet_core::CORE_VERSION.to_string(),
            burn: BURN_VERSION.to_string(),
            rustc: RUSTC_VERSION.to_string(),
            target: TARGET.to_string(),
            profile: PROFILE.to_string(),
            backends: BACKENDS.iter().map(|s| s.to_string()).collect(),
            crate_name: crate_name.to_string(),
            crate_version: crate_version.to_string(),
        }
    }

    /// The fields (other than the crate's name and version) that differ from `other`, as `field: this vs other`.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |field: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{field}: {a} vs {b}"));
            }
        };
        cmp("abi_version", self.abi_version.to_string(), other.abi_version.to_string());
        cmp("nnunet_core", self.nnunet_core.clone(), other.nnunet_core.clone());
        cmp("burn", self.burn.clone(), other.burn.clone());
        cmp("rustc", self.rustc.clone(), other.rustc.clone());
        cmp("target", self.target.clone(), other.target.clone());
        cmp("profile", self.profile.clone(), other.profile.clone());
        cmp("backends", self.backends.join(","), other.backends.join(","));
        d
    }
}

/// The pieces of the compile-time fingerprint JSON (same keys and order as [`Fingerprint`]).
const fn parts<'a>(crate_name: &'a str, crate_version: &'a str) -> [&'a str; 19] {
    [
        "{\"abi_version\":",
        ABI_VERSION_STR,
        ",\"nnunet_core\":\"",
        nnunet_core::CORE_VERSION,
        "\",\"burn\":\"",
        BURN_VERSION,
        "\",\"rustc\":\"",
        RUSTC_VERSION,
        "\",\"target\":\"",
        TARGET,
        "\",\"profile\":\"",
        PROFILE,
        "\",\"backends\":",
        BACKENDS_JSON,
        ",\"crate_name\":\"",
        crate_name,
        "\",\"crate_version\":\"",
        crate_version,
        "\"}",
    ]
}

/// A value placed between JSON quotes must not need escaping (cargo package names and versions never do).
const fn assert_plain(s: &str) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        assert!(b[i] != b'"' && b[i] != b'\\' && b[i] >= 0x20, "fingerprint value needs JSON escaping");
        i += 1;
    }
}

/// Length of the fingerprint JSON of crate `crate_name` `crate_version`, plus its NUL terminator.
#[doc(hidden)]
pub const fn __fingerprint_len(crate_name: &str, crate_version: &str) -> usize {
    let p = parts(crate_name, crate_version);
    let mut n = 0;
    let mut i = 0;
    while i < p.len() {
        n += p[i].len();
        i += 1;
    }
    n + 1
}

/// The NUL-terminated fingerprint JSON of crate `crate_name` `crate_version` (`N` = [`__fingerprint_len`]).
#[doc(hidden)]
pub const fn __fingerprint_bytes<const N: usize>(crate_name: &str, crate_version: &str) -> [u8; N] {
    assert_plain(crate_name);
    assert_plain(crate_version);
    let p = parts(crate_name, crate_version);
    let mut out = [0u8; N];
    let mut k = 0;
    let mut i = 0;
    while i < p.len() {
        let b = p[i].as_bytes();
        let mut j = 0;
        while j < b.len() {
            assert!(b[j] != 0, "fingerprint contains a NUL byte");
            out[k] = b[j];
            k += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(k + 1 == N, "fingerprint length mismatch");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: usize = __fingerprint_len("my-plugin", "1.2.3");
    static BYTES: [u8; LEN] = __fingerprint_bytes("my-plugin", "1.2.3");

    #[test]
    fn compile_time_json_equals_the_runtime_fingerprint() {
        assert_eq!(BYTES[LEN - 1], 0);
        let text = std::str::from_utf8(&BYTES[..LEN - 1]).unwrap();
        let parsed: Fingerprint = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, Fingerprint::of_this_build("my-plugin", "1.2.3"));
        assert_eq!(parsed.crate_name, "my-plugin");
    }

    #[test]
    fn abi_and_backends_constants_agree_with_their_sources() {
        assert_eq!(ABI_VERSION_STR, crate::ABI_VERSION.to_string());
        assert_eq!(BACKENDS, nnunet_core::compiled_backends().as_slice());
        let backends: Vec<String> = serde_json::from_str(BACKENDS_JSON).unwrap();
        assert_eq!(backends, BACKENDS);
    }

    #[test]
    fn burn_version_is_the_workspace_pin() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let text = std::fs::read_to_string(&root).unwrap();
        let line = text.lines().find(|l| l.trim_start().starts_with("burn =")).expect("burn in [workspace.dependencies]");
        assert!(line.contains(&format!("\"={BURN_VERSION}\"")), "{}: {line} (BURN_VERSION = {BURN_VERSION})", root.display());
    }

    #[test]
    fn build_facts_are_recorded() {
        assert!(RUSTC_VERSION.starts_with("rustc "), "{RUSTC_VERSION}");
        assert!(TARGET.contains('-'), "{TARGET}");
        assert!(!PROFILE.is_empty());
    }

    #[test]
    fn differences_ignore_the_crate_and_name_each_field() {
        let a = Fingerprint::of_this_build("a", "1.0.0");
        let mut b = Fingerprint::of_this_build("b", "2.0.0");
        assert!(a.differences(&b).is_empty());
        b.rustc = "rustc 0.0.1".into();
        b.backends = vec![];
        let d = a.differences(&b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("rustc: ") && d[0].ends_with("vs rustc 0.0.1"), "{d:?}");
    }
}
