#!/usr/bin/env bash
# The main job on the embedded dataset: nnU-Net's own commands, run by this project's binary through
# nnU-Net's command names: integrity check + fingerprint → plans (default and ResEnc M) → preprocessing → training
# (a tiny configuration inheriting the planned 3d_fullres, nnUNetTrainerSmoke: 5 x 80 iterations on the CPU, about
# 4 minutes) with final validation → prediction → evaluation.
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

run nnUNetv2_plan_and_preprocess -d 4 --verify_dataset_integrity -c 3d_fullres -np 2 -npfp 2 --no_pbar
run nnUNetv2_plan_experiment -d 4 -pl nnUNetPlannerResEncM
run "$bin" summary -d 4 -c 3d_fullres

plans="$nnUNet_preprocessed/Dataset004_Hippocampus/nnUNetPlans.json"
echo
echo "== adding configuration 3d_tiny (inherits 3d_fullres; 3 stages, 4..16 features) to $plans"
grep -q '"3d_tiny"' "$plans" || sed -i '/"configurations": {/r '"$repo/examples/data/3d_tiny_configuration.json" "$plans"
run "$bin" summary -d 4 -c 3d_tiny
run nnUNetv2_train 4 3d_tiny 0 -tr nnUNetTrainerSmoke -device cpu
run nnUNetv2_predict -i "$nnUNet_raw/Dataset004_Hippocampus/imagesTr" -o "$work/predictions" -d 4 -c 3d_tiny \
    -tr nnUNetTrainerSmoke -f 0 -device cpu --disable_tta
run nnUNetv2_evaluate_folder "$nnUNet_raw/Dataset004_Hippocampus/labelsTr" "$work/predictions" \
    -djfile "$nnUNet_preprocessed/Dataset004_Hippocampus/dataset.json" -pfile "$plans" -o "$work/predictions/summary.json"
echo "(the predicted cases include the training cases of fold 0; the held-out Dice is the final validation's above)"

echo
echo "== outputs"
ls "$nnUNet_preprocessed/Dataset004_Hippocampus" "$nnUNet_results/Dataset004_Hippocampus/nnUNetTrainerSmoke__nnUNetPlans__3d_tiny/fold_0"
echo
echo "demo done; work folder: $work"
