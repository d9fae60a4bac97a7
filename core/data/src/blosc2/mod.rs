//! A pure-Rust reader for Blosc2 `.b2nd` files: the N-dimensional arrays Python nnU-Net 2.8.1 writes for preprocessed
//! cases (`nnUNetDatasetBlosc2.save_case`: `<case>.b2nd` float32 `(c, z, y, x)`, `<case>_seg.b2nd` int16 `(1, z, y, x)`).
//!
//! # Format (c-blosc2's `README_CFRAME_FORMAT.rst`, `README_CHUNK_FORMAT.rst`, `README_B2ND_METALAYER.rst`)
//!
//! A `.b2nd` file is one *contiguous frame*: a msgpack header (sizes, typesize, the `b2nd` metalayer with shape,
//! chunk shape, block shape and numpy dtype), the compressed chunks, an index chunk with the 64-bit offset of every
//! chunk (itself a Blosc2 chunk, BloscLZ + shuffle), and a trailer (variable-length metalayers, not read here).
//! Chunks tile the array in C order; each chunk holds `extchunkshape` items (the chunk shape rounded up to whole
//! blocks, the array's edge chunks padded), stored block after block in C order of the block grid, each block in C
//! order. Each block is one or `typesize` compressed streams (split mode) followed by the filter pipeline.
//!
//! [`B2nd::open`] reads the header, the metalayer and the chunk index only; [`B2nd::read_box`] then reads (with
//! positioned reads, the file opened per call like [`crate::npy::NpyFile`]) only the chunks that overlap the box and
//! decompresses only their blocks that overlap it.
//!
//! # Supported
//!
//! Codecs LZ4 / LZ4HC (own LZ4 block decoder), BloscLZ (own decoder; the chunk index uses it), zlib (`flate2`) and ZSTD
//! (the `zstd` crate: python-blosc2's default codec, e.g. nnU-Net's `save_seg` for the cascade's previous-stage
//! segmentations); filters SHUFFLE (also with a byte count in `filters_meta`), NOFILTER and TRUNC_PREC (nothing to
//! undo); split and unsplit blocks, zero / repeated-byte streams, memcpyed chunks, special-value chunks (zeros, NaN, a
//! repeated value, uninitialized — read as zeros) in the chunk header or in the chunk index; dtypes `|b1 |i1 |u1 <i2
//! <u2 <i4 <u4 <i8 <u8 <f4 <f8`. Refused with [`DataError::Unsupported`] naming the feature: user-defined codecs,
//! BITSHUFFLE, DELTA and user filters, dictionaries, variable-length blocks, sparse frames, big-endian dtypes.

pub mod write;

use crate::error::{DataError, Result};
use crate::npy::{FromNpy, NpyDtype, convert_into};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MIN_HEADER: usize = 16; // BLOSC_MIN_HEADER_LENGTH
const EXT_HEADER: usize = 32; // BLOSC_EXTENDED_HEADER_LENGTH
const FRAME_HEADER_MINLEN: usize = 87;
/// Sanity cap on the frame header (metalayers are tiny; this only guards against absurd lengths in damaged files).
const MAX_FRAME_HEADER: usize = 16 << 20;

/// What went wrong while decoding, before the file name is attached.
#[derive(Debug)]
enum Bad {
    /// Damaged or inconsistent data.
    Format(String),
    /// A valid feature this reader does not implement.
    Unsupported(String),
}

type Res<T> = std::result::Result<T, Bad>;

fn bad<T>(msg: impl Into<String>) -> Res<T> {
    Err(Bad::Format(msg.into()))
}

fn unsupported<T>(msg: impl Into<String>) -> Res<T> {
    Err(Bad::Unsupported(msg.into()))
}

impl Bad {
    fn context(self, ctx: &str) -> Bad {
        match self {
            Bad::Format(m) => Bad::Format(format!("{ctx}: {m}")),
            Bad::Unsupported(m) => Bad::Unsupported(format!("{ctx}: {m}")),
        }
    }
    fn into_error(self, path: &Path) -> DataError {
        match self {
            Bad::Format(m) => DataError::format(path, format!("blosc2 .b2nd: {m}")),
            Bad::Unsupported(m) => DataError::unsupported(path, format!("blosc2 .b2nd: {m}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// codecs

/// Decode one LZ4 *block* (the raw block format, as `LZ4_decompress_safe`) into exactly `dst.len()` bytes.
fn lz4_decompress(src: &[u8], dst: &mut [u8]) -> std::result::Result<(), String> {
    let (n, cap) = (src.len(), dst.len());
    let (mut ip, mut op) = (0usize, 0usize);
    let ext_len = |ip: &mut usize, len: &mut usize| -> std::result::Result<(), String> {
        loop {
            let b = *src.get(*ip).ok_or("lz4: truncated length")? as usize;
            *ip += 1;
            *len += b;
            if b != 255 {
                return Ok(());
            }
        }
    };
    loop {
        let token = *src.get(ip).ok_or("lz4: truncated stream")?;
        ip += 1;
        let mut lit = (token >> 4) as usize;
        if lit == 15 {
            ext_len(&mut ip, &mut lit)?;
        }
        if lit > n - ip {
            return Err("lz4: literals run past the input".into());
        }
        if lit > cap - op {
            return Err("lz4: literals run past the output".into());
        }
        dst[op..op + lit].copy_from_slice(&src[ip..ip + lit]);
        ip += lit;
        op += lit;
        if ip == n {
            break; // the last sequence has literals only
        }
        if n - ip < 2 {
            return Err("lz4: truncated match offset".into());
        }
        let off = u16::from_le_bytes([src[ip], src[ip + 1]]) as usize;
        ip += 2;
        if off == 0 || off > op {
            return Err(format!("lz4: match offset {off} at output position {op}"));
        }
        let mut len = (token & 15) as usize + 4;
        if token & 15 == 15 {
            ext_len(&mut ip, &mut len)?;
        }
        if len > cap - op {
            return Err("lz4: match runs past the output".into());
        }
        copy_match(dst, op, off, len);
        op += len;
    }
    if op != cap {
        return Err(format!("lz4: decoded {op} bytes, expected {cap}"));
    }
    Ok(())
}

/// `dst[op..op + len] = dst[op - dist..]` byte by byte semantics (the source may overlap the destination: a period
/// `dist` pattern); copies in growing non-overlapping pieces. The caller checks `dist <= op` and `op + len <= dst.len()`.
fn copy_match(dst: &mut [u8], op: usize, dist: usize, len: usize) {
    let s = op - dist;
    if dist >= len {
        dst.copy_within(s..s + len, op);
        return;
    }
    let end = op + len;
    let mut d = op;
    while d < end {
        // dst[s..d] is periodic with period `dist` and d - s is a multiple of it
        let n = (d - s).min(end - d);
        dst.copy_within(s..s + n, d);
        d += n;
    }
}

/// Decode a BloscLZ stream (c-blosc2's `blosclz_decompress`) into exactly `dst.len()` bytes.
fn blosclz_decompress(src: &[u8], dst: &mut [u8]) -> std::result::Result<(), String> {
    const MAX_DISTANCE: usize = 8191;
    let (n, cap) = (src.len(), dst.len());
    if n == 0 {
        return Err("blosclz: empty stream".into());
    }
    let (mut ip, mut op) = (1usize, 0usize);
    let mut ctrl = (src[0] & 31) as usize;
    loop {
        if ctrl >= 32 {
            // match
            let mut len = (ctrl >> 5) - 1;
            let mut ofs = (ctrl & 31) << 8;
            if len == 7 - 1 {
                loop {
                    if ip + 1 >= n {
                        return Err("blosclz: truncated match length".into());
                    }
                    let code = src[ip] as usize;
                    ip += 1;
                    len += code;
                    if code != 255 {
                        break;
                    }
                }
            } else if ip + 1 >= n {
                return Err("blosclz: truncated match".into());
            }
            let code = src[ip] as usize;
            ip += 1;
            len += 3;
            let mut back = ofs + code;
            if code == 255 && ofs == 31 << 8 {
                if ip + 1 >= n {
                    return Err("blosclz: truncated far distance".into());
                }
                ofs = ((src[ip] as usize) << 8) + src[ip + 1] as usize;
                ip += 2;
                back = ofs + MAX_DISTANCE;
            }
            back += 1;
            if len > cap - op {
                return Err("blosclz: match runs past the output".into());
            }
            if back > op {
                return Err(format!("blosclz: match distance {back} at output position {op}"));
            }
            if ip >= n {
                break; // like the C decoder: the stream ends with literals, a trailing match is not copied
            }
            ctrl = src[ip] as usize;
            ip += 1;
            copy_match(dst, op, back, len);
            op += len;
        } else {
            // literal run of ctrl + 1 bytes
            let len = ctrl + 1;
            if len > cap - op || len > n - ip {
                return Err("blosclz: literal run past the input or output".into());
            }
            dst[op..op + len].copy_from_slice(&src[ip..ip + len]);
            ip += len;
            op += len;
            if ip >= n {
                break;
            }
            ctrl = src[ip] as usize;
            ip += 1;
        }
    }
    if op != cap {
        return Err(format!("blosclz: decoded {op} bytes, expected {cap}"));
    }
    Ok(())
}

/// zlib stream (`uncompress`) into exactly `dst.len()` bytes.
fn zlib_decompress(src: &[u8], dst: &mut [u8]) -> std::result::Result<(), String> {
    let mut z = flate2::Decompress::new(true);
    match z.decompress(src, dst, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) if z.total_out() as usize == dst.len() => Ok(()),
        Ok(_) => Err(format!("zlib: stream does not decode to {} bytes", dst.len())),
        Err(e) => Err(format!("zlib: {e}")),
    }
}

/// Decode one ZSTD frame (what c-blosc2's `zstd_wrap_decompress` reads) into exactly `dst.len()` bytes.
fn zstd_decompress(src: &[u8], dst: &mut [u8]) -> std::result::Result<(), String> {
    match zstd::bulk::decompress_to_buffer(src, dst) {
        Ok(n) if n == dst.len() => Ok(()),
        Ok(n) => Err(format!("zstd: stream decodes to {n} bytes, expected {}", dst.len())),
        Err(e) => Err(format!("zstd: {e}")),
    }
}

/// Undo blosc's byte shuffle of `src` (typesize `ts`) into `dst` (same length); trailing bytes are copied.
fn unshuffle(ts: usize, src: &[u8], dst: &mut [u8]) {
    match ts {
        2 => return unshuffle_n::<2>(src, dst),
        4 => return unshuffle_n::<4>(src, dst),
        8 => return unshuffle_n::<8>(src, dst),
        _ => {}
    }
    let n = src.len() / ts;
    for j in 0..ts {
        let plane = &src[j * n..(j + 1) * n];
        for (i, &b) in plane.iter().enumerate() {
            dst[i * ts + j] = b;
        }
    }
    dst[n * ts..].copy_from_slice(&src[n * ts..]);
}

/// [`unshuffle`] for a typesize known at compile time (element by element from the `N` byte planes).
fn unshuffle_n<const N: usize>(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / N;
    let planes: [&[u8]; N] = std::array::from_fn(|j| &src[j * n..(j + 1) * n]);
    for (i, out) in dst[..n * N].chunks_exact_mut(N).enumerate() {
        for j in 0..N {
            out[j] = planes[j][i];
        }
    }
    dst[n * N..].copy_from_slice(&src[n * N..]);
}

// ---------------------------------------------------------------------------------------------------------------
// chunks

const CODEC_BLOSCLZ: u8 = 0;
const CODEC_LZ4: u8 = 1;
const CODEC_ZLIB: u8 = 3;
const CODEC_ZSTD: u8 = 4;
const CODEC_UD: u8 = 6;

const FILTER_NOFILTER: u8 = 0;
const FILTER_SHUFFLE: u8 = 1;
const FILTER_BITSHUFFLE: u8 = 2;
const FILTER_DELTA: u8 = 3;
const FILTER_TRUNC_PREC: u8 = 4;

const SPECIAL_ZERO: u8 = 1;
const SPECIAL_NAN: u8 = 2;
const SPECIAL_VALUE: u8 = 3;
const SPECIAL_UNINIT: u8 = 4;

/// The parsed header of one Blosc2 chunk.
#[derive(Debug, Clone)]
struct ChunkHeader {
    typesize: usize,
    nbytes: usize,
    blocksize: usize,
    cbytes: usize,
    overhead: usize,
    codec: u8,
    dont_split: bool,
    memcpyed: bool,
    special: u8,
    filters: [u8; 6],
    filters_meta: [u8; 6],
}

impl ChunkHeader {
    /// `read_chunk_header` + `blosc2_initialize_context_from_header` of c-blosc2, refusing what is not implemented.
    fn parse(b: &[u8]) -> Res<ChunkHeader> {
        if b.len() < MIN_HEADER {
            return bad(format!("chunk of {} bytes has no header", b.len()));
        }
        let i32_at = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let flags = b[2];
        let typesize = b[3] as usize;
        let (nbytes, blocksize, cbytes) = (i32_at(4), i32_at(8), i32_at(12));
        if nbytes < 0 || cbytes < MIN_HEADER as i32 || blocksize <= 0 || typesize == 0 {
            return bad(format!("bad chunk header (nbytes {nbytes}, blocksize {blocksize}, cbytes {cbytes}, typesize {typesize})"));
        }
        let extended = flags & 0x01 != 0 && flags & 0x04 != 0;
        let mut h = ChunkHeader {
            typesize,
            nbytes: nbytes as usize,
            blocksize: (blocksize as usize).min(nbytes.max(1) as usize),
            cbytes: cbytes as usize,
            overhead: MIN_HEADER,
            codec: flags >> 5,
            dont_split: flags & 0x10 != 0,
            memcpyed: flags & 0x02 != 0,
            special: 0,
            filters: [0; 6],
            filters_meta: [0; 6],
        };
        if extended {
            if b.len() < EXT_HEADER || h.cbytes < EXT_HEADER {
                return bad("chunk too short for its extended header");
            }
            h.overhead = EXT_HEADER;
            h.filters.copy_from_slice(&b[16..22]);
            h.filters_meta.copy_from_slice(&b[24..30]);
            let (blosc2_flags, flags2) = (b[31], b[30]);
            if b[0] == 3 {
                // alpha format: the sixth filter slot was not initialized
                (h.filters[5], h.filters_meta[5]) = (0, 0);
            }
            if h.codec == CODEC_UD {
                return unsupported(format!("user-defined codec {}", b[22]));
            }
            if flags2 & 0x01 != 0 {
                return unsupported("variable-length blocks");
            }
            h.special = (blosc2_flags >> 4) & 0x07;
            if h.special > SPECIAL_UNINIT {
                return bad(format!("unknown special value id {}", h.special));
            }
            if h.special == 0 {
                if blosc2_flags & 0x01 != 0 {
                    return unsupported("codec dictionaries");
                }
                if blosc2_flags & 0x08 != 0 {
                    return bad("lazy chunk stored in a file");
                }
                if blosc2_flags & 0x80 != 0 {
                    return unsupported("instrumented codec");
                }
            }
            if h.special == SPECIAL_VALUE {
                h.typesize = h.cbytes.saturating_sub(EXT_HEADER);
                if h.typesize == 0 || !h.nbytes.is_multiple_of(h.typesize) {
                    return bad("bad repeated-value chunk");
                }
            }
        } else {
            // Blosc1-style header: the filters follow from the flags (flags_to_filters)
            if flags & 0x01 != 0 {
                h.filters[5] = FILTER_SHUFFLE;
            }
            if flags & 0x04 != 0 {
                h.filters[5] = FILTER_BITSHUFFLE;
            }
            if flags & 0x08 != 0 {
                h.filters[4] = FILTER_DELTA;
            }
        }
        if h.memcpyed && h.special == 0 && h.cbytes != h.nbytes + h.overhead {
            return bad("memcpyed chunk with inconsistent sizes");
        }
        if h.special == 0 && !h.memcpyed {
            match h.codec {
                CODEC_BLOSCLZ | CODEC_LZ4 | CODEC_ZLIB | CODEC_ZSTD => {}
                c => return unsupported(format!("codec {c}")),
            }
            for &f in &h.filters {
                match f {
                    FILTER_NOFILTER | FILTER_SHUFFLE | FILTER_TRUNC_PREC => {}
                    FILTER_BITSHUFFLE => return unsupported("BITSHUFFLE filter"),
                    FILTER_DELTA => return unsupported("DELTA filter"),
                    f => return unsupported(format!("filter {f}")),
                }
            }
        }
        Ok(h)
    }

    /// The repeated element of a [`SPECIAL_VALUE`] chunk (empty for other chunks).
    fn special_value<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        if self.special == SPECIAL_VALUE { src.get(EXT_HEADER..EXT_HEADER + self.typesize).unwrap_or(&[]) } else { &[] }
    }

    fn nblocks(&self) -> usize {
        self.nbytes.div_ceil(self.blocksize)
    }

    /// Uncompressed size of block `j`.
    fn block_len(&self, j: usize) -> usize {
        (self.nbytes - j * self.blocksize).min(self.blocksize)
    }
}

/// A compressed chunk, or a chunk the index marks as all one special value.
enum Chunk {
    Stored(Vec<u8>, ChunkHeader),
    /// Special value of the chunk index (zeros, NaN, uninitialized).
    Special(u8),
}

/// Scratch buffers reused across blocks.
#[derive(Default)]
struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
}

/// Fill `dst` with the special value `kind` for elements of `ts` bytes (`value`: the repeated element).
fn fill_special(kind: u8, ts: usize, value: &[u8], dst: &mut [u8]) -> Res<()> {
    match kind {
        SPECIAL_ZERO | SPECIAL_UNINIT => dst.fill(0),
        SPECIAL_NAN => match ts {
            4 => dst.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&f32::NAN.to_le_bytes())),
            8 => dst.chunks_exact_mut(8).for_each(|c| c.copy_from_slice(&f64::NAN.to_le_bytes())),
            _ => return bad(format!("NaN chunk with typesize {ts}")),
        },
        SPECIAL_VALUE if value.len() == ts && ts > 0 => dst.chunks_exact_mut(ts).for_each(|c| c.copy_from_slice(value)),
        SPECIAL_VALUE => return bad("repeated-value chunk without its value"),
        k => return bad(format!("unknown special value {k}")),
    }
    Ok(())
}

/// Decode block `j` of the chunk `src` (its header `h`) into `dst` (`h.block_len(j)` bytes): `blosc_d`.
fn decode_block(src: &[u8], h: &ChunkHeader, j: usize, dst: &mut [u8], scratch: &mut Scratch) -> Res<()> {
    if j >= h.nblocks() {
        return bad(format!("block {j} of a chunk with {} blocks", h.nblocks()));
    }
    let bsize = h.block_len(j);
    if dst.len() != bsize {
        return bad(format!("block {j} holds {bsize} bytes, expected {}", dst.len()));
    }
    if h.special != 0 {
        return fill_special(h.special, h.typesize, h.special_value(src), dst);
    }
    if h.memcpyed {
        let s = h.overhead + j * h.blocksize;
        let block = src.get(s..s + bsize).ok_or(Bad::Format("memcpyed chunk is truncated".into()))?;
        dst.copy_from_slice(block);
        return Ok(());
    }
    let bs = h.overhead + 4 * j;
    let start = src.get(bs..bs + 4).ok_or(Bad::Format("block starts are truncated".into()))?;
    let start = i32::from_le_bytes([start[0], start[1], start[2], start[3]]);
    if start <= 0 || start as usize >= src.len() {
        return bad(format!("block {j} starts at {start}, outside the chunk"));
    }
    let mut s = &src[start as usize..];
    // the filters to undo, last applied first
    let active: Vec<(u8, u8)> =
        (0..6).rev().filter(|&i| h.filters[i] == FILTER_SHUFFLE).map(|i| (h.filters[i], h.filters_meta[i])).collect();
    let out: &mut [u8] = if active.is_empty() {
        dst
    } else {
        scratch.a.resize(bsize, 0);
        &mut scratch.a[..]
    };
    let leftover = bsize < h.blocksize;
    let nstreams = if !h.dont_split && !leftover { h.typesize } else { 1 };
    if !bsize.is_multiple_of(nstreams) {
        return bad(format!("block of {bsize} bytes cannot hold {nstreams} streams"));
    }
    let neblock = bsize / nstreams;
    for stream in out.chunks_exact_mut(neblock) {
        if s.len() < 4 {
            return bad(format!("block {j}: truncated stream size"));
        }
        let csize = i32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        s = &s[4..];
        if csize == 0 {
            stream.fill(0);
        } else if csize < 0 {
            let token = *s.first().ok_or(Bad::Format(format!("block {j}: truncated run token")))?;
            s = &s[1..];
            if token & 1 == 0 || csize < -255 {
                return bad(format!("block {j}: unsupported stream token {token} (csize {csize})"));
            }
            stream.fill((-csize) as u8);
        } else {
            let c = csize as usize;
            if c > s.len() {
                return bad(format!("block {j}: stream of {c} bytes past the end of the chunk"));
            }
            let data = &s[..c];
            s = &s[c..];
            if c == neblock {
                stream.copy_from_slice(data);
            } else {
                match h.codec {
                    CODEC_LZ4 => lz4_decompress(data, stream),
                    CODEC_BLOSCLZ => blosclz_decompress(data, stream),
                    CODEC_ZLIB => zlib_decompress(data, stream),
                    CODEC_ZSTD => zstd_decompress(data, stream),
                    c => return unsupported(format!("codec {c}")),
                }
                .map_err(|e| Bad::Format(format!("block {j}: {e}")))?;
            }
        }
    }
    if !active.is_empty() {
        scratch.b.resize(bsize, 0);
        for (_, meta) in active {
            let ts = if meta == 0 { h.typesize } else { meta as usize };
            unshuffle(ts, &scratch.a, &mut scratch.b);
            std::mem::swap(&mut scratch.a, &mut scratch.b);
        }
        dst.copy_from_slice(&scratch.a);
    }
    Ok(())
}

/// Decode a whole chunk (all its blocks).
fn decode_chunk(src: &[u8]) -> Res<Vec<u8>> {
    let h = ChunkHeader::parse(src)?;
    if src.len() < h.cbytes {
        return bad(format!("chunk of {} bytes is truncated to {}", h.cbytes, src.len()));
    }
    let mut out = vec![0u8; h.nbytes];
    let mut scratch = Scratch::default();
    for j in 0..h.nblocks() {
        let o = j * h.blocksize;
        decode_block(&src[..h.cbytes], &h, j, &mut out[o..o + h.block_len(j)], &mut scratch)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------------
// msgpack (only what the b2nd metalayer uses)

#[derive(Debug, Clone, PartialEq)]
enum Mp {
    Int(i128),
    Str(String),
    Array(Vec<Mp>),
}

fn mp_parse(b: &[u8], pos: &mut usize, depth: usize) -> Res<Mp> {
    let take = |pos: &mut usize, n: usize| -> Res<&[u8]> {
        let s = b.get(*pos..*pos + n).ok_or(Bad::Format("truncated msgpack".into()))?;
        *pos += n;
        Ok(s)
    };
    let be = |s: &[u8]| s.iter().fold(0u128, |a, &x| (a << 8) | x as u128);
    if depth > 8 {
        return bad("msgpack nested too deeply");
    }
    let m = take(pos, 1)?[0];
    Ok(match m {
        0x00..=0x7f => Mp::Int(m as i128),
        0xe0..=0xff => Mp::Int(m as i8 as i128),
        0xcc => Mp::Int(be(take(pos, 1)?) as i128),
        0xcd => Mp::Int(be(take(pos, 2)?) as i128),
        0xce => Mp::Int(be(take(pos, 4)?) as i128),
        0xcf => Mp::Int(be(take(pos, 8)?) as i128),
        0xd0 => Mp::Int(take(pos, 1)?[0] as i8 as i128),
        0xd1 => Mp::Int(i16::from_be_bytes(take(pos, 2)?.try_into().unwrap_or_default()) as i128),
        0xd2 => Mp::Int(i32::from_be_bytes(take(pos, 4)?.try_into().unwrap_or_default()) as i128),
        0xd3 => Mp::Int(i64::from_be_bytes(take(pos, 8)?.try_into().unwrap_or_default()) as i128),
        0xa0..=0xbf | 0xd9 | 0xda | 0xdb => {
            let n = match m {
                0xd9 => be(take(pos, 1)?) as usize,
                0xda => be(take(pos, 2)?) as usize,
                0xdb => be(take(pos, 4)?) as usize,
                _ => (m & 0x1f) as usize,
            };
            Mp::Str(String::from_utf8_lossy(take(pos, n)?).into_owned())
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let n = match m {
                0xdc => be(take(pos, 2)?) as usize,
                0xdd => be(take(pos, 4)?) as usize,
                _ => (m & 0x0f) as usize,
            };
            if n > b.len() {
                return bad("msgpack array longer than its buffer");
            }
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(mp_parse(b, pos, depth + 1)?);
            }
            Mp::Array(v)
        }
        m => return bad(format!("unexpected msgpack type 0x{m:02x}")),
    })
}

/// Shape, chunk shape, block shape and dtype of a `b2nd` metalayer.
type B2ndMeta = (Vec<usize>, Vec<usize>, Vec<usize>, NpyDtype);

/// The `b2nd` metalayer: `[version, ndim, shape, chunkshape, blockshape, dtype_format, dtype]`.
fn parse_b2nd_meta(content: &[u8]) -> Res<B2ndMeta> {
    let mut pos = 0;
    let Mp::Array(items) = mp_parse(content, &mut pos, 0)? else { return bad("b2nd metalayer is not a msgpack array") };
    if items.len() < 7 {
        return unsupported(format!("b2nd metalayer with {} fields (no dtype)", items.len()));
    }
    let int = |v: &Mp, what: &str| -> Res<i128> {
        match v {
            Mp::Int(i) => Ok(*i),
            _ => bad(format!("b2nd metalayer: {what} is not an integer")),
        }
    };
    let ndim = int(&items[1], "ndim")?;
    let dims = |v: &Mp, what: &str| -> Res<Vec<usize>> {
        let Mp::Array(a) = v else { return bad(format!("b2nd metalayer: {what} is not an array")) };
        if a.len() as i128 != ndim {
            return bad(format!("b2nd metalayer: {what} has {} axes, ndim is {ndim}", a.len()));
        }
        a.iter()
            .map(|x| match int(x, what)? {
                i if (0..=i64::MAX as i128).contains(&i) => Ok(i as usize),
                i => bad(format!("b2nd metalayer: {what} has the value {i}")),
            })
            .collect()
    };
    let (shape, chunks, blocks) = (dims(&items[2], "shape")?, dims(&items[3], "chunkshape")?, dims(&items[4], "blockshape")?);
    if int(&items[5], "dtype format")? != 0 {
        return unsupported("b2nd dtype not in NumPy format");
    }
    let Mp::Str(descr) = &items[6] else { return bad("b2nd metalayer: dtype is not a string") };
    let dtype = NpyDtype::from_descr(descr).ok_or_else(|| Bad::Unsupported(format!("dtype {descr}")))?;
    Ok((shape, chunks, blocks, dtype))
}

// ---------------------------------------------------------------------------------------------------------------
// the array

/// Where a chunk lives: a byte range of the file, or a special value of the chunk index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkLoc {
    /// File offset of the chunk and the most bytes it can span (up to the next chunk or the end of the data).
    Stored { pos: u64, max_len: u64 },
    /// All zeros (1), NaN (2) or uninitialized (4, read as zeros).
    Special(u8),
}

/// A `.b2nd` file (Blosc2 contiguous frame with a `b2nd` metalayer) opened for reading: header, metalayer and chunk
/// index are parsed once; every read opens the file, reads the chunks it needs with positioned reads and closes it.
#[derive(Debug, Clone)]
pub struct B2nd {
    path: PathBuf,
    dtype: NpyDtype,
    shape: Vec<usize>,
    chunkshape: Vec<usize>,
    blockshape: Vec<usize>,
    /// Chunk shape rounded up to whole blocks: the items a stored chunk holds.
    extchunkshape: Vec<usize>,
    /// Chunks per axis.
    nchunks: Vec<usize>,
    chunks: Vec<ChunkLoc>,
}

impl B2nd {
    /// Parse the frame header, the `b2nd` metalayer and the chunk index of `path` (no chunk is decompressed).
    /// Errors name the file: not a Blosc2 frame, truncated, inconsistent sizes, unsupported features.
    pub fn open(path: &Path) -> Result<B2nd> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        Self::open_file(path, &file, file_len).map_err(|e| e.into_error(path))
    }

    fn open_file(path: &Path, file: &std::fs::File, file_len: u64) -> Res<B2nd> {
        let read = |pos: u64, len: usize| -> Res<Vec<u8>> {
            if pos.checked_add(len as u64).is_none_or(|end| end > file_len) {
                return bad(format!("truncated: {len} bytes at {pos} are past the end of the file ({file_len} bytes)"));
            }
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, pos).map_err(|e| Bad::Format(format!("read at {pos}: {e}")))?;
            Ok(buf)
        };
        if file_len < FRAME_HEADER_MINLEN as u64 {
            return bad(format!("file of {file_len} bytes is too short for a Blosc2 frame"));
        }
        let head = read(0, FRAME_HEADER_MINLEN)?;
        if &head[1..10] != b"\xa8b2frame\0" || head[0] & 0xf0 != 0x90 {
            return bad("not a Blosc2 contiguous frame (no b2frame magic)");
        }
        let be32 = |o: usize| i32::from_be_bytes(head[o..o + 4].try_into().unwrap_or_default());
        let be64 = |o: usize| i64::from_be_bytes(head[o..o + 8].try_into().unwrap_or_default());
        let markers = [(10, 0xd2), (15, 0xcf), (24, 0xa4), (29, 0xd3), (38, 0xd3), (47, 0xd2), (52, 0xd2), (57, 0xd2)];
        if let Some((o, _)) = markers.iter().find(|&&(o, m)| head[o] != m) {
            return bad(format!("bad frame header (unexpected byte 0x{:02x} at {o})", head[*o]));
        }
        let header_len = be32(11);
        let frame_len = be64(16) as u64; // msgpack uint64
        let (general_flags, frame_type) = (head[25], head[26]);
        let (nbytes, cbytes, typesize, chunksize) = (be64(30), be64(39), be32(48), be32(58));
        if general_flags & 0x0f > 3 {
            return unsupported(format!("frame format version {}", general_flags & 0x0f));
        }
        if frame_type & 0x0f != 0 {
            return unsupported("sparse (directory) frame");
        }
        if general_flags & 0x80 != 0 {
            return unsupported("variable-length blocks");
        }
        if header_len < FRAME_HEADER_MINLEN as i32 || header_len as usize > MAX_FRAME_HEADER || header_len as u64 > frame_len {
            return bad(format!("bad frame header length {header_len}"));
        }
        if frame_len > file_len {
            return bad(format!("truncated: the frame has {frame_len} bytes, the file {file_len}"));
        }
        if nbytes < 0 || cbytes < 0 || typesize <= 0 || chunksize < 0 {
            return bad(format!("bad frame sizes (nbytes {nbytes}, cbytes {cbytes}, typesize {typesize}, chunksize {chunksize})"));
        }
        let header_len = header_len as u64;
        let (nbytes, cbytes) = (nbytes as u64, cbytes as u64);
        if header_len.checked_add(cbytes).is_none_or(|e| e > frame_len) {
            return bad(format!("frame data ({cbytes} bytes) past the end of the frame"));
        }

        // metalayers: [0x93, 0xcd idx_size, 0xde n {fixstr name: 0xd2 offset}] at 87; content = 0xc6 len bytes at offset
        let header = read(0, header_len as usize)?;
        let h = &header[..];
        let at = |o: usize| h.get(o).copied().unwrap_or(0);
        if at(87) != 0x93 || at(88) != 0xcd || at(91) != 0xde {
            return bad("frame header has no metalayer index");
        }
        let nmeta = u16::from_be_bytes([at(92), at(93)]) as usize;
        let mut p = 94;
        let mut content = None;
        for _ in 0..nmeta {
            let m = *h.get(p).ok_or(Bad::Format("truncated metalayer index".into()))?;
            if m & 0xe0 != 0xa0 {
                return bad("bad metalayer index");
            }
            let nlen = (m & 0x1f) as usize;
            let name = h.get(p + 1..p + 1 + nlen).ok_or(Bad::Format("truncated metalayer index".into()))?;
            p += 1 + nlen;
            let off = h.get(p..p + 5).ok_or(Bad::Format("truncated metalayer index".into()))?;
            if off[0] != 0xd2 {
                return bad("bad metalayer offset");
            }
            let off = i32::from_be_bytes([off[1], off[2], off[3], off[4]]);
            p += 5;
            if name == b"b2nd" || name == b"caterva" {
                let o = usize::try_from(off).map_err(|_| Bad::Format("bad metalayer offset".into()))?;
                let lenb = h.get(o..o + 5).ok_or(Bad::Format("metalayer past the header".into()))?;
                if lenb[0] != 0xc6 {
                    return bad("metalayer content is not msgpack bin32");
                }
                let len = u32::from_be_bytes([lenb[1], lenb[2], lenb[3], lenb[4]]) as usize;
                content = Some(h.get(o + 5..o + 5 + len).ok_or(Bad::Format("metalayer past the header".into()))?);
            }
        }
        let content = content.ok_or(Bad::Format("no b2nd metalayer (a plain Blosc2 frame, not an N-d array)".into()))?;
        let (shape, chunkshape, blockshape, dtype) = parse_b2nd_meta(content)?;

        // geometry (b2nd.c update_shape_struct) and its consistency with the frame
        let ndim = shape.len();
        if ndim == 0 {
            return unsupported("0-dimensional array");
        }
        if dtype.size() != typesize as usize {
            return bad(format!("dtype {} but frame typesize {typesize}", dtype.descr()));
        }
        let empty = shape.contains(&0);
        let mut extchunkshape = vec![0; ndim];
        let mut nchunks = vec![0; ndim];
        for d in 0..ndim {
            if !empty && (chunkshape[d] == 0 || blockshape[d] == 0) {
                return bad(format!("chunkshape {chunkshape:?} / blockshape {blockshape:?} with a zero axis"));
            }
            if chunkshape[d] > 0 && blockshape[d] > 0 {
                extchunkshape[d] = chunkshape[d].next_multiple_of(blockshape[d]);
                nchunks[d] = shape[d].div_ceil(chunkshape[d]);
            }
        }
        let prod = |v: &[usize]| v.iter().try_fold(1usize, |a, &x| a.checked_mul(x));
        let overflow = || Bad::Format("array sizes overflow".into());
        let chunk_nbytes = prod(&extchunkshape).and_then(|n| n.checked_mul(typesize as usize)).ok_or_else(overflow)?;
        let total_chunks = if empty { 0 } else { prod(&nchunks).ok_or_else(overflow)? };
        if total_chunks.checked_mul(chunk_nbytes) != Some(nbytes as usize) {
            return bad(format!("frame holds {nbytes} bytes, the b2nd metalayer implies {total_chunks} chunks of {chunk_nbytes}"));
        }
        if total_chunks > 0 && chunksize as usize != chunk_nbytes {
            return bad(format!("frame chunk size {chunksize}, the b2nd metalayer implies {chunk_nbytes}"));
        }

        // chunk index: a chunk at header_len + cbytes holding one int64 offset per chunk
        let mut chunks = Vec::new();
        if total_chunks > 0 {
            let idx_pos = header_len + cbytes;
            let idx_head = read(idx_pos, EXT_HEADER.min((frame_len - idx_pos) as usize))?;
            let ih = ChunkHeader::parse(&idx_head).map_err(|e| e.context("chunk index"))?;
            if ih.nbytes % 8 != 0 || ih.nbytes / 8 != total_chunks {
                return bad(format!("chunk index holds {} bytes for {total_chunks} chunks", ih.nbytes));
            }
            if idx_pos + ih.cbytes as u64 > frame_len {
                return bad("chunk index past the end of the frame");
            }
            let idx = decode_chunk(&read(idx_pos, ih.cbytes)?).map_err(|e| e.context("chunk index"))?;
            chunks.reserve_exact(total_chunks);
            let offsets: Vec<i64> = idx.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
            let mut sorted: Vec<u64> = offsets.iter().filter(|&&o| o >= 0).map(|&o| o as u64).collect();
            sorted.sort_unstable();
            sorted.dedup();
            for (i, &o) in offsets.iter().enumerate() {
                if o < 0 {
                    let special = ((o as u64) >> 56) as u8 & 0x07;
                    if !matches!(special, SPECIAL_ZERO | SPECIAL_NAN | SPECIAL_UNINIT) {
                        return bad(format!("chunk {i}: unknown special value in the chunk index ({o:#x})"));
                    }
                    chunks.push(ChunkLoc::Special(special));
                } else {
                    let o = o as u64;
                    if o + EXT_HEADER as u64 > cbytes {
                        return bad(format!("chunk {i}: offset {o} outside the frame data ({cbytes} bytes)"));
                    }
                    let k = sorted.partition_point(|&x| x <= o);
                    let end = sorted.get(k).copied().unwrap_or(cbytes);
                    chunks.push(ChunkLoc::Stored { pos: header_len + o, max_len: end - o });
                }
            }
        }
        Ok(B2nd { path: path.to_path_buf(), dtype, shape, chunkshape, blockshape, extchunkshape, nchunks, chunks })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The array's shape (for nnU-Net cases `(c, z, y, x)`).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The stored element type.
    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }

    /// Shape of the chunks the array is stored in (edge chunks are padded to it).
    pub fn chunkshape(&self) -> &[usize] {
        &self.chunkshape
    }

    /// Shape of the blocks inside a chunk (the unit of decompression).
    pub fn blockshape(&self) -> &[usize] {
        &self.blockshape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole array in C order, converted to `T` (numpy `astype` semantics).
    pub fn read_all<T: FromNpy>(&self) -> Result<Vec<T>> {
        let mut out = vec![T::from_f64(0.0); self.len()];
        let zeros = vec![0; self.shape.len()];
        self.fill_region(&zeros, &self.shape, &mut out, &self.shape, &zeros)?;
        Ok(out)
    }

    /// The whole array as `f32`.
    pub fn read_all_f32(&self) -> Result<Vec<f32>> {
        self.read_all()
    }

    /// The whole array as `i16`.
    pub fn read_all_i16(&self) -> Result<Vec<i16>> {
        self.read_all()
    }

    /// The box `[start, start + size)` of the last three axes for every index of the leading axes (channels), in C
    /// order and converted to `T`; what lies outside the array is `pad` (the semantics of
    /// [`crate::npy::NpyFile::read_box`], acvl_utils `crop_and_pad_nd`). Only the chunks, and inside them only the
    /// blocks, that overlap the box are read and decompressed. Errors: fewer than three axes, an unreadable or
    /// damaged file.
    pub fn read_box<T: FromNpy>(&self, start: [i64; 3], size: [usize; 3], pad: T) -> Result<Vec<T>> {
        let nd = self.shape.len();
        if nd < 3 {
            return Err(DataError::format(&self.path, format!("array of shape {:?} has no (z, y, x) axes", self.shape)));
        }
        let lead = nd - 3;
        let leading: usize = self.shape[..lead].iter().product();
        let mut out = vec![pad; leading * size.iter().product::<usize>()];
        let mut lo: Vec<usize> = vec![0; nd];
        let mut hi: Vec<usize> = self.shape.clone();
        let mut out_shape: Vec<usize> = self.shape[..lead].to_vec();
        out_shape.extend_from_slice(&size);
        let mut origin = vec![0usize; nd];
        for d in 0..3 {
            let n = self.shape[lead + d] as i64;
            let a = start[d].max(0);
            let b = (start[d] + size[d] as i64).min(n);
            if b <= a {
                return Ok(out);
            }
            (lo[lead + d], hi[lead + d], origin[lead + d]) = (a as usize, b as usize, (a - start[d]) as usize);
        }
        self.fill_region(&lo, &hi, &mut out, &out_shape, &origin)?;
        Ok(out)
    }

    /// [`B2nd::read_box`] as `f32`.
    pub fn read_box_f32(&self, start: [i64; 3], size: [usize; 3], pad: f32) -> Result<Vec<f32>> {
        self.read_box(start, size, pad)
    }

    /// [`B2nd::read_box`] as `i16`.
    pub fn read_box_i16(&self, start: [i64; 3], size: [usize; 3], pad: i16) -> Result<Vec<i16>> {
        self.read_box(start, size, pad)
    }

    /// Write the array region `[lo, hi)` (all axes, inside the array, non-empty or nothing is done) into `out`
    /// (C order, shape `out_shape`), array index `a` going to output index `a - lo + origin`.
    fn fill_region<T: FromNpy>(&self, lo: &[usize], hi: &[usize], out: &mut [T], out_shape: &[usize], origin: &[usize]) -> Result<()> {
        let nd = self.shape.len();
        if (0..nd).any(|d| lo[d] >= hi[d]) {
            return Ok(());
        }
        let file = std::fs::File::open(&self.path).map_err(|e| DataError::io(&self.path, e))?;
        let ts = self.dtype.size();
        let strides = |shape: &[usize]| {
            let mut s = vec![1usize; shape.len()];
            for d in (0..shape.len().saturating_sub(1)).rev() {
                s[d] = s[d + 1] * shape[d + 1];
            }
            s
        };
        let out_strides = strides(out_shape);
        let block_strides = strides(&self.blockshape);
        let blocks_per_chunk: Vec<usize> = (0..nd).map(|d| self.extchunkshape[d] / self.blockshape[d]).collect();
        let block_grid_strides = strides(&blocks_per_chunk);
        let chunk_grid_strides = strides(&self.nchunks);
        let chunk_nbytes = self.extchunkshape.iter().product::<usize>() * ts;
        let block_nbytes = self.blockshape.iter().product::<usize>() * ts;
        let mut block = vec![0u8; block_nbytes];
        let mut scratch = Scratch::default();
        let fail = |e: Bad, nchunk: usize| e.context(&format!("chunk {nchunk}")).into_error(&self.path);

        let c_lo: Vec<usize> = (0..nd).map(|d| lo[d] / self.chunkshape[d]).collect();
        let c_hi: Vec<usize> = (0..nd).map(|d| (hi[d] - 1) / self.chunkshape[d] + 1).collect();
        let mut ci = c_lo.clone();
        loop {
            let nchunk: usize = (0..nd).map(|d| ci[d] * chunk_grid_strides[d]).sum();
            let chunk = self.load_chunk(&file, nchunk).map_err(|e| fail(e, nchunk))?;
            if let Chunk::Stored(_, h) = &chunk
                && (h.nbytes != chunk_nbytes || (h.special == 0 && h.blocksize != block_nbytes.min(chunk_nbytes)))
            {
                let msg = format!(
                    "holds {} bytes in blocks of {}, the b2nd metalayer implies {chunk_nbytes} in blocks of {block_nbytes}",
                    h.nbytes, h.blocksize
                );
                return Err(fail(Bad::Format(msg), nchunk));
            }
            let c0: Vec<usize> = (0..nd).map(|d| ci[d] * self.chunkshape[d]).collect();
            // region inside this chunk, chunk-local coordinates
            let rlo: Vec<usize> = (0..nd).map(|d| lo[d].max(c0[d]) - c0[d]).collect();
            let rhi: Vec<usize> = (0..nd).map(|d| hi[d].min(c0[d] + self.chunkshape[d]) - c0[d]).collect();
            let b_lo: Vec<usize> = (0..nd).map(|d| rlo[d] / self.blockshape[d]).collect();
            let b_hi: Vec<usize> = (0..nd).map(|d| (rhi[d] - 1) / self.blockshape[d] + 1).collect();
            let mut bi = b_lo.clone();
            loop {
                let nblock: usize = (0..nd).map(|d| bi[d] * block_grid_strides[d]).sum();
                match &chunk {
                    Chunk::Stored(bytes, h) if h.special != 0 => fill_special(h.special, h.typesize, h.special_value(bytes), &mut block),
                    Chunk::Stored(bytes, h) => decode_block(bytes, h, nblock, &mut block, &mut scratch),
                    Chunk::Special(kind) => fill_special(*kind, ts, &[], &mut block),
                }
                .map_err(|e| fail(e, nchunk))?;
                // overlap of block and region, chunk-local
                let b0: Vec<usize> = (0..nd).map(|d| bi[d] * self.blockshape[d]).collect();
                let olo: Vec<usize> = (0..nd).map(|d| rlo[d].max(b0[d])).collect();
                let ohi: Vec<usize> = (0..nd).map(|d| rhi[d].min(b0[d] + self.blockshape[d])).collect();
                let run = ohi[nd - 1] - olo[nd - 1];
                let mut idx = olo.clone();
                loop {
                    let src: usize = (0..nd).map(|d| (idx[d] - b0[d]) * block_strides[d]).sum();
                    let dst: usize = (0..nd).map(|d| (c0[d] + idx[d] - lo[d] + origin[d]) * out_strides[d]).sum();
                    convert_into(self.dtype, &block[src * ts..(src + run) * ts], &mut out[dst..dst + run]);
                    if !odometer(&mut idx[..nd - 1], &olo[..nd - 1], &ohi[..nd - 1]) {
                        break;
                    }
                }
                if !odometer(&mut bi, &b_lo, &b_hi) {
                    break;
                }
            }
            if !odometer(&mut ci, &c_lo, &c_hi) {
                break;
            }
        }
        Ok(())
    }

    /// Read chunk `n` (its bytes, or its special value).
    fn load_chunk(&self, file: &std::fs::File, n: usize) -> Res<Chunk> {
        let (pos, max_len) = match self.chunks.get(n) {
            Some(&ChunkLoc::Stored { pos, max_len }) => (pos, max_len),
            Some(&ChunkLoc::Special(kind)) => return Ok(Chunk::Special(kind)),
            None => return bad("not in the chunk index"),
        };
        let read = |len: usize| -> Res<Vec<u8>> {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, pos).map_err(|e| Bad::Format(format!("read of {len} bytes at {pos}: {e}")))?;
            Ok(buf)
        };
        // chunks are stored back to back, so the bytes up to the next chunk are (nearly always) exactly this chunk:
        // read them in one go; the chunk's own header says how long it is
        const ONE_READ: u64 = 64 << 20;
        let mut bytes = read(if max_len <= ONE_READ { max_len } else { EXT_HEADER as u64 } as usize)?;
        let h = ChunkHeader::parse(&bytes)?;
        if h.cbytes as u64 > max_len {
            return bad(format!("chunk of {} bytes overlaps the next chunk or the index ({max_len} bytes available)", h.cbytes));
        }
        if h.cbytes > bytes.len() {
            bytes = read(h.cbytes)?;
        }
        bytes.truncate(h.cbytes);
        Ok(Chunk::Stored(bytes, h))
    }
}

/// Advance the multi-index `idx` over the box `[lo, hi)` in C order; false when it wraps around (done).
fn odometer(idx: &mut [usize], lo: &[usize], hi: &[usize]) -> bool {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < hi[d] {
            return true;
        }
        idx[d] = lo[d];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lz4(src: &[u8], n: usize) -> std::result::Result<Vec<u8>, String> {
        let mut out = vec![0u8; n];
        lz4_decompress(src, &mut out).map(|_| out)
    }

    #[test]
    fn lz4_literals_and_overlapping_matches() {
        // "abc", then a 12-byte match at distance 3 (overlaps itself), then the literals "xyz"
        let s = [0x38, b'a', b'b', b'c', 3, 0, 0x30, b'x', b'y', b'z'];
        assert_eq!(lz4(&s, 18).unwrap(), b"abcabcabcabcabcxyz");
        // run of one byte: distance 1, length 4 + 15 + 255 + 7 = 281 (two extension bytes)
        let s = [0x1f, b'q', 1, 0, 255, 7, 0x10, b'!'];
        let out = lz4(&s, 283).unwrap();
        assert!(out[..282].iter().all(|&b| b == b'q') && out[282] == b'!');
        // distance 2 pattern of odd length (9), then an empty final literal run
        let s = [0x25, b'a', b'b', 2, 0, 0x00];
        assert_eq!(lz4(&s, 11).unwrap(), b"abababababa");
        // long literal run: 15 + 255 + 5 = 275 literals (extension 255 then 5), stream ends after them
        let mut s = vec![0xf0, 255, 5];
        s.extend((0..275u32).map(|i| (i * 7 % 251) as u8));
        assert_eq!(lz4(&s, 275).unwrap(), s[3..].to_vec());
        // a non-overlapping far match
        let mut s = vec![0xa0 | 0x02];
        s.extend(b"0123456789");
        s.extend([10, 0, 0x00]);
        assert_eq!(lz4(&s, 16).unwrap(), b"0123456789012345");
    }

    #[test]
    fn lz4_rejects_damaged_streams() {
        assert!(lz4(&[0x38, b'a', b'b', b'c', 0, 0, 0x00], 15).is_err()); // offset 0
        assert!(lz4(&[0x38, b'a', b'b', b'c', 4, 0, 0x00], 15).is_err()); // offset before the output start
        assert!(lz4(&[0x38, b'a', b'b', b'c', 3], 15).is_err()); // truncated offset
        assert!(lz4(&[0x50, b'a', b'b'], 5).is_err()); // literals past the input
        assert!(lz4(&[0x30, b'a', b'b', b'c'], 2).is_err()); // literals past the output
        assert!(lz4(&[0x30, b'a', b'b', b'c'], 4).is_err()); // too short an output
        assert!(lz4(&[0x38, b'a', b'b', b'c', 3, 0, 0x00], 14).is_err()); // match past the output
        assert!(lz4(&[0xf0, 255], 300).is_err()); // truncated length
        assert!(lz4(&[], 0).is_err());
    }

    #[test]
    fn blosclz_literals_runs_and_matches() {
        // literal run of 4, then a match: ctrl = (len-2+1)<<5 | ofs_hi ; len = (ctrl>>5) - 1 + 3 ; back = code + 1
        // "abcd" + match (len 5, distance 4: code 3) + literal "Z"
        let s = [3, b'a', b'b', b'c', b'd', (3 << 5), 3, 0, b'Z'];
        let mut out = vec![0u8; 10];
        blosclz_decompress(&s, &mut out).unwrap();
        assert_eq!(out, b"abcdabcdaZ");
        // a run: distance 1 (code 0), long length via the extension byte: len = 6 + 10 + 3 = 19
        let s = [0, b'x', (7 << 5), 10, 0, 0, b'y'];
        let mut out = vec![0u8; 21];
        blosclz_decompress(&s, &mut out).unwrap();
        assert_eq!(&out[..20], &[b'x'; 20]);
        assert_eq!(out[20], b'y');
        // a distance before the start of the output is an error, and so is a wrong output size
        assert!(blosclz_decompress(&[0, b'x', (3 << 5), 5, 0, 0, b'y'], &mut [0u8; 7]).is_err());
        assert!(blosclz_decompress(&[3, b'a', b'b', b'c', b'd'], &mut [0u8; 5]).is_err());
    }

    #[test]
    fn unshuffle_inverts_the_byte_shuffle() {
        // two 4-byte elements plus 3 trailing bytes
        let elems: [u8; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        let shuffled = [1, 5, 2, 6, 3, 7, 4, 8, 9, 10, 11];
        let mut out = [0u8; 11];
        unshuffle(4, &shuffled, &mut out);
        assert_eq!(out, elems);
        // the generic path (typesize 3) and the specialised one agree with the definition
        let src: Vec<u8> = (0..103u32).map(|i| (i * 37 % 256) as u8).collect();
        for ts in [2usize, 3, 4, 8] {
            let mut out = vec![0u8; src.len()];
            unshuffle(ts, &src, &mut out);
            let n = src.len() / ts;
            for i in 0..n * ts {
                assert_eq!(out[i], src[(i % ts) * n + i / ts], "typesize {ts} byte {i}");
            }
            assert_eq!(&out[n * ts..], &src[n * ts..]);
        }
    }

    #[test]
    fn msgpack_b2nd_metalayer() {
        // [0, 2, [400, 3], [110, 3], [57, 3], 0, "|u1"] as c-blosc2 writes it (int64 shape, int32 chunks/blocks)
        let mut m = vec![0x97, 0, 2, 0x92, 0xd3];
        m.extend(400i64.to_be_bytes());
        m.push(0xd3);
        m.extend(3i64.to_be_bytes());
        for v in [[110i32, 3], [57, 3]] {
            m.push(0x92);
            for x in v {
                m.push(0xd2);
                m.extend(x.to_be_bytes());
            }
        }
        m.extend([0, 0xdb, 0, 0, 0, 3]);
        m.extend(b"|u1");
        let (shape, chunks, blocks, dtype) = parse_b2nd_meta(&m).unwrap();
        assert_eq!((shape, chunks, blocks, dtype), (vec![400, 3], vec![110, 3], vec![57, 3], NpyDtype::U8));
        assert!(parse_b2nd_meta(&m[..m.len() - 1]).is_err());
        let mut big = m.clone();
        let n = big.len();
        big[n - 3..].copy_from_slice(b">i2");
        assert!(matches!(parse_b2nd_meta(&big), Err(Bad::Unsupported(_))));
    }

    /// What the chunks of a fixture use: (codecs, shuffle, split streams, special ids in headers, special ids in the
    /// index, memcpyed chunks).
    fn features(name: &str) -> (Vec<u8>, bool, bool, Vec<u8>, Vec<u8>, bool) {
        let a = B2nd::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blosc2").join(name)).unwrap();
        let file = std::fs::File::open(a.path()).unwrap();
        let (mut codecs, mut shuffle, mut split, mut special, mut index_special, mut memcpyed) =
            (vec![], false, false, vec![], vec![], false);
        for n in 0..a.chunks.len() {
            match a.load_chunk(&file, n).unwrap() {
                Chunk::Special(k) => index_special.push(k),
                Chunk::Stored(_, h) if h.special != 0 => special.push(h.special),
                Chunk::Stored(_, h) => {
                    codecs.push(h.codec);
                    shuffle |= h.filters.contains(&FILTER_SHUFFLE);
                    split |= !h.dont_split && h.typesize > 1;
                    memcpyed |= h.memcpyed;
                }
            }
        }
        for v in [&mut codecs, &mut special, &mut index_special] {
            v.sort_unstable();
            v.dedup();
        }
        (codecs, shuffle, split, special, index_special, memcpyed)
    }

    #[test]
    fn fixtures_exercise_the_decoder_paths() {
        // the integration tests (tests/blosc2.rs) only mean something if the fixtures use these features
        let f = features("hippo_001.b2nd");
        assert_eq!((f.0, f.1), (vec![CODEC_LZ4], false));
        let f = features("case_shuffle.b2nd");
        assert_eq!((f.0, f.1), (vec![CODEC_LZ4], true));
        assert!(!features("case_nofilter.b2nd").1);
        assert!(features("lz4_split.b2nd").2);
        assert_eq!(features("blosclz.b2nd").0, vec![CODEC_BLOSCLZ]);
        assert_eq!(features("zlib.b2nd").0, vec![CODEC_ZLIB]);
        for name in ["zeros_f32.b2nd", "zeros_api.b2nd", "nan_api.b2nd", "full_api.b2nd", "const_i16.b2nd"] {
            let f = features(name);
            eprintln!("{name}: header specials {:?}, index specials {:?}, codecs {:?}", f.3, f.4, f.0);
        }
        assert!(!features("zeros_f32.b2nd").3.is_empty() || !features("zeros_f32.b2nd").4.is_empty());
        // the index of 125 chunks is a real BloscLZ + shuffle stream, not a memcpyed one
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blosc2/i8_many_chunks.b2nd");
        let bytes = std::fs::read(p).unwrap();
        let header_len = u32::from_be_bytes(bytes[11..15].try_into().unwrap()) as usize;
        let cbytes = i64::from_be_bytes(bytes[39..47].try_into().unwrap()) as usize;
        let ih = ChunkHeader::parse(&bytes[header_len + cbytes..]).unwrap();
        assert_eq!((ih.codec, ih.memcpyed, ih.special, ih.filters[5], ih.nbytes), (CODEC_BLOSCLZ, false, 0, FILTER_SHUFFLE, 1000));
        assert!(ih.cbytes < 1000);
    }

    #[test]
    fn odometer_walks_a_box_in_c_order() {
        let (lo, hi) = ([1, 0], [3, 2]);
        let mut idx = lo;
        let mut seen = vec![idx];
        while odometer(&mut idx, &lo, &hi) {
            seen.push(idx);
        }
        assert_eq!(seen, vec![[1, 0], [1, 1], [2, 0], [2, 1]]);
    }
}
