"""The augmentation pass: each sample resampled once from its original image, colored in cache, converted.

What a sample goes through, as a program of stages shared by the batch
(``prog``, int64 ``(S, 5)``, made by ``fastseq.augment.chain``):

* ``STAGE_WARP`` ``[0, run, field, 0, gate]``: resample through run ``run``'s
  3x3 matrix (``mats[b, run]``, the composition of the crop, the flips and
  the run's geometric ops) and, where ``field >= 0``, the displacement
  field ``fields[b, field]`` of an elastic op, with the run's
  interpolation, border rule and fill (``run_interp``, ``run_mode``,
  ``run_fill``). Stage 0 is always a warp, and reads the uint8 source
  image; a later one (after a color op) reads the sample's float32 values.
* ``STAGE_COLOR`` ``[1, code, start, stop, gate]``: color op ``code``
  (``fastseq.kernels.color``) on the sample's values in place, with its
  parameters ``cparams[b, start:stop]``.

A stage with ``gate >= 0`` runs only for the samples whose
``cparams[b, gate]`` is not 0: a policy (RandAugment, ...) lists every op it
may choose, and each sample's draws switch on the ones it chose. Stage 0
is never gated.

Stages only the ``extended`` variant runs (AugMix, TrivialAugmentWide,
``Lambda``), never gated:

* ``STAGE_EXTRA`` ``[2, code, start, stop, gate]`` (may be gated): a
  torchvision color op (``fastseq.kernels.tv_color``).
* ``STAGE_SAVE`` ``[3, 0, 0, 0, -1]``: keep the sample (the *original* of
  AugMix) and zero the accumulator.
* ``STAGE_ACCUM`` ``[4, col, 0, 0, -1]``: ``acc += cparams[b, col] * x``, then
  ``x`` = the kept sample again (the next chain starts from the original).
* ``STAGE_BLEND`` ``[5, col, 0, 0, -1]``: ``x = clip(m * kept + (1 - m) * acc,
  0, 255)`` with ``m = cparams[b, col]``.
* ``STAGE_LAMBDA`` ``[6, i, start, stop, -1]``: the user's function
  ``lambdas[i]`` on each sample's values with its draws
  ``cparams[b, start:stop]``. The pass is split there: the stages before
  write float32 values (pixel units, unrounded) into a batch buffer, a
  small compiled loop specialised on the function runs it over the samples
  (Python threads over chunks, as the pass), and the stages after read the
  buffer back (their stage 0 is a placeholder, skipped).

Then the values are normalised (``float32(v) * a[c] + b[c]``, no FMA) and
written once into the batch in its dtype and layout: float32, float16 or
bfloat16 (correctly rounded bits through a uint16 view), or uint8 (rounded
half to even and clipped, as ``np.rint``). Nothing is rounded between
stages.

Four compiled variants, so a sequence compiles only the families it uses:
``copy`` (a crop with flips and color ops: an integer window copied, the
warp not compiled), ``warp`` (geometric ops, no color code compiled),
``warp_color``, and ``extended`` (everything, plus the stages above: only a
sequence with AugMix, TrivialAugmentWide or a ``Lambda`` compiles it). Each is a compiled loop over a range of the batch's
samples, run on Python threads (``run_split``; the loops release the GIL)
around one per-sample function. Numba-compiled; parallel over the batch.
"""

import numba
import numpy as np
from numba import njit

from fastseq.kernels import _validate as check
from fastseq.kernels.color import _color_op
from fastseq.kernels.config import JIT, RESAMPLE_COST, announced, mark_warm, run_split, threads_for
from fastseq.kernels.halfprec import f32_to_bf16_bits, f32_to_f16_bits
from fastseq.kernels.tv_color import TV_LAST, _tv_op
from fastseq.kernels.warp import FILL_CONSTANT, FILL_MIRROR, FILL_NEAREST, FILL_REFLECT, FILL_WRAP, _warp_sample

STAGE_WARP, STAGE_COLOR = 0, 1
STAGE_EXTRA, STAGE_SAVE, STAGE_ACCUM, STAGE_BLEND, STAGE_LAMBDA = 2, 3, 4, 5, 6
_EXTENDED_ONLY = (STAGE_EXTRA, STAGE_SAVE, STAGE_ACCUM, STAGE_BLEND, STAGE_LAMBDA)
_NO_INTER = np.zeros((0, 1, 1, 1), np.float32)
_RAW, _AFFINE, _F16, _BF16 = 0, 1, 2, 3
_NO_FIELD = np.zeros((0, 0, 2), np.float32)


@njit(inline="always", **JIT)
def _index(i, n, mode):
    """Integer index ``i`` on an axis of ``n`` under a border rule; -1 means the fill value."""
    if 0 <= i < n:
        return i
    if mode == FILL_CONSTANT:
        return -1
    if mode == FILL_NEAREST or n == 1:
        return 0 if i < 0 else n - 1
    if mode == FILL_WRAP:
        return i % n
    if mode == FILL_MIRROR:  # np.pad's "reflect": d c b | a b c d | c b a
        period = 2 * n - 2
        i = i % period
        return i if i < n else period - i
    # FILL_REFLECT, Keras' "reflect" (np.pad's "symmetric"): d c b a | a b c d | d c b a
    period = 2 * n
    i = i % period
    return i if i < n else period - 1 - i


@njit(**JIT)
def _copy_sample(src, off, H, W, C, m, mode, fill, dst):
    """The integer window of a crop with flips: ``m`` is ``[[+-1, 0, tx], [0, +-1, ty], [0, 0, 1]]``.

    Per row, the span of output pixels whose source lies inside the image is one straight loop
    (forwards, or backwards under a horizontal flip); only the pixels beyond the image's edge go
    through the border rule.
    """
    h, w = dst.shape[0], dst.shape[1]
    sx, tx = int(m[0, 0]), int(m[0, 2])
    sy, ty = int(m[1, 1]), int(m[1, 2])
    f = np.float32(fill)
    flat = dst.reshape(h, w * C)
    # Output columns [x0, x1) read source columns inside [0, W).
    if sx == 1:
        x0, x1 = max(0, -tx), min(w, W - tx)
    else:
        x0, x1 = max(0, tx - W + 1), min(w, tx + 1)
    x1 = max(x0, x1)
    for y in range(h):
        iy = _index(sy * y + ty, H, mode)
        drow = flat[y]
        if iy < 0:
            drow[:] = f
            continue
        row = off + iy * W * C
        if sx == 1:
            start = row + (x0 + tx) * C
            for j in range((x1 - x0) * C):
                drow[x0 * C + j] = np.float32(src[start + j])
        else:
            for x in range(x0, x1):
                p = row + (tx - x) * C
                for c in range(C):
                    drow[x * C + c] = np.float32(src[p + c])
        for x in range(0, x0):
            ix = _index(sx * x + tx, W, mode)
            for c in range(C):
                drow[x * C + c] = f if ix < 0 else np.float32(src[row + ix * C + c])
        for x in range(x1, w):
            ix = _index(sx * x + tx, W, mode)
            for c in range(C):
                drow[x * C + c] = f if ix < 0 else np.float32(src[row + ix * C + c])


@njit(**JIT)
def _emit(buf, out, k, channels_first, kind, arow, brow):
    """Sample ``k``'s float32 values into the batch: normalised, converted, in the batch's layout.

    ``arow``/``brow``: the per-channel coefficients tiled along a row (``w * C``), so each row is one
    straight, vectorised loop; the kind and the layout are decided once per sample.
    """
    h, w, C = buf.shape
    wc = w * C
    rows = buf.reshape(h, wc)
    if channels_first:
        dst = out[k].reshape(C, h * w)
        for y in range(h):
            for x in range(w):
                for c in range(C):
                    v = rows[y, x * C + c] * arow[c] + brow[c]
                    if kind == _RAW:
                        dst[c, y * w + x] = min(max(np.rint(rows[y, x * C + c]), np.float32(0.0)), np.float32(255.0))
                    elif kind == _AFFINE:
                        dst[c, y * w + x] = v
                    elif kind == _F16:
                        dst[c, y * w + x] = f32_to_f16_bits(v)
                    else:
                        dst[c, y * w + x] = f32_to_bf16_bits(v)
        return
    dst = out[k].reshape(h, wc)
    for y in range(h):
        src, d = rows[y], dst[y]
        if kind == _AFFINE:
            for j in range(wc):
                d[j] = src[j] * arow[j] + brow[j]
        elif kind == _RAW:
            for j in range(wc):
                d[j] = min(max(np.rint(src[j]), np.float32(0.0)), np.float32(255.0))
        elif kind == _F16:
            for j in range(wc):
                d[j] = f32_to_f16_bits(src[j] * arow[j] + brow[j])
        else:
            for j in range(wc):
                d[j] = f32_to_bf16_bits(src[j] * arow[j] + brow[j])


@njit(inline="always", **JIT)
def _skipped(k, s, prog, cparams):
    """Whether stage ``s`` is gated off for sample ``k`` (a policy's candidate it did not pick)."""
    return prog[s, 4] >= 0 and cparams[k, prog[s, 4]] == 0.0


@njit(inline="always", **JIT)
def _rewarp(k, s, src, dst, h, w, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field):
    """A warp stage after stage 0: the sample's float32 values ``src`` resampled through its run into ``dst``."""
    r, fs = prog[s, 1], prog[s, 2]
    field = fields[k, fs] if fs >= 0 else no_field
    _warp_sample(src.reshape(h * w * C), 0, h, w, C, mats[k, r], field, run_interp[r], run_mode[r], run_fill[r], dst)


@njit(inline="always", **JIT)
def _first(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field, buf):
    r, fs = prog[0, 1], prog[0, 2]
    field = fields[k, fs] if fs >= 0 else no_field
    _warp_sample(xf, offs[k], dims[k, 0], dims[k, 1], C, mats[k, r], field, run_interp[r], run_mode[r], run_fill[r], buf)


@njit(**JIT)
def _sample_copy(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, cparams, fields, no_field, h, w,
                 kind, channels_first, a, b, out):
    buf = np.empty((h, w, C), np.float32)
    r = prog[0, 1]
    _copy_sample(xf, offs[k], dims[k, 0], dims[k, 1], C, mats[k, r], run_mode[r], run_fill[r], buf)
    for s in range(1, prog.shape[0]):
        if not _skipped(k, s, prog, cparams):
            _color_op(buf, prog[s, 1], cparams[k, prog[s, 2]:prog[s, 3]])
    _emit(buf, out, k, channels_first, kind, a, b)


@njit(**JIT)
def _sample_warp(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, cparams, fields, no_field, h, w,
                 kind, channels_first, a, b, out):
    buf = np.empty((h, w, C), np.float32)
    _first(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field, buf)
    if prog.shape[0] > 1:
        other = np.empty((h, w, C), np.float32)
        for s in range(1, prog.shape[0]):
            if _skipped(k, s, prog, cparams):
                continue
            _rewarp(k, s, buf, other, h, w, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field)
            buf, other = other, buf
    _emit(buf, out, k, channels_first, kind, a, b)


@njit(**JIT)
def _sample_warp_color(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, cparams, fields, no_field, h, w,
                       kind, channels_first, a, b, out):
    buf = np.empty((h, w, C), np.float32)
    other = np.empty((h, w, C), np.float32)
    _first(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field, buf)
    for s in range(1, prog.shape[0]):
        if _skipped(k, s, prog, cparams):
            continue
        if prog[s, 0] == STAGE_COLOR:
            _color_op(buf, prog[s, 1], cparams[k, prog[s, 2]:prog[s, 3]])
        else:
            _rewarp(k, s, buf, other, h, w, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field)
            buf, other = other, buf
    _emit(buf, out, k, channels_first, kind, a, b)


@njit(**JIT)
def _sample_extended(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, cparams, fields, no_field, h, w,
                     kind, channels_first, a, b, out, inter):
    """``_sample_warp_color`` plus torchvision's color ops, AugMix's keep/accumulate/blend, and a float32 start.

    With ``inter`` non-empty the sample starts from ``inter[k]`` (a pass split at a ``Lambda``) and stage 0
    is skipped.
    """
    buf = np.empty((h, w, C), np.float32)
    other = np.empty((h, w, C), np.float32)
    kept = np.empty((0, 0, 0), np.float32)
    acc = np.empty((0, 0, 0), np.float32)
    if inter.shape[0] > 0:
        buf[:] = inter[k]
    else:
        _first(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field, buf)
    for s in range(1, prog.shape[0]):
        if _skipped(k, s, prog, cparams):
            continue
        stage = prog[s, 0]
        if stage == STAGE_COLOR:
            _color_op(buf, prog[s, 1], cparams[k, prog[s, 2]:prog[s, 3]])
        elif stage == STAGE_WARP:
            _rewarp(k, s, buf, other, h, w, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field)
            buf, other = other, buf
        elif stage == STAGE_EXTRA:
            _tv_op(buf, prog[s, 1], cparams[k, prog[s, 2]:prog[s, 3]])
        elif stage == STAGE_SAVE:
            if kept.size == 0:
                kept = np.empty((h, w, C), np.float32)
                acc = np.empty((h, w, C), np.float32)
            kept[:] = buf
            acc[:] = 0.0
        elif stage == STAGE_ACCUM:
            wt = np.float32(cparams[k, prog[s, 1]])
            fa, fb, fk = acc.reshape(h * w * C), buf.reshape(h * w * C), kept.reshape(h * w * C)
            for j in range(h * w * C):
                fa[j] += fb[j] * wt
                fb[j] = fk[j]
        elif stage == STAGE_BLEND:
            m = np.float32(cparams[k, prog[s, 1]])
            m1 = np.float32(1.0) - m
            fa, fb, fk = acc.reshape(h * w * C), buf.reshape(h * w * C), kept.reshape(h * w * C)
            for j in range(h * w * C):
                fb[j] = min(max(m * fk[j] + m1 * fa[j], np.float32(0.0)), np.float32(255.0))
    _emit(buf, out, k, channels_first, kind, a, b)


# One compiled loop per variant over a range of the batch's samples. The threads are Python's (the
# loops release the GIL), not a parallel region: Numba's parfor lowering more than doubled the compile of
# each variant (warp: 18 s against 7.7 s), the first batch of a new variant waits for that compile, and
# plain threads are safe under every threading layer and in forked children.
@njit(**JIT)
def _pass_copy(start, stop, xf, offs, dims, C, prog, ri, rm, rf, mats, cparams, fields, nf, h, w, kind, cf, a, b, out):
    for k in range(start, stop):
        _sample_copy(k, xf, offs, dims, C, prog, ri, rm, rf, mats, cparams, fields, nf, h, w, kind, cf, a, b, out)


@njit(**JIT)
def _pass_warp(start, stop, xf, offs, dims, C, prog, ri, rm, rf, mats, cparams, fields, nf, h, w, kind, cf, a, b, out):
    for k in range(start, stop):
        _sample_warp(k, xf, offs, dims, C, prog, ri, rm, rf, mats, cparams, fields, nf, h, w, kind, cf, a, b, out)


@njit(**JIT)
def _pass_warp_color(start, stop, xf, offs, dims, C, prog, ri, rm, rf, mats, cparams, fields, nf, h, w, kind, cf, a, b,
                     out):
    for k in range(start, stop):
        _sample_warp_color(k, xf, offs, dims, C, prog, ri, rm, rf, mats, cparams, fields, nf, h, w, kind, cf, a, b, out)


@njit(**JIT)
def _pass_extended(start, stop, xf, offs, dims, C, prog, ri, rm, rf, mats, cparams, fields, nf, h, w, kind, cf, a, b,
                   out, inter):
    for k in range(start, stop):
        _sample_extended(k, xf, offs, dims, C, prog, ri, rm, rf, mats, cparams, fields, nf, h, w, kind, cf, a, b, out,
                         inter)


@njit(**JIT)
def _lambda_loop(start, stop, fn, values, cparams, first, last):
    """``fn(values[k], cparams[k, first:last])`` for ``k`` in ``start:stop``: the user's function, per sample.

    Compiled once per function (a specialisation on its type); the GIL is released.
    """
    for k in range(start, stop):
        fn(values[k], cparams[k, first:last])


_VARIANTS = {"copy": _pass_copy, "warp": _pass_warp, "warp_color": _pass_warp_color, "extended": _pass_extended}
_MODES = (FILL_CONSTANT, FILL_NEAREST, FILL_REFLECT, FILL_WRAP, FILL_MIRROR)


class AugmentDraw:
    """One batch's per-sample parameters for an :class:`AugmentPass`.

    Attributes:
        mats: float64 ``(n, runs, 3, 3)``: each run's output -> input map.
        cparams: float64 ``(n, P)``: the color ops' parameters.
        fields: float32 ``(n, F, h, w, 2)``: elastic displacements ``(dy, dx)``.
    """

    __slots__ = ("mats", "cparams", "fields")

    def __init__(self, mats, cparams, fields):
        self.mats, self.cparams, self.fields = mats, cparams, fields


class AugmentPass:
    """A validated, reusable configuration of the augmentation pass over one source of images.

    Args:
        pixels: the uint8 source: a flat array of every image's HWC bytes
            (an image array's ``reshape(-1)``, or a ``RaggedImages``' pixels).
        offsets: int64 ``(N,)``: where each image starts in ``pixels``.
        shapes: int64 ``(N, 3)``: each image's ``(H, W, C)``, one ``C`` for all.
        out_size: ``(h, w)`` of the made images.
        prog, run_interp, run_mode, run_fill: the program (see the module's
            docstring) and each run's interpolation, border rule and fill.
        n_params: the color parameters per sample; n_fields: elastic fields per sample.
        variant: ``"copy"``, ``"warp"``, ``"warp_color"`` or ``"extended"``.
        mean, std, scale, offset: the normalisation, as ``fastseq.kernels.fused``.
        dtype: "float32", "float16", "bfloat16" or "uint8".
        data_format: "channels_last" or "channels_first".
        lambdas: the Numba-compiled functions the ``STAGE_LAMBDA`` stages name, in order.
        lambda_names: how an error raised in each names it (e.g. ``"Lambda(add_noise) (augment[2])"``).

    Called as ``plan(indices, draw, None, out=None)`` with an :class:`AugmentDraw`;
    immutable and safe to share between threads.
    """

    def __init__(self, pixels, offsets, shapes, *, out_size, prog, run_interp, run_mode, run_fill, n_params, n_fields,
                 variant, mean=None, std=None, scale=None, offset=None, dtype="float32", data_format="channels_last",
                 lambdas=(), lambda_names=()):
        # Read-only whatever the source (an array in RAM, a memmap, a photo store): Numba types a writable array
        # apart from a read-only one, and each would compile the whole pass again.
        self._xf = pixels.reshape(-1).view()
        self._xf.flags.writeable = False
        self._offsets = np.ascontiguousarray(offsets, np.int64)
        self._dims = np.ascontiguousarray(np.asarray(shapes, np.int64)[:, :2])
        channels = np.unique(np.asarray(shapes)[:, 2])
        if channels.size > 1:
            raise ValueError(f"x: every image needs the same number of channels, got {channels.tolist()}.")
        self.channels = int(channels[0]) if channels.size else 1
        self.out_size = tuple(int(v) for v in out_size)
        self.prog = np.ascontiguousarray(prog, np.int64)
        self._run_interp = np.ascontiguousarray(run_interp, np.int64)
        self._run_mode = np.ascontiguousarray(run_mode, np.int64)
        self._run_fill = np.ascontiguousarray(run_fill, np.float64)
        if not np.isin(self._run_mode, _MODES).all() or not np.isin(self._run_interp, (0, 1)).all():
            raise ValueError(f"unknown border rule or interpolation code: {self._run_mode.tolist()}, "
                             f"{self._run_interp.tolist()}.")
        self.n_runs, self.n_params, self.n_fields = len(self._run_mode), int(n_params), int(n_fields)
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {tuple(_VARIANTS)}, got {variant!r}.")
        self.variant = variant
        self.lambdas = tuple(lambdas)
        self._lambda_names = tuple(lambda_names) + tuple(f"Lambda #{i}" for i in range(len(lambda_names),
                                                                                       len(self.lambdas)))
        self._check_prog()
        self._kernel = _VARIANTS[variant]
        # A Lambda splits the program: the stages between two of them run as one pass (see the module's docstring).
        cuts = [0, *np.flatnonzero(self.prog[:, 0] == STAGE_LAMBDA).tolist(), self.prog.shape[0]]
        placeholder = np.array([[STAGE_WARP, 0, -1, 0, -1]], np.int64)
        self._segments = []
        for i in range(len(cuts) - 1):
            body = self.prog[cuts[i]:cuts[i + 1]]
            if i > 0:
                body = np.concatenate([placeholder, body[1:]])
            lam = None if i == len(cuts) - 2 else tuple(self.prog[cuts[i + 1]].tolist())
            self._segments.append((np.ascontiguousarray(body), lam))
        coeffs = check.affine(self.channels, mean, std, scale, offset)
        self.dtype = check.output_dtype(dtype, coeffs is not None)
        self.channels_first = check.data_format(data_format)
        self.data_format = data_format
        C = self.channels
        a, b = coeffs if coeffs is not None else (np.ones(C, np.float32), np.zeros(C, np.float32))
        self._a, self._b = np.tile(a, self.out_size[1]), np.tile(b, self.out_size[1])  # along a row: see _emit
        self._kind = {"uint8": _RAW, "float32": _AFFINE, "float16": _F16, "bfloat16": _BF16}[self.dtype]
        self._variant_key = ("augment", variant, self.dtype, self.channels_first)

    def _check_prog(self):
        """Every index the program holds in range: the kernels read them without bounds checks."""
        prog, P = self.prog, self.n_params
        problem = None
        if prog.ndim != 2 or prog.shape[1] != 5 or prog.shape[0] < 1 or prog[0, 0] != STAGE_WARP or prog[0, 4] != -1:
            problem = "it must be int64 (S, 5), stage 0 an ungated warp"
        elif not (len(self._run_interp) == len(self._run_fill) == self.n_runs and self.n_runs >= 1):
            problem = "run_interp, run_mode and run_fill must have one entry per run"
        else:
            saved = False
            for kind, a, b, c, gate in prog.tolist():
                if not -1 <= gate < P:
                    problem = f"gate {gate} is outside the {P} parameters"
                elif kind == STAGE_WARP and not (0 <= a < self.n_runs and -1 <= b < self.n_fields):
                    problem = f"warp stage ({a}, {b}) names a run or field that does not exist"
                elif kind == STAGE_COLOR and not (1 <= a <= 14 and 0 <= b <= c <= P):
                    problem = f"color stage ({a}, {b}, {c}) names an unknown op or parameters outside {P}"
                elif kind == STAGE_EXTRA and not (1 <= a <= TV_LAST and 0 <= b <= c <= P):
                    problem = f"extra color stage ({a}, {b}, {c}) names an unknown op or parameters outside {P}"
                elif kind in (STAGE_SAVE, STAGE_ACCUM, STAGE_BLEND, STAGE_LAMBDA) and gate != -1:
                    problem = f"stage kind {kind} cannot be gated"
                elif kind in (STAGE_ACCUM, STAGE_BLEND) and not (saved and 0 <= a < P):
                    problem = f"stage kind {kind} needs a keep stage before it and a weight column in [0, {P})"
                elif kind == STAGE_LAMBDA and not (0 <= a < len(self.lambdas) and 0 <= b <= c <= P):
                    problem = f"lambda stage ({a}, {b}, {c}) names a function or draws that do not exist"
                elif kind == STAGE_LAMBDA and saved:
                    problem = "a lambda stage cannot stand between a keep stage and its blend"
                elif kind not in (STAGE_WARP, STAGE_COLOR) + _EXTENDED_ONLY:
                    problem = f"unknown stage kind {kind}"
                if problem:
                    break
                if kind == STAGE_SAVE:
                    saved = True
                elif kind == STAGE_BLEND:
                    saved = False
        if problem:
            raise ValueError(f"prog: {problem}; got {prog.tolist()}.")
        if self.variant == "copy" and (self.n_runs != 1 or (prog[1:, 0] == STAGE_WARP).any()):
            raise ValueError("variant 'copy' takes one run (the crop's window) and color stages only.")
        if self.variant == "warp" and (prog[:, 0] == STAGE_COLOR).any():
            raise ValueError("variant 'warp' takes no color stage; use 'warp_color'.")
        if self.variant != "extended" and np.isin(prog[:, 0], _EXTENDED_ONLY).any():
            raise ValueError(f"variant {self.variant!r} takes warp and color stages only; use 'extended'.")
        if len(self.lambdas) != int((prog[:, 0] == STAGE_LAMBDA).sum()):
            raise ValueError(f"lambdas: the program has {int((prog[:, 0] == STAGE_LAMBDA).sum())} lambda stages, "
                             f"got {len(self.lambdas)} functions.")

    def __len__(self):
        return self._offsets.shape[0]

    def output_shape(self, n):
        h, w = self.out_size
        return (n, self.channels, h, w) if self.channels_first else (n, h, w, self.channels)

    def _check_draw(self, draw, n):
        h, w = self.out_size
        mats = np.ascontiguousarray(draw.mats, np.float64)
        if mats.shape != (n, self.n_runs, 3, 3) or not np.isfinite(mats).all():
            raise ValueError(f"draw.mats must be finite float64 of shape {(n, self.n_runs, 3, 3)}, got {mats.shape}.")
        cparams = np.ascontiguousarray(draw.cparams, np.float64)
        if cparams.shape != (n, self.n_params) or not np.isfinite(cparams).all():
            raise ValueError(f"draw.cparams must be finite float64 of shape {(n, self.n_params)}, got {cparams.shape}.")
        fields = np.ascontiguousarray(draw.fields, np.float32)
        if fields.shape != (n, self.n_fields, h, w, 2) or not np.isfinite(fields).all():
            raise ValueError(f"draw.fields must be finite float32 of shape {(n, self.n_fields, h, w, 2)}, got {fields.shape}.")
        return mats, cparams, fields

    def __call__(self, indices, draw, flips=None, out=None):
        """The batch of ``indices`` with ``draw``'s parameters (``flips`` is unused: the flips are in the matrices)."""
        indices = check.index_array(indices, len(self))
        n = indices.shape[0]
        mats, cparams, fields = self._check_draw(draw, n)
        out = check.out_array(out, self.output_shape(n), self.dtype, None)
        if n == 0:
            return out
        threads = threads_for(out.nbytes * RESAMPLE_COST, numba.get_num_threads())
        if self.variant != "extended":
            args = self._args(indices, mats, cparams, fields, out)
            announced(self._variant_key, f"the augmentation pass ({self.variant}) for {self.dtype} "
                      f"{self.data_format} batches", run_split, self._kernel, n, threads, *args)
            return out
        h, w = self.out_size
        inter = np.empty((n, h, w, self.channels), np.float32) if len(self._segments) > 1 else _NO_INTER
        one, zero = np.ones(w * self.channels, np.float32), np.zeros(w * self.channels, np.float32)
        for i, (prog, lam) in enumerate(self._segments):
            last = lam is None
            if last:  # into the batch: its dtype, layout and normalisation
                target = out.view(np.uint16) if self._kind in (_F16, _BF16) else out
                kind, cf, a, b = self._kind, self.channels_first, self._a, self._b
            else:  # into the float32 buffer, unrounded
                target, kind, cf, a, b = inter, _AFFINE, False, one, zero
            args = (self._xf, self._offsets[indices], self._dims[indices], self.channels, prog, self._run_interp,
                    self._run_mode, self._run_fill, mats, cparams, fields, _NO_FIELD, h, w, kind, cf, a, b, target,
                    _NO_INTER if i == 0 else inter)
            announced(("augment", "extended", target.dtype.name, cf), "the augmentation pass (extended) for "
                      f"{'float32 values' if not last else self.dtype + ' ' + self.data_format + ' batches'}",
                      run_split, self._kernel, n, threads, *args)
            if not last:
                self._run_lambda(lam, inter, cparams, threads)
        return out

    def _run_lambda(self, stage, values, cparams, threads):
        _, i, first, stop, _ = stage
        fn = self.lambdas[i]
        try:
            announced(("augment-lambda", id(fn)), f"the loop of {self._lambda_names[i]}",
                      run_split, _lambda_loop, values.shape[0], threads, fn, values, cparams, first, stop)
        except Exception as e:  # the user's function raised (inside compiled code): name the op
            raise RuntimeError(f"augment: {self._lambda_names[i]} raised {type(e).__name__}: {e}") from e

    def _args(self, indices, mats, cparams, fields, out):
        h, w = self.out_size
        target = out.view(np.uint16) if self._kind in (_F16, _BF16) else out
        return (self._xf, self._offsets[indices], self._dims[indices], self.channels, self.prog, self._run_interp,
                self._run_mode, self._run_fill, mats, cparams, fields, _NO_FIELD, h, w, self._kind,
                self.channels_first, self._a, self._b, target)

    def compile(self, *, serial=False):
        """Compile (or load from Numba's cache) this pass's variant without a batch to make (``serial``: the same)."""
        h, w = self.out_size
        one = np.zeros(1, np.int64)
        mats = np.broadcast_to(np.eye(3), (1, self.n_runs, 3, 3))
        draw = AugmentDraw(mats, np.zeros((1, self.n_params)), np.zeros((1, self.n_fields, h, w, 2), np.float32))
        if self.lambdas:  # compile the passes and each function's loop without calling the user's functions
            self._compile_split(draw)
        else:
            self(one, draw)
        mark_warm(self._variant_key)

    def _compile_split(self, draw):
        h, w = self.out_size
        values = np.zeros((1, h, w, self.channels), np.float32)
        for _, lam in self._segments:
            if lam is not None:
                _lambda_loop(0, 0, self.lambdas[lam[1]], values, draw.cparams, lam[2], lam[3])
        out = np.empty(self.output_shape(1), self.dtype)
        for target, kind, cf in ((values, _AFFINE, False), (out, self._kind, self.channels_first)):
            target = target.view(np.uint16) if target.dtype.itemsize == 2 else target
            _pass_extended(0, 0, self._xf, self._offsets[:1], self._dims[:1], self.channels, self.prog[:1],
                           self._run_interp, self._run_mode, self._run_fill, np.ascontiguousarray(draw.mats),
                           draw.cparams, draw.fields, _NO_FIELD, h, w, kind, cf, self._a, self._b, target, values)
