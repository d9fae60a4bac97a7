//! JSON reading and writing the way Python's `json` module does it.
//!
//! nnU-Net writes its files with `json.dump(obj, f, indent=4, sort_keys=...)`. [`to_python_string`]
//! reproduces that text (4-space indent, `", "`/`": "` separators, Python float `repr`), so files
//! written here are byte-identical where the values are equal.

use crate::SchemaError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

/// Read and parse a JSON file, naming the file in every error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, SchemaError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| SchemaError::Io { path: path.display().to_string(), source })?;
    // Python's json accepts NaN/Infinity; serde_json does not. nnU-Net writes NaN into summary.json.
    let text = if text.contains("NaN") || text.contains("Infinity") { replace_non_finite(&text) } else { text };
    serde_json::from_str(&text).map_err(|source| SchemaError::Json { path: path.display().to_string(), source })
}

/// Serialise `value` as Python's `json.dumps(value, indent=4)` would.
pub fn to_python_string<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    let mut out = String::new();
    write_value(&v, 0, &mut out);
    Ok(out)
}

/// Write `value` as Python-formatted JSON to `path` atomically (temp file in the same folder, then rename).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), SchemaError> {
    let text = to_python_string(value).map_err(|source| SchemaError::Json { path: path.display().to_string(), source })?;
    write_atomic(path, text.as_bytes())
}

/// Write bytes to `path` atomically: a temp file beside it, fsync, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SchemaError> {
    use std::io::Write;
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Create `path` atomically through `write` (which may stream any amount of data into the file): a temp file beside
/// it, fsync, then rename. On error the temp file is removed and `path` is untouched.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<(), SchemaError> {
    write_via_temp(path, true, write)
}

/// As [`write_atomic_with`] without the fsync: for files inside a folder that is itself renamed into place once
/// complete (a preprocessed case), where a crash leaves only the temp folder behind.
pub fn write_via_temp_unsynced(path: &Path, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<(), SchemaError> {
    write_via_temp(path, false, write)
}

fn write_via_temp(path: &Path, sync: bool, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<(), SchemaError> {
    let io = |source| SchemaError::Write { path: path.display().to_string(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = std::fs::File::create(&tmp).and_then(|mut f| {
        write(&mut f)?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    });
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside 1e-4 <= |x| < 1e16.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Shortest round-trip digits and decimal exponent from Rust's `{:e}` formatting.
    let e = format!("{x:e}");
    let (mant, exp) = e.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if (-4..16).contains(&exp) {
        // positional notation
        let n = digits.len() as i32;
        let s = if exp >= 0 {
            if n > exp + 1 {
                format!("{}.{}", &digits[..(exp + 1) as usize], &digits[(exp + 1) as usize..])
            } else {
                format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
            }
        } else {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits.clone() };
        let es = if exp < 0 { format!("-{:02}", -exp) } else { format!("+{:02}", exp) };
        format!("{sign}{m}e{es}")
    }
}

fn write_string(s: &str, out: &mut String) {
    // Python's json.dumps with ensure_ascii=True
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_value(v: &Value, level: usize, out: &mut String) {
    const INDENT: usize = 4;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_f64() {
                out.push_str(&python_float_repr(n.as_f64().unwrap_or(f64::NAN)));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.push_str(&" ".repeat((level + 1) * INDENT));
                write_value(x, level + 1, out);
            }
            out.push('\n');
            out.push_str(&" ".repeat(level * INDENT));
            out.push(']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.push_str(&" ".repeat((level + 1) * INDENT));
                write_string(k, out);
                out.push_str(": ");
                write_value(x, level + 1, out);
            }
            out.push('\n');
            out.push_str(&" ".repeat(level * INDENT));
            out.push('}');
        }
    }
}

/// Replace bare `NaN` / `Infinity` / `-Infinity` tokens (outside strings) with `null` so serde_json parses them.
fn replace_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut esc = false;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == '"' {
            in_str = true;
            out.push(c);
            i += 1;
        } else if text[i..].starts_with("NaN") {
            out.push_str("null");
            i += 3;
        } else if text[i..].starts_with("-Infinity") {
            out.push_str("null");
            i += 9;
        } else if text[i..].starts_with("Infinity") {
            out.push_str("null");
            i += 8;
        } else {
            // copy one UTF-8 char
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.699999988079071, "0.699999988079071"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (123456789012345.6, "123456789012345.6"),
            (2.5, "2.5"),
            (-0.5, "-0.5"),
            (22468.63671875, "22468.63671875"),
            (1.5e-7, "1.5e-07"),
            (3.6e9, "3600000000.0"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x), want, "repr of {x}");
        }
    }

    #[test]
    fn python_layout() {
        let v: Value = serde_json::from_str(r#"{"a": [1, 2.0, {"b": null}], "c": {}, "d": []}"#).unwrap();
        let s = to_python_string(&v).unwrap();
        assert_eq!(s, "{\n    \"a\": [\n        1,\n        2.0,\n        {\n            \"b\": null\n        }\n    ],\n    \"c\": {},\n    \"d\": []\n}");
    }

    #[test]
    fn nan_tokens_are_read_as_null() {
        let s = replace_non_finite(r#"{"x": NaN, "y": "NaN", "z": -Infinity}"#);
        assert_eq!(s, r#"{"x": null, "y": "NaN", "z": null}"#);
    }
}
