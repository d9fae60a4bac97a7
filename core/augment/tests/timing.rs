//! Time per augmented sample on one thread (run: cargo test --release -p nnunet-augment --test timing -- --ignored
//! --nocapture).

use std::time::Instant;

use nnunet_augment::*;

fn time_patch(patch: &[usize], n: usize) {
    let da = configure_da(patch);
    let cfg = PipelineConfig { ds_scales: Some(vec![vec![1.0; 3], vec![0.5; 3], vec![0.25; 3]]), ..PipelineConfig::for_patch(patch) };
    let pipe = training_pipeline(&cfg);
    let big = [da.initial_patch_size[0], da.initial_patch_size[1], da.initial_patch_size[2]];
    let mut rng = Rng::new(1);
    let nvox: usize = big.iter().product();
    let img: Vec<f32> = (0..nvox).map(|_| rng.uniform(-1.0, 2.0) as f32).collect();
    let seg: Vec<i16> = (0..nvox).map(|i| ((i / 1000) % 3) as i16).collect();
    let base = Sample::new(Tensor::new(img, 1, big), Tensor::new(seg, 1, big));
    // full pipeline (random parameters, 36% interpolated)
    let t0 = Instant::now();
    for _ in 0..n {
        let mut s = base.clone();
        pipe.apply(&mut s, &mut rng);
    }
    let full = t0.elapsed().as_secs_f64() / n as f64;
    // spatial transform always interpolating
    let st = SpatialTransform::nnunet(cfg.patch3(), SpatialDims::Three, da.rotation);
    let p = SpatialParams { angles: [0.2, -0.3, 0.4], scales: [1.1; 3], transformed: true };
    let t0 = Instant::now();
    for _ in 0..n {
        let mut s = base.clone();
        st.apply_with(&mut s, &p);
    }
    let spatial = t0.elapsed().as_secs_f64() / n as f64;
    let t0 = Instant::now();
    for _ in 0..n {
        let _ = base.clone();
    }
    let clone = t0.elapsed().as_secs_f64() / n as f64;
    println!(
        "patch {patch:?} (crop {big:?}): full pipeline {:.1} ms/sample, interpolating spatial transform {:.1} ms, input clone {:.1} ms",
        full * 1e3,
        spatial * 1e3,
        clone * 1e3
    );
}

#[test]
#[ignore]
fn time_per_sample_one_thread() {
    time_patch(&[40, 56, 40], 200);
    time_patch(&[128, 128, 128], 12);
}
