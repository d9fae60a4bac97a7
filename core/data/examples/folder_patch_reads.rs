//! Times training-style patch reads from a preprocessed configuration folder (ours: `.npy`; Python nnU-Net's:
//! Blosc2 `.b2nd`): `cargo run --release --example folder_patch_reads -p nnunet-data -- DIR PZ PY PX [N]` reads N (default
//! 2000) patches of size PZ×PY×PX at pseudo-random positions (data and segmentation, padded at the borders, as the
//! training loop's `read_patch` does) and prints the mean time per patch.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let size: [usize; 3] = std::array::from_fn(|d| args[2 + d].parse().expect("patch size"));
    let n: usize = args.get(5).and_then(|v| v.parse().ok()).unwrap_or(2000);
    let ids = nnunet_data::storage::list_cases(dir).expect("cases");
    let cases: Vec<_> = ids.iter().map(|id| nnunet_data::storage::open_case(dir, id).expect("case")).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |m: i64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m.max(1) as u64) as i64
    };
    let (mut voxels, mut checksum) = (0usize, 0f64);
    let t = std::time::Instant::now();
    for i in 0..n {
        let c = &cases[i % cases.len()];
        let start: [i64; 3] = std::array::from_fn(|d| next(c.shape[d] as i64 + size[d] as i64 / 2) - size[d] as i64 / 4);
        let data = c.data.read_box_padded(start, size, 0f32).expect("data");
        let seg = c.seg.read_box_padded(start, size, -1i16).expect("seg");
        voxels += data.len();
        checksum += data[data.len() / 2] as f64 + seg[seg.len() / 2] as f64;
    }
    let e = t.elapsed();
    println!(
        "{} cases, {n} patches {size:?}: {:.3} ms per patch ({:.0} MB/s of float32 data; checksum {checksum:.3})",
        cases.len(),
        e.as_secs_f64() * 1e3 / n as f64,
        voxels as f64 * 4.0 / e.as_secs_f64() / 1e6
    );
}
