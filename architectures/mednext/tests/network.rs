//! Forward shapes (2D, anisotropic 3D, stride-1 levels), the memory proxy against the convs a forward pass
//! actually runs, `configure`, `output_strides`, `describe`, and kwargs errors.

use burn::tensor::{Device, Distribution, Tensor};
use nnunet_arch_mednext::blocks::ConvProbe;
use nnunet_arch_mednext::{MedNeXt, MedNeXtArch, MedNeXtKwargs, conv_feature_map_size};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::topology::Topology;
use nnunet_core::{Architecture, ArchitectureError};
use serde_json::{Map, Value, json};

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

fn spec(v: Value, in_ch: usize, out: usize, ds: bool) -> NetworkSpec {
    NetworkSpec { arch_kwargs: kwargs(v), in_channels: in_ch, out_channels: out, deep_supervision: ds }
}

fn input(shape: [usize; 5]) -> Tensor<5> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Device::default())
}

#[test]
fn forward_2d_patch_32x32() {
    let s = spec(json!({"dim": "2d", "n_channels": 4, "block_counts": 1}), 1, 3, true);
    let net = MedNeXtArch.build(&s, &Device::default()).unwrap();
    let outs = net.forward(input([2, 1, 1, 32, 32]));
    let shapes: Vec<[usize; 5]> = outs.iter().map(|o| o.dims()).collect();
    assert_eq!(shapes, vec![[2, 3, 1, 32, 32], [2, 3, 1, 16, 16], [2, 3, 1, 8, 8], [2, 3, 1, 4, 4], [2, 3, 1, 2, 2]]);
    let s = spec(json!({"dim": "2d", "n_channels": 4, "block_counts": 1}), 1, 3, false);
    let outs = MedNeXtArch.build(&s, &Device::default()).unwrap().forward(input([1, 1, 1, 32, 32]));
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].dims(), [1, 3, 1, 32, 32]);
}

#[test]
fn forward_anisotropic_3d_with_stride_one_levels() {
    // z pooled once (at down_2), y/x three times; down_3 does not downsample at all
    let kw = json!({"n_channels": 2, "block_counts": 1, "kernel_size": 5,
                    "strides": [[1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 1, 1]],
                    "kernel_axes": [[false, true, true], [false, true, true], [true, true, true], [true, true, true], [true, true, true]]});
    let s = spec(kw, 2, 2, true);
    let outs = MedNeXtArch.build(&s, &Device::default()).unwrap().forward(input([1, 2, 6, 16, 24]));
    let shapes: Vec<[usize; 5]> = outs.iter().map(|o| o.dims()).collect();
    assert_eq!(shapes, vec![[1, 2, 6, 16, 24], [1, 2, 6, 8, 12], [1, 2, 6, 4, 6], [1, 2, 3, 2, 3], [1, 2, 3, 2, 3]]);
    assert!(outs.iter().all(|o| o.clone().is_finite().all().into_scalar::<bool>()));
    assert_eq!(MedNeXtArch.output_strides(&s).unwrap(), vec![vec![1, 1, 1], vec![1, 2, 2], vec![1, 4, 4], vec![2, 8, 8], vec![2, 8, 8]]);
}

/// The memory proxy is the sum of the output sizes of every conv a forward pass runs (recorded by a probe).
#[test]
fn memory_proxy_counts_every_conv_output() {
    let cases = [
        (json!({"n_channels": 2, "block_counts": [1, 2, 1, 0, 1, 1, 2, 1, 1], "exp_r": [1, 2, 3, 2, 1, 2, 3, 2, 1]}), [16, 16, 16], true),
        (json!({"n_channels": 2, "block_counts": 1, "strides": [[1, 2, 2], 2, 1, [2, 1, 1]]}), [4, 16, 8], false),
        (json!({"dim": "2d", "n_channels": 3, "block_counts": 1, "do_res_up_down": false}), [1, 32, 16], true),
    ];
    for (kw, patch, ds) in cases {
        let parsed = MedNeXtKwargs::parse(&kwargs(kw.clone())).unwrap();
        let net = MedNeXt::new(&parsed, 1, 2, ds, &Device::default());
        let mut probe = ConvProbe::recording();
        net.forward_probed(input([1, 1, patch[0], patch[1], patch[2]]), &mut probe);
        let want = probe.elements_per_sample();
        assert_eq!(conv_feature_map_size(&parsed, patch, 2, ds).unwrap(), want, "{kw}");
        let p: Vec<usize> = if parsed.dims == 2 { patch[1..].to_vec() } else { patch.to_vec() };
        assert_eq!(MedNeXtArch.memory_proxy(&spec(kw.clone(), 1, 2, ds), &p).unwrap(), want as f64, "{kw}");
        // every conv of the network ran once: 1 stem + 3 per block + 4 per down/up block + heads
        let blocks: usize = parsed.block_counts.iter().sum();
        let res = if parsed.do_res_up_down { 8 } else { 0 };
        assert_eq!(probe.outputs.len(), 1 + 3 * blocks + 24 + res + if ds { 5 } else { 1 }, "{kw}");
    }
}

/// Hand count for a tiny network: C = 1, exp_r = 1, one block per level, 2×2×2 patch, one downsampling.
#[test]
fn memory_proxy_hand_count() {
    let kw = MedNeXtKwargs::parse(&kwargs(json!({"n_channels": 1, "exp_r": 1, "block_counts": 1, "strides": [2, 1, 1, 1]}))).unwrap();
    // level volumes 8, 1, 1, 1, 1; channels 1, 2, 4, 8, 16; a block runs 3 convs of c, e·c, c = 3c outputs per voxel
    let stem = 8;
    let enc = 3 * 8 + 3 * 2 + 3 * 4 + 3 * 8 + 3 * 16; // levels 0..3 and the bottleneck
    let down = (2 + 4) + (4 + 8) + (8 + 16) + (16 + 32); // conv1 + conv2 at c_l, conv3 + res_conv at c_{l+1}
    let up = (4 + 2) + (8 + 4) + (16 + 8) + (32 + 16); // conv1 + conv2 at c_{l+1}, conv3 + res_conv at c_l; up_0 runs at 1 voxel
    let dec = 3 * 8 + 3 * 2 + 3 * 4 + 3 * 8;
    let head = 8;
    assert_eq!(stem + enc + down + up + dec + head, 376);
    assert_eq!(conv_feature_map_size(&kw, [2, 2, 2], 1, false).unwrap(), 376);
}

#[test]
fn configure_maps_planner_topologies() {
    // 3D, 3 stages: two downsamplings, then stride-1 levels; kernels from the topology
    let t = Topology {
        strides: vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 2, 2]],
        kernel_sizes: vec![vec![1, 3, 3], vec![3, 3, 3], vec![3, 3, 3]],
        features_per_stage: vec![32, 64, 128],
        patch_size: vec![8, 16, 24],
    };
    let m = MedNeXtArch.configure(&t).unwrap();
    assert_eq!(m["size"], json!("S"));
    assert_eq!(m["kernel_size"], json!(3));
    assert_eq!(m["dim"], json!("3d"));
    assert_eq!(m["strides"], json!([[1, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1]]));
    assert_eq!(
        m["kernel_axes"],
        json!([[false, true, true], [true, true, true], [true, true, true], [true, true, true], [true, true, true]])
    );
    let kw = MedNeXtKwargs::parse(&m).unwrap();
    assert_eq!(kw.level_sizes([8, 16, 24]).unwrap()[4], [4, 4, 6]);

    // 2D, 7 stages: only the first four downsamplings are used
    let t = Topology {
        strides: vec![vec![1, 1], vec![2, 2], vec![2, 2], vec![2, 2], vec![2, 2], vec![2, 2], vec![2, 1]],
        kernel_sizes: vec![vec![3, 3]; 7],
        features_per_stage: vec![32, 64, 128, 256, 512, 512, 512],
        patch_size: vec![256, 128],
    };
    let m = MedNeXtArch.configure(&t).unwrap();
    assert_eq!(m["dim"], json!("2d"));
    assert_eq!(m["strides"], json!([[2, 2], [2, 2], [2, 2], [2, 2]]));
    assert_eq!(m["kernel_axes"], json!(vec![[true, true]; 5]));
    let s = NetworkSpec { arch_kwargs: m, in_channels: 1, out_channels: 2, deep_supervision: true };
    assert_eq!(MedNeXtArch.output_strides(&s).unwrap(), vec![vec![1, 1], vec![2, 2], vec![4, 4], vec![8, 8], vec![16, 16]]);
    assert!(MedNeXtArch.memory_proxy(&s, &[256, 128]).unwrap() > 0.0);
}

/// nnU-Net's own U-Net kwargs (a default plan whose class was switched to MedNeXt) read as their topology.
#[test]
fn unet_style_kwargs_are_read_as_their_topology() {
    let unet = json!({
        "n_stages": 3, "features_per_stage": [32, 64, 128], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": true,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": true},
        "dropout_op": null, "dropout_op_kwargs": null, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}
    });
    let from_unet = MedNeXtKwargs::parse(&kwargs(unet)).unwrap();
    let t = Topology {
        strides: vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 2, 2]],
        kernel_sizes: vec![vec![1, 3, 3], vec![3, 3, 3], vec![3, 3, 3]],
        features_per_stage: vec![32, 64, 128],
        patch_size: vec![8, 16, 24],
    };
    assert_eq!(from_unet, MedNeXtKwargs::parse(&MedNeXtKwargs::configure(&t).unwrap()).unwrap());
    // user overrides on top of configure's output
    let mut m = MedNeXtKwargs::configure(&t).unwrap();
    m.insert("size".into(), json!("L"));
    m.insert("kernel_size".into(), json!(5));
    let kw = MedNeXtKwargs::parse(&m).unwrap();
    assert_eq!((kw.block_counts[2], kw.exp_r[2], kw.kernel_size, kw.kernel(0)), (8, 8, 5, [1, 5, 5]));
    // the alias `kernel` alone
    assert_eq!(MedNeXtKwargs::parse(&kwargs(json!({"kernel": 5}))).unwrap().kernel(4), [5, 5, 5]);
}

#[test]
fn describe_lists_every_level() {
    let s = spec(json!({"size": "B", "kernel_size": 5}), 1, 2, true);
    let lines = MedNeXtArch.describe(&s, &[64, 64, 32]).unwrap();
    assert_eq!(lines.len(), 1 + 1 + 8 + 1 + 8, "{lines:#?}");
    assert!(lines[0].contains("size B") && lines[0].contains("kernel 5"), "{}", lines[0]);
    assert!(lines.iter().any(|l| l.starts_with("bottleneck") && l.contains("(512, 4x4x2)")), "{lines:#?}");
    assert!(lines.last().unwrap().contains("(32, 64x64x32)") && lines.last().unwrap().contains("full-resolution"), "{lines:#?}");
    let s2 = spec(json!({"dim": "2d"}), 1, 2, false);
    let lines = MedNeXtArch.describe(&s2, &[32, 48]).unwrap();
    assert!(lines.iter().any(|l| l.starts_with("bottleneck") && l.contains("(512, 2x3)")), "{lines:#?}");
}

fn kwargs_error(v: Value) -> String {
    match MedNeXtKwargs::parse(&kwargs(v)) {
        Err(ArchitectureError::Kwargs(m)) => m,
        other => panic!("expected a kwargs error, got {other:?}"),
    }
}

#[test]
fn bad_kwargs_name_the_key() {
    for (v, key) in [
        (json!({"size": "XL"}), "'size'"),
        (json!({"size": 3}), "'size'"),
        (json!({"kernel_size": 4}), "'kernel_size'"),
        (json!({"kernel_size": 3, "kernel": 5}), "'kernel'"),
        (json!({"kernel": "big"}), "'kernel'"),
        (json!({"n_channels": 0}), "'n_channels'"),
        (json!({"exp_r": [2, 2]}), "'exp_r'"),
        (json!({"exp_r": 0}), "'exp_r'"),
        (json!({"block_counts": [1, 1, 1, 1, 1, 1, 1, 1, -1]}), "'block_counts'"),
        (json!({"strides": [2, 2, 2]}), "'strides'"),
        (json!({"strides": [3, 2, 2, 2]}), "'strides'"),
        (json!({"strides": [[2, 2, 2], 2, [2, 2], 2]}), "'strides'"),
        (json!({"kernel_axes": [1, 1, 1]}), "'kernel_axes'"),
        (json!({"kernel_axes": vec![[true, true, true]; 4]}), "'kernel_axes'"),
        (json!({"dim": "4d"}), "'dim'"),
        (json!({"dim": "2d", "strides": [[2, 2, 2], 2, 2, 2]}), "'strides'"),
        (json!({"strides": [[2, 2], [2, 2], [2, 2], [2, 2]], "kernel_axes": [true, true, true]}), "'kernel_axes'"),
        (json!({"grn": true}), "'grn'"),
        (json!({"norm_type": "layer"}), "'norm_type'"),
        (json!({"do_res": 1}), "'do_res'"),
        (json!({"depth": 5}), "'depth'"),
    ] {
        let msg = kwargs_error(v.clone());
        assert!(msg.contains(key) && msg.starts_with("MedNeXt:"), "{v}: {msg}");
    }
}

#[test]
fn patches_must_fit_the_network() {
    let s = spec(json!({}), 1, 2, false);
    let e = MedNeXtArch.memory_proxy(&s, &[32, 32, 24]).unwrap_err().to_string();
    assert!(e.contains("not divisible") && e.contains("[16, 16, 16]"), "{e}");
    let e = MedNeXtArch.memory_proxy(&s, &[32, 32]).unwrap_err().to_string();
    assert!(e.contains("3D network"), "{e}");
    assert!(MedNeXtArch.describe(&s, &[32, 32, 32]).is_ok());
}
