//! `export_plugin!` expands to a header that passes the host's checks and answers the protocol (in-process: the
//! functions are called through the header's pointers, as the host calls them in a loaded library).

use nnunet_plugin::{ABI_VERSION, Fingerprint, HeaderPrefix, MAGIC, PluginHeader, check_header};
use serde_json::{Value, json};
use std::ffi::{CStr, CString};

fn run_command(argv: Vec<String>) -> std::process::ExitCode {
    std::process::ExitCode::from(if argv.iter().any(|a| a == "fail") { 2 } else { 0 })
}

nnunet_plugin::export_plugin!(run_command);

fn call(h: &PluginHeader, req: &Value) -> Value {
    let c = CString::new(req.to_string()).unwrap();
    let p = (h.call)(c.as_ptr());
    assert!(!p.is_null());
    let text = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    (h.free)(p);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn exported_header_passes_the_checks_and_records_this_crate() {
    let h = &NNUNET_PLUGIN_HEADER;
    let prefix = HeaderPrefix { magic: h.magic, abi_version: h.abi_version, header_size: h.header_size };
    assert_eq!(prefix.magic, MAGIC);
    assert_eq!(prefix.abi_version, ABI_VERSION);
    check_header(&prefix).unwrap();
    let fp: Fingerprint = serde_json::from_str(unsafe { CStr::from_ptr(h.fingerprint) }.to_str().unwrap()).unwrap();
    assert_eq!(fp, Fingerprint::of_this_build("nnunet-plugin", env!("CARGO_PKG_VERSION")));
}

#[test]
fn exported_call_runs_the_given_function() {
    let h = &NNUNET_PLUGIN_HEADER;
    assert_eq!(call(h, &json!({"op": "run", "argv": ["nnunet", "list"]})), json!({"exit_code": 0}));
    assert_eq!(call(h, &json!({"op": "run", "argv": ["nnunet", "fail"]})), json!({"exit_code": 2}));
    assert!(call(h, &json!({"op": "list"}))["components"]["architectures"].is_array());
    assert!(call(h, &json!({"op": "nope"}))["error"].as_str().unwrap().contains("unknown op"));
}
