//! Label and intensity statistics of our training batches (DataLoader + training_pipeline as run.rs builds them), fold 0 of a
//! configuration of a preprocessed dataset: per label, its share of the final full-resolution target's voxels and the
//! share of samples that contain it, and the per-sample mean and sd of the augmented image. The counterpart of
//! benches/training_diagnostics/nnunet_batch_stats.py.
//! usage: batch_stats PREPROCESSED_DATASET_DIR CONFIGURATION N_BATCHES [SEED]
#[path = "common/fold0.rs"]
mod fold0;
use std::path::PathBuf;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let pre = PathBuf::from(&a[1]);
    let n: usize = a[3].parse().unwrap();
    let seed: u64 = a.get(4).map(|s| s.parse().unwrap()).unwrap_or(12345);
    let (cfg, _) = fold0::configuration(&pre, &a[2]);
    let mut prod = fold0::training_batches(&pre, &cfg, seed, None);
    let (mut counts, mut present, mut samples) = ([0f64; 3], [0f64; 3], 0usize);
    let mut shape = vec![];
    let (mut means, mut sds) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let b = prod.next_batch().unwrap();
        let (t, s) = &b.targets[0];
        let per_img = b.image.len() / b.image_shape[0];
        for k in 0..b.image_shape[0] {
            let x = &b.image[k * per_img..(k + 1) * per_img];
            let m = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
            let v = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / x.len() as f64;
            means.push(m);
            sds.push(v.sqrt());
        }
        shape = s.clone();
        let per = t.len() / s[0];
        for k in 0..s[0] {
            samples += 1;
            for c in 0..3 {
                let m = t[k * per..(k + 1) * per].iter().filter(|&&v| v == c as i16).count();
                counts[c] += m as f64;
                if m > 0 {
                    present[c] += 1.0;
                }
            }
        }
    }
    let tot: f64 = counts.iter().sum();
    println!("ours: {n} batches, {samples} samples, target shape {shape:?}, seed {seed}");
    for c in 0..3 {
        println!("  label {c}: {:.5} of voxels, in {:.3} of samples", counts[c] / tot, present[c] / samples as f64);
    }
    let stat = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (mean, v[v.len() * 5 / 100], v[v.len() * 95 / 100])
    };
    let ((m, m5, m95), (d, d5, d95)) = (stat(means), stat(sds));
    println!("  image per sample: mean {m:.4} (p5 {m5:.3}, p95 {m95:.3}), sd {d:.4} (p5 {d5:.3}, p95 {d95:.3})");
}
