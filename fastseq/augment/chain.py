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

from fastseq.augment._op import AugmentOp
from fastseq.augment.crops import CenterCrop, RandomCrop, RandomResizedCrop, Resize

# Codes shared with fastseq.kernels.warp (kept here as numbers: this module imports no Numba).
FILL_CODES = {"constant": 0, "nearest": 1, "reflect": 2, "wrap": 3, "mirror": 4}
INTERP_CODES = {"nearest": 0, "bilinear": 1}
PAD_MODE_RULES = {"constant": "constant", "edge": "nearest", "reflect": "mirror"}
OP_STREAM_BASE = 1 << 16  # fastseq.kernels.random.OP_STREAM_BASE
_FIELD_STREAM = 255  # the last of an op's 256 streams: an elastic op's noise field


def as_ops(augment, argument="augment"):
    """``augment`` as a tuple of ops: None, one op, or a list or tuple of ops; else a clear TypeError."""
    if augment is None:
        return ()
    items = [augment] if isinstance(augment, AugmentOp) else augment
    if not isinstance(items, (list, tuple)):
        raise TypeError(
            f"{argument} must be an op (fastseq.RandomRotation(...), ...) or a list of them, got {type(augment).__name__}."
        )
    for i, op in enumerate(items):
        if not isinstance(op, AugmentOp):
            raise TypeError(
                f"{argument}[{i}] must be a fastseq augmentation op (fastseq.RandomRotation(...), "
                f"fastseq.RandomBrightness(...), ...), got {op!r}. The crop, flip, normalize, cutout and mix "
                "have arguments of their own."
            )
    return tuple(items)


def evaluation_ops(ops):
    """The ops ``for_evaluation`` keeps: the deterministic ones (``AutoContrast``, ``Equalization``)."""
    return tuple(op for op in ops if not op.random)


@dataclasses.dataclass
class Run:
    """Consecutive geometric ops resampled together; ``rule`` is ``(interpolation, fill_mode, fill_value)``."""

    ops: list
    rule: tuple | None
    field_op: object = None  # a RandomElasticTransform that ends the run
    field_slot: int = -1


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


class Chain:
    """The program of one sequence's augment list, for images made at ``out_size`` with ``channels``.

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
        stages = [("warp", 0)]
        self._color = []  # (op, first param column, stop)
        width = 0
        for op in self.ops:
            if op.family == "geometry":
                kind, r = stages[-1]
                run = runs[r] if kind == "warp" else None
                if run is None or run.field_op is not None or run.rule not in (None, _rule(op)):
                    runs.append(Run([], None))
                    stages.append(("warp", len(runs) - 1))
                    run = runs[-1]
                run.rule = _rule(op)
                if hasattr(op, "fields"):  # RandomElasticTransform: a displacement field ends its run
                    run.field_op = op
                else:
                    run.ops.append(op)
            elif op.family == "color":
                stages.append(("color", op))
                self._color.append((op, width, width + op.n_params))
                width += op.n_params
            else:
                raise TypeError(f"augment: {op!r} has no family fastseq knows (geometry or color).")
        self.runs, self.stages, self.n_params = runs, stages, width
        self.n_fields = 0
        for run in runs:
            if run.field_op is not None:
                run.field_slot = self.n_fields
                self.n_fields += 1
        self.has_geometry = any(r.ops or r.field_op is not None for r in runs)
        self.has_color = bool(self._color)
        # A window of whole pixels (no crop, RandomCrop, CenterCrop, flips) is copied; a resize needs the warp.
        resamples = self.has_geometry or isinstance(crop, (RandomResizedCrop, Resize))
        self.variant = "warp_color" if resamples and self.has_color else "warp" if resamples else "copy"
        # The program.
        first_rule = runs[0].rule if runs[0].rule is not None else self._crop_rule()
        self.run_interp = np.array([INTERP_CODES[(r.rule or first_rule)[0]] for r in runs], np.int64)
        self.run_mode = np.array([FILL_CODES[(r.rule or first_rule)[1]] for r in runs], np.int64)
        self.run_fill = np.array([(r.rule or first_rule)[2] for r in runs], np.float64)
        prog, colors = [], iter(self._color)
        for kind, what in stages:
            if kind == "warp":
                prog.append((0, what, runs[what].field_slot, 0, -1))
            else:
                op, start, stop = next(colors)
                prog.append((1, op.code, start, stop, -1))
        self.prog = np.array(prog, np.int64)
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
            for op in run.ops:
                m = m @ op.matrices(u[:, self._columns[id(op)]], h, w)
            mats[:, r] = m
            if run.field_op is not None:
                op = run.field_op
                fields[:, run.field_slot] = op.fields(seed, epoch, indices, self._first_stream[id(op)] + _FIELD_STREAM, h, w)
        cparams = np.empty((n, self.n_params))
        for op, start, stop in self._color:
            cparams[:, start:stop] = op.params(u[:, self._columns[id(op)]])
        return mats, cparams, fields


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
