//! Records the compiler and target of this build for the plugin fingerprint: `rustc -V` of the `$RUSTC` cargo uses,
//! the target triple and the cargo profile. They reach the crate as compile-time environment variables.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| format!("unknown ({rustc} -V failed)"));
    // the fingerprint is JSON built at compile time: keep the values free of quotes and backslashes
    let clean = |s: String| s.chars().map(|c| if c == '"' || c == '\\' || c.is_control() { '_' } else { c }).collect::<String>();
    println!("cargo:rustc-env=NNUNET_PLUGIN_RUSTC={}", clean(version));
    println!("cargo:rustc-env=NNUNET_PLUGIN_TARGET={}", clean(std::env::var("TARGET").unwrap_or_else(|_| "unknown".into())));
    println!("cargo:rustc-env=NNUNET_PLUGIN_PROFILE={}", clean(std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into())));
}
