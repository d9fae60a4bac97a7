#!/usr/bin/env bash
# Device benchmark for the GPU issue: this project's training step (nnunet calibrate-vram: real steps, measured peak
# memory) next to ../shared/bench/torch_ref.py (PyTorch) for the same two configurations, in one call, one table.
# Builds nothing: carry a binary built elsewhere (NNUNET_BIN). Needs python3 with torch for the reference side.
#
#   DEVICE=cuda NNUNET_BIN=target/release/nnunet benches/gpu.sh            # on the lent GPU machine
#   DEVICE=cpu SMALL=1 STEPS=3 benches/gpu.sh                               # dry run of the whole script on a CPU
#
# Configurations: (1) Hippocampus 3d_fullres with the real nnUNetPlannerResEncM plans (tests/fixtures), (2) a 128³
# ResEnc-L-like network (features 32…320, blocks 1,3,4,6,6,6, strides 1,2,2,2,2,2, batch 2) — torch_ref's reference
# shape. SMALL=1 divides the features by 8, shrinks (2) to 64³ and uses batch 2: a dry run of the plumbing, not a measurement. Differences that remain: ours trains with deep supervision and
# weight decay 3e-5 (nnU-Net's recipe); torch_ref has one head and no weight decay.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
STEPS="${STEPS:-8}"
BIN="${NNUNET_BIN:-${CARGO_TARGET_DIR:-target}/release/nnunet}"
[ -x "$BIN" ] || BIN="${CARGO_TARGET_DIR:-target}/debug/nnunet"
[ -x "$BIN" ] || { echo "no nnunet binary: set NNUNET_BIN" >&2; exit 2; }
PY="${PYTHON:-python3}"
if [ -n "${NNUNET_PY:-}" ]; then PY="$NNUNET_PY/bin/python"; fi
REF="${TORCH_REF:-}"
for c in shared/bench/torch_ref.py ../shared/bench/torch_ref.py; do [ -z "$REF" ] && [ -f "$c" ] && REF="$c"; done
[ -n "$REF" ] || { echo "torch_ref.py not found: set TORCH_REF" >&2; exit 2; }
# a LibTorch build (feature tch) runs against the PyTorch installation $PY sees
if ldd "$BIN" 2>/dev/null | grep -q "libtorch_cpu.so => not found"; then
    TL=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || { echo "$BIN needs LibTorch: $PY has no torch" >&2; exit 2; }
    export LD_LIBRARY_PATH="$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
echo "device=$DEVICE binary=$BIN ($("$BIN" --version | tr '\n' ' ')) reference=$REF out=$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# plans for both configurations (the 128³ one derived from the ResEnc M plans: same data, other network and patch)
P="$OUT/plans"; mkdir -p "$P"
cp tests/fixtures/Dataset004_Hippocampus/dataset.json "$P/"
P128=128; [ "${SMALL:-0}" = 1 ] && P128=64
"$PY" - "$P" "$P128" "${SMALL:-0}" <<'PY'
import json, sys
out, n, small = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
div = 8 if small else 1  # SMALL: the same topologies with 1/8 of the features (a plumbing check, not a measurement)
plans = json.load(open("tests/fixtures/Dataset004_Hippocampus/nnUNetResEncUNetMPlans.json"))
cfg = plans["configurations"]["3d_fullres"]
hip = json.loads(json.dumps(cfg["architecture"]))
hip["arch_kwargs"]["features_per_stage"] = [max(f // div, 1) for f in hip["arch_kwargs"]["features_per_stage"]]
plans["configurations"]["bench_hippocampus"] = {"inherits_from": "3d_fullres", "architecture": hip}
arch = json.loads(json.dumps(cfg["architecture"]))
k = arch["arch_kwargs"]
k.update({"n_stages": 6, "features_per_stage": [f // div for f in [32, 64, 128, 256, 320, 320]], "kernel_sizes": [[3, 3, 3]] * 6,
          "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5, "n_blocks_per_stage": [1, 3, 4, 6, 6, 6],
          "n_conv_per_stage_decoder": [1] * 5})
plans["configurations"]["bench_resencl"] = {"inherits_from": "3d_fullres", "patch_size": [n, n, n], "batch_size": 2,
                                            "architecture": arch}
json.dump(plans, open(f"{out}/nnUNetResEncUNetMPlans.json", "w"), indent=4)
print("hippocampus:", cfg["patch_size"], "batch", cfg["batch_size"], hip["arch_kwargs"]["features_per_stage"])
PY

ours() {  # $1 configuration, $2 label, $3 batch, $4 precision (fp32 | bf16)
    local o="$OUT/ours_$2"; [ "$4" = fp32 ] || o="${o}_$4"
    # fp32 is compared strict on both sides: torch_ref's fp32 mode turns TF32 off; LibTorch's default (as PyTorch's)
    # lets cuDNN convolutions use TF32, which NVIDIA_TF32_OVERRIDE=0 turns off for our process
    local tf32=(); [ "$4" = fp32 ] && tf32=(env NVIDIA_TF32_OVERRIDE=0)
    "${tf32[@]}" timeout "${OURS_TIMEOUT:-0}" "$BIN" calibrate-vram -d Dataset004_Hippocampus -c "$1" --plans-file "$P/nnUNetResEncUNetMPlans.json" --device "$DEVICE" \
        --precision "$4" --steps "$STEPS" --batch-size "$3" -o "$o.json" > "$o.log" 2>&1 || { echo "ours $2 $4 failed or timed out:"; tail -3 "$o.log"; }
}
theirs() {  # $1 patch, $2 features, $3 blocks, $4 strides, $5 label, $6 batch
    "$PY" "$REF" --device "$DEVICE" --patch "$1" --batch "$6" --features "$2" --blocks "$3" --strides "$4" \
        --warmup 2 --iters "$STEPS" --modes fp32,bf16 --label "$5" > "$OUT/torch_$5.log" 2>&1 || { echo "torch $5 failed:"; tail -5 "$OUT/torch_$5.log"; }
}
HF=$("$PY" -c "import json;p=json.load(open('$P/nnUNetResEncUNetMPlans.json'))['configurations'];c=p['3d_fullres'];k=p['bench_hippocampus']['architecture']['arch_kwargs'];print('x'.join(map(str,c['patch_size'])),','.join(map(str,k['features_per_stage'])),','.join(map(str,k['n_blocks_per_stage'])),','.join(str(s[0]) if len(set(s))==1 else 'x' for s in k['strides']),c['batch_size'])")
read -r HP HFEAT HBLK HSTR HBS <<< "$HF"
[ "${SMALL:-0}" = 1 ] && HBS=2   # the planned Hippocampus batch (large: ResEnc M grows it) is a GPU measurement
LFEAT=$("$PY" -c "import json;print(','.join(map(str,json.load(open('$P/nnUNetResEncUNetMPlans.json'))['configurations']['bench_resencl']['architecture']['arch_kwargs']['features_per_stage'])))")
for prec in fp32 ${OURS_HALF:-bf16}; do
    ours bench_hippocampus hippocampus "$HBS" "$prec"
    ours bench_resencl resencl 2 "$prec"
done
# ADR 0015: the same fp32 steps with the other way of computing convolution gradients (the default is PyTorch's own
# convolution_backward on cuda, burn's formulas on the CPU); 3 steps, at most ALT_TIMEOUT s each
ALT=burn; [ "$DEVICE" = cpu ] && ALT=libtorch
if [ "${CONV_AB:-1}" = 1 ]; then
    export NNUNET_CONV_BACKWARD=$ALT; S0=$STEPS; STEPS=3; OURS_TIMEOUT=${ALT_TIMEOUT:-100}
    ours bench_hippocampus "hippocampus_grad$ALT" "$HBS" fp32
    ours bench_resencl "resencl_grad$ALT" 2 fp32
    unset NNUNET_CONV_BACKWARD; STEPS=$S0; OURS_TIMEOUT=0
fi
# torch_ref takes one stride per stage (isotropic); an anisotropic Hippocampus stride is marked x and left to its default
if [[ "$HSTR" == *x* ]]; then theirs "$HP" "$HFEAT" "$HBLK" "" hippocampus "$HBS"; else theirs "$HP" "$HFEAT" "$HBLK" "$HSTR" hippocampus "$HBS"; fi
theirs "${P128}x${P128}x${P128}" "$LFEAT" 1,3,4,6,6,6 1,2,2,2,2,2 resencl 2

"$PY" - "$OUT" "$DEVICE" <<'PY'
import json, os, re, statistics, sys
out, dev = sys.argv[1], sys.argv[2]
def ours(label, prec=""):
    p = f"{out}/ours_{label}{prec}.json"
    if not os.path.exists(p):
        return None
    c = json.load(open(p))
    st = c["step_seconds"][1:] or c["step_seconds"]
    return statistics.median(st) * 1e3, c["peak_allocated_bytes"], c["peak_reserved_bytes"], c["num_parameters"], c["patch_size"], c["batch_size"]
def torch(label):
    res = {}
    p = f"{out}/torch_{label}.log"
    for line in open(p) if os.path.exists(p) else []:
        if line.startswith("RESULT"):
            kv = dict(re.findall(r"(\w+)=(\S+)", line))
            res[kv.get("dtype")] = kv
    return res
mib = lambda b: f"{b / 1048576:.0f}" if isinstance(b, (int, float)) else "–"
print(f"\nfp32 = strict fp32 on both sides (TF32 off); bf16 = autocast bf16. Memory: PyTorch's CUDA caching allocator on both sides (ours read from the LibTorch it runs on); on a CPU ours is heap / resident set.")
print(f"\n| configuration ({dev}) | ours fp32 ms | torch fp32 ms | ratio | ours bf16 ms | torch bf16 ms | ratio | ours fp32 / bf16 peak alloc, reserved MiB | torch fp32 / bf16 peak alloc, reserved MiB | params ours / torch |")
print("|---|---|---|---|---|---|---|---|---|---|")
def ms(x):
    return f"{x[0]:.1f}" if x else "failed"
def ratio(o, t):
    return f"{o[0] / float(t['median_ms']):.2f}×" if o and "median_ms" in t else "–"
def mem(o):
    return f"{mib(o[1])}, {mib(o[2])}" if o else "–"
for label in ["hippocampus", "resencl"]:
    o, ob, t = ours(label), ours(label, "_bf16"), torch(label)
    f32, b16 = t.get("fp32", {}), t.get("bf16", {})
    shape = f"{o[4]}×{o[5]}" if o else ""
    print(f"| {label} {shape} | {ms(o)} | {f32.get('median_ms', '–')} | {ratio(o, f32)} | {ms(ob)} | {b16.get('median_ms', '–')} | {ratio(ob, b16)} | "
          f"{mem(o)} / {mem(ob)} | {f32.get('peak_in_use_mib', '–')}, {f32.get('peak_mem_mib', '–')} / {b16.get('peak_in_use_mib', '–')}, {b16.get('peak_mem_mib', '–')} | "
          f"{o[3] if o else '–'} / {f32.get('params', '–')} |")
alt = [f[len("ours_"):-len(".json")] for f in sorted(os.listdir(out)) if "_grad" in f and f.endswith(".json")]
if alt:
    print("\nConvolution gradients (ADR 0015), fp32 step ms: the default way vs the other (NNUNET_CONV_BACKWARD)")
    print("\n| configuration | default | other way | which |\n|---|---|---|---|")
    for a in alt:
        label, other = a.split("_grad")
        print(f"| {label} | {ms(ours(label))} | {ms(ours(a))} | {other} |")
print(f"\nraw outputs: {out}")
PY
