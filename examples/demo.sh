#!/usr/bin/env bash
# The main job on the embedded dataset: nnU-Net's own commands, run by this project's binary through
# nnU-Net's command names. Grows as stages land: integrity check + fingerprint → plans → (preprocess → train →
# predict → evaluate).
#
#   ./examples/demo.sh [WORKDIR]      (default: a fresh temp folder; kept so you can look at the outputs)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d -t nnunet-demo.XXXXXX)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"

echo "== building nnunet (first build compiles burn: 10-20 min on 2 cores)"
cargo build --quiet -p nnunet-cli --manifest-path "$repo/Cargo.toml"
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="$target_dir/debug/nnunet"
"$bin" --version

echo "== linking nnU-Net's command names to it"
"$bin" install-aliases "$work/bin" --force
export PATH="$work/bin:$PATH"

export nnUNet_raw="$work/nnUNet_raw" nnUNet_preprocessed="$work/nnUNet_preprocessed" nnUNet_results="$work/nnUNet_results"
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
rm -rf "$nnUNet_raw/Dataset004_Hippocampus"
cp -r "$repo/examples/data/Dataset004_Hippocampus" "$nnUNet_raw/"
echo "== dataset: $nnUNet_raw/Dataset004_Hippocampus ($(ls "$nnUNet_raw/Dataset004_Hippocampus/imagesTr" | wc -l) cases)"

run() { echo; echo "\$ $*"; "$@"; }

run nnUNetv2_plan_and_preprocess -d 4 --verify_dataset_integrity --no_pp -npfp 2
run nnUNetv2_plan_experiment -d 4 -pl nnUNetPlannerResEncM

echo
echo "== outputs in $nnUNet_preprocessed/Dataset004_Hippocampus:"
ls -l "$nnUNet_preprocessed/Dataset004_Hippocampus"
for p in nnUNetPlans nnUNetResEncUNetMPlans; do
    f="$nnUNet_preprocessed/Dataset004_Hippocampus/$p.json"
    echo "-- $p: $(grep -c '"data_identifier"' "$f") configurations"
    grep -E '"(data_identifier|batch_size)"' "$f"
done
echo
echo "demo done; work folder: $work"
