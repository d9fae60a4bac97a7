//! Six training steps end to end against nnU-Net 2.8.1's own `nnUNetTrainer.train_step` (fp32, CPU), for a
//! PlainConvUNet and a ResidualEncoderUNet: the same initial weights (nnU-Net's He initialisation, read from its state dict), the same six real batches (Hippocampus,
//! 2 x 1 x 16^3, two deep-supervision targets), the same recipe (DC_and_CE loss with the v2 deep-supervision
//! weights, global clipping at 12, SGD Nesterov 0.99, weight decay 3e-5, lr 1e-2). Every step's loss and the weights
//! after the last step must agree. Fixture and provenance: tests/fixtures/train_steps/ (made by
//! tests/fixtures/scripts/train_steps_reference.py).
//!
//! The unit tests check each piece against PyTorch's formulas; this one checks that the pieces are put together as
//! nnU-Net puts them (which outputs get which weight, what is clipped, when momentum starts, …). Runs on flex and,
//! built with `--features tch`, on LibTorch too.

use burn::tensor::Device;
use nnunet_arch_unet as _;
use nnunet_core::{DsWeighting, LossSettings, Network};
use nnunet_engine::loss::DcAndCe;
use nnunet_engine::pth::{self, PthFile, PthTensor};
use nnunet_engine::train::{Batch, StepContext, train_step};
use std::collections::HashMap;
use std::path::Path;

use common::spec;

mod common;

fn state_dict(f: &PthFile, key: &str) -> HashMap<String, PthTensor> {
    f.root[key].as_object().unwrap().iter().map(|(k, v)| (k.clone(), f.tensor(v).unwrap().clone())).collect()
}

fn batches(f: &PthFile) -> Vec<Batch> {
    let five = |s: &[usize]| -> [usize; 5] { s.try_into().unwrap() };
    f.root["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let image = f.tensor(&b["data"]).unwrap();
            let targets = b["target"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let t = f.tensor(t).unwrap();
                    (t.values.iter().map(|&v| v as i16).collect(), five(&t.shape))
                })
                .collect();
            Batch { image: image.values.clone(), image_shape: five(&image.shape), targets }
        })
        .collect()
}

/// Six steps of the `class` network (`common::spec`) from the initial weights of fixture `file` on the batches of
/// train_steps.pth.
fn run_on(dev: Device, file: &str, class: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train_steps");
    let f = pth::read(&dir.join(file)).unwrap();
    let batches_file = pth::read(&dir.join("train_steps.pth")).unwrap();
    let arch = (nnunet_core::registry::architectures().unwrap().get(class).unwrap().make)();
    let dev = dev.autodiff();
    let mut net: Box<dyn Network> = arch.build(&spec(class), &dev).unwrap();
    let initial = state_dict(&f, "network_weights");
    let loaded = pth::load_state_dict(net.as_mut(), &initial).unwrap();
    assert!(loaded > 0);
    let settings = LossSettings { batch_dice: false, ..Default::default() }; // the 3d_fullres plans' batch_dice
    let ctx = StepContext::fp32(&DcAndCe, &settings, true, Some(12.0), DsWeighting::NnUNetV2);
    let mut optim = nnunet_engine::optim::sgd(0.99, 3e-5);
    let want: Vec<f64> = f.root["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let bs = batches(&batches_file);
    assert_eq!((bs.len(), want.len()), (6, 6));
    for (i, (b, w)) in bs.iter().zip(&want).enumerate() {
        let l = train_step(net.as_mut(), &mut optim, 1e-2, b, &ctx, &dev);
        assert!((l - w).abs() < 2e-5, "step {i}: loss {l} vs nnU-Net's {w}");
    }
    // every parameter after six steps. Differences are float rounding carried through six steps (the largest are
    // ~5e-5); a parameter nnU-Net leaves untouched must be untouched here too, bit for bit: the weight-0 output's
    // segmentation layer gets no gradient, and PyTorch's SGD skips parameters without one (no weight decay either)
    let ours: HashMap<String, Vec<f32>> = net.named_parameters().into_iter().map(|p| (p.path, p.values)).collect();
    let final_weights = state_dict(&f, "final_weights");
    let mut worst = (0f32, String::new());
    let mut untouched = 0;
    for k in net.torch_state_dict() {
        let (o, t) = (&ours[&k.path], &final_weights[&k.key].values);
        assert_eq!(o.len(), t.len(), "{}", k.key);
        if *t == initial[&k.key].values {
            assert_eq!(o, t, "{}: nnU-Net's step leaves it unchanged, ours changed it", k.key);
            untouched += 1;
        }
        let d = o.iter().zip(t).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        if d > worst.0 {
            worst = (d, k.key.clone());
        }
    }
    assert!(untouched > 0, "the fixture has a weight-0 output whose parameters stay unchanged");
    assert!(worst.0 < 2e-4, "weights after six steps differ from nnU-Net's: {worst:?}");
}

#[test]
fn plain_unet_six_steps_equal_nnunets_train_step_on_flex() {
    run_on(Device::flex(), "train_steps.pth", "PlainConvUNet");
}

#[test]
fn residual_encoder_unet_six_steps_equal_nnunets_train_step_on_flex() {
    run_on(Device::flex(), "train_steps_resenc.pth", "ResidualEncoderUNet");
}

/// On LibTorch, once with each way of computing convolution gradients (ADR 0015: burn's formulas, the CPU default,
/// and PyTorch's `convolution_backward`, the CUDA default). The choice is process-wide: the two tests take turns.
#[cfg(feature = "tch")]
#[allow(deprecated)]
fn on_libtorch(file: &str, class: &str) {
    use nnunet_core::{ConvolutionBackward, set_convolution_backward};
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for mode in [ConvolutionBackward::BurnDefault, ConvolutionBackward::LibTorch] {
        set_convolution_backward(mode);
        run_on(Device::new(burn::backend::LibTorchDevice::Cpu), file, class);
    }
    set_convolution_backward(ConvolutionBackward::Auto);
}

#[cfg(feature = "tch")]
#[test]
fn plain_unet_six_steps_equal_nnunets_train_step_on_libtorch() {
    on_libtorch("train_steps.pth", "PlainConvUNet");
}

#[cfg(feature = "tch")]
#[test]
fn residual_encoder_unet_six_steps_equal_nnunets_train_step_on_libtorch() {
    on_libtorch("train_steps_resenc.pth", "ResidualEncoderUNet");
}
