// nnunet-rs patch (vendor/README.md): built without LibTorch's headers, the convolution backward reports so.
#include <cstddef>
#include <cstdint>
#include <cstring>
extern "C" void *nnunet_convolution_backward(void *, void *, void *, const int64_t *, const int64_t *,
                                             const int64_t *, const int64_t *, int64_t, int, int64_t, int, char *err,
                                             size_t err_len) {
  if (err_len > 0) {
    std::strncpy(err, "burn-tch was built without LibTorch's headers", err_len - 1);
    err[err_len - 1] = 0;
  }
  return nullptr;
}
