//! Shared by the engine's integration tests.
use nnunet_core::architecture::NetworkSpec;
use serde_json::json;

/// The `3d_tiny` topology of examples/data/3d_tiny_configuration.json (3 stages, 4..16 features, 2 convolutions per
/// stage) as `class` (`PlainConvUNet`), or as a `ResidualEncoderUNet` of that topology (1/2/2 residual blocks, one
/// convolution per decoder stage); one input channel, three classes, deep supervision.
pub fn spec(class: &str) -> NetworkSpec {
    let mut kwargs = json!({
        "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": true,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": true},
        "dropout_op": null, "dropout_op_kwargs": null, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}
    });
    if class == "ResidualEncoderUNet" {
        let k = kwargs.as_object_mut().unwrap();
        k.remove("n_conv_per_stage");
        k.insert("n_blocks_per_stage".into(), json!([1, 2, 2]));
        k.insert("n_conv_per_stage_decoder".into(), json!([1, 1]));
    }
    NetworkSpec { arch_kwargs: kwargs.as_object().unwrap().clone(), in_channels: 1, out_channels: 3, deep_supervision: true }
}
