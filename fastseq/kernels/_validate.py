"""Argument checks shared by the kernel wrappers.

Every check names the argument, the value received and what is allowed:
the compiled kernels run without bounds checks, so nothing may reach them
unproven.
"""

import numbers

import numpy as np

PAD_MODES = {"constant": 0, "edge": 1, "reflect": 2}
DATA_FORMATS = ("channels_last", "channels_first")
OUTPUT_DTYPES = ("float32", "float16", "bfloat16", "uint8")


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def images(x, name="x"):
    """Check a uint8 image batch; return a read-only (N, H, W, C) view."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array or np.memmap of uint8 images, got {type(x).__name__}; "
            f"convert it with np.asarray({name}, dtype=np.uint8)."
        )
    if x.dtype != np.uint8:
        raise TypeError(
            f"{name} must have dtype uint8, got {x.dtype}; fastseq reads raw 0..255 pixels: "
            f"convert with {name}.astype(np.uint8) (after scaling to 0..255) and normalise in fastseq."
        )
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be 3-D (N, H, W) grayscale or 4-D (N, H, W, C), got shape {x.shape} ({x.ndim}-D)."
        )
    if x.ndim == 3:
        x = x.reshape(x.shape + (1,)) if x.flags.c_contiguous else x[..., None]
    if min(x.shape[1:]) < 1:
        raise ValueError(f"{name} images must have H, W and C >= 1, got shape {x.shape}.")
    if not x.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (an array of shape {x.shape} with strides {x.strides} is not); "
            f"pass np.ascontiguousarray({name})."
        )
    view = x.view(np.ndarray)
    view.flags.writeable = False  # one compiled specialisation for RAM and read-only memmaps
    return view


def integer(name, value, *, minimum=None, maximum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}.")
    return value


def index_array(indices, size, name="indices"):
    """Check sample indices into an axis of ``size``; return int64 (n,)."""
    arr = np.asarray(indices)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name} must be an array of integers, got {_describe(indices)}.")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}.")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= size:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{name} must lie in [0, {size}) (the number of samples), got {bad}; "
                "negative indices are not accepted."
            )
    return arr


def pad_mode(mode, name="pad_mode"):
    if mode not in PAD_MODES:
        raise ValueError(f"{name} must be one of {tuple(PAD_MODES)}, got {mode!r}.")
    return PAD_MODES[mode]


def crop_size(crop, padded_hw, name="crop"):
    """Check ``crop=(height, width)`` against the padded image size; None means all of it."""
    if crop is None:
        return padded_hw
    try:
        h, w = crop
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (height, width) pair or None, got {_describe(crop)}.") from None
    h = integer(f"{name} height", h, minimum=1)
    w = integer(f"{name} width", w, minimum=1)
    if h > padded_hw[0] or w > padded_hw[1]:
        raise ValueError(
            f"{name}={h}x{w} is larger than the padded image {padded_hw[0]}x{padded_hw[1]}; "
            f"use a crop of at most {padded_hw[0]}x{padded_hw[1]} or more padding."
        )
    return h, w


def origins(values, n, max_top, max_left, name="origins"):
    """Check per-sample crop corners: int (n, 2) within [0, max_top] x [0, max_left]."""
    if values is None:
        return np.zeros((n, 2), dtype=np.int64)
    arr = np.asarray(values)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name} must be an integer array of (top, left) pairs, got {_describe(values)}.")
    if arr.shape != (n, 2):
        raise ValueError(f"{name} must have shape ({n}, 2) (one (top, left) per sample), got {arr.shape}.")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if n:
        lo, hi = arr.min(axis=0), arr.max(axis=0)
        for col, limit, what in ((0, max_top, "top"), (1, max_left, "left")):
            if lo[col] < 0 or hi[col] > limit:
                raise ValueError(
                    f"{name} {what} offsets must lie in [0, {limit}] for this crop and padding, "
                    f"got {int(lo[col]) if lo[col] < 0 else int(hi[col])}."
                )
    return arr


def flip_bits(values, n, name="flips"):
    """Check per-sample flip bits (bit 0 horizontal, bit 1 vertical); return uint8 (n,)."""
    if values is None:
        return np.zeros(n, dtype=np.uint8)
    arr = np.asarray(values)
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool or arr.size == 0):
        raise TypeError(f"{name} must be an integer array of flip bits, got {_describe(values)}.")
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one value per sample), got {arr.shape}.")
    if n and (int(arr.min()) < 0 or int(arr.max()) > 3):
        bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
        raise ValueError(f"{name} values must be 0..3 (bit 0 = horizontal, bit 1 = vertical), got {bad}.")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _channel_values(name, value, channels):
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if np.ndim(value) > 1 or arr.size not in (1, channels):
        raise ValueError(
            f"{name} must be a number or {channels} per-channel values (the images have {channels} "
            f"channel{'s' if channels != 1 else ''}), got {_describe(value)}."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {_describe(value)}.")
    return np.resize(arr, channels)


def affine(channels, mean, std, scale, offset):
    """Reduce the normalisation arguments to per-channel float32 ``(a, b)``: ``v * a + b``.

    Returns ``None`` when no normalisation is asked for.
    """
    standardise = mean is not None or std is not None
    rescale = scale is not None or offset is not None
    if standardise and rescale:
        raise ValueError("give either mean/std or scale/offset, not both.")
    if standardise:
        if mean is None or std is None:
            raise ValueError(f"mean and std go together, got mean={mean!r} and std={std!r}.")
        mean = _channel_values("mean", mean, channels)
        std = _channel_values("std", std, channels)
        if np.any(std <= 0):
            raise ValueError(f"std must be > 0 for every channel, got {std.tolist()}.")
        return (1.0 / std).astype(np.float32), (-mean / std).astype(np.float32)
    if rescale:
        scale = _channel_values("scale", 1.0 if scale is None else scale, channels)
        offset = _channel_values("offset", 0.0 if offset is None else offset, channels)
        return scale.astype(np.float32), offset.astype(np.float32)
    return None


def output_dtype(dtype, normalising):
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in OUTPUT_DTYPES:
        raise ValueError(f"dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}.")
    if name == "uint8" and normalising:
        raise ValueError(
            "dtype='uint8' returns raw pixels and cannot hold normalised values; "
            "drop the normalisation or choose a float dtype."
        )
    return name


def data_format(value):
    if value not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {value!r}.")
    return value == "channels_first"


def out_array(out, shape, dtype, x, name="out"):
    """Check or allocate the output buffer."""
    np_dtype = numpy_dtype(dtype)
    if out is None:
        return np.empty(shape, dtype=np_dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or None, got {type(out).__name__}.")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}.")
    if out.dtype != np_dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(np_dtype).name}, got {out.dtype}.")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.empty({tuple(shape)}, dtype=...) or None.")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable; got a read-only array.")
    if x is not None and np.may_share_memory(out, x):
        raise ValueError(f"{name} must not overlap the input images.")
    return out


def numpy_dtype(name):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


_FILL_CACHE = {}  # (fill, dtype) -> storage value: a batch pays for the conversion once


def fill_value(fill, dtype):
    """``fill`` in the batch's storage type (uint16 bits for the half types)."""
    key = (type(fill), fill, dtype)
    try:
        return _FILL_CACHE[key]
    except (KeyError, TypeError):
        pass
    value = _convert_fill(fill, dtype)
    if len(_FILL_CACHE) < 1024:
        _FILL_CACHE[key] = value
    return value


def _convert_fill(fill, dtype):
    if isinstance(fill, bool) or not isinstance(fill, (int, float, np.integer, np.floating)) or not np.isfinite(fill):
        raise ValueError(f"fill must be a finite number, got {_describe(fill)}.")
    if dtype == "uint8":
        if float(fill) != int(fill) or not 0 <= fill <= 255:
            raise ValueError(f"fill must be an integer 0..255 for a uint8 batch, got {fill!r}.")
        return np.uint8(fill)
    value = np.float32(fill)
    if dtype == "float32":
        return value
    if dtype == "float16" and abs(float(fill)) > 65504:
        raise ValueError(f"fill must lie within float16's range (|fill| <= 65504) for a float16 batch, got {fill!r}.")
    from fastseq.kernels.halfprec import to_half_bits

    return np.uint16(to_half_bits(np.array([value]), dtype)[0])


def half_open_boxes(boxes, shape, image_size, name="boxes", *, where="image"):
    """int64 ``(top, bottom, left, right)`` boxes of ``shape`` (None: any length there), half-open, inside
    the ``h x w`` ``where`` (the image a box is cut from or pasted into)."""
    arr = np.asarray(boxes)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name} must be an integer array of (top, bottom, left, right), got {_describe(boxes)}.")
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        expected = "(" + ", ".join("count" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {arr.shape}.")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size:
        h, w = image_size
        top, bottom, left, right = (arr[..., i] for i in range(4))
        ok = (top >= 0) & (top <= bottom) & (bottom <= h) & (left >= 0) & (left <= right) & (right <= w)
        if not ok.all():
            bad = arr.reshape(-1, 4)[np.flatnonzero(~ok.reshape(-1))[0]].tolist()
            raise ValueError(
                f"{name} must hold (top, bottom, left, right) with 0 <= top <= bottom <= {h} and "
                f"0 <= left <= right <= {w} (half-open, inside the {h}x{w} {where}), got {bad}."
            )
    return arr


def erase_boxes(boxes, n, image_size, name="erase"):
    """int64 (n, count, 4) ``(top, bottom, left, right)`` boxes, half-open, inside the ``h x w`` output."""
    return half_open_boxes(boxes, (n, None, 4), image_size, name, where="output")
