//! Outputs equal PyTorch's STU-Net (uni-medical/STU-Net `STUNet.py`) for the same weights and input: a tiny
//! six-stage network with an anisotropic stage-0 kernel, a non-uniform pool kernel, a stride-1 stage, two-block
//! stages and deep supervision (fixture written by `fixtures/make_fixtures.py`, provenance in `fixtures/README.md`).

use burn::module::Module;
use burn::tensor::Device;
use nnunet_arch_stunet::{STUNet, STUNetKwargs};
use nnunet_tests::pytorch::{analytic_input, load_state_dict, shape, state_dict};
use serde_json::{Map, Value, json};

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stunet_tiny.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn equals_pytorch_tiny_deep_supervision() {
    let f = fixture();
    let cfg = &f["config"];
    let kwargs: Map<String, Value> = json!({
        "dims": cfg["dims"], "depth": cfg["depth"],
        "pool_op_kernel_sizes": cfg["pool_op_kernel_sizes"], "conv_kernel_sizes": cfg["conv_kernel_sizes"],
    })
    .as_object()
    .unwrap()
    .clone();
    let kw = STUNetKwargs::parse(&kwargs).unwrap();
    let classes = cfg["n_classes"].as_u64().unwrap() as usize;
    let in_ch = cfg["in_channels"].as_u64().unwrap() as usize;
    let net = STUNet::new(&kw, in_ch, classes, true, &Device::default());
    assert_eq!(net.num_params() as u64, f["num_params"].as_u64().unwrap(), "parameter count");
    assert_eq!(nnunet_arch_stunet::param_count(&kw, in_ch, classes), f["num_params"].as_u64().unwrap(), "analytic parameter count");

    let tensors = state_dict(&f["params"]);
    let n_tensors = tensors.len();
    let (net, loaded) = load_state_dict(net, tensors);
    assert_eq!(loaded, n_tensors);

    let s = shape(&f["input_shape"]);
    let outs: Vec<Vec<f32>> = net
        .forward(analytic_input([s[0], s[1], s[2], s[3], s[4]]))
        .into_iter()
        .zip(f["outputs"].as_array().unwrap())
        .enumerate()
        .map(|(i, (o, w))| {
            assert_eq!(o.dims().to_vec(), shape(&w["shape"]), "output {i} shape");
            o.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
        })
        .collect();
    assert_eq!(outs.len(), f["outputs"].as_array().unwrap().len(), "number of outputs");
    // PyTorch as run (float32): both sides carry float32 rounding through ~20 instance norms, so twice the bound
    let vs_f32 = compare(&outs, &f["outputs"], 2e-4, "PyTorch float32");
    // the same PyTorch network evaluated in float64: our float32 error alone
    let vs_f64 = compare(&outs, &f["outputs_f64"], 1e-4, "PyTorch float64");
    println!("max |burn - PyTorch|: {vs_f32:e} (PyTorch float32), {vs_f64:e} (PyTorch float64)");
}

/// Largest sampled difference between `outs` and the fixture outputs `want` (each within `bound`), and sums /
/// sums of squares over every value.
fn compare(outs: &[Vec<f32>], want: &Value, bound: f32, what: &str) -> f32 {
    let mut worst_all = 0f32;
    for (i, (got, w)) in outs.iter().zip(want.as_array().unwrap()).enumerate() {
        let every = w["every"].as_u64().unwrap() as usize;
        let expect: Vec<f64> = w["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(got.iter().step_by(every).count(), expect.len(), "output {i}: sampled values");
        let worst = got.iter().step_by(every).zip(&expect).map(|(&a, &b)| (a as f64 - b).abs() as f32).fold(0f32, f32::max);
        println!("output {i}: max abs diff to {what} {worst:e}");
        assert!(worst <= bound, "output {i} differs from {what} by up to {worst}");
        worst_all = worst_all.max(worst);
        let sum: f64 = got.iter().map(|&v| v as f64).sum();
        let sum_sq: f64 = got.iter().map(|&v| (v as f64).powi(2)).sum();
        let (want_sum, want_sq) = (w["sum"].as_f64().unwrap(), w["sum_sq"].as_f64().unwrap());
        let tol = bound as f64 * (got.len() as f64).sqrt() * want_sq.max(1.0).sqrt();
        assert!((sum - want_sum).abs() <= tol, "output {i} sum {sum} vs {what} {want_sum}");
        assert!((sum_sq - want_sq).abs() <= bound as f64 * want_sq.max(1.0), "output {i} sum of squares {sum_sq} vs {what} {want_sq}");
    }
    worst_all
}
