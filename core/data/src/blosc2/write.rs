//! A pure-Rust writer of Blosc2 `.b2nd` files: the layout Python nnU-Net 2.8.1 gives its preprocessed cases
//! (`nnUNetDatasetBlosc2.save_case`), so that one preprocessed folder serves both tools.
//!
//! What is written (the byte layout of python-blosc2 4.x / c-blosc2 2.x, see the module docs of [`super`]):
//! * one contiguous frame: the msgpack header with the `b2nd` metalayer (shape, chunk shape, block shape, numpy
//!   dtype), the chunks in C order of the chunk grid, a memcpyed index chunk of 64-bit offsets and the trailer with
//!   no variable-length metalayers;
//! * each chunk holds `extchunkshape` items (the chunk shape rounded up to whole blocks; items outside the array or
//!   the chunk are zeros), block after block, each block in C order;
//! * blocks are filtered (NOFILTER or byte SHUFFLE) and compressed with LZ4 (own compressor, [`lz4_compress`]),
//!   split into `typesize` streams when shuffled (c-blosc2's `BLOSC_AUTO_SPLIT` rule for LZ4); an all-zero stream is
//!   stored as size 0, a stream LZ4 cannot shrink is stored raw, a chunk that does not shrink is stored memcpyed and an
//!   all-zero chunk only as a special value in the chunk index (as c-blosc2's frames store it).
//!
//! nnU-Net compresses with LZ4HC at level 5; LZ4HC output is LZ4's block format, so readers see no difference but
//! the size (ours searches hash chains as LZ4HC does; see [`lz4_compress`]).

use super::{CODEC_LZ4, EXT_HEADER, FILTER_NOFILTER, FILTER_SHUFFLE, FRAME_HEADER_MINLEN, SPECIAL_ZERO, odometer};
use crate::npy::NpyDtype;
use rayon::prelude::*;

/// The filter applied to every block before it is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    NoFilter,
    /// Byte shuffle (blosc's `SHUFFLE`): byte `j` of every element, then byte `j + 1`, …
    Shuffle,
}

impl Filter {
    fn id(self) -> u8 {
        match self {
            Filter::NoFilter => FILTER_NOFILTER,
            Filter::Shuffle => FILTER_SHUFFLE,
        }
    }
}

/// Compression level recorded in the frame header (nnU-Net's `clevel`); it only matters to a later writer.
const CLEVEL: u8 = 5;
/// `BLOSC_AUTO_SPLIT - 1`, as c-blosc2 stores the split mode in the frame header.
const SPLIT_AUTO: u8 = 2;
/// `BLOSC2_VERSION_FORMAT` of the chunks and the LZ4 format version.
const CHUNK_VERSION: u8 = 5;
const LZ4_VERSION: u8 = 1;
/// `BLOSC_MIN_BUFFERSIZE`: blocks with fewer elements are not split.
const MIN_BUFFERSIZE: usize = 32;
/// The frame trailer: `[1, [metalayer index of nothing], trailer_len, fingerprint none]`.
const TRAILER_LEN: usize = 35;

/// Encode `bytes` (the array in C order, little-endian elements of `dtype`, shape `shape`) as a `.b2nd` frame with
/// the given chunk and block shapes. Errors (as text, for the caller to attach a file name) on inconsistent shapes.
pub fn encode(bytes: &[u8], dtype: NpyDtype, shape: &[usize], chunks: &[usize], blocks: &[usize], filter: Filter) -> Result<Vec<u8>, String> {
    let nd = shape.len();
    let ts = dtype.size();
    if nd == 0 || nd > 15 || chunks.len() != nd || blocks.len() != nd {
        return Err(format!("shape {shape:?}, chunks {chunks:?}, blocks {blocks:?}: need 1 to 15 axes, the same number each"));
    }
    if shape.contains(&0) {
        return Err(format!("empty array of shape {shape:?}"));
    }
    if let Some(d) = (0..nd).find(|&d| blocks[d] == 0 || blocks[d] > chunks[d]) {
        return Err(format!("block shape {blocks:?} must be positive and within the chunk shape {chunks:?} (axis {d})"));
    }
    let items = shape.iter().product::<usize>();
    if bytes.len() != items * ts {
        return Err(format!("{} bytes for {items} elements of {}", bytes.len(), dtype.descr()));
    }
    let ext: Vec<usize> = chunks.iter().zip(blocks).map(|(c, b)| c.next_multiple_of(*b)).collect();
    let block_nbytes = blocks.iter().product::<usize>() * ts;
    let chunk_nbytes = ext.iter().product::<usize>() * ts;
    if chunk_nbytes > i32::MAX as usize - EXT_HEADER {
        return Err(format!("chunks of {chunk_nbytes} bytes are larger than Blosc2 allows"));
    }
    let nchunks: Vec<usize> = shape.iter().zip(chunks).map(|(s, c)| s.div_ceil(*c)).collect();
    let total_chunks: usize = nchunks.iter().product();
    let geometry = Geometry { shape, chunks, blocks, ext: &ext, ts };

    // chunks are gathered and compressed independently (in parallel); `None`: a chunk of zeros
    let encoded: Vec<Option<Vec<u8>>> = (0..total_chunks)
        .into_par_iter()
        .map_init(
            || (vec![0u8; chunk_nbytes], Vec::new()),
            |(chunk, scratch), k| {
                let mut ci = vec![0usize; nd];
                let mut rest = k;
                for d in (0..nd).rev() {
                    ci[d] = rest % nchunks[d];
                    rest /= nchunks[d];
                }
                geometry.gather(bytes, &ci, chunk);
                if chunk.iter().all(|&b| b == 0) {
                    return None;
                }
                let mut out = Vec::new();
                encode_chunk(chunk, ts, block_nbytes, filter, scratch, &mut out);
                Some(out)
            },
        )
        .collect();
    // offsets relative to the end of the header; a chunk of zeros is only a special value in the index, as c-blosc2's
    // frames store it
    let mut offsets = Vec::with_capacity(total_chunks);
    let mut cbytes = 0usize;
    for e in &encoded {
        match e {
            None => offsets.push(((1u64 << 63) | ((SPECIAL_ZERO as u64) << 56)) as i64),
            Some(c) => {
                offsets.push(cbytes as i64);
                cbytes += c.len();
            }
        }
    }

    let meta = b2nd_meta(shape, chunks, blocks, dtype);
    let index_nbytes = EXT_HEADER + 8 * total_chunks;
    let mut out = frame_header(&meta, FrameSizes {
        nbytes: (total_chunks * chunk_nbytes) as i64,
        cbytes: cbytes as i64,
        typesize: ts as i32,
        blocksize: block_nbytes as i32,
        chunksize: chunk_nbytes as i32,
        filter,
        index_nbytes,
    });
    out.reserve_exact(cbytes + index_nbytes + TRAILER_LEN);
    for c in encoded.into_iter().flatten() {
        out.extend_from_slice(&c);
    }
    // the chunk index: a memcpyed chunk of little-endian int64 offsets
    let index: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    let mut filters = [0u8; 6];
    filters[5] = FILTER_SHUFFLE;
    out.extend_from_slice(&chunk_header(0x17, 8, index.len(), index.len(), EXT_HEADER + index.len(), filters, 0));
    out.extend_from_slice(&index);
    out.extend_from_slice(&[0x94, 0x01, 0x93, 0xcd, 0x00, 0x06, 0xde, 0x00, 0x00, 0xdc, 0x00, 0x00, 0xce]);
    out.extend_from_slice(&(TRAILER_LEN as u32).to_be_bytes());
    out.extend_from_slice(&[0xd8, 0x00]);
    out.extend_from_slice(&[0u8; 16]);
    debug_assert_eq!(u64::from_be_bytes(out[16..24].try_into().unwrap_or_default()), out.len() as u64);
    Ok(out)
}

/// Where the elements of a chunk come from.
struct Geometry<'a> {
    shape: &'a [usize],
    chunks: &'a [usize],
    blocks: &'a [usize],
    ext: &'a [usize],
    ts: usize,
}

impl Geometry<'_> {
    /// Fill `out` (`extchunkshape` elements) with chunk `ci`: its blocks in C order of the block grid, each block's
    /// elements in C order; zeros where a block reaches past the chunk or the array.
    fn gather(&self, src: &[u8], ci: &[usize], out: &mut [u8]) {
        let (nd, ts) = (self.shape.len(), self.ts);
        out.fill(0);
        let origin: Vec<usize> = ci.iter().zip(self.chunks).map(|(i, c)| i * c).collect();
        let bgrid: Vec<usize> = self.ext.iter().zip(self.blocks).map(|(e, b)| e / b).collect();
        let rows_per_block: usize = self.blocks[..nd - 1].iter().product();
        let row_len = self.blocks[nd - 1];
        let mut strides = vec![1usize; nd];
        for d in (0..nd - 1).rev() {
            strides[d] = strides[d + 1] * self.shape[d + 1];
        }
        // the valid extent of this chunk per axis (within the chunk shape and the array)
        let valid: Vec<usize> = (0..nd).map(|d| self.chunks[d].min(self.shape[d] - origin[d])).collect();
        let zeros = vec![0usize; nd];
        let mut bi = zeros.clone();
        let mut o = 0;
        loop {
            let last_start = bi[nd - 1] * row_len;
            let count = row_len.min(valid[nd - 1].saturating_sub(last_start));
            let mut r = vec![0usize; nd - 1];
            for _ in 0..rows_per_block {
                let mut inside = count > 0;
                let mut src_elem = origin[nd - 1] + last_start;
                for d in 0..nd - 1 {
                    let p = bi[d] * self.blocks[d] + r[d];
                    inside &= p < valid[d];
                    src_elem += (origin[d] + p) * strides[d];
                }
                if inside {
                    out[o..o + count * ts].copy_from_slice(&src[src_elem * ts..(src_elem + count) * ts]);
                }
                o += row_len * ts;
                odometer(&mut r, &zeros[..nd - 1], &self.blocks[..nd - 1]);
            }
            if !odometer(&mut bi, &zeros, &bgrid) {
                break;
            }
        }
        debug_assert_eq!(o, out.len());
    }
}

/// The 32-byte extended chunk header (no special value, no dictionary: the Blosc2 flag bytes stay zero).
fn chunk_header(flags: u8, ts: usize, nbytes: usize, blocksize: usize, cbytes: usize, filters: [u8; 6], udcodec: u8) -> [u8; 32] {
    let mut h = [0u8; EXT_HEADER];
    h[0] = CHUNK_VERSION;
    h[1] = LZ4_VERSION;
    h[2] = flags;
    h[3] = ts as u8;
    h[4..8].copy_from_slice(&(nbytes as i32).to_le_bytes());
    h[8..12].copy_from_slice(&(blocksize as i32).to_le_bytes());
    h[12..16].copy_from_slice(&(cbytes as i32).to_le_bytes());
    h[16..22].copy_from_slice(&filters);
    h[22] = udcodec;
    h
}

/// Append one chunk (`chunk`: whole blocks of `block_nbytes`) to `out`.
fn encode_chunk(chunk: &[u8], ts: usize, block_nbytes: usize, filter: Filter, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    // flags: extended header (0x01 | 0x04), codec in the top three bits
    let base = 0x05 | (CODEC_LZ4 << 5);
    let mut filters = [0u8; 6];
    filters[0] = filter.id();
    let split = filter == Filter::Shuffle && ts > 1 && block_nbytes / ts >= MIN_BUFFERSIZE;
    let nblocks = chunk.len() / block_nbytes;
    let start = out.len();
    out.extend_from_slice(&[0u8; EXT_HEADER]);
    let bstarts = out.len();
    out.resize(bstarts + 4 * nblocks, 0);
    for (j, block) in chunk.chunks_exact(block_nbytes).enumerate() {
        let at = (out.len() - start) as i32;
        out[bstarts + 4 * j..bstarts + 4 * j + 4].copy_from_slice(&at.to_le_bytes());
        let filtered: &[u8] = if filter == Filter::Shuffle && ts > 1 {
            scratch.resize(block.len(), 0);
            shuffle(ts, block, scratch);
            scratch
        } else {
            block
        };
        let nstreams = if split { ts } else { 1 };
        for stream in filtered.chunks_exact(block_nbytes / nstreams) {
            let size_at = out.len();
            out.extend_from_slice(&[0u8; 4]);
            let csize = if stream.iter().all(|&b| b == 0) {
                0
            } else {
                lz4_compress(stream, out);
                let c = out.len() - size_at - 4;
                if c >= stream.len() {
                    out.truncate(size_at + 4);
                    out.extend_from_slice(stream);
                }
                out.len() - size_at - 4
            };
            out[size_at..size_at + 4].copy_from_slice(&(csize as i32).to_le_bytes());
        }
    }
    let dont_split = if split { 0 } else { 0x10 };
    if out.len() - start > chunk.len() + EXT_HEADER {
        // does not shrink: stored as it is
        out.truncate(start);
        out.extend_from_slice(&chunk_header(base | 0x02 | 0x10, ts, chunk.len(), block_nbytes, EXT_HEADER + chunk.len(), filters, CODEC_LZ4));
        out.extend_from_slice(chunk);
        return;
    }
    let cbytes = out.len() - start;
    out[start..start + EXT_HEADER].copy_from_slice(&chunk_header(base | dont_split, ts, chunk.len(), block_nbytes, cbytes, filters, CODEC_LZ4));
}

/// blosc's byte shuffle of `src` (typesize `ts`) into `dst`; trailing bytes are copied.
fn shuffle(ts: usize, src: &[u8], dst: &mut [u8]) {
    let n = src.len() / ts;
    for (i, e) in src[..n * ts].chunks_exact(ts).enumerate() {
        for (j, &b) in e.iter().enumerate() {
            dst[j * n + i] = b;
        }
    }
    dst[n * ts..].copy_from_slice(&src[n * ts..]);
}

/// Candidates tried per position: a hash chain searched like LZ4HC's at its level 5 (nnU-Net's `clevel`), so the files
/// come out about as small as nnU-Net's.
const MAX_ATTEMPTS: usize = 16;

/// A match this long ends the search (and the lazy look one byte further): longer ones gain almost nothing, and in
/// long runs (background) every candidate would otherwise be extended over the whole run.
const GOOD_ENOUGH: usize = 256;

/// The number of leading bytes `a` and `b` share (up to the shorter length), compared eight at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut k = 0;
    while k + 8 <= n {
        let x = u64::from_le_bytes(a[k..k + 8].try_into().unwrap_or_default()) ^ u64::from_le_bytes(b[k..k + 8].try_into().unwrap_or_default());
        if x != 0 {
            return k + (x.trailing_zeros() / 8) as usize;
        }
        k += 8;
    }
    while k < n && a[k] == b[k] {
        k += 1;
    }
    k
}

/// Append the LZ4 *block* encoding of `src` to `out`. Matches are found through hash chains (the last
/// [`MAX_ATTEMPTS`] earlier positions with the same 4-byte hash within the 64 KiB window; the longest wins, extended
/// backwards over pending literals), as LZ4HC does. The format's end rules hold: the last 5 bytes are literals and no
/// match starts in the last 12.
pub fn lz4_compress(src: &[u8], out: &mut Vec<u8>) {
    const MIN_MATCH: usize = 4;
    const LAST_LITERALS: usize = 5;
    const MF_LIMIT: usize = 12;
    const HASH_LOG: u32 = 15;
    const WINDOW: usize = 0xffff;
    let n = src.len();
    let read32 = |i: usize| u32::from_le_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]);
    let hash = |v: u32| (v.wrapping_mul(2_654_435_761) >> (32 - HASH_LOG)) as usize;
    let mut anchor = 0;
    if n > MF_LIMIT {
        // head: the latest position per hash; chain[p % 64 Ki]: distance back to the previous one (0: none)
        let mut head = vec![u32::MAX; 1 << HASH_LOG];
        let mut chain = vec![0u16; WINDOW + 1];
        let limit = n - MF_LIMIT;
        let match_end_limit = n - LAST_LITERALS;
        let mut inserted = 0;
        // put the positions before `upto` into the chains
        let mut insert = |upto: usize, head: &mut Vec<u32>, chain: &mut Vec<u16>| {
            while inserted < upto {
                let h = hash(read32(inserted));
                let prev = head[h];
                chain[inserted & WINDOW] = if prev != u32::MAX && inserted - prev as usize <= WINDOW { (inserted - prev as usize) as u16 } else { 0 };
                head[h] = inserted as u32;
                inserted += 1;
            }
        };
        // the longest earlier match of position i: (length, position); length 0 when there is none
        let find = |i: usize, head: &[u32], chain: &[u16]| -> (usize, usize) {
            let v = read32(i);
            let (mut best_len, mut best_pos) = (0, 0);
            let mut cand = head[hash(v)];
            for _ in 0..MAX_ATTEMPTS {
                if cand == u32::MAX || i - cand as usize > WINDOW {
                    break;
                }
                let c = cand as usize;
                let probe = best_len.min(match_end_limit - i - 1);
                if src[c + probe] == src[i + probe] && read32(c) == v {
                    let len = MIN_MATCH + common_prefix(&src[c + MIN_MATCH..], &src[i + MIN_MATCH..match_end_limit]);
                    if len > best_len {
                        (best_len, best_pos) = (len, c);
                        if len >= GOOD_ENOUGH || i + len >= match_end_limit {
                            break;
                        }
                    }
                }
                match chain[c & WINDOW] {
                    0 => break,
                    d => cand = (c - d as usize) as u32,
                }
            }
            (best_len, best_pos)
        };
        let mut i = 0;
        while i < limit {
            insert(i, &mut head, &mut chain);
            let (mut len, mut pos) = find(i, &head, &chain);
            if len < MIN_MATCH {
                i += 1;
                continue;
            }
            // lazy evaluation: a longer match one byte later wins
            while len < GOOD_ENOUGH && i + 1 < limit {
                insert(i + 1, &mut head, &mut chain);
                let (l2, p2) = find(i + 1, &head, &chain);
                if l2 <= len {
                    break;
                }
                (i, len, pos) = (i + 1, l2, p2);
            }
            // extend backwards over literals that also match
            let (mut s, mut c) = (i, pos);
            while s > anchor && c > 0 && src[s - 1] == src[c - 1] {
                s -= 1;
                c -= 1;
                len += 1;
            }
            lz4_sequence(&src[anchor..s], Some((s - c, len)), out);
            i = s + len;
            anchor = i;
        }
    }
    lz4_sequence(&src[anchor..], None, out);
}

/// One LZ4 sequence: the token, the literals and, except for the last sequence, the match (distance, length).
fn lz4_sequence(literals: &[u8], m: Option<(usize, usize)>, out: &mut Vec<u8>) {
    let ext = |mut v: usize, out: &mut Vec<u8>| {
        while v >= 255 {
            out.push(255);
            v -= 255;
        }
        out.push(v as u8);
    };
    let lit = literals.len();
    let ml = m.map_or(0, |(_, len)| len - 4);
    out.push(((lit.min(15) as u8) << 4) | ml.min(15) as u8);
    if lit >= 15 {
        ext(lit - 15, out);
    }
    out.extend_from_slice(literals);
    if let Some((dist, _)) = m {
        out.extend_from_slice(&(dist as u16).to_le_bytes());
        if ml >= 15 {
            ext(ml - 15, out);
        }
    }
}

/// The `b2nd` metalayer content: msgpack `[0, ndim, shape (int64), chunkshape (int32), blockshape (int32), 0, dtype]`.
fn b2nd_meta(shape: &[usize], chunks: &[usize], blocks: &[usize], dtype: NpyDtype) -> Vec<u8> {
    let nd = shape.len() as u8;
    let mut m = vec![0x97, 0x00, nd, 0x90 | nd];
    for &s in shape {
        m.push(0xd3);
        m.extend_from_slice(&(s as i64).to_be_bytes());
    }
    for v in [chunks, blocks] {
        m.push(0x90 | nd);
        for &x in v {
            m.push(0xd2);
            m.extend_from_slice(&(x as i32).to_be_bytes());
        }
    }
    m.push(0x00);
    let descr = dtype.descr().as_bytes();
    m.push(0xdb);
    m.extend_from_slice(&(descr.len() as u32).to_be_bytes());
    m.extend_from_slice(descr);
    m
}

struct FrameSizes {
    nbytes: i64,
    cbytes: i64,
    typesize: i32,
    blocksize: i32,
    chunksize: i32,
    filter: Filter,
    /// Bytes of the index chunk that follows the data chunks.
    index_nbytes: usize,
}

/// The frame header (c-blosc2's `new_header_frame`) with the one metalayer `b2nd`.
fn frame_header(meta: &[u8], s: FrameSizes) -> Vec<u8> {
    let mut h = Vec::with_capacity(FRAME_HEADER_MINLEN + 32 + meta.len());
    h.push(0x9e);
    h.push(0xa8);
    h.extend_from_slice(b"b2frame\0");
    h.push(0xd2);
    h.extend_from_slice(&[0; 4]); // header length, below
    h.push(0xcf);
    h.extend_from_slice(&[0; 8]); // frame length, below
    h.push(0xa4);
    h.push(0x02 | 0x10); // frame format version 2, 64-bit offsets
    h.push(0x00); // contiguous frame
    h.push(CODEC_LZ4 | (CLEVEL << 4));
    h.push(SPLIT_AUTO);
    h.push(0xd3);
    h.extend_from_slice(&s.nbytes.to_be_bytes());
    h.push(0xd3);
    h.extend_from_slice(&s.cbytes.to_be_bytes());
    for v in [s.typesize, s.blocksize, s.chunksize] {
        h.push(0xd2);
        h.extend_from_slice(&v.to_be_bytes());
    }
    h.extend_from_slice(&[0xd1, 0x00, 0x01, 0xd1, 0x00, 0x01]); // compression / decompression threads
    h.push(0xc2); // no variable-length metalayers
    h.push(0xd8);
    h.push(6); // filter slots
    let mut pipeline = [0u8; 16];
    pipeline[0] = s.filter.id();
    pipeline[6] = CODEC_LZ4; // udcodec slot holds the codec, as c-blosc2 writes it
    h.extend_from_slice(&pipeline);
    debug_assert_eq!(h.len(), FRAME_HEADER_MINLEN);
    // metalayers: [index size, {"b2nd": offset}, [bin32 content]]
    h.push(0x93);
    h.push(0xcd);
    let map_size_at = h.len();
    h.extend_from_slice(&[0; 2]);
    h.extend_from_slice(&[0xde, 0x00, 0x01, 0xa4]);
    h.extend_from_slice(b"b2nd");
    h.push(0xd2);
    let offset_at = h.len();
    h.extend_from_slice(&[0; 4]);
    let map_size = (h.len() - FRAME_HEADER_MINLEN) as u16;
    h[map_size_at..map_size_at + 2].copy_from_slice(&map_size.to_be_bytes());
    h.extend_from_slice(&[0xdc, 0x00, 0x01]);
    let content_at = h.len() as i32;
    h[offset_at..offset_at + 4].copy_from_slice(&content_at.to_be_bytes());
    h.push(0xc6);
    h.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    h.extend_from_slice(meta);
    let header_len = h.len();
    h[11..15].copy_from_slice(&(header_len as i32).to_be_bytes());
    let frame_len = (header_len + s.cbytes as usize + s.index_nbytes + TRAILER_LEN) as u64;
    h[16..24].copy_from_slice(&frame_len.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blosc2::lz4_decompress;

    fn roundtrip(src: &[u8]) {
        let mut c = Vec::new();
        lz4_compress(src, &mut c);
        let mut d = vec![0u8; src.len()];
        lz4_decompress(&c, &mut d).unwrap_or_else(|e| panic!("{} bytes: {e}", src.len()));
        assert_eq!(d, src, "{} bytes", src.len());
    }

    #[test]
    fn lz4_round_trips() {
        for n in 0..40 {
            roundtrip(&vec![7u8; n]);
            roundtrip(&(0..n as u8).collect::<Vec<_>>());
        }
        let mut x = 12345u64;
        let noise: Vec<u8> = (0..70_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        roundtrip(&noise);
        // repeats farther apart than the 64 KiB window, long runs, text-like data
        let mut far = noise[..1000].to_vec();
        far.extend(vec![0u8; 70_000]);
        far.extend_from_slice(&noise[..1000]);
        roundtrip(&far);
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog; ".iter().copied().cycle().take(10_000).collect();
        roundtrip(&text);
        let mut c = Vec::new();
        lz4_compress(&text, &mut c);
        assert!(c.len() < 200, "repetitive text compresses ({} bytes)", c.len());
    }

    #[test]
    fn shuffle_is_undone_by_unshuffle() {
        let src: Vec<u8> = (0..103u8).collect();
        for ts in [2, 4, 8, 3] {
            let (mut s, mut u) = (vec![0u8; src.len()], vec![0u8; src.len()]);
            shuffle(ts, &src, &mut s);
            crate::blosc2::unshuffle(ts, &s, &mut u);
            assert_eq!(u, src, "typesize {ts}");
        }
    }
}
