//! nnunet-rs patch (vendor/README.md): convolution gradients from LibTorch's own `at::convolution_backward`
//! (`src/conv_backward/convolution_backward.cpp`; tch does not expose it), what PyTorch's autograd calls. burn's
//! defaults compute a weight gradient as a forward convolution of the batch-swapped tensors, whose kernel is the
//! whole feature map: on cuDNN a forward convolution of that shape parallelises over a tiny output. On the CPU the
//! two ways cost the same (measured, ADR 0015), so the default mode keeps burn's formulas there, where every earlier
//! CPU measurement was made (`burn_default_*`, the same arithmetic as burn-backend's defaults).

use core::ffi::{c_char, c_void};
use core::sync::atomic::{AtomicU8, Ordering};

/// Which convolution gradients the LibTorch backend computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvolutionBackward {
    /// `at::convolution_backward` on CUDA (and any non-CPU device), burn's default formulas on the CPU (grouped
    /// convolutions' weight gradients always use `at::convolution_backward`).
    Auto = 0,
    /// `at::convolution_backward` on every device.
    LibTorch = 1,
    /// burn's default formulas on every device (upstream burn-tch's behaviour).
    BurnDefault = 2,
}

static MODE: AtomicU8 = AtomicU8::new(ConvolutionBackward::Auto as u8);

/// Choose how convolution gradients are computed (process-wide; default `Auto`).
pub fn set_convolution_backward(mode: ConvolutionBackward) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

/// The current choice.
pub fn convolution_backward_mode() -> ConvolutionBackward {
    match MODE.load(Ordering::Relaxed) {
        1 => ConvolutionBackward::LibTorch,
        2 => ConvolutionBackward::BurnDefault,
        _ => ConvolutionBackward::Auto,
    }
}

/// Whether a gradient of a convolution on `t`'s device goes through `at::convolution_backward`.
pub(crate) fn use_libtorch_backward(t: &tch::Tensor) -> bool {
    match convolution_backward_mode() {
        ConvolutionBackward::Auto => t.device() != tch::Device::Cpu,
        ConvolutionBackward::LibTorch => true,
        ConvolutionBackward::BurnDefault => false,
    }
}

/// Cut a computed weight gradient down to the weight's spatial extent (burn's default formulas can overshoot).
fn narrow_to(g: tch::Tensor, shape: &[i64]) -> tch::Tensor {
    (2..shape.len()).fold(g, |g, d| {
        if g.size()[d] == shape[d] {
            g
        } else {
            g.narrow(d as i64, 0, shape[d])
        }
    })
}

/// burn's default weight gradient (groups = 1): `conv(sampled.swap(0, 1), grid.swap(0, 1))` with stride and
/// dilation exchanged, where for a convolution `grid` is the output gradient and `sampled` the input, and for a
/// transposed convolution `grid` is the input and `sampled` the output gradient.
pub(crate) fn burn_default_weight_grad(
    grid: &tch::Tensor,
    sampled: &tch::Tensor,
    weight_shape: &[i64],
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
) -> tch::Tensor {
    let g = tch::Tensor::conv3d(
        &sampled.transpose(0, 1),
        &grid.transpose(0, 1),
        None::<tch::Tensor>,
        dilation.map(|v| v as i64),
        padding.map(|v| v as i64),
        stride.map(|v| v as i64),
        1,
    )
    .transpose(0, 1);
    narrow_to(g, weight_shape)
}

/// burn's default input gradient of a convolution: the transposed convolution of the output gradient, with the
/// output padding that restores the input's extent.
pub(crate) fn burn_default_conv_input_grad(
    input_shape: &[i64],
    weight: &tch::Tensor,
    output_grad: &tch::Tensor,
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
    groups: usize,
) -> tch::Tensor {
    let (k, o) = (weight.size(), output_grad.size());
    let out_pad: [i64; 3] = core::array::from_fn(|i| {
        let (s, p, d) = (stride[i] as i64, padding[i] as i64, dilation[i] as i64);
        input_shape[i + 2] - ((o[i + 2] - 1) * s - 2 * p + d * (k[i + 2] - 1) + 1)
    });
    tch::Tensor::conv_transpose3d(
        output_grad,
        weight,
        None::<tch::Tensor>,
        stride.map(|v| v as i64),
        padding.map(|v| v as i64),
        out_pad,
        groups as i64,
        dilation.map(|v| v as i64),
    )
}

unsafe extern "C" {
    fn nnunet_convolution_backward(
        grad_output: *mut c_void,
        input: *mut c_void,
        weight: *mut c_void,
        stride: *const i64,
        padding: *const i64,
        dilation: *const i64,
        output_padding: *const i64,
        ndim: i64,
        transposed: i32,
        groups: i64,
        which: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
}

/// Which gradient `convolution_backward` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gradient {
    Input = 0,
    Weight = 1,
}

/// The gradient of a (transposed) convolution with respect to its input or weight, in that tensor's dtype.
#[allow(clippy::too_many_arguments)]
pub(crate) fn convolution_backward<const N: usize>(
    grad_output: &tch::Tensor,
    input: &tch::Tensor,
    weight: &tch::Tensor,
    stride: [usize; N],
    padding: [usize; N],
    dilation: [usize; N],
    output_padding: [usize; N],
    transposed: bool,
    groups: usize,
    which: Gradient,
) -> tch::Tensor {
    let to_i64 = |a: [usize; N]| a.map(|v| v as i64);
    let (s, p, d, op) = (
        to_i64(stride),
        to_i64(padding),
        to_i64(dilation),
        to_i64(output_padding),
    );
    let mut err = [0 as c_char; 1024];
    let ptr = unsafe {
        nnunet_convolution_backward(
            grad_output.as_ptr() as *mut c_void,
            input.as_ptr() as *mut c_void,
            weight.as_ptr() as *mut c_void,
            s.as_ptr(),
            p.as_ptr(),
            d.as_ptr(),
            op.as_ptr(),
            N as i64,
            transposed as i32,
            groups as i64,
            which as i32,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if ptr.is_null() {
        let msg = unsafe { core::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
        panic!("LibTorch convolution_backward ({which:?} gradient) failed: {msg}");
    }
    // SAFETY: a new at::Tensor* owned by the returned tch::Tensor (tch's C tensors are at::Tensor*)
    unsafe { tch::Tensor::from_ptr(ptr as *mut torch_sys::C_tensor) }
}
