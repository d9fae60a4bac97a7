//! Minimal `.npy` (NumPy format version 1.0) reading and writing for C-ordered little-endian
//! `float32` / `int16` / `int8` / `int64` arrays, byte-compatible with `numpy.save`.
//!
//! The header is padded so that the data starts at a multiple of 64 bytes (numpy's rule), which makes
//! the files memory-mappable; [`read_header`] returns the data offset for that.

use crate::error::{DataError, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// The numpy dtypes read and written here (`.npy` files, Blosc2 `.b2nd` metalayers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// `|b1` (numpy bool: one byte, 0 or 1)
    Bool,
    /// `|i1`
    I8,
    /// `|u1`
    U8,
    /// `<i2` (segmentations)
    I16,
    /// `<u2`
    U16,
    /// `<i4`
    I32,
    /// `<u4`
    U32,
    /// `<i8`
    I64,
    /// `<u8`
    U64,
    /// `<f4` (image data)
    F32,
    /// `<f8`
    F64,
}

impl NpyDtype {
    /// numpy's dtype string, e.g. `<f4`.
    pub fn descr(self) -> &'static str {
        match self {
            NpyDtype::Bool => "|b1",
            NpyDtype::I8 => "|i1",
            NpyDtype::U8 => "|u1",
            NpyDtype::I16 => "<i2",
            NpyDtype::U16 => "<u2",
            NpyDtype::I32 => "<i4",
            NpyDtype::U32 => "<u4",
            NpyDtype::I64 => "<i8",
            NpyDtype::U64 => "<u8",
            NpyDtype::F32 => "<f4",
            NpyDtype::F64 => "<f8",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::Bool | NpyDtype::I8 | NpyDtype::U8 => 1,
            NpyDtype::I16 | NpyDtype::U16 => 2,
            NpyDtype::I32 | NpyDtype::U32 | NpyDtype::F32 => 4,
            NpyDtype::I64 | NpyDtype::U64 | NpyDtype::F64 => 8,
        }
    }

    /// Parse a little-endian (or byte-order-free) numpy dtype string such as `<f4`, `|i1`; big-endian and other
    /// dtypes are `None`.
    pub fn from_descr(descr: &str) -> Option<NpyDtype> {
        let (order, code) = descr.split_at_checked(1)?;
        if !matches!(order, "<" | "|" | "=") {
            return None;
        }
        Some(match code {
            "b1" => NpyDtype::Bool,
            "i1" => NpyDtype::I8,
            "u1" => NpyDtype::U8,
            "i2" => NpyDtype::I16,
            "u2" => NpyDtype::U16,
            "i4" => NpyDtype::I32,
            "u4" => NpyDtype::U32,
            "i8" => NpyDtype::I64,
            "u8" => NpyDtype::U64,
            "f4" => NpyDtype::F32,
            "f8" => NpyDtype::F64,
            _ => return None,
        })
    }
}

/// Parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: NpyDtype,
    pub shape: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: usize,
}

impl NpyHeader {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The header bytes `numpy.save` writes (version 1.0, padded with spaces and a newline to 64 bytes).
pub fn header_bytes(dtype: NpyDtype, shape: &[usize]) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", dtype.descr(), shape_s);
    // numpy leaves room for the first axis to grow to 21 digits (GROWTH_AXIS_MAX_DIGITS)
    if let Some(first) = shape.first() {
        dict.push_str(&" ".repeat(21usize.saturating_sub(first.to_string().len())));
    }
    let total = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let pad = (64 - total % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Serialise an array to `.npy` bytes.
pub fn to_bytes_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    assert_eq!(data.len(), shape.iter().product::<usize>());
    let mut out = header_bytes(NpyDtype::F32, shape);
    out.reserve(data.len() * 4);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Serialise an array to `.npy` bytes.
pub fn to_bytes_i16(data: &[i16], shape: &[usize]) -> Vec<u8> {
    assert_eq!(data.len(), shape.iter().product::<usize>());
    let mut out = header_bytes(NpyDtype::I16, shape);
    out.reserve(data.len() * 2);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The header of a `.npy` buffer whatever its dtype: what readers of other dtypes (probabilities, label maps) parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    /// numpy's dtype string, e.g. `<f4`, `|u1`.
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Where the array data start.
    pub data_offset: usize,
}

/// Parse the magic, version and header dict of `.npy` bytes (format versions 1–3). The error says what is wrong.
pub fn parse_raw_header(bytes: &[u8]) -> std::result::Result<RawHeader, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("bad magic".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        2 | 3 => return Err("truncated header".into()),
        v => return Err(format!("format version {v}")),
    };
    let header = bytes.get(start..start + hlen).ok_or("truncated header")?;
    let h = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let field = |name: &str| -> Option<&str> {
        let i = h.find(&format!("'{name}'"))?;
        h[i + name.len() + 2..].trim_start().strip_prefix(':').map(str::trim_start)
    };
    let descr = field("descr").and_then(|r| r.strip_prefix('\'')).and_then(|r| r.split('\'').next()).ok_or("no descr")?;
    let fortran_order = field("fortran_order").is_some_and(|r| r.starts_with("True"));
    let sh = field("shape").and_then(|r| r.strip_prefix('(')).and_then(|r| r.split(')').next()).ok_or("no shape")?;
    let shape = sh
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| format!("shape ({sh})"))?;
    Ok(RawHeader { descr: descr.to_string(), fortran_order, shape, data_offset: start + hlen })
}

fn parse_header(bytes: &[u8], path: &Path) -> Result<NpyHeader> {
    let bad = |m: &str| DataError::format(path, format!("not a supported .npy file: {m}"));
    let h = parse_raw_header(bytes).map_err(|e| bad(&e))?;
    let dtype = NpyDtype::from_descr(&h.descr).ok_or_else(|| bad(&format!("dtype {}", h.descr)))?;
    if h.fortran_order {
        return Err(bad("Fortran order"));
    }
    Ok(NpyHeader { dtype, shape: h.shape, data_offset: h.data_offset })
}

/// Read only the header of a `.npy` file (for memory mapping or region reads).
pub fn read_header(path: &Path) -> Result<NpyHeader> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = vec![0u8; 12];
    f.read_exact(&mut head).map_err(|e| DataError::io(path, e))?;
    let hlen = if head[6] == 1 {
        u16::from_le_bytes([head[8], head[9]]) as usize + 10
    } else {
        u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize + 12
    };
    let mut all = vec![0u8; hlen];
    f.seek(SeekFrom::Start(0)).map_err(|e| DataError::io(path, e))?;
    f.read_exact(&mut all).map_err(|e| DataError::io(path, e))?;
    parse_header(&all, path)
}

/// A whole array read from a `.npy` file, converted to the element type asked for.
pub fn read<T: FromNpy>(path: &Path) -> Result<(Vec<T>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let h = parse_header(&bytes, path)?;
    let n = h.len();
    let body = &bytes[h.data_offset..];
    if body.len() < n * h.dtype.size() {
        return Err(DataError::format(path, "truncated .npy data"));
    }
    let mut out = vec![T::from_f64(0.0); n];
    convert_into(h.dtype, &body[..n * h.dtype.size()], &mut out);
    Ok((out, h.shape))
}

/// A `.npy` file read box by box: its header is parsed once, each [`NpyFile::read_box`] opens the file, reads the
/// rows it needs with positioned reads and closes it again. Training reads its patches this way instead of holding
/// every case in memory (nnU-Net reads its blosc2 files lazily the same way); the operating system's page cache keeps
/// what is read often in memory, and no file descriptor stays open per case.
#[derive(Debug, Clone)]
pub struct NpyFile {
    path: std::path::PathBuf,
    header: NpyHeader,
}

impl NpyFile {
    /// Parse the header of `path` (C order, a supported dtype).
    pub fn open(path: &Path) -> Result<NpyFile> {
        Ok(NpyFile { path: path.to_path_buf(), header: read_header(path)? })
    }

    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The box `[start, start + size)` of the last three axes for every index of the leading axes (channels), in C
    /// order and converted to `T`; what lies outside the array is `pad` (acvl_utils `crop_and_pad_nd`). Errors: the
    /// array has fewer than three axes, or the file cannot be read (truncated, gone).
    pub fn read_box<T: FromNpy>(&self, start: [i64; 3], size: [usize; 3], pad: T) -> Result<Vec<T>> {
        use std::os::unix::fs::FileExt;
        let shape = &self.header.shape;
        if shape.len() < 3 {
            return Err(DataError::format(&self.path, format!("array of shape {shape:?} has no (z, y, x) axes")));
        }
        let spatial = [shape[shape.len() - 3], shape[shape.len() - 2], shape[shape.len() - 1]];
        let leading: usize = shape[..shape.len() - 3].iter().product();
        let mut out = vec![pad; leading * size.iter().product::<usize>()];
        // overlap per axis, in output coordinates
        let (mut lo, mut hi) = ([0usize; 3], [0usize; 3]);
        for d in 0..3 {
            let a = (-start[d]).max(0);
            let b = (spatial[d] as i64 - start[d]).min(size[d] as i64);
            if b <= a {
                return Ok(out);
            }
            (lo[d], hi[d]) = (a as usize, b as usize);
        }
        let esize = self.header.dtype.size();
        let [sz, sy, sx] = spatial;
        let [oz, oy, ox] = size;
        let (iy0, ny, ix0, nx) = ((lo[1] as i64 + start[1]) as usize, hi[1] - lo[1], (lo[2] as i64 + start[2]) as usize, hi[2] - lo[2]);
        let file = std::fs::File::open(&self.path).map_err(|e| DataError::io(&self.path, e))?;
        // one read per (channel, z): the rows iy0..iy0+ny at full width (contiguous in the file), then the x range
        let mut slab = vec![0u8; ny * sx * esize];
        for c in 0..leading {
            for z in lo[0]..hi[0] {
                let iz = (z as i64 + start[0]) as usize;
                let first = ((c * sz + iz) * sy + iy0) * sx;
                file.read_exact_at(&mut slab, (self.header.data_offset + first * esize) as u64)
                    .map_err(|e| DataError::io(&self.path, e))?;
                for y in 0..ny {
                    let o = ((c * oz + z) * oy + lo[1] + y) * ox + lo[2];
                    let row = &slab[(y * sx + ix0) * esize..(y * sx + ix0 + nx) * esize];
                    convert_into(self.header.dtype, row, &mut out[o..o + nx]);
                }
            }
        }
        Ok(out)
    }
}

/// Little-endian elements of `dtype` in `bytes` converted into `out` (same count), like numpy's `astype`.
pub(crate) fn convert_into<T: FromNpy>(dtype: NpyDtype, bytes: &[u8], out: &mut [T]) {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            out.iter_mut().zip(bytes.chunks_exact($n)).for_each(|(o, b)| {
                let mut a = [0u8; $n];
                a.copy_from_slice(b);
                *o = T::from_f64(<$t>::from_le_bytes(a) as f64)
            })
        };
    }
    match dtype {
        NpyDtype::Bool => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = T::from_f64(if b != 0 { 1.0 } else { 0.0 })),
        NpyDtype::I8 => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = T::from_f64(b as i8 as f64)),
        NpyDtype::U8 => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = T::from_f64(b as f64)),
        NpyDtype::I16 => conv!(i16, 2),
        NpyDtype::U16 => conv!(u16, 2),
        NpyDtype::I32 => conv!(i32, 4),
        NpyDtype::U32 => conv!(u32, 4),
        NpyDtype::I64 => conv!(i64, 8),
        NpyDtype::U64 => conv!(u64, 8),
        NpyDtype::F32 => conv!(f32, 4),
        NpyDtype::F64 => conv!(f64, 8),
    }
}

/// Element types [`read`] converts to.
pub trait FromNpy: Copy {
    fn from_f64(v: f64) -> Self;
}
impl FromNpy for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl FromNpy for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl FromNpy for i16 {
    fn from_f64(v: f64) -> Self {
        v as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_like_numpy() {
        // np.save of a float32 (1, 35, 51, 35) array
        let h = header_bytes(NpyDtype::F32, &[1, 35, 51, 35]);
        assert_eq!(h.len(), 128);
        let s = String::from_utf8_lossy(&h[10..]);
        assert!(s.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 35, 51, 35), }"));
        assert!(s.ends_with(" \n"));
        assert_eq!(header_bytes(NpyDtype::I16, &[7]).len() % 64, 0);
    }

    #[test]
    fn read_box_equals_a_crop_of_the_whole_array_with_padding() {
        let dir = std::env::temp_dir().join(format!("npy_box_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b.npy");
        let shape = [2usize, 5, 6, 7];
        let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32 * 0.5 - 3.0).collect();
        std::fs::write(&p, to_bytes_f32(&data, &shape)).unwrap();
        let f = NpyFile::open(&p).unwrap();
        let at = |c: usize, z: i64, y: i64, x: i64| -> f32 {
            let inside = (0..5).contains(&z) && (0..6).contains(&y) && (0..7).contains(&x);
            if inside { data[((c * 5 + z as usize) * 6 + y as usize) * 7 + x as usize] } else { -9.0 }
        };
        // inside, overlapping every border, the whole array, wider than it on every axis, and fully outside
        for (start, size) in [([1, 2, 3], [2, 3, 2]), ([-2, 4, -1], [4, 5, 3]), ([0, 0, 0], [5, 6, 7]), ([-1, -3, -2], [8, 9, 12]), ([6, 0, 0], [2, 2, 2])] {
            let got = f.read_box(start, size, -9.0f32).unwrap();
            assert_eq!(got.len(), 2 * size.iter().product::<usize>());
            let mut i = 0;
            for c in 0..2 {
                for z in 0..size[0] as i64 {
                    for y in 0..size[1] as i64 {
                        for x in 0..size[2] as i64 {
                            assert_eq!(got[i], at(c, start[0] + z, start[1] + y, start[2] + x), "{start:?} {size:?} at {c} {z} {y} {x}");
                            i += 1;
                        }
                    }
                }
            }
        }
        // int16 converted to i16, a truncated file is an error naming it
        let q = dir.join("s.npy");
        std::fs::write(&q, to_bytes_i16(&[1, -1, 300, 4, 5, 6], &[1, 1, 2, 3])).unwrap();
        assert_eq!(NpyFile::open(&q).unwrap().read_box([0, 1, 1], [1, 1, 2], 0i16).unwrap(), vec![5, 6]);
        let bytes = std::fs::read(&q).unwrap();
        std::fs::write(&q, &bytes[..bytes.len() - 4]).unwrap();
        let err = NpyFile::open(&q).unwrap().read_box([0, 0, 0], [1, 2, 3], 0i16).unwrap_err().to_string();
        assert!(err.contains("s.npy"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("npy_rt_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        std::fs::write(&p, to_bytes_i16(&[1, -1, 300, 4, 5, 6], &[1, 2, 3])).unwrap();
        let (v, s) = read::<i16>(&p).unwrap();
        assert_eq!((v, s), (vec![1, -1, 300, 4, 5, 6], vec![1, 2, 3]));
        let h = read_header(&p).unwrap();
        assert_eq!((h.dtype, h.data_offset), (NpyDtype::I16, 128)); // like np.save
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
