//! nnU-Net's two U-Nets from dynamic_network_architectures 0.4.4, built from a plans configuration's
//! `arch_kwargs`: [`PlainConvUNet`] (default plans) and [`ResidualEncoderUNet`] (ResEnc presets), 2D and 3D,
//! with deep supervision and nnU-Net's weight init. Registered under nnU-Net's dotted class names.

pub mod blocks;
pub mod kwargs;
pub mod plain;
pub mod resenc;
pub mod torch;

pub use kwargs::{Encoder, UNetKwargs};
pub use plain::PlainConvUNet;
pub use resenc::ResidualEncoderUNet;

use burn::tensor::{Device, Tensor};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::network::{Network, NetworkModule, boxed};
use nnunet_core::topology::{Topology, UNetKind, conv_feature_map_size};
use nnunet_core::{Architecture, ArchitectureError};
use serde_json::{Map, Value, json};

pub const PLAIN_NAME: &str = "dynamic_network_architectures.architectures.unet.PlainConvUNet";
pub const RESENC_NAME: &str = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet";

/// A U-Net family: plain or residual encoder.
pub struct UNetArchitecture(pub Encoder);

impl UNetArchitecture {
    fn kwargs(&self, spec: &NetworkSpec) -> Result<UNetKwargs, ArchitectureError> {
        let kw = UNetKwargs::parse(&spec.arch_kwargs, self.0)?;
        if kw.n_stages() < 2 {
            return Err(ArchitectureError::Kwargs("a U-Net needs n_stages >= 2".into()));
        }
        Ok(kw)
    }
}

impl NetworkModule for PlainConvUNet {
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        PlainConvUNet::forward(self, x)
    }

    fn torch_state_dict(&self) -> Option<Vec<nnunet_core::TorchKey>> {
        Some(torch::plain_state_dict(self))
    }
}

impl NetworkModule for ResidualEncoderUNet {
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        ResidualEncoderUNet::forward(self, x)
    }

    fn torch_state_dict(&self) -> Option<Vec<nnunet_core::TorchKey>> {
        Some(torch::resenc_state_dict(self))
    }
}

impl Architecture for UNetArchitecture {
    fn memory_proxy(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<f64, ArchitectureError> {
        let kw = self.kwargs(spec)?;
        let lifted: Vec<usize> = match patch {
            [y, x] => vec![1, *y, *x],
            [z, y, x] => vec![*z, *y, *x],
            _ => return Err(ArchitectureError::Kwargs(format!("patch {patch:?} is neither 2D nor 3D"))),
        };
        let kind = match self.0 {
            Encoder::Plain => UNetKind::Plain,
            Encoder::Residual => UNetKind::ResidualEncoder,
        };
        let strides: Vec<Vec<usize>> = kw.strides.iter().map(|s| s.to_vec()).collect();
        Ok(conv_feature_map_size(kind, &kw.features, &strides, &kw.n_per_stage, &kw.n_conv_decoder, &lifted, spec.out_channels) as f64)
    }

    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>, ArchitectureError> {
        let kw = self.kwargs(spec)?;
        Ok(match self.0 {
            Encoder::Plain => boxed(PlainConvUNet::new(&kw, spec.in_channels, spec.out_channels, spec.deep_supervision, device)),
            Encoder::Residual => boxed(ResidualEncoderUNet::new(&kw, spec.in_channels, spec.out_channels, spec.deep_supervision, device)),
        })
    }

    fn describe(&self, spec: &NetworkSpec, patch: &[usize]) -> Result<Vec<String>, ArchitectureError> {
        let kw = self.kwargs(spec)?;
        let dims = kw.dims;
        let show = |v: &[usize; 3]| -> String {
            let v: Vec<String> = v[3 - dims..].iter().map(|x| x.to_string()).collect();
            v.join("x")
        };
        let mut size: [usize; 3] = match patch {
            [y, x] => [1, *y, *x],
            [z, y, x] => [*z, *y, *x],
            _ => return Err(ArchitectureError::Kwargs(format!("patch {patch:?} is neither 2D nor 3D"))),
        };
        let mut lines = Vec::new();
        let unit = match self.0 {
            Encoder::Plain => "convs",
            Encoder::Residual => "BasicBlockD",
        };
        if self.0 == Encoder::Residual {
            lines.push(format!("stem            conv {} {} -> {}  out ({}, {})", show(&kw.kernel_sizes[0]), spec.in_channels, kw.features[0], kw.features[0], show(&size)));
        }
        let mut sizes = Vec::new();
        for s in 0..kw.n_stages() {
            for (a, x) in size.iter_mut().enumerate() {
                *x /= kw.strides[s][a];
            }
            sizes.push(size);
            lines.push(format!(
                "encoder {s:<7} {} x {unit}, kernel {}, stride {}  out ({}, {})",
                kw.n_per_stage[s],
                show(&kw.kernel_sizes[s]),
                show(&kw.strides[s]),
                kw.features[s],
                show(&size)
            ));
        }
        let n = kw.n_stages();
        for j in 0..n - 1 {
            let k = n - 2 - j;
            lines.push(format!(
                "decoder {j:<7} transpconv {} + {} convs, kernel {}  out ({}, {})  head ({}, {}){}",
                show(&kw.strides[k + 1]),
                kw.n_conv_decoder[j],
                show(&kw.kernel_sizes[k]),
                kw.features[k],
                show(&sizes[k]),
                spec.out_channels,
                show(&sizes[k]),
                if k == 0 { "  <- full-resolution output" } else if spec.deep_supervision { "  (deep supervision)" } else { "  (unused without deep supervision)" }
            ));
        }
        Ok(lines)
    }

    /// nnU-Net's arch_kwargs for a planner topology (the key order nnU-Net's planners write).
    fn configure(&self, t: &Topology) -> Option<Map<String, Value>> {
        let n = t.n_stages();
        let (per_key, per_stage, dec): (&str, Vec<usize>, Vec<usize>) = match self.0 {
            Encoder::Plain => ("n_conv_per_stage", vec![2; n], vec![2; n.saturating_sub(1)]),
            Encoder::Residual => ("n_blocks_per_stage", (0..n).map(|i| RESENC_BLOCKS[i.min(RESENC_BLOCKS.len() - 1)]).collect(), vec![1; n.saturating_sub(1)]),
        };
        let (conv_op, norm_op) = if t.patch_size.len() == 2 {
            ("torch.nn.modules.conv.Conv2d", "torch.nn.modules.instancenorm.InstanceNorm2d")
        } else {
            ("torch.nn.modules.conv.Conv3d", "torch.nn.modules.instancenorm.InstanceNorm3d")
        };
        let v = json!({
            "n_stages": n,
            "features_per_stage": t.features_per_stage,
            "conv_op": conv_op,
            "kernel_sizes": t.kernel_sizes,
            "strides": t.strides,
            per_key: per_stage,
            "n_conv_per_stage_decoder": dec,
            "conv_bias": true,
            "norm_op": norm_op,
            "norm_op_kwargs": {"eps": 1e-05, "affine": true},
            "dropout_op": null,
            "dropout_op_kwargs": null,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": true}
        });
        v.as_object().cloned()
    }
}

/// ResEnc blocks per encoder stage (nnU-Net's `UNet_blocks_per_stage_encoder` of the ResEnc planners).
pub const RESENC_BLOCKS: [usize; 13] = [1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6];

nnunet_core::register_architecture!(
    PLAIN_NAME,
    "nnU-Net's default U-Net: strided-conv encoder, 2 conv-IN-LReLU per stage, transposed-conv decoder, deep supervision",
    aliases = ["PlainConvUNet"],
    || Box::new(UNetArchitecture(Encoder::Plain))
);

nnunet_core::register_architecture!(
    RESENC_NAME,
    "Residual-encoder U-Net of the ResEnc presets: stem + BasicBlockD stages (1,3,4,6,6,6,…), plain decoder",
    aliases = ["ResidualEncoderUNet"],
    || Box::new(UNetArchitecture(Encoder::Residual))
);
