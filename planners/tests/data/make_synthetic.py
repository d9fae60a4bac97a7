"""Generate the synthetic planner oracle cases in tests/data/synthetic/.

The expected plans are produced by nnU-Net 2.8.1's *own* planner source
(default_experiment_planner.py, residual_encoder_unet_planners.py, network_topology.py from
MIC-DKFZ/nnUNet @ 0e495086) run by a harness that stubs torch / dynamic-network-architectures / file IO and
replaces `static_estimate_VRAM_usage` with the closed form of planning spec §5.1 (verified there 60/60 against
the real networks). The harness reproduces all six real reference plans in tests/fixtures byte for byte.
These files were therefore oracle outputs; make_reference_real.py has since regenerated/verified every one of
them with a real nnU-Net 2.8.1 installation (46/46 byte-identical). Re-run it after running this script.

usage: python3 make_synthetic.py /path/to/harness_dir   (holds oracle_harness.py copied as harness.py + the nnU-Net sources)
"""
import json, os, random, shutil, subprocess, sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'synthetic')
HARNESS = sys.argv[1]


def intens(seed, n):
    r = random.Random(seed)
    out = {}
    for c in range(n):
        mn = float(r.randint(-1024, 0)); mx = float(r.randint(500, 3000))
        out[str(c)] = {"max": mx, "mean": r.uniform(0, 300), "median": r.uniform(0, 300), "min": mn,
                       "percentile_00_5": mn + 10.0, "percentile_99_5": mx - 10.0, "std": r.uniform(10, 200)}
    return out


def write_dataset(name, dj, spacings, shapes, mrs, n_ch):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    fp = {"foreground_intensity_properties_per_channel": intens(len(name), n_ch),
          "median_relative_size_after_cropping": mrs, "shapes_after_crop": shapes, "spacings": spacings}
    json.dump(dj, open(os.path.join(d, 'dataset.json'), 'w'), indent=4)
    json.dump(fp, open(os.path.join(d, 'dataset_fingerprint.json'), 'w'), indent=4, sort_keys=True)
    return d


def f32(x):
    import numpy as np
    return float(np.float32(x))


cases = []
r = random.Random(42)
# 1) liver-CT-like: lowres + cascade
n = 60
sp = [[f32(r.choice([0.7, 0.8, 1.0, 1.5, 2.5, 5.0])), f32(r.uniform(0.55, 0.98))] for _ in range(n)]
sp = [[a, b, b] for a, b in sp]
sh = [[r.randint(60, 900) if s[0] < 2 else r.randint(40, 200), 512, 512] for s in sp]
write_dataset('liver_like', {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
                             "numTraining": n, "file_ending": ".nii.gz"}, sp, sh, 0.98, 1)
# 2) ACDC-like: anisotropic, few slices
n = 40
sp = [[f32(r.choice([5.0, 6.5, 10.0])), f32(r.uniform(1.2, 1.8))] for _ in range(n)]
sp = [[a, b, b] for a, b in sp]
sh = [[r.randint(6, 18), r.randint(180, 300), r.randint(160, 280)] for _ in range(n)]
write_dataset('acdc_like', {"channel_names": {"0": "cineMRI"}, "labels": {"background": 0, "RV": 1, "MLV": 2, "LVC": 3},
                            "numTraining": n, "file_ending": ".nii.gz"}, sp, sh, 0.99, 1)
# 3) anisotropic last axis -> transpose [2, 0, 1]
n = 20
sp = [[f32(r.uniform(0.7, 0.9)), f32(r.uniform(0.7, 0.9)), f32(r.choice([3.0, 4.0, 5.0]))] for _ in range(n)]
sh = [[r.randint(200, 260), r.randint(200, 260), r.randint(30, 60)] for _ in range(n)]
write_dataset('aniso_last', {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "a": 1},
                             "numTraining": n, "file_ending": ".nii.gz"}, sp, sh, 0.8, 2)
# 4) BraTS-like: 4 channels, regions + ignore, mask for norm
n = 30
sp = [[1.0, 1.0, 1.0] for _ in range(n)]
sh = [[r.randint(130, 150), r.randint(160, 180), r.randint(130, 145)] for _ in range(n)]
write_dataset('brats_like', {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"},
                             "labels": {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3],
                                        "enhancing_tumor": 3, "ignore": 4},
                             "regions_class_order": [1, 2, 3], "numTraining": n, "file_ending": ".nii.gz"},
              sp, sh, 0.6, 4)
# 5) 2D natural images (spacing 999)
n = 50
sp = [[999.0, 1.0, 1.0] for _ in range(n)]
sh = [[1, r.randint(500, 700), r.randint(500, 700)] for _ in range(n)]
write_dataset('natural_2d', {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "road": 1},
                             "numTraining": n, "file_ending": ".png"}, sp, sh, 1.0, 3)
# 6) tiny set, odd sizes, noNorm + rescale channels
n = 6
sp = [[f32(r.uniform(0.9, 1.1)), f32(r.uniform(0.4, 0.6)), f32(r.uniform(0.4, 0.6))] for _ in range(n)]
sh = [[r.randint(20, 40), r.randint(90, 130), r.randint(90, 130)] for _ in range(n)]
write_dataset('tiny', {"channel_names": {"0": "noNorm", "1": "rescale_to_0_1"}, "labels": {"background": 0, "x": 1},
                       "numTraining": n, "file_ending": ".nii.gz"}, sp, sh, 0.5, 2)

runs = []
for ds in ['liver_like', 'acdc_like', 'aniso_last', 'brats_like', 'natural_2d', 'tiny']:
    rw = 'NaturalImage2DIO' if ds == 'natural_2d' else 'SimpleITKIO'
    for pl in ['ExperimentPlanner', 'ResEncUNetPlanner', 'nnUNetPlannerResEncM', 'nnUNetPlannerResEncL', 'nnUNetPlannerResEncXL']:
        runs.append(dict(dataset=ds, planner=pl, rw=rw))
    runs.append(dict(dataset=ds, planner='ExperimentPlanner', rw=rw, gpu=11.0, plans_name='nnUNetPlans_11G'))
    runs.append(dict(dataset=ds, planner='nnUNetPlannerResEncM', rw=rw, gpu=4.0, plans_name='nnUNetResEncUNetPlans_4G'))
runs.append(dict(dataset='liver_like', planner='ExperimentPlanner', rw='SimpleITKIO', spacing=[1.5, 1.5, 1.5],
                 plans_name='nnUNetPlans_iso15'))
runs.append(dict(dataset='acdc_like', planner='nnUNetPlannerResEncL', rw='SimpleITKIO', spacing=[5.0, 1.25, 1.25],
                 plans_name='nnUNetResEncUNetLPlans_custom'))
runs.append(dict(dataset='aniso_last', planner='nnUNetPlannerResEncM', rw='SimpleITKIO', gpu=80.0,
                 plans_name='nnUNetResEncUNetPlans_80G'))
# re-planning into an existing plans file (spec §4.8): XL writes no 3d_lowres, so the stale lowres/cascade entries
# and the hand-added 3d_fullres_bs16 survive, appended after the new configurations.
ex = json.load(open(os.path.join(OUT, 'liver_like', 'ExperimentPlanner__nnUNetPlans.json')))
ex['configurations']['3d_fullres_bs16'] = {'inherits_from': '3d_fullres', 'batch_size': 16}
ex['experiment_planner_used'] = 'stale'
json.dump(ex, open(os.path.join(OUT, 'liver_like', 'existing_nnUNetPlans.json'), 'w'), indent=4)
runs.append(dict(dataset='liver_like', planner='nnUNetPlannerResEncXL', rw='SimpleITKIO', plans_name='nnUNetPlans',
                 existing='existing_nnUNetPlans.json'))

manifest = []
for i, run in enumerate(runs):
    d = os.path.join(OUT, run['dataset'])
    name = 'Dataset9%02d_%s' % (i, run['dataset'])
    tmp = os.path.join('/tmp', 'synth_oracle', name)
    shutil.rmtree(tmp, ignore_errors=True); os.makedirs(tmp)
    for f in ('dataset.json', 'dataset_fingerprint.json'):
        shutil.copy(os.path.join(d, f), tmp)
    if 'existing' in run:
        shutil.copy(os.path.join(d, run['existing']), os.path.join(tmp, run['plans_name'] + '.json'))
    args = dict(planner=run['planner'], folder=tmp, name=name, out_file='', rw=run['rw'])
    for k in ('gpu', 'plans_name', 'spacing'):
        if k in run: args[k] = run[k]
    res = subprocess.run([sys.executable, os.path.join(HARNESS, 'harness.py'), json.dumps(args)], capture_output=True, text=True)
    if res.returncode != 0:
        print('FAILED', run, res.stderr[-300:]); continue
    plans_name = res.stdout.strip().splitlines()[-1]
    out_name = '%s__%s%s.json' % (run['planner'], plans_name, '__merged' if 'existing' in run else '')
    shutil.copy(os.path.join(tmp, plans_name + '.json'), os.path.join(d, out_name))
    entry = dict(dataset=run['dataset'], dataset_name=args['name'], planner=run['planner'], reader=run['rw'],
                 expected=out_name)
    for k in ('gpu', 'plans_name', 'spacing', 'existing'):
        if k in run: entry[k] = run[k]
    manifest.append(entry)
json.dump(manifest, open(os.path.join(OUT, 'manifest.json'), 'w'), indent=1)
print(len(manifest), 'cases')
