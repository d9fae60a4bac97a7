#!/usr/bin/env bash
# The one script a session with a lent GPU runs (GPU issue): everything it needs is carried in .gpu/ (git-ignored):
#   .gpu/nnunet.gz                 release `nnunet` built with --features tch against the GPU machine's PyTorch version
#   .gpu/torch_ref.py              ../shared/bench/torch_ref.py
#   .gpu/Dataset004_Hippocampus.tar.xz   ../shared/data/Dataset004_Hippocampus.tar.xz (220 cases)
# Prepare here:  benches/gpu_prepare.sh   Run there:  run(command="benches/gpu_session.sh", carry=[".gpu"], timeout_s=580)
# Writes everything under $OUT (the device tool's result folder) and prints the tables.
#   1. `nnunet --version`, nvidia-smi, LibTorch found from python3's torch
#   2. benches/gpu.sh: train-step time + peak memory vs torch_ref.py (fp32, bf16) for Hippocampus ResEnc M and 128³ ResEnc-L-like
#   3. a real training run: Hippocampus 220 cases, nnUNetPlannerResEncM, 3d_fullres, fold 0, TRAINER (default
#      nnUNetTrainer_5epochs) on cuda: epoch times, validation Dice (skipped when under 240 s remain: SKIP_TRAIN=1)
# PART=step or PART=train runs only 2 or only 3 (two device calls when one call's 600 s do not hold both).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_out}"; mkdir -p "$OUT"
T0=$(date +%s); left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - T0) )); }
exec > >(tee -a "$OUT/session.log") 2>&1
W=$(mktemp -d); gunzip -c .gpu/nnunet.gz > "$W/nnunet" && chmod +x "$W/nnunet" || { echo "no .gpu/nnunet.gz"; exit 2; }
PY="${PYTHON:-python3}"; DEVICE="${DEVICE:-cuda}"   # DEVICE=cpu SMALL=1 SKIP_TRAIN=1: a dry run on a CPU machine
TORCH_LIB="${TORCH_LIB:-}"; [ -n "$TORCH_LIB" ] || TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$W/nnunet" --version
# device memory as the driver sees it (includes the CUDA context), once a second, to cross-check the allocator figures
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 1000 > "$OUT/nvidia_smi.csv" 2>&1 &
    SMI=$!; trap 'kill $SMI 2>/dev/null' EXIT
fi
PART="${PART:-all}"
if [ "$PART" != train ]; then
    echo "== 2. step benchmark ($(left) s left)"
    RESERVE=200; [ "$PART" = step ] && RESERVE=20
    PYTHON="$PY" NNUNET_BIN="$W/nnunet" TORCH_REF=.gpu/torch_ref.py DEVICE="$DEVICE" STEPS="${STEPS:-8}" OUT="$OUT/step" timeout $(( $(left) - RESERVE )) benches/gpu.sh \
        || echo "gpu.sh ended with $?"
fi
if [ "$PART" = step ] || [ "${SKIP_TRAIN:-0}" = 1 ] || [ "$(left)" -lt 240 ]; then echo "training run skipped ($(left) s left)"; exit 0; fi
echo "== 3. training run ($(left) s left)"
D="$W/data"; mkdir -p "$D/raw" "$D/pre" "$D/res"
export nnUNet_raw="$D/raw" nnUNet_preprocessed="$D/pre" nnUNet_results="$D/res" nnUNet_n_proc_DA=12
tar -xJf .gpu/Dataset004_Hippocampus.tar.xz -C "$D/raw"
ls "$D/raw"
/usr/bin/time -f "plan_and_preprocess %e s" "$W/nnunet" plan-and-preprocess -d 4 -pl nnUNetPlannerResEncM -c 3d_fullres --processes 16 --fingerprint-processes 16 > "$OUT/pp.log" 2>&1 || { tail "$OUT/pp.log"; exit 1; }
tail -1 "$OUT/pp.log"
timeout $(( $(left) - 15 )) "$W/nnunet" train 4 3d_fullres 0 --trainer "${TRAINER:-nnUNetTrainer_5epochs}" -p nnUNetResEncUNetMPlans --device "$DEVICE" 2>&1 \
    | grep -v "^epoch [0-9]* *\[" | tee "$OUT/train.log" | grep -E "^epoch|Mean Validation|rror"
F="$D/res/Dataset004_Hippocampus/${TRAINER:-nnUNetTrainer_5epochs}__nnUNetResEncUNetMPlans__3d_fullres/fold_0"
cp "$F"/debug.json "$F"/training_log_*.txt "$F"/validation/summary.json "$OUT/" 2>/dev/null
echo "done ($(left) s left)"
