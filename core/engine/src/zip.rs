//! Zip archives as nnU-Net's files need them (`.npz`, `torch.save`'s `.pth`, `export_model_to_zip`'s model zips):
//! stored or deflated entries, zip64 for entries and archives beyond 4 GiB, written and read entry by entry so that
//! neither a multi-gigabyte model zip nor its files have to be held in memory.
//!
//! [`ZipWriter`] streams each entry into any `Write + Seek` (a file, or a `Cursor<Vec<u8>>`): the local header is
//! written first and its CRC and sizes are filled in once the entry's data is out. With a `stored_alignment`, entries
//! are stored uncompressed with their data starting at a multiple of that many bytes (padding in the local header's
//! extra field, as `torch.save` writes its archives). [`ZipReader`] lists an archive's entries from its central
//! directory and copies one entry at a time, checking its CRC and size.

use std::io::{self, Read, Seek, SeekFrom, Write};

const DOS_DATE: u16 = (1 << 5) | 1; // 1980-01-01
const CHUNK: usize = 1 << 20;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Writes a zip archive entry by entry into `out`.
pub struct ZipWriter<W: Write + Seek> {
    out: W,
    central: Vec<u8>,
    count: u64,
    stored_alignment: Option<usize>,
    /// sizes and offsets from which zip64 records are written: 4 GiB − 1 (lowered in tests)
    zip64_from: u64,
}

impl<W: Write + Seek> ZipWriter<W> {
    /// An archive written from `out`'s current position. `stored_alignment`: see the module documentation; `None`
    /// deflates every entry.
    pub fn new(out: W, stored_alignment: Option<usize>) -> ZipWriter<W> {
        ZipWriter { out, central: Vec::new(), count: 0, stored_alignment, zip64_from: u32::MAX as u64 }
    }

    /// Adds an entry holding `data`.
    pub fn add(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.add_reader(name, data, data.len() as u64)
    }

    /// Adds an entry holding the `size` bytes `data` yields, read in 1 MiB chunks (a file is copied without being
    /// held in memory). Fewer or more bytes than `size` is an error.
    pub fn add_reader(&mut self, name: &str, mut data: impl Read, size: u64) -> io::Result<()> {
        let stored = self.stored_alignment.is_some();
        // zip64 sizes when the entry may reach 4 GiB (Python's zipfile: deflated data may grow by up to 5 %)
        let big = if stored { size >= self.zip64_from } else { size as f64 * 1.05 >= self.zip64_from as f64 };
        let offset = self.out.stream_position()?;
        let big_off = offset >= self.zip64_from;
        let mut local = Vec::with_capacity(30 + name.len() + 20);
        u32le(&mut local, 0x0403_4b50);
        u16le(&mut local, if big { 45 } else { 20 });
        u16le(&mut local, 0);
        u16le(&mut local, if stored { 0 } else { 8 });
        u16le(&mut local, 0);
        u16le(&mut local, DOS_DATE);
        u32le(&mut local, 0); // CRC, filled in below
        u32le(&mut local, if big { u32::MAX } else { 0 });
        u32le(&mut local, if big { u32::MAX } else { 0 });
        // extra field: zip64 sizes, then padding up to the alignment (an "FB" field, as PyTorch pads)
        let zip64_len = if big { 20 } else { 0 };
        let pad = match self.stored_alignment {
            Some(a) if a > 1 => {
                let unpadded = offset as usize + local.len() + 4 + name.len() + zip64_len;
                let mut p = (a - unpadded % a) % a;
                if p > 0 && p < 4 {
                    p += a; // an extra field needs at least its 4-byte header
                }
                p
            }
            _ => 0,
        };
        u16le(&mut local, name.len() as u16);
        u16le(&mut local, (zip64_len + pad) as u16);
        local.extend_from_slice(name.as_bytes());
        if big {
            u16le(&mut local, 1);
            u16le(&mut local, 16);
            u64le(&mut local, 0); // sizes, filled in below
            u64le(&mut local, 0);
        }
        if pad > 0 {
            u16le(&mut local, 0x4246);
            u16le(&mut local, (pad - 4) as u16);
            local.extend(std::iter::repeat_n(b'Z', pad - 4));
        }
        self.out.write_all(&local)?;
        let data_start = self.out.stream_position()?;
        let mut crc = flate2::Crc::new();
        let mut buf = vec![0u8; CHUNK.min(size as usize).max(1)];
        let mut copied = 0u64;
        {
            let mut sink: Box<dyn Write + '_> = if stored {
                Box::new(&mut self.out)
            } else {
                Box::new(flate2::write::DeflateEncoder::new(&mut self.out, flate2::Compression::default()))
            };
            loop {
                let n = data.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                crc.update(&buf[..n]);
                sink.write_all(&buf[..n])?;
                copied += n as u64;
            }
            sink.flush()?;
        } // dropping the encoder writes the end of the deflate stream
        if copied != size {
            return Err(invalid(format!("zip entry {name}: {copied} bytes read, {size} announced")));
        }
        let end = self.out.stream_position()?;
        let csize = end - data_start;
        if !big && csize >= self.zip64_from {
            return Err(invalid(format!("zip entry {name}: compressed size {csize} needs zip64, not announced")));
        }
        // the CRC and sizes into the local header
        self.out.seek(SeekFrom::Start(offset + 14))?;
        let mut fix = Vec::with_capacity(12);
        u32le(&mut fix, crc.sum());
        if !big {
            u32le(&mut fix, csize as u32);
            u32le(&mut fix, size as u32);
        }
        self.out.write_all(&fix)?;
        if big {
            self.out.seek(SeekFrom::Start(offset + 30 + name.len() as u64 + 4))?;
            let mut sizes = Vec::with_capacity(16);
            u64le(&mut sizes, size);
            u64le(&mut sizes, csize);
            self.out.write_all(&sizes)?;
        }
        self.out.seek(SeekFrom::Start(end))?;
        // central directory entry
        let mut extra = Vec::new();
        if big {
            u64le(&mut extra, size);
            u64le(&mut extra, csize);
        }
        if big_off {
            u64le(&mut extra, offset);
        }
        let c = &mut self.central;
        u32le(c, 0x0201_4b50);
        u16le(c, 45);
        u16le(c, if big || big_off { 45 } else { 20 });
        u16le(c, 0);
        u16le(c, if stored { 0 } else { 8 });
        u16le(c, 0);
        u16le(c, DOS_DATE);
        u32le(c, crc.sum());
        u32le(c, if big { u32::MAX } else { csize as u32 });
        u32le(c, if big { u32::MAX } else { size as u32 });
        u16le(c, name.len() as u16);
        u16le(c, if extra.is_empty() { 0 } else { extra.len() as u16 + 4 });
        u16le(c, 0);
        u16le(c, 0);
        u16le(c, 0);
        u32le(c, 0o100644 << 16);
        u32le(c, if big_off { u32::MAX } else { offset as u32 });
        c.extend_from_slice(name.as_bytes());
        if !extra.is_empty() {
            u16le(c, 1);
            u16le(c, extra.len() as u16);
            c.extend_from_slice(&extra);
        }
        self.count += 1;
        Ok(())
    }

    /// Writes the central directory and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let cd_offset = self.out.stream_position()?;
        let cd_size = self.central.len() as u64;
        let n = self.count;
        let mut tail = std::mem::take(&mut self.central);
        if cd_offset >= self.zip64_from || n >= 0xffff {
            let eocd64 = cd_offset + cd_size;
            u32le(&mut tail, 0x0606_4b50);
            u64le(&mut tail, 44);
            u16le(&mut tail, 45);
            u16le(&mut tail, 45);
            u32le(&mut tail, 0);
            u32le(&mut tail, 0);
            u64le(&mut tail, n);
            u64le(&mut tail, n);
            u64le(&mut tail, cd_size);
            u64le(&mut tail, cd_offset);
            u32le(&mut tail, 0x0706_4b50);
            u32le(&mut tail, 0);
            u64le(&mut tail, eocd64);
            u32le(&mut tail, 1);
        }
        u32le(&mut tail, 0x0605_4b50);
        u16le(&mut tail, 0);
        u16le(&mut tail, 0);
        u16le(&mut tail, n.min(0xffff) as u16);
        u16le(&mut tail, n.min(0xffff) as u16);
        u32le(&mut tail, cd_size.min(u32::MAX as u64) as u32);
        u32le(&mut tail, cd_offset.min(u32::MAX as u64) as u32);
        u16le(&mut tail, 0);
        self.out.write_all(&tail)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One entry of a zip archive's central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    pub name: String,
    /// 0 stored, 8 deflated
    pub method: u16,
    pub crc: u32,
    pub compressed_size: u64,
    pub size: u64,
    /// offset of the entry's local header
    pub local_offset: u64,
}

/// Reads a zip archive's directory and then its entries one by one.
pub struct ZipReader<R: Read + Seek> {
    input: R,
    len: u64,
    entries: Vec<ZipEntry>,
}

impl<R: Read + Seek> ZipReader<R> {
    /// Reads the central directory of the archive `input` (zip64 understood). Errors say what is wrong with it.
    pub fn new(mut input: R) -> io::Result<ZipReader<R>> {
        let len = input.seek(SeekFrom::End(0))?;
        if len < 22 {
            return Err(invalid("too short".into()));
        }
        // the end-of-central-directory record sits in the last 22 + 65,535 bytes (after an optional comment)
        let tail_start = len.saturating_sub(22 + 65535 + 20);
        let tail = read_at(&mut input, tail_start, (len - tail_start) as usize)?;
        let eocd = (0..=tail.len() - 22).rev().find(|&i| le32(&tail, i) == 0x0605_4b50).ok_or_else(|| invalid("no end of central directory".into()))?;
        let mut count = le16(&tail, eocd + 10) as u64;
        let mut cd_size = le32(&tail, eocd + 12);
        let mut cd_off = le32(&tail, eocd + 16);
        if (count == 0xffff || cd_size == 0xffff_ffff || cd_off == 0xffff_ffff) && eocd >= 20 && le32(&tail, eocd - 20) == 0x0706_4b50 {
            let rec = le64(&tail, eocd - 20 + 8);
            let z = read_at(&mut input, rec, 56).map_err(|_| invalid("bad zip64 end of central directory".into()))?;
            if le32(&z, 0) != 0x0606_4b50 {
                return Err(invalid("bad zip64 end of central directory".into()));
            }
            count = le64(&z, 32);
            cd_size = le64(&z, 40);
            cd_off = le64(&z, 48);
        }
        if cd_off.checked_add(cd_size).is_none_or(|end| end > len) {
            return Err(invalid("central directory outside the file".into()));
        }
        let cd = read_at(&mut input, cd_off, cd_size as usize)?;
        let mut entries = Vec::with_capacity(count.min(1 << 20) as usize);
        let mut p = 0usize;
        for _ in 0..count {
            if p + 46 > cd.len() || le32(&cd, p) != 0x0201_4b50 {
                return Err(invalid("bad central directory entry".into()));
            }
            let method = le16(&cd, p + 10) as u16;
            let crc = le32(&cd, p + 16) as u32;
            let mut csize = le32(&cd, p + 20);
            let mut size = le32(&cd, p + 24);
            let (name_len, extra_len, comment_len) = (le16(&cd, p + 28), le16(&cd, p + 30), le16(&cd, p + 32));
            let mut local = le32(&cd, p + 42);
            if p + 46 + name_len + extra_len > cd.len() {
                return Err(invalid("truncated central directory".into()));
            }
            let name = String::from_utf8_lossy(&cd[p + 46..p + 46 + name_len]).into_owned();
            // zip64 extended information: the fields that are 0xffffffff, in this order
            let extra = &cd[p + 46 + name_len..p + 46 + name_len + extra_len];
            let mut e = 0;
            while e + 4 <= extra.len() {
                let (id, elen) = (le16(extra, e), le16(extra, e + 2));
                if id == 1 {
                    let mut q = e + 4;
                    for field in [&mut size, &mut csize, &mut local] {
                        if *field == 0xffff_ffff && q + 8 <= (e + 4 + elen).min(extra.len()) {
                            *field = le64(extra, q);
                            q += 8;
                        }
                    }
                }
                e += 4 + elen;
            }
            entries.push(ZipEntry { name, method, crc, compressed_size: csize, size, local_offset: local });
            p += 46 + name_len + extra_len + comment_len;
        }
        Ok(ZipReader { input, len, entries })
    }

    /// The entries, in the order of the central directory.
    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// Copies the uncompressed bytes of `entry` into `out` chunk by chunk; a CRC or size that does not match the
    /// directory is an error (after the bytes were written: write into a temporary file).
    pub fn copy_to(&mut self, entry: &ZipEntry, out: &mut dyn Write) -> io::Result<()> {
        let name = &entry.name;
        let head = read_at(&mut self.input, entry.local_offset, 30).map_err(|_| invalid(format!("bad local header of {name}")))?;
        if le32(&head, 0) != 0x0403_4b50 {
            return Err(invalid(format!("bad local header of {name}")));
        }
        let start = entry.local_offset + 30 + le16(&head, 26) as u64 + le16(&head, 28) as u64;
        if start.checked_add(entry.compressed_size).is_none_or(|end| end > self.len) {
            return Err(invalid(format!("{name} is truncated")));
        }
        self.input.seek(SeekFrom::Start(start))?;
        let raw = (&mut self.input).take(entry.compressed_size);
        let mut source: Box<dyn Read + '_> = match entry.method {
            0 => Box::new(raw),
            8 => Box::new(flate2::read::DeflateDecoder::new(raw)),
            m => return Err(invalid(format!("{name}: compression method {m} is not supported (only stored/deflate)"))),
        };
        let mut crc = flate2::Crc::new();
        let mut buf = vec![0u8; CHUNK.min(entry.size as usize).max(1)];
        let mut n_out = 0u64;
        loop {
            let n = source.read(&mut buf).map_err(|e| invalid(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            n_out += n as u64;
        }
        if crc.sum() != entry.crc || n_out != entry.size {
            return Err(invalid(format!("{name}: CRC or size mismatch")));
        }
        Ok(())
    }

    /// The uncompressed bytes of `entry`.
    pub fn read(&mut self, entry: &ZipEntry) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(entry.size.min(1 << 32) as usize);
        self.copy_to(entry, &mut v)?;
        Ok(v)
    }
}

fn read_at(r: &mut (impl Read + Seek), at: u64, n: usize) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(at))?;
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn u16le(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes())
}
fn u32le(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes())
}
fn u64le(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes())
}
fn le16(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}
fn le32(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn entries() -> Vec<(String, Vec<u8>)> {
        vec![
            ("a.npy".into(), b"first entry".to_vec()),
            ("dir/empty".into(), Vec::new()),
            ("dir/big.bin".into(), (0..3 * CHUNK + 17).map(|i| (i * 31 % 251) as u8).collect()),
        ]
    }

    /// Written entries read back byte for byte, deflated and stored-aligned; stored data starts on the alignment.
    #[test]
    fn entries_round_trip() {
        for alignment in [None, Some(64)] {
            let mut w = ZipWriter::new(Cursor::new(Vec::new()), alignment);
            for (n, d) in entries() {
                w.add(&n, &d).unwrap();
            }
            let bytes = w.finish().unwrap().into_inner();
            let mut r = ZipReader::new(Cursor::new(bytes.clone())).unwrap();
            let listed = r.entries().to_vec();
            assert_eq!(listed.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a.npy", "dir/empty", "dir/big.bin"]);
            for (e, (_, d)) in listed.iter().zip(entries()) {
                assert_eq!(r.read(e).unwrap(), d, "{}", e.name);
                assert_eq!(e.method, if alignment.is_some() { 0 } else { 8 });
                if alignment.is_some() {
                    let h = e.local_offset as usize;
                    let start = h + 30 + le16(&bytes, h + 26) + le16(&bytes, h + 28);
                    assert_eq!(start % 64, 0, "{}", e.name);
                }
            }
            if alignment.is_none() {
                assert!(bytes.len() < 3 * CHUNK, "deflated: {} bytes", bytes.len());
            }
        }
    }

    /// zip64 records (sizes, offsets, end of directory) written as for archives beyond 4 GiB read back; Python's
    /// `zipfile` reads the same archive (checked by hand: `ZipFile(...).read(name)` for every entry).
    #[test]
    fn zip64_records_round_trip() {
        for alignment in [None, Some(64)] {
            let mut w = ZipWriter::new(Cursor::new(Vec::new()), alignment);
            w.zip64_from = 8;
            for (n, d) in entries() {
                w.add(&n, &d).unwrap();
            }
            let bytes = w.finish().unwrap().into_inner();
            assert!(bytes.windows(4).any(|s| s == [0x50, 0x4b, 0x06, 0x06]), "zip64 end of central directory");
            let mut r = ZipReader::new(Cursor::new(bytes)).unwrap();
            let listed = r.entries().to_vec();
            assert!(listed.iter().skip(1).all(|e| e.local_offset > 8));
            for (e, (n, d)) in listed.iter().zip(entries()) {
                assert_eq!((&e.name, e.size), (&n, d.len() as u64));
                assert_eq!(r.read(e).unwrap(), d, "{n}");
            }
        }
    }

    /// A damaged entry is reported with its name; a reader that yields fewer bytes than announced is refused.
    #[test]
    fn damage_is_reported() {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()), Some(1));
        w.add("x.bin", b"0123456789").unwrap();
        let mut bytes = w.finish().unwrap().into_inner();
        let pos = bytes.windows(10).position(|s| s == b"0123456789").unwrap();
        bytes[pos + 3] = b'!';
        let mut r = ZipReader::new(Cursor::new(bytes)).unwrap();
        let e = r.entries()[0].clone();
        assert!(r.read(&e).unwrap_err().to_string().contains("x.bin: CRC or size mismatch"));
        let mut w = ZipWriter::new(Cursor::new(Vec::new()), None);
        assert!(w.add_reader("y", &b"abc"[..], 4).unwrap_err().to_string().contains("3 bytes read, 4 announced"));
        assert!(ZipReader::new(Cursor::new(vec![0u8; 40])).is_err());
    }
}
