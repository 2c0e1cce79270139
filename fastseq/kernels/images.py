"""Image kernels: crop + flip, normalise, and the fused gather-crop-flip-normalise pass.

All three public functions run one compiled kernel, ``_fused`` (a
parallel loop around its serial per-thread body ``_fused_block``), in
different configurations: ``crop_flip`` is ``fused`` with the identity
gather and raw uint8 output, ``normalize`` is ``fused`` with the identity
gather and no crop. One kernel means one compilation, one on-disk cache
entry per output dtype, and one piece of code for the tests to prove.

How the pass is laid out. The batch is split into one contiguous block of
samples per thread; each thread runs a serial loop over its block with
its own scratch: one padded image row (``W + 2 * pad`` pixels) and one
row of the fill value. Per output row of a sample:

1. The source row is copied into the middle of the padded row: one
   contiguous copy, or, for a horizontal flip, a pixel-by-pixel backwards
   copy (the padded row of a flipped image is the flipped padded row, so
   the window is then read from the mirrored position). Padding is
   virtual: with ``pad_mode="constant"`` the pad columns hold the fill
   value from the start and are never touched again; with "edge" and
   "reflect" the few pad columns the window needs are copied from the
   source pixels ``np.pad``'s rule names.
2. One straight loop converts the ``w * C`` bytes of the window into the
   output row: ``float32(v) * a + b`` (vectorised), or a 256-entry
   per-channel table of correctly rounded float16/bfloat16 bits, or the raw
   bytes. Rows above or below the image convert the fill row instead.

Every row of a sample runs the same loops with the same trip counts (the
crop position changes only two offsets), so the inner loops are straight
vectorisable runs, and the output is written once, in order, with no
intermediate batch.
"""

import numba
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
def _reverse_pixels(x, p, r, s_last, rows, d0, npix, C):
    """rows[0, d0 + q*C + c] <- x[p, r, (s_last - q)*C + c]: whole pixels of C bytes, backwards."""
    for q in range(npix):
        d = _u(d0) + _u(q) * _u(C)
        s = (_u(s_last) - _u(q)) * _u(C)
        for c in range(C):
            rows[0, d + _u(c)] = x[p, r, s + _u(c)]


@njit(inline="always", **JIT)
def _emit_channels_last(rows, sel, base, out, k, i, rowlen, kind, arow, brow, trow, table):
    """out[k, i, u] <- converted rows[sel, base + u] for u < rowlen: one straight, vectorisable loop."""
    if kind == _AFFINE:
        for u in range(rowlen):
            out[k, i, _u(u)] = np.float32(rows[sel, base + _u(u)]) * arow[u] + brow[u]
    elif kind == _TABLE:
        for u in range(rowlen):
            out[k, i, _u(u)] = table[trow[u] + _u(rows[sel, base + _u(u)])]
    else:
        for u in range(rowlen):
            out[k, i, _u(u)] = rows[sel, base + _u(u)]


@njit(inline="always", **JIT)
def _emit_channels_first(rows, sel, base, out, k, i, w, kind, a, b, table, C):
    """out[k, c, i*w + j] <- converted rows[sel, base + j*C + c]."""
    first = _u(i) * _u(w)
    for c in range(C):
        ac = a[c]
        bc = b[c]
        tb = _u(c) * _u(256)
        for j in range(w):
            v = rows[sel, base + _u(j) * _u(C) + _u(c)]
            if kind == _AFFINE:
                out[k, c, first + _u(j)] = np.float32(v) * ac + bc
            elif kind == _TABLE:
                out[k, c, first + _u(j)] = table[tb + _u(v)]
            else:
                out[k, c, first + _u(j)] = v


@njit(**JIT)
def _fused_block(x, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, out, t0, t1):
    """Samples ``order[t0:t1]`` of :func:`_fused`, serially (one block of the parallel loop)."""
    # Literal output kinds and layouts, so that each copy of the row loops
    # is compiled for one of them: with either tested at run time inside
    # the loops LLVM vectorised the float32 channels_last row poorly
    # (measured 2.4x slower). channels_first keeps a run-time kind: its
    # loops are strided anyway, and each copy costs compile time.
    if channels_first:
        _block(x, indices, order, origins, flips, pad, mode, fill, h, w, kind, True, a, b, table, out, t0, t1)
    elif kind == _AFFINE:
        _block(x, indices, order, origins, flips, pad, mode, fill, h, w, _AFFINE, False, a, b, table, out, t0, t1)
    elif kind == _TABLE:
        _block(x, indices, order, origins, flips, pad, mode, fill, h, w, _TABLE, False, a, b, table, out, t0, t1)
    else:
        _block(x, indices, order, origins, flips, pad, mode, fill, h, w, _RAW, False, a, b, table, out, t0, t1)


@njit(inline="always", **JIT)
def _block(x, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, out, t0, t1):
    """The body of :func:`_fused_block`.

    Per block, ``rows[0]`` is one padded image row (``W + 2*pad`` pixels)
    and ``rows[1]`` a row of the fill value. Per output row, the source row
    is copied into the middle of ``rows[0]`` (backwards, pixel by pixel,
    when flipped: the padded row of a flipped image is the flipped padded
    row), the pad columns the window needs are filled in, and one straight
    loop converts the ``w * C`` bytes of the window into the output row.
    Every row of a sample runs the same loops with the same trip counts, so
    nothing in the row loop depends on the window's position but two offsets.
    """
    C = a.shape[0]
    H = x.shape[1]
    W = x.shape[2] // C
    Wp = W + 2 * pad
    rowlen = w * C
    # Allocated here, not passed in: LLVM then knows they do not alias
    # ``out`` and vectorises the row loops without runtime overlap checks.
    arow = np.empty(rowlen, np.float32)
    brow = np.empty(rowlen, np.float32)
    trow = np.empty(rowlen, np.uint64)
    for u in range(rowlen):
        arow[u] = a[u % C]
        brow[u] = b[u % C]
        trow[u] = (u % C) * 256
    rows = np.empty((2, Wp * C), np.uint8)
    for u in range(Wp * C):
        rows[0, u] = fill  # constant mode: the pad columns of rows[0] are never overwritten
        rows[1, u] = fill
    padsrc = np.empty(Wp, np.int64)  # padded column -> source column (edge/reflect)
    for q in range(Wp):
        padsrc[q] = _source(q, pad, W, mode)
    for t in range(t0, t1):
        k = _u(order[t])
        p = _u(indices[k])
        top = origins[k, 0]
        left = origins[k, 1]
        hflip = (flips[k] & 1) != 0
        vflip = (flips[k] & 2) != 0
        # The window is columns [L, L + w) of the padded row, or of the
        # reversed padded row when flipped. Source pixels [c0, c1) of the
        # (reversed) row fall inside it; the rest of it is padding.
        L = Wp - left - w if hflip else left
        c0 = min(max(L - pad, 0), W)
        c1 = max(min(L + w - pad, W), c0)
        npix = c1 - c0
        dst = _u(pad + c0) * _u(C)
        src0 = _u(c0) * _u(C)
        base = _u(L) * _u(C)
        lpad_end = min(pad, L + w)  # pad columns [L, lpad_end) and [rpad_start, L + w)
        rpad_start = max(pad + W, L)
        for i in range(h):
            r_signed = _source(top + (h - 1 - i if vflip else i), pad, H, mode)
            if r_signed < 0:
                sel = _u(1)
                rbase = _u(0)
            else:
                sel = _u(0)
                rbase = base
                r = _u(r_signed)
                if not hflip:
                    for u in range(npix * C):
                        rows[0, dst + _u(u)] = x[p, r, src0 + _u(u)]
                elif C == 3:
                    _reverse_pixels(x, p, r, W - 1 - c0, rows, dst, npix, 3)
                elif C == 1:
                    _reverse_pixels(x, p, r, W - 1 - c0, rows, dst, npix, 1)
                elif C == 4:
                    _reverse_pixels(x, p, r, W - 1 - c0, rows, dst, npix, 4)
                else:
                    _reverse_pixels(x, p, r, W - 1 - c0, rows, dst, npix, C)
                if mode != _CONSTANT:
                    for q in range(L, lpad_end):
                        s = _u(padsrc[Wp - 1 - q] if hflip else padsrc[q]) * _u(C)
                        for c in range(C):
                            rows[0, _u(q) * _u(C) + _u(c)] = x[p, r, s + _u(c)]
                    for q in range(rpad_start, L + w):
                        s = _u(padsrc[Wp - 1 - q] if hflip else padsrc[q]) * _u(C)
                        for c in range(C):
                            rows[0, _u(q) * _u(C) + _u(c)] = x[p, r, s + _u(c)]
            if not channels_first:
                _emit_channels_last(rows, sel, rbase, out, k, _u(i), rowlen, kind, arow, brow, trow, table)
            elif C == 3:
                _emit_channels_first(rows, sel, rbase, out, k, i, w, kind, a, b, table, 3)
            elif C == 1:
                _emit_channels_first(rows, sel, rbase, out, k, i, w, kind, a, b, table, 1)
            else:
                _emit_channels_first(rows, sel, rbase, out, k, i, w, kind, a, b, table, C)


@njit(**PARALLEL_JIT)
def _fused(x, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, out, blocks):
    """x (N, H, W*C) uint8 -> out (n, h, w*C) channels_last or (n, C, h*w) channels_first.

    ``order`` is a permutation of ``range(n)``: samples are read in that
    order (sorted by source index, for memmap locality) and each is written
    to its own slot, so the output keeps ``indices``' order. ``a``/``b`` are
    per-channel float32 (kind _AFFINE); ``table`` is (C * 256,) uint16 bits
    (kind _TABLE). ``blocks`` (>= 1, the thread count) contiguous runs of
    ``order`` go to the threads, one :func:`_fused_block` call each: a
    serial function per thread, so its scratch rows are its own and array
    reference counts are touched once per thread, not once per sample.
    Numba-compiled; parallel over the batch.
    """
    n = indices.shape[0]
    for blk in prange(blocks):
        _fused_block(
            x, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, out,
            blk * n // blocks, (blk + 1) * n // blocks,
        )


# Not njit(**JIT)(_fused.py_func): Numba's on-disk cache keys on a function's
# name and bytecode, not on ``parallel``, so the two builds would collide.
@njit(**JIT)
def _fused_serial(x, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, out, blocks):
    """The serial twin of :func:`_fused` (same arguments), for processes forked after parallel use."""
    _fused_block(
        x, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, out,
        0, indices.shape[0],
    )


# More blocks than threads, handed out one at a time: when another process
# holds a core, the other threads take over its blocks instead of waiting
# for it (an even split stalled completely under such contention).
_BLOCKS_PER_THREAD = 4

# ``index * n + k`` must fit in int64 for the packed sort keys.
_PACKED_KEY_LIMIT = 1 << 62


@njit(**JIT)
def _in_range_keys(indices, origins, flips, size, max_top, max_left, keys):
    """Whether every index, origin and flip is in range; fills keys[k] = indices[k] * n + k."""
    n = indices.shape[0]
    ok = True
    for k in range(n):
        v = indices[k]
        top = origins[k, 0]
        left = origins[k, 1]
        ok &= (v >= 0) & (v < size) & (top >= 0) & (top <= max_top) & (left >= 0) & (left <= max_left)
        ok &= flips[k] <= 3
        keys[k] = v * n + k
    return ok


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
        n = -1
        if type(indices) is np.ndarray and type(origins) is np.ndarray and type(flips) is np.ndarray:
            # The common case (``random_params``' own arrays): one compiled
            # pass proves every value in range and builds the sort keys. On any
            # doubt the full checks below run and raise their usual errors.
            n = indices.shape[0]
            if (
                n > 0
                and indices.dtype == np.int64
                and origins.dtype == np.int64
                and flips.dtype == np.uint8
                and indices.ndim == 1
                and origins.shape == (n, 2)
                and flips.shape == (n,)
                and indices.flags.c_contiguous
                and origins.flags.c_contiguous
                and flips.flags.c_contiguous
                and self._x.shape[0] * n < _PACKED_KEY_LIMIT
            ):
                keys = np.empty(n, np.int64)
                if not _in_range_keys(indices, origins, flips, self._x.shape[0], *self.max_origin, keys):
                    n = -1
            else:
                n = -1
        if n < 0:
            indices = check.index_array(indices, self._x.shape[0])
            n = indices.shape[0]
            origins = check.origins(origins, n, *self.max_origin)
            flips = check.flip_bits(flips, n)
            keys = None
        out = check.out_array(out, self.output_shape(n), self.dtype, self._x)
        if n == 0:
            return out
        # Read in source order (locality for memmaps), write in batch order:
        # the stable argsort of ``indices``, as a sort of ``index * n + k``
        # (several times faster than ``argsort`` for a batch).
        if keys is None and self._x.shape[0] * n < _PACKED_KEY_LIMIT:
            keys = indices * n + np.arange(n)
        if keys is not None:
            keys.sort()
            order = np.remainder(keys, n, out=keys)
        else:
            order = np.argsort(indices, kind="stable")
        h, w = self.crop
        C = self.image_shape[2]
        target = out.view(np.uint16) if self._kind == _TABLE else out
        target = target.reshape((n, C, h * w) if self.channels_first else (n, h, w * C))
        threads = numba.get_num_threads()
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
            max(1, min(n, threads * _BLOCKS_PER_THREAD if threads > 1 else 1)),
            serial=_fused_serial,
            chunksize=1,
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
