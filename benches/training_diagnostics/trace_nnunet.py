"""nnU-Net's own `nnUNetTrainer.train_step` on the batches and initial weights that
core/engine/examples/train_trace.rs wrote, step by step next to our loss of the same step; then the weights after the
last step compared. usage:
    python trace_nnunet.py PREPROCESSED_DATASET_DIR CONFIGURATION TRACE_DIR [N]"""
# nnunetv2.paths reads these when imported: the preprocessed folder is the dataset folder's parent
import os as _os, sys as _sys
_os.environ.setdefault('nnUNet_preprocessed', _os.path.dirname(_os.path.abspath(_sys.argv[1])))
_os.environ.setdefault('nnUNet_results', _os.path.join(_os.getcwd(), 'nnunet_diagnostics_results'))
import json, os, sys
import numpy as np, torch
from batchgenerators.utilities.file_and_folder_operations import load_json, join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

def read_weights(path, index):
    vals = np.fromfile(path, dtype='<f4')
    out, at = {}, 0
    for e in index:
        n = int(np.prod(e['shape']))
        out[e['key']] = torch.from_numpy(vals[at:at + n].reshape(e['shape']).copy())
        at += n
    assert at == len(vals)
    return out

def main():
    torch.set_num_threads(2)
    pre, conf, trace = sys.argv[1], sys.argv[2], sys.argv[3]
    meta = load_json(join(trace, 'batches.json'))
    n = int(sys.argv[4]) if len(sys.argv) > 4 else meta['n']
    plans = load_json(join(pre, 'nnUNetPlans.json'))
    plans['continue_training'] = False
    t = nnUNetTrainer(plans, conf, 0, load_json(join(pre, 'dataset.json')), device=torch.device('cpu'))
    t.initialize()
    index = load_json(join(trace, 'weights.json'))
    w = read_weights(join(trace, 'weights_init.bin'), index)
    sd = t.network.state_dict()
    missing = set(sd) - set(w); extra = set(w) - set(sd)
    assert not missing and not extra, (missing, extra)
    for k in sd:
        assert tuple(sd[k].shape) == tuple(w[k].shape), k
    t.network.load_state_dict(w)
    shapes = meta['shapes']
    sizes = [int(np.prod(s)) for s in shapes]
    ours = load_json(join(trace, 'losses.json'))
    losses = []
    for i in range(n):
        raw = open(join(trace, f'batch_{i}.bin'), 'rb').read()
        img = np.frombuffer(raw[:sizes[0] * 4], dtype='<f4').reshape(shapes[0])
        at, tg = sizes[0] * 4, []
        for s, z in zip(shapes[1:], sizes[1:]):
            tg.append(torch.from_numpy(np.frombuffer(raw[at:at + z * 2], dtype='<i2').reshape(s).astype(np.float32)))
            at += z * 2
        l = t.train_step({'data': torch.from_numpy(img.copy()), 'target': tg})['loss']
        losses.append(float(l))
        print(f'step {i}: nnU-Net {float(l):.6f}  ours {ours[i]:.6f}  diff {float(l) - ours[i]:+.2e}')
    if n == meta['n'] and os.path.exists(join(trace, 'weights_final.bin')):
        wf = read_weights(join(trace, 'weights_final.bin'), index)
        sd = t.network.state_dict()
        worst = max(((sd[k] - wf[k]).abs().max().item(), k) for k in sd)
        print('final weights: largest absolute difference %.3e (%s)' % worst)
    json.dump(losses, open(join(trace, 'losses_nnunet.json'), 'w'))

if __name__ == '__main__':
    main()
