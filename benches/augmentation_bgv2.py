"""Per-sample time of nnU-Net 2.8.1's training augmentation (batchgeneratorsv2) on ONE thread.

The Python half of benches/augmentation_vs_batchgenerators.sh; the Rust half is
core/augment/examples/throughput.rs. Both build the same input (the enlarged crop nnU-Net samples for the patch,
1 image channel, a seg with labels 0/1/2) from the same integer hash, run the full training transform pipeline one
sample at a time and write one line per timed sample:
`<wall ms> <thread CPU ms (time.thread_time)> <1 if the spatial transform interpolated else 0>`.

    python benches/augmentation_bgv2.py --patch 40 56 40 --pools 3 --warmup 20 --n 200 --seed 1 --out FILE

The pipeline is nnU-Net's own: `nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size` (called
on a stub that carries the patch size) and `nnUNetTrainer.get_training_transforms`, with deep-supervision scales
computed as `nnUNetTrainer._get_deep_supervision_scales` does from pool_op_kernel_sizes [[1,1,1]] + [[2,2,2]] * pools.
"""
import os

for _v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'NUMEXPR_NUM_THREADS', 'VECLIB_MAXIMUM_THREADS'):
    os.environ[_v] = '1'

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform  # noqa: E402
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform  # noqa: E402
from batchgeneratorsv2.transforms.utils.random import RandomTransform  # noqa: E402
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402

M32 = 0xFFFFFFFF


def fmix32(x: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finalizer on uint64 arrays holding 32-bit values (same as `fmix32` in throughput.rs)."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & M32
    return x ^ (x >> 16)


def make_input(shape):
    """image: uniform in [-2, 2) from a hash of the voxel index (exact in f32); seg: 0 outside a centred ellipsoid
    with semi-axes 0.35 * shape, 1 in its lower half along axis 0, 2 in its upper half."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    h = fmix32(((i * 0x9E3779B1) & M32) ^ 0x5BD1E995)
    image = ((h >> 8).astype(np.float64) / float(1 << 22) - 2.0).astype(np.float32).reshape(1, *shape)
    z, y, x = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing='ij')
    r = 0.0
    for a, s in zip((z, y, x), shape):
        d = (a - (s - 1) / 2.0) / (0.35 * s)
        r = r + d * d
    seg = np.zeros(shape, dtype=np.int16)
    inside = r <= 1.0
    seg[inside & (z < (shape[0] - 1) / 2.0)] = 1
    seg[inside & (z >= (shape[0] - 1) / 2.0)] = 2
    return image, seg[None]


def checksum(image, seg):
    counts = [int((seg == v).sum()) for v in (0, 1, 2)]
    return f'image_sum={float(image.astype(np.float64).sum()):.6f} labels={counts[0]}/{counts[1]}/{counts[2]}'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--patch', type=int, nargs=3, required=True)
    ap.add_argument('--pools', type=int, required=True, help='number of [2,2,2] poolings of the 3d_fullres plan')
    ap.add_argument('--warmup', type=int, default=10)
    ap.add_argument('--n', type=int, default=100)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--out', required=True, help='file for the per-sample lines')
    a = ap.parse_args()

    patch = list(a.patch)
    stub = SimpleNamespace(configuration_manager=SimpleNamespace(patch_size=patch), print_to_log_file=lambda *x, **k: None)
    rotation, dummy_2d, initial_patch_size, mirror_axes = \
        nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(stub)
    crop = [int(i) for i in initial_patch_size]
    pool_op_kernel_sizes = [[1, 1, 1]] + [[2, 2, 2]] * a.pools
    ds_scales = list(list(i) for i in 1 / np.cumprod(np.vstack(pool_op_kernel_sizes), axis=0))[:-1]
    tr = nnUNetTrainer.get_training_transforms(
        patch, rotation, ds_scales, mirror_axes, dummy_2d, use_mask_for_norm=[False], is_cascaded=False,
        foreground_labels=[1, 2], regions=None, ignore_label=None)

    # count the samples whose spatial transform interpolates (rotation and/or scaling: p = 1 - 0.8^2 = 0.36)
    spatial = [t for t in tr.transforms if isinstance(t, SpatialTransform)]
    assert len(spatial) == 1, 'expected one SpatialTransform in nnU-Net training transforms'
    interpolated = [False]
    orig_get_parameters = spatial[0].get_parameters

    def get_parameters(**d):
        p = orig_get_parameters(**d)
        interpolated[0] = p['grid'] is not None
        return p

    spatial[0].get_parameters = get_parameters

    image_np, seg_np = make_input(crop)
    print(f'bgv2 patch={"x".join(map(str, patch))} crop={"x".join(map(str, crop))} '
          f'ds_scales={len(ds_scales)} {checksum(image_np, seg_np)}', flush=True)
    image = torch.from_numpy(image_np)
    seg = torch.from_numpy(seg_np)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)

    with torch.no_grad(), threadpool_limits(limits=1, user_api=None):
        # GaussianBlurTransform(benchmark=True) times conv vs fft once per (axis length, kernel size) on first use;
        # in training that cost is amortised over the whole run, so settle it here for every kernel size the
        # blur can draw (sigma in (0.5, 1) gives kernels 3 and 5) on the final patch shape
        for t in tr.transforms:
            if isinstance(t, RandomTransform) and isinstance(t.transform, GaussianBlurTransform):
                for sigma in (0.5, 1.0):
                    t.transform._apply_to_image(torch.zeros((1, *patch)), apply_to_channel=torch.tensor([True]),
                                                sigmas=[[sigma] * 3])
        times, cpu, flags = [], [], []
        for k in range(a.warmup + a.n):
            img, sg = image.clone(), seg.clone()
            c0 = time.thread_time()
            t0 = time.perf_counter()
            out = tr(image=img, segmentation=sg)
            dt = time.perf_counter() - t0
            dc = time.thread_time() - c0
            assert tuple(out['image'].shape[1:]) == tuple(patch) and len(out['segmentation']) == len(ds_scales)
            del out, img, sg
            if k >= a.warmup:
                times.append(dt * 1e3)
                cpu.append(dc * 1e3)
                flags.append(interpolated[0])

    with open(a.out, 'w') as f:
        for t, c, fl in zip(times, cpu, flags):
            f.write(f'{t:.4f} {c:.4f} {int(fl)}\n')
    ms = np.array(times)
    print(f'bgv2 n={len(ms)} median={np.median(ms):.2f} ms mean={ms.mean():.2f} ms (thread CPU mean {np.mean(cpu):.2f} ms) '
          f'interpolated={sum(flags)}/{len(flags)} torch={torch.__version__} threads={torch.get_num_threads()}',
          file=sys.stderr, flush=True)


if __name__ == '__main__':
    main()
