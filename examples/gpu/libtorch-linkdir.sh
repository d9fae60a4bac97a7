#!/usr/bin/env bash
# Make the LibTorch folder `cargo build --features tch` links against, from an installed PyTorch (a pip wheel):
# include/ plus only LibTorch's CPU libraries, so the binary does not link the CUDA part (libtorch_cuda.so) and
# starts on machines without a GPU; `-device cuda` loads the CUDA part at run time (docs/gpu.md, ADR 0012).
#
#   examples/gpu/libtorch-linkdir.sh [TORCH_DIR] OUT_DIR      # TORCH_DIR: the `torch` package folder
#   LIBTORCH=OUT_DIR LIBTORCH_BYPASS_VERSION_CHECK=1 cargo build --release -p nnunet-cli --features tch
#
# Without TORCH_DIR, python3's `import torch` says where it is. Build against the PyTorch version the binary will run
# with (same major.minor): LibTorch has no stable C++ ABI.
set -euo pipefail
if [ $# -eq 2 ]; then TORCH="$1"; OUT="$2"; elif [ $# -eq 1 ]; then OUT="$1"; TORCH=""; else
    echo "usage: $0 [TORCH_DIR] OUT_DIR" >&2; exit 2; fi
if [ -z "$TORCH" ]; then
    TORCH=$("${PYTHON:-python3}" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null) || {
        echo "$0: ${PYTHON:-python3} cannot import torch: pass the torch folder (site-packages/torch) or pip install torch" >&2; exit 2; }
fi
for f in include lib/libtorch_cpu.so lib/libc10.so; do
    [ -e "$TORCH/$f" ] || { echo "$0: $TORCH/$f missing: not a PyTorch/LibTorch folder" >&2; exit 2; }
done
L="$(cd "$TORCH/lib" && pwd)"
# CUDA builds of libtorch_cpu.so need the CUDA runtime and CUPTI (pip's nvidia-* packages next to torch) to link
missing=""; cuda_libs=""
for need in $(readelf -d "$L/libtorch_cpu.so" | sed -n 's/.*NEEDED.*\[\(lib\(cudart\|cupti\)[^]]*\)\]/\1/p'); do
    found=$(find "$(dirname "$TORCH")/nvidia" ${EXTRA_CUDA_LIBS:-} -name "$need" 2>/dev/null | head -1 || true)
    if [ -n "$found" ]; then cuda_libs="$cuda_libs $found"; else missing="$missing $need"; fi
done
if [ -n "$missing" ]; then
    echo "$0: libtorch_cpu.so needs$missing, not found under $(dirname "$TORCH")/nvidia (set EXTRA_CUDA_LIBS=DIR)" >&2; exit 2
fi
mkdir -p "$OUT/lib"
ln -sfn "$(cd "$TORCH" && pwd)/include" "$OUT/include"
ln -sf "$L/libtorch_cpu.so" "$OUT/lib/libtorch_cpu.so"
ln -sf "$L/libtorch_cpu.so" "$OUT/lib/libtorch.so"     # torch-sys links -ltorch; on CUDA wheels that would pull CUDA in
ln -sf "$L/libc10.so" "$OUT/lib/libc10.so"
for g in "$L"/libgomp*.so* "$(dirname "$TORCH")"/torch.libs/libgomp*.so*; do [ -e "$g" ] && ln -sf "$g" "$OUT/lib/"; done
for c in $cuda_libs; do ln -sf "$c" "$OUT/lib/"; done
echo "LibTorch link folder: $OUT ($(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$TORCH/version.py" 2>/dev/null || echo '?'))"
