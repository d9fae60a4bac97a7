//! Parameter counts equal PyTorch's STU-Net (1 input channel, 3 classes, five 2×2×2 pools, 3×3×3 kernels; the
//! PyTorch counts are in `fixtures/stunet_tiny.json`, written by `fixtures/make_fixtures.py`): analytically for
//! all four published sizes (STU-Net-H has ~1.46e9 parameters: not built here) and by building the small one.

use burn::module::Module;
use burn::tensor::Device;
use nnunet_arch_stunet::{STUNet, STUNetArch, STUNetKwargs, param_count};
use nnunet_core::Architecture;
use nnunet_core::architecture::NetworkSpec;
use serde_json::{Map, Value, json};

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

fn pytorch_counts() -> Map<String, Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stunet_tiny.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let sc = &f["size_counts"];
    assert_eq!((sc["in_channels"].as_u64(), sc["n_classes"].as_u64()), (Some(1), Some(3)));
    assert_eq!(sc["pool_op_kernel_sizes"], serde_json::to_value(vec![[2, 2, 2]; 5]).unwrap());
    sc["counts"].as_object().unwrap().clone()
}

/// The PyTorch counts, also written out so that a regenerated fixture that changes them fails loudly.
const TABLE: [(&str, u64); 4] = [("small", 14_545_839), ("base", 58_160_975), ("large", 440_099_727), ("huge", 1_457_022_159)];

#[test]
fn analytic_counts_equal_pytorch_for_all_sizes() {
    let counts = pytorch_counts();
    assert_eq!(counts.len(), 4);
    for (size, want) in TABLE {
        assert_eq!(counts[size].as_u64(), Some(want), "fixture count of {size}");
        let kw = STUNetKwargs::parse(&kwargs(json!({"size": size, "pool_op_kernel_sizes": vec![[2, 2, 2]; 5]}))).unwrap();
        assert_eq!(param_count(&kw, 1, 3), want, "STU-Net-{size}");
    }
    // the short names are the same presets
    for (short, long) in [("S", "small"), ("b", "base"), ("L", "large"), ("H", "huge")] {
        let a = STUNetKwargs::parse(&kwargs(json!({"size": short}))).unwrap();
        let b = STUNetKwargs::parse(&kwargs(json!({"size": long}))).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn built_small_equals_pytorch() {
    let kw = STUNetKwargs::parse(&kwargs(json!({"size": "small"}))).unwrap();
    let net = STUNet::new(&kw, 1, 3, true, &Device::default());
    assert_eq!(net.num_params() as u64, pytorch_counts()["small"].as_u64().unwrap());
    // without deep supervision the heads still exist (STU-Net always builds them)
    let spec = NetworkSpec { arch_kwargs: kwargs(json!({"size": "small"})), in_channels: 1, out_channels: 3, deep_supervision: false };
    assert_eq!(STUNetArch.build(&spec, &Device::default()).unwrap().num_params(), 14_545_839);
}

/// Analytic and built counts agree off the presets: 2D, per-axis kernels, other stage counts and depths.
#[test]
fn analytic_equals_built_for_unusual_kwargs() {
    let cases = [
        (json!({"dim": "2d", "dims": [3, 5, 7], "depth": [2, 1, 3]}), 2, 4),
        (
            json!({"dims": [2, 4, 6, 8], "depth": 2, "pool_op_kernel_sizes": [[1, 2, 2], 2, [1, 1, 1]],
                   "conv_kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 5, 3]]}),
            3,
            2,
        ),
        (json!({"dims": [4, 4], "depth": [1, 3], "conv_kernel_sizes": [5, 5, 5]}), 1, 1),
    ];
    for (kw, i, o) in cases {
        let parsed = STUNetKwargs::parse(&kwargs(kw.clone())).unwrap();
        let net = STUNet::new(&parsed, i, o, true, &Device::default());
        assert_eq!(net.num_params() as u64, param_count(&parsed, i, o), "{kw}");
    }
}
