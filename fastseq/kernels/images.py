"""Image kernels: crop + flip, normalise, and the fused gather-crop-flip-normalise pass.

All three public functions run one compiled kernel, ``_fused`` (a
parallel loop around its serial per-thread body ``_fused_block``), in
different configurations: ``crop_flip`` is ``fused`` with the identity
gather and raw uint8 output, ``normalize`` is ``fused`` with the identity
gather and no crop. One kernel means one compilation, one on-disk cache
entry per output dtype, and one piece of code for the tests to prove.

How the pass is laid out. The batch is split into blocks of samples
(several per thread, handed out dynamically); each block runs a serial
loop with its own scratch: one padded image row (``W + 2 * pad`` pixels)
and one row of the fill value. While it works on a sample it prefetches
the image two samples ahead. A sample is made in one of two ways:

1. Unflipped samples with constant padding (channels_last) are converted
   straight from the image: for each output row that shows an image row,
   the ``w * C`` source bytes that start where the window does (bytes
   beyond the image row are read, then overwritten); then the fill value
   over the window's pad columns, and the pad rows.
2. Otherwise, row by row, the source row is first copied into the middle of the padded
   row: one contiguous copy, or, for a horizontal flip, a pixel-by-pixel
   backwards copy that LLVM vectorises with byte shuffles (the padded row
   of a flipped image is the flipped padded row, so the window is then read
   from the mirrored position). Padding is virtual: with
   ``pad_mode="constant"`` the pad columns hold the fill value from the
   start and are never touched again; with "edge" and "reflect" the few pad
   columns the window needs are copied from the source pixels ``np.pad``'s
   rule names. The window is then converted from the padded row.

Conversion is one straight loop over the ``w * C`` values of an output
row: ``float32(v) * a + b`` (vectorised), or a 256-entry per-channel table
of correctly rounded float16/bfloat16 bits, or the raw bytes. Rows above or
below the image convert the fill row instead. Every row of a sample runs
the same loops with the same trip counts (the crop position changes only
offsets), and the output is written once, in order, with no intermediate
batch. Cutout / RandomErasing boxes (``FusedPlan(...)(..., erase=boxes)``)
are filled in by the same block right after its samples, while they are
still in the core's cache: the erased values' stores only, on every thread.
"""

import numba
import numpy as np
from numba import njit, prange, types, uint64
from numba.extending import overload

from fastseq.kernels import _validate as check
from fastseq.kernels import config, quick
from fastseq.kernels._intrinsics import fetch_add, prefetch
from fastseq.kernels.config import JIT, PARALLEL_JIT, announced, launch, mark_warm
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

# Prefetch the image this many samples ahead, at most this many bytes of it.
# The batch's images lie at random places in a data set larger than the
# cache, and the hardware prefetcher starts afresh on each one: prefetching
# the whole image two samples ahead cut a CIFAR batch's gather time by about
# a quarter. Larger images are streamed well enough by the hardware.
_PREFETCH_AHEAD = 2
_PREFETCH_BYTES = 16384


@njit(inline="always", **JIT)
def _emit_channels_first(rows, sel, base, out, k, i, w, kind, a, b, table, C):
    """out[k, c, i*w + j] <- converted rows[sel, base + j*C + c]."""
    first = _u(i) * _u(w)
    if C == 3:
        # RGB: the three planes in one loop with a literal stride, which LLVM
        # vectorises as one interleaved load group (a plane at a time with a
        # run-time stride stayed scalar: NCHW CIFAR took 5.8x the ceiling).
        a0, a1, a2 = a[0], a[1], a[2]
        b0, b1, b2 = b[0], b[1], b[2]
        for j in range(w):
            src = _u(base) + _u(3) * _u(j)
            v0 = rows[sel, src]
            v1 = rows[sel, src + _u(1)]
            v2 = rows[sel, src + _u(2)]
            if kind == _AFFINE:
                out[k, 0, first + _u(j)] = np.float32(v0) * a0 + b0
                out[k, 1, first + _u(j)] = np.float32(v1) * a1 + b1
                out[k, 2, first + _u(j)] = np.float32(v2) * a2 + b2
            elif kind == _TABLE:
                out[k, 0, first + _u(j)] = table[_u(v0)]
                out[k, 1, first + _u(j)] = table[_u(256) + _u(v1)]
                out[k, 2, first + _u(j)] = table[_u(512) + _u(v2)]
            else:
                out[k, 0, first + _u(j)] = v0
                out[k, 1, first + _u(j)] = v1
                out[k, 2, first + _u(j)] = v2
        return
    for c in range(C):
        ac = a[c]
        bc = b[c]
        tb = _u(c) * _u(256)
        for j in range(w):
            v = rows[sel, _u(base) + _u(j) * _u(C) + _u(c)]
            if kind == _AFFINE:
                out[k, c, first + _u(j)] = np.float32(v) * ac + bc
            elif kind == _TABLE:
                out[k, c, first + _u(j)] = table[tb + _u(v)]
            else:
                out[k, c, first + _u(j)] = v


def _fused_block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, eboxes, efill, out, t0, t1):
    """Samples ``order[t0:t1]`` of :func:`_fused`, serially (one block of the parallel loop).

    Compiled through :func:`_fused_block_overload`, which picks one block
    function from the argument types; this Python body is never run.
    """
    raise NotImplementedError("only callable from compiled code")  # pragma: no cover


@overload(_fused_block, jit_options=JIT)
def _fused_block_overload(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b,
                          table, eboxes, efill, out, t0, t1):
    # One compiled function per output kind and layout, so that each copy of
    # the row loops is compiled for one of them: with the kind tested at run
    # time inside the loops LLVM vectorised the float32 channels_last row
    # poorly (measured 2.4x slower), and with all four copies inlined into
    # one function the float32 one ran 1.4x slower than on its own.
    #
    # The copy is chosen here, while types are inferred, not by a branch at
    # run time: the output dtype fixes the kind (float32 -> affine, uint16
    # bits -> half-precision table, uint8 -> raw) and ``channels_first`` is
    # None for channels_last. So a variant compiles only its own copy; with
    # a run-time branch every variant compiled all four and the first batch
    # of a new dtype took 42 s on 2 cores. (channels_first had a run-time
    # kind too, tested per value: NCHW CIFAR ran at 5.8x the ceiling.)
    first = not isinstance(channels_first, types.NoneType)
    if out.dtype == types.float32:
        block = _block_cf_affine if first else _block_affine
    elif out.dtype == types.uint16:
        block = _block_cf_table if first else _block_table
    else:
        block = _block_cf_raw if first else _block_raw

    def impl(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, eboxes, efill,
             out, t0, t1):
        block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, a, b, table, eboxes, efill, out, t0, t1)

    return impl


@njit(**JIT)
def _block_cf_affine(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, a, b, table, eboxes, efill, out, t0, t1):
    _block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, _AFFINE, True, a, b, table, eboxes, efill, out, t0, t1)


@njit(**JIT)
def _block_cf_table(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, a, b, table, eboxes, efill, out, t0, t1):
    _block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, _TABLE, True, a, b, table, eboxes, efill, out, t0, t1)


@njit(**JIT)
def _block_cf_raw(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, a, b, table, eboxes, efill, out, t0, t1):
    _block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, _RAW, True, a, b, table, eboxes, efill, out, t0, t1)


@njit(**JIT)
def _block_affine(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, a, b, table, eboxes, efill, out, t0, t1):
    _block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, _AFFINE, False, a, b, table, eboxes, efill, out, t0, t1)


@njit(**JIT)
def _block_table(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, a, b, table, eboxes, efill, out, t0, t1):
    _block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, _TABLE, False, a, b, table, eboxes, efill, out, t0, t1)


@njit(**JIT)
def _block_raw(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, a, b, table, eboxes, efill, out, t0, t1):
    _block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, _RAW, False, a, b, table, eboxes, efill, out, t0, t1)


@njit(inline="always", **JIT)
def _block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, eboxes, efill, out, t0, t1):
    """The body of :func:`_fused_block`.

    Two ways to make an output row, both ending in one straight loop over
    the ``w * C`` values of the row:

    * Direct (channels_last, constant padding, no flip): convert
      the ``w * C`` source bytes that start where the window does, straight
      from the image (the bytes left or right of the image row are read but
      thrown away), then overwrite the window's pad columns with the
      converted fill value. Taken whenever those bytes lie inside ``xf``.
      A whole sample at a time: its image rows, then the pad columns of all
      of them, then the pad rows; decided per row, with the pad-column
      loops run for every row, the same work took 1.2-1.3x as long.
    * Through a padded row (``W + 2*pad`` pixels of scratch per block): copy
      the source row into its middle (backwards, pixel by pixel, when
      flipped: the padded row of a flipped image is the flipped padded row),
      fill in the pad columns the window needs, and convert the window.

    Every row of a sample runs the same loops with the same trip counts, so
    nothing in the row loop depends on the window's position but offsets.

    The row loops are written out here rather than in helper functions:
    each call of a helper that takes arrays, inlined or not, costs
    reference-count updates per row, and with them this kernel ran at half
    the speed (measured on a CIFAR batch).
    """
    C = a.shape[0]
    WC = W * C
    image = H * WC
    Wp = W + 2 * pad
    rowlen = w * C
    size = xf.shape[0]
    # Allocated here, not passed in: LLVM then knows they do not alias
    # ``out`` and vectorises the row loops without runtime overlap checks.
    arow = np.empty(rowlen, np.float32)
    brow = np.empty(rowlen, np.float32)
    trow = np.empty(rowlen, np.uint64)
    for u in range(rowlen):
        arow[u] = a[u % C]
        brow[u] = b[u % C]
        trow[u] = (u % C) * 256
    # rows[0]: the padded row; rows[1]: the fill value. In constant mode the
    # pad columns of rows[0] hold the fill value and are never overwritten.
    rows = np.empty((2, Wp * C), np.uint8)
    for u in range(Wp * C):
        rows[0, u] = fill
        rows[1, u] = fill
    # The converted fill value at every position of an output row, in the
    # output's own type: pad columns and rows are copied from it.
    fillout = np.empty(rowlen, out.dtype)
    for u in range(rowlen):
        if kind == _AFFINE:
            fillout[u] = np.float32(fill) * arow[u] + brow[u]
        elif kind == _TABLE:
            fillout[u] = table[trow[u] + _u(fill)]
        else:
            fillout[u] = fill
    # The same output with each sample's rows as one axis (out is C-contiguous).
    flat = out.reshape((out.shape[0], out.shape[1] * out.shape[2]))
    padsrc = np.empty(Wp, np.int64)  # padded column -> source column (edge/reflect)
    for q in range(Wp):
        padsrc[q] = _source(q, pad, W, mode)
    ahead = min(image, _PREFETCH_BYTES)
    for t in range(t0, t1):
        if t + _PREFETCH_AHEAD < t1:
            later = _u(indices[order[t + _PREFETCH_AHEAD]]) * _u(image)
            for byte in range(0, ahead, 64):
                prefetch(xf, later + _u(byte))
        k = _u(order[t])
        first = _u(indices[k]) * _u(image)
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
        base = _u(L) * _u(C)
        # Unflipped only: with the rows of an up-down flip in this loop (one of
        # source or output walked backwards) LLVM's checks that the output
        # does not overlap the images failed, and those samples took three
        # times as long as on the row-by-row path (measured).
        if mode == _CONSTANT and not channels_first and not hflip and not vflip:
            # Output rows [o0, o1) show the image rows from r0 on; the
            # others are padding rows.
            o0 = min(max(pad - top, 0), h)
            o1 = max(min(pad + H - top, h), o0)
            r0 = top + o0 - pad
            for i in range(o0):
                for u in range(rowlen):
                    out[k, _u(i), _u(u)] = fillout[_u(u)]
            for i in range(o1, h):
                for u in range(rowlen):
                    out[k, _u(i), _u(u)] = fillout[_u(u)]
            # Direct: output value u of a row is source byte shift + u of
            # its image row (bytes beyond the image row are read, then
            # overwritten by the pad columns [0, jl) and [jr, rowlen)), as
            # long as those bytes lie inside xf.
            shift = (L - pad) * C
            jl = min(max(pad + c0 - L, 0), w) * C
            jr = jl + npix * C
            s_first = np.int64(first) + r0 * WC + shift
            if s_first >= 0 and s_first + (o1 - 1 - o0) * WC + rowlen <= size:
                if C == 1 and rowlen == WC:
                    # Grayscale, window as wide as the image: the image rows of
                    # the output are one contiguous run of the source, so they
                    # are converted in one long loop instead of rows of a few
                    # dozen values (an MNIST row is 28), each paying a loop's
                    # set-up and a scalar remainder: unflipped MNIST samples
                    # 82 -> 42 us a batch of 512 on one thread (measured).
                    src0 = _u(s_first)
                    dst0 = _u(o0) * _u(rowlen)
                    a0 = arow[0]
                    b0 = brow[0]
                    if kind == _AFFINE:
                        for v in range((o1 - o0) * rowlen):
                            flat[k, dst0 + _u(v)] = np.float32(xf[src0 + _u(v)]) * a0 + b0
                    elif kind == _TABLE:
                        for v in range((o1 - o0) * rowlen):
                            flat[k, dst0 + _u(v)] = table[_u(xf[src0 + _u(v)])]
                    else:
                        for v in range((o1 - o0) * rowlen):
                            flat[k, dst0 + _u(v)] = xf[src0 + _u(v)]
                else:
                    for i in range(o0, o1):
                        src = _u(s_first + (i - o0) * WC)
                        ui = _u(i)
                        if kind == _AFFINE:
                            for u in range(rowlen):
                                out[k, ui, _u(u)] = np.float32(xf[src + _u(u)]) * arow[_u(u)] + brow[_u(u)]
                        elif kind == _TABLE:
                            for u in range(rowlen):
                                out[k, ui, _u(u)] = table[trow[_u(u)] + _u(xf[src + _u(u)])]
                        else:
                            for u in range(rowlen):
                                out[k, ui, _u(u)] = xf[src + _u(u)]
                # The pad columns after the rows, each loop only when there
                # are any: per row they cost as much again (measured).
                if jl > 0:
                    for i in range(o0, o1):
                        for u in range(jl):
                            out[k, _u(i), _u(u)] = fillout[_u(u)]
                if jr < rowlen:
                    for i in range(o0, o1):
                        for u in range(jr, rowlen):
                            out[k, _u(i), _u(u)] = fillout[_u(u)]
                continue
        if (
            not vflip
            and mode == _CONSTANT
            and ((C == 3 and (channels_first or hflip)) or (C == 1 and hflip and not channels_first))
        ):
            # RGB to planes, and rows flipped left-right (RGB or grayscale):
            # straight from the image as in the direct path, a flipped row
            # read backwards a pixel at a time. Through the padded row NCHW
            # CIFAR took 5.8x the ceiling's time (3.4x with the planes written
            # in one loop), flipped NHWC CIFAR samples 2.2x and flipped MNIST
            # samples 15x (its 28-byte rows were copied byte by byte).
            # (For grayscale, copying the image turned by 180 degrees into
            # scratch first, or reversing the converted rows in place, were
            # slower than reading backwards: measured.)
            # Output pixel j of a row is source column col0 + j, or right - j
            # when flipped; the reads outside the image row are overwritten
            # by the pad columns [0, jl) and [jr, w).
            o0 = min(max(pad - top, 0), h)
            o1 = max(min(pad + H - top, h), o0)
            r0 = top + o0 - pad
            if hflip:
                right = W + pad - 1 - L
                s_first = np.int64(first) + r0 * WC + right * C
                inside = s_first - C * (w - 1) >= 0 and s_first + (o1 - 1 - o0) * WC + C <= size
                jl = min(max(right - W + 1, 0), w)
                jr = max(min(right + 1, w), jl)
            else:
                s_first = np.int64(first) + r0 * WC + (L - pad) * C
                inside = s_first >= 0 and s_first + (o1 - 1 - o0) * WC + rowlen <= size
                jl = min(max(pad + c0 - L, 0), w)
                jr = jl + npix
            if o1 > o0 and inside:
                if channels_first:
                    for c in range(3):
                        fc = fillout[c]
                        for v in range(o0 * w):
                            out[k, c, _u(v)] = fc
                        for v in range(o1 * w, h * w):
                            out[k, c, _u(v)] = fc
                else:
                    for i in range(o0):
                        for u in range(rowlen):
                            out[k, _u(i), _u(u)] = fillout[_u(u)]
                    for i in range(o1, h):
                        for u in range(rowlen):
                            out[k, _u(i), _u(u)] = fillout[_u(u)]
                if C == 1:  # grayscale comes here only flipped: its rows read backwards
                    a0 = a[0]
                    b0 = b[0]
                    for i in range(o0, o1):
                        src = _u(s_first + (i - o0) * WC)
                        ui = _u(i)
                        if kind == _AFFINE:
                            for u in range(w):
                                out[k, ui, _u(u)] = np.float32(xf[src - _u(u)]) * a0 + b0
                        elif kind == _TABLE:
                            for u in range(w):
                                out[k, ui, _u(u)] = table[_u(xf[src - _u(u)])]
                        else:
                            for u in range(w):
                                out[k, ui, _u(u)] = xf[src - _u(u)]
                        for u in range(jl):
                            out[k, ui, _u(u)] = fillout[_u(u)]
                        for u in range(jr, w):
                            out[k, ui, _u(u)] = fillout[_u(u)]
                    continue
                a0, a1, a2 = a[0], a[1], a[2]
                b0, b1, b2 = b[0], b[1], b[2]
                for i in range(o0, o1):
                    src = _u(s_first + (i - o0) * WC)
                    ui = _u(i)
                    row = _u(i) * _u(w)  # channels_first: where row i starts in each plane
                    for j in range(w):
                        s3 = src - _u(3) * _u(j) if hflip else src + _u(3) * _u(j)
                        v0 = xf[s3]
                        v1 = xf[s3 + _u(1)]
                        v2 = xf[s3 + _u(2)]
                        if channels_first:
                            p0, p1, p2 = (0, row + _u(j)), (1, row + _u(j)), (2, row + _u(j))
                        else:
                            p0, p1, p2 = (ui, _u(3) * _u(j)), (ui, _u(3) * _u(j) + _u(1)), (ui, _u(3) * _u(j) + _u(2))
                        if kind == _AFFINE:
                            out[k, p0[0], p0[1]] = np.float32(v0) * a0 + b0
                            out[k, p1[0], p1[1]] = np.float32(v1) * a1 + b1
                            out[k, p2[0], p2[1]] = np.float32(v2) * a2 + b2
                        elif kind == _TABLE:
                            out[k, p0[0], p0[1]] = table[_u(v0)]
                            out[k, p1[0], p1[1]] = table[_u(256) + _u(v1)]
                            out[k, p2[0], p2[1]] = table[_u(512) + _u(v2)]
                        else:
                            out[k, p0[0], p0[1]] = v0
                            out[k, p1[0], p1[1]] = v1
                            out[k, p2[0], p2[1]] = v2
                    if channels_first:
                        for c in range(3):
                            fc = fillout[c]
                            for j in range(jl):
                                out[k, c, row + _u(j)] = fc
                            for j in range(jr, w):
                                out[k, c, row + _u(j)] = fc
                    else:
                        for u in range(3 * jl):
                            out[k, ui, _u(u)] = fillout[_u(u)]
                        for u in range(3 * jr, rowlen):
                            out[k, ui, _u(u)] = fillout[_u(u)]
                continue
        # Flipped samples, edge or reflect padding, channels_first, and shifted reads that would
        # leave xf: row by row, through the padded row.
        lpad_end = min(pad, L + w)  # pad columns [L, lpad_end) and [rpad_start, L + w)
        rpad_start = max(pad + W, L)
        for i in range(h):
            ui = _u(i)
            r_signed = _source(top + (h - 1 - i if vflip else i), pad, H, mode)
            if r_signed < 0:  # a pad row
                if not channels_first:
                    for u in range(rowlen):
                        out[k, ui, _u(u)] = fillout[_u(u)]
                else:
                    _emit_channels_first(rows, 1, 0, out, k, i, w, kind, a, b, table, C)
                continue
            row = first + _u(r_signed) * _u(WC)
            if not hflip:
                src = row + _u(c0) * _u(C)
                for u in range(npix * C):
                    rows[0, dst + _u(u)] = xf[src + _u(u)]
            elif C == 3:
                # With the literal 3 and each offset one multiply-add of the
                # counter, LLVM vectorises this backwards pixel copy with byte
                # shuffles (with a run-time C it stays byte by byte).
                src = row + _u(W - 1 - c0) * _u(3)
                for q in range(npix):
                    sq = src - _u(3) * _u(q)
                    dq = dst + _u(3) * _u(q)
                    rows[0, dq] = xf[sq]
                    rows[0, dq + _u(1)] = xf[sq + _u(1)]
                    rows[0, dq + _u(2)] = xf[sq + _u(2)]
            elif C == 1:
                # Grayscale: a plain reversed byte copy (with the per-channel
                # inner loop below it ran byte by byte: a flipped MNIST batch
                # took 15x the ceiling's time).
                src = row + _u(W - 1 - c0)
                for q in range(npix):
                    rows[0, dst + _u(q)] = xf[src - _u(q)]
            else:
                src = row + _u(W - 1 - c0) * _u(C)
                for q in range(npix):
                    sq = src - _u(C) * _u(q)
                    dq = dst + _u(C) * _u(q)
                    for c in range(C):
                        rows[0, dq + _u(c)] = xf[sq + _u(c)]
            if mode != _CONSTANT:
                for q in range(L, lpad_end):
                    src = row + _u(padsrc[Wp - 1 - q] if hflip else padsrc[q]) * _u(C)
                    for c in range(C):
                        rows[0, _u(q) * _u(C) + _u(c)] = xf[src + _u(c)]
                for q in range(rpad_start, L + w):
                    src = row + _u(padsrc[Wp - 1 - q] if hflip else padsrc[q]) * _u(C)
                    for c in range(C):
                        rows[0, _u(q) * _u(C) + _u(c)] = xf[src + _u(c)]
            if channels_first:
                _emit_channels_first(rows, 0, base, out, k, i, w, kind, a, b, table, C)
            elif kind == _AFFINE:
                for u in range(rowlen):
                    out[k, ui, _u(u)] = np.float32(rows[0, base + _u(u)]) * arow[_u(u)] + brow[_u(u)]
            elif kind == _TABLE:
                for u in range(rowlen):
                    out[k, ui, _u(u)] = table[trow[_u(u)] + _u(rows[0, base + _u(u)])]
            else:
                for u in range(rowlen):
                    out[k, ui, _u(u)] = rows[0, base + _u(u)]
    if eboxes.shape[0] > 0:
        # Cutout / RandomErasing: the block's samples are still in this
        # core's cache (a block is a few dozen samples), so writing the fill
        # over their boxes here costs the erased values' stores only, on
        # every thread, instead of a serial pass over the finished batch.
        # (Tested per output value inside the row loops instead, the test
        # would stop those loops from vectorising.) Boxes are proven inside
        # the h x w image by the launch.
        ev = efill[0]
        for t in range(t0, t1):
            k = _u(order[t])
            for j in range(eboxes.shape[1]):
                y0, y1 = eboxes[k, j, 0], eboxes[k, j, 1]
                x0, x1 = eboxes[k, j, 2], eboxes[k, j, 3]
                for i in range(y0, y1):
                    if channels_first:
                        for c in range(C):
                            start = _u(i) * _u(w) + _u(x0)
                            for u in range(x1 - x0):
                                out[k, _u(c), start + _u(u)] = ev
                    else:
                        start = _u(x0) * _u(C)
                        for u in range((x1 - x0) * C):
                            out[k, _u(i), start + _u(u)] = ev


@njit(**PARALLEL_JIT)
def _fused(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, eboxes, efill, out, blocks):
    """xf (N*H*W*C,) uint8, the flat images -> out (n, h, w*C) channels_last or (n, C, h*w) channels_first.

    ``order`` is a permutation of ``range(n)``: samples are read in that
    order (sorted by source index for a memory-mapped file) and each is written
    to its own slot, so the output keeps ``indices``' order. ``a``/``b`` are
    per-channel float32 (kind _AFFINE); ``table`` is (C * 256,) uint16 bits
    (kind _TABLE). ``blocks`` (>= 1) contiguous runs of ``order`` go to the
    threads, one :func:`_fused_block` call each: a serial function per
    block, so its scratch rows are its own and array reference counts are
    touched once per block, not once per sample.

    The schedule is dynamic: each thread takes the next block from a shared
    counter until none are left, so when another process holds a core the
    other threads take over its blocks instead of waiting for it. (Numba's
    own dynamic schedule needs its chunk size set from Python around each
    call: a 1-sample launch took 12 us with it and 8 us with the counter.)
    Numba-compiled; parallel over the batch.
    """
    n = indices.shape[0]
    taken = np.zeros(1, np.int64)
    for _ in prange(blocks):  # the static schedule gives each thread some of these; the first takes blocks
        while True:
            blk = fetch_add(taken, 0, 1)
            if blk >= blocks:
                break
            _fused_block(
                xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, eboxes, efill,
                out, blk * n // blocks, (blk + 1) * n // blocks,
            )


# More blocks than threads, handed out one at a time: when another process
# holds a core, the other threads take over its blocks instead of waiting
# for it (an even split stalled completely under such contention). Counted
# from the size of Numba's thread pool, not from the calling thread's
# current setting (a call that costs a microsecond): with fewer threads in
# use, the spare blocks cost a few scratch rows each.
_BLOCKS_PER_THREAD = 4
_MAX_BLOCKS = numba.config.NUMBA_NUM_THREADS * _BLOCKS_PER_THREAD

# ``index * n + k`` must fit in int64 for the packed sort keys.
_PACKED_KEY_LIMIT = 1 << 62


@njit(inline="always", **JIT)
def _in_range(indices, origins, flips, size, max_top, max_left):
    """Whether every index, origin and flip is in range (``order`` is the wrapper's own, always in range)."""
    ok = True
    for k in range(indices.shape[0]):
        v = indices[k]
        top = origins[k, 0]
        left = origins[k, 1]
        ok &= (v >= 0) & (v < size) & (top >= 0) & (top <= max_top) & (left >= 0) & (left <= max_left)
        ok &= flips[k] <= 3
    return ok


@njit(inline="always", **JIT)
def _boxes_inside(eboxes, h, w):
    """Whether every erase box ``(top, bottom, left, right)`` lies inside the ``h x w`` output (none: True)."""
    ok = True
    for k in range(eboxes.shape[0]):
        for j in range(eboxes.shape[1]):
            y0, y1, x0, x1 = eboxes[k, j, 0], eboxes[k, j, 1], eboxes[k, j, 2], eboxes[k, j, 3]
            ok &= (y0 >= 0) & (y0 <= y1) & (y1 <= h) & (x0 >= 0) & (x0 <= x1) & (x1 <= w)
    return ok


@njit(**JIT)
def _checked(xf, H, W, indices, order, origins, flips, size, max_top, max_left, pad, mode, fill, h, w, kind,
             channels_first, a, b, table, eboxes, efill, out, blocks):
    """Prove every per-sample value in range, then run :func:`_fused`; False (nothing run) if not.

    One compiled call per batch for the check and the launch. (Numba's
    thread-count and chunk-size functions, called in here, would stop this
    function from being cached; it needs neither: the calling thread's
    thread count applies, and :func:`_fused` schedules its own blocks.)
    """
    if not (_in_range(indices, origins, flips, size, max_top, max_left) and _boxes_inside(eboxes, h, w)):
        return False
    _fused(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table, eboxes,
           efill, out, blocks)
    return True


# A separate function, not njit(**JIT)(_checked.py_func): Numba's on-disk
# cache keys on a function's name and bytecode, so two builds would collide.
@njit(**JIT)
def _checked_serial(xf, H, W, indices, order, origins, flips, size, max_top, max_left, pad, mode, fill, h, w, kind,
                    channels_first, a, b, table, eboxes, efill, out, blocks):
    """The serial twin of :func:`_checked`, for processes forked after parallel use."""
    if not (_in_range(indices, origins, flips, size, max_top, max_left) and _boxes_inside(eboxes, h, w)):
        return False
    _fused_block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, kind, channels_first, a, b, table,
                 eboxes, efill, out, 0, indices.shape[0])
    return True


def _file_backed(x):
    """Whether ``x``'s memory is a mapped file (``np.memmap``, or a view of one or of an ``mmap``)."""
    import mmap

    while x is not None:
        if isinstance(x, (np.memmap, mmap.mmap)):
            return True
        x = getattr(x, "base", None)
    return False


# Half precision by table, not by arithmetic in the row loops. Measured
# against halfprec's bit arithmetic on ``float32(v) * a + b`` in every row
# loop (a compile-time kind per dtype; same bits on every batch): A/B in one
# process, one thread, best of 3 and of 7 passes over 32 rotating batches,
# time of arithmetic / table (shared 2-core VM, load 1.9-2.9):
#   float16:  CIFAR NHWC 2.2x (batch 256 and 512), NCHW 4.5-4.9x, MNIST 2.5-2.8x
#   bfloat16: CIFAR NHWC 0.72-0.84x, NCHW 3.0-3.3x, MNIST 0.93-1.07x
# float16's rounding is branchy and stays scalar; bfloat16's (a shift and a
# rounding add) vectorises in the NHWC rows but not in the three-plane NCHW
# loop, where the gathers win. So one table for both; the one gain left,
# bfloat16 NHWC at about 0.8x, would take a compiled variant of its own
# (today float16 and bfloat16 share one, both writing uint16 bits).
def _half_table(a, b, dtype):
    """(C * 256,) uint16: the correctly rounded ``float32(v) * a[c] + b[c]`` for every byte v."""
    v = np.arange(256, dtype=np.float32)
    values = v[None, :] * a[:, None] + b[:, None]  # float32 arithmetic, same as the kernel's
    return to_half_bits(values.reshape(-1), dtype)


class ReadOrder:
    """The order in which to read a batch's samples: a permutation of ``range(n)``.

    From a mapped file: sorted by source index (the stable argsort of
    ``indices``, as a sort of ``index * n + k``, several times faster than
    ``argsort``), so pages are read in file order. In RAM: batch order, a
    cached ``arange`` (sorting cost 12 us a batch and bought nothing
    measurable). Shared by the plans of every kernel that gathers samples.
    """

    def __init__(self, x, num_items):
        self._sorted_reads = _file_backed(x)
        self._num_items = num_items
        self._aranges = {}

    def __call__(self, indices):
        n = indices.shape[0]
        if not self._sorted_reads:
            order = self._aranges.get(n)
            if order is None:
                order = np.arange(n, dtype=np.int64)
                order.flags.writeable = False
                self._aranges = {**self._aranges, n: order}  # replaced whole: safe for concurrent readers
            return order
        if self._num_items * n < _PACKED_KEY_LIMIT:
            # Out-of-range indices (refused by the launch) still give an array in range(n).
            keys = indices * n + np.arange(n)
            keys.sort()
            order = np.remainder(keys, n, out=keys)
        else:
            order = np.argsort(indices, kind="stable")
        # Read-only, as the cached order of images in RAM is: Numba types a read-only array apart from a
        # writable one, and a memmap's batches would otherwise compile a specialisation of their own.
        order.flags.writeable = False
        return order


class FusedPlan(config.Tiered):
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
        self._xf = x4.reshape(-1)  # flat: the kernel computes byte offsets itself
        self._read_order = ReadOrder(x, N)
        self.image_shape = (H, W, C)
        self.max_origin = (H + 2 * self.padding - self.crop[0], W + 2 * self.padding - self.crop[1])
        self._variant_key = ("fused", self._kind, self.channels_first)
        self._no_fill = np.zeros(1, np.uint16 if self._kind == _TABLE else check.numpy_dtype(self.dtype))

    def __len__(self):
        return self._x.shape[0]

    def output_shape(self, n):
        """Shape of the output for a batch of ``n`` samples."""
        h, w = self.crop
        C = self.image_shape[2]
        return (n, C, h, w) if self.channels_first else (n, h, w, C)

    def __call__(self, indices, origins=None, flips=None, out=None, *, erase=None, erase_fill=0):
        """Run the fused pass for one batch; see :func:`fused`.

        ``erase``: optional int (n, count, 4) boxes ``(top, bottom, left,
        right)`` per sample, half-open, inside the ``crop`` output (as
        :class:`fastseq.kernels.CutoutParams` and ``ErasingParams`` draw
        them): their values are set to ``erase_fill`` (in output units, after
        normalisation; an integer 0..255 for uint8) within the same pass,
        exactly as :func:`fastseq.kernels.cutout` on the finished batch.
        """
        if erase is None:
            eboxes, efill = _NO_BOXES, self._no_fill
        else:
            efill = self._fill_array(erase_fill)
            eboxes = erase
        n = -1
        if (
            type(indices) is np.ndarray
            and type(origins) is np.ndarray
            and type(flips) is np.ndarray
            and type(eboxes) is np.ndarray
            and indices.dtype == np.int64
            and origins.dtype == np.int64
            and flips.dtype == np.uint8
            and eboxes.dtype == np.int64
            and indices.ndim == 1
            and origins.shape == (indices.shape[0], 2)
            and flips.shape == (indices.shape[0],)
            and eboxes.ndim == 3
            and (eboxes.shape[0] == indices.shape[0] or erase is None)
            and eboxes.shape[2] == 4
            and indices.flags.c_contiguous
            and origins.flags.c_contiguous
            and flips.flags.c_contiguous
            and eboxes.flags.c_contiguous
            and indices.shape[0] > 0
        ):
            # The common case (``random_params``' own arrays): the compiled
            # launch proves every value in range before it runs anything. If
            # one is not, nothing runs and the full checks below raise the
            # usual error.
            n = indices.shape[0]
            out = check.out_array(out, self.output_shape(n), self.dtype, self._x)
            if self._launch(indices, self._read_order(indices), origins, flips, out, eboxes, efill):
                return out
        indices = check.index_array(indices, self._x.shape[0])
        n = indices.shape[0]
        origins = check.origins(origins, n, *self.max_origin)
        flips = check.flip_bits(flips, n)
        if erase is not None:
            eboxes = check.erase_boxes(erase, n, self.crop)
        out = check.out_array(out, self.output_shape(n), self.dtype, self._x)
        if n > 0 and not self._launch(indices, self._read_order(indices), origins, flips, out, eboxes, efill):
            raise AssertionError("fused kernel refused arguments that passed every check")  # pragma: no cover
        return out

    def _fill_array(self, fill):
        """``fill`` as a 1-element array in the kernel's output storage type (uint16 bits for half types)."""
        value = check.fill_value(fill, self.dtype)
        return np.full(1, value, value.dtype)

    @property
    def variant(self):
        """What this plan's compiled kernel is specialised for: its output dtype and layout."""
        return f"{self.dtype} {self.data_format}"

    @property
    def _tier_kernels(self):
        return (_checked, _checked_serial)

    @property
    def _tier_what(self):
        return f"the fused kernel for {self.variant} batches"

    def _tier_example(self):
        one = np.zeros(1, np.int64)
        out = np.empty(self.output_shape(1), check.numpy_dtype(self.dtype))
        return self._kernel_args(one, self._read_order(one), np.zeros((1, 2), np.int64), np.zeros(1, np.uint8), out)

    def _launch(self, indices, order, origins, flips, out, eboxes, efill):
        if self._numpy_tier():
            return quick.fused(*self._kernel_args(indices, order, origins, flips, out, eboxes, efill))
        return announced(self._variant_key, f"the fused kernel for {self.variant} batches", self._launch_warm,
                         indices, order, origins, flips, out, eboxes, efill)

    def _launch_warm(self, indices, order, origins, flips, out, eboxes=None, efill=None):
        args = self._kernel_args(indices, order, origins, flips, out, eboxes, efill)
        return launch(_checked, *args, serial=_checked_serial, work=out.nbytes)

    def _kernel_args(self, indices, order, origins, flips, out, eboxes=None, efill=None):
        """The arguments of :func:`_checked` (and :func:`_checked_serial`) for one batch."""
        h, w = self.crop
        C = self.image_shape[2]
        n = indices.shape[0]
        target = out.view(np.uint16) if self._kind == _TABLE else out
        target = target.reshape((n, C, h * w) if self.channels_first else (n, h, w * C))
        if eboxes is None:
            eboxes, efill = _NO_BOXES, self._no_fill
        return (
            self._xf,
            self.image_shape[0],
            self.image_shape[1],
            indices,
            order,
            origins,
            flips,
            self._x.shape[0],
            self.max_origin[0],
            self.max_origin[1],
            self.padding,
            self._mode,
            self.fill,
            h,
            w,
            self._kind,
            True if self.channels_first else None,  # the layout is a type: see _fused_block_overload
            self._a,
            self._b,
            self._table,
            eboxes,
            efill,
            target,
            min(n, _MAX_BLOCKS),
        )

    def compile(self, *, serial=False):
        """Compile (or load from the on-disk cache) this plan's kernel variant without a batch to make.

        Runs the variant once on one sample. With ``serial``, also the serial
        twin that processes forked after parallel use run
        (``use_multiprocessing=True``).
        """
        one = np.zeros(1, np.int64)
        origins, flips = np.zeros((1, 2), np.int64), np.zeros(1, np.uint8)
        out = np.empty(self.output_shape(1), check.numpy_dtype(self.dtype))
        # The batches' own read order: a cached read-only arange for images in RAM, which Numba types apart
        # from a writable array (a writable one here compiled a specialisation no batch used).
        order = self._read_order(one)
        self._launch_warm(one, order, origins, flips, out)  # no compile notice: the caller asked for this
        mark_warm(self._variant_key)
        if serial:
            _checked_serial(*self._kernel_args(one, order, origins, flips, out))


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
    read in sorted source order from a memory-mapped file (locality) but written in
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
# No Cutout / erasing. Writeable, as the drawn boxes are: Numba compiles a
# read-only array as another type, so another variant of the whole kernel.
_NO_BOXES = np.zeros((0, 0, 4), dtype=np.int64)


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
