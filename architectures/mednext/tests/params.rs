//! Parameter counts equal PyTorch's MedNeXt (training spec §1.7 table: in = 1, 2 classes, deep supervision,
//! `dummy_tensor` included), analytically for all eight published variants and by building the network.

use burn::tensor::Device;
use nnunet_arch_mednext::{MedNeXt, MedNeXtArch, MedNeXtKwargs, param_count};
use nnunet_core::Architecture;
use nnunet_core::architecture::NetworkSpec;
use serde_json::{Map, Value, json};

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

const TABLE: [(&str, usize, u64); 8] = [
    ("S", 3, 5_552_843),
    ("S", 5, 5_982_475),
    ("B", 3, 10_528_235),
    ("B", 5, 10_957_867),
    ("M", 3, 17_550_891),
    ("M", 5, 18_262_763),
    ("L", 3, 61_781_195),
    ("L", 5, 62_994_827),
];

#[test]
fn analytic_counts_equal_the_spec_table() {
    for (size, k, want) in TABLE {
        let kw = MedNeXtKwargs::parse(&kwargs(json!({"size": size, "kernel_size": k}))).unwrap();
        assert_eq!(param_count(&kw, 1, 2, true), want, "MedNeXt-{size} k{k}");
    }
    // without deep supervision the four extra heads (2·(64+128+256+512) weights + 4·2 biases) go away
    let kw = MedNeXtKwargs::parse(&kwargs(json!({"size": "S"}))).unwrap();
    assert_eq!(param_count(&kw, 1, 2, false), 5_552_843 - (2 * (64 + 128 + 256 + 512) + 8));
}

fn built(arch_kwargs: Value, in_ch: usize, out: usize, ds: bool) -> usize {
    let spec = NetworkSpec { arch_kwargs: kwargs(arch_kwargs), in_channels: in_ch, out_channels: out, deep_supervision: ds };
    MedNeXtArch.build(&spec, &Device::default()).expect("builds").num_params()
}

#[test]
fn built_networks_equal_the_spec_table_for_s() {
    assert_eq!(built(json!({"size": "S", "kernel_size": 3}), 1, 2, true), 5_552_843);
    assert_eq!(built(json!({"size": "S", "kernel": 5}), 1, 2, true), 5_982_475);
}

/// Analytic and built counts agree off the presets too: 2D, per-axis kernels, stride-1 levels, custom
/// exp_r/block_counts, no residual up/down convs, no deep supervision.
#[test]
fn analytic_equals_built_for_unusual_kwargs() {
    let cases = [
        (json!({"dim": "2d", "n_channels": 4, "kernel_size": 5, "block_counts": [1, 0, 2, 1, 1, 1, 1, 0, 1]}), 3, 4, true),
        (
            json!({"n_channels": 3, "exp_r": [1, 2, 3, 4, 5, 4, 3, 2, 1], "block_counts": 1, "strides": [[1, 2, 2], 2, [1, 1, 1], [2, 1, 2]],
                   "kernel_axes": [[false, true, true], [false, true, true], [true, true, true], [true, false, true], [true, true, true]]}),
            2,
            3,
            false,
        ),
        (json!({"n_channels": 2, "block_counts": 1, "do_res_up_down": false, "do_res": false}), 1, 2, true),
    ];
    for (kw, i, o, ds) in cases {
        let parsed = MedNeXtKwargs::parse(&kwargs(kw.clone())).unwrap();
        assert_eq!(built(kw.clone(), i, o, ds) as u64, param_count(&parsed, i, o, ds), "{kw}");
    }
}

/// The largest variant is built once (about 63M parameters; a few seconds on the CPU).
#[test]
fn built_l_k5_equals_the_spec_table() {
    let kw = MedNeXtKwargs::parse(&kwargs(json!({"size": "L", "kernel_size": 5}))).unwrap();
    let net = MedNeXt::new(&kw, 1, 2, true, &Device::default());
    assert_eq!(burn::module::Module::num_params(&net), 62_994_827);
}
