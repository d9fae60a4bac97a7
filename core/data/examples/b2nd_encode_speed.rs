//! Speed of the Blosc2 writer (`blosc2::write::encode`) and of the reader on a CT-sized case laid out as nnU-Net lays it
//! out (`storage::comp_blosc2_params` for a 128³ patch): a z-scored, CT-like float32 volume (quantized intensities,
//! smooth structures, noise) and its int16 label map. Prints MB/s (of uncompressed bytes) and the compressed size.
//!
//!   cargo run --release -p nnunet-data --example b2nd_encode_speed [Z Y X]
use nnunet_data::blosc2::B2nd;
use nnunet_data::blosc2::write::{Filter, encode};
use nnunet_data::npy::NpyDtype;
use nnunet_data::storage::{comp_blosc2_params, encode_like_nnunet};
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).filter_map(|s| s.parse().ok()).collect();
    let [z, y, x] = if a.len() == 3 { [a[0], a[1], a[2]] } else { [160, 256, 256] };
    let n = z * y * x;
    let mut r = 0x9e3779b97f4a7c15u64;
    let mut noise = || {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        (r >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut data = Vec::with_capacity(n);
    let mut seg = Vec::with_capacity(n);
    for k in 0..z {
        for j in 0..y {
            for i in 0..x {
                let (dz, dy, dx) = (k as f32 - z as f32 / 2.0, j as f32 - y as f32 / 2.0, i as f32 - x as f32 / 2.0);
                let body = dy * dy / (0.4 * y as f32).powi(2) + dx * dx / (0.45 * x as f32).powi(2) < 1.0;
                let organ = (dz * dz + dy * dy + (dx - 30.0) * (dx - 30.0)).sqrt() < 25.0;
                let hu = if !body { -1000.0 } else if organ { 60.0 } else { 20.0 * (i as f32 / 11.0).sin() * (j as f32 / 13.0).cos() };
                data.push(((hu + 30.0 * noise()).round() - 40.0) / 350.0);
                seg.push(if organ { 1i16 } else if body { 0 } else { -1 });
            }
        }
    }
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let seg_bytes: Vec<u8> = seg.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = [1, z, y, x];
    println!("case (1, {z}, {y}, {x}), patch 128³");
    println!("| array | step | MB/s | compressed / raw |");
    println!("|---|---|---|---|");
    for (name, b, dtype) in [("data f32", &bytes, NpyDtype::F32), ("seg i16", &seg_bytes, NpyDtype::I16)] {
        let (blocks, chunks) = comp_blosc2_params(shape, &[128, 128, 128], dtype.size()).unwrap();
        for (label, f) in [("encode NOFILTER", Filter::NoFilter), ("encode SHUFFLE", Filter::Shuffle)] {
            let t = Instant::now();
            let frame = encode(b, dtype, &shape, &chunks, &blocks, f).unwrap();
            let s = t.elapsed().as_secs_f64();
            println!("| {name} | {label} | {:.0} | {:.3} |", b.len() as f64 / 1e6 / s, frame.len() as f64 / b.len() as f64);
        }
        let t = Instant::now();
        let frame = encode_like_nnunet(b, dtype, shape, &[128, 128, 128]).unwrap();
        let s = t.elapsed().as_secs_f64();
        println!("| {name} | as preprocessing writes it (filter trial + encode) | {:.0} | {:.3} |", b.len() as f64 / 1e6 / s, frame.len() as f64 / b.len() as f64);
        let path = std::env::temp_dir().join(format!("b2nd_encode_speed_{}.b2nd", std::process::id()));
        std::fs::write(&path, &frame).unwrap();
        let t = Instant::now();
        let back = B2nd::open(&path).unwrap().read_all::<f32>().unwrap();
        let s = t.elapsed().as_secs_f64();
        std::fs::remove_file(&path).ok();
        assert_eq!(back.len(), n);
        println!("| {name} | decode all | {:.0} | |", b.len() as f64 / 1e6 / s);
    }
}
