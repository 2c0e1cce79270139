"""The one place that turns the ordered ``augment=[...]`` list into the pass's program and draws (NumPy only).

Where the list sits: a sample is first cropped and flipped (the ``crop``
and ``flip`` slots, as before), then goes through the ``augment`` ops in
the order listed (as a ``keras.Sequential`` of the same layers would),
then ``normalize``, then ``mix``, then ``cutout``.

One resample, not one per op. The crop, the flips and the geometric ops
that follow each other compose into one 3x3 matrix per sample (a *run*),
and the sample is resampled once from its original image with that
matrix: one interpolation and one border rule for the run. Keras and
albumentations resample once per op. Where a run's border reaches beyond
the crop's window, it reads the real pixels of the original image (Keras
would have filled them); the border rule applies at the original image's
edge. A new run (a second resample) starts only where the list needs one:

* after a color op, so a color op listed between two geometric ops sees
  exactly the image Keras would show it;
* where the next geometric op has another ``interpolation``,
  ``fill_mode`` or ``fill_value``;
* after a ``RandomElasticTransform`` (its displacement field is the last
  step of its run).

The crop's own border rule (``RandomCrop(pad_mode=...)``) holds when the
first run has no geometric op; otherwise the run's ops' rule holds for the
whole run, padding included.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from fastseq.augment import keras_layers
from fastseq.augment._op import AugmentOp
from fastseq.augment.crops import CenterCrop, RandomCrop, RandomResizedCrop, Resize

# Codes shared with fastseq.kernels.warp (kept here as numbers: this module imports no Numba).
FILL_CODES = {"constant": 0, "nearest": 1, "reflect": 2, "wrap": 3, "mirror": 4}
INTERP_CODES = {"nearest": 0, "bilinear": 1}
PAD_MODE_RULES = {"constant": "constant", "edge": "nearest", "reflect": "mirror"}
OP_STREAM_BASE = 1 << 16  # fastseq.kernels.random.OP_STREAM_BASE
_FIELD_STREAM = 255  # the last of an op's 256 streams: an elastic op's noise field


def as_ops(augment, argument="augment"):
    """``augment`` as a tuple of ops: None, one op, or a list or tuple of ops; else a clear TypeError.

    Keras preprocessing layers (alone, in the list, or a ``keras.Sequential``) become the fastseq ops
    of the same meaning (``fastseq.augment.keras_layers``), checked before any data is read.
    """
    if augment is None:
        return ()
    if keras_layers.is_keras_object(augment):
        return keras_layers.from_keras(augment, argument)
    items = [augment] if isinstance(augment, AugmentOp) else augment
    if not isinstance(items, (list, tuple)):
        raise TypeError(
            f"{argument} must be an op (fastseq.RandomRotation(...), ...) or a list of them, got {type(augment).__name__}."
        )
    ops = []
    for i, op in enumerate(items):
        if keras_layers.is_keras_object(op):
            ops.extend(keras_layers.from_keras(op, f"{argument}[{i}]"))
        elif not isinstance(op, AugmentOp):
            raise TypeError(
                f"{argument}[{i}] must be a fastseq augmentation op (fastseq.RandomRotation(...), "
                f"fastseq.RandomBrightness(...), ...) or a Keras preprocessing layer, got {op!r}. The crop, flip, "
                "normalize, cutout and mix have arguments of their own."
            )
        else:
            ops.append(op)
    return tuple(ops)


def evaluation_ops(ops):
    """The ops ``for_evaluation`` keeps: the deterministic ones (``AutoContrast``, ``Equalization``)."""
    return tuple(op for op in ops if not op.random)


@dataclasses.dataclass
class Run:
    """Consecutive geometric ops resampled together; ``rule`` is ``(interpolation, fill_mode, fill_value)``.

    ``ops`` holds ``(owner, op, cols)``: the op, the op of ``augment`` whose draws it reads (itself, or the
    policy it is a candidate of) and which of the owner's draw columns (None: all). A gated run (a
    policy's candidate) holds one op and runs only where its gate is on.
    """

    ops: list
    rule: tuple | None
    field_op: object = None  # a RandomElasticTransform that ends the run
    field_slot: int = -1
    gate: int = -1


# Stage kinds of fastseq.kernels.augment_pass (kept here as numbers: this module imports no Numba).
STAGE_WARP, STAGE_COLOR, STAGE_EXTRA, STAGE_SAVE, STAGE_ACCUM, STAGE_BLEND, STAGE_LAMBDA = range(7)
_EXTENDED_ONLY = (STAGE_EXTRA, STAGE_SAVE, STAGE_ACCUM, STAGE_BLEND, STAGE_LAMBDA)


def _rule(op):
    return (op.interpolation, op.fill_mode, float(op.pixel_fill))


def _streams(ops):
    """Each op's first stream: a hash of its class name and how many of its class come before it.

    So inserting or removing an op of another class never changes an op's draws.
    """
    seen, firsts = {}, []
    for op in ops:
        name = type(op).__name__
        k = seen.get(name, 0)
        seen[name] = k + 1
        h = zlib.crc32(f"{name}#{k}".encode()) & 0xFFFFFF
        firsts.append(OP_STREAM_BASE + (h << 8))
    return firsts


def _steps(op):
    """An op of ``augment`` as steps: a policy's own (``op.steps()``), else the op itself, ungated."""
    if op.family == "policy":
        return op.steps()
    if op.family == "lambda":
        return [("lambda", op)]
    return [("op", op, None, None)]


class Chain:
    """The program of one sequence's augment list, for images made at ``out_size`` with ``channels``.

    A policy (``fastseq.augment.policies``) is expanded here: each of its
    steps is a candidate op gated by a column of the policy's ``gates(u)``
    (a geometric candidate is a run of its own, skipped where its gate is
    off), or one of AugMix's keep / accumulate / blend stages weighted by a
    column of its ``weights(u)``.

    Args:
        ops: the checked ops (:func:`as_ops`), in order.
        crop: the sequence's crop spec (or None); flips come as draws.
        out_size: ``(h, w)`` of the made images.
        channels: the images' channel count.
    """

    def __init__(self, ops, *, crop, out_size, channels):
        self.ops = tuple(ops)
        for op in self.ops:
            op.check_channels(channels)
        self.crop = crop
        self.out_size = tuple(out_size)
        runs = [Run([], None)]
        stages = [(STAGE_WARP, 0, -1)]
        self._color = []  # (owner, op, cols, first param column, stop)
        self._tables = []  # (policy, "gates" or "weights", first column, stop)
        self._lambdas = []  # (op, first column, stop): its draws
        self.lambdas, self.lambda_names = (), ()
        width = 0
        for i, owner in enumerate(self.ops):
            gate0 = weight0 = 0
            if owner.family == "policy":
                gate0 = width
                width += owner.n_gates
                self._tables.append((owner, "gates", gate0, width))
                weight0 = width
                width += owner.n_weights
                self._tables.append((owner, "weights", weight0, width))
            for step in _steps(owner):
                what = step[0]
                if what == "keep":
                    stages.append((STAGE_SAVE, 0, 0, 0, -1))
                    continue
                if what in ("accum", "blend"):
                    stages.append((STAGE_ACCUM if what == "accum" else STAGE_BLEND, weight0 + step[1], 0, 0, -1))
                    continue
                if what == "lambda":
                    op = step[1]
                    stages.append((STAGE_LAMBDA, len(self.lambdas), width, width + op.n_draws, -1))
                    self._lambdas.append((op, width, width + op.n_draws))
                    width += op.n_draws
                    self.lambdas += (op.fn,)
                    self.lambda_names += (f"{op!r} (augment[{i}])",)
                    continue
                _, op, g, cols = step
                gate = -1 if g is None else gate0 + g
                if op.family == "geometry":
                    kind, r = stages[-1][:2]
                    run = runs[r] if kind == STAGE_WARP else None
                    if (gate >= 0 or run is None or run.gate >= 0 or run.field_op is not None
                            or run.rule not in (None, _rule(op))):
                        runs.append(Run([], None, gate=gate))
                        stages.append((STAGE_WARP, len(runs) - 1, gate))
                        run = runs[-1]
                    run.rule = _rule(op)
                    if hasattr(op, "fields"):  # RandomElasticTransform: a displacement field ends its run
                        if gate >= 0:
                            raise TypeError(f"augment: {op!r} cannot be a policy's candidate.")
                        run.field_op = op
                    else:
                        run.ops.append((owner, op, cols))
                elif op.family == "color":
                    kind = STAGE_EXTRA if getattr(op, "stage", "color") == "extra" else STAGE_COLOR
                    stages.append((kind, op, width, width + op.n_params, gate))
                    self._color.append((owner, op, cols, width, width + op.n_params))
                    width += op.n_params
                else:
                    raise TypeError(f"augment: {op!r} has no family fastseq knows (geometry, color, policy or lambda).")
        self.runs, self.n_params = runs, width
        self.n_fields = 0
        for run in runs:
            if run.field_op is not None:
                run.field_slot = self.n_fields
                self.n_fields += 1
        self.has_geometry = any(r.ops or r.field_op is not None for r in runs)
        self.has_color = bool(self._color)
        # The program.
        first_rule = runs[0].rule if runs[0].rule is not None else self._crop_rule()
        self.run_interp = np.array([INTERP_CODES[(r.rule or first_rule)[0]] for r in runs], np.int64)
        self.run_mode = np.array([FILL_CODES[(r.rule or first_rule)[1]] for r in runs], np.int64)
        self.run_fill = np.array([(r.rule or first_rule)[2] for r in runs], np.float64)
        prog = []
        for stage in stages:
            if stage[0] == STAGE_WARP:
                _, r, gate = stage
                prog.append((STAGE_WARP, r, runs[r].field_slot, 0, gate))
            elif stage[0] in (STAGE_COLOR, STAGE_EXTRA):
                kind, op, start, stop, gate = stage
                prog.append((kind, op.code, start, stop, gate))
            else:
                prog.append(stage)
        self.prog = np.array(prog, np.int64)
        # A window of whole pixels (no crop, RandomCrop, CenterCrop, flips) is copied; a resize needs the warp.
        resamples = self.has_geometry or isinstance(crop, (RandomResizedCrop, Resize))
        if np.isin(self.prog[:, 0], _EXTENDED_ONLY).any():
            self.variant = "extended"
        else:
            self.variant = "warp_color" if resamples and self.has_color else "warp" if resamples else "copy"
        # One uniforms call per batch for every op: columns per op.
        firsts = _streams(self.ops)
        self._first_stream = dict(zip(map(id, self.ops), firsts))
        cols, self._columns = [], {}
        for op, first in zip(self.ops, firsts):
            self._columns[id(op)] = slice(len(cols), len(cols) + op.n_draws)
            cols.extend(first + j for j in range(op.n_draws))
        self.streams = np.array(cols, np.uint64)

    def _crop_rule(self):
        """The border rule of a run with no geometric op: the crop's own."""
        crop = self.crop
        if isinstance(crop, RandomCrop):
            return ("nearest", PAD_MODE_RULES[crop.pad_mode], float(crop.fill))
        if isinstance(crop, (RandomResizedCrop, Resize)):
            return (crop.interpolation, "nearest", 0.0)
        return ("nearest", "constant", 0.0)

    def draw(self, seed, epoch, indices, window, uniforms):
        """Per-sample parameters: ``(mats, cparams, fields)`` for the pass.

        Args:
            window: float64 ``(n, 3, 3)``: each sample's crop-and-flip map (:func:`window_matrices`).
            uniforms: ``fastseq.kernels.random.uniforms`` (passed in: this module imports no Numba).
        """
        n = len(indices)
        h, w = self.out_size
        u = uniforms(seed, epoch, indices, self.streams) if self.streams.size else np.empty((n, 0))
        mats = np.empty((n, len(self.runs), 3, 3))
        fields = np.zeros((n, self.n_fields, h, w, 2), np.float32)
        for r, run in enumerate(self.runs):
            m = window if r == 0 else np.broadcast_to(np.eye(3), (n, 3, 3))
            for owner, op, cols in run.ops:
                m = m @ op.matrices(self._u(u, owner, cols), h, w)
            mats[:, r] = m
            if run.field_op is not None:
                op = run.field_op
                fields[:, run.field_slot] = op.fields(seed, epoch, indices, self._first_stream[id(op)] + _FIELD_STREAM, h, w)
        cparams = np.empty((n, self.n_params))
        for owner, op, cols, start, stop in self._color:
            cparams[:, start:stop] = op.params(self._u(u, owner, cols))
        for policy, table, start, stop in self._tables:
            cparams[:, start:stop] = getattr(policy, table)(self._u(u, policy, None))
        for op, start, stop in self._lambdas:
            cparams[:, start:stop] = self._u(u, op, None)
        return mats, cparams, fields

    def _u(self, u, owner, cols):
        """The uniforms of ``owner`` (an op of the list), or its columns ``cols`` (a policy's candidate's)."""
        mine = u[:, self._columns[id(owner)]]
        return mine if cols is None else mine[:, cols]


def window_matrices(crop, origins, flips, n, image_size, out_size, boxes_for_resize=None):
    """Each sample's crop-and-flip map, float64 ``(n, 3, 3)``: output pixel ``(x, y, 1)`` -> source point.

    * no crop, ``RandomCrop``, ``CenterCrop``: the window's corner ``(top, left)`` in
      the padded image, then the flips: ``x -> w - 1 - x``;
    * ``RandomResizedCrop`` / ``Resize``: the box ``(top, left, bh, bw)`` scaled with
      half-pixel centres (``(x + 0.5) * bw / w - 0.5 + left``), as the resize kernels;
      ``Resize(crop=...)`` keeps the centre window of the scaled image.
    """
    h, w = out_size
    m = np.zeros((n, 3, 3))
    m[:, 2, 2] = 1.0
    hflip = np.zeros(n, bool) if flips is None else (np.asarray(flips) & 1).astype(bool)
    vflip = np.zeros(n, bool) if flips is None else (np.asarray(flips) & 2).astype(bool)
    if isinstance(crop, (RandomResizedCrop, Resize)):
        if isinstance(crop, Resize):
            rh, rw = crop.height, crop.width
            oy, ox = (rh - h) // 2, (rw - w) // 2
            boxes = boxes_for_resize
            if boxes is None:
                boxes = np.broadcast_to(np.array([0, 0, image_size[0], image_size[1]], np.float64), (n, 4))
        else:
            rh, rw, oy, ox = h, w, 0, 0
            boxes = origins
        boxes = np.asarray(boxes, np.float64)
        sy, sx = boxes[:, 2] / rh, boxes[:, 3] / rw
        # src = (i + o + 0.5) * s - 0.5 + corner, with i -> size - 1 - i under a flip
        ty = (oy + 0.5) * sy - 0.5 + boxes[:, 0]
        tx = (ox + 0.5) * sx - 0.5 + boxes[:, 1]
        m[:, 0, 0] = np.where(hflip, -sx, sx)
        m[:, 0, 2] = np.where(hflip, tx + (w - 1) * sx, tx)
        m[:, 1, 1] = np.where(vflip, -sy, sy)
        m[:, 1, 2] = np.where(vflip, ty + (h - 1) * sy, ty)
        return m
    if isinstance(crop, RandomCrop):
        p = crop.padding
        corner = np.zeros((n, 2)) if origins is None else np.asarray(origins, np.float64)
        top, left = corner[:, 0] - p, corner[:, 1] - p
    elif isinstance(crop, CenterCrop):
        H, W = image_size
        top = np.full(n, float((H - crop.height) // 2))
        left = np.full(n, float((W - crop.width) // 2))
    else:
        top = left = np.zeros(n)
    m[:, 0, 0] = np.where(hflip, -1.0, 1.0)
    m[:, 0, 2] = np.where(hflip, left + (w - 1), left)
    m[:, 1, 1] = np.where(vflip, -1.0, 1.0)
    m[:, 1, 2] = np.where(vflip, top + (h - 1), top)
    return m
