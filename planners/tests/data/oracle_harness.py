# Oracle harness for make_synthetic.py (see README.md).
# Put this file in a folder together with these nnU-Net 2.8.1 sources (MIC-DKFZ/nnUNet @ 0e495086):
#   dep.py                   = nnunetv2/experiment_planning/experiment_planners/default_experiment_planner.py
#   rep.py                   = nnunetv2/experiment_planning/experiment_planners/residual_unets/residual_encoder_unet_planners.py
#   network_topology_src.py  = nnunetv2/experiment_planning/experiment_planners/network_topology.py
#   json_export.py           = nnunetv2/utilities/json_export.py
# then run: python3 make_synthetic.py <that folder>. Needs numpy only.
"""Runs nnU-Net 2.8.1's real planner source with torch/dna/IO stubbed; VRAM estimate = spec §5.1 closed form."""
import sys, types, json, os, tempfile, warnings
import numpy as np
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

def mod(name, **attrs):
    m = types.ModuleType(name); m.__dict__.update(attrs); sys.modules[name] = m; return m

class _Dev: pass
torch = mod('torch', get_num_threads=lambda: 1, set_num_threads=lambda n: None, device=_Dev)
nn = mod('torch.nn'); torch.nn = nn
def mk(modname, name):
    c = type(name, (), {}); c.__module__ = modname; return c
nn.LeakyReLU = mk('torch.nn', 'LeakyReLU')
Conv2d, Conv3d = mk('torch.nn.modules.conv', 'Conv2d'), mk('torch.nn.modules.conv', 'Conv3d')
IN2, IN3 = mk('torch.nn.modules.instancenorm', 'InstanceNorm2d'), mk('torch.nn.modules.instancenorm', 'InstanceNorm3d')
nn.Conv2d, nn.Conv3d, nn.InstanceNorm2d, nn.InstanceNorm3d = Conv2d, Conv3d, IN2, IN3
PlainConvUNet = mk('dynamic_network_architectures.architectures.unet', 'PlainConvUNet')
ResidualEncoderUNet = mk('dynamic_network_architectures.architectures.unet', 'ResidualEncoderUNet')
mod('dynamic_network_architectures'); mod('dynamic_network_architectures.architectures')
mod('dynamic_network_architectures.architectures.unet', PlainConvUNet=PlainConvUNet, ResidualEncoderUNet=ResidualEncoderUNet)
mod('dynamic_network_architectures.building_blocks')
mod('dynamic_network_architectures.building_blocks.helper',
    convert_dim_to_conv_op=lambda d: Conv2d if d == 2 else Conv3d,
    get_matching_instancenorm=lambda conv_op=None, dimension=None: IN2 if (conv_op is Conv2d or dimension == 2) else IN3)

def load_json(f):
    with open(f) as fh: return json.load(fh)
def save_json(obj, f, indent=4, sort_keys=True):
    with open(f, 'w') as fh: json.dump(obj, fh, sort_keys=sort_keys, indent=indent)
mod('batchgenerators'); mod('batchgenerators.utilities')
mod('batchgenerators.utilities.file_and_folder_operations', load_json=load_json, save_json=save_json,
    join=os.path.join, isfile=os.path.isfile, maybe_mkdir_p=lambda p: os.makedirs(p, exist_ok=True))

import network_topology_src as nt  # real file
for n in ['nnunetv2', 'nnunetv2.experiment_planning', 'nnunetv2.experiment_planning.experiment_planners',
          'nnunetv2.imageio', 'nnunetv2.preprocessing', 'nnunetv2.preprocessing.normalization',
          'nnunetv2.preprocessing.resampling', 'nnunetv2.utilities']:
    mod(n)
mod('nnunetv2.configuration', ANISO_THRESHOLD=3)
sys.modules['nnunetv2.experiment_planning.experiment_planners.network_topology'] = nt
mod('nnunetv2.imageio.reader_writer_registry', determine_reader_writer_from_dataset_json=None)
mod('nnunetv2.paths', nnUNet_raw=None, nnUNet_preprocessed=None)
class Norm: pass
def scheme(name, leaves):
    return type(name, (Norm,), {'leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true': leaves})
MAP = {'ct': scheme('CTNormalization', False), 'nonorm': scheme('NoNormalization', False),
       'zscore': scheme('ZScoreNormalization', True), 'rescale_to_0_1': scheme('RescaleTo01Normalization', False),
       'rgb_to_0_1': scheme('RGBTo01Normalization', False)}
mod('nnunetv2.preprocessing.normalization.map_channel_name_to_normalization',
    get_normalization_scheme=lambda n: MAP.get(n.casefold(), MAP['zscore']))
def resample_data_or_seg_to_shape(*a, **k): pass
def compute_new_shape(old_shape, old_spacing, new_spacing):
    assert len(old_spacing) == len(old_shape); assert len(old_shape) == len(new_spacing)
    return np.array([int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape)])
mod('nnunetv2.preprocessing.resampling.default_resampling', resample_data_or_seg_to_shape=resample_data_or_seg_to_shape,
    compute_new_shape=compute_new_shape)
mod('nnunetv2.utilities.dataset_name_id_conversion', maybe_convert_to_dataset_name=lambda x: x)
mod('nnunetv2.utilities.default_n_proc_DA', get_allowed_n_proc_DA=lambda: 1)
mod('nnunetv2.utilities.get_network_from_plans', get_network_from_plans=None)
import json_export
sys.modules['nnunetv2.utilities.json_export'] = json_export
mod('nnunetv2.utilities.utils', get_filenames_of_train_images_and_targets=lambda folder, dj: {})

def closed_form(patch, C, cls, kw):
    n = kw['n_stages']; F = kw['features_per_stage']; st = kw['strides']
    S = []; cur = list(patch)
    for s in st:
        cur = [c // x for c, x in zip(cur, s)]; S.append(cur)
    V = lambda s: int(np.prod(S[s], dtype=np.int64))
    dec = sum(kw['n_conv_per_stage_decoder'][d] * F[n-2-d] * V(n-2-d) + F[n-2-d] * V(n-2-d) for d in range(n-1)) + C * V(0)
    if cls.endswith('PlainConvUNet'):
        enc = sum(kw['n_conv_per_stage'][s] * F[s] * V(s) for s in range(n))
    else:
        enc = F[0] * V(0)
        for s in range(n):
            inch = F[0] if s == 0 else F[s-1]; prev = list(patch) if s == 0 else S[s-1]
            enc += 2 * F[s] * V(s) + (F[s] * V(s) if (inch != F[s] or prev != S[s]) else 0)
            enc += (kw['n_blocks_per_stage'][s] - 1) * 2 * F[s] * V(s)
    return enc + dec

import dep, shutil as _sh
dep.shutil = types.SimpleNamespace(copy=lambda a, b: None)
sys.modules['nnunetv2.experiment_planning.experiment_planners.default_experiment_planner'] = dep
dep.ExperimentPlanner.static_estimate_VRAM_usage = staticmethod(
    lambda patch, cin, cout, cls, kw, req: closed_form(patch, cout, cls, kw))
dep.ExperimentPlanner.determine_reader_writer = lambda self: type(self._rw, (), {})
import rep

def run(planner, folder, name, out_file, rw='SimpleITKIO', gpu=None, plans_name=None, spacing=None):
    """folder holds dataset.json + dataset_fingerprint.json (+ optional existing plans)."""
    dep.nnUNet_raw = os.path.dirname(folder); dep.nnUNet_preprocessed = os.path.dirname(folder)
    cls = getattr(dep, planner, None) or getattr(rep, planner)
    kw = {}
    if gpu is not None: kw['gpu_memory_target_in_gb'] = gpu
    if plans_name is not None: kw['plans_name'] = plans_name
    cls._rw = rw
    with warnings.catch_warnings(record=True):
        warnings.simplefilter('always')
        p = cls(name, preprocessor_name='DefaultPreprocessor', overwrite_target_spacing=spacing, suppress_transpose=False, **kw)
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()):
            p.plan_experiment()
    return p.plans_identifier

if __name__ == '__main__':
    args = json.loads(sys.argv[1])
    print(run(**args))
