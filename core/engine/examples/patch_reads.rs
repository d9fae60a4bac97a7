//! Patch reads of the training loop's case source from disk (`DiskSource`, what training uses) vs from memory
//! (`InMemorySource`, the whole case loaded): time per patch for a Hippocampus-sized case and a CT-sized one, with the
//! enlarged crops nnU-Net's loader asks for (patch × ~1.4 for rotations). The files are freshly written, so the
//! page cache holds them: this measures the read path (syscalls, copies, conversion), not the disk.
//!
//!   cargo run --release -p nnunet-engine --example patch_reads [N]
use nnunet_augment::{CaseSource, InMemorySource, Tensor};
use nnunet_engine::cases::DiskSource;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("patch_reads_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("| case (c, z, y, x) | crop | disk ms/patch | memory ms/patch | disk / memory | memory held: disk / memory MiB |");
    println!("|---|---|---|---|---|---|");
    for (name, channels, shape, crop, patch) in [
        ("hippocampus", 1usize, [36usize, 50, 35], [56usize, 78, 56], [40usize, 56, 40]),
        ("ct", 1, [320, 512, 512], [180, 180, 180], [128, 128, 128]),
    ]
    {
        let voxels: usize = shape.iter().product();
        let data: Vec<f32> = (0..channels * voxels).map(|i| (i % 1013) as f32 * 0.01).collect();
        let seg: Vec<i16> = (0..voxels).map(|i| (i % 3) as i16).collect();
        let properties = nnunet_data::CaseProperties::uncropped(shape, [1.0; 3]);
        let pc = nnunet_data::PreprocessedCase { data, channels, shape, seg, properties };
        nnunet_data::storage::write_case(&dir, name, &pc, &patch).expect("write case");
        let ids = vec![name.to_string()];
        let disk = DiskSource::open(&dir, &ids, None).expect("open");
        let mut mem = InMemorySource::default();
        mem.push(Tensor::new(pc.data, channels, shape), Tensor::new(pc.seg, 1, shape), Vec::new());
        // crop starts as the loader draws them: anywhere such that the crop overlaps the case, borders included
        let starts: Vec<[i64; 3]> = (0..n)
            .map(|k| {
                let f = |d: usize, salt: usize| {
                    let span = shape[d] as i64 + crop[d] as i64 / 2;
                    ((k * 2654435761 + salt * 40503) % span as usize) as i64 - crop[d] as i64 / 4
                };
                [f(0, 1), f(1, 7), f(2, 13)]
            })
            .collect();
        let time = |src: &dyn CaseSource| {
            let mut sum = 0.0f64;
            let t0 = Instant::now();
            for s in &starts {
                let (im, sg) = src.read_patch(0, *s, crop).expect("read");
                sum += im.data[im.data.len() / 2] as f64 + sg.data[0] as f64;
            }
            (t0.elapsed().as_secs_f64() * 1e3 / n as f64, sum)
        };
        time(&disk); // warm up (page cache, allocator)
        let (d, a) = time(&disk);
        let (m, b) = time(&mem);
        assert_eq!(a, b, "disk and memory patches differ");
        let held = (channels * voxels * 4 + voxels * 2) as f64 / 1048576.0;
        println!("| {name} ({channels}, {}, {}, {}) | {}×{}×{} | {d:.2} | {m:.2} | {:.2}× | 0 / {held:.1} |", shape[0], shape[1], shape[2], crop[0], crop[1], crop[2], d / m);
    }
    std::fs::remove_dir_all(&dir).ok();
}
