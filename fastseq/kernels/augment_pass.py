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

Then the values are normalised (``float32(v) * a[c] + b[c]``, no FMA) and
written once into the batch in its dtype and layout: float32, float16 or
bfloat16 (correctly rounded bits through a uint16 view), or uint8 (rounded
half to even and clipped, as ``np.rint``). Nothing is rounded between
stages.

Three compiled variants, so a sequence compiles only the families it uses:
``copy`` (a crop with flips and color ops: an integer window copied, the
warp not compiled), ``warp`` (geometric ops, no color code compiled) and
``warp_color``. Each is a compiled loop over a range of the batch's
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
from fastseq.kernels.warp import FILL_CONSTANT, FILL_MIRROR, FILL_NEAREST, FILL_REFLECT, FILL_WRAP, _warp_sample

STAGE_WARP, STAGE_COLOR = 0, 1
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
        if prog[s, 4] < 0 or cparams[k, prog[s, 4]] != 0.0:
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
            if prog[s, 4] >= 0 and cparams[k, prog[s, 4]] == 0.0:
                continue
            r, fs = prog[s, 1], prog[s, 2]
            field = fields[k, fs] if fs >= 0 else no_field
            _warp_sample(buf.reshape(h * w * C), 0, h, w, C, mats[k, r], field, run_interp[r], run_mode[r], run_fill[r],
                         other)
            buf, other = other, buf
    _emit(buf, out, k, channels_first, kind, a, b)


@njit(**JIT)
def _sample_warp_color(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, cparams, fields, no_field, h, w,
                       kind, channels_first, a, b, out):
    buf = np.empty((h, w, C), np.float32)
    other = np.empty((h, w, C), np.float32)
    _first(k, xf, offs, dims, C, prog, run_interp, run_mode, run_fill, mats, fields, no_field, buf)
    for s in range(1, prog.shape[0]):
        if prog[s, 4] >= 0 and cparams[k, prog[s, 4]] == 0.0:
            continue
        if prog[s, 0] == STAGE_COLOR:
            _color_op(buf, prog[s, 1], cparams[k, prog[s, 2]:prog[s, 3]])
        else:
            r, fs = prog[s, 1], prog[s, 2]
            field = fields[k, fs] if fs >= 0 else no_field
            _warp_sample(buf.reshape(h * w * C), 0, h, w, C, mats[k, r], field, run_interp[r], run_mode[r], run_fill[r],
                         other)
            buf, other = other, buf
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


_VARIANTS = {"copy": _pass_copy, "warp": _pass_warp, "warp_color": _pass_warp_color}
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
        variant: ``"copy"``, ``"warp"`` or ``"warp_color"``.
        mean, std, scale, offset: the normalisation, as ``fastseq.kernels.fused``.
        dtype: "float32", "float16", "bfloat16" or "uint8".
        data_format: "channels_last" or "channels_first".

    Called as ``plan(indices, draw, None, out=None)`` with an :class:`AugmentDraw`;
    immutable and safe to share between threads.
    """

    def __init__(self, pixels, offsets, shapes, *, out_size, prog, run_interp, run_mode, run_fill, n_params, n_fields,
                 variant, mean=None, std=None, scale=None, offset=None, dtype="float32", data_format="channels_last"):
        self._xf = pixels
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
        self._check_prog()
        self._kernel = _VARIANTS[variant]
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
            for kind, a, b, c, gate in prog.tolist():
                if not -1 <= gate < P:
                    problem = f"gate {gate} is outside the {P} parameters"
                elif kind == STAGE_WARP and not (0 <= a < self.n_runs and -1 <= b < self.n_fields):
                    problem = f"warp stage ({a}, {b}) names a run or field that does not exist"
                elif kind == STAGE_COLOR and not (1 <= a <= 14 and 0 <= b <= c <= P):
                    problem = f"color stage ({a}, {b}, {c}) names an unknown op or parameters outside {P}"
                elif kind not in (STAGE_WARP, STAGE_COLOR):
                    problem = f"unknown stage kind {kind}"
                if problem:
                    break
        if problem:
            raise ValueError(f"prog: {problem}; got {prog.tolist()}.")
        if self.variant == "copy" and (self.n_runs != 1 or (prog[1:, 0] == STAGE_WARP).any()):
            raise ValueError("variant 'copy' takes one run (the crop's window) and color stages only.")
        if self.variant == "warp" and (prog[:, 0] == STAGE_COLOR).any():
            raise ValueError("variant 'warp' takes no color stage; use 'warp_color'.")

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
        args = self._args(indices, mats, cparams, fields, out)
        threads = threads_for(out.nbytes * RESAMPLE_COST, numba.get_num_threads())
        announced(self._variant_key, f"the augmentation pass ({self.variant}) for {self.dtype} {self.data_format} batches",
                  run_split, self._kernel, n, threads, *args)
        return out

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
        self(one, draw)
        mark_warm(self._variant_key)
