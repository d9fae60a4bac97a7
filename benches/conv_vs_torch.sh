#!/usr/bin/env bash
# The U-Nets' 3×3×3 convolutions on the CPU, this project's CPU backend (burn flex, release) next to PyTorch in one
# call: forward and input gradient (the transposed convolution autodiff runs for it), best of REPS, same threads.
#
#   PYTHON=/path/to/python-with-torch benches/conv_vs_torch.sh
#
# Shapes (channels, patch, batch 2, stride): the Hippocampus 3d_fullres stages' sizes at 32/64/128 features and the
# strided first convolution of stage 2. docs/benchmarks.md, "Convolutions on the CPU".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
REPS="${REPS:-5}"
THREADS="${THREADS:-$(nproc)}"
export RAYON_NUM_THREADS="$THREADS"
cargo build --release -q -p nnunet-engine --example conv_timing
BIN="${CARGO_TARGET_DIR:-target}/release/examples/conv_timing"
SHAPES=("32 40x56x40 2 1" "64 20x28x20 2 1" "128 10x14x10 2 1" "32 40x56x40 2 2")
echo "| C, patch, stride | flex forward ms | PyTorch forward ms | flex input gradient ms | PyTorch input gradient ms |"
echo "|---|---|---|---|---|"
for s in "${SHAPES[@]}"; do
    set -- $s
    ours=$("$BIN" "$1" "$2" "$3" "$4" "$REPS")
    theirs=$("$PY" - "$1" "$2" "$3" "$4" "$REPS" "$THREADS" <<'PY'
import sys, time, torch
c, p, n, s, reps, threads = int(sys.argv[1]), [int(v) for v in sys.argv[2].split("x")], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
x = torch.randn(n, c, *p)
w = torch.randn(c, c, 3, 3, 3) * 0.1
with torch.no_grad():
    y = torch.nn.functional.conv3d(x, w, stride=s, padding=1)
    g = torch.randn_like(y)
    pad_out = [(p[i] + 2 - 3) % s for i in range(3)]
    fwd = bwd = float("inf")
    for _ in range(reps):
        t = time.perf_counter(); torch.nn.functional.conv3d(x, w, stride=s, padding=1); fwd = min(fwd, time.perf_counter() - t)
        t = time.perf_counter(); torch.nn.functional.conv_transpose3d(g, w, stride=s, padding=1, output_padding=pad_out); bwd = min(bwd, time.perf_counter() - t)
print(f"{fwd * 1e3:.1f} {bwd * 1e3:.1f}")
PY
)
    f=$(sed -E 's/.*forward ([0-9.]+) ms.*/\1/' <<<"$ours"); b=$(sed -E 's/.*input gradient ([0-9.]+) ms.*/\1/' <<<"$ours")
    echo "| $1, $2, $4 | $f | ${theirs% *} | $b | ${theirs#* } |"
done
echo
echo "threads: $THREADS; PyTorch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null); $(lscpu | sed -n 's/^Model name: *//p')"
