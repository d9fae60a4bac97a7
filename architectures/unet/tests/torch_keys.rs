//! `Network::torch_state_dict` lists exactly PyTorch's `state_dict()` keys, in PyTorch's order, each naming a
//! parameter of the same shape (2D weights lifted to 3D) — against dynamic_network_architectures' own keys
//! (fixtures/torch_state_dict_keys.json, written by fixtures/torch_state_dict_keys.py).

use burn::tensor::Device;
use nnunet_arch_unet::{Encoder, UNetArchitecture};
use nnunet_core::Architecture;
use nnunet_core::architecture::NetworkSpec;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

fn build(enc: Encoder, kwargs: Value, in_channels: usize, out_channels: usize) -> Box<dyn nnunet_core::Network> {
    let mut kw = kwargs;
    for (k, v) in [
        ("conv_bias", json!(true)),
        ("norm_op_kwargs", json!({"eps": 1e-05, "affine": true})),
        ("dropout_op", Value::Null),
        ("dropout_op_kwargs", Value::Null),
        ("nonlin", json!("torch.nn.LeakyReLU")),
        ("nonlin_kwargs", json!({"inplace": true})),
    ] {
        kw[k] = v;
    }
    let spec = NetworkSpec { arch_kwargs: kw.as_object().unwrap().clone(), in_channels, out_channels, deep_supervision: true };
    UNetArchitecture(enc).build(&spec, &Device::default()).expect("builds")
}

fn check(name: &str, net: &dyn nnunet_core::Network) {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/torch_state_dict_keys.json")).expect("fixture");
    let expected: Vec<(String, Vec<usize>)> = serde_json::from_value(fixture[name].clone()).unwrap();
    let ours = net.torch_state_dict();
    let keys: Vec<&str> = ours.iter().map(|k| k.key.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, want, "{name}: keys or their order differ");
    let shapes: HashMap<String, Vec<usize>> = net.named_parameters().into_iter().map(|p| (p.path, p.shape)).collect();
    for (k, (_, torch_shape)) in ours.iter().zip(&expected) {
        let shape = &shapes[&k.path];
        let lifted: Vec<usize> =
            if torch_shape.len() == 4 { [&torch_shape[..2], &[1], &torch_shape[2..]].concat() } else { torch_shape.clone() };
        assert_eq!(shape, &lifted, "{name}: {} ({}) has shape {shape:?}, PyTorch {torch_shape:?}", k.key, k.path);
    }
    // every parameter is behind at least one key
    let covered: HashSet<&str> = ours.iter().map(|k| k.path.as_str()).collect();
    assert_eq!(covered.len(), shapes.len(), "{name}: parameters without a key");
}

#[test]
fn plain_conv_unet_3d() {
    let kw = json!({"n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2], "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d"});
    check("plain3d", build(Encoder::Plain, kw, 1, 3).as_ref());
}

#[test]
fn plain_conv_unet_2d() {
    let kw = json!({"n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv2d",
        "kernel_sizes": [[3, 3], [3, 3], [3, 3]], "strides": [[1, 1], [2, 2], [2, 2]], "n_conv_per_stage": [2, 1, 2],
        "n_conv_per_stage_decoder": [1, 2], "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d"});
    check("plain2d", build(Encoder::Plain, kw, 2, 2).as_ref());
}

#[test]
fn residual_encoder_unet_with_strided_and_unstrided_projections() {
    let kw = json!({"n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2], [1, 1, 1]], "n_blocks_per_stage": [1, 2, 2],
        "n_conv_per_stage_decoder": [1, 1], "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d"});
    check("resenc3d", build(Encoder::Residual, kw, 1, 3).as_ref());
}
