"""All threads against one thread, per batch size (8 to 4,096): the thread count follows the work.

Group ``threads-all-vs-one``: one row per job and batch size, timing the
plan's call on all of Numba's threads (the launch picks its own count from
the work: :func:`fastseq.kernels.config.threads_for`); ``extra_info`` holds
the one-thread time beside it (``numba.set_num_threads(1)``) and their
ratio, measured with the two alternating in this process (best of N each,
as the machine is shared). Target: ``all_over_one <= 1.0`` at every size.
Jobs: CIFAR NHWC and NCHW (pad-4 crop, flip, normalise, float32), MNIST
(normalise), and a 224x224 RandomResizedCrop from 256x256 images (batches
up to 256 there: a 4,096 batch would be 2.4 GB of float32).

Every row checks that its batch equals the one-thread batch, bit for bit.
"""

import time

import numba
import numpy as np
import pytest

import fastseq.kernels as K
from conftest import CIFAR_MEAN, CIFAR_STD
from fastseq.kernels import config

BATCHES = (8, 32, 128, 512, 4096)
RRC_BATCHES = (8, 32, 128, 256)


@pytest.fixture(scope="module")
def photos():
    return np.random.default_rng(3).integers(0, 256, (300, 256, 256, 3), dtype=np.uint8)


def _job(name, cifar, mnist, photos, batch):
    rng = np.random.default_rng(batch)
    if name == "rrc224":
        plan = K.ResizePlan(photos, size=(224, 224), mean=CIFAR_MEAN, std=CIFAR_STD)
        idx = rng.integers(0, len(photos), batch)
        boxes, flips = K.ResizedCropParams(image_size=(256, 256))(0, 0, idx)
        return plan, (idx, boxes, flips)
    if name == "mnist":
        x = mnist[0]
        plan = K.FusedPlan(x, mean=33.3, std=78.6)
        idx = rng.integers(0, len(x), batch)
        return plan, (idx, np.zeros((batch, 2), np.int64), np.zeros(batch, np.uint8))
    x = cifar[0]
    plan = K.FusedPlan(x, crop=(32, 32), padding=4, mean=CIFAR_MEAN, std=CIFAR_STD,
                       data_format="channels_first" if name == "cifar-nchw" else "channels_last")
    idx = rng.integers(0, len(x), batch)
    origins, flips = K.random_params(0, 0, idx, image_size=(32, 32), crop_size=(32, 32), padding=4)
    return plan, (idx, origins, flips)


def _one_thread(fn):
    full = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return fn()
    finally:
        numba.set_num_threads(full)


def _alternating(fn, rounds):
    """Best times of ``fn`` on all threads and on one, the two alternating."""
    best_all = best_one = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        _one_thread(fn)
        t2 = time.perf_counter()
        best_all, best_one = min(best_all, t1 - t0), min(best_one, t2 - t1)
    return best_all, best_one


CASES = [(name, b) for name in ("cifar-nhwc", "cifar-nchw", "mnist") for b in BATCHES]
CASES += [("rrc224", b) for b in RRC_BATCHES]


@pytest.mark.benchmark(group="threads-all-vs-one")
@pytest.mark.parametrize("name, batch", CASES)
def test_all_threads_against_one(benchmark, name, batch, cifar, mnist, photos):
    plan, args = _job(name, cifar, mnist, photos, batch)
    out = np.empty(plan.output_shape(batch), np.float32)
    one = _one_thread(lambda: plan(*args).copy())
    result = benchmark(lambda: plan(*args, out=out))
    np.testing.assert_array_equal(result, one)  # same pixels whatever the thread count
    info = dict(job=name, batch=batch, bytes_out=out.nbytes, numba_threads=numba.get_num_threads(),
                threads_chosen=config.threads_for(out.nbytes * (4 if name == "rrc224" else 1),
                                                  numba.get_num_threads()))
    if not benchmark.disabled:
        rounds = max(5, min(200, int(2e8 // max(out.nbytes, 1))))
        best_all, best_one = _alternating(lambda: plan(*args, out=out), rounds)
        info.update(one_thread_s=best_one, all_threads_s=best_all, all_over_one=round(best_all / best_one, 3))
    benchmark.extra_info.update(info)
