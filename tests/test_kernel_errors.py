"""Bad input to the kernels raises a clear ValueError/TypeError naming the argument and the value."""

import numpy as np
import pytest

import fastseq.kernels as K

X = np.zeros((10, 8, 8, 3), np.uint8)


def fused(**kw):
    args = dict(x=X, indices=np.arange(4))
    args.update(kw)
    return K.fused(args.pop("x"), args.pop("indices"), **args)


CASES = [
    ("float images", dict(x=X.astype(np.float32)), TypeError, r"x must have dtype uint8, got float32"),
    ("list images", dict(x=[[1]]), TypeError, r"x must be a numpy array.*got list"),
    ("2-D images", dict(x=np.zeros((10, 8), np.uint8)), ValueError, r"x must be 3-D.*got shape \(10, 8\)"),
    ("5-D images", dict(x=np.zeros((1, 2, 2, 2, 2), np.uint8)), ValueError, r"got shape \(1, 2, 2, 2, 2\)"),
    ("non-contiguous", dict(x=X[:, ::2]), ValueError, r"C-contiguous.*np.ascontiguousarray"),
    ("negative index", dict(indices=[0, -1]), ValueError, r"indices must lie in \[0, 10\).*got -1"),
    ("index too large", dict(indices=[3, 10]), ValueError, r"indices must lie in \[0, 10\).*got 10"),
    ("float indices", dict(indices=[0.5]), TypeError, r"indices must be an array of integers"),
    ("2-D indices", dict(indices=[[0, 1]]), ValueError, r"indices must be 1-D, got shape \(1, 2\)"),
    ("crop too big", dict(crop=(12, 8), padding=1), ValueError, r"crop=12x8 is larger than the padded image 10x10"),
    ("negative padding", dict(padding=-1), ValueError, r"padding must be >= 0, got -1"),
    ("unknown pad mode", dict(pad_mode="wrap"), ValueError, r"pad_mode must be one of.*got 'wrap'"),
    ("fill out of range", dict(fill=256), ValueError, r"fill must be <= 255, got 256"),
    ("mean wrong length", dict(mean=[1, 2], std=[1, 1, 1]), ValueError, r"mean must be a number or 3 per-channel"),
    ("std wrong length", dict(mean=1, std=[1, 2, 3, 4]), ValueError, r"std must be a number or 3 per-channel"),
    ("std zero", dict(mean=0, std=[1, 0, 1]), ValueError, r"std must be > 0 for every channel, got \[1.0, 0.0, 1.0\]"),
    ("std nan", dict(mean=0, std=[1, np.nan, 1]), ValueError, r"std must be finite"),
    ("mean without std", dict(mean=1), ValueError, r"mean and std go together"),
    ("both normalisations", dict(mean=1, std=1, scale=2), ValueError, r"either mean/std or scale/offset"),
    ("uint8 with normalise", dict(dtype="uint8", mean=1, std=1), ValueError, r"dtype='uint8'.*cannot hold normalised"),
    ("unknown dtype", dict(dtype="float64"), ValueError, r"dtype must be one of.*got 'float64'"),
    ("unknown data_format", dict(data_format="NHWC"), ValueError, r"data_format must be one of.*got 'NHWC'"),
    ("origins shape", dict(crop=(4, 4), origins=np.zeros((3, 2), int)), ValueError, r"origins must have shape \(4, 2\).*got \(3, 2\)"),
    ("origin out of range", dict(crop=(4, 4), origins=[[0, 0], [0, 5], [0, 0], [0, 0]]), ValueError, r"origins left offsets must lie in \[0, 4\].*got 5"),
    ("negative origin", dict(crop=(4, 4), origins=[[-1, 0]] * 4), ValueError, r"origins top offsets.*got -1"),
    ("flip bits", dict(flips=[0, 1, 2, 4]), ValueError, r"flips values must be 0..3.*got 4"),
    ("flips shape", dict(flips=[0, 1]), ValueError, r"flips must have shape \(4,\).*got \(2,\)"),
    ("out wrong shape", dict(out=np.empty((4, 8, 8, 1), np.float32)), ValueError, r"out must have shape \(4, 8, 8, 3\), got \(4, 8, 8, 1\)"),
    ("out wrong dtype", dict(out=np.empty((4, 8, 8, 3), np.float64)), TypeError, r"out must have dtype float32, got float64"),
    ("out not contiguous", dict(out=np.empty((4, 8, 8, 6), np.float32)[..., ::2]), ValueError, r"out must be C-contiguous"),
    ("out read-only", dict(out=np.lib.stride_tricks.as_strided(np.empty((4, 8, 8, 3), np.float32), writeable=False)), ValueError, r"out must be writeable"),
    ("crop not a pair", dict(crop=5), TypeError, r"crop must be a \(height, width\) pair or None, got 5"),
]


@pytest.mark.parametrize("kwargs,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fused_rejects(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fused(**kwargs)


def test_gather_rejects_object_arrays_and_bad_out():
    with pytest.raises(TypeError, match="object"):
        K.gather(np.array([object()] * 3), [0])
    with pytest.raises(ValueError, match=r"out must have shape \(2,\) and dtype int64"):
        K.gather(np.arange(5), [0, 1], out=np.empty(3, np.int64))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\).*got 5"):
        K.gather(np.arange(5), [5])


def test_half_bits_rejects_unknown_dtype():
    with pytest.raises(ValueError, match=r"dtype must be 'float16' or 'bfloat16', got 'float8'"):
        K.to_half_bits(np.zeros(3, np.float32), "float8")
