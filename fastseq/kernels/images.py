"""Image kernels: crop + flip, normalise, and the fused gather-crop-flip-normalise pass.

All three public functions run one compiled kernel, ``_fused``, in
different configurations: ``crop_flip`` is ``fused`` with the identity
gather and raw uint8 output, ``normalize`` is ``fused`` with the identity
gather and no crop. One kernel means one compilation, one on-disk cache
entry per output dtype, and one piece of code for the tests to prove.

How the pass is laid out (per output row of one sample):

1. The padded, cropped and flipped source row is assembled as ``w * C``
   uint8 bytes in a small per-sample scratch row. Padding is virtual: a
   source coordinate outside the image is mapped by ``np.pad``'s rule for
   the pad mode, or to the fill value. Columns are mapped once per sample;
   rows once per row; the unflipped interior is one contiguous copy.
2. One straight loop converts that row into the output row:
   ``float32(v) * a + b`` (vectorised), or a 256-entry per-channel table of
   correctly rounded float16/bfloat16 bits, or the raw bytes.

So the inner loop never branches on padding or flips, and the output is
written once, in order, with no intermediate batch.
"""

import numpy as np
from numba import njit, prange, uint64

from fastseq.kernels import _validate as check
from fastseq.kernels.config import JIT, PARALLEL_JIT, launch
from fastseq.kernels.halfprec import to_half_bits

# Output kinds of the fused kernel.
_RAW, _AFFINE, _TABLE = 0, 1, 2
_CONSTANT, _EDGE, _REFLECT = 0, 1, 2


@njit(inline="always", **JIT)
def _source(q, pad, n, mode):
    """Padded coordinate ``q`` -> image coordinate, or -1 for the constant fill."""
    s = q - pad
    if s >= 0 and s < n:
        return s
    if mode == _CONSTANT:
        return -1
    if mode == _EDGE:
        return 0 if s < 0 else n - 1
    if n == 1:  # np.pad reflects a single pixel onto itself
        return 0
    period = 2 * (n - 1)
    s = s % period  # Python semantics: non-negative
    if s >= n:
        s = period - s
    return s


# Index arithmetic is done in uint64 on purpose: Numba adds a negative-index
# wrap-around test to every signed index that is not a bare loop counter,
# and that test stops LLVM from vectorising the row loops (measured 5-8x).
# The wrapper has proven every index in range, so unsigned is exact.
_u = uint64


@njit(inline="always", **JIT)
def _copy_pixels(x, src, r, s_first, step_back, npix, buf, d_first, C):
    """buf[d_first + q] <- x[src, r, s_first -/+ q], whole pixels of C bytes."""
    for q in range(npix):
        d = (_u(d_first) + _u(q)) * _u(C)
        if step_back:
            s = (_u(s_first) - _u(q)) * _u(C)
        else:
            s = (_u(s_first) + _u(q)) * _u(C)
        for c in range(C):
            buf[d + _u(c)] = x[src, r, s + _u(c)]


@njit(inline="always", **JIT)
def _border_pixel(x, src, r, s, fill, buf, j, C):
    d = _u(j) * _u(C)
    if s < 0:
        for c in range(C):
            buf[d + _u(c)] = fill
    else:
        for c in range(C):
            buf[d + _u(c)] = x[src, r, _u(s) * _u(C) + _u(c)]


@njit(inline="always", **JIT)
def _emit_channels_first(buf, out, k, i, w, kind, a, b, table, C):
    base = _u(i) * _u(w)
    for c in range(C):
        ac = a[c]
        bc = b[c]
        tb = _u(c) * _u(256)
        for j in range(w):
            v = buf[_u(j) * _u(C) + _u(c)]
            if kind == _AFFINE:
                out[k, c, base + _u(j)] = np.float32(v) * ac + bc
            elif kind == _TABLE:
                out[k, c, base + _u(j)] = table[tb + _u(v)]
            else:
                out[k, c, base + _u(j)] = v


@njit(**PARALLEL_JIT)
def _fused(x, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, out):
    """x (N, H, W*C) uint8 -> out (n, h, w*C) channels_last or (n, C, h*w) channels_first.

    ``order`` is a permutation of ``range(n)``: samples are read in that
    order (sorted by source index, for memmap locality) and each is written
    to its own slot, so the output keeps ``indices``' order. ``a``/``b`` are
    per-channel float32 (kind _AFFINE); ``table`` is (C * 256,) uint16 bits
    (kind _TABLE). Numba-compiled; parallel over the batch.
    """
    n = indices.shape[0]
    H = x.shape[1]
    C = a.shape[0]
    W = x.shape[2] // C
    rowlen = w * C
    # Per-position affine coefficients and table bases for the straight
    # channels_last loop: position u of a row holds channel u % C.
    arow = np.empty(rowlen, np.float32)
    brow = np.empty(rowlen, np.float32)
    trow = np.empty(rowlen, np.uint64)
    for u in range(rowlen):
        arow[u] = a[u % C]
        brow[u] = b[u % C]
        trow[u] = (u % C) * 256
    # No array views inside the parallel loop: each view bumps the parent's
    # shared reference count atomically, and the threads then fight over
    # one cache line. Everything below indexes the arrays directly.
    for t in prange(n):
        k = _u(order[t])
        src = _u(indices[k])
        top = origins[k, 0]
        left = origins[k, 1]
        hflip = (flips[k] & 1) != 0
        vflip = (flips[k] & 2) != 0
        buf = np.empty(rowlen, np.uint8)
        cols = np.empty(w, np.int64)
        for j in range(w):
            cols[j] = _source(left + (w - 1 - j if hflip else j), pad, W, mode)
        # Output columns [j0, j1) read source pixels that lie inside the
        # image: one contiguous run, forwards or (flipped) backwards.
        if hflip:
            j0 = min(max(left + w - pad - W, 0), w)
            j1 = max(min(left + w - pad, w), j0)
            s_first = left + w - 1 - j0 - pad  # source pixel of column j0
        else:
            j0 = min(max(pad - left, 0), w)
            j1 = max(min(pad + W - left, w), j0)
            s_first = left + j0 - pad
        npix = j1 - j0
        for i in range(h):
            r_signed = _source(top + (h - 1 - i if vflip else i), pad, H, mode)
            r = _u(max(r_signed, 0))
            if r_signed < 0:
                for u in range(rowlen):
                    buf[u] = fill
            else:
                # Border columns (outside the image): few, one pixel at a time.
                for j in range(j0):
                    _border_pixel(x, src, r, cols[j], fill, buf, j, C)
                for j in range(j1, w):
                    _border_pixel(x, src, r, cols[j], fill, buf, j, C)
                if not hflip:
                    base_s = _u(s_first) * _u(C)
                    base_d = _u(j0) * _u(C)
                    for u in range(npix * C):
                        buf[base_d + _u(u)] = x[src, r, base_s + _u(u)]
                elif C == 3:
                    _copy_pixels(x, src, r, s_first, True, npix, buf, j0, 3)
                elif C == 1:
                    _copy_pixels(x, src, r, s_first, True, npix, buf, j0, 1)
                elif C == 4:
                    _copy_pixels(x, src, r, s_first, True, npix, buf, j0, 4)
                else:
                    _copy_pixels(x, src, r, s_first, True, npix, buf, j0, C)
            if channels_first:
                if C == 3:
                    _emit_channels_first(buf, out, k, i, w, kind, a, b, table, 3)
                elif C == 1:
                    _emit_channels_first(buf, out, k, i, w, kind, a, b, table, 1)
                else:
                    _emit_channels_first(buf, out, k, i, w, kind, a, b, table, C)
            elif kind == _AFFINE:
                for u in range(rowlen):
                    out[k, _u(i), _u(u)] = np.float32(buf[u]) * arow[u] + brow[u]
            elif kind == _TABLE:
                for u in range(rowlen):
                    out[k, _u(i), _u(u)] = table[trow[u] + _u(buf[u])]
            else:
                for u in range(rowlen):
                    out[k, _u(i), _u(u)] = buf[u]


def _half_table(a, b, dtype):
    """(C * 256,) uint16: the correctly rounded ``float32(v) * a[c] + b[c]`` for every byte v."""
    v = np.arange(256, dtype=np.float32)
    values = v[None, :] * a[:, None] + b[:, None]  # float32 arithmetic, same as the kernel's
    return to_half_bits(values.reshape(-1), dtype)


class FusedPlan:
    """A validated, reusable configuration of :func:`fused` for one image array.

    Everything that does not change from batch to batch (the images, crop,
    padding, normalisation, dtype, layout, the half-precision table) is
    checked and prepared once here; each call then checks only its own
    ``indices``, ``origins``, ``flips`` and ``out``. This is what a sequence
    holds, so ``__getitem__`` stays cheap. Arguments are those of
    :func:`fused`. Instances are immutable and safe to share between threads.
    """

    def __init__(
        self,
        x,
        *,
        crop=None,
        padding=0,
        pad_mode="constant",
        fill=0,
        mean=None,
        std=None,
        scale=None,
        offset=None,
        dtype="float32",
        data_format="channels_last",
    ):
        x4 = check.images(x)
        N, H, W, C = x4.shape
        self.padding = check.integer("padding", padding, minimum=0)
        self._mode = check.pad_mode(pad_mode)
        self.pad_mode = pad_mode
        self.fill = check.integer("fill", fill, minimum=0, maximum=255)
        self.crop = check.crop_size(crop, (H + 2 * self.padding, W + 2 * self.padding))
        coeffs = check.affine(C, mean, std, scale, offset)
        self.dtype = check.output_dtype(dtype, coeffs is not None)
        self.channels_first = check.data_format(data_format)
        self.data_format = data_format
        a, b = coeffs if coeffs is not None else (np.ones(C, np.float32), np.zeros(C, np.float32))
        if self.dtype == "uint8":
            self._kind, self._table = _RAW, _NO_TABLE
        elif self.dtype == "float32":
            self._kind, self._table = _AFFINE, _NO_TABLE
        else:
            self._kind, self._table = _TABLE, _half_table(a, b, self.dtype)
        self._a, self._b = a, b
        self._x = x4
        self._x3 = x4.reshape(N, H, W * C)
        self.image_shape = (H, W, C)
        self.max_origin = (H + 2 * self.padding - self.crop[0], W + 2 * self.padding - self.crop[1])

    def __len__(self):
        return self._x.shape[0]

    def output_shape(self, n):
        """Shape of the output for a batch of ``n`` samples."""
        h, w = self.crop
        C = self.image_shape[2]
        return (n, C, h, w) if self.channels_first else (n, h, w, C)

    def __call__(self, indices, origins=None, flips=None, out=None):
        """Run the fused pass for one batch; see :func:`fused`."""
        indices = check.index_array(indices, self._x.shape[0])
        n = indices.shape[0]
        origins = check.origins(origins, n, *self.max_origin)
        flips = check.flip_bits(flips, n)
        out = check.out_array(out, self.output_shape(n), self.dtype, self._x)
        if n == 0:
            return out
        h, w = self.crop
        C = self.image_shape[2]
        target = out.view(np.uint16) if self._kind == _TABLE else out
        target = target.reshape((n, C, h * w) if self.channels_first else (n, h, w * C))
        # Read in source order (locality for memmaps), write in batch order.
        order = np.argsort(indices, kind="stable")
        launch(
            _fused,
            self._x3,
            indices,
            order,
            origins,
            flips,
            self.padding,
            self._mode,
            self.fill,
            h,
            w,
            self._kind,
            self.channels_first,
            self._a,
            self._b,
            self._table,
            target,
        )
        return out


def fused(
    x,
    indices,
    *,
    crop=None,
    origins=None,
    flips=None,
    padding=0,
    pad_mode="constant",
    fill=0,
    mean=None,
    std=None,
    scale=None,
    offset=None,
    dtype="float32",
    data_format="channels_last",
    out=None,
):
    """Gather, pad, crop, flip, normalise and lay out a batch in one pass.

    For each ``k``: take image ``x[indices[k]]``, pad it (virtually) by
    ``padding`` pixels on every side with ``np.pad``'s ``pad_mode``, take the
    ``crop`` window whose top-left corner is ``origins[k]`` in padded
    coordinates, flip it left-right if bit 0 of ``flips[k]`` is set and
    up-down if bit 1 is, then map every pixel ``v`` of channel ``c`` to
    ``(v - mean[c]) / std[c]`` or ``v * scale[c] + offset[c]`` (computed as
    ``float32(v) * a[c] + b[c]`` with ``a``, ``b`` rounded to float32 once),
    rounded to ``dtype``.

    Numba-compiled; parallel over the batch; releases the GIL. Samples are
    read in sorted source order (memmap locality) but written in
    ``indices``' order. For repeated calls on the same images, build a
    :class:`FusedPlan` once instead.

    Args:
        x: uint8 images, (N, H, W, C) or (N, H, W) (C = 1); C-contiguous;
            an in-RAM array or a read-only ``np.memmap``.
        indices: 1-D integers in ``[0, N)``; may repeat; may be empty.
        crop: ``(height, width)`` of the window, at most the padded size;
            None keeps the whole padded image.
        origins: int (n, 2) ``(top, left)`` per sample, each in
            ``[0, H + 2 * padding - height]`` x ``[0, W + 2 * padding - width]``;
            None means (0, 0).
        flips: int (n,) of flip bits 0..3; None means no flips.
        padding: pixels added on every side (>= 0).
        pad_mode: "constant" (with ``fill``), "edge" or "reflect".
        fill: the constant pad value, 0..255.
        mean, std: per-channel (or scalar) standardisation, pixel units.
        scale, offset: per-channel (or scalar) affine ``v * scale + offset``.
        dtype: "float32", "float16", "bfloat16" (ml_dtypes) or "uint8"
            (raw pixels; no normalisation allowed).
        data_format: "channels_last" -> (n, h, w, C);
            "channels_first" -> (n, C, h, w).
        out: optional preallocated C-contiguous output of that shape and dtype.

    Returns:
        The output batch (``out`` if given), always 4-D.

    Raises:
        TypeError, ValueError: naming the argument and the value received.
    """
    plan = FusedPlan(
        x,
        crop=crop,
        padding=padding,
        pad_mode=pad_mode,
        fill=fill,
        mean=mean,
        std=std,
        scale=scale,
        offset=offset,
        dtype=dtype,
        data_format=data_format,
    )
    return plan(indices, origins, flips, out)


_NO_TABLE = np.zeros(256, dtype=np.uint16)
_NO_TABLE.flags.writeable = False


def crop_flip(x, origins, flips, crop, *, padding=0, pad_mode="constant", fill=0, out=None):
    """Pad (virtually), crop at per-sample corners and flip per sample; uint8 in, uint8 out.

    Equivalent to ``fused(x, range(len(x)), crop=crop, origins=origins,
    flips=flips, padding=padding, pad_mode=pad_mode, fill=fill,
    dtype="uint8")``; see :func:`fused` for the argument contract.

    Numba-compiled; parallel over the batch.

    Returns:
        uint8 (N, height, width, C) (``out`` if given).
    """
    x4 = check.images(x)
    return fused(
        x4,
        np.arange(x4.shape[0]),
        crop=crop,
        origins=origins,
        flips=flips,
        padding=padding,
        pad_mode=pad_mode,
        fill=fill,
        dtype="uint8",
        out=out,
    )


def normalize(
    x, *, mean=None, std=None, scale=None, offset=None, dtype="float32", data_format="channels_last", out=None
):
    """Per-channel ``(v - mean) / std`` or ``v * scale + offset``, to float32/float16/bfloat16.

    With no normalisation arguments and ``dtype="uint8"`` the pixels pass
    through unchanged (only the layout may change); with a float dtype and no
    arguments they are converted as they are. ``data_format`` selects
    (N, H, W, C) or (N, C, H, W) output. Half precision is rounded to
    nearest even, exactly as ``numpy.astype``. See :func:`fused`.

    Numba-compiled; parallel over the batch.
    """
    x4 = check.images(x)
    return fused(
        x4,
        np.arange(x4.shape[0]),
        mean=mean,
        std=std,
        scale=scale,
        offset=offset,
        dtype=dtype,
        data_format=data_format,
        out=out,
    )
