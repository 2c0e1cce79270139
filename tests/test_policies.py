"""Policies drawn per sample (RandAugment, TrivialAugmentWide, AugMix), Keras layers taken as they are, and Lambda.

* the pass on pinned draws equals the NumPy twin of the chosen ops (``reference.policy_sample``);
* the choices, magnitudes and weights spread as documented (10,000 samples);
* Keras' argument checks; Keras layers read into the ops with the same config, and a few compared
  with the layer's own ``transform_images`` on pinned parameters; the refusals;
* ``Lambda``: in the order listed, the same pixels whatever the batch split or thread count, and an
  exception in the user's function surfaces naming the op.
"""

import numba
import numpy as np
import pytest

import fastseq
from fastseq.augment import chain as C
from fastseq.augment.keras_layers import KerasRandomFlip
from fastseq.augment.policies import GAMMA_DRAWS, AugMix, RandAugment, TrivialAugmentWide, gamma_from_uniforms
from fastseq.kernels import augment_pass as AP
from fastseq.kernels.random import uniforms
from tests import reference as R


def make(x, ops, dtype="float32"):
    N, H, W, Ch = x.shape
    chain = C.Chain(C.as_ops(ops), crop=None, out_size=(H, W), channels=Ch)
    plan = AP.AugmentPass(x.reshape(-1), np.arange(N) * H * W * Ch, np.tile([H, W, Ch], (N, 1)), out_size=(H, W),
                          prog=chain.prog, run_interp=chain.run_interp, run_mode=chain.run_mode, run_fill=chain.run_fill,
                          n_params=chain.n_params, n_fields=chain.n_fields, variant=chain.variant, dtype=dtype,
                          lambdas=chain.lambdas, lambda_names=chain.lambda_names)
    return chain, plan


def run(chain, plan, idx, seed=3, epoch=1):
    idx = np.asarray(idx, np.int64)
    H, W = chain.out_size
    window = C.window_matrices(None, None, None, idx.size, (H, W), (H, W))
    return plan(idx, AP.AugmentDraw(*chain.draw(seed, epoch, idx, window, uniforms)))


def policy_u(chain, op, idx, seed=3, epoch=1):
    return uniforms(seed, epoch, np.asarray(idx, np.int64), chain.streams)[:, chain._columns[id(op)]]


def images(n=12, H=9, W=11, Ch=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, H, W, Ch), dtype=np.uint8)


# ---- the pass equals the twin of the chosen ops ----

POLICIES = [
    RandAugment(num_ops=3, factor=0.6, interpolation="nearest"),
    TrivialAugmentWide(),
    AugMix(factor=0.5, interpolation="nearest"),
    AugMix(chain_depth=2, num_chains=2, alpha=0.7, all_ops=False),
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: type(p).__name__)
def test_policy_equals_twin_of_the_chosen_ops(policy):
    x = images()
    chain, plan = make(x, [policy])
    assert chain.variant == ("warp_color" if isinstance(policy, RandAugment) else "extended")
    idx = np.arange(len(x))
    ours = run(chain, plan, idx)
    u = policy_u(chain, policy, idx)
    twin = np.stack([R.policy_sample(x[k], policy, u[k]) for k in idx])
    d = np.abs(ours - twin)
    # float32 against float64: a value on a posterization or equalization step may land on either side
    assert np.mean(d <= 0.02) >= 0.995, float(np.mean(d <= 0.02))
    assert np.median(d) <= 1e-3


def test_gated_stages_skip_unchosen_ops_and_the_choices_vary():
    policy = RandAugment(num_ops=2)
    chain, _ = make(images(), [policy])
    L = len(policy.candidates)
    geometric = sum(1 for c in policy.candidates if c.family == "geometry")
    assert (chain.prog[:, 4] >= 0).sum() == 2 * (L - 2) + 2 * 2  # AutoContrast/Equalization: no params, still gated
    assert len(chain.runs) == 1 + 2 * geometric  # the window, then one gated run per geometric candidate and slot
    choices = policy.choices(policy_u(chain, policy, np.arange(200)))
    assert len(np.unique(choices[:, 0])) == L


# ---- the draws spread as documented ----

N_STAT = 10_000


def _uniform_counts(values, k):
    counts = np.bincount(values, minlength=k)
    expected = len(values) / k
    assert counts.size == k and np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), counts


def test_rand_augment_choices_and_magnitudes_spread():
    policy = RandAugment(num_ops=2, factor=0.5)
    chain, _ = make(images(1), [policy])
    idx = np.arange(N_STAT)
    u = policy_u(chain, policy, idx)
    choices = policy.choices(u)
    for s in range(2):
        _uniform_counts(choices[:, s], 11)
    assert 0.07 < np.mean(choices[:, 0] == choices[:, 1]) < 0.115  # independent slots, with repetition (1/11)
    rotation = policy.candidates[2]
    angles = rotation.angles(u[:, policy._cols[0][1][2]])
    assert angles.min() >= 0 and angles.max() <= 180 and abs(angles.mean() - 90) < 2  # factor (0, 0.5) of a turn
    bits = 8 - policy.candidates[7].params(u[:, policy._cols[0][1][7]])[:, 0]
    _uniform_counts((bits - 1).astype(int), 3)  # Keras' randint(1, 4): 1, 2, 3 bits


def test_trivial_augment_wide_ops_bins_and_signs_spread():
    policy = TrivialAugmentWide()
    chain, _ = make(images(1), [policy])
    u = policy_u(chain, policy, np.arange(N_STAT))
    _uniform_counts(policy.choices(u)[:, 0], 14)
    rotate = policy.candidates[5]
    cols = u[:, policy._cols[0][1][5]]
    m = rotate.magnitudes(cols)
    bins = np.rint(np.abs(m) / (135 / 30)).astype(int)
    _uniform_counts(bins, 31)
    assert abs(np.mean(m[bins > 0] < 0) - 0.5) < 0.02
    posterize = policy.candidates[10]
    assert sorted(set(posterize.bins)) == [4, 5, 6, 7, 8]
    np.testing.assert_array_equal(posterize.bins, 8 - np.round(np.arange(31) / 7.5))
    np.testing.assert_allclose(policy.candidates[11].bins, np.linspace(255, 0, 31))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_gamma_from_uniforms_has_the_gamma_moments(alpha):
    g = gamma_from_uniforms(np.random.default_rng(7).random((40_000, GAMMA_DRAWS)), alpha)
    assert abs(g.mean() - alpha) < 4 * np.sqrt(alpha / 40_000)
    assert abs(g.var() - alpha) < 0.08 * alpha


def test_augmix_weights_and_depths_spread():
    policy = AugMix(num_chains=3, chain_depth=(1, 3))
    chain, _ = make(images(1), [policy])
    u = policy_u(chain, policy, np.arange(N_STAT))
    w = policy.weights(u)
    np.testing.assert_allclose(w[:, :3].sum(axis=1), 1.0)
    assert np.all(np.abs(w[:, :3].mean(axis=0) - 1 / 3) < 0.01)  # Dirichlet(1, 1, 1)
    assert abs(w[:, 3].mean() - 0.5) < 0.01 and abs(w[:, 3].var() - 1 / 12) < 0.005  # Beta(1, 1)
    g = policy.gates(u).reshape(N_STAT, 3, 3, 11)
    depth = g.sum(axis=(2, 3))
    _uniform_counts((depth.ravel() - 1).astype(int), 3)
    keras_form = AugMix(chain_depth=3)
    uk = policy_u(make(images(1), [keras_form])[0], keras_form, np.arange(N_STAT))
    none = 1 - keras_form.gates(uk).reshape(N_STAT, 3, 3, 11).sum(axis=3)
    assert abs(none.mean() - 1 / 12) < 0.006  # Keras: random.choice(layers + [None])


# ---- Keras' argument checks ----

@pytest.mark.parametrize("name, kwargs", [
    ("RandAugment", dict(factor=1.5)), ("RandAugment", dict(factor=-0.2)), ("AugMix", dict(factor=2.0)),
    ("AugMix", dict(factor=(0.2, 0.3, 0.4))),
])
def test_bad_arguments_rejected_as_keras_does(name, kwargs):
    keras = pytest.importorskip("keras")
    with pytest.raises(ValueError):
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(ValueError, match=f"{name}: factor"):
        getattr(fastseq, name)(**kwargs)


@pytest.mark.parametrize("make_op, message", [
    (lambda: RandAugment(num_ops=-1), "num_ops must be an integer >= 0"),
    (lambda: RandAugment(interpolation="bicubic"), "interpolation must be"),
    (lambda: RandAugment(value_range=(1, 0)), "value_range"),
    (lambda: AugMix(num_chains=0), "num_chains must be an integer >= 1"),
    (lambda: AugMix(chain_depth=(3, 1)), "chain_depth"),
    (lambda: AugMix(alpha=0), "alpha must be a number > 0"),
    (lambda: TrivialAugmentWide(num_magnitude_bins=1), "num_magnitude_bins"),
    (lambda: TrivialAugmentWide(interpolation="bicubic"), "interpolation"),
])
def test_our_argument_checks(make_op, message):
    with pytest.raises(ValueError, match=message):
        make_op()


# ---- Keras layers in ----

def _keras():
    return pytest.importorskip("keras")


KERAS_CASES = [
    ("RandomRotation", dict(factor=(-0.1, 0.3), fill_mode="constant", interpolation="nearest", fill_value=7.0)),
    ("RandomZoom", dict(height_factor=(-0.2, 0.3), width_factor=0.1, fill_mode="wrap")),
    ("RandomTranslation", dict(height_factor=0.2, width_factor=(-0.1, 0.3), fill_mode="nearest")),
    ("RandomShear", dict(x_factor=0.3, y_factor=(0.1, 0.2), interpolation="nearest")),
    ("RandomPerspective", dict(factor=0.7, scale=0.4, fill_value=3.0)),
    ("RandomElasticTransform", dict(factor=0.6, scale=0.5, fill_mode="constant")),
    ("AutoContrast", dict()), ("Equalization", dict(bins=64)),
    ("RandomBrightness", dict(factor=(-0.3, 0.1))), ("RandomColorDegeneration", dict(factor=0.4)),
    ("RandomColorJitter", dict(brightness_factor=0.2, contrast_factor=0.3, saturation_factor=0.4, hue_factor=0.1)),
    ("RandomContrast", dict(factor=(0.2, 0.4))), ("RandomGaussianBlur", dict(factor=0.5, kernel_size=5, sigma=(0.2, 0.8))),
    ("RandomGrayscale", dict(factor=0.3)), ("RandomHue", dict(factor=0.3)), ("RandomInvert", dict(factor=0.4)),
    ("RandomPosterization", dict(factor=(2, 5))), ("RandomSaturation", dict(factor=(0.2, 0.7))),
    ("RandomSharpness", dict(factor=0.6)), ("Solarization", dict(addition_factor=0.2, threshold_factor=(0.3, 0.6))),
    ("RandAugment", dict(num_ops=3, factor=0.4, interpolation="nearest")),
    ("AugMix", dict(num_chains=2, chain_depth=2, factor=0.4, alpha=0.5, all_ops=False, interpolation="nearest")),
]


@pytest.mark.parametrize("name, kwargs", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_every_supported_keras_layer_maps_to_the_op_with_its_config(name, kwargs):
    keras = _keras()
    layer = getattr(keras.layers, name)(**kwargs)
    (op,) = C.as_ops(layer)
    assert type(op).__name__ == name
    config = layer.get_config()
    if name != "RandomShear":  # its stored (-f, f) is read as f (see keras_layers)
        assert op == type(op)(**{f: config[f] for f in op.__dataclass_fields__ if f in config})
    # the arguments given are the op's (Keras stores some as normalised pairs)
    reference = type(op)(**kwargs)
    for field in op.__dataclass_fields__:
        private = "_" + field if hasattr(op, "_" + field) else None
        if private is not None and not callable(getattr(op, private)):
            assert getattr(op, private) == getattr(reference, private), field


def test_a_sequential_and_a_list_keep_the_order_and_flip_is_an_op():
    keras = _keras()
    seq = keras.Sequential([keras.layers.RandomFlip("vertical"), keras.layers.RandomRotation(0.1),
                            keras.layers.RandomBrightness(0.2)])
    ops = C.as_ops(seq)
    assert [type(o).__name__ for o in ops] == ["KerasRandomFlip", "RandomRotation", "RandomBrightness"]
    mixed = C.as_ops([fastseq.RandomContrast(0.2), keras.layers.RandomZoom(0.1)])
    assert [type(o).__name__ for o in mixed] == ["RandomContrast", "RandomZoom"]


def test_keras_round_trip_pixels_on_pinned_parameters():
    keras = _keras()
    tf = pytest.importorskip("tensorflow")
    from fastseq.kernels.color import color
    from fastseq.kernels.warp import warp

    x = images(4, 10, 12).astype(np.float32)
    rng = np.random.default_rng(9)
    for layer in (keras.layers.RandomBrightness(0.3), keras.layers.RandomContrast(0.4), keras.layers.Solarization(0.2, 0.5)):
        (op,) = C.as_ops(layer)
        p = op.params(rng.random((len(x), op.n_draws)))
        tr = {k: tf.constant(v) for k, v in op.keras_transformation(p).items()}
        theirs = np.asarray(layer.transform_images(tf.constant(x), tr, training=True))
        np.testing.assert_allclose(color(x, op, params=[p]), theirs, atol=1e-3)
    layer = keras.layers.RandomTranslation(0.3, 0.2, fill_mode="constant", fill_value=5.0)
    (op,) = C.as_ops(layer)
    u = rng.random((len(x), 2))
    dy, dx = op.shifts(u, 10, 12)
    theirs = np.asarray(layer.transform_images(x, {"translations": np.stack([dx, dy], 1).astype(np.float32),
                                                    "input_shape": x.shape}))
    ours = warp(x, op.matrices(u, 10, 12), fill_mode="constant", fill_value=5.0)
    np.testing.assert_allclose(ours, theirs, atol=1.0)
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        layer = keras.layers.RandomFlip(mode)
        (op,) = C.as_ops(layer)
        u = np.array([[0.2], [0.7], [0.4], [0.9]])
        flips = tf.constant((u <= 0.5).reshape(-1, 1, 1, 1))
        theirs = np.asarray(layer.transform_images(x, {"flips": flips, "input_shape": x.shape}))
        np.testing.assert_array_equal(warp(x, op.matrices(u, 10, 12), fill_mode="reflect"), theirs)


def test_keras_layers_refused_by_name_before_any_data():
    keras = _keras()
    with pytest.raises(TypeError, match=r"no op for Keras' Resizing\. Supported layers: RandomRotation.*RandomFlip"):
        C.as_ops(keras.Sequential([keras.layers.RandomZoom(0.1), keras.layers.Resizing(4, 4)]))
    with pytest.raises(TypeError, match="nested model"):
        C.as_ops(keras.Sequential([keras.Sequential([keras.layers.RandomZoom(0.1)])]))
    with pytest.raises(ValueError, match=r"RandomBrightness.*value_range=\(0, 1\).*value_range=\(0, 255\)"):
        C.as_ops([keras.layers.RandomBrightness(0.1, value_range=(0, 1))])


def test_flip_op_checks_its_mode():
    with pytest.raises(ValueError, match="mode must be"):
        KerasRandomFlip("diagonal")


# ---- Lambda ----

@numba.njit
def _noise(values, draws):
    h, w, c = values.shape
    for i in range(h):
        for j in range(w):
            for k in range(c):
                values[i, j, k] += 40.0 * (draws[0] - 0.5) + (i * 7 + j * 3 + k) % 5


@numba.njit
def _set_100(values, draws):
    values[:] = 100.0


@numba.njit
def _fails(values, draws):
    if draws[0] >= 0.0:
        raise ValueError("this sample is not welcome")


def test_lambda_runs_in_the_order_listed():
    x = images()
    idx = np.arange(len(x))
    brightness = fastseq.RandomBrightness((0.1, 0.2))
    after = run(*make(x, [fastseq.Lambda(_set_100), brightness]), idx)
    chain, _ = make(x, [brightness])
    delta = chain.draw(3, 1, idx, np.tile(np.eye(3), (len(idx), 1, 1)), uniforms)[1][:, 0]
    np.testing.assert_allclose(after, np.broadcast_to((100 + delta)[:, None, None, None], after.shape), atol=1e-4)
    before = run(*make(x, [brightness, fastseq.Lambda(_set_100)]), idx)
    assert np.all(before == 100)


def test_lambda_same_pixels_whatever_the_batch_split_and_threads(monkeypatch):
    x = images(24, 16, 16)
    ops = [fastseq.RandomRotation(0.1), fastseq.Lambda(_noise, draws=1), fastseq.RandomContrast(0.3)]
    chain, plan = make(x, ops, dtype="uint8")
    assert chain.variant == "extended" and len(plan._segments) == 2
    whole = run(chain, plan, np.arange(24))
    parts = np.concatenate([run(chain, plan, np.arange(a, b)) for a, b in ((0, 5), (5, 17), (17, 24))])
    np.testing.assert_array_equal(whole, parts)
    monkeypatch.setattr(AP, "threads_for", lambda work, limit: 3)
    np.testing.assert_array_equal(run(chain, plan, np.arange(24)), whole)
    # the draws are the sample's: a Lambda of the noise alone, on two epochs, differs
    assert not np.array_equal(run(chain, plan, np.arange(24), epoch=2), whole)


def test_lambda_exception_names_the_op_and_plain_functions_are_refused():
    x = images(6)
    chain, plan = make(x, [fastseq.RandomBrightness(0.1), fastseq.Lambda(_fails, draws=1)])
    with pytest.raises(RuntimeError, match=r"Lambda\('_fails', draws=1\) \(augment\[1\]\) raised ValueError: "
                                           "this sample is not welcome"):
        run(chain, plan, np.arange(6))
    with pytest.raises(TypeError, match=r"numba.njit\(shuffle\)"):
        fastseq.Lambda(shuffle)
    with pytest.raises(ValueError, match="draws must be an integer >= 0"):
        fastseq.Lambda(_noise, draws=-1)


def shuffle(values, draws):
    pass


def test_program_check_refuses_bad_new_stages():
    x = images(2)
    chain, _ = make(x, [AugMix(num_chains=1, chain_depth=1)])
    N, H, W, Ch = x.shape
    base = dict(out_size=(H, W), run_interp=chain.run_interp, run_mode=chain.run_mode, run_fill=chain.run_fill,
                n_params=chain.n_params, n_fields=0)
    src = (x.reshape(-1), np.arange(N) * H * W * Ch, np.tile([H, W, Ch], (N, 1)))
    with pytest.raises(ValueError, match="needs a keep stage"):
        AP.AugmentPass(*src, prog=np.array([[0, 0, -1, 0, -1], [4, 0, 0, 0, -1]]), variant="extended", **base)
    with pytest.raises(ValueError, match="cannot be gated"):
        AP.AugmentPass(*src, prog=np.array([[0, 0, -1, 0, -1], [3, 0, 0, 0, 0]]), variant="extended", **base)
    with pytest.raises(ValueError, match="use 'extended'"):
        AP.AugmentPass(*src, prog=chain.prog, variant="warp_color", **base)
    with pytest.raises(ValueError, match="lambda stage"):
        AP.AugmentPass(*src, prog=np.array([[0, 0, -1, 0, -1], [6, 0, 0, 1, -1]]), variant="extended", **base)
