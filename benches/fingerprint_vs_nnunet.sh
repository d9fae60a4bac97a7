#!/usr/bin/env bash
# Side-by-side wall time of fingerprint extraction: this project's nnUNetv2_extract_fingerprint vs Python
# nnU-Net 2.8.1's, same data (the 220-case Hippocampus fixture), same worker count, outputs compared byte for byte.
#
#   NNUNET_PY=/path/to/venv  benches/fingerprint_vs_nnunet.sh [NP] [REPEATS]
#
# NNUNET_PY: a Python environment with `pip install nnunetv2==2.8.1` (its bin/ has nnUNetv2_extract_fingerprint).
# The binary used is $NNUNET_BIN, else the release build, else the dev build (cargo build -p nnunet-cli).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
np="${1:-2}"; repeats="${2:-3}"
py="${NNUNET_PY:?set NNUNET_PY to a venv with nnunetv2==2.8.1}"
target="${CARGO_TARGET_DIR:-$repo/target}"
bin="${NNUNET_BIN:-}"
[ -z "$bin" ] && { [ -x "$target/release/nnunet" ] && bin="$target/release/nnunet" || bin="$target/debug/nnunet"; }
work="$(mktemp -d -t nnunet-bench-fp.XXXXXX)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/raw" "$work/rs" "$work/py" "$work/res" "$work/bin"
tar -xJf "$repo/tests/fixtures/data/Dataset004_Hippocampus.tar.xz" -C "$work/raw"
"$bin" install-aliases "$work/bin" >/dev/null
echo "binary: $bin ($("$bin" --version | tr '\n' ' '))"
echo "python: $("$py/bin/python" -c 'import nnunetv2, importlib.metadata as m; print("nnunetv2", m.version("nnunetv2"))')"
echo "cases: $(ls "$work/raw/Dataset004_Hippocampus/labelsTr" | wc -l), -np $np, $repeats repeats, $(nproc) cores"

time_it() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
rs_times=(); py_times=()
for i in $(seq "$repeats"); do
    rs_times+=("$(nnUNet_raw="$work/raw" nnUNet_preprocessed="$work/rs" nnUNet_results="$work/res" time_it "$work/bin/nnUNetv2_extract_fingerprint" -d 4 -np "$np" --clean --no_pbar)")
    py_times+=("$(nnUNet_raw="$work/raw" nnUNet_preprocessed="$work/py" nnUNet_results="$work/res" time_it "$py/bin/nnUNetv2_extract_fingerprint" -d 4 -np "$np" --clean --no_pbar)")
done
cmp "$work/rs/Dataset004_Hippocampus/dataset_fingerprint.json" "$work/py/Dataset004_Hippocampus/dataset_fingerprint.json" \
    && echo "outputs: byte-identical" || { echo "outputs DIFFER"; exit 1; }
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rs=$(med "${rs_times[@]}"); pyt=$(med "${py_times[@]}")
echo "rust   nnUNetv2_extract_fingerprint: ${rs_times[*]} s (median $rs)"
echo "python nnUNetv2_extract_fingerprint: ${py_times[*]} s (median $pyt)"
echo "speed-up (median python / median rust): $(echo "scale=1; $pyt / $rs" | bc)x"
