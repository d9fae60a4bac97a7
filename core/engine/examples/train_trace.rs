//! Trace of the first training steps of fold 0 of a configuration, for an end-to-end comparison with nnU-Net's own
//! `nnUNetTrainer.train_step` on the same initial weights and the same batches (benches/training_diagnostics/trace_nnunet.py):
//! the network is built and seeded as `nnunet train --seed SEED` builds it, the batches come from the same
//! `DataLoader` + training pipeline, and each step runs `train_step` at the first epoch's learning rate (1e-2).
//!
//! Writes into OUT_DIR: `weights_init.bin` / `weights_final.bin` (every state-dict key's f32 values, in
//! `weights.json`'s order), `batch_<i>.bin` (image f32 then each deep-supervision target as i16, shapes in
//! `batches.json`) and `losses.json` (the loss of each step).
//!
//! usage: train_trace PREPROCESSED_DATASET_DIR CONFIGURATION SEED N_STEPS OUT_DIR [INIT_WEIGHTS.bin]
//! With INIT_WEIGHTS.bin (the layout of `weights_init.bin`) the network starts from those weights instead. Built with
//! `--features tch`, `TRACE_TCH=1` runs the steps on LibTorch's CPU backend (the initial weights still come from flex,
//! as in `nnunet train`).
use nnunet_arch_unet as _; // registers PlainConvUNet / ResidualEncoderUNet
#[path = "common/fold0.rs"]
mod fold0;
use nnunet_core::architecture::NetworkSpec;
use nnunet_engine::loss::DcAndCe;
use nnunet_engine::train::{Batch, StepContext, train_step};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

fn write_weights(net: &dyn nnunet_core::Network, path: &std::path::Path) -> serde_json::Value {
    let params: HashMap<String, nnunet_core::NamedParam> = net.named_parameters().into_iter().map(|p| (p.path.clone(), p)).collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut index = Vec::new();
    for k in net.torch_state_dict() {
        let p = &params[&k.path];
        for v in &p.values {
            f.write_all(&v.to_le_bytes()).unwrap();
        }
        index.push(json!({"key": k.key, "path": k.path, "shape": p.shape}));
    }
    json!(index)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let pre = PathBuf::from(&a[1]);
    let configuration = &a[2];
    let seed: u64 = a[3].parse().unwrap();
    let n: usize = a[4].parse().unwrap();
    let out = PathBuf::from(&a[5]);
    std::fs::create_dir_all(&out).unwrap();
    let (cfg, dataset_json) = fold0::configuration(&pre, configuration);

    // the network as run.rs builds it
    let (class, spec) = NetworkSpec::from_configuration(&cfg, &dataset_json, true).unwrap();
    let arch = (nnunet_core::registry::architectures().unwrap().get(&class).unwrap().make)();
    let strides = arch.output_strides(&spec).unwrap();
    #[cfg(feature = "tch")]
    #[allow(deprecated)] // burn 0.22 marks LibTorch deprecated; ADR 0012
    let base = if std::env::var_os("TRACE_TCH").is_some() {
        burn::tensor::Device::new(burn::backend::LibTorchDevice::Cpu)
    } else {
        burn::tensor::Device::default()
    };
    #[cfg(not(feature = "tch"))]
    let base = burn::tensor::Device::default();
    eprintln!("device {base:?}");
    base.seed(seed);
    let init = nnunet_core::initialisation_device(&base);
    init.seed(seed);
    let mut net = arch.build(&spec, &init.clone().autodiff()).unwrap();
    let dev = base.autodiff();
    if init.clone().autodiff() != dev {
        net = net.fork(&dev);
    }
    if let Some(w) = a.get(6) {
        let bytes = std::fs::read(w).unwrap();
        let vals: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        // the layout of weights_init.bin: state-dict order, the first key of each parameter carries its values
        let mut at = 0;
        let mut by_path: HashMap<String, Vec<f32>> = HashMap::new();
        let params: HashMap<String, Vec<usize>> = net.named_parameters().into_iter().map(|p| (p.path, p.shape)).collect();
        for k in net.torch_state_dict() {
            let len: usize = params[&k.path].iter().product();
            by_path.entry(k.path.clone()).or_insert_with(|| vals[at..at + len].to_vec());
            at += len;
        }
        assert_eq!(at, vals.len(), "{w}: size does not match the network");
        let r = net.replace_parameters(&mut |p, _| by_path.get(p).cloned());
        eprintln!("loaded {r} parameters from {w}");
    }
    let index = write_weights(net.as_ref(), &out.join("weights_init.bin"));
    std::fs::write(out.join("weights.json"), serde_json::to_string_pretty(&index).unwrap()).unwrap();

    let mut prod = fold0::training_batches(&pre, &cfg, seed, Some(&strides));

    let lm = dataset_json.label_manager().unwrap();
    let settings = nnunet_core::LossSettings::for_configuration(&cfg, &lm);
    let mut optim = nnunet_engine::optim::sgd(0.99, 3e-5);
    let ctx = StepContext::fp32(&DcAndCe, &settings, true, Some(12.0), nnunet_core::DsWeighting::NnUNetV2);
    let mut losses = Vec::new();
    let mut shapes = Vec::new();
    for i in 0..n {
        let b = Batch::from(prod.next_batch().unwrap());
        let mut f = std::io::BufWriter::new(std::fs::File::create(out.join(format!("batch_{i}.bin"))).unwrap());
        b.image.iter().for_each(|v| f.write_all(&v.to_le_bytes()).unwrap());
        for (t, _) in &b.targets {
            t.iter().for_each(|v| f.write_all(&v.to_le_bytes()).unwrap());
        }
        drop(f);
        if i == 0 {
            shapes = std::iter::once(b.image_shape.to_vec()).chain(b.targets.iter().map(|(_, s)| s.to_vec())).collect();
        }
        let l = train_step(net.as_mut(), &mut optim, 1e-2, &b, &ctx, &dev);
        println!("step {i}: loss {l:.6}");
        losses.push(l);
    }
    write_weights(net.as_ref(), &out.join("weights_final.bin"));
    std::fs::write(out.join("batches.json"), serde_json::to_string(&json!({"shapes": shapes, "n": n})).unwrap()).unwrap();
    std::fs::write(out.join("losses.json"), serde_json::to_string(&losses).unwrap()).unwrap();
}
