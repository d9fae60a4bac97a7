//! `.b2nd` reading against arrays decoded by python-blosc2 (fixtures in `tests/fixtures/blosc2`, made by `gen.py`
//! there: real Hippocampus cases preprocessed by Python nnU-Net 2.8.1, nnU-Net's `save_case` with several chunks per
//! axis, SHUFFLE / NOFILTER, special-value chunks, several dtypes and codecs).

use nnunet_data::DataError;
use nnunet_data::blosc2::B2nd;
use nnunet_data::npy::NpyDtype;
use nnunet_data::npy::NpyFile;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blosc2").join(name)
}

/// An expected array: numpy dtype string, shape, values as f64 (exact for every dtype used here).
fn expected(npy: &str) -> (String, Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(fixture(npy)).unwrap();
    let h = nnunet_data::npy::parse_raw_header(&bytes).unwrap();
    assert!(!h.fortran_order);
    let body = &bytes[h.data_offset..];
    let vals: Vec<f64> = match h.descr.as_str() {
        "<f4" => body.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        "<f8" => body.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
        "<i2" => body.chunks_exact(2).map(|b| i16::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        "|i1" => body.iter().map(|&b| b as i8 as f64).collect(),
        "|u1" => body.iter().map(|&b| b as f64).collect(),
        d => panic!("dtype {d} in {npy}"),
    };
    assert_eq!(vals.len(), h.shape.iter().product::<usize>());
    (h.descr, h.shape, vals)
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// (b2nd fixture, expected .npy)
const DECODABLE: &[(&str, &str)] = &[
    ("hippo_001.b2nd", "hippo_001.npy"),
    ("hippo_001_seg.b2nd", "hippo_001_seg.npy"),
    ("case_shuffle.b2nd", "case.npy"),
    ("case_nofilter.b2nd", "case.npy"),
    ("case_shuffle_seg.b2nd", "case_seg.npy"),
    ("case_nofilter_seg.b2nd", "case_seg.npy"),
    ("zeros_f32.b2nd", "zeros_f32.npy"),
    ("const_i16.b2nd", "const_i16.npy"),
    ("const_split.b2nd", "const_split.npy"),
    ("zeros_api.b2nd", "zeros_api.npy"),
    ("nan_api.b2nd", "nan_api.npy"),
    ("full_api.b2nd", "full_api.npy"),
    ("i8_many_chunks.b2nd", "i8_many_chunks.npy"),
    ("u8.b2nd", "u8.npy"),
    ("f64.b2nd", "f64.npy"),
    ("i16_3d.b2nd", "i16_3d.npy"),
    ("lz4_split.b2nd", "lz4_split.npy"),
    ("blosclz.b2nd", "blosclz.npy"),
    ("zlib.b2nd", "zlib.npy"),
    ("zstd.b2nd", "zstd.npy"),
    // nnU-Net's save_seg (the cascade's previous-stage export): ZSTD + SHUFFLE, uint8, 3 axes
    ("save_seg_u8.b2nd", "save_seg_u8.npy"),
];

#[test]
fn every_fixture_decodes_to_numpys_array() {
    for &(b2nd, npy) in DECODABLE {
        let (descr, shape, want) = expected(npy);
        let a = B2nd::open(&fixture(b2nd)).unwrap_or_else(|e| panic!("{b2nd}: {e}"));
        assert_eq!(a.shape(), &shape[..], "{b2nd}");
        assert_eq!(a.dtype().descr(), descr, "{b2nd}");
        let got: Vec<f64> = a.read_all().unwrap_or_else(|e| panic!("{b2nd}: {e}"));
        assert_eq!(got.len(), want.len(), "{b2nd}");
        if let Some(i) = (0..got.len()).find(|&i| !same(got[i], want[i])) {
            panic!("{b2nd}: element {i} is {}, numpy has {}", got[i], want[i]);
        }
        // the typed readers agree (bit for bit for float32 files)
        match a.dtype() {
            NpyDtype::F32 => {
                let f = a.read_all_f32().unwrap();
                assert!(f.iter().zip(&want).all(|(&g, &w)| g.to_bits() == (w as f32).to_bits() || (g.is_nan() && w.is_nan())), "{b2nd}");
            }
            NpyDtype::I16 => assert_eq!(a.read_all_i16().unwrap(), want.iter().map(|&w| w as i16).collect::<Vec<_>>(), "{b2nd}"),
            _ => {}
        }
    }
}

#[test]
fn fixtures_cover_multi_chunk_and_padded_layouts() {
    // nnU-Net's own chunks/blocks for a (2, 22, 26, 24) case and a 12^3 patch: several chunks, partial edge chunks,
    // blocks that do not divide the chunk (padded chunks)
    let a = B2nd::open(&fixture("case_shuffle.b2nd")).unwrap();
    assert_eq!((a.chunkshape(), a.blockshape()), (&[1, 18, 18, 18][..], &[1, 16, 16, 16][..]));
    let h = B2nd::open(&fixture("hippo_001.b2nd")).unwrap();
    assert_eq!((h.shape(), h.chunkshape(), h.blockshape()), (&[1, 35, 51, 35][..], &[1, 35, 51, 35][..], &[1, 32, 32, 32][..]));
    let m = B2nd::open(&fixture("i8_many_chunks.b2nd")).unwrap();
    assert_eq!(m.shape().iter().zip(m.chunkshape()).map(|(s, c)| s.div_ceil(*c)).product::<usize>(), 125);
}

/// The box of `full` (shape `shape`, ≥ 3 axes) like `read_box`: last three axes from `start`, `pad` outside.
fn crop(full: &[f64], shape: &[usize], start: [i64; 3], size: [usize; 3], pad: f64) -> Vec<f64> {
    let nd = shape.len();
    let lead: usize = shape[..nd - 3].iter().product();
    let [sz, sy, sx] = [shape[nd - 3], shape[nd - 2], shape[nd - 1]];
    let mut out = Vec::with_capacity(lead * size.iter().product::<usize>());
    for c in 0..lead {
        for z in 0..size[0] as i64 {
            for y in 0..size[1] as i64 {
                for x in 0..size[2] as i64 {
                    let (iz, iy, ix) = (start[0] + z, start[1] + y, start[2] + x);
                    let inside = (0..sz as i64).contains(&iz) && (0..sy as i64).contains(&iy) && (0..sx as i64).contains(&ix);
                    out.push(if inside { full[((c * sz + iz as usize) * sy + iy as usize) * sx + ix as usize] } else { pad });
                }
            }
        }
    }
    out
}

#[test]
fn read_box_equals_the_crop_of_the_whole_array() {
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut rand = |n: i64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as i64
    };
    for name in [
        "hippo_001.b2nd",
        "hippo_001_seg.b2nd",
        "case_shuffle.b2nd",
        "case_nofilter_seg.b2nd",
        "i8_many_chunks.b2nd",
        "i16_3d.b2nd",
        "f64.b2nd",
        "zeros_f32.b2nd",
        "const_i16.b2nd",
        "nan_api.b2nd",
    ] {
        let a = B2nd::open(&fixture(name)).unwrap();
        let shape = a.shape().to_vec();
        let full: Vec<f64> = a.read_all().unwrap();
        let sp = [shape[shape.len() - 3] as i64, shape[shape.len() - 2] as i64, shape[shape.len() - 1] as i64];
        let c = a.chunkshape();
        let cs = [c[c.len() - 3] as i64, c[c.len() - 2] as i64, c[c.len() - 1] as i64];
        // inside one chunk, across chunk borders, the whole array, wider on every side, outside, one voxel
        let mut boxes: Vec<([i64; 3], [usize; 3])> = vec![
            ([1, 1, 1], [2, 3, 2]),
            ([cs[0] - 2, cs[1] - 3, cs[2] - 1], [5, 6, 4]),
            ([0, 0, 0], [sp[0] as usize, sp[1] as usize, sp[2] as usize]),
            ([-3, -4, -2], [sp[0] as usize + 7, sp[1] as usize + 5, sp[2] as usize + 9]),
            ([sp[0], 0, 0], [2, 2, 2]),
            ([-5, -5, -5], [3, 3, 3]),
            ([sp[0] - 1, sp[1] - 1, sp[2] - 1], [1, 1, 1]),
        ];
        for _ in 0..40 {
            let size = [1 + rand(sp[0] + 4) as usize, 1 + rand(sp[1] + 4) as usize, 1 + rand(sp[2] + 4) as usize];
            let start = [rand(sp[0] + 8) - 6, rand(sp[1] + 8) - 6, rand(sp[2] + 8) - 6];
            boxes.push((start, size));
        }
        for (start, size) in boxes {
            let want = crop(&full, &shape, start, size, -7.0);
            let got: Vec<f64> = a.read_box(start, size, -7.0).unwrap();
            assert_eq!(got.len(), want.len(), "{name} {start:?} {size:?}");
            if let Some(i) = (0..got.len()).find(|&i| !same(got[i], want[i])) {
                panic!("{name} box {start:?} {size:?}: element {i} is {}, the crop has {}", got[i], want[i]);
            }
        }
    }
}

#[test]
fn read_box_matches_npy_file_read_box() {
    // the same array as .npy and .b2nd: NpyFile::read_box and B2nd::read_box are interchangeable
    let (d, dn) = (B2nd::open(&fixture("hippo_001.b2nd")).unwrap(), NpyFile::open(&fixture("hippo_001.npy")).unwrap());
    let (s, sn) = (B2nd::open(&fixture("hippo_001_seg.b2nd")).unwrap(), NpyFile::open(&fixture("hippo_001_seg.npy")).unwrap());
    for (start, size) in
        [([-4i64, 10, 3], [40usize, 56, 40]), ([5, -20, 30], [20, 30, 20]), ([0, 0, 0], [35, 51, 35]), ([36, 0, 0], [3, 3, 3])]
    {
        assert_eq!(d.read_box_f32(start, size, 0.5).unwrap(), dn.read_box(start, size, 0.5f32).unwrap());
        assert_eq!(s.read_box_i16(start, size, -1).unwrap(), sn.read_box(start, size, -1i16).unwrap());
        // float data read as i16 and seg read as f32 convert like numpy's astype
        let as_i16: Vec<i16> = d.read_box(start, size, 0).unwrap();
        assert_eq!(as_i16, dn.read_box::<f32>(start, size, 0.0).unwrap().iter().map(|&v| v as i16).collect::<Vec<_>>());
        assert_eq!(s.read_box_f32(start, size, 0.0).unwrap(), sn.read_box(start, size, 0.0f32).unwrap());
    }
    assert!(B2nd::open(&fixture("i8_many_chunks.b2nd")).unwrap().read_box_f32([0; 3], [1; 3], 0.0).is_ok());
    let two_d = B2nd::open(&fixture("i16_3d.b2nd")).unwrap();
    assert_eq!(two_d.read_box_i16([0, 0, 0], [13, 17, 19], 0).unwrap(), two_d.read_all_i16().unwrap());
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("b2nd_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Open and read everything; Err names the file.
fn open_and_read(p: &Path) -> Result<Vec<f64>, DataError> {
    let a = B2nd::open(p)?;
    let all = a.read_all::<f64>()?;
    if a.shape().len() >= 3 {
        a.read_box::<f64>([-1, 2, 3], [9, 9, 9], 0.0)?;
    }
    Ok(all)
}

#[test]
fn truncated_and_corrupted_files_are_errors_naming_the_file() {
    let dir = tmp_dir("bad");
    for name in ["hippo_001_seg.b2nd", "case_shuffle.b2nd", "i8_many_chunks.b2nd"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let p = dir.join(format!("broken_{name}"));
        for cut in [0, 10, 90, 200, bytes.len() / 2, bytes.len() - 30, bytes.len() - 1] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let err = open_and_read(&p).expect_err(&format!("{name} cut at {cut}")).to_string();
            assert!(err.contains(&format!("broken_{name}")), "{err}");
        }
    }
    // damage inside the compressed data of hippo's data chunk: its block starts, then one LZ4 stream
    let bytes = std::fs::read(fixture("hippo_001.b2nd")).unwrap();
    let header_len = u32::from_be_bytes(bytes[11..15].try_into().unwrap()) as usize;
    let p = dir.join("damaged.b2nd");
    let mut b = bytes.clone();
    b[header_len + 32..header_len + 36].copy_from_slice(&0x7fff_fff0i32.to_le_bytes()); // bstart of block 0
    std::fs::write(&p, &b).unwrap();
    let err = open_and_read(&p).unwrap_err().to_string();
    assert!(err.contains("damaged.b2nd") && err.contains("block 0"), "{err}");
    let mut b = bytes.clone();
    let bstart0 = i32::from_le_bytes(bytes[header_len + 32..header_len + 36].try_into().unwrap()) as usize;
    // first stream of block 0: its size, then a token whose match offset points before the output start
    let csize = i32::from_le_bytes(bytes[header_len + bstart0..header_len + bstart0 + 4].try_into().unwrap());
    assert!(csize > 8, "block 0 of hippo is LZ4-compressed");
    b[header_len + bstart0 + 4..header_len + bstart0 + 8].copy_from_slice(&[0x00, 0xff, 0xff, 0x00]);
    std::fs::write(&p, &b).unwrap();
    let err = open_and_read(&p).unwrap_err().to_string();
    assert!(err.contains("damaged.b2nd") && err.contains("lz4"), "{err}");
    // not a frame at all
    std::fs::write(&p, vec![7u8; 500]).unwrap();
    assert!(B2nd::open(&p).unwrap_err().to_string().contains("damaged.b2nd"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_byte_flip_panics() {
    // frame header and metalayer byte by byte (two other values each), first chunk headers and the chunk index byte by
    // byte, 250 bytes of the rest: a result or an error naming the file, never a panic or a huge allocation
    let dir = tmp_dir("flip");
    for name in ["hippo_001_seg.b2nd", "i8_many_chunks.b2nd", "case_shuffle_seg.b2nd"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let p = dir.join(name);
        let n = bytes.len();
        let stride = (n / 250).max(1);
        for i in 0..n {
            let edge = i < 400 || i + 300 >= n;
            if !edge && i % stride != 0 {
                continue;
            }
            let values: &[u8] = if i < 200 { &[bytes[i] ^ 0x80, bytes[i].wrapping_add(1)] } else { &[bytes[i] ^ 0x55] };
            for &v in values {
                let mut b = bytes.clone();
                b[i] = v;
                std::fs::write(&p, &b).unwrap();
                if let Err(e) = open_and_read(&p) {
                    assert!(e.to_string().contains(name), "{e}");
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unsupported_features_are_refused_by_name() {
    let name = "bitshuffle.b2nd";
    let err = open_and_read(&fixture(name)).unwrap_err();
    assert!(matches!(err, DataError::Unsupported { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(name) && msg.contains("BITSHUFFLE"), "{msg}");
}

/// Decode speed (run with `--ignored --nocapture`): MB/s of decompressed data.
#[test]
#[ignore]
fn decode_speed() {
    for name in ["hippo_001.b2nd", "case_shuffle.b2nd", "case_nofilter.b2nd", "i8_many_chunks.b2nd"] {
        let a = B2nd::open(&fixture(name)).unwrap();
        let mb = (a.len() * a.dtype().size()) as f64 / 1e6;
        let reps = 50;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            std::hint::black_box(a.read_all_f32().unwrap());
        }
        let all = t.elapsed().as_secs_f64() / reps as f64;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            std::hint::black_box(a.read_box_f32([2, 3, 4], [12, 12, 12], 0.0).unwrap());
        }
        let bx = t.elapsed().as_secs_f64() / reps as f64;
        println!("{name}: {mb:.3} MB decoded in {:.2} ms = {:.0} MB/s; a 12^3 box {:.3} ms", all * 1e3, mb / all, bx * 1e3);
    }
}
