#!/usr/bin/env bash
# Prediction side by side with Python nnU-Net 2.8.1, same checkpoint, same cases, in one call: Python nnU-Net's own
# `checkpoint_final.pth` (tests/fixtures/pth, a tiny 3d configuration trained one epoch on the embedded Hippocampus
# cases) predicts the 24 embedded images with `nnUNetv2_predict` of this project and of Python nnU-Net (CPU, TTA,
# --save_probabilities), timed end to end; then tests/fixtures/scripts/pth_check.py compares the outputs.
#
#   benches/predict_vs_nnunet.sh                 # NNUNET_BIN (default: the release, else the debug binary),
#   NNUNET_PY=/root/nnunet-py THREADS=2 ...      # NNUNET_PY: a venv with nnunetv2==2.8.1
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}"
BIN="${NNUNET_BIN:-$T/release/nnunet}"
[ -x "$BIN" ] || BIN="$T/debug/nnunet"
PYV="${NNUNET_PY:-/root/nnunet-py}"
THREADS="${THREADS:-2}"
CFG="${CFG:-3d_tiny}"
TR=nnUNetTrainer_1epoch
if ldd "$BIN" 2>/dev/null | grep -q "libtorch_cpu.so => not found"; then
    TL=$("$PYV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH="$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/results/Dataset004_Hippocampus" "$W/in" "$W/aliases"
cp -r "tests/fixtures/pth/${TR}__nnUNetPlans__$CFG" "$W/results/Dataset004_Hippocampus/"
cp examples/data/Dataset004_Hippocampus/imagesTr/*.nii.gz "$W/in/"
ln -s "$(realpath "$BIN")" "$W/aliases/nnUNetv2_predict"
export nnUNet_results="$W/results" nnUNet_raw="$W/raw" nnUNet_preprocessed="$W/pre"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" RAYON_NUM_THREADS="$THREADS"
n=$(ls "$W/in" | wc -l)
args=(-i "$W/in" -d 4 -c "$CFG" -f 0 -tr "$TR" -device cpu --save_probabilities -npp 1 -nps 1)
t0=$(date +%s.%N)
"$W/aliases/nnUNetv2_predict" "${args[@]}" -o "$W/ours" > "$W/ours.log" 2>&1
t1=$(date +%s.%N)
"$PYV/bin/nnUNetv2_predict" "${args[@]}" -o "$W/python" > "$W/python.log" 2>&1
t2=$(date +%s.%N)
"$PYV/bin/python" -c 'import torch' 2>/dev/null
t3=$(date +%s.%N)
"$PYV/bin/python" -c 'import nnunetv2.inference.predict_from_raw_data' 2>/dev/null
t4=$(date +%s.%N)
echo "binary: $BIN ($(file -b "$(realpath "$BIN")" | cut -d, -f1)); $n cases; $THREADS threads; $(nproc) cores"
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v n="$n" 'BEGIN {
    printf "| | wall s | s per case |\n|---|---|---|\n"
    printf "| this project `nnUNetv2_predict` | %.1f | %.2f |\n", b - a, (b - a) / n
    printf "| Python nnU-Net `nnUNetv2_predict` | %.1f | %.2f |\n", c - b, (c - b) / n
    printf "| (of which importing nnU-Net'"'"'s predictor in Python) | %.1f | |\n", e - d
}'
# agreement of the two outputs
"$PYV/bin/python" - "$W/ours" "$W/python" <<'PY'
import os, sys
import numpy as np, SimpleITK as sitk
ours, py = sys.argv[1], sys.argv[2]
cases = sorted(f[:-7] for f in os.listdir(py) if f.endswith('.nii.gz'))
dmax, off, nval, seg, nvox = 0.0, 0, 0, 0, 0
for c in cases:
    a = np.load(f'{ours}/{c}.npz')['probabilities'].astype(np.float64)
    b = np.load(f'{py}/{c}.npz')['probabilities'].astype(np.float64)
    d = np.abs(a - b)
    dmax, off, nval = max(dmax, float(d.max())), off + int((d > 1e-4).sum()), nval + d.size
    s1 = sitk.GetArrayFromImage(sitk.ReadImage(f'{ours}/{c}.nii.gz'))
    s2 = sitk.GetArrayFromImage(sitk.ReadImage(f'{py}/{c}.nii.gz'))
    seg, nvox = seg + int((s1 != s2).sum()), nvox + s1.size
print(f'{len(cases)} cases: max |p_ours - p_nnU-Net| = {dmax:.2e}; {off} of {nval} probabilities differ by > 1e-4; '
      f'{seg} of {nvox} voxels labelled differently')
PY
