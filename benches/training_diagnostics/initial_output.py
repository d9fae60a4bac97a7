"""What an initialisation predicts before any training: the 3d_tiny network's mean softmax per class and the share
of voxels each class wins (argmax), on the first batches of a train_trace folder. For
  - ours:    folders with `weights_init.bin` (train_trace … SEED 0 DIR),
  - nnU-Net: `.pth` state dicts (train_from_init.py's `initial_weights.pth`), and `nnunet:N` for N fresh draws of
             nnU-Net's own initialisation (torch.manual_seed(0…N-1)).
One row per folder / file, then per group the mean and sd of each class's mean softmax and, between the groups, a
two-sample KS test.
usage: python initial_output.py PREPROCESSED_DATASET_DIR BATCH_TRACE_DIR ITEM [ITEM …]"""
# nnunetv2.paths reads these when imported: the preprocessed folder is the dataset folder's parent
import os as _os, sys as _sys
_os.environ.setdefault('nnUNet_preprocessed', _os.path.dirname(_os.path.abspath(_sys.argv[1])))
_os.environ.setdefault('nnUNet_results', _os.path.join(_os.getcwd(), 'nnunet_diagnostics_results'))
import os, sys
import numpy as np
import torch
from scipy.stats import ks_2samp
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trace_nnunet import read_weights
from batchgenerators.utilities.file_and_folder_operations import load_json, join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def main():
    torch.set_num_threads(2)
    pre, trace, items = sys.argv[1], sys.argv[2], sys.argv[3:]
    plans = load_json(join(pre, 'nnUNetPlans.json'))
    plans['continue_training'] = False
    t = nnUNetTrainer(plans, '3d_tiny', 0, load_json(join(pre, 'dataset.json')), device=torch.device('cpu'))
    t.initialize()
    net = t.network
    meta = load_json(join(trace, 'batches.json'))
    shape = meta['shapes'][0]
    n = int(np.prod(shape))
    x = torch.from_numpy(np.concatenate([
        np.frombuffer(open(join(trace, f'batch_{i}.bin'), 'rb').read()[:n * 4], dtype='<f4').reshape(shape)
        for i in range(min(meta['n'], 10))]))

    def output():
        with torch.no_grad():
            y = net(x)[0]
        am = y.argmax(1)
        return torch.softmax(y, 1).mean((0, 2, 3, 4)).numpy(), [(am == k).float().mean().item() for k in range(y.shape[1])]

    groups = {}
    for item in items:
        if item.startswith('nnunet:'):
            for s in range(int(item.split(':')[1])):
                torch.manual_seed(s)
                net.apply(net.initialize)
                groups.setdefault('nnU-Net draws', []).append(output()[0])
            continue
        if item.endswith('.pth'):
            net.load_state_dict(torch.load(item, map_location='cpu'))
            group = 'nnU-Net .pth'
        else:
            net.load_state_dict(read_weights(join(item, 'weights_init.bin'), load_json(join(item, 'weights.json'))))
            group = 'ours'
        p, share = output()
        groups.setdefault(group, []).append(p)
        print(f'{item}: mean softmax {np.round(p, 3)}, argmax share {np.round(share, 3)}')
    for g, v in groups.items():
        v = np.array(v)
        print(f'{g} ({len(v)}): mean softmax per class ' + ', '.join(f'{m:.3f} ± {s:.3f}' for m, s in zip(v.mean(0), v.std(0))))
    names = list(groups)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = np.array(groups[names[i]]), np.array(groups[names[j]])
            print(f'{names[i]} vs {names[j]}: KS p per class ' + ', '.join(f'{ks_2samp(a[:, k], b[:, k]).pvalue:.3f}' for k in range(a.shape[1])))


if __name__ == '__main__':
    main()
