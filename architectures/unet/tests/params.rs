//! Parameter counts equal PyTorch's (training spec §1.6) for the spec's reference networks and for every
//! configuration of nnU-Net's Hippocampus plans (default and ResEnc M/L/XL, 2d and 3d_fullres).

use burn::tensor::Device;
use nnunet_arch_unet::{Encoder, UNetArchitecture};
use nnunet_core::Architecture;
use nnunet_core::architecture::NetworkSpec;
use serde_json::{Value, json};

fn kwargs(enc: Encoder, n: usize, features: &[usize], per_stage: &[usize], dec: &[usize], dims: usize) -> serde_json::Map<String, Value> {
    let k: Vec<Vec<usize>> = vec![vec![3; dims]; n];
    let mut s: Vec<Vec<usize>> = vec![vec![2; dims]; n];
    s[0] = vec![1; dims];
    let key = if enc == Encoder::Plain { "n_conv_per_stage" } else { "n_blocks_per_stage" };
    let v = json!({
        "n_stages": n, "features_per_stage": features,
        "conv_op": if dims == 3 { "torch.nn.modules.conv.Conv3d" } else { "torch.nn.modules.conv.Conv2d" },
        "kernel_sizes": k, "strides": s, key: per_stage, "n_conv_per_stage_decoder": dec, "conv_bias": true,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": true},
        "dropout_op": null, "dropout_op_kwargs": null, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}
    });
    v.as_object().unwrap().clone()
}

fn count(enc: Encoder, arch_kwargs: serde_json::Map<String, Value>, in_ch: usize, out: usize) -> usize {
    let spec = NetworkSpec { arch_kwargs, in_channels: in_ch, out_channels: out, deep_supervision: true };
    UNetArchitecture(enc).build(&spec, &Device::default()).expect("builds").num_params()
}

#[test]
fn spec_reference_networks() {
    let f6 = [32, 64, 128, 256, 320, 320];
    assert_eq!(count(Encoder::Plain, kwargs(Encoder::Plain, 6, &f6, &[2; 6], &[2; 5], 3), 1, 3), 31_196_399);
    assert_eq!(count(Encoder::Plain, kwargs(Encoder::Plain, 6, &f6, &[2; 6], &[2; 5], 3), 1, 2), 31_195_594);
    assert_eq!(count(Encoder::Residual, kwargs(Encoder::Residual, 6, &f6, &[1, 3, 4, 6, 6, 6], &[1; 5], 3), 1, 3), 102_350_575);
    assert_eq!(count(Encoder::Residual, kwargs(Encoder::Residual, 6, &f6, &[1, 3, 4, 6, 6, 6], &[1; 5], 3), 1, 14), 102_359_430);
    assert_eq!(count(Encoder::Plain, kwargs(Encoder::Plain, 4, &[32, 64, 128, 256], &[2; 4], &[2; 3], 3), 1, 3), 5_603_177);
    let f8 = [32, 64, 128, 256, 512, 512, 512, 512];
    assert_eq!(count(Encoder::Plain, kwargs(Encoder::Plain, 8, &f8, &[2; 8], &[2; 7], 2), 1, 3), 46_326_581);
}

/// Parameter counts of every configuration of nnU-Net's Hippocampus (default, ResEnc M/L/XL, 80G) and
/// Dataset201 (anisotropic kernels) plans, computed with nnU-Net 2.8.1's own network construction
/// (`tests/fixtures/scripts/param_counts.py`; 1 input channel, 3 outputs).
#[test]
fn reference_plans_configurations() {
    let mut checked = 0;
    for ds in ["Dataset004_Hippocampus", "Dataset201_AnisoCT"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(ds);
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("param_counts.json")).expect("param_counts.json fixture")).unwrap();
        for (plans_file, configs) in expected.as_object().unwrap() {
            let plans: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(plans_file)).unwrap()).unwrap();
            for (cfg, want) in configs.as_object().unwrap() {
                let arch = &plans["configurations"][cfg]["architecture"];
                let enc = if arch["network_class_name"].as_str().unwrap().ends_with("ResidualEncoderUNet") {
                    Encoder::Residual
                } else {
                    Encoder::Plain
                };
                let got = count(enc, arch["arch_kwargs"].as_object().unwrap().clone(), 1, 3);
                assert_eq!(got as u64, want.as_u64().unwrap(), "{plans_file} {cfg}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} configurations checked");
}

/// The memory proxy equals nnU-Net's estimate for Hippocampus (planning spec §6.6: 3d_fullres 40×56×40 →
/// 19,174,400; 2d 56×40 → 651,840) — computed through the Architecture trait from the plans' kwargs.
#[test]
fn memory_proxy_matches_nnunet_estimate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/Dataset004_Hippocampus");
    let plans: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("nnUNetPlans.json")).unwrap()).unwrap();
    for (cfg, want) in [("3d_fullres", 19_174_400.0), ("2d", 651_840.0)] {
        let c = &plans["configurations"][cfg];
        let patch: Vec<usize> = serde_json::from_value(c["patch_size"].clone()).unwrap();
        let spec = NetworkSpec {
            arch_kwargs: c["architecture"]["arch_kwargs"].as_object().unwrap().clone(),
            in_channels: 1,
            out_channels: 3,
            deep_supervision: false,
        };
        assert_eq!(UNetArchitecture(Encoder::Plain).memory_proxy(&spec, &patch).unwrap(), want, "{cfg}");
    }
}
