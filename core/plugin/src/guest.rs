//! The plugin side of the protocol: what the functions exported by [`export_plugin!`](crate::export_plugin) do.
//! Everything here runs inside the plugin library, on the plugin's own copy of the engine.

use crate::Fingerprint;
use nnunet_core::registry::{self, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::ffi::{CStr, CString, c_char};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::Mutex;

/// A command's result as an exit status (what the function given to `export_plugin!` returns).
pub trait ExitStatus {
    /// The process exit status (0 = success).
    fn code(self) -> i32;
}

impl ExitStatus for ExitCode {
    fn code(self) -> i32 {
        // ExitCode has no accessor; it compares equal to the code it was made from.
        (0..=255u8).find(|&n| ExitCode::from(n) == self).map_or(1, i32::from)
    }
}

impl ExitStatus for u8 {
    fn code(self) -> i32 {
        i32::from(self)
    }
}

impl ExitStatus for i32 {
    fn code(self) -> i32 {
        self
    }
}

/// Where a command that runs inside a plugin came from: recorded by the engine in the run's debug.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProvenance {
    /// The plugin library as the host opened it.
    pub library: String,
    pub plugin_fingerprint: Fingerprint,
    /// The host's fingerprint as it sent it (`None` when a host did not send one).
    pub host_fingerprint: Option<Fingerprint>,
}

impl RunProvenance {
    /// As a JSON object (`library`, `plugin_fingerprint`, `host_fingerprint`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("plain data serializes")
    }
}

static ACTIVE: Mutex<Option<RunProvenance>> = Mutex::new(None);

/// The provenance of the command being run, when this code runs inside a dynamic plugin on behalf of a host
/// (`nnunet --plugin LIB …`); `None` in an ordinary binary.
pub fn active_run() -> Option<RunProvenance> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn set_active(p: Option<RunProvenance>) {
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = p;
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

fn components() -> Result<Value, String> {
    registry::validate_all().map_err(|e| e.to_string())?;
    let mut out = Map::new();
    for k in Kind::ALL {
        let rows = registry::list(k).map_err(|e| e.to_string())?;
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| json!({"name": r.name, "aliases": r.aliases, "summary": r.summary, "origin_crate": r.origin_crate}))
            .collect();
        out.insert(k.plural().to_string(), Value::Array(rows));
    }
    Ok(json!({ "components": out }))
}

fn answer(request: &str, crate_name: &str, crate_version: &str, run: &dyn Fn(Vec<String>) -> i32) -> Result<Value, String> {
    let req: Value = serde_json::from_str(request).map_err(|e| format!("request is not JSON: {e}"))?;
    let op = req.get("op").and_then(Value::as_str).ok_or("request has no \"op\"")?;
    match op {
        "fingerprint" => Ok(serde_json::to_value(Fingerprint::of_this_build(crate_name, crate_version)).expect("plain data")),
        "list" => components(),
        "run" => {
            let argv: Vec<String> =
                req.get("argv").and_then(|a| serde_json::from_value(a.clone()).ok()).ok_or("run: \"argv\" must be a list of strings")?;
            if argv.is_empty() {
                return Err("run: \"argv\" is empty (argv[0] is the program name)".into());
            }
            let host_fingerprint = match req.get("host_fingerprint") {
                None | Some(Value::Null) => None,
                Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| format!("run: invalid \"host_fingerprint\": {e}"))?),
            };
            let library = req.get("library").and_then(Value::as_str).unwrap_or("(unknown)").to_string();
            set_active(Some(RunProvenance {
                library,
                plugin_fingerprint: Fingerprint::of_this_build(crate_name, crate_version),
                host_fingerprint,
            }));
            let result = catch_unwind(AssertUnwindSafe(|| run(argv)));
            set_active(None);
            // this library has its own std: flush its buffered stdout before the host writes again
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            match result {
                Ok(code) => Ok(json!({ "exit_code": code })),
                Err(p) => Err(format!("the command panicked inside the plugin: {}", panic_message(p.as_ref()))),
            }
        }
        other => Err(format!("unknown op '{other}' (this plugin knows fingerprint, list, run)")),
    }
}

/// The plugin's `call`: answer one JSON request. Never unwinds into the host.
///
/// # Safety
/// `request` is null or a NUL-terminated string valid for the duration of the call.
#[doc(hidden)]
pub unsafe fn __guest_call(request: *const c_char, crate_name: &str, crate_version: &str, run: &dyn Fn(Vec<String>) -> i32) -> *mut c_char {
    let result = catch_unwind(AssertUnwindSafe(|| {
        if request.is_null() {
            return Err("null request".to_string());
        }
        // SAFETY: the host passes a NUL-terminated string that lives for the duration of the call.
        let text = unsafe { CStr::from_ptr(request) };
        let text = text.to_str().map_err(|e| format!("request is not UTF-8: {e}"))?;
        answer(text, crate_name, crate_version, run)
    }));
    let v = match result {
        Ok(Ok(v)) => v,
        Ok(Err(msg)) => json!({ "error": msg }),
        Err(p) => json!({ "error": format!("the plugin panicked: {}", panic_message(p.as_ref())) }),
    };
    // serde_json escapes control characters, so the text has no NUL byte
    CString::new(v.to_string()).unwrap_or_else(|_| c"{\"error\":\"answer contained a NUL byte\"}".to_owned()).into_raw()
}

/// The plugin's `free`: release an answer of [`__guest_call`] with the allocator that made it.
///
/// # Safety
/// `answer` is null or a pointer returned by [`__guest_call`] of this library, not freed before.
#[doc(hidden)]
pub unsafe fn __guest_free(answer: *mut c_char) {
    if !answer.is_null() {
        // SAFETY: `answer` was returned by `CString::into_raw` in `__guest_call` of this same library.
        drop(unsafe { CString::from_raw(answer) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests that run commands share the process-global provenance.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn call(req: &str, run: &dyn Fn(Vec<String>) -> i32) -> Value {
        let c = CString::new(req).unwrap();
        let p = unsafe { __guest_call(c.as_ptr(), "t", "0.0.1", run) };
        let text = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
        unsafe { __guest_free(p) };
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn run_passes_argv_and_returns_the_exit_code_with_provenance_set() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let seen = Mutex::new(None);
        let run = |argv: Vec<String>| {
            *seen.lock().unwrap() = Some((argv, active_run()));
            3
        };
        let host = Fingerprint::of_this_build("nnunet-cli", "9.9.9");
        let req = json!({"op": "run", "argv": ["nnunet", "list"], "host_fingerprint": host, "library": "/x/libp.so"});
        assert_eq!(call(&req.to_string(), &run), json!({"exit_code": 3}));
        let (argv, prov) = seen.lock().unwrap().clone().unwrap();
        assert_eq!(argv, ["nnunet", "list"]);
        let prov = prov.expect("provenance set during the run");
        assert_eq!(prov.library, "/x/libp.so");
        assert_eq!(prov.host_fingerprint, Some(host));
        assert_eq!(prov.plugin_fingerprint.crate_name, "t");
        assert_eq!(active_run(), None, "cleared after the run");
    }

    #[test]
    fn panics_and_bad_requests_become_errors() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let boom = |_: Vec<String>| -> i32 { panic!("boom") };
        let v = call(r#"{"op":"run","argv":["nnunet"]}"#, &boom);
        assert!(v["error"].as_str().unwrap().contains("boom"), "{v}");
        let ok = |_: Vec<String>| 0;
        for (req, want) in
            [("not json", "not JSON"), (r#"{"op":"fly"}"#, "unknown op 'fly'"), (r#"{"op":"run","argv":[]}"#, "empty"), ("{}", "no \"op\"")]
        {
            let v = call(req, &ok);
            assert!(v["error"].as_str().unwrap().contains(want), "{req}: {v}");
        }
    }

    #[test]
    fn fingerprint_and_list_answer() {
        let ok = |_: Vec<String>| 0;
        let v = call(r#"{"op":"fingerprint"}"#, &ok);
        let f: Fingerprint = serde_json::from_value(v).unwrap();
        assert_eq!(f, Fingerprint::of_this_build("t", "0.0.1"));
        let v = call(r#"{"op":"list"}"#, &ok);
        for k in Kind::ALL {
            assert!(v["components"][k.plural()].is_array(), "{v}");
        }
    }

    #[test]
    fn exit_codes_convert() {
        assert_eq!(ExitCode::from(2).code(), 2);
        assert_eq!(ExitCode::SUCCESS.code(), 0);
        assert_eq!(ExitCode::FAILURE.code(), 1);
        assert_eq!(7u8.code(), 7);
    }
}
