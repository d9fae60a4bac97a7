#!/usr/bin/env bash
# Training side by side with Python nnU-Net 2.8.1, in one call, on the same preprocessed folder: does our nnUNetTrainer
# recipe learn as nnU-Net's does, and how long does it take?
#
# The embedded 24-case Hippocampus dataset is planned and preprocessed once by `nnunet` (Python nnU-Net reads that
# folder as its own, ADR 0005), the 3d_tiny configuration of examples/data (3 stages, 4..16 features, patch 24x32x24,
# batch 2) is added to the plans, and fold 0 is trained with trainer TRAINER by
#   - ours: `nnunet train 4 3d_tiny 0 --trainer TRAINER --device cpu --seed S` for each S in SEEDS;
#   - Python nnU-Net: its own class of that name (nnUNetTrainer_10epochs, …; for the default, nnUNetTrainerSmoke, a
#     subclass of nnUNetTrainer that only sets the preset's 5 epochs x 80 iterations, 10 validation iterations), on
#     the CPU, torch.set_num_threads(THREADS), nnUNet_n_proc_DA=THREADS, nnUNet_def_n_proc=THREADS (its validation export pool; the default 8 processes on a
#     2-core machine that is busy otherwise stalled it for 20+ minutes), PY_RUNS times (nnU-Net is not seeded).
# Both run their final validation (5 cases, sliding window, mirroring). The table shows per run: every epoch's train
# loss and pseudo Dice (from checkpoint_final.pth's logging, read with torch.load), the final validation's foreground
# Dice and the training wall time.
#
#   NNUNET_BIN=target/release/nnunet benches/train_vs_nnunet.sh [WORKDIR]
#   env: NNUNET_PY (venv with nnunetv2, default /root/nnunet-py), TRAINER (nnUNetTrainerSmoke), SEEDS ("12345 1 2"),
#        PY_RUNS (3), THREADS (2);
#        a LibTorch (`tch`) binary needs its lib folder on LD_LIBRARY_PATH (docs/gpu.md).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${NNUNET_BIN:?set NNUNET_BIN to the nnunet binary}"
py="${NNUNET_PY:-/root/nnunet-py}/bin/python"
seeds="${SEEDS:-12345 1 2}"
py_runs="${PY_RUNS:-3}"
threads="${THREADS:-2}"
trainer="${TRAINER:-nnUNetTrainerSmoke}"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
export nnUNet_raw="$work/raw" nnUNet_preprocessed="$work/pre" nnUNet_n_proc_DA="$threads" nnUNet_def_n_proc="$threads"
rm -rf "$work/raw" "$work/pre" "$work"/res_*
mkdir -p "$work/raw" "$work/pre" "$work/bin"
cp -r "$repo/examples/data/Dataset004_Hippocampus" "$work/raw/"
"$bin" install-aliases "$work/bin" --force >/dev/null
echo "== $("$bin" --version | tr '\n' ' ')| python: $("$py" -c 'import nnunetv2, torch, importlib.metadata as m; print("nnunetv2", m.version("nnunetv2"), "torch", torch.__version__)')"
"$work/bin/nnUNetv2_plan_and_preprocess" -d 4 -c 3d_fullres -np "$threads" -npfp "$threads" --no_pbar >/dev/null
plans="$work/pre/Dataset004_Hippocampus/nnUNetPlans.json"
sed -i '/"configurations": {/r '"$repo/examples/data/3d_tiny_configuration.json" "$plans"

cat > "$work/train_py.py" <<'EOF'
import os, sys, time, torch
from batchgenerators.utilities.file_and_folder_operations import load_json, join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

class nnUNetTrainerSmoke(nnUNetTrainer):
    """nnUNetTrainer with the smoke schedule of the Rust preset of the same name (nothing else changed)."""
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 5
        self.num_iterations_per_epoch = 80
        self.num_val_iterations_per_epoch = 10

def main():
    torch.set_num_threads(int(sys.argv[1]))
    name = sys.argv[2]
    cls = nnUNetTrainerSmoke if name == 'nnUNetTrainerSmoke' else recursive_find_trainer_class_by_name(name)
    pre = join(os.environ['nnUNet_preprocessed'], 'Dataset004_Hippocampus')
    plans = load_json(join(pre, 'nnUNetPlans.json'))
    plans['continue_training'] = False  # nnU-Net 2.8.1's run_training passes --c to the trainer this way
    trainer = cls(plans, '3d_tiny', 0, load_json(join(pre, 'dataset.json')), device=torch.device('cpu'))
    trainer.run_training()
    trainer.perform_actual_validation(False)

if __name__ == '__main__':
    main()
EOF

fold_of() { echo "$1/Dataset004_Hippocampus/${trainer}__nnUNetPlans__3d_tiny/fold_0"; }
runs=()
for s in $seeds; do
    res="$work/res_ours_$s"
    t0=$(date +%s.%N)
    nnUNet_results="$res" "$bin" train 4 3d_tiny 0 --trainer "$trainer" --device cpu --seed "$s" > "$work/ours_$s.log" 2>&1 \
        || { tail -20 "$work/ours_$s.log"; exit 1; }
    t1=$(date +%s.%N)
    runs+=("ours seed $s|$(fold_of "$res")|$(echo "$t1 - $t0" | bc)")
    echo "ours seed $s: $(echo "$t1 - $t0" | bc) s"
done
for i in $(seq 1 "$py_runs"); do
    res="$work/res_py_$i"
    t0=$(date +%s.%N)
    nnUNet_results="$res" "$py" "$work/train_py.py" "$threads" "$trainer" > "$work/py_$i.log" 2>&1 || { tail -30 "$work/py_$i.log"; exit 1; }
    t1=$(date +%s.%N)
    runs+=("nnU-Net run $i|$(fold_of "$res")|$(echo "$t1 - $t0" | bc)")
    echo "Python nnU-Net run $i: $(echo "$t1 - $t0" | bc) s"
done

cat > "$work/report.py" <<'EOF'
import sys, json, torch
print()
print("| run | train loss per epoch | pseudo Dice per epoch | final validation Dice (5 cases) | epoch time s | wall s (train + validation) |")
print("|---|---|---|---|---|---|")
vals = {}
for line in sys.stdin.read().splitlines():
    name, fold, wall = line.split("|")
    log = torch.load(fold + "/checkpoint_final.pth", map_location="cpu", weights_only=False)["logging"]
    dice = json.load(open(fold + "/validation/summary.json"))["foreground_mean"]["Dice"]
    times = [e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])]
    vals.setdefault(name.split()[0], []).append(dice)
    f = lambda xs: " ".join(f"{float(x):.3f}" for x in xs)
    losses, pseudo = f(log["train_losses"]), f(log["mean_fg_dice"])
    print(f"| {name} | {losses} | {pseudo} | {dice:.4f} | {min(times):.1f}-{max(times):.1f} | {float(wall):.0f} |")
print()
for k, v in vals.items():
    print(f"{k}: final validation Dice mean {sum(v) / len(v):.4f} over {len(v)} runs (min {min(v):.4f}, max {max(v):.4f})")
EOF
printf '%s\n' "${runs[@]}" | "$py" "$work/report.py"
