//! Times fingerprint extraction of a raw dataset folder: `cargo run --example fingerprint_timing -p nnunet-data -- DIR THREADS`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let threads: usize = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(2);
    let t = std::time::Instant::now();
    let ds = nnunet_data::Dataset::open(dir).expect("open");
    let fp = nnunet_data::extract_fingerprint(&ds, threads, &|_, _| {}).expect("fingerprint");
    println!(
        "{} cases, {threads} threads: {:.2?}",
        ds.cases.len(),
        t.elapsed()
    );
    let mut v: Vec<f32> = (0..100_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) % 100_000) as f32)
        .collect();
    let t = std::time::Instant::now();
    let m = nnunet_data::stats::mean(&v);
    let s = nnunet_data::stats::std(&v);
    let t1 = t.elapsed();
    let p = nnunet_data::stats::percentiles(&mut v, &[0.5, 50.0, 99.5]);
    println!(
        "mean+std {t1:.2?}, percentiles {:.2?} ({m} {s} {p:?}) {}",
        t.elapsed() - t1,
        fp.spacings.len()
    );
}
