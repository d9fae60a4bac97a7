//! Outputs equal PyTorch's MedNeXt (MIC-DKFZ/MedNeXt `MedNextV1.py`) for the same weights and input: a 3D
//! kernel-3 and a 2D kernel-5 network with deep supervision (fixtures written by `fixtures/make_fixtures.py`,
//! provenance in `fixtures/README.md`).

use burn::module::Module;
use burn::tensor::Device;
use nnunet_arch_mednext::{MedNeXt, MedNeXtKwargs};
use nnunet_tests::pytorch::{analytic_input, floats, load_state_dict, shape, state_dict};
use serde_json::{Map, Value, json};

fn check(name: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.json"));
    let f: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cfg = &f["config"];
    let kwargs: Map<String, Value> = json!({
        "dim": cfg["dim"], "kernel_size": cfg["kernel_size"], "n_channels": cfg["n_channels"],
        "exp_r": cfg["exp_r"], "block_counts": cfg["block_counts"],
    })
    .as_object()
    .unwrap()
    .clone();
    let kw = MedNeXtKwargs::parse(&kwargs).unwrap();
    let classes = cfg["n_classes"].as_u64().unwrap() as usize;
    let net = MedNeXt::new(&kw, cfg["in_channels"].as_u64().unwrap() as usize, classes, true, &Device::default());
    assert_eq!(net.num_params() as u64, f["num_params"].as_u64().unwrap(), "{name}: parameter count");

    let (net, _) = load_state_dict(net, state_dict(&f["params"]));

    let s = shape(&f["input_shape"]);
    let x = analytic_input(if s.len() == 4 { [s[0], s[1], 1, s[2], s[3]] } else { [s[0], s[1], s[2], s[3], s[4]] });
    let outs = net.forward(x);
    let want = f["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), want.len(), "{name}: number of outputs");
    for (i, (o, w)) in outs.into_iter().zip(want).enumerate() {
        let ws = shape(&w["shape"]);
        let lifted = if ws.len() == 4 { vec![ws[0], ws[1], 1, ws[2], ws[3]] } else { ws.clone() };
        assert_eq!(o.dims().to_vec(), lifted, "{name}: output {i} shape");
        let got: Vec<f32> = o.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let every = w["every"].as_u64().unwrap() as usize;
        let expect = floats(&w["data"]);
        let scale = expect.iter().fold(0f32, |a, &b| a.max(b.abs())).max(1.0);
        let worst = got.iter().step_by(every).zip(&expect).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 2e-4 * scale, "{name}: output {i} differs from PyTorch by up to {worst} (scale {scale})");
        let sum: f64 = got.iter().map(|&v| v as f64).sum();
        let want_sum = w["sum"].as_f64().unwrap();
        let sum_sq: f64 = got.iter().map(|&v| (v as f64).powi(2)).sum();
        let tol = 1e-4 * w["sum_sq"].as_f64().unwrap().max(1.0);
        assert!((sum - want_sum).abs() <= tol.sqrt() * 10.0, "{name}: output {i} sum {sum} vs PyTorch {want_sum}");
        assert!(
            (sum_sq - w["sum_sq"].as_f64().unwrap()).abs() <= tol,
            "{name}: output {i} sum of squares {sum_sq} vs PyTorch {}",
            w["sum_sq"]
        );
    }
}

#[test]
fn equals_pytorch_3d_kernel3() {
    check("mednext_3d_k3");
}

#[test]
fn equals_pytorch_2d_kernel5() {
    check("mednext_2d_k5");
}
