"""Augmentation policies, drawn per sample: RandAugment, TrivialAugmentWide, AugMix (NumPy only).

A policy is one op of ``augment=[...]`` (``family = "policy"``) that lists
every op it may choose as *steps*, and turns its ``n_draws`` uniforms per
sample into *gates* (``gates(u)``: 1 where a sample chose that candidate in
that slot, else 0) and, for AugMix, *weights* (``weights(u)``).
``fastseq.augment.chain`` makes each step a stage of the pass gated by its
column: the chosen ops run in slot order, the others are skipped (a
geometric candidate is a resample of its own, skipped entirely). Every
candidate draws its parameters whether or not it is chosen, from the
policy's own columns, so a sample's ops and magnitudes are a pure function
of ``(seed, epoch, sample)``.

Differences from Keras' layers (and torchvision's), all deliberate:

* Keras' ``RandAugment`` and ``AugMix`` draw the ops (and AugMix's mixing
  weights) once per *batch*, and each sub-layer's parameters once per image;
  here every image draws its own ops, magnitudes and weights (the reference
  is Keras' layer applied to one image at a time). Keras' AugMix picks its
  ops with Python's unseeded ``random.choice``; here they come from the seed.
* Each candidate op is the fastseq op with the arguments Keras' layer gives
  its sub-layer, so each has that op's documented differences (e.g.
  ``Equalization`` equalizes each image by its own histogram).
* ``AugMix(chain_depth=(lo, hi))`` (the default ``(1, 3)``, the AugMix
  paper's and KerasCV's): each chain applies ``randint(lo, hi + 1)`` ops, each
  uniform among the candidates. ``chain_depth=d`` (an integer, Keras 3's form):
  ``d`` slots, each either one of the candidates or nothing, uniformly (Keras'
  ``random.choice(layers + [None])``).
* AugMix's Dirichlet and Beta weights come from Gamma variates made from
  a fixed number of uniforms (Marsaglia and Tsang's method, 8 tries; the
  chance that all 8 fail is below 1e-9, and then the last try's value is
  kept).
* TrivialAugmentWide follows torchvision's op list and magnitude bins; on
  uint8 tensors torchvision rounds to uint8 after every op, here values
  stay float32 between ops (at most 1 level apart per op). Its nearest
  sampling rounds half away from zero (TensorFlow's rule) where
  torchvision's ``grid_sample`` rounds half to even.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from fastseq.augment._op import AugmentOp, fill_options, is_number, value_range_pair
from fastseq.augment.color import (
    AutoContrast,
    Equalization,
    RandomBrightness,
    RandomColorDegeneration,
    RandomContrast,
    RandomPosterization,
    RandomSharpness,
    Solarization,
)
from fastseq.augment.geometry import RandomRotation, RandomShear, RandomTranslation, _affine

GAMMA_TRIES = 8
#: Uniforms per Gamma variate: three per try (two for a normal, one to accept) and one for alpha < 1.
GAMMA_DRAWS = 3 * GAMMA_TRIES + 1


def gamma_from_uniforms(u, alpha):
    """Gamma(``alpha``, 1) variates from float64 ``(n, GAMMA_DRAWS)`` uniforms in [0, 1) (Marsaglia and Tsang).

    For ``alpha < 1``: ``Gamma(alpha + 1) * U ** (1 / alpha)`` with the last column's ``U``.
    """
    u = np.asarray(u, np.float64)
    a = alpha if alpha >= 1 else alpha + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    n = u.shape[0]
    out = np.full(n, d)
    done = np.zeros(n, bool)
    for t in range(GAMMA_TRIES):
        u1, u2, u3 = u[:, 3 * t], u[:, 3 * t + 1], u[:, 3 * t + 2]
        z = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
        v = (1.0 + c * z) ** 3
        safe = np.where(v > 0, v, 1.0)
        ok = (v > 0) & (np.log1p(-u3) < 0.5 * z * z + d - d * safe + d * np.log(safe))
        take = ok & ~done
        out[take] = d * v[take]
        last = (t == GAMMA_TRIES - 1) & ~done & ~ok & (v > 0)
        out[last] = d * v[last]
        done |= ok
    if alpha < 1:
        out = out * (1.0 - u[:, -1]) ** (1.0 / alpha)
    return out


def _keras_factor(owner, value):
    """Keras' ``_set_factor`` with bounds (0, 1): ``f`` -> ``(0, f)``; a pair sorted; both ends in [0, 1] here."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(is_number(v) for v in value):
            raise ValueError(f"{owner}: factor must be a number or a (lower, upper) pair in [0, 1], got {value!r}.")
        lower, upper = sorted(float(v) for v in value)
    elif is_number(value):
        lower, upper = 0.0, abs(float(value))
        if float(value) < 0:
            upper = 2.0  # rejected below, as Keras does
    else:
        raise ValueError(f"{owner}: factor must be a number or a (lower, upper) pair in [0, 1], got {value!r}.")
    if lower < 0 or upper > 1:
        raise ValueError(f"{owner}: factor must be a number or a (lower, upper) pair in [0, 1], got {value!r}.")
    return lower, upper


def _count(owner, name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _keras_candidates(owner, names, factor, value_range, interpolation):
    """The sub-layers Keras' RandAugment / AugMix build, as fastseq ops, by Keras' attribute name."""
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"{owner}: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}.")
    value_range_pair(owner, value_range)
    make = {
        "random_shear": lambda: RandomShear(x_factor=factor, y_factor=factor, interpolation=interpolation),
        "random_translation": lambda: RandomTranslation(height_factor=factor, width_factor=factor,
                                                        interpolation=interpolation),
        "random_rotation": lambda: RandomRotation(factor=factor, interpolation=interpolation),
        "random_brightness": lambda: RandomBrightness(factor=factor, value_range=value_range),
        "random_color_degeneration": lambda: RandomColorDegeneration(factor=factor, value_range=value_range),
        "random_contrast": lambda: RandomContrast(factor=factor, value_range=value_range),
        "random_sharpness": lambda: RandomSharpness(factor=factor, value_range=value_range),
        "random_posterization": lambda: RandomPosterization(factor=max(1, int(8 * factor[1])), value_range=value_range),
        "solarization": lambda: Solarization(addition_factor=factor, threshold_factor=factor, value_range=value_range),
        "auto_contrast": lambda: AutoContrast(value_range=value_range),
        "equalization": lambda: Equalization(value_range=value_range),
    }
    return tuple(make[name]() for name in names)


def _choice(u, k):
    """Uniform integers in ``range(k)`` from uniforms (Keras' and torchvision's ``randint``)."""
    return np.minimum(np.floor(u * k), k - 1).astype(np.int64)


class _Policy(AugmentOp):
    """Slots of candidates: ``_slot_layout`` gives, per slot, each candidate's draw columns after the slot's choice."""

    family = "policy"
    n_weights = 0

    def _layout(self, n_slots, candidates, extra_per_slot=0, head=0):
        """Draw columns: ``head`` first, then per slot its choice (+ extras), then each candidate's draws."""
        cols, at = [], head
        for _ in range(n_slots):
            choice = at
            at += 1 + extra_per_slot
            per = []
            for cand in candidates:
                per.append(slice(at, at + cand.n_draws))
                at += cand.n_draws
            cols.append((choice, per))
        return cols, at

    def check_channels(self, channels):
        for cand in self.candidates:
            cand.check_channels(channels)

    def weights(self, u):
        return np.zeros((len(u), 0))

    def steps(self):
        """``("op", candidate, gate column, draw columns)`` for every slot and candidate, in slot order."""
        L = len(self.candidates)
        return [("op", cand, s * L + c, self._cols[s][1][c])
                for s in range(len(self._cols)) for c, cand in enumerate(self.candidates) if cand is not None]

    @property
    def n_gates(self):
        return len(self._cols) * len(self.candidates)

    def choices(self, u):
        """Each sample's candidate per slot, int64 ``(n, slots)`` (``len(candidates)``: none)."""
        g = self.gates(u).reshape(len(u), len(self._cols), len(self.candidates))
        return np.where(g.any(axis=2), g.argmax(axis=2), len(self.candidates))


@dataclass(frozen=True)
class RandAugment(_Policy):
    """Keras' ``RandAugment``, with the ops drawn per image: ``num_ops`` ops in a row, each uniform among 11.

    The candidates, in Keras' order, are Keras' sub-layers with Keras' arguments:
    ``RandomShear(x_factor=factor, y_factor=factor)``,
    ``RandomTranslation(factor, factor)``, ``RandomRotation(factor)``,
    ``RandomBrightness(factor)``, ``RandomColorDegeneration(factor)``,
    ``RandomContrast(factor)``, ``RandomSharpness(factor)``,
    ``RandomPosterization(max(1, int(8 * upper)))``,
    ``Solarization(factor, factor)``, ``AutoContrast()``, ``Equalization()``
    (``factor`` as the pair ``(lower, upper)``; the geometric ones with
    ``interpolation`` and Keras' default ``fill_mode="reflect"``). Keras draws
    the ``num_ops`` choices once per batch; here each image draws its own
    (with repetition, as Keras), and each chosen op its own parameters.

    Args:
        value_range: how Keras would see the pixel values, ``(low, high)``.
        num_ops: how many ops each image goes through, an integer >= 0.
        factor: the strength: a number ``f`` in [0, 1] (meaning ``(0, f)``) or a ``(lower, upper)`` pair in [0, 1].
        interpolation: ``"bilinear"`` or ``"nearest"``, for the geometric ops.
    """

    value_range: tuple = (0, 255)
    num_ops: int = 2
    factor: object = 0.5
    interpolation: str = "bilinear"

    LAYERS = ("random_shear", "random_translation", "random_rotation", "random_brightness",
              "random_color_degeneration", "random_contrast", "random_sharpness", "random_posterization",
              "solarization", "auto_contrast", "equalization")

    def __post_init__(self):
        f = _keras_factor("RandAugment", self.factor)
        num_ops = _count("RandAugment", "num_ops", self.num_ops, 0)
        cands = _keras_candidates("RandAugment", self.LAYERS, f, self.value_range, self.interpolation)
        object.__setattr__(self, "candidates", cands)
        cols, n = self._layout(num_ops, cands)
        object.__setattr__(self, "_cols", cols)
        object.__setattr__(self, "n_draws", n)

    def gates(self, u):
        u = np.asarray(u, np.float64)
        L = len(self.candidates)
        out = np.zeros((len(u), len(self._cols), L))
        for s, (choice, _) in enumerate(self._cols):
            out[np.arange(len(u)), s, _choice(u[:, choice], L)] = 1.0
        return out.reshape(len(u), -1)


# ---- TrivialAugmentWide: torchvision's ops, as fastseq stages ----


class _Bins(AugmentOp):
    """A torchvision op with its magnitude bins: draws ``(bin, sign)``; ``magnitudes(u)`` gives the signed values."""

    n_draws = 2

    def __init__(self, name, bins, signed):
        self.name, self.bins, self.signed = name, np.asarray(bins, np.float64), signed

    def magnitudes(self, u):
        u = np.asarray(u, np.float64)
        m = self.bins[_choice(u[:, 0], len(self.bins))]
        return np.where(u[:, 1] < 0.5, -m, m) if self.signed else m

    def __repr__(self):
        return f"TrivialAugmentWide.{self.name}"


class _TVGeometry(_Bins):
    family = "geometry"
    fill_mode = "constant"

    def __init__(self, name, bins, signed, interpolation, fill):
        super().__init__(name, bins, signed)
        self.interpolation, self.pixel_fill = interpolation, float(fill)

    def matrices(self, u, height, width):
        m = self.magnitudes(u)
        n = len(m)
        out = np.tile(np.eye(3), (n, 1, 1))
        if self.name == "ShearX":  # torchvision shears about the corner (-0.5, -0.5): x + m (y + 0.5)
            out[:, 0, 1], out[:, 0, 2] = m, 0.5 * m
        elif self.name == "ShearY":
            out[:, 1, 0], out[:, 1, 2] = m, 0.5 * m
        elif self.name == "TranslateX":  # torchvision: translate=[int(m), 0]
            out[:, 0, 2] = -np.trunc(m)
        elif self.name == "TranslateY":
            out[:, 1, 2] = -np.trunc(m)
        else:  # Rotate: degrees, counter-clockwise, about the centre
            z = np.zeros(n)
            out = _affine(m, 1.0, z, z, z, z, height, width)
        return out


#: Torchvision color ops by name: (stage, code): Keras' kernels where the formula is the same.
_TV_COLOR = {
    "Brightness": ("extra", 1), "Color": ("color", 13), "Contrast": ("extra", 2), "Sharpness": ("extra", 3),
    "Posterize": ("color", 9), "Solarize": ("color", 8), "AutoContrast": ("color", 10), "Equalize": ("extra", 4),
}


class _TVColor(_Bins):
    family = "color"

    def __init__(self, name, bins, signed):
        super().__init__(name, bins, signed)
        self.stage, self.code = _TV_COLOR[name]
        self.n_params = {"Solarize": 2, "AutoContrast": 0, "Equalize": 0}.get(name, 1)

    def params(self, u):
        m = self.magnitudes(u)
        if self.name in ("Brightness", "Contrast", "Sharpness"):
            return (1.0 + m)[:, None]
        if self.name == "Color":  # torchvision's blend with the gray image, as Keras' degeneration: x + (1 - f)(gray - x)
            return (-m)[:, None]
        if self.name == "Posterize":
            return (8.0 - m)[:, None]
        if self.name == "Solarize":
            return np.stack([np.zeros_like(m), m], axis=1)
        return np.zeros((len(m), 0))


@dataclass(frozen=True)
class TrivialAugmentWide(_Policy):
    """Torchvision's ``TrivialAugmentWide``, per image: one op uniform among 14, with a magnitude uniform among its bins.

    The ops and bins (``num_magnitude_bins=31``): Identity; ShearX, ShearY
    (``linspace(0, 0.99)``, about the top-left corner); TranslateX, TranslateY
    (``linspace(0, 32)`` pixels, truncated to integers); Rotate
    (``linspace(0, 135)`` degrees); Brightness, Color, Contrast, Sharpness
    (``linspace(0, 0.99)``, applied as ``1 + m``); Posterize
    (``8 - round(arange(bins) / ((bins - 1) / 4))`` bits); Solarize
    (``linspace(255, 0)`` threshold); AutoContrast; Equalize. Shears, translations,
    rotations and the four blends flip their sign with probability 1/2.
    Color, Posterize, Solarize and AutoContrast run Keras' kernels (the same
    formulas); Brightness, Contrast, Sharpness and Equalize run torchvision's
    own (``fastseq.kernels.tv_color``). Values are in pixel units 0..255.

    Args:
        num_magnitude_bins: the number of magnitude bins, an integer >= 2.
        interpolation: ``"nearest"`` (torchvision's default) or ``"bilinear"``, for the geometric ops.
        fill: the value outside the image after a geometric op (0..255); None means 0, as torchvision.
    """

    num_magnitude_bins: int = 31
    interpolation: str = "nearest"
    fill: float | None = None

    OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
           "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")

    def __post_init__(self):
        owner = "TrivialAugmentWide"
        nb = _count(owner, "num_magnitude_bins", self.num_magnitude_bins, 2)
        fill = 0.0 if self.fill is None else self.fill
        fill_options(owner, "constant", self.interpolation, fill)
        bins = {
            "ShearX": np.linspace(0.0, 0.99, nb), "ShearY": np.linspace(0.0, 0.99, nb),
            "TranslateX": np.linspace(0.0, 32.0, nb), "TranslateY": np.linspace(0.0, 32.0, nb),
            "Rotate": np.linspace(0.0, 135.0, nb),
            "Brightness": np.linspace(0.0, 0.99, nb), "Color": np.linspace(0.0, 0.99, nb),
            "Contrast": np.linspace(0.0, 0.99, nb), "Sharpness": np.linspace(0.0, 0.99, nb),
            "Posterize": 8 - np.round(np.arange(nb) / ((nb - 1) / 4.0)),
            "Solarize": np.linspace(255.0, 0.0, nb),
            "AutoContrast": np.zeros(1), "Equalize": np.zeros(1),
        }
        signed = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
                  "Sharpness"}
        cands = []
        for name in self.OPS:
            if name == "Identity":
                cands.append(None)
            elif name in _TV_COLOR:
                cands.append(_TVColor(name, bins[name], name in signed))
            else:
                cands.append(_TVGeometry(name, bins[name], name in signed, self.interpolation, fill))
        object.__setattr__(self, "candidates", tuple(cands))
        cols, n = self._layout(1, [c if c is not None else _Bins("Identity", [0.0], False) for c in cands])
        object.__setattr__(self, "_cols", cols)
        object.__setattr__(self, "n_draws", n)

    def check_channels(self, channels):
        pass  # every op takes any channel count (Color leaves non-RGB images as they are, clipped)

    def gates(self, u):
        u = np.asarray(u, np.float64)
        L = len(self.candidates)
        out = np.zeros((len(u), L))
        out[np.arange(len(u)), _choice(u[:, self._cols[0][0]], L)] = 1.0
        return out


# ---- AugMix ----


@dataclass(frozen=True)
class AugMix(_Policy):
    """Keras' ``AugMix``, per image: ``num_chains`` chains of random ops blended with the image.

    Each chain starts from the image and applies its ops; the chains are
    summed with Dirichlet(``alpha``) weights, and the result is
    ``clip(m * image + (1 - m) * chains, value_range)`` with ``m ~ Beta(alpha, alpha)``.
    The candidates (Keras' ``all_ops=True`` order): shear, translation,
    rotation, posterization, solarization, auto-contrast, equalization, then
    brightness, color degeneration, contrast, sharpness; ``all_ops=False``
    keeps the first seven. Each is Keras' sub-layer with Keras' arguments (see
    ``RandAugment``). Keras draws the ops and weights once per batch;
    here each image draws its own. Compiles the pass's ``extended`` variant.

    Args:
        value_range: how Keras would see the pixel values, ``(low, high)``.
        num_chains: how many chains are mixed, an integer >= 1.
        chain_depth: a ``(lo, hi)`` pair (each chain applies ``lo..hi`` ops, uniformly; the
            paper's and KerasCV's form, default ``(1, 3)``) or an integer ``d`` (Keras 3: ``d`` slots,
            each one of the ops or none, uniformly).
        factor: the strength: a number ``f`` in [0, 1] (meaning ``(0, f)``) or a ``(lower, upper)`` pair in [0, 1].
        alpha: the Dirichlet and Beta parameter, a number > 0.
        all_ops: with False, only the seven geometric and tone ops (no brightness, degeneration,
            contrast or sharpness).
        interpolation: ``"bilinear"`` or ``"nearest"``, for the geometric ops.
    """

    value_range: tuple = (0, 255)
    num_chains: int = 3
    chain_depth: object = (1, 3)
    factor: object = 0.3
    alpha: float = 1.0
    all_ops: bool = True
    interpolation: str = "bilinear"

    LAYERS_ALL = ("random_shear", "random_translation", "random_rotation", "random_posterization", "solarization",
                  "auto_contrast", "equalization", "random_brightness", "random_color_degeneration", "random_contrast",
                  "random_sharpness")

    def __post_init__(self):
        owner = "AugMix"
        f = _keras_factor(owner, self.factor)
        chains = _count(owner, "num_chains", self.num_chains, 1)
        d = self.chain_depth
        if isinstance(d, (tuple, list)):
            if len(d) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in d) \
                    or not 0 <= d[0] <= d[1]:
                raise ValueError(f"AugMix: chain_depth must be an integer >= 0 or a (lo, hi) pair of integers with "
                                 f"0 <= lo <= hi, got {d!r}.")
            slots, depth_range = int(d[1]), (int(d[0]), int(d[1]))
        else:
            slots, depth_range = _count(owner, "chain_depth", d, 0), None
        if not is_number(self.alpha) or float(self.alpha) <= 0:
            raise ValueError(f"AugMix: alpha must be a number > 0, got {self.alpha!r}.")
        if not isinstance(self.all_ops, bool):
            raise ValueError(f"AugMix: all_ops must be True or False, got {self.all_ops!r}.")
        names = self.LAYERS_ALL if self.all_ops else self.LAYERS_ALL[:7]
        cands = _keras_candidates(owner, names, f, self.value_range, self.interpolation)
        object.__setattr__(self, "candidates", cands)
        object.__setattr__(self, "_depth_range", depth_range)
        object.__setattr__(self, "_slots", slots)
        # Columns: the weights' Gamma variates (chains + 2), then per chain its depth, then its slots.
        head = (chains + 2) * GAMMA_DRAWS
        layout = []
        at = head
        for _ in range(chains):
            depth_col = at
            cols, at = self._layout(slots, cands, head=at + 1)
            layout.append((depth_col, cols))
        object.__setattr__(self, "_chains", layout)
        object.__setattr__(self, "_cols", [slot for _, cols in layout for slot in cols])
        object.__setattr__(self, "n_draws", at)
        object.__setattr__(self, "n_weights", chains + 1)

    def steps(self):
        L, S = len(self.candidates), self._slots
        out = [("keep",)]
        for c, (_, cols) in enumerate(self._chains):
            for s in range(S):
                for k, cand in enumerate(self.candidates):
                    out.append(("op", cand, (c * S + s) * L + k, cols[s][1][k]))
            out.append(("accum", c))
        out.append(("blend", len(self._chains)))
        return out

    def gates(self, u):
        u = np.asarray(u, np.float64)
        n, L, S = len(u), len(self.candidates), self._slots
        out = np.zeros((n, len(self._chains), S, L))
        rows = np.arange(n)
        for c, (depth_col, cols) in enumerate(self._chains):
            if self._depth_range is not None:
                lo, hi = self._depth_range
                depth = lo + _choice(u[:, depth_col], hi - lo + 1)
            for s, (choice, _) in enumerate(cols):
                if self._depth_range is None:  # Keras: random.choice(layers + [None])
                    pick = _choice(u[:, choice], L + 1)
                    on = pick < L
                else:
                    pick = _choice(u[:, choice], L)
                    on = s < depth
                out[rows[on], c, s, pick[on]] = 1.0
        return out.reshape(n, -1)

    def weights(self, u):
        """``(n, num_chains + 1)``: the Dirichlet chain weights, then the Beta weight ``m`` of the image."""
        u = np.asarray(u, np.float64)
        a = float(self.alpha)
        C = len(self._chains)
        g = np.stack([gamma_from_uniforms(u[:, i * GAMMA_DRAWS:(i + 1) * GAMMA_DRAWS], a) for i in range(C + 2)], 1)
        w = g[:, :C] / g[:, :C].sum(axis=1, keepdims=True)
        m = g[:, C] / (g[:, C] + g[:, C + 1])
        return np.concatenate([w, m[:, None]], axis=1)


__all__ = ["RandAugment", "TrivialAugmentWide", "AugMix", "gamma_from_uniforms"]
