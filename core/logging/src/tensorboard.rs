//! TensorBoard event files for scalar summaries (ADR 0003), written by hand: no protobuf dependency.
//!
//! A file is a sequence of TFRecords — `u64` length (LE), masked CRC32C of those 8 bytes, the data, masked
//! CRC32C of the data — each holding one serialized `tensorflow.Event`:
//!
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary { repeated Value value = 1; }
//! Value   { string tag = 1; float simple_value = 2; }
//! ```
//!
//! The first record is `Event { wall_time, file_version: "brain.Event:2" }`, as TensorFlow and PyTorch write it.
//! The file is an append-only stream (not written atomically); records are flushed on [`EventWriter::flush`]
//! and on drop. [`read_events`] decodes files back (checking every CRC) for tests and tools.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `file_version` of the first event, as TensorFlow writes it.
pub const FILE_VERSION: &str = "brain.Event:2";

/// TensorBoard's file name: `events.out.tfevents.<secs>.<hostname>`.
pub fn event_file_name(unix_secs: u64, hostname: &str) -> String {
    format!("events.out.tfevents.{unix_secs}.{hostname}")
}

/// Seconds since the Unix epoch as a double (TensorBoard's `wall_time`).
pub fn now_wall_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// TFRecord's masked CRC32C: `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes scalar events to one TensorBoard event file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Create `dir/file_name` (the folder is created if needed; an existing file is truncated) and write the
    /// `file_version` event stamped `wall_time`. Use [`event_file_name`] for TensorBoard's naming.
    pub fn create(dir: &Path, file_name: &str, wall_time: f64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file_name);
        let out = BufWriter::new(File::create(&path)?);
        let mut w = Self { path, out };
        let mut ev = Vec::with_capacity(32);
        encode_double(&mut ev, 1, wall_time);
        encode_bytes(&mut ev, 3, FILE_VERSION.as_bytes());
        w.write_record(&ev)?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar (`tag`, `value`) at `step`, stamped with the current time.
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> std::io::Result<()> {
        self.add_scalar_at(tag, value, step, now_wall_time())
    }

    /// One scalar with an explicit `wall_time` (seconds since the Unix epoch).
    pub fn add_scalar_at(&mut self, tag: &str, value: f32, step: i64, wall_time: f64) -> std::io::Result<()> {
        self.add_scalars_at(&[(tag, value)], step, wall_time)
    }

    /// Several scalars in one event (one `Summary` with several values).
    pub fn add_scalars_at(&mut self, values: &[(&str, f32)], step: i64, wall_time: f64) -> std::io::Result<()> {
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut v = Vec::with_capacity(tag.len() + 8);
            encode_bytes(&mut v, 1, tag.as_bytes());
            encode_float(&mut v, 2, *value);
            encode_bytes(&mut summary, 1, &v);
        }
        let mut ev = Vec::with_capacity(summary.len() + 24);
        encode_double(&mut ev, 1, wall_time);
        encode_varint_field(&mut ev, 2, step as u64);
        encode_bytes(&mut ev, 5, &summary);
        self.write_record(&ev)
    }

    /// Push buffered records to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn write_record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc32c(data).to_le_bytes())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

// ---- protobuf encoding (the few wire types needed) ----

fn encode_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    encode_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn encode_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    encode_key(out, field, 0);
    encode_varint(out, v);
}

fn encode_double(out: &mut Vec<u8>, field: u32, v: f64) {
    encode_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn encode_float(out: &mut Vec<u8>, field: u32, v: f32) {
    encode_key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn encode_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    encode_key(out, field, 2);
    encode_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

// ---- decoding (tests and tools) ----

/// A decoded `Event` (only the fields this writer produces).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    /// `(tag, simple_value)` of the summary's values.
    pub scalars: Vec<(String, f32)>,
}

/// Why an event file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

/// Split TFRecord framing, checking both masked CRCs of every record.
pub fn read_records(bytes: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes.len() - pos < 12 {
            return err(format!("truncated record header at byte {pos}"));
        }
        let len_bytes = &bytes[pos..pos + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap());
        let len_crc = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
        if len_crc != masked_crc32c(len_bytes) {
            return err(format!("bad length CRC at byte {pos}"));
        }
        let start = pos + 12;
        let end = usize::try_from(len).ok().and_then(|l| start.checked_add(l)).filter(|&e| e + 4 <= bytes.len());
        let Some(end) = end else { return err(format!("truncated record at byte {pos}")) };
        let data = &bytes[start..end];
        let data_crc = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap());
        if data_crc != masked_crc32c(data) {
            return err(format!("bad data CRC at byte {pos}"));
        }
        records.push(data);
        pos = end + 4;
    }
    Ok(records)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else { return err("truncated varint") };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        err("varint too long")
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return err("truncated field");
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Next `(field, wire_type)`.
    fn key(&mut self) -> Result<(u64, u8), DecodeError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }
    fn skip(&mut self, wire_type: u8) -> Result<(), DecodeError> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => {
                let n = self.varint()? as usize;
                self.take(n).map(drop)
            }
            5 => self.take(4).map(drop),
            w => err(format!("unsupported wire type {w}")),
        }
    }
    fn len_delimited(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()? as usize;
        self.take(n)
    }
}

/// Decode one serialized `Event` (unknown fields are skipped).
pub fn decode_event(data: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader { buf: data, pos: 0 };
    let mut ev = Event::default();
    while !r.done() {
        match r.key()? {
            (1, 1) => ev.wall_time = f64::from_le_bytes(r.take(8)?.try_into().unwrap()),
            (2, 0) => ev.step = r.varint()? as i64,
            (3, 2) => {
                ev.file_version =
                    Some(String::from_utf8(r.len_delimited()?.to_vec()).map_err(|_| DecodeError("file_version not UTF-8".into()))?)
            }
            (5, 2) => {
                let mut s = Reader { buf: r.len_delimited()?, pos: 0 };
                while !s.done() {
                    match s.key()? {
                        (1, 2) => {
                            let mut v = Reader { buf: s.len_delimited()?, pos: 0 };
                            let (mut tag, mut value) = (String::new(), 0f32);
                            while !v.done() {
                                match v.key()? {
                                    (1, 2) => {
                                        tag = String::from_utf8(v.len_delimited()?.to_vec())
                                            .map_err(|_| DecodeError("tag not UTF-8".into()))?
                                    }
                                    (2, 5) => value = f32::from_le_bytes(v.take(4)?.try_into().unwrap()),
                                    (_, w) => v.skip(w)?,
                                }
                            }
                            ev.scalars.push((tag, value));
                        }
                        (_, w) => s.skip(w)?,
                    }
                }
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(ev)
}

/// Read a whole event file: every record's CRCs checked, every event decoded.
pub fn read_events(path: &Path) -> Result<Vec<Event>, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError(format!("{}: {e}", path.display())))?;
    read_records(&bytes)?.into_iter().map(decode_event).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_values() {
        // RFC 3720 B.4: 32 bytes of zeros → 0x8a9136aa; "123456789" → 0xe3069283
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8, computed in Python
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    // Bytes of the first record TensorFlow/PyTorch write for wall_time 1.5: Event{wall_time: 1.5, file_version}.
    #[test]
    fn file_version_event_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let w = EventWriter::create(dir.path(), &event_file_name(1, "host"), 1.5).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        let mut expected_data = vec![0x09];
        expected_data.extend_from_slice(&1.5f64.to_le_bytes());
        expected_data.extend_from_slice(&[0x1a, 13]);
        expected_data.extend_from_slice(b"brain.Event:2");
        assert_eq!(&bytes[..8], &(expected_data.len() as u64).to_le_bytes());
        assert_eq!(&bytes[12..12 + expected_data.len()], &expected_data[..]);
        assert_eq!(bytes.len(), 12 + expected_data.len() + 4);
    }

    #[test]
    fn scalars_round_trip_and_crc_checked() {
        let dir = tempfile::tempdir().unwrap();
        let name = event_file_name(1_714_557_600, "node-1");
        assert_eq!(name, "events.out.tfevents.1714557600.node-1");
        let mut w = EventWriter::create(dir.path(), &name, 1_714_557_600.25).unwrap();
        for step in 0..300i64 {
            w.add_scalar_at("train_loss", -0.5 * step as f32, step, 1_714_557_601.0 + step as f64).unwrap();
        }
        w.add_scalars_at(&[("val_loss", 0.25), ("lr", 1e-5)], 299, 1_714_560_000.5).unwrap();
        w.add_scalar("ünïcode/tag", f32::NAN, -3).unwrap();
        let path = w.path().to_path_buf();
        drop(w);

        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 303);
        assert_eq!(events[0], Event { wall_time: 1_714_557_600.25, step: 0, file_version: Some(FILE_VERSION.into()), scalars: vec![] });
        for (step, ev) in events[1..301].iter().enumerate() {
            assert_eq!(ev.step, step as i64);
            assert_eq!(ev.wall_time, 1_714_557_601.0 + step as f64);
            assert_eq!(ev.scalars, [("train_loss".to_string(), -0.5 * step as f32)]);
        }
        assert_eq!(events[301].scalars, [("val_loss".to_string(), 0.25), ("lr".to_string(), 1e-5)]);
        assert_eq!(events[302].step, -3);
        assert_eq!(events[302].scalars[0].0, "ünïcode/tag");
        assert!(events[302].scalars[0].1.is_nan());

        // any flipped bit is caught by a CRC
        let mut bytes = std::fs::read(&path).unwrap();
        for pos in [3usize, 9, 20, bytes.len() - 2] {
            bytes[pos] ^= 0x10;
            assert!(read_records(&bytes).is_err(), "flip at {pos} not detected");
            bytes[pos] ^= 0x10;
        }
        assert!(read_records(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(read_records(&bytes).unwrap().len(), 303);
    }
}
