"""Geometric ops of ``augment=[...]``: Keras' random geometric layers as specs of one 3x3 matrix per sample (NumPy only).

Each spec takes Keras' arguments (names, defaults, forms, checks) and turns
its ``n_draws`` uniforms per sample into the matrix Keras' layer builds from
the same random values: the output->input map of ``fastseq.augment._op``
(pixel centres at integers), which the pass composes and resamples once
through ``fastseq.kernels.warp`` (TensorFlow's ``ImageProjectiveTransformV3``,
what Keras' TensorFlow backend runs). A uniform ``u`` becomes Keras' draw
``lower + u * (upper - lower)``, so the distributions are Keras'.

Keras draws some parameters once per batch (``RandomElasticTransform``'s
distortion); here every parameter is per sample: the reference is Keras'
layer applied to one image at a time.

``fill_value`` is in pixel units (0..255) except ``RandomElasticTransform``'s,
which is in its ``value_range`` as in Keras; every spec's ``pixel_fill``
gives it in pixel units for the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastseq.augment._op import AugmentOp, factor_pair, fill_options, is_number, value_range_pair


def _u(u, n_draws, owner):
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != n_draws:
        raise ValueError(f"{owner}: u must be (n, {n_draws}) uniforms, got shape {u.shape}.")
    return u


def _draw(u, pair):
    lower, upper = pair
    return lower + u * (upper - lower)


def _identity(n):
    return np.tile(np.eye(3), (n, 1, 1))


def _affine(angle_deg, scale, shear_x, shear_y, translate_x, translate_y, height, width):
    """Keras' ``_compute_affine_matrix`` (centre 0.5, 0.5); the shears are matrix entries (``tan`` of Keras' degrees)."""
    theta = np.deg2rad(angle_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    m = _identity(angle_deg.shape[0])
    m[:, 0, 0] = scale * (cos + shear_x * sin)
    m[:, 0, 1] = scale * (-sin + shear_x * cos)
    m[:, 1, 0] = scale * (shear_y * cos + sin)
    m[:, 1, 1] = scale * (shear_y * -sin + cos)
    m[:, 0, 2] = translate_x + cx - cx * m[:, 0, 0] - cy * m[:, 0, 1]
    m[:, 1, 2] = translate_y + cy - cx * m[:, 1, 0] - cy * m[:, 1, 1]
    return m


def _unit_range(owner, name, value, symmetric):
    """Keras' factors bounded to [0, 1] (perspective/elastic ``factor``, elastic ``scale``): a number f -> (0, f)."""
    return factor_pair(owner, name, value, bounds=(0.0, 1.0), symmetric=symmetric)


class _Geometry(AugmentOp):
    family = "geometry"

    @property
    def pixel_fill(self):
        """``fill_value`` in pixel units (0..255), as the kernel reads it."""
        return float(self.fill_value)


@dataclass(frozen=True)
class RandomRotation(_Geometry):
    """Rotate each image about its centre by a random angle: Keras' ``RandomRotation``.

    Args:
        factor: a fraction of a full turn: a number ``f`` (the angle is uniform
            in ``[-f, f] * 360`` degrees) or a ``(lower, upper)`` pair, in [-1, 1].
            Positive angles turn counter-clockwise.
        fill_mode: ``"reflect"``, ``"wrap"``, ``"constant"`` or ``"nearest"``.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        fill_value: the value outside the image with ``fill_mode="constant"`` (0..255).
    """

    factor: object
    fill_mode: str = "reflect"
    interpolation: str = "bilinear"
    fill_value: float = 0.0

    n_draws = 1

    def __post_init__(self):
        object.__setattr__(self, "_range", factor_pair("RandomRotation", "factor", self.factor, bounds=(-1.0, 1.0),
                                                       allow_negative_single=True))
        fill_options("RandomRotation", self.fill_mode, self.interpolation, self.fill_value)

    def angles(self, u):
        """Degrees, as Keras' ``uniform(lower * 360, upper * 360)``."""
        lower, upper = self._range
        return _draw(_u(u, 1, "RandomRotation")[:, 0], (lower * 360.0, upper * 360.0))

    def matrices(self, u, height, width):
        a = self.angles(u)
        z = np.zeros_like(a)
        return _affine(a, 1.0, z, z, z, z, height, width)


def _zoom_range(owner, name, value):
    lower, upper = factor_pair(owner, name, value, bounds=(-1.0, 1.0), allow_negative_single=True)
    if lower <= -1.0:
        raise ValueError(f"{owner}: {name} must lie in (-1, 1] (a zoom of -1 would shrink to nothing), got {value!r}.")
    return lower, upper


@dataclass(frozen=True)
class RandomZoom(_Geometry):
    """Zoom each image in or out about its centre: Keras' ``RandomZoom``.

    The output pixel ``x`` reads the input at ``c + z * (x - c)`` with
    ``c = (W - 1) / 2`` and ``z = 1 + f``, ``f`` uniform in the factor's range:
    a positive factor zooms out, a negative one in.

    Args:
        height_factor: a number ``f`` (``[-f, f]``) or a ``(lower, upper)`` pair, in (-1, 1].
        width_factor: the same for the width, or None: the height's zoom (aspect kept).
        fill_mode (str): ``"reflect"``, ``"wrap"``, ``"constant"`` or ``"nearest"``, as ``RandomRotation``.
        interpolation (str): ``"bilinear"`` or ``"nearest"``, as ``RandomRotation``.
        fill_value (float): the value outside the image with ``fill_mode="constant"`` (0..255), as ``RandomRotation``.
    """

    height_factor: object
    width_factor: object = None
    fill_mode: str = "reflect"
    interpolation: str = "bilinear"
    fill_value: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "_height", _zoom_range("RandomZoom", "height_factor", self.height_factor))
        width = None if self.width_factor is None else _zoom_range("RandomZoom", "width_factor", self.width_factor)
        object.__setattr__(self, "_width", width)
        fill_options("RandomZoom", self.fill_mode, self.interpolation, self.fill_value)

    @property
    def n_draws(self):
        return 1 if self._width is None else 2

    def zooms(self, u):
        """``(height_zoom, width_zoom)``: Keras' ``uniform(1 + lower, 1 + upper)`` (the width's second, if any)."""
        u = _u(u, self.n_draws, "RandomZoom")
        hz = _draw(u[:, 0], (1.0 + self._height[0], 1.0 + self._height[1]))
        wz = hz if self._width is None else _draw(u[:, 1], (1.0 + self._width[0], 1.0 + self._width[1]))
        return hz, wz

    def matrices(self, u, height, width):
        hz, wz = self.zooms(u)
        m = _identity(hz.shape[0])
        m[:, 0, 0] = wz
        m[:, 0, 2] = (width - 1.0) / 2.0 * (1.0 - wz)
        m[:, 1, 1] = hz
        m[:, 1, 2] = (height - 1.0) / 2.0 * (1.0 - hz)
        return m


@dataclass(frozen=True)
class RandomTranslation(_Geometry):
    """Shift each image by a random fraction of its height and width: Keras' ``RandomTranslation``.

    Args:
        height_factor: a number ``f`` (a shift uniform in ``[-f, f] * H``) or a
            ``(lower, upper)`` pair, in [-1, 1]; positive moves the image down.
        width_factor: the same for the width; positive moves it right.
        fill_mode (str): ``"reflect"``, ``"wrap"``, ``"constant"`` or ``"nearest"``, as ``RandomRotation``.
        interpolation (str): ``"bilinear"`` or ``"nearest"``, as ``RandomRotation``.
        fill_value (float): the value outside the image with ``fill_mode="constant"`` (0..255), as ``RandomRotation``.
    """

    height_factor: object
    width_factor: object
    fill_mode: str = "reflect"
    interpolation: str = "bilinear"
    fill_value: float = 0.0

    n_draws = 2

    def __post_init__(self):
        for name in ("height_factor", "width_factor"):
            object.__setattr__(self, "_" + name, factor_pair("RandomTranslation", name, getattr(self, name),
                                                             bounds=(-1.0, 1.0), allow_negative_single=True))
        fill_options("RandomTranslation", self.fill_mode, self.interpolation, self.fill_value)

    def shifts(self, u, height, width):
        """``(dy, dx)`` in pixels: Keras draws the height's first."""
        u = _u(u, 2, "RandomTranslation")
        return _draw(u[:, 0], self._height_factor) * height, _draw(u[:, 1], self._width_factor) * width

    def matrices(self, u, height, width):
        dy, dx = self.shifts(u, height, width)
        m = _identity(dy.shape[0])
        m[:, 0, 2] = -dx
        m[:, 1, 2] = -dy
        return m


def _shear_range(owner, name, value):
    """Keras' shear factor: every number in [0, 1]; a number f means (-f, f)."""
    if isinstance(value, (tuple, list)):
        pair = factor_pair(owner, name, value, bounds=(0.0, 1.0))
    else:
        pair = factor_pair(owner, name, value)
        if pair[1] > 1.0:
            raise ValueError(f"{owner}: {name} must lie in [0, 1], got {value!r}.")
    return pair


@dataclass(frozen=True)
class RandomShear(_Geometry):
    """Shear each image about its top-left corner (pixel (0, 0)), as Keras' ``RandomShear`` does.

    Output ``(x, y)`` reads the input at ``(x + sx * y, y + sy * x)``. Keras
    draws a sign (``u0 > 0.5``: negative) shared by both shears, then
    ``sy`` then ``sx`` from their ranges.

    Args:
        x_factor: a number ``f`` in [0, 1] (``sx`` uniform in ``[-f, f]``) or a
            ``(lower, upper)`` pair in [0, 1] (a magnitude; the sign is drawn).
        y_factor: the same for ``sy``.
        interpolation (str): ``"bilinear"`` or ``"nearest"``, as ``RandomRotation``.
        fill_mode (str): ``"reflect"``, ``"wrap"``, ``"constant"`` or ``"nearest"``, as ``RandomRotation``.
        fill_value (float): the value outside the image with ``fill_mode="constant"`` (0..255), as ``RandomRotation``.
    """

    x_factor: object = 0.0
    y_factor: object = 0.0
    interpolation: str = "bilinear"
    fill_mode: str = "reflect"
    fill_value: float = 0.0

    n_draws = 3

    def __post_init__(self):
        object.__setattr__(self, "_x", _shear_range("RandomShear", "x_factor", self.x_factor))
        object.__setattr__(self, "_y", _shear_range("RandomShear", "y_factor", self.y_factor))
        fill_options("RandomShear", self.fill_mode, self.interpolation, self.fill_value)

    def shears(self, u):
        """``(sx, sy)`` with the drawn sign: Keras' ``shear_factor``."""
        u = _u(u, 3, "RandomShear")
        sign = np.where(u[:, 0] > 0.5, -1.0, 1.0)
        return _draw(u[:, 2], self._x) * sign, _draw(u[:, 1], self._y) * sign

    def matrices(self, u, height, width):
        sx, sy = self.shears(u)
        m = _identity(sx.shape[0])
        m[:, 0, 1] = sx
        m[:, 1, 0] = sy
        return m


def homographies(start, end):
    """Keras' ``compute_homography_matrix``: the maps taking ``end`` points (output) to ``start`` points (input).

    ``start``, ``end``: float ``(n, 4, 2)`` corner points ``(x, y)``. Returns float64 ``(n, 3, 3)``.
    """
    start = np.asarray(start, np.float64)
    end = np.asarray(end, np.float64)
    n = start.shape[0]
    a = np.zeros((n, 8, 8))
    b = np.zeros((n, 8))
    for k in range(4):
        ex, ey = end[:, k, 0], end[:, k, 1]
        sx, sy = start[:, k, 0], start[:, k, 1]
        a[:, 2 * k, 0], a[:, 2 * k, 1], a[:, 2 * k, 2] = ex, ey, 1.0
        a[:, 2 * k, 6], a[:, 2 * k, 7] = -sx * ex, -sx * ey
        a[:, 2 * k + 1, 3], a[:, 2 * k + 1, 4], a[:, 2 * k + 1, 5] = ex, ey, 1.0
        a[:, 2 * k + 1, 6], a[:, 2 * k + 1, 7] = -sy * ex, -sy * ey
        b[:, 2 * k], b[:, 2 * k + 1] = sx, sy
    h = np.linalg.solve(a, b[..., None])[..., 0]
    return np.concatenate([h, np.ones((n, 1))], axis=1).reshape(n, 3, 3)


@dataclass(frozen=True)
class RandomPerspective(_Geometry):
    """A random perspective warp of each image, with probability: Keras' ``RandomPerspective``.

    Per sample, as Keras: a probability uniform in ``factor``'s range, a
    threshold (the warp applies when the threshold is below it), then eight
    offsets uniform in ``[-scale / 2, scale / 2]`` that move the corners
    ``(W - 1, 0)``, ``(0, H - 1)``, ``(W - 1, H - 1)`` by that fraction of
    their own coordinates (Keras' rule: the corner (0, 0) never moves).
    Outside the image is always ``fill_value`` (Keras' fill is constant).

    Args:
        factor: the probability: a number ``f`` in [0, 1] (uniform in ``[0, f]``) or a pair in [0, 1].
        scale: the distortion, a number in [0, 1].
        interpolation: ``"bilinear"`` or ``"nearest"``.
        fill_value: the value outside the image (0..255).
    """

    factor: object = 1.0
    scale: float = 1.0
    interpolation: str = "bilinear"
    fill_value: float = 0.0

    n_draws = 10
    fill_mode = "constant"

    def __post_init__(self):
        object.__setattr__(self, "_factor", _unit_range("RandomPerspective", "factor", self.factor, symmetric=False))
        if not is_number(self.scale) or not 0.0 <= float(self.scale) <= 1.0:
            raise ValueError(f"RandomPerspective: scale must be a number in [0, 1], got {self.scale!r}.")
        fill_options("RandomPerspective", "constant", self.interpolation, self.fill_value)

    def points(self, u, height, width):
        """``(apply, start_points, end_points)`` as Keras' transformation: bool (n,), float64 (n, 4, 2) twice."""
        u = _u(u, 10, "RandomPerspective")
        apply = u[:, 1] < _draw(u[:, 0], self._factor)
        offsets = _draw(u[:, 2:].reshape(-1, 4, 2), (-0.5 * self.scale, 0.5 * self.scale))
        start = np.array([[0.0, 0.0], [width - 1.0, 0.0], [0.0, height - 1.0], [width - 1.0, height - 1.0]])
        start = np.broadcast_to(start, offsets.shape)
        return apply, start, start + start * offsets

    def matrices(self, u, height, width):
        apply, start, end = self.points(u, height, width)
        m = _identity(apply.shape[0])
        if apply.any():
            m[apply] = homographies(start[apply], end[apply])
        return m


@dataclass(frozen=True)
class RandomElasticTransform(_Geometry):
    """A random smooth displacement of every pixel, with probability: Keras' ``RandomElasticTransform``.

    Per sample, from one stream of the counter generator (``fields``): a
    probability uniform in ``factor``'s range and a threshold (the warp
    applies when the threshold is below it), a distortion ``d`` uniform in
    ``scale``'s range (Keras draws it once per batch), then Gaussian noise
    (Box-Muller from the stream's next ``2 * H * W`` values). As Keras'
    ``elastic_transform``: ``sigma = 0.05 * d * min(H, W)``, ``alpha = 0.1 *
    d * max(H, W)``; the noise times ``sigma`` is blurred with a Gaussian of
    ``sigma`` over ``6 * int(sigma) | 1`` taps (zero padding, TensorFlow's
    ``SAME``) and times ``alpha`` is the displacement in pixels. Keras' noise
    comes from its own generator, so only the distribution is Keras'. Keras'
    TensorFlow backend draws the same noise for ``dx`` and ``dy`` (one seed
    for both: the displacement is always diagonal); here they are
    independent, as in Keras' NumPy backend. Keras clips the result to
    ``value_range``.

    Args:
        factor: the probability: a number ``f`` in [0, 1] (uniform in ``[0, f]``) or a pair in [0, 1].
        scale: the distortion: a number ``s`` in [0, 1] (uniform in ``[0, s]``) or a pair in [0, 1].
        interpolation: ``"bilinear"`` or ``"nearest"``.
        fill_mode: ``"reflect"``, ``"wrap"``, ``"constant"`` or ``"nearest"`` (Keras' TensorFlow backend
            refuses its ``"mirror"``).
        fill_value: the value outside the image with ``fill_mode="constant"``, in ``value_range``.
        value_range: how Keras would see the pixels, ``(low, high)``.
    """

    factor: object = 1.0
    scale: object = 1.0
    interpolation: str = "bilinear"
    fill_mode: str = "reflect"
    fill_value: float = 0.0
    value_range: tuple = (0, 255)

    n_draws = 0
    #: Values of the field stream before the noise: probability, threshold, distortion.
    n_field_params = 3

    def __post_init__(self):
        owner = "RandomElasticTransform"
        object.__setattr__(self, "_factor", _unit_range(owner, "factor", self.factor, symmetric=False))
        object.__setattr__(self, "_scale", _unit_range(owner, "scale", self.scale, symmetric=False))
        object.__setattr__(self, "_range", value_range_pair(owner, self.value_range))
        fill_options(owner, self.fill_mode, self.interpolation, self.fill_value)

    @property
    def pixel_fill(self):
        lo, hi = self._range
        return (float(self.fill_value) - lo) * 255.0 / (hi - lo)

    def matrices(self, u, height, width):
        return _identity(_u(u, 0, "RandomElasticTransform").shape[0])

    def params(self, v):
        """``(apply, distortion)`` from the first three values of each sample's field stream, float64 ``(n, 3)``."""
        v = np.asarray(v, np.float64)
        apply = v[:, 1] < _draw(v[:, 0], self._factor)
        if self._factor[1] == 0.0 or self._scale[1] == 0.0:  # Keras: no transformation at all
            apply = np.zeros_like(apply)
        return apply, _draw(v[:, 2], self._scale)

    def fields(self, seed, epoch, indices, stream, height, width):
        """float32 ``(n, height, width, 2)`` displacements ``(dy, dx)`` in pixels; zero where the warp does not apply."""
        from fastseq.kernels.random import uniform_field

        hw = height * width
        v = uniform_field(seed, epoch, indices, stream, self.n_field_params + 2 * hw)
        apply, distortion = self.params(v[:, :self.n_field_params])
        out = np.zeros((v.shape[0], height, width, 2), np.float32)
        for k in np.flatnonzero(apply):
            u = v[k, self.n_field_params:].reshape(2, hw)
            radius = np.sqrt(-2.0 * np.log1p(-u[0]))  # 1 - u in (0, 1]
            noise = np.stack([radius * np.cos(2.0 * np.pi * u[1]), radius * np.sin(2.0 * np.pi * u[1])])
            out[k] = elastic_displacement(noise.reshape(2, height, width), distortion[k]).transpose(1, 2, 0)
        return out


def elastic_parameters(height, width, distortion):
    """Keras' ``get_elastic_transform_params``: ``(alpha, sigma)``."""
    return max(height, width) * 0.1 * distortion, min(height, width) * 0.05 * distortion


def gaussian_taps(sigma):
    """Keras' blur kernel for ``elastic_transform``: ``6 * int(sigma) | 1`` normalised Gaussian taps."""
    size = (6 * int(sigma)) | 1
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2) if sigma > 0 else (x == 0).astype(np.float64)
    return g / g.sum()


def elastic_displacement(noise, distortion):
    """``alpha * blur(noise * sigma)`` per plane of ``noise`` (``(k, H, W)`` standard normals), Keras' recipe."""
    _, height, width = noise.shape
    alpha, sigma = elastic_parameters(height, width, distortion)
    g = gaussian_taps(sigma)
    r = len(g) // 2
    x = np.pad(noise * sigma, ((0, 0), (r, r), (r, r)))
    rows = sum(g[t] * x[:, t:t + height, :] for t in range(len(g)))
    both = sum(g[t] * rows[:, :, t:t + width] for t in range(len(g)))
    return alpha * both


def _affine_part(owner, name, value, *, single_bounds):
    """RandomAffine's translation/shear: None, one factor for both axes, or a pair of factors (first, second)."""
    if value is None:
        return (0.0, 0.0), (0.0, 0.0)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(factor_pair(owner, f"{name}[{i}]", v, bounds=single_bounds, allow_negative_single=True)
                     for i, v in enumerate(value))
    pair = factor_pair(owner, name, value, bounds=single_bounds, allow_negative_single=True)
    return pair, pair


@dataclass(frozen=True)
class RandomAffine(_Geometry):
    """Rotation, scale, translation and shear about the centre in one matrix per sample (torchvision/albumentations style).

    In Keras' units, so each part alone is a Keras layer: output pixel ``p``
    reads the input at ``A (p - c) + c - t`` with ``c = ((W - 1) / 2, (H - 1) / 2)``,
    ``A = (1 / s) * [[1, shx], [shy, 1]] @ R(angle)`` (Keras' ``_compute_affine_matrix``
    with the shears as matrix entries) and ``t = (tx * W, ty * H)``. Alone,
    ``rotation`` is ``RandomRotation(rotation)``, ``translation`` is
    ``RandomTranslation`` and ``scale`` is ``RandomZoom`` with zoom ``1 / s``.
    Six draws per sample, in this order: angle, scale, ty, tx, shx, shy.

    Args:
        rotation: a fraction of a full turn, as ``RandomRotation``'s ``factor``: a number ``f``
            (``[-f, f] * 360`` degrees) or a ``(lower, upper)`` pair, in [-1, 1].
        scale: None (1), or a ``(lo, hi)`` range of multiplicative scales, ``0 < lo <= hi``:
            above 1 enlarges the content (torchvision's meaning).
        translation: None, a number ``f`` (both shifts uniform in ``[-f, f]`` of the size), or a
            ``(height_factor, width_factor)`` pair, each as ``RandomTranslation``'s (a number
            or a ``(lower, upper)`` pair, in [-1, 1]); positive moves the image down/right.
            A pair of numbers is always (height, width), never a range.
        shear: None, a number ``f`` (both shears uniform in ``[-f, f]``), or an ``(x_factor, y_factor)``
            pair, each a number or a ``(lower, upper)`` pair in [-1, 1]; like ``RandomShear``'s
            factors (``x + shx * y``) but about the centre and without its shared sign draw.
        interpolation (str): ``"bilinear"`` or ``"nearest"``, as ``RandomRotation``.
        fill_mode (str): ``"reflect"``, ``"wrap"``, ``"constant"`` or ``"nearest"``, as ``RandomRotation``.
        fill_value (float): the value outside the image with ``fill_mode="constant"`` (0..255), as ``RandomRotation``.
    """

    rotation: object = 0.0
    scale: object = None
    translation: object = None
    shear: object = None
    interpolation: str = "bilinear"
    fill_mode: str = "reflect"
    fill_value: float = 0.0

    n_draws = 6

    def __post_init__(self):
        owner = "RandomAffine"
        object.__setattr__(self, "_rotation", factor_pair(owner, "rotation", self.rotation, bounds=(-1.0, 1.0),
                                                          allow_negative_single=True))
        if self.scale is None:
            scale = (1.0, 1.0)
        else:
            try:
                lo, hi = self.scale
            except (TypeError, ValueError):
                raise ValueError(f"{owner}: scale must be None or a (lo, hi) pair, e.g. (0.9, 1.1), "
                                 f"got {self.scale!r}.") from None
            if not (is_number(lo) and is_number(hi)) or not 0.0 < float(lo) <= float(hi):
                raise ValueError(f"{owner}: scale must be a (lo, hi) pair with 0 < lo <= hi, got {self.scale!r}.")
            scale = (float(lo), float(hi))
        object.__setattr__(self, "_scale", scale)
        object.__setattr__(self, "_translation", _affine_part(owner, "translation", self.translation,
                                                              single_bounds=(-1.0, 1.0)))
        object.__setattr__(self, "_shear", _affine_part(owner, "shear", self.shear, single_bounds=(-1.0, 1.0)))
        fill_options(owner, self.fill_mode, self.interpolation, self.fill_value)

    def parts(self, u, height, width):
        """``(angle_deg, scale, ty, tx, shx, shy)`` per sample (shifts in pixels)."""
        u = _u(u, 6, "RandomAffine")
        lower, upper = self._rotation
        angle = _draw(u[:, 0], (lower * 360.0, upper * 360.0))
        scale = _draw(u[:, 1], self._scale)
        ty = _draw(u[:, 2], self._translation[0]) * height
        tx = _draw(u[:, 3], self._translation[1]) * width
        shx = _draw(u[:, 4], self._shear[0])
        shy = _draw(u[:, 5], self._shear[1])
        return angle, scale, ty, tx, shx, shy

    def matrices(self, u, height, width):
        angle, scale, ty, tx, shx, shy = self.parts(u, height, width)
        return _affine(angle, 1.0 / scale, shx, shy, -tx, -ty, height, width)


__all__ = ["RandomRotation", "RandomZoom", "RandomTranslation", "RandomShear", "RandomPerspective",
           "RandomElasticTransform", "RandomAffine", "homographies", "elastic_displacement"]
