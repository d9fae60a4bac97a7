#!/usr/bin/env bash
# Side-by-side wall time of `nnUNetv2_plan_and_preprocess -d ID -np N -npfp N` (fingerprint + default planner +
# preprocessing of every configuration) for this project and Python nnU-Net 2.8.1, on the fixtures' Dataset004
# (220 cases) and Dataset201 (10 anisotropic CT cases). Outputs: plans compared byte for byte; the size of each
# preprocessed configuration folder (both write nnU-Net's Blosc2 layout, ADR 0005).
#
#   NNUNET_PY=/path/to/venv  benches/plan_and_preprocess_vs_nnunet.sh [NP]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
np="${1:-2}"
py="${NNUNET_PY:?set NNUNET_PY to a venv with nnunetv2==2.8.1}"
target="${CARGO_TARGET_DIR:-$repo/target}"
bin="${NNUNET_BIN:-}"
[ -z "$bin" ] && { [ -x "$target/release/nnunet" ] && bin="$target/release/nnunet" || bin="$target/debug/nnunet"; }
work="$(mktemp -d -t nnunet-bench-pp.XXXXXX)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/raw" "$work/bin"
tar -xJf "$repo/tests/fixtures/data/Dataset004_Hippocampus.tar.xz" -C "$work/raw"
tar -xJf "$repo/tests/fixtures/data/Dataset201_AnisoCT.tar.xz" -C "$work/raw"
"$bin" install-aliases "$work/bin" >/dev/null
echo "binary: $bin; python: $("$py/bin/python" -c 'import importlib.metadata as m; print("nnunetv2", m.version("nnunetv2"))'); -np $np; $(nproc) cores"
for id in 4 201; do
    for tool in rust python; do
        pre="$work/$tool-$id"; mkdir -p "$pre" "$work/res"
        if [ $tool = rust ]; then exe="$work/bin/nnUNetv2_plan_and_preprocess"; else exe="$py/bin/nnUNetv2_plan_and_preprocess"; fi
        s=$(date +%s.%N)
        nnUNet_raw="$work/raw" nnUNet_preprocessed="$pre" nnUNet_results="$work/res" "$exe" -d $id -np $np -npfp $np --no_pbar >"$work/$tool-$id.log" 2>&1 \
            || { echo "$tool failed on $id:"; tail -5 "$work/$tool-$id.log"; exit 1; }
        e=$(date +%s.%N)
        t=$(echo "$e - $s" | bc); eval "t_${tool}_$id=$t"
        echo "dataset $id  $tool: $t s"
    done
    d=$(ls "$work/raw" | grep "^Dataset$(printf %03d $id)_")
    for tool in rust python; do
        for cfg in "$work/$tool-$id/$d"/nnUNetPlans_*; do
            echo "dataset $id  $tool: $(basename "$cfg") $(du -sb "$cfg" | cut -f1) bytes, $(ls "$cfg" | wc -l) files"
        done
    done
    cmp "$work/rust-$id/$d/nnUNetPlans.json" "$work/python-$id/$d/nnUNetPlans.json" && echo "dataset $id  plans: byte-identical"
    r=$(eval echo "\$t_python_$id / \$t_rust_$id"); echo "dataset $id  speed-up: $(echo "scale=1; $r" | bc)x"
done
