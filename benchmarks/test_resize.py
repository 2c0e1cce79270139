"""ImageNet-style RandomResizedCrop: fastseq beside tf.data, a NumPy loop and the memory ceiling.

One group, ``imagenet-rrc56-b256-f32``: 64x64x3 uint8 sources (seeded, from
``fastseq.synthetic``), RandomResizedCrop (scale (0.08, 1), ratio (3/4, 4/3))
to 56x56, horizontal flip p=0.5, per-channel mean/std, float32
channels_last, batch 256. Rows:

- ``ceiling``: NumPy ``np.copyto`` uint8 -> float32 of the same number of
  values, one thread, a different contiguous slice of the data set each call.
- ``fastseq``: ``ResizedCropParams`` + ``ResizePlan`` per batch (what
  ``ArraySequence.__getitem__`` runs), cycling through random batches.
- ``numpy``: a per-sample Python loop drawing torchvision's box with
  ``np.random`` and resizing with vectorised NumPy (the same half-pixel
  formula).
- ``tf.data``: ``from_tensor_slices -> shuffle -> map(sample_distorted_bounding_box,
  crop_and_resize, random_flip_left_right, normalise) -> batch -> prefetch``,
  the tf.data version of the same job (TensorFlow's own RandomResizedCrop
  recipe), 4 batches per call.

Targets (issue 15): fastseq >= 10x each baseline's images/s and within 3x
the ceiling's time. Every row checks its last output after timing.
"""

import math
import os

import numpy as np
import pytest

from fastseq import kernels
from fastseq.bench import synthetic
from tests import reference

GROUP = "imagenet-rrc56-b256-f32"
N, SOURCE, SIZE, BATCH = 10_000, (64, 64, 3), (56, 56), 256
MEAN = np.array((123.7, 116.3, 103.5))  # ImageNet's, in pixel units
STD = np.array((58.4, 57.1, 57.4))
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
OUT_SHAPE = (BATCH, *SIZE, 3)
OUT_BYTES = int(np.prod(OUT_SHAPE)) * 4


@pytest.fixture(scope="module")
def data():
    return synthetic.images(N, SOURCE, seed=15)


@pytest.fixture(scope="module")
def batches():
    rng = np.random.default_rng(15)
    return [rng.integers(0, N, BATCH) for _ in range(8)]


def record(benchmark, row, images_per_call, threads, **extra):
    benchmark.group = GROUP
    benchmark.extra_info.update(row=row, shape=list(OUT_SHAPE), dtype="float32", threads=threads, **extra)
    if not benchmark.disabled and benchmark.stats is not None:
        seconds = benchmark.stats.stats.min
        benchmark.extra_info["images_per_sec"] = round(images_per_call / seconds, 1)
        benchmark.extra_info["GB_per_sec"] = round(images_per_call / BATCH * OUT_BYTES / seconds / 1e9, 3)


def check_convex(out, sources, x):
    """Each normalised output is a bilinear blend of its source image: within [min, max] of it, per channel."""
    out = np.asarray(out, np.float64)
    assert out.shape[1:] == OUT_SHAPE[1:] and np.isfinite(out).all()
    pixels = out * STD + MEAN
    for k, s in enumerate(sources):
        img = x[s].reshape(-1, 3)
        assert (pixels[k].reshape(-1, 3) >= img.min(axis=0) - 1e-3).all(), k
        assert (pixels[k].reshape(-1, 3) <= img.max(axis=0) + 1e-3).all(), k
        assert pixels[k].std() > 1.0, f"output {k} is flat"


def test_ceiling(benchmark, data):
    flat = data.reshape(-1)
    count = int(np.prod(OUT_SHAPE))
    slices = [flat[j * count : (j + 1) * count] for j in range(flat.size // count)]
    out = np.empty(OUT_SHAPE, np.float32)
    state = {"next": 0}

    def ceiling():
        state["last"] = slices[state["next"]]
        state["next"] = (state["next"] + 1) % len(slices)
        np.copyto(out.reshape(-1), state["last"], casting="unsafe")
        return out

    result = benchmark(ceiling)
    record(benchmark, "ceiling", BATCH, 1, source=f"{len(slices)} contiguous slices of the data set, in turn")
    np.testing.assert_array_equal(result.reshape(-1), state["last"])


def test_fastseq(benchmark, data, batches):
    import numba

    plan = kernels.ResizePlan(data, size=SIZE, mean=MEAN, std=STD)
    params = kernels.ResizedCropParams(image_size=SOURCE[:2], scale=SCALE, ratio=RATIO, horizontal=0.5)
    out = np.empty(OUT_SHAPE, np.float32)
    plan(batches[0], *params(0, 0, batches[0]), out=out)  # compile (or load) before timing
    state = {"next": 0}

    def fastseq():
        idx = batches[state["next"]]
        state["last"] = idx
        state["next"] = (state["next"] + 1) % len(batches)
        boxes, flips = params(0, 1, idx)
        return plan(idx, boxes, flips, out=out)

    result = benchmark(fastseq)
    record(benchmark, "fastseq", BATCH, numba.config.NUMBA_NUM_THREADS)
    idx = state["last"]
    boxes, flips = reference.resized_crop_params(0, 1, idx[:6], image_size=SOURCE[:2], scale=SCALE, ratio=RATIO)
    expected = reference.resized_crop(data, idx[:6], size=SIZE, boxes=boxes, flips=flips, mean=MEAN, std=STD)
    np.testing.assert_array_equal(result[:6], expected)
    check_convex(result, idx, data)


def numpy_batch(x, indices, rng):
    """The hand-written loader: per sample, torchvision's box from ``rng``, a NumPy bilinear resize, flip, normalise."""
    out = np.empty((len(indices), *SIZE, 3), np.float32)
    H, W = x.shape[1:3]
    h, w = SIZE
    boxes = []
    for k, i in enumerate(indices):
        for _ in range(10):
            area = H * W * rng.uniform(*SCALE)
            aspect = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
            bw, bh = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < bw <= W and 0 < bh <= H:
                top, left = rng.integers(0, H - bh + 1), rng.integers(0, W - bw + 1)
                break
        else:
            top, left, bh, bw = 0, 0, H, W
        box = x[i, top : top + bh, left : left + bw].astype(np.float32)
        ys = np.clip((np.arange(h) + 0.5) * bh / h - 0.5, 0, None)
        xs = np.clip((np.arange(w) + 0.5) * bw / w - 0.5, 0, None)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, bh - 1), np.minimum(x0 + 1, bw - 1)
        fy, fx = (ys - y0)[:, None, None].astype(np.float32), (xs - x0)[None, :, None].astype(np.float32)
        upper = box[y0][:, x0] + (box[y0][:, x1] - box[y0][:, x0]) * fx
        lower = box[y1][:, x0] + (box[y1][:, x1] - box[y1][:, x0]) * fx
        img = upper + (lower - upper) * fy
        if rng.random() < 0.5:
            img = img[:, ::-1]
        out[k] = (img - MEAN) / STD
        boxes.append((top, left, bh, bw))
    return out, boxes


def test_numpy_loop(benchmark, data, batches):
    idx = batches[0]
    result, boxes = benchmark(lambda: numpy_batch(data, idx, np.random.default_rng(0)))
    record(benchmark, "numpy", BATCH, 1)
    check_convex(result, idx, data)
    # the same formula as the kernel: unflipped samples agree with the twin to float32 rounding
    unflipped = reference.resized_crop(data, idx[:4], size=SIZE, boxes=boxes[:4], mean=MEAN, std=STD)
    for k in range(4):
        if not np.allclose(result[k], unflipped[k], atol=1e-4):
            np.testing.assert_allclose(result[k], unflipped[k][:, ::-1], atol=1e-4)


@pytest.mark.slow
def test_tf_data(benchmark, data):
    tf = pytest.importorskip("tensorflow")
    mean32, std32 = tf.constant(MEAN, tf.float32), tf.constant(STD, tf.float32)
    whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])

    def augment(img, position):
        begin, size, box = tf.image.sample_distorted_bounding_box(
            tf.shape(img), whole, area_range=SCALE, aspect_ratio_range=RATIO, max_attempts=10,
            use_image_if_no_bounding_boxes=True, seed=15,
        )
        crop = tf.image.crop_and_resize(tf.cast(img, tf.float32)[None], box[0], [0], SIZE)[0]
        crop = tf.image.random_flip_left_right(crop, seed=15)
        return (crop - mean32) / std32, position

    ds = (
        tf.data.Dataset.from_tensor_slices((data, np.arange(N)))
        .shuffle(N, seed=15)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(BATCH)
        .prefetch(tf.data.AUTOTUNE)
        .repeat()
    )
    it = iter(ds)
    for _ in range(3):
        next(it)
    per_call = 4

    def tf_data():
        for _ in range(per_call):
            xb, pb = next(it)
        return xb.numpy(), pb.numpy()

    result, positions = benchmark.pedantic(tf_data, rounds=5, iterations=1, warmup_rounds=1)
    threads = tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()
    record(benchmark, "tf.data", BATCH * per_call, threads, batches_per_call=per_call)
    check_convex(result, positions, data)
