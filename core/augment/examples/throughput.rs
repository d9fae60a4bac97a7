//! Per-sample time of the training augmentation pipeline on ONE thread: the Rust half of
//! `benches/augmentation_vs_batchgenerators.sh` (the Python half is `benches/augmentation_bgv2.py`).
//!
//! ```sh
//! cargo run --release -p nnunet-augment --example throughput -- --patch 40 56 40 --pools 3 --warmup 20 --n 200 \
//!     --seed 1 [--out FILE]
//! ```
//!
//! The input is the enlarged crop nnU-Net samples for the patch ([`configure_da`]), 1 image channel and a
//! segmentation with labels 0/1/2, built from the same integer hash as the Python script, so both sides transform
//! identical data (the header line prints a checksum to compare). The pipeline is [`training_pipeline`] with the
//! deep-supervision scales of pool_op_kernel_sizes `[[1,1,1]] + [[2,2,2]] * pools`. Each timed sample writes
//! `<wall ms> <thread CPU ms> <1 if the spatial transform interpolated else 0>` to `--out`; a summary goes to
//! stderr. Thread CPU time (Linux `CLOCK_THREAD_CPUTIME_ID`, Python's `time.thread_time`) is far less sensitive to
//! other processes on a busy machine than wall time.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use nnunet_augment::*;

struct Args {
    patch: [usize; 3],
    pools: usize,
    warmup: usize,
    n: usize,
    seed: u64,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args { patch: [0; 3], pools: 0, warmup: 10, n: 100, seed: 1, out: None };
    let mut have_patch = false;
    let num = |s: Option<&String>, flag: &str| -> Result<u64, String> {
        s.ok_or(format!("{flag} needs a value"))?.parse::<u64>().map_err(|e| format!("{flag}: {e}"))
    };
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "--patch" => {
                for d in 0..3 {
                    a.patch[d] = num(argv.get(i + 1 + d), "--patch")? as usize;
                }
                have_patch = true;
                i += 3;
            }
            "--pools" => {
                a.pools = num(argv.get(i + 1), "--pools")? as usize;
                i += 1;
            }
            "--warmup" => {
                a.warmup = num(argv.get(i + 1), "--warmup")? as usize;
                i += 1;
            }
            "--n" => {
                a.n = num(argv.get(i + 1), "--n")? as usize;
                i += 1;
            }
            "--seed" => {
                a.seed = num(argv.get(i + 1), "--seed")?;
                i += 1;
            }
            "--out" => {
                a.out = Some(argv.get(i + 1).ok_or("--out needs a value")?.clone());
                i += 1;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 1;
    }
    if !have_patch || a.patch.contains(&0) {
        return Err("--patch Z Y X is required (positive sizes)".into());
    }
    if a.n == 0 {
        return Err("--n must be positive".into());
    }
    Ok(a)
}

/// murmur3's 32-bit finalizer (same as `fmix32` in augmentation_bgv2.py)
fn fmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x = x.wrapping_mul(0xC2B2_AE35);
    x ^ (x >> 16)
}

/// image: uniform in [-2, 2) from a hash of the voxel index (exact in f32); seg: 0 outside a centred ellipsoid with
/// semi-axes 0.35 · shape, 1 in its lower half along axis 0, 2 in its upper half (as `make_input` in Python)
fn make_input(shape: [usize; 3]) -> Sample {
    let n = shape[0] * shape[1] * shape[2];
    let image: Vec<f32> = (0..n)
        .map(|i| {
            let h = fmix32((i as u32).wrapping_mul(0x9E37_79B1) ^ 0x5BD1_E995);
            ((h >> 8) as f64 / (1u64 << 22) as f64 - 2.0) as f32
        })
        .collect();
    let c = shape.map(|s| (s as f64 - 1.0) / 2.0);
    let mut seg = vec![0i16; n];
    for z in 0..shape[0] {
        for y in 0..shape[1] {
            for x in 0..shape[2] {
                let mut r = 0.0;
                for (d, v) in [z, y, x].into_iter().enumerate() {
                    let t = (v as f64 - c[d]) / (0.35 * shape[d] as f64);
                    r += t * t;
                }
                if r <= 1.0 {
                    seg[(z * shape[1] + y) * shape[2] + x] = if (z as f64) < c[0] { 1 } else { 2 };
                }
            }
        }
    }
    Sample::new(Tensor::new(image, 1, shape), Tensor::new(seg, 1, shape))
}

/// CPU time of the calling thread in ms (Linux; elsewhere NaN)
#[cfg(target_os = "linux")]
fn thread_cpu_ms() -> f64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: std::ffi::c_long,
        tv_nsec: std::ffi::c_long,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: std::ffi::c_int, ts: *mut Timespec) -> std::ffi::c_int;
    }
    const CLOCK_THREAD_CPUTIME_ID: std::ffi::c_int = 3;
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given, which lives on this stack frame
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 * 1e-6
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_ms() -> f64 {
    f64::NAN
}

fn checksum(s: &Sample) -> String {
    // every value is k · 2^-22 − 2, so the f64 sum is exact in any order
    let sum: f64 = s.image.data.iter().map(|&v| v as f64).sum();
    let count = |l: i16| s.seg.data.iter().filter(|&&v| v == l).count();
    format!("image_sum={sum:.6} labels={}/{}/{}", count(0), count(1), count(2))
}

fn run(a: &Args) -> Result<(), String> {
    let patch = a.patch;
    let da = configure_da(&patch);
    let mut pools = vec![vec![1usize; 3]];
    pools.extend(std::iter::repeat_n(vec![2usize; 3], a.pools));
    let ds = deep_supervision_scales(&pools);
    let n_targets = ds.len().max(1);
    let cfg = PipelineConfig { ds_scales: Some(ds), use_mask_for_norm: vec![false], ..PipelineConfig::for_patch(&patch) };
    let pipe = training_pipeline(&cfg);
    if pipe.names().first() != Some(&"SpatialTransform") {
        return Err("the training pipeline does not start with the spatial transform".into());
    }
    // the spatial transform draws its parameters first, so the same draw on a copy of the RNG tells whether this
    // sample interpolates (rotation and/or scaling: p = 1 − 0.8² = 0.36)
    let dims = if cfg.do_dummy_2d { SpatialDims::Two } else { SpatialDims::Three };
    let spatial = SpatialTransform::nnunet(cfg.patch3(), dims, cfg.rotation);
    let crop = [da.initial_patch_size[0], da.initial_patch_size[1], da.initial_patch_size[2]];
    let base = make_input(crop);
    let fmt = |s: [usize; 3]| format!("{}x{}x{}", s[0], s[1], s[2]);
    println!("ours patch={} crop={} ds_scales={} {}", fmt(patch), fmt(crop), n_targets, checksum(&base));
    let _ = std::io::stdout().flush();

    let mut rng = Rng::new(a.seed);
    let mut times = Vec::with_capacity(a.n);
    let mut cpu = Vec::with_capacity(a.n);
    let mut flags = Vec::with_capacity(a.n);
    for k in 0..a.warmup + a.n {
        let interpolated = spatial.sample_params(&mut rng.clone()).transformed;
        let mut s = base.clone();
        let c0 = thread_cpu_ms();
        let t0 = Instant::now();
        pipe.apply(&mut s, &mut rng);
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        let dc = thread_cpu_ms() - c0;
        std::hint::black_box(&s);
        if s.image.shape != patch || s.targets.len() != n_targets {
            return Err(format!("unexpected output: image {:?}, {} targets", s.image.shape, s.targets.len()));
        }
        drop(s);
        if k >= a.warmup {
            times.push(dt);
            cpu.push(dc);
            flags.push(interpolated);
        }
    }
    if let Some(path) = &a.out {
        let mut text = String::new();
        for ((t, c), f) in times.iter().zip(&cpu).zip(&flags) {
            text.push_str(&format!("{t:.4} {c:.4} {}\n", u8::from(*f)));
        }
        std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let m = sorted.len();
    let median = if m % 2 == 1 { sorted[m / 2] } else { 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]) };
    let cpu_mean = cpu.iter().sum::<f64>() / m as f64;
    let n_interp = flags.iter().filter(|&&f| f).count();
    eprintln!("ours n={m} median={median:.2} ms mean={mean:.2} ms (thread CPU mean {cpu_mean:.2} ms) interpolated={n_interp}/{m}");
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throughput: {e}");
            ExitCode::from(2)
        }
    }
}
