//! NIfTI-1 (`.nii`, `.nii.gz`) reading and writing, pure Rust (flate2 for gzip).
//!
//! * Voxels are returned as `f32` in file order, which is the C-contiguous array order numpy /
//!   SimpleITK use: `(t, z, y, x)` with x fastest.
//! * [`NiftiImage::itk_geometry`] reproduces what SimpleITK 2.5 (ITK 5.4) reports for spacing, origin
//!   and direction (LPS): sform when `sform_code == 1` (or when it is the only transform) and it is
//!   a rotation × scaling; otherwise qform; neither → identity at the origin. Spacing = |pixdim|.
//! * Scaling (`scl_slope`/`scl_inter`) is applied like ITK: only if slope is non-zero and the pair is
//!   not (1, 0); the value is computed in double from the f32-converted voxel and rounded to f32.

use crate::error::{DataError, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::Path;

/// Voxel types supported on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiDatatype {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl NiftiDatatype {
    pub fn code(self) -> i16 {
        match self {
            NiftiDatatype::U8 => 2,
            NiftiDatatype::I16 => 4,
            NiftiDatatype::I32 => 8,
            NiftiDatatype::F32 => 16,
            NiftiDatatype::F64 => 64,
            NiftiDatatype::I8 => 256,
            NiftiDatatype::U16 => 512,
            NiftiDatatype::U32 => 768,
            NiftiDatatype::I64 => 1024,
            NiftiDatatype::U64 => 1280,
        }
    }
    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            2 => NiftiDatatype::U8,
            4 => NiftiDatatype::I16,
            8 => NiftiDatatype::I32,
            16 => NiftiDatatype::F32,
            64 => NiftiDatatype::F64,
            256 => NiftiDatatype::I8,
            512 => NiftiDatatype::U16,
            768 => NiftiDatatype::U32,
            1024 => NiftiDatatype::I64,
            1280 => NiftiDatatype::U64,
            _ => return None,
        })
    }
    pub fn size(self) -> usize {
        match self {
            NiftiDatatype::U8 | NiftiDatatype::I8 => 1,
            NiftiDatatype::I16 | NiftiDatatype::U16 => 2,
            NiftiDatatype::I32 | NiftiDatatype::U32 | NiftiDatatype::F32 => 4,
            NiftiDatatype::I64 | NiftiDatatype::U64 | NiftiDatatype::F64 => 8,
        }
    }
}

/// The NIfTI-1 header fields this crate uses.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    pub big_endian: bool,
    pub dim: [i16; 8],
    pub datatype: i16,
    pub bitpix: i16,
    pub pixdim: [f32; 8],
    pub vox_offset: f32,
    pub scl_slope: f32,
    pub scl_inter: f32,
    pub xyzt_units: u8,
    pub qform_code: i16,
    pub sform_code: i16,
    pub quatern: [f32; 3],
    pub qoffset: [f32; 3],
    pub srow: [[f32; 4]; 3],
}

/// Geometry as SimpleITK reports it (`GetSpacing`, `GetOrigin`, `GetDirection`): ITK axis order
/// (x, y, z[, t]), LPS, direction row-major `dims × dims`. This is nnU-Net's `sitk_stuff`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SitkGeometry {
    pub spacing: Vec<f64>,
    pub origin: Vec<f64>,
    pub direction: Vec<f64>,
}

impl SitkGeometry {
    /// Identity geometry with the given spacing (ITK order).
    pub fn identity(spacing: &[f64]) -> Self {
        let n = spacing.len();
        let mut direction = vec![0.0; n * n];
        for i in 0..n {
            direction[i * n + i] = 1.0;
        }
        Self {
            spacing: spacing.to_vec(),
            origin: vec![0.0; n],
            direction,
        }
    }
    pub fn dims(&self) -> usize {
        self.spacing.len()
    }
}

/// A decoded NIfTI file.
#[derive(Debug, Clone)]
pub struct NiftiImage {
    pub header: NiftiHeader,
    /// `dim[1..=dim[0]]` (x, y, z, t…).
    pub dims: Vec<usize>,
    /// Voxels converted to f32 (scaled if the header asks for it), file order (x fastest).
    pub data: Vec<f32>,
}

const HDR: usize = 348;

fn parse_header(b: &[u8], path: &Path) -> Result<NiftiHeader> {
    if b.len() < HDR {
        return Err(DataError::format(
            path,
            format!("truncated NIfTI header ({} of 348 bytes)", b.len()),
        ));
    }
    let le = i32::from_le_bytes(b[0..4].try_into().unwrap_or([0; 4]));
    let be = i32::from_be_bytes(b[0..4].try_into().unwrap_or([0; 4]));
    let big_endian = match (le, be) {
        (348, _) => false,
        (_, 348) => true,
        (540, _) | (_, 540) => {
            return Err(DataError::unsupported(
                path,
                "NIfTI-2 files are not supported",
            ));
        }
        _ => {
            return Err(DataError::format(
                path,
                format!("not a NIfTI-1 file (sizeof_hdr = {le})"),
            ));
        }
    };
    let i16_at = |o: usize| {
        let a = [b[o], b[o + 1]];
        if big_endian {
            i16::from_be_bytes(a)
        } else {
            i16::from_le_bytes(a)
        }
    };
    let f32_at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if big_endian {
            f32::from_be_bytes(a)
        } else {
            f32::from_le_bytes(a)
        }
    };
    let magic = &b[344..348];
    if magic == b"ni1\0" {
        return Err(DataError::unsupported(
            path,
            "two-file NIfTI (.hdr/.img) is not supported",
        ));
    }
    if magic != b"n+1\0" {
        return Err(DataError::format(path, "bad NIfTI magic (expected 'n+1')"));
    }
    let mut dim = [0i16; 8];
    for (i, d) in dim.iter_mut().enumerate() {
        *d = i16_at(40 + 2 * i);
    }
    let mut pixdim = [0f32; 8];
    for (i, p) in pixdim.iter_mut().enumerate() {
        *p = f32_at(76 + 4 * i);
    }
    let mut srow = [[0f32; 4]; 3];
    for (r, row) in srow.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = f32_at(280 + 16 * r + 4 * c);
        }
    }
    Ok(NiftiHeader {
        big_endian,
        dim,
        datatype: i16_at(70),
        bitpix: i16_at(72),
        pixdim,
        vox_offset: f32_at(108),
        scl_slope: f32_at(112),
        scl_inter: f32_at(116),
        xyzt_units: b[123],
        qform_code: i16_at(252),
        sform_code: i16_at(254),
        quatern: [f32_at(256), f32_at(260), f32_at(264)],
        qoffset: [f32_at(268), f32_at(272), f32_at(276)],
        srow,
    })
}

/// Read a whole file, gunzipping when the name ends in `.gz`. A `.gz` name that is not gzip data, or
/// a truncated/corrupt gzip stream, is an error naming the file.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let is_gz_name = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
    let is_gz_data = raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
    if is_gz_name && !is_gz_data {
        return Err(DataError::format(
            path,
            "file name ends in .gz but the file is not gzip-compressed",
        ));
    }
    if !is_gz_data {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(path, format!("corrupt or truncated gzip data: {e}")))?;
    Ok(out)
}

/// Read and decode a NIfTI-1 file.
pub fn read_nifti(path: &Path) -> Result<NiftiImage> {
    let bytes = read_maybe_gz(path)?;
    decode_nifti(&bytes, path)
}

/// The header, sizes (`dim[1..]`, dims 5+ must be singletons and are dropped), datatype and the stored voxel bytes
/// (file order, the file's byte order, unscaled) of decompressed NIfTI-1 `bytes`.
pub fn raw_voxels<'a>(bytes: &'a [u8], path: &Path) -> Result<(NiftiHeader, Vec<usize>, NiftiDatatype, &'a [u8])> {
    let h = parse_header(bytes, path)?;
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(DataError::format(path, format!("invalid dim[0] = {ndim}")));
    }
    let mut dims = Vec::new();
    for i in 1..=ndim as usize {
        if h.dim[i] < 1 {
            return Err(DataError::format(
                path,
                format!("invalid dim[{i}] = {}", h.dim[i]),
            ));
        }
        dims.push(h.dim[i] as usize);
    }
    if ndim > 4 {
        // ITK would read vector images here; nnU-Net never uses them.
        if dims[4..].iter().any(|&d| d != 1) {
            return Err(DataError::unsupported(
                path,
                format!("{ndim}-D NIfTI with non-singleton dims 5+"),
            ));
        }
        dims.truncate(4);
    }
    let dt = NiftiDatatype::from_code(h.datatype).ok_or_else(|| {
        DataError::unsupported(
            path,
            format!("NIfTI datatype code {} (RGB/complex/unknown)", h.datatype),
        )
    })?;
    let n: usize = dims.iter().product();
    let offset = if h.vox_offset.is_finite() && h.vox_offset >= 352.0 {
        h.vox_offset as usize
    } else {
        352
    };
    let need = n.checked_mul(dt.size()).and_then(|s| s.checked_add(offset));
    let Some(need) = need.filter(|&x| x <= bytes.len()) else {
        return Err(DataError::format(
            path,
            format!(
                "truncated: header promises {n} voxels of {} bytes from offset {offset}, but the file has only {} bytes",
                dt.size(),
                bytes.len()
            ),
        ));
    };
    Ok((h, dims, dt, &bytes[offset..need]))
}

/// Decode NIfTI-1 bytes (already decompressed). `path` is only used in error messages.
pub fn decode_nifti(bytes: &[u8], path: &Path) -> Result<NiftiImage> {
    let (h, dims, dt, raw) = raw_voxels(bytes, path)?;
    let slope = h.scl_slope as f64;
    let inter = h.scl_inter as f64;
    let must_rescale = slope.abs() > f64::EPSILON
        && ((slope - 1.0).abs() > f64::EPSILON || inter.abs() > f64::EPSILON);
    let data = if must_rescale && dt == NiftiDatatype::F64 {
        // ITK rescales double images in double precision; nnU-Net then casts to float32
        raw.chunks_exact(8)
            .map(|c| {
                let a: [u8; 8] = c.try_into().unwrap_or([0; 8]);
                let v = if h.big_endian {
                    f64::from_be_bytes(a)
                } else {
                    f64::from_le_bytes(a)
                };
                (v * slope + inter) as f32
            })
            .collect()
    } else {
        let mut data = convert(raw, dt, h.big_endian);
        if must_rescale {
            // other types are promoted to float, then rescaled in double and rounded back to float
            for v in &mut data {
                *v = (*v as f64 * slope + inter) as f32;
            }
        }
        data
    };
    Ok(NiftiImage {
        header: h,
        dims,
        data,
    })
}

fn convert(raw: &[u8], dt: NiftiDatatype, be: bool) -> Vec<f32> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            raw.chunks_exact($n)
                .map(|c| {
                    let a: [u8; $n] = c.try_into().unwrap_or([0; $n]);
                    (if be {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }) as f32
                })
                .collect()
        };
    }
    match dt {
        NiftiDatatype::U8 => raw.iter().map(|&v| v as f32).collect(),
        NiftiDatatype::I8 => raw.iter().map(|&v| v as i8 as f32).collect(),
        NiftiDatatype::I16 => conv!(i16, 2),
        NiftiDatatype::U16 => conv!(u16, 2),
        NiftiDatatype::I32 => conv!(i32, 4),
        NiftiDatatype::U32 => conv!(u32, 4),
        NiftiDatatype::F32 => conv!(f32, 4),
        NiftiDatatype::I64 => conv!(i64, 8),
        NiftiDatatype::U64 => conv!(u64, 8),
        NiftiDatatype::F64 => conv!(f64, 8),
    }
}

type M3 = [[f64; 3]; 3];

/// `nifti_quatern_to_mat44`'s rotation (with qfac) times diag(pixdim), as double.
pub(crate) fn qform_matrix(h: &NiftiHeader) -> (M3, [f64; 3]) {
    let (mut b, mut c, mut d) = (
        h.quatern[0] as f64,
        h.quatern[1] as f64,
        h.quatern[2] as f64,
    );
    let mut a = 1.0 - (b * b + c * c + d * d);
    if a < 1.0e-7 {
        a = 1.0 / (b * b + c * c + d * d).sqrt();
        b *= a;
        c *= a;
        d *= a;
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let xd = h.pixdim[1] as f64;
    let yd = h.pixdim[2] as f64;
    let mut zd = h.pixdim[3] as f64;
    let (xd, yd) = (
        if xd == 0.0 { 1.0 } else { xd },
        if yd == 0.0 { 1.0 } else { yd },
    );
    if zd == 0.0 {
        zd = 1.0;
    }
    if h.pixdim[0] < 0.0 {
        zd = -zd;
    }
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let m = [
        [r[0][0] * xd, r[0][1] * yd, r[0][2] * zd],
        [r[1][0] * xd, r[1][1] * yd, r[1][2] * zd],
        [r[2][0] * xd, r[2][1] * yd, r[2][2] * zd],
    ];
    (
        m,
        [
            h.qoffset[0] as f64,
            h.qoffset[1] as f64,
            h.qoffset[2] as f64,
        ],
    )
}

/// Columns normalised; `None` if a column is zero or the result is not orthonormal (skew).
fn normalized_rotation(m: &M3) -> Option<M3> {
    let mut r = [[0.0; 3]; 3];
    for j in 0..3 {
        let norm = (m[0][j] * m[0][j] + m[1][j] * m[1][j] + m[2][j] * m[2][j]).sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return None;
        }
        for i in 0..3 {
            r[i][j] = m[i][j] / norm;
        }
    }
    for a in 0..3 {
        for b in a + 1..3 {
            let dot: f64 = (0..3).map(|i| r[i][a] * r[i][b]).sum();
            if dot.abs() > 1e-4 {
                return None;
            }
        }
    }
    Some(r)
}

impl NiftiImage {
    /// Spatial dimensionality ITK gives the image (dim[0], at most 4).
    pub fn ndim(&self) -> usize {
        self.dims.len()
    }

    /// What SimpleITK reports for this file (see module docs).
    pub fn itk_geometry(&self, path: &Path) -> Result<SitkGeometry> {
        let h = &self.header;
        let nd = self.ndim().max(1);
        let sp = |i: usize| {
            let v = (h.pixdim[i] as f64).abs();
            if v == 0.0 { 1.0 } else { v }
        };
        let mut spacing: Vec<f64> = (1..=nd).map(sp).collect();
        // 3-D rotation/origin in RAS, then to LPS
        let (rot, origin) = if h.qform_code <= 0 && h.sform_code <= 0 {
            (
                [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                [0.0; 3],
            )
        } else {
            let s = [
                [
                    h.srow[0][0] as f64,
                    h.srow[0][1] as f64,
                    h.srow[0][2] as f64,
                ],
                [
                    h.srow[1][0] as f64,
                    h.srow[1][1] as f64,
                    h.srow[1][2] as f64,
                ],
                [
                    h.srow[2][0] as f64,
                    h.srow[2][1] as f64,
                    h.srow[2][2] as f64,
                ],
            ];
            let s_off = [
                h.srow[0][3] as f64,
                h.srow[1][3] as f64,
                h.srow[2][3] as f64,
            ];
            let s_rot = if h.sform_code > 0 {
                normalized_rotation(&s)
            } else {
                None
            };
            let use_sform = h.sform_code > 0 && (h.sform_code == 1 || h.qform_code <= 0);
            match (use_sform, s_rot) {
                (true, Some(r)) => (to_lps(r), [-s_off[0], -s_off[1], s_off[2]]),
                _ if h.qform_code > 0 => {
                    let (m, off) = qform_matrix(h);
                    let r = normalized_rotation(&m).ok_or_else(|| {
                        DataError::format(
                            path,
                            "qform does not define orthonormal direction cosines",
                        )
                    })?;
                    (to_lps(r), [-off[0], -off[1], off[2]])
                }
                _ => {
                    return Err(DataError::format(
                        path,
                        "sform is not a rotation × scaling and there is no qform (ITK only supports orthonormal direction cosines)",
                    ));
                }
            }
        };
        let mut direction = vec![0.0; nd * nd];
        for i in 0..nd {
            for j in 0..nd {
                direction[i * nd + j] = if i < 3 && j < 3 {
                    rot[i][j]
                } else if i == j {
                    1.0
                } else {
                    0.0
                };
            }
        }
        let origin: Vec<f64> = (0..nd)
            .map(|i| if i < 3 { origin[i] } else { 0.0 })
            .collect();
        if nd == 4 {
            spacing[3] = (h.pixdim[4] as f64).abs();
            if spacing[3] == 0.0 {
                spacing[3] = 1.0;
            }
        }
        Ok(SitkGeometry {
            spacing,
            origin,
            direction,
        })
    }
}

fn to_lps(mut r: M3) -> M3 {
    for row in r.iter_mut().take(2) {
        for x in row {
            *x = -*x;
        }
    }
    r
}

/// `nifti_mat44_to_quatern` for an orthonormal rotation: (b, c, d, qfac).
fn rotation_to_quatern(r: &M3) -> ([f64; 3], f64) {
    let mut r = *r;
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det > 0.0 { 1.0 } else { -1.0 };
    if qfac < 0.0 {
        for row in &mut r {
            row[2] = -row[2];
        }
    }
    let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
    let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
    let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
    let a0 = r11 + r22 + r33 + 1.0;
    let (mut a, mut b, mut c, mut d);
    if a0 > 0.5 {
        a = 0.5 * a0.sqrt();
        b = 0.25 * (r32 - r23) / a;
        c = 0.25 * (r13 - r31) / a;
        d = 0.25 * (r21 - r12) / a;
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r12 + r21) / b;
            d = 0.25 * (r13 + r31) / b;
            a = 0.25 * (r32 - r23) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r12 + r21) / c;
            d = 0.25 * (r23 + r32) / c;
            a = 0.25 * (r13 - r31) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r13 + r31) / d;
            c = 0.25 * (r23 + r32) / d;
            a = 0.25 * (r21 - r12) / d;
        }
        if a < 0.0 {
            b = -b;
            c = -c;
            d = -d;
            a = -a;
        }
    }
    let _ = a;
    ([b, c, d], qfac)
}

/// Encode a NIfTI-1 single file. `data` is in file order (x fastest) with ITK sizes `size`
/// (2, 3 or 4 entries); `geometry` in SimpleITK convention (LPS). Values are cast to `dtype` like
/// numpy's `astype` (round toward zero for integers, saturating).
pub fn encode_nifti(
    data: &[f32],
    size: &[usize],
    geometry: &SitkGeometry,
    dtype: NiftiDatatype,
) -> Result<Vec<u8>, String> {
    let n: usize = size.iter().product();
    if data.len() != n {
        return Err(format!(
            "data has {} values but size {size:?} needs {n}",
            data.len()
        ));
    }
    let mut h = nifti_header_bytes(size, geometry, dtype)?;
    h.reserve(n * dtype.size());
    macro_rules! push {
        ($t:ty) => {
            for &v in data {
                h.extend_from_slice(&(v as $t).to_le_bytes());
            }
        };
    }
    match dtype {
        NiftiDatatype::U8 => push!(u8),
        NiftiDatatype::I8 => push!(i8),
        NiftiDatatype::I16 => push!(i16),
        NiftiDatatype::U16 => push!(u16),
        NiftiDatatype::I32 => push!(i32),
        NiftiDatatype::U32 => push!(u32),
        NiftiDatatype::I64 => push!(i64),
        NiftiDatatype::U64 => push!(u64),
        NiftiDatatype::F32 => push!(f32),
        NiftiDatatype::F64 => push!(f64),
    }
    Ok(h)
}

/// The 352-byte header (348 + empty extension flag) of a little-endian NIfTI-1 single file as SimpleITK writes it:
/// sizes, datatype, spacing, qform and sform (both code 1) from `geometry` (SimpleITK convention, LPS), no scaling.
pub fn nifti_header_bytes(size: &[usize], geometry: &SitkGeometry, dtype: NiftiDatatype) -> Result<Vec<u8>, String> {
    let nd = size.len();
    if !(2..=4).contains(&nd)
        || geometry.dims() != nd
        || geometry.origin.len() != nd
        || geometry.direction.len() != nd * nd
    {
        return Err(format!(
            "inconsistent dimensionality: size {size:?}, geometry {geometry:?}"
        ));
    }
    if size.iter().any(|&s| s == 0 || s > i16::MAX as usize) {
        return Err(format!("size {size:?} cannot be stored in NIfTI-1"));
    }
    // 3-D LPS rotation and origin from the geometry
    let m = nd.min(3);
    let mut r = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for (i, row) in r.iter_mut().enumerate().take(m) {
        row[..m].copy_from_slice(&geometry.direction[i * nd..i * nd + m]);
    }
    let mut o = [0.0; 3];
    o[..m].copy_from_slice(&geometry.origin[..m]);
    let r_ras = to_lps(r); // the flip is its own inverse
    let o_ras = [-o[0], -o[1], o[2]];
    let mut sp = [1.0f64; 4];
    sp[..nd].copy_from_slice(&geometry.spacing[..nd]);
    let (quat, qfac) = rotation_to_quatern(&r_ras);

    let mut h = vec![0u8; 352];
    let put_i16 = |h: &mut Vec<u8>, o: usize, v: i16| h[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut Vec<u8>, o: usize, v: f32| h[o..o + 4].copy_from_slice(&v.to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[38] = b'r'; // regular
    put_i16(&mut h, 40, nd as i16);
    for i in 0..7 {
        put_i16(&mut h, 42 + 2 * i, size.get(i).map_or(1, |&s| s as i16)); // size.len() == nd
    }
    put_i16(&mut h, 70, dtype.code());
    put_i16(&mut h, 72, (dtype.size() * 8) as i16);
    put_f32(&mut h, 76, qfac as f32);
    for i in 0..7 {
        put_f32(&mut h, 80 + 4 * i, sp.get(i).map_or(1.0, |&s| s as f32));
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 1.0);
    put_f32(&mut h, 116, 0.0);
    h[123] = 2 | 8; // mm, s
    put_i16(&mut h, 252, 1);
    put_i16(&mut h, 254, 1);
    for i in 0..3 {
        put_f32(&mut h, 256 + 4 * i, quat[i] as f32);
        put_f32(&mut h, 268 + 4 * i, o_ras[i] as f32);
    }
    for row in 0..3 {
        for col in 0..3 {
            put_f32(
                &mut h,
                280 + 16 * row + 4 * col,
                (r_ras[row][col] * sp[col]) as f32,
            );
        }
        put_f32(&mut h, 280 + 16 * row + 12, o_ras[row] as f32);
    }
    h[344..348].copy_from_slice(b"n+1\0");
    Ok(h)
}

/// Write a NIfTI-1 file (gzip-compressed when the name ends in `.gz`). See [`encode_nifti`].
pub fn write_nifti(
    path: &Path,
    data: &[f32],
    size: &[usize],
    geometry: &SitkGeometry,
    dtype: NiftiDatatype,
) -> Result<()> {
    let bytes =
        encode_nifti(data, size, geometry, dtype).map_err(|m| DataError::format(path, m))?;
    write_nifti_bytes(path, &bytes)
}

/// Write encoded NIfTI bytes to `path` (gzip-compressed when the name ends in `.gz`; temp file + rename).
pub fn write_nifti_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let out = if path.to_string_lossy().to_ascii_lowercase().ends_with(".gz") {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        enc.write_all(bytes).map_err(|e| DataError::io(path, e))?;
        enc.finish().map_err(|e| DataError::io(path, e))?
    } else {
        bytes.to_vec()
    };
    nnunet_schema::json::write_atomic(path, &out)?;
    Ok(())
}
