"""Microbenchmark of the warp kernel (``fastseq.kernels.warp._warp_batch``, which calls ``_warp_sample`` per sample)
and of the augmentation pass, single-threaded, best of many.

    python benchmarks/warp_micro.py [--reps 30] [--pass]

Prints microseconds per 512-sample CIFAR batch (32x32x3) per case, min over ``reps`` repetitions.
"""

import argparse
import os
import time

import numpy as np


def matrices(n, rng, H=32, W=32):
    from fastseq.augment.geometry import RandomRotation, RandomTranslation, RandomZoom

    r = RandomRotation(0.1).matrices(rng.random((n, 1)), H, W)
    z = RandomZoom(0.2).matrices(rng.random((n, 1)), H, W)
    t = RandomTranslation(0.1, 0.1).matrices(rng.random((n, 2)), H, W)
    crop = np.tile(np.eye(3), (n, 1, 1))
    crop[:, :2, 2] = rng.integers(-4, 5, (n, 2))
    return np.ascontiguousarray(crop @ r @ z @ t)


def best(fn, reps):
    """Min over ``reps`` runs of the calling thread's CPU time (the 2 cores are shared: wall time counts the others'
    slices too), in microseconds."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        ts.append(time.thread_time() - t0)
    return min(ts) * 1e6


def best_slices(calls, reps):
    """Each of ``calls`` timed on its own (min over ``reps``), summed: short runs, so the min finds runs that no
    other process disturbed, in microseconds."""
    return sum(best(c, reps) for c in calls)


def micro(reps, only=""):
    from fastseq.kernels import warp as K
    FILL_CONSTANT, FILL_NEAREST, FILL_REFLECT, FILL_WRAP = K.FILL_CONSTANT, K.FILL_NEAREST, K.FILL_REFLECT, K.FILL_WRAP
    INTERP_BILINEAR, INTERP_NEAREST, _warp_batch = K.INTERP_BILINEAR, K.INTERP_NEAREST, K._warp_batch

    rng = np.random.default_rng(0)
    n, H, W, C = 512, 32, 32, 3
    x = rng.integers(0, 256, (n, H, W, C), dtype=np.uint8)
    src = x.reshape(-1)
    srcf = src.astype(np.float32)
    m = matrices(n, rng)
    mp = m.copy()
    mp[:, 2, :2] = rng.normal(0, 0.002, (n, 2))
    min_ = np.tile(np.array([[0.9, 0.05, 1.5], [-0.05, 0.9, 1.6], [0.0, 0.0, 1.0]]), (n, 1, 1))  # all inside
    mint = np.tile(np.eye(3), (n, 1, 1))
    mint[:, :2, 2] = rng.integers(-4, 5, (n, 2))
    fields = rng.normal(0, 1.5, (n, H, W, 2)).astype(np.float32)
    nof = np.zeros((0, H, W, 2), np.float32)
    no_field = np.zeros((0, 0, 2), np.float32)
    out = np.empty((n, H, W, C), np.float32)
    cases = [
        ("affine bilinear reflect u8", src, m, nof, INTERP_BILINEAR, FILL_REFLECT),
        ("inside-only bilinear reflect u8", src, min_, nof, INTERP_BILINEAR, FILL_REFLECT),
        ("affine bilinear reflect f32", srcf, m, nof, INTERP_BILINEAR, FILL_REFLECT),
        ("affine bilinear constant u8", src, m, nof, INTERP_BILINEAR, FILL_CONSTANT),
        ("affine bilinear nearest u8", src, m, nof, INTERP_BILINEAR, FILL_NEAREST),
        ("affine bilinear wrap u8", src, m, nof, INTERP_BILINEAR, FILL_WRAP),
        ("affine nearest reflect u8", src, m, nof, INTERP_NEAREST, FILL_REFLECT),
        ("affine nearest constant u8", src, m, nof, INTERP_NEAREST, FILL_CONSTANT),
        ("int-translate nearest reflect u8", src, mint, nof, INTERP_NEAREST, FILL_REFLECT),
        ("projective bilinear constant u8", src, mp, nof, INTERP_BILINEAR, FILL_CONSTANT),
        ("projective bilinear reflect u8", src, mp, nof, INTERP_BILINEAR, FILL_REFLECT),
        ("field bilinear reflect u8", src, np.tile(np.eye(3), (n, 1, 1)), fields, INTERP_BILINEAR, FILL_REFLECT),
    ]
    k = 64  # timed in slices of 64 samples
    for name, s, mm, ff, interp, mode in cases:
        if only not in name:
            continue
        calls = [lambda j=j, s=s, mm=mm, ff=ff, interp=interp, mode=mode: _warp_batch(
            s[j * H * W * C:], H, W, C, mm[j:j + k], ff[j:j + k] if ff.shape[0] else ff, no_field, interp, mode, 17.0,
            out[j:j + k]) for j in range(0, n, k)]
        us = best_slices(calls, reps)
        print(f"{name:36s} {us:9.1f} us/batch  {us / n:6.2f} us/sample  {us * 1e3 / out.size:6.2f} ns/value")


def whole_pass(reps):
    import numba

    import fastseq

    numba.set_num_threads(1)
    x = np.random.default_rng(0).integers(0, 256, (600, 32, 32, 3), dtype=np.uint8)
    common = dict(batch_size=512, crop=fastseq.RandomCrop(32, 32, padding=4), flip="horizontal",
                  normalize=fastseq.Rescale(1 / 255))
    idx = np.arange(512)
    s = fastseq.ArraySequence(x, None, **common, augment=[fastseq.RandomRotation(0.1), fastseq.RandomZoom(0.2),
                                                          fastseq.RandomTranslation(0.1, 0.1)])
    s[0]
    draw, _ = s._draws(s.seed, 0, idx)
    us = best(lambda: s._plan(idx, draw, None), reps)
    print(f"{'pass rot+zoom+trans (1 thread)':36s} {us:9.1f} us/batch  {us / 512:6.2f} us/sample")
    p = fastseq.ArraySequence(x, None, **common)
    p[0]
    us0 = best(lambda: p[0], reps)
    print(f"{'plain crop+flip+normalise getitem':36s} {us0:9.1f} us/batch  (ratio {us / us0:.2f})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--pass", dest="whole", action="store_true")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    a = ap.parse_args()
    print("load:", os.getloadavg())
    micro(a.reps, a.only)
    if a.whole:
        whole_pass(a.reps)
    print("load:", os.getloadavg())
