"""Geometric ops: the warp kernel against its NumPy twin and TensorFlow's op, the specs against Keras' own layers' pixels.

Keras' pixels: each layer's ``transform_images`` on a ``transformation`` built
from our draws (so Keras computes its own matrices from the same random
values), against ``warp(x, op.matrices(u, H, W), ...)``, within 1 level on
0..255. Nearest sampling may differ where a source point lies within 1e-3 of
a half pixel (Keras computes in float32, we in float64): those pixels are
left out of the nearest comparisons, and counted.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastseq.augment.geometry import (
    RandomAffine,
    RandomElasticTransform,
    RandomPerspective,
    RandomRotation,
    RandomShear,
    RandomTranslation,
    RandomZoom,
    elastic_displacement,
)
from fastseq.kernels.warp import FILL_CONSTANT, FILL_MIRROR, FILL_NEAREST, FILL_REFLECT, FILL_WRAP, _warp_sample, warp
from tests import reference as R

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
MODES = ("constant", "nearest", "reflect", "wrap")
INTERPOLATIONS = ("nearest", "bilinear")
MAX_SEEN = {}  # (layer, interpolation, mode) -> max |ours - Keras|, printed at the end of the Keras tests


# ---- (a) warp against its twin ----------------------------------------------------------------------------

@st.composite
def warp_cases(draw):
    n = draw(st.integers(1, 2))
    H, W = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    C = draw(st.sampled_from((1, 3, 4)))
    seed = draw(st.integers(0, 2**32 - 1))
    projective = draw(st.booleans())
    with_field = draw(st.booleans())
    out_size = draw(st.sampled_from((None, (H + 1, max(W - 1, 1)))))
    return n, H, W, C, seed, projective, with_field, out_size


@PROPERTY
@given(warp_cases(), st.sampled_from(MODES + ("mirror",)), st.sampled_from(INTERPOLATIONS),
       st.sampled_from(("uint8", "float32")))
def test_warp_matches_twin(case, mode, interpolation, dtype):
    n, H, W, C, seed, projective, with_field, out_size = case
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, H, W, C)).astype(dtype)
    m = np.tile(np.eye(3), (n, 1, 1))
    m[:, :2, :2] += rng.normal(0, 0.5, (n, 2, 2))
    m[:, :2, 2] = rng.normal(0, 3 * max(H, W), (n, 2))
    if projective:
        m[:, 2, :2] = rng.normal(0, 0.05, (n, 2))
    h, w = (H, W) if out_size is None else out_size
    fields = rng.normal(0, 2, (n, h, w, 2)).astype(np.float32) if with_field else None
    kw = dict(interpolation=interpolation, fill_mode=mode, fill_value=17.5, fields=fields, output_size=out_size)
    np.testing.assert_allclose(warp(x, m, **kw), R.warp(x, m, **kw), rtol=0, atol=1e-3)


def test_warp_sample_is_the_kernel_the_pass_calls():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 5, 6, 3)).astype(np.uint8)
    m = np.array([[0.9, 0.2, 1.3], [-0.1, 1.1, -0.7], [0.0, 0.0, 1.0]])
    dst = np.empty((5, 6, 3), np.float32)
    _warp_sample(x.reshape(-1), 5 * 6 * 3, 5, 6, 3, m, np.zeros((0, 0, 2), np.float32), 1, FILL_REFLECT, 0.0, dst)
    np.testing.assert_array_equal(dst, warp(x[1:], m, fill_mode="reflect")[0])


def test_warp_matches_tensorflow_op():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (4, 9, 11, 3)).astype(np.float32)
    m = np.tile(np.eye(3), (4, 1, 1))
    m[:, :2, :] += rng.normal(0, [0.3, 0.3, 8], (4, 2, 3))
    m[2:, 2, :2] = rng.normal(0, 0.02, (2, 2))
    m = m.astype(np.float32).astype(np.float64)
    for mode in MODES:
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=m.reshape(4, 9)[:, :8].astype(np.float32), output_shape=[9, 11], fill_value=7.0,
            interpolation="BILINEAR", fill_mode=mode.upper()).numpy()
        np.testing.assert_allclose(warp(x, m, fill_mode=mode, fill_value=7.0), out, rtol=0, atol=0.01)


# ---- (d) integer translations and flips copy pixels exactly (RandomCrop's padding) ------------------------

@pytest.mark.parametrize("mode,pad", [("constant", "constant"), ("nearest", "edge"), ("mirror", "reflect"),
                                      ("reflect", "symmetric"), ("wrap", "wrap")])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_integer_translation_and_flips_copy_pixels(mode, pad, dtype):
    rng = np.random.default_rng(3)
    H, W, C, p = 7, 6, 3, 4
    x = rng.integers(0, 256, (1, H, W, C)).astype(dtype)
    kw = {"constant_values": 9} if pad == "constant" else {}
    padded = np.pad(x[0], ((p, p), (p, p), (0, 0)), mode=pad, **kw)
    if mode == "wrap":
        p = 1  # TensorFlow's wrap is exact within one period (its divisor is n - 1)
        padded = np.pad(x[0], ((p, p), (p, p), (0, 0)), mode=pad)
    h, w = 5, 4
    for top in range(padded.shape[0] - h + 1):
        for left in range(padded.shape[1] - w + 1):
            for fy, fx in ((0, 0), (0, 1), (1, 0), (1, 1)):
                m = np.eye(3)
                m[0] = [-1, 0, left - p + w - 1] if fx else [1, 0, left - p]
                m[1] = [0, -1, top - p + h - 1] if fy else [0, 1, top - p]
                got = warp(x, m, interpolation="nearest", fill_mode=mode, fill_value=9, output_size=(h, w))[0]
                want = padded[top:top + h, left:left + w]
                want = want[::-1] if fy else want
                want = want[:, ::-1] if fx else want
                np.testing.assert_array_equal(got, want.astype(np.float32))


def test_codes():
    assert (FILL_CONSTANT, FILL_NEAREST, FILL_REFLECT, FILL_WRAP, FILL_MIRROR) == (0, 1, 2, 3, 4)


# ---- (b) Keras' own pixels ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_tf():
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("Keras' pixels are pinned under the TensorFlow backend")
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    return keras, tf


def _near_half(m, H, W):
    """Output pixels whose source point lies within 1e-3 of a half pixel: nearest may round either way there."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    p = np.einsum("nij,jhw->nihw", m, np.stack([x, y, np.ones_like(x)]))
    px, py = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    return (np.abs(np.abs(px % 1) - 0.5) < 1e-3) | (np.abs(np.abs(py % 1) - 0.5) < 1e-3)


def _compare(name, ours, theirs, interpolation, mode, m=None, mask=None):
    H, W = ours.shape[1:3]
    keep = np.ones(ours.shape[:3], bool) if mask is None else mask
    if interpolation == "nearest" and m is not None:
        keep &= ~_near_half(m, H, W)
    d = np.abs(ours - theirs)[keep]
    MAX_SEEN[(name, interpolation, mode)] = float(d.max()) if d.size else 0.0
    assert keep.mean() > 0.9, f"{name}: only {keep.mean():.0%} of pixels compared"
    np.testing.assert_allclose(ours[keep], theirs[keep], rtol=0, atol=1.0)


def _images(n=3, H=13, W=10):
    return np.random.default_rng(4).integers(0, 256, (n, H, W, 3)).astype(np.float32)


def _uniforms(n, k, seed=5):
    return np.random.default_rng(seed).random((n, k))


def _keras_transformation(keras, tf, op, layer, u, x):
    """The ``transformation`` Keras' layer takes, built from our draws ``u``."""
    n, H, W = x.shape[:3]
    f32 = np.float32
    if isinstance(op, RandomRotation):
        angle = tf.constant(op.angles(u), tf.float32)
        z, o = tf.zeros([n]), tf.ones([n])
        m = layer._compute_affine_matrix(center_x=0.5, center_y=0.5, angle=angle, translate_x=z, translate_y=z, scale=o,
                                         shear_x=z, shear_y=z, height=H, width=W)
        return {"angle": angle, "rotation_matrix": m, "image_height": H, "image_width": W, "batch_size": n}
    if isinstance(op, RandomAffine):
        angle, scale, ty, tx, shx, shy = op.parts(u, H, W)
        t = [tf.constant(v, tf.float32) for v in (angle, -tx, -ty, 1 / scale, np.degrees(np.arctan(shx)),
                                                   np.degrees(np.arctan(shy)))]
        m = layer._compute_affine_matrix(center_x=0.5, center_y=0.5, angle=t[0], translate_x=t[1], translate_y=t[2],
                                         scale=t[3], shear_x=t[4], shear_y=t[5], height=H, width=W)
        return {"angle": t[0], "rotation_matrix": m, "image_height": H, "image_width": W, "batch_size": n}
    if isinstance(op, RandomZoom):
        hz, wz = op.zooms(u)
        return {"height_zoom": hz[:, None].astype(f32), "width_zoom": wz[:, None].astype(f32), "input_shape": x.shape}
    if isinstance(op, RandomTranslation):
        dy, dx = op.shifts(u, H, W)
        return {"translations": np.stack([dx, dy], 1).astype(f32), "input_shape": x.shape}
    if isinstance(op, RandomShear):
        sx, sy = op.shears(u)
        return {"shear_factor": np.stack([sx, sy], 1).astype(f32), "input_shape": x.shape}
    if isinstance(op, RandomPerspective):
        apply, start, end = op.points(u, H, W)
        return {"apply_perspective": tf.constant(apply), "start_points": start.astype(f32),
                "end_points": end.astype(f32), "input_shape": x.shape}
    raise TypeError(op)


AFFINE_CASES = [
    ("RandomRotation", dict(factor=(-0.3, 0.45)), 1),
    ("RandomZoom", dict(height_factor=(-0.4, 0.5), width_factor=(-0.5, 0.3)), 2),
    ("RandomZoom", dict(height_factor=0.4), 1),
    ("RandomTranslation", dict(height_factor=(-0.4, 0.5), width_factor=0.6), 2),
    ("RandomShear", dict(x_factor=0.4, y_factor=(0.1, 0.3)), 3),
]


@pytest.mark.parametrize("name,kwargs,n_draws", AFFINE_CASES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_keras_affine_layers(keras_tf, name, kwargs, n_draws, mode, interpolation):
    keras, tf = keras_tf
    x = _images()
    op = getattr(__import__("fastseq.augment.geometry", fromlist=[name]), name)(
        **kwargs, fill_mode=mode, interpolation=interpolation, fill_value=31.0)
    layer = getattr(keras.layers, name)(**kwargs, fill_mode=mode, interpolation=interpolation, fill_value=31.0)
    assert op.n_draws == n_draws
    u = _uniforms(len(x), op.n_draws)
    m = op.matrices(u, *x.shape[1:3])
    theirs = np.asarray(layer.transform_images(x, _keras_transformation(keras, tf, op, layer, u, x)))
    ours = warp(x, m, interpolation=interpolation, fill_mode=mode, fill_value=31.0)
    _compare(name, ours, theirs, interpolation, mode, m)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_keras_affine_matrix_for_random_affine(keras_tf, mode, interpolation):
    keras, tf = keras_tf
    x = _images()
    op = RandomAffine(rotation=0.2, scale=(0.7, 1.3), translation=(0.2, (-0.1, 0.3)), shear=0.3,
                      fill_mode=mode, interpolation=interpolation, fill_value=31.0)
    layer = keras.layers.RandomRotation(0.2, fill_mode=mode, interpolation=interpolation, fill_value=31.0)
    u = _uniforms(len(x), 6)
    m = op.matrices(u, *x.shape[1:3])
    theirs = np.asarray(layer.transform_images(x, _keras_transformation(keras, tf, op, layer, u, x)))
    ours = warp(x, m, interpolation=interpolation, fill_mode=mode, fill_value=31.0)
    _compare("RandomAffine", ours, theirs, interpolation, mode, m)


def test_random_affine_parts_are_keras_layers():
    u = _uniforms(4, 6)
    only = u.copy()
    H, W = 13, 10
    np.testing.assert_allclose(RandomAffine(rotation=0.3).matrices(u, H, W), RandomRotation(0.3).matrices(u[:, :1], H, W))
    np.testing.assert_allclose(RandomAffine(translation=(0.2, 0.3)).matrices(only, H, W),
                               RandomTranslation(0.2, 0.3).matrices(u[:, 2:4], H, W), atol=1e-12)
    s = RandomAffine(scale=(0.8, 1.25)).parts(u, H, W)[1]
    zoom = RandomZoom(0.5).matrices(np.zeros((4, 1)), H, W)  # shape only
    zoom[:, 0, 0] = zoom[:, 1, 1] = 1 / s
    zoom[:, 0, 2] = (W - 1) / 2 * (1 - 1 / s)
    zoom[:, 1, 2] = (H - 1) / 2 * (1 - 1 / s)
    np.testing.assert_allclose(RandomAffine(scale=(0.8, 1.25)).matrices(u, H, W), zoom, atol=1e-12)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_keras_perspective(keras_tf, interpolation):
    keras, tf = keras_tf
    x = _images(n=6)
    op = RandomPerspective(factor=(0.3, 0.9), scale=0.8, interpolation=interpolation, fill_value=31.0)
    layer = keras.layers.RandomPerspective(factor=(0.3, 0.9), scale=0.8, interpolation=interpolation, fill_value=31.0)
    u = _uniforms(len(x), op.n_draws, seed=6)
    apply = op.points(u, 13, 10)[0]
    assert apply.any() and not apply.all()
    m = op.matrices(u, 13, 10)
    theirs = np.asarray(layer.transform_images(x, _keras_transformation(keras, tf, op, layer, u, x)))
    ours = warp(x, m, interpolation=interpolation, fill_mode="constant", fill_value=31.0)
    _compare("RandomPerspective", ours, theirs, interpolation, "constant", m)


def _keras_elastic_field(keras, tf, seed, H, W, distortion):
    """Keras' TF-backend displacement for one image: dy == dx (one seed for both)."""
    from keras.src.backend.tensorflow.image import gaussian_blur
    from keras.src.random.seed_generator import draw_seed

    alpha = max(H, W) * 0.1 * distortion
    sigma = np.float32(min(H, W) * 0.05 * distortion)
    k = 6 * int(sigma) | 1
    noise = tf.random.stateless_normal((1, H, W), seed=draw_seed(seed), dtype=tf.float32) * sigma
    d = alpha * np.asarray(gaussian_blur(noise[..., None], kernel_size=(k, k), sigma=(sigma, sigma)))[..., 0]
    return d, np.asarray(noise[0] / sigma)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_keras_elastic_with_keras_field(keras_tf, mode, interpolation):
    """Keras' elastic pixels from its own field: our warp with that field. Reflect: Keras' TF backend mirrors on the
    low side (index -1 -> 1), Keras documents and its other backends reflect (-1 -> 0): those pixels are left out."""
    keras, tf = keras_tf
    x = _images(n=1, H=40, W=36)
    H, W = 40, 36
    layer = keras.layers.RandomElasticTransform(factor=1.0, scale=1.0, interpolation=interpolation, fill_mode=mode,
                                                fill_value=31.0, value_range=(0, 255))
    distortion = 0.9
    d, noise = _keras_elastic_field(keras, tf, 1234, H, W, distortion)
    # Our blur recipe on Keras' noise gives Keras' displacement.
    np.testing.assert_allclose(elastic_displacement(noise[None], distortion)[0], d[0], rtol=1e-4, atol=1e-3)
    field = np.stack([d, d], axis=-1).astype(np.float32)
    theirs = np.asarray(layer.transform_images(x, {"apply_transform": tf.constant([True]),
                                                  "distortion_factor": tf.constant(distortion, tf.float32),
                                                  "seed": 1234}))
    ours = np.clip(warp(x, np.eye(3), interpolation=interpolation, fill_mode=mode, fill_value=31.0, fields=field), 0, 255)
    y, xx = np.mgrid[0:H, 0:W]
    py, px = y + d[0], xx + d[0]
    mask = np.ones((1, H, W), bool)
    if mode == "reflect":
        mask[0] = (np.floor(px) >= 0) & (np.floor(py) >= 0)
    if interpolation == "nearest":
        mask[0] &= (np.abs(np.abs(px % 1) - 0.5) > 1e-3) & (np.abs(np.abs(py % 1) - 0.5) > 1e-3)
    _compare("RandomElasticTransform", ours, theirs, interpolation, mode, mask=mask)


def test_elastic_fields_statistics():
    op = RandomElasticTransform(factor=(0.5, 0.5), scale=(0.8, 0.8))
    H, W = 48, 40
    f = op.fields(7, 0, np.arange(400), 123, H, W)
    assert f.shape == (400, H, W, 2) and f.dtype == np.float32
    moved = np.abs(f).reshape(400, -1).max(1) > 0
    assert 0.4 < moved.mean() < 0.6  # applies with probability 0.5
    # Our displacement's spread is Keras' recipe on standard normals: compare with the same recipe on NumPy's.
    ref = elastic_displacement(np.random.default_rng(0).standard_normal((400, H, W)), 0.8)
    ours = f[moved]
    np.testing.assert_allclose(ours[..., 0].std(), ref[:, 8:-8, 8:-8].std(), rtol=0.15)
    np.testing.assert_allclose(ours[..., 1].std(), ref[:, 8:-8, 8:-8].std(), rtol=0.15)
    assert abs(ours.mean()) < 0.05 * ours.std()
    assert abs(np.corrcoef(ours[..., 0].ravel(), ours[..., 1].ravel())[0, 1]) < 0.05  # dy, dx independent
    np.testing.assert_array_equal(f, op.fields(7, 0, np.arange(400), 123, H, W))  # a pure function
    np.testing.assert_array_equal(f[5:9], op.fields(7, 0, np.arange(5, 9), 123, H, W))
    assert not np.array_equal(f, op.fields(7, 1, np.arange(400), 123, H, W))


def test_elastic_off_gives_zero_fields():
    assert not RandomElasticTransform(factor=0.0).fields(1, 0, np.arange(3), 9, 8, 8).any()
    assert not RandomElasticTransform(scale=0.0).fields(1, 0, np.arange(3), 9, 8, 8).any()


def test_keras_max_differences_report():
    """Prints the largest |ours - Keras| seen per (layer, interpolation, fill mode) (run with -s)."""
    for key, value in sorted(MAX_SEEN.items()):
        print("max |ours - Keras|", *key, f"{value:.4g}")


# ---- (c) argument checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,argument", [
    (lambda: RandomRotation(1.5), "factor"),
    (lambda: RandomRotation((0.1, 2.0)), "factor"),
    (lambda: RandomRotation("big"), "factor"),
    (lambda: RandomRotation(0.1, fill_mode="mirror"), "fill_mode"),
    (lambda: RandomRotation(0.1, interpolation="bicubic"), "interpolation"),
    (lambda: RandomRotation(0.1, fill_value=float("nan")), "fill_value"),
    (lambda: RandomZoom(-1.0), "height_factor"),
    (lambda: RandomZoom((0.1, 1.5)), "height_factor"),
    (lambda: RandomZoom(0.1, width_factor=(-1.0, 0.2)), "width_factor"),
    (lambda: RandomTranslation(1.2, 0.1), "height_factor"),
    (lambda: RandomTranslation(0.1, (0.1, 0.2, 0.3)), "width_factor"),
    (lambda: RandomShear(x_factor=1.5), "x_factor"),
    (lambda: RandomShear(y_factor=(-0.2, 0.3)), "y_factor"),
    (lambda: RandomShear(x_factor=-0.2), "x_factor"),
    (lambda: RandomPerspective(scale=1.5), "scale"),
    (lambda: RandomPerspective(scale=-0.1), "scale"),
    (lambda: RandomPerspective(factor=2.0), "factor"),
    (lambda: RandomPerspective(interpolation="area"), "interpolation"),
    (lambda: RandomElasticTransform(factor=(-0.5, 0.5)), "factor"),
    (lambda: RandomElasticTransform(scale=1.5), "scale"),
    (lambda: RandomElasticTransform(value_range=(1, 0)), "value_range"),
    (lambda: RandomElasticTransform(fill_mode="mirror"), "fill_mode"),
    (lambda: RandomAffine(rotation=3.0), "rotation"),
    (lambda: RandomAffine(scale=(0.0, 1.0)), "scale"),
    (lambda: RandomAffine(scale=(1.2, 0.8)), "scale"),
    (lambda: RandomAffine(translation=(0.1, 1.5)), "translation[1]"),
    (lambda: RandomAffine(shear=(2.0, 0.1)), "shear[0]"),
])
def test_argument_checks(make, argument):
    with pytest.raises(ValueError, match=r"Random\w+: .*" + argument.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_warp_argument_checks():
    x = np.zeros((2, 4, 5, 3), np.uint8)
    eye = np.eye(3)
    with pytest.raises(TypeError, match="images"):
        warp(x.astype(np.int16), eye)
    with pytest.raises(ValueError, match="images"):
        warp(x[0], eye)
    with pytest.raises(ValueError, match="matrices"):
        warp(x, np.eye(2))
    with pytest.raises(ValueError, match="matrices"):
        warp(x, np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="fill_mode"):
        warp(x, eye, fill_mode="edge")
    with pytest.raises(ValueError, match="interpolation"):
        warp(x, eye, interpolation="bicubic")
    with pytest.raises(ValueError, match="fill_value"):
        warp(x, eye, fill_value=float("inf"))
    with pytest.raises(ValueError, match="fields"):
        warp(x, eye, fields=np.zeros((2, 4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="fields"):
        warp(x, eye, fields=np.full((2, 4, 5, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="output_size"):
        warp(x, eye, output_size=(0, 3))
    with pytest.raises(ValueError, match="out"):
        warp(x, eye, out=np.zeros((2, 4, 5, 3), np.float64))


def test_far_and_degenerate_points_read_fill():
    x = np.full((1, 3, 3, 1), 5, np.uint8)
    m = np.array([[1e300, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    for mode in MODES + ("mirror",):
        assert (warp(x, m, fill_mode=mode, fill_value=2.0)[0, :, 1:] == 2.0).all()
    zero_z = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert (warp(x, zero_z, fill_mode="reflect", fill_value=2.0) == 2.0).all()
