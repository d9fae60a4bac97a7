//! Sampling: oversampling table, DS scales, crop bounds, forced-foreground centering, padding, 2D slices, ignore key.

use std::sync::Arc;

use nnunet_augment::*;

#[test]
fn oversampling_table_spec_8_5() {
    let table = [
        (1, 1, 0),
        (2, 1, 1),
        (3, 2, 1),
        (4, 3, 1),
        (5, 3, 2),
        (6, 4, 2),
        (7, 5, 2),
        (8, 5, 3),
        (9, 6, 3),
        (10, 7, 3),
        (12, 8, 4),
        (16, 11, 5),
        (24, 16, 8),
        (50, 34, 16),
        (100, 67, 33),
        (150, 100, 50),
        (309, 207, 102),
        (366, 245, 121),
    ];
    for (b, random, forced) in table {
        let flags: Vec<bool> = (0..b).map(|j| is_forced_foreground(j, b, 0.33)).collect();
        let n_forced = flags.iter().filter(|&&f| f).count();
        assert_eq!((b - n_forced, n_forced), (random, forced), "batch {b}");
        // positional: the forced ones are the last ones
        assert!(flags.windows(2).all(|w| w[0] <= w[1]), "batch {b}");
    }
}

#[test]
fn ds_scales_spec_8_4() {
    let strides = vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 2, 2], vec![2, 2, 2], vec![2, 2, 2], vec![1, 2, 2]];
    let want = vec![vec![1.0, 1.0, 1.0], vec![1.0, 0.5, 0.5], vec![0.5, 0.25, 0.25], vec![0.25, 0.125, 0.125], vec![0.125, 0.0625, 0.0625]];
    assert_eq!(deep_supervision_scales(&strides), want);
    assert_eq!(deep_supervision_scales(&[vec![1, 1], vec![2, 2], vec![2, 2]]), vec![vec![1.0, 1.0], vec![0.5, 0.5]]);
}

fn sampler(p: [usize; 3], fp: [usize; 3]) -> PatchSampler {
    PatchSampler { patch_size: p, final_patch_size: fp, annotated_key: None }
}

#[test]
fn crop_bounds_follow_get_bbox() {
    // need = 73 - 40 = 33 on axis 0: lb = floor(-33/2) = -17, ub = S + 16 + 1 - 73
    let s = sampler([73, 80, 64], [40, 56, 40]);
    let b = s.bounds([36, 50, 35]);
    // axis 0: need 33, 33 + 36 = 69 < 73 → need = 73 - 36 = 37 → lb -19, ub 36 + 18 + 1 - 73 = -18
    // axis 1: need 24, 74 ≥ 80? no: 24 + 50 = 74 < 80 → need 30 → lb -15, ub 50 + 15 - 80 = -15
    // axis 2: need 24, 59 < 64 → need 29 → lb -15 (floor(-14.5)), ub 35 + 14 + 1 - 64 = -14
    assert_eq!(b, CropBounds { lb: [-19, -15, -15], ub: [-18, -15, -14] });
    let b = s.bounds([200, 300, 100]);
    assert_eq!(b, CropBounds { lb: [-17, -12, -12], ub: [200 + 16 + 1 - 73, 300 + 12 - 80, 100 + 12 - 64] });
    // random starts are uniform on [lb, ub] inclusive
    let meta = CaseMeta { shape: [200, 300, 100], num_channels: 1, class_locations: vec![] };
    let mut rng = Rng::new(1);
    let mut seen_lb = false;
    let mut seen_ub = false;
    for _ in 0..20000 {
        let st = s.crop_start(&meta, false, &mut rng);
        assert!(st[0] >= -17 && st[0] <= 144);
        seen_lb |= st[0] == -17;
        seen_ub |= st[0] == 144;
    }
    assert!(seen_lb && seen_ub);
}

#[test]
fn forced_foreground_centers_on_a_stored_voxel() {
    let s = sampler([20, 20, 20], [16, 16, 16]);
    let loc = vec![(ClassKey::Label(1), vec![[30, 5, 40]]), (ClassKey::Label(2), vec![]), (ClassKey::Label(3), vec![[2, 3, 4]])];
    let meta = CaseMeta { shape: [50, 50, 50], num_channels: 1, class_locations: loc };
    let b = s.bounds(meta.shape);
    assert_eq!(b.lb, [-2, -2, -2]);
    let mut rng = Rng::new(7);
    let mut counts = [0usize; 2];
    for _ in 0..4000 {
        let st = s.crop_start(&meta, true, &mut rng);
        // start = max(lb, voxel − P//2), no upper clamp
        if st == [20, -2, 30] {
            counts[0] += 1;
        } else if st == [-2, -2, -2] {
            counts[1] += 1;
        } else {
            panic!("unexpected start {st:?}");
        }
    }
    // class chosen uniformly among classes that have locations (label 2 has none)
    assert!((counts[0] as f64 / 4000.0 - 0.5).abs() < 0.04, "{counts:?}");
    // the voxel lies inside the crop
    let st = [20i64, -2, 30];
    for (d, v) in [30i64, 5, 40].iter().enumerate() {
        assert!(*v >= st[d] && *v < st[d] + 20);
    }
    // no foreground at all → random crop
    let empty = CaseMeta { shape: [50, 50, 50], num_channels: 1, class_locations: vec![(ClassKey::Label(1), vec![])] };
    let st = s.crop_start(&empty, true, &mut rng);
    assert!((0..3).all(|d| st[d] >= b.lb[d] && st[d] <= b.ub[d]));
}

#[test]
fn ignore_label_centers_random_samples_on_annotated_voxels() {
    let key = ClassKey::Region(vec![-1, 0, 1]);
    let s = PatchSampler { patch_size: [8, 8, 8], final_patch_size: [8, 8, 8], annotated_key: Some(key.clone()) };
    let loc = vec![(ClassKey::Label(1), vec![[20, 20, 20]]), (key, vec![[10, 11, 12]])];
    let meta = CaseMeta { shape: [40, 40, 40], num_channels: 1, class_locations: loc };
    let mut rng = Rng::new(3);
    for _ in 0..50 {
        assert_eq!(s.crop_start(&meta, false, &mut rng), [6, 7, 8]);
        // forced: the annotated key is dropped when other classes exist
        assert_eq!(s.crop_start(&meta, true, &mut rng), [16, 16, 16]);
    }
}

#[test]
fn crop_pads_image_zero_and_seg_minus_one() {
    let mut src = InMemorySource::default();
    let shape = [3, 4, 5];
    let img: Vec<f32> = (0..60).map(|v| v as f32 + 1.0).collect();
    let seg: Vec<i16> = (0..60).map(|v| (v % 3) as i16).collect();
    src.push(Tensor::new(img, 1, shape), Tensor::new(seg, 1, shape), vec![]);
    let (i, s) = src.read_patch(0, [-1, 2, 3], [3, 3, 3]).unwrap();
    assert_eq!(i.shape, [3, 3, 3]);
    // first z plane is padding
    assert!(i.data[..9].iter().all(|&v| v == 0.0));
    assert!(s.data[..9].iter().all(|&v| v == -1));
    // voxel (1, 0, 0) of the crop = source (0, 2, 3)
    assert_eq!(i.at(0, 1, 0, 0), (2 * 5 + 3) as f32 + 1.0);
    // x = 2 of the crop is source x 5: outside
    assert_eq!(i.at(0, 1, 0, 2), 0.0);
    assert_eq!(s.at(0, 1, 0, 2), -1);
    // y = 2 → source y 4: outside
    assert_eq!(s.at(0, 2, 2, 0), -1);
    // crop (2, 1, 1) = source (z 1, y 3, x 4)
    assert_eq!(s.at(0, 2, 1, 1), (((4 + 3) * 5 + 4) % 3) as i16);
}

fn loader_2d(source: Arc<InMemorySource>, batch: usize) -> DataLoader<InMemorySource> {
    let cfg = PipelineConfig::for_patch(&[8, 8]);
    DataLoader::new(source, vec![0], batch, &[8, 8], &[8, 8], Oversampling::default(), None, validation_pipeline(&cfg)).unwrap()
}

#[test]
fn two_d_configs_sample_slices_of_3d_volumes() {
    // each slice z is filled with value z; labels only on slice 5
    let shape = [7, 8, 8];
    let img: Vec<f32> = (0..7 * 64).map(|i| (i / 64) as f32).collect();
    let mut seg = vec![0i16; 7 * 64];
    seg[5 * 64 + 3 * 8 + 3] = 1;
    let mut src = InMemorySource::default();
    src.push(Tensor::new(img, 1, shape), Tensor::new(seg, 1, shape), vec![(ClassKey::Label(1), vec![[5, 3, 3]])]);
    let loader = loader_2d(Arc::new(src), 3);
    let mut slices = std::collections::BTreeSet::new();
    for k in 0..200 {
        let b = loader.batch(11, k, false).unwrap();
        assert_eq!(b.image_shape, vec![3, 1, 8, 8]);
        assert_eq!(b.targets[0].1, vec![3, 1, 8, 8]);
        for j in 0..3 {
            let v = &b.image[j * 64..(j + 1) * 64];
            assert!(v.iter().all(|&x| x == v[0]), "one slice per sample");
            slices.insert(v[0] as i64);
        }
        // sample 2 is forced: slice 5, containing the label
        assert_eq!(b.forced_fg, vec![false, false, true]);
        assert_eq!(b.image[128], 5.0);
        assert!(b.targets[0].0[128..192].contains(&1));
    }
    assert_eq!(slices.len(), 7, "random samples cover every slice");
}

#[test]
fn batches_are_deterministic_per_seed_and_index() {
    let shape = [10, 12, 12];
    let img: Vec<f32> = (0..1440).map(|i| (i % 17) as f32).collect();
    let seg: Vec<i16> = (0..1440).map(|i| ((i / 7) % 3) as i16).collect();
    let mut src = InMemorySource::default();
    src.push(Tensor::new(img, 1, shape), Tensor::new(seg, 1, shape), vec![(ClassKey::Label(1), vec![[4, 4, 4]])]);
    let cfg = PipelineConfig { ds_scales: Some(vec![vec![1.0; 3], vec![0.5; 3]]), ..PipelineConfig::for_patch(&[8, 8, 8]) };
    let da = configure_da(&[8, 8, 8]);
    let l = DataLoader::new(
        Arc::new(src),
        vec![0],
        2,
        &da.initial_patch_size,
        &[8, 8, 8],
        Oversampling::default(),
        None,
        training_pipeline(&cfg),
    )
    .unwrap();
    let a = l.batch(5, 3, true).unwrap();
    let b = l.batch(5, 3, false).unwrap();
    assert_eq!(a, b);
    assert_ne!(l.batch(5, 4, false).unwrap().image, a.image);
    assert_eq!(a.image_shape, vec![2, 1, 8, 8, 8]);
    assert_eq!(a.targets.iter().map(|t| t.1.clone()).collect::<Vec<_>>(), vec![vec![2, 1, 8, 8, 8], vec![2, 1, 4, 4, 4]]);
    assert!(a.targets[0].0.iter().all(|&v| v >= 0), "-1 removed");
}
