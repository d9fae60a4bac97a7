//! The host side: open a plugin library, check its header, and send it JSON requests.

use crate::{Fingerprint, HEADER_SYMBOL, HeaderPrefix, PluginError, PluginHeader, check_header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

/// A loaded plugin. The library stays loaded until the process ends.
pub struct Plugin {
    path: PathBuf,
    header: &'static PluginHeader,
    fingerprint: Fingerprint,
}

/// One registered component of a plugin (a row of `nnunet list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub aliases: Vec<String>,
    pub summary: String,
    /// The crate that registered it.
    pub origin_crate: String,
}

/// Open the plugin library at `path` and check its header.
///
/// Order of checks: the file exists; it opens as a shared library; it exports [`HEADER_SYMBOL`]; magic, ABI version
/// and header size (nothing else of the header is read before they pass); the fingerprint parses.
///
/// Loading a library runs its initialisers: load only libraries you trust, as you would run a binary. The library is
/// never unloaded (plugin code may have started threads or registered thread-local destructors).
pub fn load(path: &Path) -> Result<Plugin, PluginError> {
    let path = std::fs::canonicalize(path).map_err(|_| PluginError::NotFound { path: path.to_path_buf() })?;
    if !path.is_file() {
        return Err(PluginError::Open { path, reason: "not a regular file".into() });
    }
    // SAFETY: opening a library runs its initialisers; the user asked for this library (documented above).
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| PluginError::Open { path: path.clone(), reason: e.to_string() })?;
    // Never unload, whatever happens next: unloading Rust libraries with live thread-locals is unsound.
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    let symbol = format!("{HEADER_SYMBOL}\0");
    // SAFETY: the symbol is a static; we only take its address here.
    let ptr: *const PluginHeader = match unsafe { lib.get::<*const PluginHeader>(symbol.as_bytes()) } {
        Ok(s) => *s,
        Err(_) => return Err(PluginError::NoHeader { path, symbol: HEADER_SYMBOL }),
    };
    if ptr.is_null() {
        return Err(PluginError::NoHeader { path, symbol: HEADER_SYMBOL });
    }
    // SAFETY: every ABI version starts with the 16-byte prefix; nothing beyond it is read before it is checked.
    let prefix: HeaderPrefix = unsafe { std::ptr::read_unaligned(ptr.cast::<HeaderPrefix>()) };
    check_header(&prefix).map_err(|source| PluginError::Header { path: path.clone(), source })?;
    // SAFETY: magic, ABI version and size match this build's `PluginHeader`; the library is never unloaded.
    let header: &'static PluginHeader = unsafe { &*ptr };
    if header.fingerprint.is_null() {
        return Err(PluginError::Fingerprint { path, reason: "null pointer".into() });
    }
    // SAFETY: the fingerprint is a NUL-terminated static string of the plugin.
    let text = unsafe { CStr::from_ptr(header.fingerprint) };
    let text = text.to_str().map_err(|e| PluginError::Fingerprint { path: path.clone(), reason: e.to_string() })?;
    let fingerprint: Fingerprint =
        serde_json::from_str(text).map_err(|e| PluginError::Fingerprint { path: path.clone(), reason: format!("{e}: {text}") })?;
    Ok(Plugin { path, header, fingerprint })
}

impl Plugin {
    /// The library's canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plugin's build fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Send one request and return the answer; an `{"error": …}` answer becomes [`PluginError::Call`].
    pub fn call(&self, request: &Value) -> Result<Value, PluginError> {
        let op = request.get("op").and_then(Value::as_str).unwrap_or("?").to_string();
        let req = CString::new(request.to_string()).map_err(|e| PluginError::Protocol {
            path: self.path.clone(),
            op: op.clone(),
            reason: e.to_string(),
        })?;
        let answer = (self.header.call)(req.as_ptr());
        if answer.is_null() {
            return Err(PluginError::Protocol { path: self.path.clone(), op, reason: "null answer".into() });
        }
        // SAFETY: the plugin returns a NUL-terminated string that stays valid until we hand it to its `free`.
        let text = unsafe { CStr::from_ptr(answer) }.to_string_lossy().into_owned();
        (self.header.free)(answer);
        let v: Value = serde_json::from_str(&text).map_err(|e| PluginError::Protocol {
            path: self.path.clone(),
            op: op.clone(),
            reason: format!("{e}: {text}"),
        })?;
        if let Some(msg) = v.get("error") {
            let message = msg.as_str().map(str::to_owned).unwrap_or_else(|| msg.to_string());
            return Err(PluginError::Call { path: self.path.clone(), op, message });
        }
        Ok(v)
    }

    /// The components registered in the plugin, by kind (`planners`, `architectures`, `trainers`, `losses`).
    pub fn list(&self) -> Result<BTreeMap<String, Vec<Component>>, PluginError> {
        let v = self.call(&json!({"op": "list"}))?;
        serde_json::from_value(v.get("components").cloned().unwrap_or(Value::Null)).map_err(|e| PluginError::Protocol {
            path: self.path.clone(),
            op: "list".into(),
            reason: e.to_string(),
        })
    }

    /// Run a full `nnunet` command line (argv[0] first) inside the plugin; returns its exit status. The plugin prints
    /// to this process's stdout and stderr.
    pub fn run(&self, argv: &[String], host: &Fingerprint) -> Result<i32, PluginError> {
        let v = self.call(&json!({"op": "run", "argv": argv, "host_fingerprint": host, "library": self.path.display().to_string()}))?;
        v.get("exit_code").and_then(Value::as_i64).and_then(|c| i32::try_from(c).ok()).ok_or_else(|| PluginError::Protocol {
            path: self.path.clone(),
            op: "run".into(),
            reason: format!("no integer exit_code in {v}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_not_found() {
        let err = load(Path::new("/nonexistent/libnothing.so")).err().unwrap();
        assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/libnothing.so"));
    }

    #[test]
    fn text_file_is_not_a_shared_library() {
        let dir = std::env::temp_dir().join(format!("nnunet-plugin-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.so");
        std::fs::write(&f, "this is text, not ELF\n").unwrap();
        let err = load(&f).err().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(err, PluginError::Open { .. }), "{err}");
        assert!(err.to_string().contains("x.so") && err.to_string().contains("not a loadable shared library"), "{err}");
    }

    #[test]
    fn a_directory_is_refused() {
        let err = load(&std::env::temp_dir()).err().unwrap();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
