// nnunet-rs patch (vendor/README.md): LibTorch's own convolution backward (at::convolution_backward: cuDNN's
// backward-data/backward-filter kernels on CUDA, oneDNN on the CPU), which tch does not expose. burn's default
// computes a weight gradient as a forward convolution of the batch-swapped tensors, whose "kernel" is the whole
// feature map: a shape no convolution library is tuned for.
#include <ATen/ATen.h>
#include <array>
#include <cstring>
#include <exception>

extern "C" {
// which: 0 = gradient of the input, 1 = gradient of the weight. Inputs are at::Tensor* (tch's C tensors). The result
// has the dtype of the tensor it is the gradient of; the computation runs in the output gradient's dtype (as
// PyTorch's autograd does under autocast, where the forward convolution ran on half-precision copies).
// Returns a new at::Tensor* or null with the message in err.
void *nnunet_convolution_backward(void *grad_output, void *input, void *weight, const int64_t *stride,
                                  const int64_t *padding, const int64_t *dilation, const int64_t *output_padding,
                                  int64_t ndim, int transposed, int64_t groups, int which, char *err,
                                  size_t err_len) {
  try {
    const at::Tensor &g = *static_cast<at::Tensor *>(grad_output);
    const at::Tensor &x = *static_cast<at::Tensor *>(input);
    const at::Tensor &w = *static_cast<at::Tensor *>(weight);
    auto dt = g.scalar_type();
    std::array<bool, 3> mask{which == 0, which == 1, false};
    auto r = at::convolution_backward(g, x.to(dt), w.to(dt), std::nullopt, at::IntArrayRef(stride, ndim),
                                      at::IntArrayRef(padding, ndim), at::IntArrayRef(dilation, ndim),
                                      transposed != 0, at::IntArrayRef(output_padding, ndim), groups, mask);
    at::Tensor out = which == 0 ? std::get<0>(r).to(x.scalar_type()) : std::get<1>(r).to(w.scalar_type());
    return new at::Tensor(out);
  } catch (const std::exception &e) {
    if (err_len > 0) {
      std::strncpy(err, e.what(), err_len - 1);
      err[err_len - 1] = 0;
    }
    return nullptr;
  }
}
}
