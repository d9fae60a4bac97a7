//! Distributions and probabilities of the augmentation (statistical, with tolerances), the simple transforms, and
//! the batch producer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nnunet_augment::transforms::*;
use nnunet_augment::*;

fn random_sample(rng: &mut Rng, c: usize, shape: [usize; 3]) -> Sample {
    let n = shape.iter().product::<usize>();
    let img: Vec<f32> = (0..c * n).map(|_| rng.uniform(-1.0, 2.0) as f32).collect();
    let seg: Vec<i16> = (0..n).map(|_| rng.randint(-1, 3) as i16).collect();
    Sample::new(Tensor::new(img, c, shape), Tensor::new(seg, 1, shape))
}

#[test]
fn bg_contrast_is_half_below_one() {
    let mut rng = Rng::new(42);
    let n = 200_000;
    let v: Vec<f64> = (0..n).map(|_| RandomScalar::BgContrast(0.75, 1.25).sample(&mut rng)).collect();
    let below: Vec<f64> = v.iter().copied().filter(|&x| x < 1.0).collect();
    let frac = below.len() as f64 / n as f64;
    assert!((frac - 0.5).abs() < 0.005, "{frac}");
    assert!(v.iter().all(|&x| (0.75..=1.25).contains(&x)));
    let mean_below = below.iter().sum::<f64>() / below.len() as f64;
    assert!((mean_below - 0.875).abs() < 0.002, "{mean_below}");
    // gamma range (0.7, 1.5): below-one part U(0.7, 1), above-one part U(1, 1.5)
    let g: Vec<f64> = (0..n).map(|_| rng.bg_contrast(0.7, 1.5)).collect();
    let above: Vec<f64> = g.iter().copied().filter(|&x| x >= 1.0).collect();
    assert!((above.len() as f64 / n as f64 - 0.5).abs() < 0.005);
    assert!((above.iter().sum::<f64>() / above.len() as f64 - 1.25).abs() < 0.003);
    // lower bound ≥ 1: never below one
    assert!((0..1000).all(|_| rng.bg_contrast(1.0, 2.0) >= 1.0));
}

#[test]
fn training_pipeline_order_and_probabilities() {
    let p = training_pipeline(&PipelineConfig { use_mask_for_norm: vec![true], ..PipelineConfig::for_patch(&[16, 16, 16]) });
    let got: Vec<(&str, f64)> = p.transforms.iter().map(|t| (t.name(), t.probability())).collect();
    assert_eq!(
        got,
        vec![
            ("SpatialTransform", 1.0),
            ("GaussianNoiseTransform", 0.1),
            ("GaussianBlurTransform", 0.2),
            ("MultiplicativeBrightnessTransform", 0.15),
            ("ContrastTransform", 0.15),
            ("SimulateLowResolutionTransform", 0.25),
            ("GammaTransform", 0.1),
            ("GammaTransform", 0.3),
            ("MirrorTransform", 1.0),
            ("MaskImageTransform", 1.0),
            ("RemoveLabelTransform", 1.0),
        ]
    );
    let v = validation_pipeline(&PipelineConfig {
        regions: Some(vec![vec![1, 2], vec![2]]),
        ds_scales: Some(vec![vec![1.0; 3], vec![0.5; 3]]),
        ..PipelineConfig::for_patch(&[16, 16, 16])
    });
    assert_eq!(v.names(), vec!["RemoveLabelTransform", "ConvertSegmentationToRegionsTransform", "DownsampleSegForDSTransform"]);
    let no_mirror = training_pipeline(&PipelineConfig { mirror_axes: None, ..PipelineConfig::for_patch(&[16, 16]) });
    assert!(!no_mirror.names().contains(&"MirrorTransform"));
    assert!(!training_pipeline(&PipelineConfig::for_patch(&[16, 16])).without("MirrorTransform").names().contains(&"MirrorTransform"));
}

/// empirical rate at which each RandomApply of the training pipeline changes a sample
#[test]
fn per_transform_application_rates() {
    let cfg = PipelineConfig::for_patch(&[12, 12, 12]);
    let pipe = training_pipeline(&cfg);
    let mut rng = Rng::new(9);
    let base = random_sample(&mut rng, 2, [12, 12, 12]);
    let n = 12_000;
    // expected probability that the sample changes: p_sample · P(some channel picked) [· P(shape changes)]
    let lowres_shape_changes = 1.0 - (1.0 - 11.5 / 12.0) / 0.5;
    let expected = [
        ("GaussianNoiseTransform", 0.1),
        ("GaussianBlurTransform", 0.2 * 0.75),
        ("MultiplicativeBrightnessTransform", 0.15),
        ("ContrastTransform", 0.15),
        ("SimulateLowResolutionTransform", 0.25 * 0.75 * lowres_shape_changes),
        ("GammaTransform", 0.1),
    ];
    for (k, t) in pipe.transforms.iter().enumerate().skip(1).take(6) {
        let mut changed = 0;
        for _ in 0..n {
            let mut s = base.clone();
            t.apply(&mut s, &mut rng);
            changed += (s.image != base.image) as usize;
        }
        let (name, p) = expected[k - 1];
        assert_eq!(t.name(), name);
        let rate = changed as f64 / n as f64;
        assert!((rate - p).abs() < 0.015, "{name}: rate {rate} expected {p}");
    }
    // second gamma: 0.3
    let mut changed = 0;
    for _ in 0..n {
        let mut s = base.clone();
        pipe.transforms[7].apply(&mut s, &mut rng);
        changed += (s.image != base.image) as usize;
    }
    assert!((changed as f64 / n as f64 - 0.3).abs() < 0.015);
}

#[test]
fn spatial_parameter_distribution() {
    let t = SpatialTransform::nnunet([8, 8, 8], SpatialDims::Three, (-0.5, 0.5));
    let mut rng = Rng::new(5);
    let n = 50_000;
    let (mut transformed, mut rotated, mut scaled) = (0, 0, 0);
    for _ in 0..n {
        let p = t.sample_params(&mut rng);
        transformed += p.transformed as usize;
        if p.angles != [0.0; 3] {
            rotated += 1;
            assert!(p.angles.iter().all(|a| a.abs() <= 0.5));
        }
        if p.scales != [1.0; 3] {
            scaled += 1;
            assert!(p.scales[0] >= 0.7 && p.scales[0] < 1.4 && p.scales[0] == p.scales[1] && p.scales[1] == p.scales[2]);
        }
    }
    let f = |c: usize| c as f64 / n as f64;
    assert!((f(transformed) - 0.36).abs() < 0.01, "{}", f(transformed));
    assert!((f(rotated) - 0.2).abs() < 0.01 && (f(scaled) - 0.2).abs() < 0.01);
    // 2D: one in-plane angle
    let t2 = SpatialTransform::nnunet([1, 8, 8], SpatialDims::Two, (-3.0, 3.0));
    for _ in 0..1000 {
        let p = t2.sample_params(&mut rng);
        assert_eq!((p.angles[0], p.angles[1]), (0.0, 0.0));
    }
}

#[test]
fn mirror_flips_each_axis_with_probability_half() {
    let shape = [3, 4, 5];
    let n = 60;
    let img: Vec<f32> = (0..n).map(|v| v as f32).collect();
    let seg: Vec<i16> = (0..n as i16).collect();
    let base = Sample::new(Tensor::new(img, 1, shape), Tensor::new(seg, 1, shape));
    let t = MirrorTransform { axes: vec![0, 1, 2] };
    let mut rng = Rng::new(1);
    let mut counts = [0usize; 3];
    let trials = 20_000;
    for _ in 0..trials {
        let mut s = base.clone();
        t.apply(&mut s, &mut rng);
        // voxel 0 moves to the flipped corner; image and seg flipped together
        let pos = s.image.data.iter().position(|&v| v == 0.0).unwrap();
        assert_eq!(s.seg.data[pos], 0);
        let (z, y, x) = (pos / 20, (pos / 5) % 4, pos % 5);
        counts[0] += (z == 2) as usize;
        counts[1] += (y == 3) as usize;
        counts[2] += (x == 4) as usize;
        assert_eq!(s.image.data.iter().map(|&v| v as i16).collect::<Vec<_>>(), s.seg.data);
    }
    for c in counts {
        assert!((c as f64 / trials as f64 - 0.5).abs() < 0.015, "{counts:?}");
    }
    // exact flip of axis 1
    let mut s = base.clone();
    flip(&mut s.image, &[1]);
    assert_eq!(s.image.at(0, 1, 0, 2), base.image.at(0, 1, 3, 2));
    assert_eq!(s.image.at(0, 2, 1, 4), base.image.at(0, 2, 2, 4));
}

#[test]
fn mask_remove_label_and_regions() {
    let shape = [1, 2, 3];
    let img = Tensor::new(vec![1.0; 12], 2, shape);
    let seg = Tensor::new(vec![-1, 0, 1, 2, -1, 3], 1, shape);
    let mut s = Sample::new(img, seg);
    let mut rng = Rng::new(0);
    MaskImageTransform { apply_to_channels: vec![1], channel_idx_in_seg: 0, set_outside_to: 0.0 }.apply(&mut s, &mut rng);
    assert_eq!(s.image.data, vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
    RemoveLabelTransform { label_value: -1, set_to: 0 }.apply(&mut s, &mut rng);
    assert_eq!(s.seg.data, vec![0, 0, 1, 2, 0, 3]);
    ConvertSegmentationToRegionsTransform { regions: vec![vec![1, 2, 3], vec![2, 3], vec![3]], channel_in_seg: 0 }.apply(&mut s, &mut rng);
    assert_eq!(s.seg.channels, 3);
    assert_eq!(s.seg.data, vec![0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn noise_std_and_brightness() {
    let mut rng = Rng::new(3);
    let mut buf = vec![0f32; 400_000];
    rng.fill_normal_f32(&mut buf, 0.05);
    let mean = buf.iter().map(|&v| v as f64).sum::<f64>() / buf.len() as f64;
    let sd = (buf.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / buf.len() as f64).sqrt();
    assert!(mean.abs() < 5e-4 && (sd - 0.05).abs() < 5e-4, "{mean} {sd}");
    let t =
        MultiplicativeBrightnessTransform { multiplier_range: RandomScalar::Const(1.2), synchronize_channels: false, p_per_channel: 1.0 };
    let mut s = Sample::new(Tensor::new(vec![2.0; 8], 2, [1, 2, 2]), Tensor::filled(0, 1, [1, 2, 2]));
    t.apply(&mut s, &mut rng);
    assert!(s.image.data.iter().all(|&v| v == 2.0 * 1.2f32));
}

fn producer_loader() -> Arc<DataLoader<InMemorySource>> {
    let shape = [12, 12, 12];
    let mut rng = Rng::new(0);
    let s = random_sample(&mut rng, 1, shape);
    let mut src = InMemorySource::default();
    src.push(s.image, s.seg, vec![(ClassKey::Label(1), vec![[6, 6, 6]])]);
    let cfg = PipelineConfig::for_patch(&[8, 8, 8]);
    let da = configure_da(&[8, 8, 8]);
    Arc::new(
        DataLoader::new(
            Arc::new(src),
            vec![0],
            2,
            &da.initial_patch_size,
            &[8, 8, 8],
            Oversampling::default(),
            None,
            training_pipeline(&cfg),
        )
        .unwrap(),
    )
}

#[test]
fn producer_queue_is_bounded_and_ordered() {
    let loader = producer_loader();
    let mut p = BatchProducer::new(loader.clone(), 1, 2, 77);
    let t0 = Instant::now();
    while p.produced() < 2 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(p.produced(), 2, "the worker stops at the queue bound");
    let first = p.next_batch().unwrap();
    assert_eq!(first, loader.batch(77, 0, false).unwrap());
    let t0 = Instant::now();
    while p.produced() < 3 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(p.produced(), 3);
    // several workers: the stream is the same sequence of batches
    let mut p3 = BatchProducer::new(loader.clone(), 3, 1, 77);
    for k in 0..7 {
        assert_eq!(p3.next_batch().unwrap(), loader.batch(77, k, false).unwrap(), "batch {k}");
    }
}

#[test]
fn producer_resumes_the_stream_at_any_batch() {
    // what a resumed training run relies on: starting at batch k gives batches k, k+1, … of the uninterrupted stream
    let loader = producer_loader();
    let mut whole = BatchProducer::new(loader.clone(), 2, 1, 99);
    let reference: Vec<_> = (0..6).map(|_| whole.next_batch().unwrap()).collect();
    let mut resumed = BatchProducer::starting_at(loader, 3, 1, 99, 4);
    assert_eq!(resumed.next_batch().unwrap(), reference[4]);
    assert_eq!(resumed.next_batch().unwrap(), reference[5]);
}

#[test]
fn producer_shuts_down_when_dropped() {
    let loader = producer_loader();
    let p = BatchProducer::new(loader, 4, 1, 1);
    std::thread::sleep(Duration::from_millis(200)); // workers now blocked on full queues
    let t0 = Instant::now();
    drop(p);
    assert!(t0.elapsed() < Duration::from_secs(2), "drop joined the workers in {:?}", t0.elapsed());
}
