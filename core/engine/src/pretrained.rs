//! `nnUNetv2_train -pretrained_weights CHECKPOINT`: nnU-Net's `load_pretrained_weights` — every parameter of the
//! new network except the segmentation layers (keys containing `.seg_layers.`) must exist in the pretrained
//! network with the same shape and is copied; the segmentation layers keep their fresh initialisation (the
//! pretraining dataset may have other classes).
//!
//! CHECKPOINT is a `.pth` file (Python nnU-Net's checkpoint, or one this framework wrote), or a checkpoint folder of
//! an earlier version of this framework (`…/fold_0/checkpoint_final`, or a file inside it), whose network is rebuilt
//! from the `plans.json` / `dataset.json` of its training folder.

use crate::checkpoint::{self, Stored};
use burn::tensor::Device;
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::{NamedParam, Network};
use nnunet_schema::{DatasetJson, Plans};
use std::collections::HashMap;
use std::path::Path;

/// nnU-Net's `skip_strings_in_pretrained`.
pub const SKIP_STRINGS: &[&str] = &[".seg_layers."];

/// The checkpoint a `-pretrained_weights` value names.
pub fn checkpoint_at(path: &Path) -> Result<Stored, String> {
    Stored::at(path).ok_or_else(|| {
        format!(
            "{}: not a checkpoint (expected a nnU-Net .pth file such as …/fold_0/checkpoint_final.pth, or a checkpoint \
             folder of an earlier version of this framework with checkpoint.json and network.bpk)",
            path.display()
        )
    })
}

/// The parameters of a `.pth` checkpoint's `network_weights`, named by `target`'s parameter paths (PyTorch keys
/// that `target` does not have are left out; [`transfer`] reports what is missing).
pub fn pth_parameters(path: &Path, target: &dyn Network) -> Result<Vec<NamedParam>, String> {
    let c = crate::pth::read_nnunet_checkpoint(path).map_err(|e| e.to_string())?;
    let shapes: HashMap<String, Vec<usize>> = target.named_parameters().into_iter().map(|p| (p.path, p.shape)).collect();
    let mut out: Vec<NamedParam> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for k in target.torch_state_dict() {
        if seen.contains(&k.path) {
            continue;
        }
        if let Some(t) = c.weights.get(&k.key) {
            let ours = &shapes[&k.path];
            let shape = if crate::pth::shapes_match(&t.shape, ours) { ours.clone() } else { t.shape.clone() };
            seen.insert(k.path.clone());
            out.push(NamedParam { path: k.path, shape, values: t.values.clone() });
        }
    }
    Ok(out)
}

/// The parameters of the network stored in checkpoint folder `dir` (rebuilt from its training folder's plans).
pub fn pretrained_parameters(dir: &Path, device: &Device) -> Result<Vec<NamedParam>, String> {
    let err = |m: String| format!("{}: {m}", dir.display());
    let model_dir = dir.parent().and_then(Path::parent).ok_or_else(|| err("has no training folder above its fold folder".into()))?;
    let plans: Plans = nnunet_schema::json::read_json(&model_dir.join("plans.json")).map_err(|e| err(e.to_string()))?;
    let dataset_json: DatasetJson = nnunet_schema::json::read_json(&model_dir.join("dataset.json")).map_err(|e| err(e.to_string()))?;
    let meta = checkpoint::read_meta(dir).map_err(|e| err(e.to_string()))?;
    let cfg = plans.configuration(&meta.configuration).map_err(|e| err(e.to_string()))?;
    let (class, spec) = NetworkSpec::from_configuration(&cfg, &dataset_json, meta.deep_supervision.unwrap_or(true)).map_err(err)?;
    let arch = nnunet_core::registry::architectures().map_err(|e| err(e.to_string()))?.get(&class).map_err(|e| err(e.to_string()))?;
    let mut net = (arch.make)().build(&spec, device).map_err(|e| err(e.to_string()))?;
    checkpoint::load(dir, net.as_mut(), None).map_err(|e| err(e.to_string()))?;
    Ok(net.named_parameters())
}

/// Copy `pretrained` into `target` (nnU-Net's rule). Every incompatibility is listed in the error. Returns the
/// transferred keys with their shapes.
pub fn transfer(target: &mut dyn Network, pretrained: Vec<NamedParam>) -> Result<Vec<(String, Vec<usize>)>, String> {
    let skip = |k: &str| SKIP_STRINGS.iter().any(|s| k.contains(s));
    let source: HashMap<String, NamedParam> = pretrained.into_iter().map(|p| (p.path.clone(), p)).collect();
    let mut problems = Vec::new();
    for p in target.named_parameters() {
        if skip(&p.path) {
            continue;
        }
        match source.get(&p.path) {
            None => problems.push(format!("key {} is missing in the pretrained model weights", p.path)),
            Some(s) if s.shape != p.shape => {
                problems.push(format!("the shape of key {} differs: pretrained model {:?}, your network {:?}", p.path, s.shape, p.shape))
            }
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        let more = if n > 8 { format!("; and {} more", n - 8) } else { String::new() };
        problems.truncate(8);
        return Err(format!("the pretrained weights are not compatible with your network ({n} problems): {}{more}", problems.join("; ")));
    }
    let mut loaded = Vec::new();
    target.replace_parameters(&mut |path, shape| {
        if skip(path) {
            return None;
        }
        let s = source.get(path)?;
        loaded.push((path.to_string(), shape.to_vec()));
        Some(s.values.clone())
    });
    Ok(loaded)
}

/// `load_pretrained_weights(network, fname)`: read checkpoint `path` and transfer its weights into `target`, built by
/// `arch` (whose [`Architecture::transfer_pretrained`] may replace nnU-Net's rule, e.g. MedNeXt's UpKern). Returns
/// the transferred paths.
pub fn load_pretrained_weights(
    arch: &dyn nnunet_core::Architecture,
    target: &mut dyn Network,
    path: &Path,
    device: &Device,
) -> Result<Vec<String>, String> {
    let stored = checkpoint_at(path)?;
    let params = match &stored {
        Stored::Folder(dir) => pretrained_parameters(dir, device)?,
        Stored::Pth(file) => pth_parameters(file, target)?,
    };
    let loaded = match arch.transfer_pretrained(target, &params) {
        Some(r) => r.map_err(|e| e.to_string()),
        None => transfer(target, params).map(|v| v.into_iter().map(|(p, _)| p).collect()),
    };
    loaded.map_err(|e| format!("{}: {e}", stored.path().display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnunet_arch_unet as _;
    use serde_json::json;

    fn net(out_channels: usize, features: [usize; 2], seed: u64) -> Box<dyn Network> {
        let kwargs = json!({
            "n_stages": 2, "features_per_stage": features, "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [1, 1],
            "n_conv_per_stage_decoder": [1], "conv_bias": true, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": true}, "dropout_op": null, "dropout_op_kwargs": null,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}
        });
        let spec = NetworkSpec { arch_kwargs: kwargs.as_object().unwrap().clone(), in_channels: 1, out_channels, deep_supervision: true };
        let dev = Device::default();
        dev.seed(seed);
        let arch = nnunet_core::registry::architectures().unwrap().get("PlainConvUNet").unwrap();
        (arch.make)().build(&spec, &dev).unwrap()
    }

    #[test]
    fn everything_but_the_segmentation_layers_is_transferred() {
        // pretrained on 5 classes, fine-tuned on 3: only the seg layers differ in shape
        let source = net(5, [4, 8], 1);
        let mut target = net(3, [4, 8], 2);
        let before = target.named_parameters();
        let loaded = transfer(target.as_mut(), source.named_parameters()).unwrap();
        let after = target.named_parameters();
        let src: HashMap<String, NamedParam> = source.named_parameters().into_iter().map(|p| (p.path.clone(), p)).collect();
        assert_eq!(loaded.len(), after.iter().filter(|p| !p.path.contains(".seg_layers.")).count());
        for (b, a) in before.iter().zip(&after) {
            if a.path.contains(".seg_layers.") {
                assert_eq!(a, b, "{} must keep its fresh initialisation", a.path);
            } else {
                assert_eq!(a.values, src[&a.path].values, "{} not transferred", a.path);
            }
        }
        assert!(after.iter().any(|p| p.path == "decoder.seg_layers.0.weight"), "PyTorch state-dict keys");
    }

    #[test]
    fn incompatible_networks_are_refused_with_every_problem() {
        let source = net(3, [4, 8], 1);
        let mut target = net(3, [6, 8], 2);
        let e = transfer(target.as_mut(), source.named_parameters()).unwrap_err();
        assert!(e.contains("encoder.stages.0.convs.0.conv.weight") && e.contains("problems"), "{e}");
        assert!(checkpoint_at(Path::new("/nonexistent/fold_0/checkpoint_final")).unwrap_err().contains("not a checkpoint"));
    }
}
