//! Network behaviour beyond PyTorch agreement: the memory proxy equals the convs the forward pass runs, output
//! strides match the outputs, nearest upsampling, `configure`'s rule, kwargs errors, pretrained transfer.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use nnunet_arch_stunet::blocks::{ConvProbe, upsample_nearest};
use nnunet_arch_stunet::{STUNet, STUNetArch, STUNetKwargs, conv_feature_map_size};
use nnunet_core::Architecture;
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::topology::Topology;
use serde_json::{Map, Value, json};

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

fn spec(v: Value, ds: bool) -> NetworkSpec {
    NetworkSpec { arch_kwargs: kwargs(v), in_channels: 2, out_channels: 3, deep_supervision: ds }
}

const TINY: &str = r#"{"dims": [2, 3, 4, 5], "depth": [1, 2, 1, 2], "pool_op_kernel_sizes": [[1, 2, 2], [2, 2, 1], [1, 1, 1]],
                      "conv_kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 1, 3], [3, 3, 3]]}"#;

#[test]
fn memory_proxy_equals_the_convs_run() {
    let v: Value = serde_json::from_str(TINY).unwrap();
    let kw = STUNetKwargs::parse(&kwargs(v.clone())).unwrap();
    for ds in [true, false] {
        let net = STUNet::new(&kw, 2, 3, ds, &Device::default());
        let x = Tensor::<5>::random([1, 2, 4, 8, 6], Distribution::Normal(0.0, 1.0), &Device::default());
        let mut probe = ConvProbe::recording();
        let outs = net.forward_probed(x, &mut probe);
        assert_eq!(outs.len(), if ds { 3 } else { 1 });
        // 4 stages: encoder 1+2+1+2 blocks (2 convs each + a projection per stage), 3 upsampling convs,
        // decoder 1+2+1 blocks (+3 projections), heads
        let heads = if ds { 3 } else { 1 };
        assert_eq!(probe.outputs.len(), (6 * 2 + 4) + 3 + (4 * 2 + 3) + heads);
        let proxy = STUNetArch.memory_proxy(&spec(v.clone(), ds), &[4, 8, 6]).unwrap();
        assert_eq!(proxy as u64, probe.elements_per_sample(), "deep supervision {ds}");
        assert_eq!(conv_feature_map_size(&kw, [4, 8, 6], 3, ds).unwrap(), probe.elements_per_sample());
    }
}

#[test]
fn output_strides_match_the_outputs() {
    let v: Value = serde_json::from_str(TINY).unwrap();
    let strides = STUNetArch.output_strides(&spec(v.clone(), true)).unwrap();
    assert_eq!(strides, vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 4, 2]]);
    let net = STUNetArch.build(&spec(v, true), &Device::default()).unwrap();
    let outs = net.forward(Tensor::<5>::zeros([1, 2, 4, 8, 6], &Device::default()));
    for (o, s) in outs.iter().zip(&strides) {
        assert_eq!(o.dims(), [1, 3, 4 / s[0], 8 / s[1], 6 / s[2]]);
    }
    // 2D: z dropped
    let s2 = STUNetArch.output_strides(&spec(json!({"dim": "2d", "dims": [2, 2, 2]}), true)).unwrap();
    assert_eq!(s2, vec![vec![1, 1], vec![2, 2]]);
}

#[test]
fn nearest_upsampling_repeats_voxels() {
    let x = Tensor::<5>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 1, 2, 2]), &Device::default());
    let y = upsample_nearest(x, [2, 1, 3]);
    assert_eq!(y.dims(), [1, 1, 2, 2, 6]);
    let v: Vec<f32> = y.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let row = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0];
    assert_eq!(v, [row, row].concat());
}

#[test]
fn configure_takes_the_first_five_downsamplings_padded() {
    let t = Topology {
        strides: vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 2, 2]],
        kernel_sizes: vec![vec![1, 3, 3], vec![3, 3, 3], vec![3, 3, 3]],
        features_per_stage: vec![32, 64, 128],
        patch_size: vec![8, 16, 16],
    };
    let kw = STUNetArch.configure(&t).unwrap();
    assert_eq!(kw["size"], json!("small"));
    assert_eq!(kw["pool_op_kernel_sizes"], json!([[1, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1], [1, 1, 1]]));
    assert_eq!(kw["conv_kernel_sizes"], serde_json::to_value(vec![[3, 3, 3]; 6]).unwrap());
    let parsed = STUNetKwargs::parse(&kw).unwrap();
    assert_eq!(parsed.dims, vec![16, 32, 64, 128, 256, 256]);
    assert_eq!(parsed.total_stride(), [2, 4, 4]);

    let deep = Topology {
        strides: std::iter::once(vec![1, 1]).chain(std::iter::repeat_n(vec![2, 2], 7)).collect(),
        kernel_sizes: vec![vec![3, 3]; 8],
        features_per_stage: vec![32; 8],
        patch_size: vec![512, 512],
    };
    let kw = STUNetArch.configure(&deep).unwrap();
    assert_eq!(kw["pool_op_kernel_sizes"], serde_json::to_value(vec![[2, 2]; 5]).unwrap());
    assert_eq!(kw["dim"], json!("2d"));
    assert_eq!(STUNetKwargs::parse(&kw).unwrap().total_stride(), [1, 32, 32]);
}

#[test]
fn unet_kwargs_from_the_planner_are_converted() {
    let kw = kwargs(json!({
        "n_stages": 4, "features_per_stage": [32, 64, 128, 256], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2], "conv_bias": true,
        "size": "small",
    }));
    let p = STUNetKwargs::parse(&kw).unwrap();
    assert_eq!(p.pool_op_kernel_sizes, vec![[1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1]]);
    assert_eq!(p.conv_kernel_sizes, vec![[3, 3, 3]; 6]);
}

#[test]
fn kwargs_errors_name_the_key() {
    let bad = [
        (json!({"sise": "small"}), "unknown key 'sise'"),
        (json!({"size": "medium"}), "'size'"),
        (json!({"dims": [4]}), "'dims'"),
        (json!({"dims": [4, 8], "depth": [1, 1, 1]}), "'depth'"),
        (json!({"depth": 0}), "'depth'"),
        (json!({"dims": [4, 8], "pool_op_kernel_sizes": [[2, 2, 2], [2, 2, 2]]}), "'pool_op_kernel_sizes'"),
        (json!({"dims": [4, 8], "pool_op_kernel_sizes": [[2, 0, 2]]}), "'pool_op_kernel_sizes'"),
        (json!({"conv_kernel_sizes": [4, 4, 4]}), "'conv_kernel_sizes'"),
        (json!({"dim": "4d"}), "'dim'"),
    ];
    for (kw, want) in bad {
        let e = STUNetKwargs::parse(&kwargs(kw.clone())).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("STUNet"), "{kw}: {e}");
    }
    let e = STUNetArch.memory_proxy(&spec(json!({"size": "small"}), true), &[32, 32, 48]).unwrap_err().to_string();
    assert!(e.contains("not divisible"), "{e}");
}

#[test]
fn describe_lists_every_stage() {
    let lines = STUNetArch.describe(&spec(json!({"size": "small"}), true), &[64, 64, 64]).unwrap();
    assert_eq!(lines.len(), 1 + 6 + 2 * 5);
    assert!(lines[0].contains("small"), "{}", lines[0]);
    assert!(lines[6].contains("(256, 2x2x2)"), "{}", lines[6]);
    assert!(lines.last().unwrap().contains("full-resolution"), "{}", lines.last().unwrap());
}

#[test]
fn pretrained_transfer_keeps_fresh_heads() {
    let dev = Device::default();
    let v = json!({"dims": [2, 3, 4], "depth": 1});
    let src = STUNetArch
        .build(&NetworkSpec { arch_kwargs: kwargs(v.clone()), in_channels: 1, out_channels: 5, deep_supervision: true }, &dev)
        .unwrap();
    let mut dst = STUNetArch
        .build(&NetworkSpec { arch_kwargs: kwargs(v.clone()), in_channels: 1, out_channels: 2, deep_supervision: true }, &dev)
        .unwrap();
    let heads_before: Vec<_> = dst.named_parameters().into_iter().filter(|p| p.path.starts_with("seg_outputs.")).collect();
    let copied = STUNetArch.transfer_pretrained(dst.as_mut(), &src.named_parameters()).unwrap().unwrap();
    let after = dst.named_parameters();
    assert_eq!(copied.len(), after.len() - heads_before.len());
    let theirs: std::collections::HashMap<_, _> = src.named_parameters().into_iter().map(|p| (p.path.clone(), p)).collect();
    for p in &after {
        if p.path.starts_with("seg_outputs.") {
            assert!(heads_before.contains(p), "{} changed", p.path);
        } else {
            assert_eq!(p.values, theirs[&p.path].values, "{}", p.path);
        }
    }
    // another input channel count does not fit
    let mut other =
        STUNetArch.build(&NetworkSpec { arch_kwargs: kwargs(v), in_channels: 2, out_channels: 2, deep_supervision: true }, &dev).unwrap();
    let e = STUNetArch.transfer_pretrained(other.as_mut(), &src.named_parameters()).unwrap().unwrap_err().to_string();
    assert!(e.contains("conv_blocks_context.0.0.conv1.weight"), "{e}");
}

#[test]
fn parameter_paths_are_pytorch_state_dict_keys() {
    let net = STUNetArch.build(&spec(json!({"dims": [2, 3], "depth": [2, 1]}), true), &Device::default()).unwrap();
    let paths: Vec<String> = net.named_parameters().into_iter().map(|p| p.path).collect();
    for want in [
        "conv_blocks_context.0.0.conv1.weight",
        "conv_blocks_context.0.0.norm1.gamma",
        "conv_blocks_context.0.0.conv3.bias",
        "conv_blocks_context.0.1.conv2.weight",
        "conv_blocks_context.1.0.conv3.weight",
        "upsample_layers.0.conv.weight",
        "conv_blocks_localization.0.1.norm2.beta",
        "seg_outputs.0.bias",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} not in {paths:?}");
    }
    assert!(!paths.iter().any(|p| p == "conv_blocks_context.0.1.conv3.weight"));
}

#[test]
fn init_is_nnunet_he() {
    let net = STUNetArch.build(&spec(json!({"dims": [16, 32], "depth": 1}), true), &Device::default()).unwrap();
    for p in net.named_parameters() {
        let n = p.values.len() as f64;
        let mean = p.values.iter().map(|&v| v as f64).sum::<f64>() / n;
        if p.path.ends_with(".gamma") {
            assert!(p.values.iter().all(|&v| v == 1.0), "{}", p.path);
        } else if p.path.ends_with(".bias") || p.path.ends_with(".beta") {
            assert!(p.values.iter().all(|&v| v == 0.0), "{}", p.path);
        } else if n >= 4000.0 {
            // kaiming_normal_(a = 0.01): std sqrt(2 / 1.0001) / sqrt(fan_in)
            let fan_in: usize = p.shape[1..].iter().product();
            let want = nnunet_arch_stunet::blocks::he_std(fan_in);
            let std = (p.values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!((std / want - 1.0).abs() < 0.08 && mean.abs() < 0.1 * want, "{}: std {std}, want {want}, mean {mean}", p.path);
        }
    }
}
