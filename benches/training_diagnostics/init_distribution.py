"""Initial weights, ours vs nnU-Net's, for the 3d_tiny configuration: per convolution weight tensor, the values of N
initialisations pooled (ours: the `weights_init.bin` of train_trace runs with N_STEPS 0, one folder per seed; nnU-Net:
its network's `initialize` after torch.manual_seed(0..N-1)), their sd and a two-sample Kolmogorov-Smirnov test, and
the spread of the per-initialisation sd.
usage: python init_distribution.py PREPROCESSED_DATASET_DIR TRACE_DIR [TRACE_DIR …]"""
# nnunetv2.paths reads these when imported: the preprocessed folder is the dataset folder's parent
import os as _os, sys as _sys
_os.environ.setdefault('nnUNet_preprocessed', _os.path.dirname(_os.path.abspath(_sys.argv[1])))
_os.environ.setdefault('nnUNet_results', _os.path.join(_os.getcwd(), 'nnunet_diagnostics_results'))
import sys, numpy as np, torch
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trace_nnunet import read_weights
from scipy.stats import ks_2samp
from batchgenerators.utilities.file_and_folder_operations import load_json, join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
pre, traces = sys.argv[1], sys.argv[2:]
plans = load_json(join(pre, 'nnUNetPlans.json')); plans['continue_training'] = False
t = nnUNetTrainer(plans, '3d_tiny', 0, load_json(join(pre, 'dataset.json')), device=torch.device('cpu'))
t.initialize()
index = load_json(join(traces[0], 'weights.json'))
keys = [e['key'] for e in index if not e['key'].startswith('decoder.encoder') and 'all_modules' not in e['key'] and e['key'].endswith('weight') and 'norm' not in e['key']]
theirs = {k: [] for k in keys}
for s in range(len(traces)):
    torch.manual_seed(s)
    t.network.apply(t.network.initialize)
    sd = t.network.state_dict()
    for k in keys: theirs[k].append(sd[k].numpy().ravel().copy())
ours = {k: [] for k in keys}
for d in traces:
    w = read_weights(join(d, 'weights_init.bin'), index)
    for k in keys: ours[k].append(w[k].numpy().ravel())
print(f"{'tensor':40s} {'n':>6s} {'sd ours':>8s} {'sd nnU':>8s} {'KS p':>7s} {'sd(sd) ours':>11s} {'sd(sd) nnU':>10s}")
for k in keys:
    o, n = np.concatenate(ours[k]), np.concatenate(theirs[k])
    p = ks_2samp(o, n).pvalue
    so = np.std([x.std() for x in ours[k]]); sn = np.std([x.std() for x in theirs[k]])
    print(f"{k:40s} {len(ours[k][0]):6d} {o.std():8.4f} {n.std():8.4f} {p:7.3f} {so:11.4f} {sn:10.4f}")
