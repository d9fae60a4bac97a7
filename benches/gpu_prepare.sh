#!/usr/bin/env bash
# Fill .gpu/ for benches/gpu_session.sh: a release `nnunet` with LibTorch (docs/gpu.md), gzipped under the device
# tool's 64 MiB carry limit, torch_ref.py and the Hippocampus dataset.   LIBTORCH=<link folder> benches/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LIBTORCH:?set LIBTORCH to a link folder made by examples/gpu/libtorch-linkdir.sh made from the PyTorch version of the GPU machine}"
SHARED="${SHARED:-../shared}"
mkdir -p .gpu
LIBTORCH_BYPASS_VERSION_CHECK=1 cargo build --release -p nnunet-cli --features tch
BIN="${CARGO_TARGET_DIR:-target}/release/nnunet"
strip -o .gpu/nnunet "$BIN" && gzip -9 -f .gpu/nnunet
cp "$SHARED/bench/torch_ref.py" "$SHARED/data/Dataset004_Hippocampus.tar.xz" .gpu/
du -ch .gpu/* | tail -1
