# Label and intensity statistics of Python nnU-Net 2.8.1's training batches (data loader + training transforms of nnUNetTrainer),
# 3d_tiny on a preprocessed folder: per class, voxels in the final full-resolution target and the share of samples
# containing it, and the per-sample mean and sd of the augmented image. Single-threaded (SingleThreadedAugmenter).
# The counterpart of core/engine/examples/batch_stats.rs. usage: python nnunet_batch_stats.py PRE_DATASET_DIR N_BATCHES
# nnunetv2.paths reads these when imported: the preprocessed folder is the dataset folder's parent
import os as _os, sys as _sys
_os.environ.setdefault('nnUNet_preprocessed', _os.path.dirname(_os.path.abspath(_sys.argv[1])))
_os.environ.setdefault('nnUNet_results', _os.path.join(_os.getcwd(), 'nnunet_diagnostics_results'))
import sys, os, numpy as np, torch
from batchgenerators.utilities.file_and_folder_operations import load_json, join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
torch.set_num_threads(1)
pre, n = sys.argv[1], int(sys.argv[2])
os.environ['nnUNet_n_proc_DA'] = '0'
plans = load_json(join(pre, 'nnUNetPlans.json')); plans['continue_training'] = False
t = nnUNetTrainer(plans, '3d_tiny', 0, load_json(join(pre, 'dataset.json')), device=torch.device('cpu'))
t.initialize()
dl_tr, _ = t.get_dataloaders()
counts = np.zeros(3); present = np.zeros(3); samples = 0; means = []; sds = []
for b in range(n):
    batch = next(dl_tr)
    tgt = batch['target'][0] if isinstance(batch['target'], list) else batch['target']
    tgt = tgt.numpy()
    img = batch['data'].numpy()
    for k in range(img.shape[0]):
        means.append(float(img[k].mean())); sds.append(float(img[k].std()))
    for s in range(tgt.shape[0]):
        samples += 1
        for c in range(3):
            k = (tgt[s, 0] == c).sum(); counts[c] += k; present[c] += k > 0
tot = counts.sum()
print(f"nnU-Net: {n} batches, {samples} samples, target shape {tgt.shape}")
for c in range(3):
    print(f"  label {c}: {counts[c] / tot:.5f} of voxels, in {present[c] / samples:.3f} of samples")
m, d = np.array(means), np.array(sds)
print(f"  image per sample: mean {m.mean():.4f} (p5 {np.percentile(m, 5):.3f}, p95 {np.percentile(m, 95):.3f}), "
      f"sd {d.mean():.4f} (p5 {np.percentile(d, 5):.3f}, p95 {np.percentile(d, 95):.3f})")
