//! UpKern (kernel 3 → 5): depthwise weights are trilinearly resized (`align_corners=False`), everything else
//! copied; checked against values computed here independently (constant and linear-ramp kernels).

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use nnunet_arch_mednext::{MedNeXt, MedNeXtArch, MedNeXtKwargs, upkern, upkern_network, upkern_record};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::{Architecture, boxed};
use serde_json::{Map, Value, json};

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

fn net(k: usize, ds: bool) -> MedNeXt {
    let kw = MedNeXtKwargs::parse(&kwargs(json!({"n_channels": 2, "block_counts": 1, "kernel_size": k}))).unwrap();
    MedNeXt::new(&kw, 1, 2, ds, &Device::default())
}

fn values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
    p.val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn set5(p: &mut Param<Tensor<5>>, f: impl Fn([usize; 5]) -> f32) {
    let d = p.val().dims();
    let mut v = Vec::new();
    for a in 0..d[0] {
        for b in 0..d[1] {
            for z in 0..d[2] {
                for y in 0..d[3] {
                    for x in 0..d[4] {
                        v.push(f([a, b, z, y, x]));
                    }
                }
            }
        }
    }
    *p = Param::from_tensor(Tensor::from_data(TensorData::new(v, d), &Device::default()));
}

/// PyTorch's `align_corners=False` linear resize of the samples 0, 1, 2 of `t ↦ t` to 5 samples:
/// source positions max(0, 0.6·(o + 0.5) − 0.5) = 0, 0.4, 1.0, 1.6, 2.2 → clamped to the last sample: 2.
const RAMP5: [f32; 5] = [0.0, 0.4, 1.0, 1.6, 2.0];

#[test]
fn depthwise_kernels_are_resized_trilinearly() {
    let mut src = net(3, true);
    // constant kernel, a ramp along x, and a separable 3D ramp z + 10 y + 100 x + channel offset
    set5(&mut src.enc_block_0[0].conv1.weight, |_| 0.75);
    set5(&mut src.down_1.conv1.weight, |i| i[4] as f32);
    set5(&mut src.up_2.conv1.weight, |i| i[2] as f32 + 10.0 * i[3] as f32 + 100.0 * i[4] as f32 + 1000.0 * i[0] as f32);
    let (dst, summary) = upkern(&src, net(5, true)).unwrap();

    assert_eq!(dst.enc_block_0[0].conv1.weight.val().dims(), [2, 1, 5, 5, 5]);
    assert!(values(&dst.enc_block_0[0].conv1.weight).iter().all(|&v| (v - 0.75).abs() < 1e-6));

    let got = values(&dst.down_1.conv1.weight);
    for (n, &v) in got.iter().enumerate() {
        let want = RAMP5[n % 5];
        assert!((v - want).abs() < 1e-5, "down_1.conv1 at {n}: {v} vs {want}");
    }

    let got = values(&dst.up_2.conv1.weight);
    let d = dst.up_2.conv1.weight.val().dims();
    assert_eq!(d, [16, 1, 5, 5, 5]);
    let mut n = 0;
    for c in 0..d[0] {
        for rz in RAMP5 {
            for ry in RAMP5 {
                for rx in RAMP5 {
                    let want = rz + 10.0 * ry + 100.0 * rx + 1000.0 * c as f32;
                    assert!((got[n] - want).abs() < 1e-3, "up_2.conv1 flat index {n} (channel {c}): {} vs {want}", got[n]);
                    n += 1;
                }
            }
        }
    }

    // one depthwise conv per block and per down/up block is resized; nothing is left uninitialised
    assert_eq!(summary.resized.len(), 9 + 8);
    assert!(summary.not_in_source.is_empty(), "{:?}", summary.not_in_source);
}

#[test]
fn biases_norms_and_pointwise_weights_are_copied() {
    let mut src = net(3, true);
    let dev = Device::default();
    let rand1 = |n: usize| Param::from_tensor(Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &dev));
    src.enc_block_1[0].norm.gamma = Some(rand1(4));
    src.enc_block_1[0].norm.beta = Some(rand1(4));
    src.dummy_tensor = Param::from_tensor(Tensor::from_data(TensorData::new(vec![3.5f32], [1]), &dev));
    let (dst, _) = upkern(&src, net(5, true)).unwrap();
    let pairs: Vec<(Vec<f32>, Vec<f32>)> = vec![
        (values(src.enc_block_1[0].norm.gamma.as_ref().unwrap()), values(dst.enc_block_1[0].norm.gamma.as_ref().unwrap())),
        (values(src.enc_block_1[0].norm.beta.as_ref().unwrap()), values(dst.enc_block_1[0].norm.beta.as_ref().unwrap())),
        (values(src.up_0.conv1.bias.as_ref().unwrap()), values(dst.up_0.conv1.bias.as_ref().unwrap())),
        (values(&src.bottleneck[0].conv2.weight), values(&dst.bottleneck[0].conv2.weight)),
        (values(&src.up_3.res_conv.as_ref().unwrap().weight), values(&dst.up_3.res_conv.as_ref().unwrap().weight)),
        (values(&src.out_2.as_ref().unwrap().conv_out.weight), values(&dst.out_2.as_ref().unwrap().conv_out.weight)),
        (values(&src.stem.weight), values(&dst.stem.weight)),
        (values(&src.dummy_tensor), values(&dst.dummy_tensor)),
    ];
    for (i, (a, b)) in pairs.iter().enumerate() {
        assert_eq!(a, b, "pair {i}");
    }
}

#[test]
fn upkern_of_records_equals_upkern_of_modules() {
    let spec = |k: usize| NetworkSpec {
        arch_kwargs: kwargs(json!({"n_channels": 2, "block_counts": 1, "kernel_size": k})),
        in_channels: 1,
        out_channels: 2,
        deep_supervision: true,
    };
    let dev = Device::default();
    let src = net(3, true);
    let tgt = net(5, true);
    let (expected, _) = upkern(&src, tgt.clone()).unwrap();
    let rec = upkern_record(&spec(3), src.clone().into_record(), &spec(5), tgt.into_record(), &dev).unwrap();

    // through the engine's object-safe network, as `-pretrained_weights` would
    let mut boxed = MedNeXtArch.build(&spec(5), &dev).unwrap();
    boxed.load_record(rec).unwrap();
    let x = Tensor::<5>::random([1, 1, 16, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
    let a = boxed.forward(x.clone())[0].clone();
    let b = expected.forward(x)[0].clone();
    let d = (a - b).abs().max().into_scalar::<f32>();
    assert!(d < 1e-5, "record path differs from module path by {d}");

    // different channel dims are refused
    let mut other = spec(5);
    other.arch_kwargs.insert("n_channels".into(), json!(4));
    let e = upkern_record(&spec(3), src.into_record(), &other, net(5, true).into_record(), &dev).unwrap_err().to_string();
    assert!(e.contains("n_channels"), "{e}");
}

#[test]
fn upkern_of_boxed_networks_equals_upkern_of_modules() {
    let dev = Device::default();
    let src = net(3, true);
    let tgt = net(5, true);
    let (expected, _) = upkern(&src, tgt.clone()).unwrap();
    let mut target = boxed(tgt);
    let summary = upkern_network(&boxed(src).named_parameters(), target.as_mut()).unwrap();
    assert_eq!(summary.resized.len(), 17);
    let x = Tensor::<5>::random([1, 1, 16, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
    let d = (target.forward(x.clone())[0].clone() - expected.forward(x.clone())[0].clone()).abs().max().into_scalar::<f32>();
    assert!(d < 1e-5, "boxed path differs from module path by {d}");

    // a source with other channel dims is refused and leaves the target as it was
    let kw = MedNeXtKwargs::parse(&kwargs(json!({"n_channels": 4, "block_counts": 1, "kernel_size": 3}))).unwrap();
    let wide = boxed(MedNeXt::new(&kw, 1, 2, true, &dev));
    let before = target.forward(x.clone())[0].clone();
    let e = upkern_network(&wide.named_parameters(), target.as_mut()).unwrap_err().to_string();
    assert!(e.contains("channel dims differ"), "{e}");
    let d = (target.forward(x)[0].clone() - before).abs().max().into_scalar::<f32>();
    assert_eq!(d, 0.0);
}

/// `-pretrained_weights` from a kernel-3 MedNeXt into a kernel-5 one goes through `Architecture::transfer_pretrained`
/// (UpKern); equal kernels fall back to nnU-Net's rule (`None`).
#[test]
fn pretrained_hook_upkerns_only_when_kernels_differ() {
    use nnunet_core::Architecture;
    use nnunet_core::architecture::NetworkSpec;
    let spec = |k: usize| NetworkSpec {
        arch_kwargs: serde_json::json!({"size": "S", "kernel_size": k, "n_channels": 2}).as_object().unwrap().clone(),
        in_channels: 1,
        out_channels: 2,
        deep_supervision: true,
    };
    let dev = burn::tensor::Device::default();
    let arch = nnunet_arch_mednext::MedNeXtArch;
    let k3 = arch.build(&spec(3), &dev).unwrap();
    let mut k5 = arch.build(&spec(5), &dev).unwrap();
    let mut other_k3 = arch.build(&spec(3), &dev).unwrap();
    assert!(arch.transfer_pretrained(other_k3.as_mut(), &k3.named_parameters()).is_none());
    let loaded = arch.transfer_pretrained(k5.as_mut(), &k3.named_parameters()).expect("kernels differ").unwrap();
    assert!(!loaded.is_empty());
    // biases are copied unchanged, depthwise kernels now 5 wide
    let by = |n: &[nnunet_core::NamedParam], path: &str| n.iter().find(|p| p.path == path).cloned().unwrap();
    let (src, dst) = (k3.named_parameters(), k5.named_parameters());
    let bias = src.iter().find(|p| p.path.ends_with("conv1.bias")).unwrap().path.clone();
    assert_eq!(by(&src, &bias).values, by(&dst, &bias).values);
    let w = bias.replace("bias", "weight");
    assert_eq!(by(&dst, &w).shape[2..], [5, 5, 5]);
}
