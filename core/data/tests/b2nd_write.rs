//! `blosc2::write::encode` writes frames that decode to the array they were given: read back by this crate's reader
//! (always), and by python-blosc2 itself when nnU-Net's Python environment is there (`$NNUNET_PY`, a venv folder with
//! `pip install nnunetv2`, else /root/nnunet-py, as in the integration tests).

use nnunet_data::blosc2::B2nd;
use nnunet_data::blosc2::write::{Filter, encode};
use nnunet_data::npy::NpyDtype;
use std::path::{Path, PathBuf};

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("b2nd_write_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A deterministic pseudo-random byte stream.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Case {
    name: &'static str,
    dtype: NpyDtype,
    shape: Vec<usize>,
    chunks: Vec<usize>,
    blocks: Vec<usize>,
    filter: Filter,
    bytes: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let f32s = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| ((i as f32 * 0.37).sin() * 100.0).to_le_bytes()).collect() };
    let segs = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| (((i / 17) % 4) as i16 - 1).to_le_bytes()).collect() };
    let n = |s: &[usize]| s.iter().product::<usize>();
    let c = |name, dtype, shape: &[usize], chunks: &[usize], blocks: &[usize], filter, bytes| Case {
        name,
        dtype,
        shape: shape.to_vec(),
        chunks: chunks.to_vec(),
        blocks: blocks.to_vec(),
        filter,
        bytes,
    };
    let s1 = [2, 7, 9, 11];
    let s2 = [1, 36, 50, 35];
    vec![
        // chunks and blocks that do not divide the array nor each other: padded edge chunks and blocks
        c("f32_odd_shuffle", NpyDtype::F32, &s1, &[1, 4, 5, 11], &[1, 2, 3, 4], Filter::Shuffle, f32s(n(&s1))),
        c("f32_odd_nofilter", NpyDtype::F32, &s1, &[1, 4, 5, 11], &[1, 2, 3, 4], Filter::NoFilter, f32s(n(&s1))),
        // nnU-Net's Hippocampus layout: one chunk, blocks of 32³
        c("f32_hippocampus", NpyDtype::F32, &s2, &[1, 36, 50, 35], &[1, 32, 32, 32], Filter::Shuffle, f32s(n(&s2))),
        c("i16_seg", NpyDtype::I16, &s2, &[1, 36, 50, 35], &[1, 36, 50, 35], Filter::NoFilter, segs(n(&s2))),
        c("i16_seg_shuffle", NpyDtype::I16, &s2, &[1, 20, 20, 20], &[1, 8, 16, 8], Filter::Shuffle, segs(n(&s2))),
        // incompressible: memcpyed chunks and raw streams
        c("u8_noise", NpyDtype::U8, &[3, 40, 41], &[2, 16, 41], &[1, 8, 16], Filter::NoFilter, noise(3 * 40 * 41, 7)),
        c("f64_noise", NpyDtype::F64, &[5, 6, 7], &[5, 6, 7], &[2, 3, 4], Filter::Shuffle, noise(5 * 6 * 7 * 8, 9)),
        // all zeros: special zero chunks
        c("f32_zeros", NpyDtype::F32, &[1, 10, 10, 10], &[1, 5, 10, 10], &[1, 5, 5, 5], Filter::Shuffle, vec![0; 4000]),
        // one axis, one element
        c("i8_1d", NpyDtype::I8, &[300], &[128], &[32], Filter::NoFilter, (0..300).map(|i| (i % 7) as u8).collect()),
        c("i32_single", NpyDtype::I32, &[1, 1, 1, 1], &[1, 1, 1, 1], &[1, 1, 1, 1], Filter::Shuffle, 42i32.to_le_bytes().to_vec()),
    ]
}

#[test]
fn written_frames_read_back_equal() {
    let dir = tmp_dir("rt");
    for c in cases() {
        let frame = encode(&c.bytes, c.dtype, &c.shape, &c.chunks, &c.blocks, c.filter).unwrap();
        let path = dir.join(format!("{}.b2nd", c.name));
        std::fs::write(&path, &frame).unwrap();
        let b = B2nd::open(&path).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!((b.shape(), b.chunkshape(), b.blockshape(), b.dtype()), (&c.shape[..], &c.chunks[..], &c.blocks[..], c.dtype));
        let got: Vec<f64> = b.read_all::<f64>().unwrap();
        let want: Vec<f64> = decode_le(&c.bytes, c.dtype);
        assert_eq!(got.len(), want.len(), "{}", c.name);
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())), "{}", c.name);
        if c.shape.len() >= 3 {
            // a box across chunk borders and past the array
            let nd = c.shape.len();
            let sp = [c.shape[nd - 3], c.shape[nd - 2], c.shape[nd - 1]];
            let start = [-1i64, sp[1] as i64 / 3, sp[2] as i64 - 3];
            let size = [sp[0] + 1, sp[1] / 2 + 1, 5];
            let bx = b.read_box::<f64>(start, size, -9.0).unwrap();
            let lead: usize = c.shape[..nd - 3].iter().product();
            let mut k = 0;
            for l in 0..lead {
                for z in 0..size[0] as i64 {
                    for y in 0..size[1] as i64 {
                        for x in 0..size[2] as i64 {
                            let (gz, gy, gx) = (start[0] + z, start[1] + y, start[2] + x);
                            let inside = (0..sp[0] as i64).contains(&gz) && (0..sp[1] as i64).contains(&gy) && (0..sp[2] as i64).contains(&gx);
                            let v = if inside { want[((l * sp[0] + gz as usize) * sp[1] + gy as usize) * sp[2] + gx as usize] } else { -9.0 };
                            assert_eq!(bx[k].to_bits(), v.to_bits(), "{} box element {k}", c.name);
                            k += 1;
                        }
                    }
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compression_shrinks_what_compresses() {
    let cs = cases();
    let size = |name: &str| {
        let c = cs.iter().find(|c| c.name == name).unwrap();
        (encode(&c.bytes, c.dtype, &c.shape, &c.chunks, &c.blocks, c.filter).unwrap().len(), c.bytes.len())
    };
    let (zeros, raw) = size("f32_zeros");
    assert!(zeros < 400, "all-zero chunks are special chunks: {zeros} bytes for {raw}");
    let (seg, raw) = size("i16_seg");
    assert!(seg * 10 < raw, "a label map compresses: {seg} of {raw} bytes");
    // 3 chunks of (2, 16, 48) bytes (the chunk shape rounded up to whole blocks): 9216 bytes before compression
    let (noise, _) = size("u8_noise");
    assert!(noise < 9216 + 3 * 32 + 400, "noise is stored as it is, not inflated: {noise} bytes");
}

/// Python nnU-Net's own Hippocampus files (LZ4HC, level 5, its filter choice) re-encoded with the same chunks, blocks
/// and filter: our files are about as small.
#[test]
fn hippocampus_compresses_about_as_well_as_with_nnunet() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/python_preprocessed/Dataset004_Hippocampus/nnUNetPlans_3d_fullres");
    let (mut ours, mut theirs, mut raw) = (0, 0, 0);
    let t0 = std::time::Instant::now();
    for case in ["001", "003", "004", "006", "007", "008", "011", "017"] {
        for (f, dtype) in [(format!("hippocampus_{case}.b2nd"), NpyDtype::F32), (format!("hippocampus_{case}_seg.b2nd"), NpyDtype::I16)] {
            let path = dir.join(&f);
            let b = B2nd::open(&path).unwrap();
            let bytes: Vec<u8> = match dtype {
                NpyDtype::F32 => b.read_all_f32().unwrap().iter().flat_map(|v| v.to_le_bytes()).collect(),
                _ => b.read_all_i16().unwrap().iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            let best = [Filter::NoFilter, Filter::Shuffle]
                .map(|flt| encode(&bytes, dtype, b.shape(), b.chunkshape(), b.blockshape(), flt).unwrap().len())
                .into_iter()
                .min()
                .unwrap();
            ours += best;
            raw += 2 * bytes.len();
            theirs += std::fs::metadata(&path).unwrap().len() as usize;
        }
    }
    let mb_s = raw as f64 / 1e6 / t0.elapsed().as_secs_f64();
    eprintln!("8 Hippocampus cases: {ours} bytes written here, {theirs} by Python nnU-Net (encoded at {mb_s:.0} MB/s)");
    assert!((ours as f64) < 1.05 * theirs as f64, "{ours} bytes vs nnU-Net's {theirs}");
}

#[test]
fn inconsistent_shapes_are_refused() {
    let b = vec![0u8; 4 * 24];
    assert!(encode(&b, NpyDtype::F32, &[2, 3, 4], &[2, 3], &[1, 1, 1], Filter::NoFilter).is_err());
    assert!(encode(&b, NpyDtype::F32, &[2, 3, 4], &[1, 1, 1], &[1, 2, 1], Filter::NoFilter).is_err(), "block larger than chunk");
    assert!(encode(&b, NpyDtype::F32, &[2, 3, 5], &[1, 1, 1], &[1, 1, 1], Filter::NoFilter).is_err(), "wrong byte count");
    assert!(encode(&[], NpyDtype::F32, &[0, 3], &[1, 1], &[1, 1], Filter::NoFilter).is_err(), "empty array");
}

/// The little-endian elements of the dtypes used above, as f64 (exact for them).
fn decode_le(bytes: &[u8], dtype: NpyDtype) -> Vec<f64> {
    let e = bytes.chunks_exact(dtype.size());
    match dtype {
        NpyDtype::F32 => e.map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        NpyDtype::F64 => e.map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
        NpyDtype::I16 => e.map(|b| i16::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        NpyDtype::I32 => e.map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        NpyDtype::U8 => e.map(|b| b[0] as f64).collect(),
        NpyDtype::I8 => e.map(|b| b[0] as i8 as f64).collect(),
        d => panic!("dtype {d:?} not used here"),
    }
}

/// python-blosc2 opens every frame and finds numpy's array (the bytes written next to it as `.npy`).
#[test]
fn python_blosc2_reads_written_frames() {
    let venv = std::env::var_os("NNUNET_PY").map(PathBuf::from).unwrap_or_else(|| "/root/nnunet-py".into());
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!("no nnU-Net Python (NNUNET_PY): python-blosc2's reader not run");
        return;
    }
    let dir = tmp_dir("py");
    let mut names = Vec::new();
    for c in cases() {
        let frame = encode(&c.bytes, c.dtype, &c.shape, &c.chunks, &c.blocks, c.filter).unwrap();
        std::fs::write(dir.join(format!("{}.b2nd", c.name)), &frame).unwrap();
        let mut npy = nnunet_data::npy::header_bytes(c.dtype, &c.shape);
        npy.extend_from_slice(&c.bytes);
        std::fs::write(dir.join(format!("{}.npy", c.name)), &npy).unwrap();
        names.push(c.name);
    }
    let script = r#"
import sys, os, blosc2, numpy as np
d = sys.argv[1]
for name in sys.argv[2:]:
    want = np.load(os.path.join(d, name + '.npy'))
    a = blosc2.open(os.path.join(d, name + '.b2nd'), mode='r')
    got = a[...]
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, got.shape)
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), name
    assert a.chunks is not None and a.blocks is not None
    # a slice across chunks, as nnU-Net's loader reads patches
    sl = tuple(slice(s // 3, s // 3 + max(1, s // 2)) for s in want.shape)
    assert np.array_equal(a[sl].view(np.uint8), want[sl].view(np.uint8)), name
    print('ok', name, a.schunk.cbytes, a.schunk.nbytes)
"#;
    let out = std::process::Command::new(python).arg("-c").arg(script).arg(&dir).args(&names).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "python-blosc2 failed on our frames");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), names.len());
    std::fs::remove_dir_all(Path::new(&dir)).ok();
}
