"""Regenerate the expected plans of every synthetic case with a REAL nnU-Net installation (no stubs).

For each run in synthetic/manifest.json this lays out, in a fresh temp dir,
    nnUNet_raw/<dataset_name>/dataset.json
    nnUNet_raw/<dataset_name>/imagesTr/dummy_XXXX<file_ending>    (one tiny dummy case, see below)
    nnUNet_preprocessed/<dataset_name>/dataset_fingerprint.json
    nnUNet_preprocessed/<dataset_name>/<plans_name>.json           (only for runs with "existing": merge target)
and runs
    nnUNetv2_plan_experiment -d ID -pl PLANNER [-gpu_memory_target X] [-overwrite_plans_name N]
                             [-overwrite_target_spacing a b c]
with nnUNet_raw / nnUNet_preprocessed / nnUNet_results pointing into the temp dir. The produced plans file is
compared byte for byte with the committed expected file.

Why a dummy image: ExperimentPlanner.__init__ lists nnUNet_raw/<ds>/imagesTr (get_filenames_of_train_images_and_
targets) and determine_reader_writer() opens the FIRST image of the first case to pick the reader/writer
("image_reader_writer" in the plans). Nothing else in planning touches images: all shape/spacing/intensity
information comes from dataset_fingerprint.json. So one case with one tiny file per channel is enough:
a 4x4x4 float32 NIfTI (SimpleITK) for ".nii.gz" -> SimpleITKIO, a 4x4 uint8 PNG for ".png" -> NaturalImage2DIO.
The reader each run got is checked against the manifest's "reader".

usage:
    NNUNET_PY=/root/nnunet-py/bin/python python3 make_reference_real.py [--check] [--jobs N] [--keep-tmp]
  (or run it directly with the nnU-Net venv's python; then NNUNET_PY is not needed)
  --check     only compare, never write; exit code 1 if any run differs or fails
  default     compare, and overwrite every differing expected file with the real nnU-Net output
The nnUNetv2_plan_experiment entry point is taken from the same bin/ folder as NNUNET_PY.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
SYN = os.path.join(HERE, 'synthetic')
PY = os.environ.get('NNUNET_PY', sys.executable)
PLAN_EXP = os.path.join(os.path.dirname(PY), 'nnUNetv2_plan_experiment')

DUMMY_SRC = r'''
import sys, numpy as np, SimpleITK as sitk
path, kind = sys.argv[1], sys.argv[2]
if kind == 'png':
    img = sitk.GetImageFromArray(np.arange(16, dtype=np.uint8).reshape(4, 4))
else:
    img = sitk.GetImageFromArray(np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    img.SetSpacing((1.0, 1.0, 1.0))
sitk.WriteImage(img, path)
'''


def make_dummy(path, file_ending):
    kind = 'png' if file_ending.lower() == '.png' else 'nii'
    subprocess.run([PY, '-c', DUMMY_SRC, path, kind], check=True)


def run_one(entry, keep_tmp):
    ds_dir = os.path.join(SYN, entry['dataset'])
    name = entry['dataset_name']
    ds_id = int(name[len('Dataset'):len('Dataset') + 3])
    tmp = tempfile.mkdtemp(prefix='nnunet_real_%s_' % name)
    raw, pre, res = (os.path.join(tmp, d) for d in ('nnUNet_raw', 'nnUNet_preprocessed', 'nnUNet_results'))
    rdir, pdir = os.path.join(raw, name), os.path.join(pre, name)
    os.makedirs(os.path.join(rdir, 'imagesTr')); os.makedirs(pdir); os.makedirs(res)
    shutil.copy(os.path.join(ds_dir, 'dataset.json'), rdir)
    shutil.copy(os.path.join(ds_dir, 'dataset_fingerprint.json'), pdir)
    dj = json.load(open(os.path.join(ds_dir, 'dataset.json')))
    fe = dj['file_ending']
    for c in range(len(dj['channel_names'])):
        make_dummy(os.path.join(rdir, 'imagesTr', 'dummy_%04d%s' % (c, fe)), fe)
    plans_name = entry.get('plans_name')
    if 'existing' in entry:
        shutil.copy(os.path.join(ds_dir, entry['existing']), os.path.join(pdir, plans_name + '.json'))
    cmd = [PLAN_EXP, '-d', str(ds_id), '-pl', entry['planner']]
    if 'gpu' in entry:
        cmd += ['-gpu_memory_target', repr(float(entry['gpu']))]
    if plans_name is not None:
        cmd += ['-overwrite_plans_name', plans_name]
    if 'spacing' in entry:
        cmd += ['-overwrite_target_spacing'] + [repr(float(s)) for s in entry['spacing']]
    env = dict(os.environ, nnUNet_raw=raw, nnUNet_preprocessed=pre, nnUNet_results=res)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    out = dict(entry=entry, cmd=' '.join(cmd[1:]), tmp=tmp, rc=p.returncode, log=p.stdout + p.stderr)
    if p.returncode == 0:
        # the planner prints "Plans were saved to <file>"; take the file from there
        saved = [l.split('Plans were saved to ', 1)[1].strip() for l in p.stdout.splitlines()
                 if 'Plans were saved to ' in l]
        out['plans_file'] = saved[-1] if saved else None
        if out['plans_file'] and os.path.isfile(out['plans_file']):
            out['text'] = open(out['plans_file'], 'rb').read()
    if not keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def describe_diff(old, new, prefix=''):
    """Structural difference of two JSON values, as a list of 'path: old -> new' lines."""
    if type(old) != type(new):
        return ['%s: %r -> %r' % (prefix or '/', old, new)]
    if isinstance(old, dict):
        lines = []
        if list(old) != list(new) and set(old) == set(new):
            lines.append('%s: key order %s -> %s' % (prefix or '/', list(old), list(new)))
        for k in old:
            if k not in new:
                lines.append('%s/%s: removed' % (prefix, k))
            else:
                lines += describe_diff(old[k], new[k], '%s/%s' % (prefix, k))
        for k in new:
            if k not in old:
                lines.append('%s/%s: added %r' % (prefix, k, new[k]))
        return lines
    if isinstance(old, list):
        if len(old) != len(new):
            return ['%s: %r -> %r' % (prefix, old, new)]
        lines = []
        for i, (a, b) in enumerate(zip(old, new)):
            lines += describe_diff(a, b, '%s[%d]' % (prefix, i))
        return lines
    return [] if old == new else ['%s: %r -> %r' % (prefix, old, new)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--check', action='store_true')
    ap.add_argument('--jobs', type=int, default=max(1, min(8, os.cpu_count() or 1)))
    ap.add_argument('--keep-tmp', action='store_true')
    args = ap.parse_args()
    if not os.path.isfile(PLAN_EXP):
        sys.exit('nnUNetv2_plan_experiment not found next to %s (set NNUNET_PY)' % PY)
    ver = subprocess.run([PY, '-c', 'from importlib.metadata import version; print(version("nnunetv2"))'],
                         capture_output=True, text=True).stdout.strip()
    print('nnunetv2 %s (%s)' % (ver, PY))
    manifest = json.load(open(os.path.join(SYN, 'manifest.json')))
    with ThreadPoolExecutor(args.jobs) as ex:
        results = list(ex.map(lambda e: run_one(e, args.keep_tmp), manifest))
    n_same = n_diff = n_fail = 0
    for r in results:
        e = r['entry']
        exp_path = os.path.join(SYN, e['dataset'], e['expected'])
        tag = '%s %s (%s)' % (e['dataset_name'], e['planner'], e['expected'])
        if 'text' not in r:
            n_fail += 1
            print('FAILED   %s: rc=%s  %s\n%s' % (tag, r['rc'], r['cmd'], r['log'][-2000:]))
            continue
        new = r['text']
        rw = json.loads(new).get('image_reader_writer')
        if rw != e.get('reader', rw):
            print('NOTE     %s: reader %s, manifest says %s' % (tag, rw, e['reader']))
        old = open(exp_path, 'rb').read() if os.path.isfile(exp_path) else b''
        if old == new:
            n_same += 1
            print('IDENTICAL %s' % tag)
            continue
        n_diff += 1
        print('DIFFERS  %s  [%s]' % (tag, r['cmd']))
        try:
            lines = describe_diff(json.loads(old), json.loads(new))
        except ValueError:
            lines = ['expected file missing or not JSON']
        for l in lines or ['(same JSON value, different text/formatting)']:
            print('           ' + l)
        if not args.check:
            open(exp_path, 'wb').write(new)
            print('           -> expected file replaced by real nnU-Net output')
    print('%d runs: %d byte-identical, %d differ, %d failed' % (len(results), n_same, n_diff, n_fail))
    sys.exit(1 if (n_fail or (args.check and n_diff)) else 0)


if __name__ == '__main__':
    main()
