"""The base of every op of ``augment=[...]`` and the argument checks the ops share (NumPy only).

The contract between a spec and the pass (``fastseq.kernels.augment_pass``):

* A spec validates its arguments (Keras' checks, Keras' messages made
  clearer) and draws nothing.
* ``n_draws`` uniforms in [0, 1) per sample arrive from the counter-based
  generator, keyed by ``(seed, epoch, sample, op)`` (``fastseq.augment.chain``
  gives each op its own streams, so adding an op never changes the draws
  of the others).
* A geometric op (``family = "geometry"``) turns them into one float64
  3x3 matrix per sample, ``matrices(u, height, width)``: it maps an
  *output* pixel ``(x, y, 1)`` (column, row; pixel centres at integers, as
  Keras' ``affine_transform`` and TensorFlow's
  ``ImageProjectiveTransformV3``) to the point of its *input* image that it
  reads (projective: divide by the third coordinate). The pass composes the
  matrices of consecutive geometric ops (and the crop and flips) and
  resamples once. ``interpolation``, ``fill_mode`` and ``fill_value`` are
  Keras' arguments.
* A color op (``family = "color"``) turns them into ``n_params`` float64
  numbers per sample, ``params(u)``, which its compiled function
  (``fastseq.kernels.color``, selected by ``code``) reads while it changes
  the sample's float32 HWC values in place. The values between ops are in
  pixel units, 0..255: an op's ``value_range`` says how Keras would have
  seen them (``lo + v * (hi - lo) / 255``), and ``params`` converts its
  parameters into pixel units, so the kernel never needs the range.
* ``random = False`` for ops that are the same every epoch (Keras'
  ``AutoContrast``, ``Equalization``): ``for_evaluation`` keeps those and
  drops the rest.
"""

from __future__ import annotations

import numbers

import numpy as np


class AugmentOp:
    """Base of the ops of ``augment=[...]``; see the module's docstring for the contract."""

    family = None  # "geometry" or "color"
    random = True
    n_draws = 0

    def check_channels(self, channels):
        """Raise ValueError if the op cannot run on images of ``channels`` channels (called with the data)."""

    def params(self, u):
        """Per-sample parameters from ``u``, float64 ``(n, n_draws)`` uniforms in [0, 1)."""
        raise NotImplementedError


def is_number(v):
    return not isinstance(v, bool) and isinstance(v, numbers.Real) and np.isfinite(float(v))


def factor_pair(owner, name, value, *, bounds=None, symmetric=True, allow_negative_single=False):
    """Keras' ``factor`` forms: a number ``f`` (meaning ``(-f, f)`` when ``symmetric``, else ``(0, f)``) or a pair.

    Raises ValueError naming ``owner``, the argument, the value and the allowed range.
    Returns the ``(lower, upper)`` pair of floats, sorted as Keras sorts it.
    """
    where = "" if bounds is None else f" in [{bounds[0]:g}, {bounds[1]:g}]"
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(is_number(v) for v in value):
            raise ValueError(f"{owner}: {name} must be a number or a (lower, upper) pair of numbers{where}, got {value!r}.")
        lower, upper = sorted(float(v) for v in value)
    elif is_number(value):
        f = float(value)
        if f < 0 and not allow_negative_single:
            raise ValueError(f"{owner}: a single-number {name} must be >= 0 (it means (-{name}, {name})), got {value!r}; "
                             "give a (lower, upper) pair for an asymmetric range.")
        f = abs(f)
        lower, upper = (-f, f) if symmetric else (0.0, f)
    else:
        raise ValueError(f"{owner}: {name} must be a number or a (lower, upper) pair of numbers{where}, got {value!r}.")
    if bounds is not None and (lower < bounds[0] or upper > bounds[1]):
        raise ValueError(f"{owner}: {name} must lie in [{bounds[0]:g}, {bounds[1]:g}], got {value!r}.")
    return lower, upper


def value_range_pair(owner, value):
    """Keras' ``value_range``: a ``(low, high)`` pair of finite numbers with ``low < high``."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: value_range must be a (low, high) pair, e.g. (0, 255) or (0, 1), got {value!r}.") from None
    if not (is_number(lo) and is_number(hi)) or not float(lo) < float(hi):
        raise ValueError(f"{owner}: value_range must be a (low, high) pair of numbers with low < high, got {value!r}.")
    return float(lo), float(hi)


FILL_MODES = ("reflect", "wrap", "constant", "nearest")
GEOMETRY_INTERPOLATIONS = ("nearest", "bilinear")


def fill_options(owner, fill_mode, interpolation, fill_value):
    """Keras' ``fill_mode``, ``interpolation`` and ``fill_value`` checks for a geometric op."""
    if fill_mode not in FILL_MODES:
        raise ValueError(f"{owner}: fill_mode must be one of {FILL_MODES}, got {fill_mode!r}.")
    if interpolation not in GEOMETRY_INTERPOLATIONS:
        raise ValueError(f"{owner}: interpolation must be one of {GEOMETRY_INTERPOLATIONS}, got {interpolation!r}.")
    if not is_number(fill_value):
        raise ValueError(f"{owner}: fill_value must be a finite number (a pixel value, 0..255), got {fill_value!r}.")
