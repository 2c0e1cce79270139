"""Keras' color and filter layers as ops of ``augment=[...]`` (NumPy only).

Each spec has Keras' name, argument names, defaults and forms, validates
its arguments and draws nothing: ``params(u)`` maps the ``n_draws``
uniforms of each sample to ``n_params`` float64 numbers with Keras'
distributions, in pixel units 0..255 (see ``fastseq.augment._op``), and
the compiled function of ``fastseq.kernels.color`` selected by ``code``
applies them to the sample's float32 HWC values in place.

Where Keras draws one value for the whole batch (``RandomGaussianBlur``'s
sigmas) or pools a statistic over it (``Equalization``'s histogram), the
reference is Keras' layer applied to one image at a time: every sample
draws its own.

``keras_transformation(params)`` builds the ``transformation`` argument of
the Keras layer's ``transform_images`` from our per-sample parameters, so
that tests can pin Keras to exactly our draws.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from fastseq.augment._op import AugmentOp, is_number, value_range_pair

#: Keras' ``backend.epsilon()``, in RandomSaturation's ``f / (1 - f + eps)``.
KERAS_EPSILON = 1e-7


def _factor(owner, name, value, bounds, upper_bound=None):
    """Keras' ``_set_factor``: a number ``f`` in ``bounds`` means ``(max(-f, bounds[0]), f)``; a pair is sorted.

    Keras checks only that a pair overlaps ``bounds``; here both ends must lie
    in ``bounds`` (what Keras' message asks for), except that the upper end
    may reach ``upper_bound`` where a larger value has a meaning (contrast, sigma).
    """
    b0, b1 = bounds
    hi = b1 if upper_bound is None else upper_bound
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(is_number(v) for v in value):
            raise ValueError(f"{owner}: {name} must be a number in [{b0:g}, {b1:g}] or a (lower, upper) pair, "
                             f"got {value!r}.")
        lower, upper = sorted(float(v) for v in value)
        if lower < b0 or upper > hi:
            raise ValueError(f"{owner}: a (lower, upper) {name} must lie in [{b0:g}, {hi:g}], got {value!r}.")
        return lower, upper
    if not is_number(value):
        raise ValueError(f"{owner}: {name} must be a number in [{b0:g}, {b1:g}] or a (lower, upper) pair, got {value!r}.")
    f = float(value)
    if f < b0 or f > b1:
        raise ValueError(f"{owner}: a single-number {name} must lie in [{b0:g}, {b1:g}], got {value!r}.")
    f = abs(f)
    return max(-f, float(b0)), f


def _uniform(u, pair):
    return pair[0] + u * (pair[1] - pair[0])


def _cols(n, *columns):
    return np.stack([np.broadcast_to(np.asarray(c, np.float64), (n,)) for c in columns], axis=1) if columns \
        else np.zeros((n, 0), np.float64)


def _u(u, n_draws):
    u = np.asarray(u, np.float64)
    if u.ndim != 2 or u.shape[1] != n_draws:
        raise ValueError(f"u must be float64 (n, {n_draws}) uniforms in [0, 1), got shape {u.shape}.")
    return u


def _need_rgb(owner, channels, allow_gray=False):
    ok = (1, 3) if allow_gray else (3,)
    if channels not in ok:
        what = "RGB (3 channels) or grayscale (1)" if allow_gray else "RGB images (3 channels)"
        raise ValueError(f"{owner} needs {what}, got images with {channels} channels.")


class _ColorOp(AugmentOp):
    family = "color"
    n_params = 0

    def _range(self):
        lo, hi = value_range_pair(type(self).__name__, self.value_range)
        return lo, (hi - lo) / 255.0

    def keras_layer(self):
        """The Keras layer this op reproduces (imports Keras; for tests)."""
        import keras

        kw = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return getattr(keras.layers, type(self).__name__)(**kw)


# ---- brightness, contrast, saturation, hue (and their jitter) ----


@dataclass(frozen=True)
class RandomBrightness(_ColorOp):
    """Keras' ``RandomBrightness``: add ``uniform(*factor) * (high - low)`` to every value, clip to the range.

    Args:
        factor: a number ``f`` in [-1, 1] (meaning ``(-|f|, |f|)``) or a (lower, upper) pair in [-1, 1].
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    factor: float | tuple
    value_range: tuple = (0, 255)
    code = 1
    n_draws = 1
    n_params = 1

    def __post_init__(self):
        object.__setattr__(self, "_f", _factor("RandomBrightness", "factor", self.factor, (-1, 1)))
        self._range()

    def params(self, u):
        u = _u(u, 1)
        return _cols(len(u), _uniform(u[:, 0], self._f) * 255.0)

    def keras_transformation(self, params):
        step = self._range()[1]
        return {"rgb_delta": np.asarray(params[:, 0] * step, np.float32).reshape(-1, 1, 1, 1)}


@dataclass(frozen=True)
class RandomContrast(_ColorOp):
    """Keras' ``RandomContrast``: ``(x - mean) * c + mean`` per channel, ``c ~ uniform(1 - lower, 1 + upper)``, clipped.

    As in Keras 3, a single number ``f`` means ``(0, f)``: ``c ~ uniform(1, 1 + f)``.

    Args:
        factor: a number in [0, 1] or a (lower, upper) pair (lower in [0, 1]; upper may exceed 1).
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    factor: float | tuple
    value_range: tuple = (0, 255)
    code = 2
    n_draws = 1
    n_params = 1

    def __post_init__(self):
        f = _factor("RandomContrast", "factor", self.factor, (0, 1), upper_bound=np.inf)
        if f[0] > 1:
            raise ValueError(f"RandomContrast: factor's lower end must be in [0, 1] (the contrast is 1 - lower at "
                             f"least), got {self.factor!r}.")
        object.__setattr__(self, "_f", f)
        self._range()

    def params(self, u):
        u = _u(u, 1)
        return _cols(len(u), (1.0 - self._f[0]) + u[:, 0] * ((1.0 + self._f[1]) - (1.0 - self._f[0])))

    def keras_transformation(self, params):
        return {"contrast_factor": np.asarray(params[:, 0], np.float32).reshape(-1, 1, 1, 1)}


@dataclass(frozen=True)
class RandomSaturation(_ColorOp):
    """Keras' ``RandomSaturation``: HSV's S times ``f / (1 - f + 1e-7)``, ``f ~ uniform(*factor)``, S clipped to the range.

    Keras converts the values as they are (no rescaling) and clips S to
    ``value_range``: with (0, 255) S is not clipped above 1, and strongly
    saturated colors leave the range (Keras does not clip them; neither do we).
    As in Keras 3, a single number ``f`` means ``(-f, f)`` (negative draws give gray).

    Args:
        factor: a number in [-1, 1] or a (lower, upper) pair in [-1, 1].
        value_range: the ``(low, high)`` Keras would see the values in.

    Raises:
        ValueError: (``check_channels``) for images without 3 channels.
    """

    factor: float | tuple
    value_range: tuple = (0, 255)
    code = 3
    n_draws = 1
    n_params = 5

    def __post_init__(self):
        f = _factor("RandomSaturation", "factor", self.factor, (-1, 1))
        object.__setattr__(self, "_f", f)
        self._range()

    def check_channels(self, channels):
        _need_rgb("RandomSaturation", channels)

    def params(self, u):
        u = _u(u, 1)
        f = _uniform(u[:, 0], self._f)
        lo, step = self._range()
        return _cols(len(u), f / (1.0 - f + KERAS_EPSILON), lo, lo + 255.0 * step, lo, step)

    def keras_transformation(self, params):
        return {"factor": np.asarray(params[:, 0], np.float32)}


@dataclass(frozen=True)
class RandomHue(_ColorOp):
    """Keras' ``RandomHue``: HSV's H (in [0, 1)) shifted by ``±uniform(*factor) / 2``, wrapped, then clipped to the range.

    Args:
        factor: a number ``f`` in [0, 1] (meaning ``(0, f)``) or a (lower, upper) pair in [0, 1].
        value_range: the ``(low, high)`` Keras would see the values in.

    Raises:
        ValueError: (``check_channels``) for images without 3 channels.
    """

    factor: float | tuple
    value_range: tuple = (0, 255)
    code = 4
    n_draws = 2
    n_params = 1

    def __post_init__(self):
        object.__setattr__(self, "_f", _factor("RandomHue", "factor", self.factor, (0, 1)))
        self._range()

    def check_channels(self, channels):
        _need_rgb("RandomHue", channels)

    def params(self, u):
        u = _u(u, 2)
        sign = np.where(u[:, 0] > 0.5, -1.0, 1.0)
        return _cols(len(u), sign * _uniform(u[:, 1], self._f) * 0.5)

    def keras_transformation(self, params):
        return {"factor": np.asarray(params[:, 0], np.float32)}


@dataclass(frozen=True)
class RandomColorJitter(_ColorOp):
    """Keras' ``RandomColorJitter``: brightness, contrast, saturation, hue (those given), in that order.

    Each part has the meaning, checks and draws of the op of that name.

    Args:
        value_range: the ``(low, high)`` Keras would see the values in.
        brightness_factor (float | tuple | None): ``RandomBrightness``'s ``factor``, or None to leave it out.
        contrast_factor (float | tuple | None): ``RandomContrast``'s ``factor``, or None to leave it out.
        saturation_factor (float | tuple | None): ``RandomSaturation``'s ``factor``, or None to leave it out.
        hue_factor (float | tuple | None): ``RandomHue``'s ``factor``, or None to leave it out.
    """

    value_range: tuple = (0, 255)
    brightness_factor: float | tuple | None = None
    contrast_factor: float | tuple | None = None
    saturation_factor: float | tuple | None = None
    hue_factor: float | tuple | None = None
    code = 5
    n_params = 12  # [on, delta, on, contrast, on, saturation x5, on, hue delta]

    def __post_init__(self):
        checks = {"brightness_factor": ((-1, 1), None), "contrast_factor": ((0, 1), np.inf),
                  "saturation_factor": ((-1, 1), None), "hue_factor": ((0, 1), None)}
        parts = []
        for cls, arg in ((RandomBrightness, "brightness_factor"), (RandomContrast, "contrast_factor"),
                         (RandomSaturation, "saturation_factor"), (RandomHue, "hue_factor")):
            value = getattr(self, arg)
            if value is None:
                parts.append(None)
                continue
            bounds, upper = checks[arg]
            _factor("RandomColorJitter", arg, value, bounds, upper_bound=upper)
            parts.append(cls(factor=value, value_range=self.value_range))
        object.__setattr__(self, "_parts", tuple(parts))
        object.__setattr__(self, "n_draws", sum(p.n_draws for p in parts if p is not None))

    def check_channels(self, channels):
        if self._parts[2] is not None or self._parts[3] is not None:
            _need_rgb("RandomColorJitter (with saturation_factor or hue_factor)", channels)

    def params(self, u):
        u = _u(u, self.n_draws)
        n = len(u)
        out = np.zeros((n, 12), np.float64)
        col, k = 0, 0
        for part, width in zip(self._parts, (1, 1, 5, 1)):
            if part is not None:
                out[:, col] = 1.0
                out[:, col + 1:col + 1 + width] = part.params(u[:, k:k + part.n_draws])
                k += part.n_draws
            col += 1 + width
        return out

    def keras_part_transformations(self, params):
        """Per part (None where left out), the ``transformation`` of Keras' sub-layer, from our ``params``."""
        cols = {0: (1, 2), 1: (3, 4), 2: (5, 10), 3: (11, 12)}
        return [None if part is None else part.keras_transformation(params[:, cols[i][0]:cols[i][1]])
                for i, part in enumerate(self._parts)]


# ---- grayscale, invert, solarization, posterization ----


@dataclass(frozen=True)
class RandomGrayscale(_ColorOp):
    """Keras' ``RandomGrayscale``: with probability ``factor``, every channel becomes ``0.2989 R + 0.5870 G + 0.1140 B``.

    Grayscale images (1 channel) are left as they are, as Keras does.

    Args:
        factor: the probability, in [0, 1].
    """

    factor: float = 0.5
    code = 6
    n_draws = 1
    n_params = 1

    def __post_init__(self):
        if not is_number(self.factor) or not 0 <= float(self.factor) <= 1:
            raise ValueError(f"RandomGrayscale: factor must be a probability in [0, 1], got {self.factor!r}.")

    def check_channels(self, channels):
        _need_rgb("RandomGrayscale", channels, allow_gray=True)

    def params(self, u):
        u = _u(u, 1)
        return _cols(len(u), (u[:, 0] < float(self.factor)).astype(np.float64))

    def keras_transformation(self, params):
        return np.asarray(params[:, 0] > 0.5).reshape(-1, 1, 1, 1)


@dataclass(frozen=True)
class RandomInvert(_ColorOp):
    """Keras' ``RandomInvert``: ``x -> high - x`` where ``u1 < uniform(*factor)`` (so ``factor=1.0`` inverts half).

    Keras' ``high - x`` is ``low + high - x`` only when ``low == 0``; we
    follow Keras for any range.

    Args:
        factor: a number ``f`` in [0, 1] (meaning ``(0, f)``) or a (lower, upper) pair in [0, 1].
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    factor: float | tuple = 1.0
    value_range: tuple = (0, 255)
    code = 7
    n_draws = 2
    n_params = 2

    def __post_init__(self):
        object.__setattr__(self, "_f", _factor("RandomInvert", "factor", self.factor, (0, 1)))
        self._range()

    def params(self, u):
        u = _u(u, 2)
        lo, step = self._range()
        apply = (u[:, 1] < _uniform(u[:, 0], self._f)).astype(np.float64)
        return _cols(len(u), apply, 255.0 - lo / step)

    def keras_transformation(self, params):
        return {"apply_inversion": np.asarray(params[:, 0] > 0.5)}


@dataclass(frozen=True)
class Solarization(_ColorOp):
    """Keras' ``Solarization``: on the 0..255 scale, ``y = clip(x + a, 0, 255)``; ``y if y < t else 255 - y``.

    Keras draws ``a ~ uniform(lower, upper * 255)`` and ``t`` alike (only the
    upper end is scaled by 255); we draw the same. The default threshold
    (0) inverts every value.

    Args:
        addition_factor: a number ``f`` in [0, 1] (meaning ``(0, f)``) or a pair in [0, 1].
        threshold_factor: the same form, for ``t``.
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    addition_factor: float | tuple = 0.0
    threshold_factor: float | tuple = 0.0
    value_range: tuple = (0, 255)
    code = 8
    n_draws = 2
    n_params = 2

    def __post_init__(self):
        object.__setattr__(self, "_a", _factor("Solarization", "addition_factor", self.addition_factor, (0, 1)))
        object.__setattr__(self, "_t", _factor("Solarization", "threshold_factor", self.threshold_factor, (0, 1)))
        self._range()

    def params(self, u):
        u = _u(u, 2)
        a = self._a[0] + u[:, 0] * (self._a[1] * 255.0 - self._a[0])
        t = self._t[0] + u[:, 1] * (self._t[1] * 255.0 - self._t[0])
        return _cols(len(u), a, t)

    def keras_transformation(self, params):
        return {"additions": np.asarray(params[:, 0], np.float32).reshape(-1, 1, 1, 1),
                "thresholds": np.asarray(params[:, 1], np.float32).reshape(-1, 1, 1, 1)}


@dataclass(frozen=True)
class RandomPosterization(_ColorOp):
    """Keras' ``RandomPosterization``: keep the top ``bits`` bits of each 0..255 value (truncated to uint8).

    ``bits ~ randint(lower, upper)``, upper excluded as in Keras (unless
    ``lower == upper``). Values outside 0..255 are clamped before the cast.

    Args:
        factor: an integer ``f`` in [1, 8] (meaning ``(1, f)``) or a (lower, upper) pair of integers in [1, 8].
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    factor: int | tuple
    value_range: tuple = (0, 255)
    code = 9
    n_draws = 1
    n_params = 1

    def __post_init__(self):
        values = self.factor if isinstance(self.factor, (tuple, list)) else (self.factor,)
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            raise ValueError(f"RandomPosterization: factor must be an integer in [1, 8] or a (lower, upper) pair of "
                             f"integers in [1, 8] (bits kept), got {self.factor!r}.")
        f = _factor("RandomPosterization", "factor", self.factor, (1, 8))
        object.__setattr__(self, "_f", (int(f[0]), int(f[1])))
        self._range()

    def params(self, u):
        u = _u(u, 1)
        lo, hi = self._f
        bits = np.full(len(u), float(lo)) if lo == hi else np.minimum(lo + np.floor(u[:, 0] * (hi - lo)), hi - 1)
        return _cols(len(u), 8.0 - bits)

    def keras_transformation(self, params):
        return {"shift_factor": np.asarray(params[:, 0], np.uint8)}


# ---- per-image statistics: auto-contrast, equalization ----


@dataclass(frozen=True)
class AutoContrast(_ColorOp):
    """Keras' ``AutoContrast``: each channel of each image stretched from its (min, max) to the whole range.

    A constant channel is left as it is (Keras' NaN guard).

    Args:
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    value_range: tuple = (0, 255)
    code = 10
    random = False

    def __post_init__(self):
        self._range()

    def params(self, u):
        return np.zeros((len(np.asarray(u)), 0), np.float64)

    def keras_transformation(self, params):
        return None


@dataclass(frozen=True)
class Equalization(_ColorOp):
    """Keras' ``Equalization``: each channel's histogram (``bins`` bins over 0..255) equalized.

    Keras pools the histogram of each channel over the whole batch; the
    reference here is Keras' layer applied to one image at a time (each
    sample equalized by its own histogram), so a sample's pixels do not
    depend on the batch it lands in.

    Args:
        value_range: the ``(low, high)`` Keras would see the values in.
        bins: the number of histogram bins, an integer >= 2.
    """

    value_range: tuple = (0, 255)
    bins: int = 256
    code = 11
    random = False
    n_params = 1

    def __post_init__(self):
        self._range()
        if isinstance(self.bins, bool) or not isinstance(self.bins, numbers.Integral) or not 2 <= self.bins <= 65536:
            raise ValueError(f"Equalization: bins must be an integer in [2, 65536], got {self.bins!r}.")

    def params(self, u):
        return _cols(len(np.asarray(u)), float(self.bins))

    def keras_transformation(self, params):
        return None


# ---- filters and degeneration ----


@dataclass(frozen=True)
class RandomSharpness(_ColorOp):
    """Keras' ``RandomSharpness``: ``x + (1 - 2f) (smooth(x) - x)``, ``f ~ uniform(*factor)``, clipped.

    ``smooth`` is the 3x3 kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``
    with zero padding (Keras' ``"same"`` depthwise convolution).

    Args:
        factor: a number ``f`` in [0, 1] (meaning ``(0, f)``) or a (lower, upper) pair in [0, 1].
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    factor: float | tuple
    value_range: tuple = (0, 255)
    code = 12
    n_draws = 1
    n_params = 2

    def __post_init__(self):
        object.__setattr__(self, "_f", _factor("RandomSharpness", "factor", self.factor, (0, 1)))
        self._range()

    def params(self, u):
        u = _u(u, 1)
        lo, step = self._range()
        return _cols(len(u), _uniform(u[:, 0], self._f) * 2.0, -lo / step)

    def keras_transformation(self, params):
        return {"factor": np.asarray(params[:, 0] / 2.0, np.float32)}


@dataclass(frozen=True)
class RandomColorDegeneration(_ColorOp):
    """Keras' ``RandomColorDegeneration``: ``x + f (gray(x) - x)``, ``f ~ uniform(*factor)``, clipped.

    As in Keras 3, a single number ``f`` means ``(-f, f)``. Grayscale images
    (1 channel) are only clipped (Keras' ``rgb_to_grayscale`` is the identity there).

    Args:
        factor: a number in [-1, 1] or a (lower, upper) pair in [-1, 1].
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    factor: float | tuple
    value_range: tuple = (0, 255)
    code = 13
    n_draws = 1
    n_params = 1

    def __post_init__(self):
        object.__setattr__(self, "_f", _factor("RandomColorDegeneration", "factor", self.factor, (-1, 1)))
        self._range()

    def check_channels(self, channels):
        _need_rgb("RandomColorDegeneration", channels, allow_gray=True)

    def params(self, u):
        u = _u(u, 1)
        return _cols(len(u), _uniform(u[:, 0], self._f))

    def keras_transformation(self, params):
        return {"factor": np.asarray(params[:, 0], np.float32).reshape(-1, 1, 1, 1)}


@dataclass(frozen=True)
class RandomGaussianBlur(_ColorOp):
    """Keras' ``RandomGaussianBlur``: where ``u1 < uniform(*factor)``, a separable Gaussian blur, zero-padded, clipped.

    The horizontal and vertical sigmas are ``uniform(*sigma) + 1e-6`` each;
    Keras draws that pair once per batch, here each sample draws its own
    (the reference is Keras' layer applied to one image at a time).

    Args:
        factor: the blur probability's range: a number ``f`` in [0, 1] (meaning ``(0, f)``) or a pair in [0, 1].
        kernel_size: an odd integer >= 1 (or a pair of two equal ones: Keras scrambles unequal sizes).
        sigma: a number ``s`` in [0, 1] (meaning ``(0, s)``) or a (lower, upper) pair of numbers >= 0.
        value_range: the ``(low, high)`` Keras would see the values in.
    """

    factor: float | tuple = 1.0
    kernel_size: int | tuple = 3
    sigma: float | tuple = 1.0
    value_range: tuple = (0, 255)
    code = 14
    n_draws = 4

    def __post_init__(self):
        object.__setattr__(self, "_f", _factor("RandomGaussianBlur", "factor", self.factor, (0, 1)))
        object.__setattr__(self, "_s", _factor("RandomGaussianBlur", "sigma", self.sigma, (0, 1), upper_bound=np.inf))
        k = self.kernel_size
        ks = k if isinstance(k, (tuple, list)) else (k,)
        if (len(ks) not in (1, 2) or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in ks)
                or not all(v >= 1 and v % 2 == 1 for v in ks)):
            raise ValueError(f"RandomGaussianBlur: kernel_size must be an odd integer >= 1, got {k!r}.")
        if len(set(ks)) != 1:
            raise ValueError(f"RandomGaussianBlur: kernel_size must be one odd integer (or a pair of equal ones), "
                             f"got {k!r}: Keras' kernel for unequal sizes is scrambled by a reshape.")
        object.__setattr__(self, "_k", int(ks[0]))
        object.__setattr__(self, "n_params", 5 + 2 * self._k)
        self._range()

    def params(self, u):
        u = _u(u, 4)
        n, k = len(u), self._k
        lo, step = self._range()
        apply = (u[:, 1] < _uniform(u[:, 0], self._f)).astype(np.float64)
        out = np.empty((n, 5 + 2 * k), np.float64)
        out[:, 0], out[:, 1], out[:, 2] = apply, k, -lo / step
        sig = (_uniform(u[:, 2:4], self._s).astype(np.float32) + np.float32(1e-6))
        out[:, 3:5] = sig
        out[:, 5:5 + k] = gaussian_weights(k, sig[:, 0])
        out[:, 5 + k:] = gaussian_weights(k, sig[:, 1])
        return out

    def keras_transformation(self, params):
        """Keras draws one sigma pair per batch: pass one sample's ``params`` (shape (1, n_params)) at a time."""
        if len(params) != 1:
            raise ValueError("RandomGaussianBlur.keras_transformation: Keras' blur has one sigma pair per batch; "
                             f"pass one sample's params at a time, got {len(params)}.")
        return {"should_apply_blur": np.asarray(params[:, 0] > 0.5),
                "blur_factor": np.asarray(params[0, 3:5], np.float32)}


def gaussian_weights(k, sigma):
    """Keras' normalised 1-D Gaussian of ``k`` taps for each sigma, in float32 as Keras computes it: (n, k)."""
    x = (np.arange(k, dtype=np.float32) - np.float32((k - 1) / 2))[None, :]
    s = np.asarray(sigma, np.float32)[:, None]
    w = np.exp(np.float32(-0.5) * (x / s) ** 2)
    return (w / w.sum(axis=1, keepdims=True, dtype=np.float32)).astype(np.float64)


__all__ = [
    "AutoContrast", "Equalization", "RandomBrightness", "RandomColorDegeneration", "RandomColorJitter", "RandomContrast",
    "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert", "RandomPosterization", "RandomSaturation",
    "RandomSharpness", "Solarization",
]
