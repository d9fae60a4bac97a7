#!/usr/bin/env bash
# Side-by-side per-sample time of the training augmentation pipeline on ONE thread: this project's nnunet-augment
# (core/augment/examples/throughput.rs) vs nnU-Net 2.8.1's batchgeneratorsv2 pipeline (benches/augmentation_bgv2.py),
# same input (the enlarged crop nnU-Net samples for the patch, 1 image channel, seg labels 0/1/2, checksums
# compared), full training transforms incl. deep-supervision downsampling, run alternately in rounds.
#
#   NNUNET_PY=/path/to/venv  benches/augmentation_vs_batchgenerators.sh [ROUNDS] [N_HIPPOCAMPUS] [N_128]
#
# NNUNET_PY: a Python environment with nnunetv2==2.8.1 (batchgeneratorsv2 0.3.6); default /root/nnunet-py.
# Patches: Hippocampus 3d_fullres 40x56x40 (pool_op_kernel_sizes [1,1,1] + 3x [2,2,2]: 3 deep-supervision scales)
# and 128^3 (+ 5x [2,2,2]: 5 scales). Each side warms up, then times N samples per round.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"; n_small="${2:-300}"; n_big="${3:-80}"
py="${NNUNET_PY:-/root/nnunet-py}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nnunet-target}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1
work="$(mktemp -d -t nnunet-bench-aug.XXXXXX)"; trap 'rm -rf "$work"' EXIT

(cd "$repo" && cargo build --release -p nnunet-augment --example throughput --quiet)
bin="$CARGO_TARGET_DIR/release/examples/throughput"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "rust: $(rustc --version), release profile, one thread"
echo "python: $("$py/bin/python" -c 'import importlib.metadata as m, torch; print("nnunetv2", m.version("nnunetv2"), "batchgeneratorsv2", m.version("batchgeneratorsv2"), "torch", torch.__version__)'), torch.set_num_threads(1)"
echo "rounds: $rounds, samples per round: 40x56x40 $n_small, 128^3 $n_big (after warm-up)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# name|patch|pools|n|warmup
cases=("hippo|40 56 40|3|$n_small|20" "big|128 128 128|5|$n_big|4")
run_side() { # side case round
    local side="$1" name patch pools n warm; IFS='|' read -r name patch pools n warm <<< "$2"
    local out="$work/$side-$name-$3.txt"
    local args=(--patch $patch --pools "$pools" --warmup "$warm" --n "$n" --seed "$3" --out "$out")
    if [ "$side" = ours ]; then "$bin" "${args[@]}" > "$work/$side-$name-$3.head"
    else "$py/bin/python" "$repo/benches/augmentation_bgv2.py" "${args[@]}" > "$work/$side-$name-$3.head"; fi
    [ -s "$out" ] || { echo "$side produced no timings for $name"; exit 1; }
}
for r in $(seq "$rounds"); do
    for c in "${cases[@]}"; do
        name="${c%%|*}"
        if [ $((r % 2)) -eq 1 ]; then order=(ours bgv2); else order=(bgv2 ours); fi
        for side in "${order[@]}"; do echo -n "round $r $name $side: "; run_side "$side" "$c" "$r" 2>&1 | tail -1; done
        # identical input on both sides: same crop shape, same image sum, same label counts
        a="$(cut -d' ' -f2- "$work/ours-$name-$r.head")"; b="$(cut -d' ' -f2- "$work/bgv2-$name-$r.head")"
        [ "$a" = "$b" ] || { echo "inputs DIFFER: ours [$a] bgv2 [$b]"; exit 1; }
        echo "  input: $a (identical on both sides)"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py/bin/python" - "$work" "$rounds" <<'EOF'
import sys, numpy as np
work, rounds = sys.argv[1], int(sys.argv[2])
P = 1 - 0.8 ** 2  # nnU-Net: p_rotation = p_scaling = 0.2 -> the spatial transform interpolates with p = 0.36
rows, detail = [], []
for name, label in (('hippo', '40×56×40'), ('big', '128³')):
    st = {}
    for side in ('ours', 'bgv2'):
        d = np.concatenate([np.loadtxt(f'{work}/{side}-{name}-{r}.txt', ndmin=2) for r in range(1, rounds + 1)])
        t, c, f = d[:, 0], d[:, 1], d[:, 2] > 0.5
        if f.all() or not f.any():
            sys.exit(f'{side} {name}: need samples with and without an interpolating spatial transform; raise N')
        crop = open(f'{work}/{side}-{name}-1.head').read().split()[2].split('=')[1].replace('x', '×')
        # mean at exactly nnU-Net's probability of an interpolating spatial transform (removes the luck of the draw)
        pw = lambda v: P * v[f].mean() + (1 - P) * v[~f].mean()
        st[side] = dict(n=len(t), med=np.median(t), mean=t.mean(), w=pw(t), cw=pw(c), frac=f.mean(), crop=crop,
                        mi=t[f].mean(), mp=t[~f].mean(), ci=c[f].mean(), cp=c[~f].mean())
    o, b = st['ours'], st['bgv2']
    rows.append(f"| {label} ({o['crop']}) | {o['med']:.2f} / {o['mean']:.2f} / **{o['w']:.2f}** "
                f"| {b['med']:.2f} / {b['mean']:.2f} / **{b['w']:.2f}** | {1e3 / o['cw']:.1f} | {1e3 / b['cw']:.1f} "
                f"| **{b['w'] / o['w']:.2f}×** | **{b['cw'] / o['cw']:.2f}×** |")
    for side, s in (('ours', o), ('batchgeneratorsv2', b)):
        detail.append(f"| {label} | {side} | {s['n']} | {100 * s['frac']:.0f} % | {s['mi']:.2f} / {s['ci']:.2f} "
                      f"| {s['mp']:.2f} / {s['cp']:.2f} | {s['cw']:.2f} |")
print()
print('| patch (sampled crop) | ours ms/sample (wall): median / mean / p-weighted mean '
      '| batchgeneratorsv2 ms/sample (wall): median / mean / p-weighted mean | ours patches/s/core '
      '| batchgeneratorsv2 patches/s/core | speed-up (wall) | speed-up (thread CPU) |')
print('|---|---|---|---|---|---|---|')
print('\n'.join(rows))
print()
print('| patch | pipeline | samples | interpolating spatial transform | ms interpolating: wall / CPU '
      '| ms plain crop: wall / CPU | p-weighted CPU ms |')
print('|---|---|---|---|---|---|---|')
print('\n'.join(detail))
print()
print(f'p-weighted mean = {P:.2f} × mean(samples whose spatial transform interpolates) + {1 - P:.2f} × mean(plain crop); '
      'patches/s/core = 1000 / p-weighted thread-CPU ms.')
EOF
