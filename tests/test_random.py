"""Per-sample random parameters: a pure, uniform function of (seed, epoch, index)."""

import numpy as np
import pytest

import fastseq.kernels as K
from tests import reference as R


def chi_square_critical(dof, z=3.719):
    """Upper critical value of chi-square (Wilson-Hilferty), z=3.719 is p = 1e-4."""
    return dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize(
    "seed,epoch,image,crop,padding,hp,vp",
    [(0, 0, (32, 32), (32, 32), 4, 0.5, 0.0), (7, 3, (5, 9), (2, 3), 2, 0.25, 0.75), (2**40, 2**33, (1, 1), (1, 1), 0, 1.0, 0.0)],
)
def test_random_params_equal_the_python_integer_twin(seed, epoch, image, crop, padding, hp, vp):
    indices = np.concatenate([np.arange(300), [10**9, 2**40]])
    kw = dict(image_size=image, crop_size=crop, padding=padding, horizontal=hp, vertical=vp)
    o1, f1 = K.random_params(seed, epoch, indices, **kw)
    o2, f2 = R.random_params(seed, epoch, indices, **kw)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(f1, f2)


def test_pure_function_of_seed_epoch_index_only():
    kw = dict(image_size=(32, 32), crop_size=(32, 32), padding=4)
    idx = np.arange(1000)
    o, f = K.random_params(3, 5, idx, **kw)
    # any subset, in any order, in any batch, gives the same per-sample values
    perm = np.random.default_rng(0).permutation(1000)[:137]
    o2, f2 = K.random_params(3, 5, perm, **kw)
    np.testing.assert_array_equal(o2, o[perm])
    np.testing.assert_array_equal(f2, f[perm])
    # and epoch and seed each change them
    o3, _ = K.random_params(3, 6, idx, **kw)
    o4, _ = K.random_params(4, 5, idx, **kw)
    assert (o3 != o).any(axis=1).mean() > 0.9
    assert (o4 != o).any(axis=1).mean() > 0.9


@pytest.mark.parametrize("positions", [9, 7, 2, 61])
def test_offsets_are_uniform_over_every_valid_position(positions):
    """Chi-square goodness of fit with a fixed seed, for top and left separately."""
    n = 200_000
    padding = 4
    size = positions - 1 + 32 - 2 * padding  # crop 32 of an image padded by 4 -> `positions` choices
    origins, _ = K.random_params(12345, 0, np.arange(n), image_size=(size, size), crop_size=(32, 32), padding=padding)
    for col in (0, 1):
        counts = np.bincount(origins[:, col], minlength=positions)
        assert counts.size == positions, "an offset outside the valid range"
        assert (counts > 0).all(), "a valid position is never drawn"
        expected = n / positions
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < chi_square_critical(positions - 1), (col, chi2)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.9])
def test_flip_probability_and_independence(p):
    n = 200_000
    _, flips = K.random_params(99, 4, np.arange(n), image_size=(8, 8), crop_size=(8, 8), horizontal=p, vertical=p)
    h = (flips & 1).astype(bool)
    v = (flips & 2).astype(bool)
    # each probability within 4.5 standard errors
    se = np.sqrt(p * (1 - p) / n)
    assert abs(h.mean() - p) < 4.5 * se and abs(v.mean() - p) < 4.5 * se
    # horizontal and vertical are independent: 2x2 contingency chi-square, 1 dof
    table = np.array([[np.sum(h & v), np.sum(h & ~v)], [np.sum(~h & v), np.sum(~h & ~v)]], float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    assert chi2 < chi_square_critical(1)


def test_zero_and_one_probabilities_are_exact():
    _, f = K.random_params(0, 0, np.arange(10_000), image_size=(4, 4), crop_size=(4, 4), horizontal=1.0, vertical=0.0)
    assert (f == 1).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(seed=-1), "seed"),
        (dict(epoch=-2), "epoch"),
        (dict(horizontal=1.5), "horizontal"),
        (dict(crop_size=(40, 8)), "crop_size"),
        (dict(indices=np.array([-1])), "indices"),
        (dict(indices=np.array([[1]])), "indices"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(seed=0, epoch=0, indices=np.arange(3), image_size=(8, 8), crop_size=(8, 8), padding=0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        K.random_params(args.pop("seed"), args.pop("epoch"), args.pop("indices"), **args)


def test_the_plan_equals_the_twin_for_every_seed_and_epoch_in_any_order():
    # A plan caches the last (seed, epoch) key: switching back and forth, and
    # index arrays of other dtypes, lists and empty ones, must not confuse it.
    kw = dict(image_size=(9, 7), crop_size=(6, 8), padding=2, horizontal=0.5, vertical=0.25)
    plan = K.RandomParams(**kw)
    rng = np.random.default_rng(1)
    for seed, epoch in [(0, 0), (0, 1), (5, 1), (0, 0), (np.int64(5), np.uint8(1)), (5, 1), (2**40, 0)]:
        for indices in (rng.integers(0, 10**6, 64), np.arange(5, dtype=np.uint16), [3, 1, 2], np.array([], np.int64)):
            o1, f1 = plan(seed, epoch, indices)
            o2, f2 = R.random_params(int(seed), int(epoch), np.asarray(indices, np.int64), **kw)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(f1, f2)


@pytest.mark.parametrize(
    "seed,epoch,indices,match",
    [(-1, 0, [0], "seed"), (0, True, [0], "epoch"), (0, 0, np.array([4, -3]), "indices must be >= 0, got -3"),
     (0, 0, np.array([0.5]), "indices"), (0, 0, np.zeros((2, 2), np.int64), "indices")],
)
def test_the_plan_refuses_bad_calls(seed, epoch, indices, match):
    plan = K.RandomParams(image_size=(8, 8), crop_size=(8, 8))
    plan(0, 0, np.arange(3))  # cache a key first
    with pytest.raises((TypeError, ValueError), match=match):
        plan(seed, epoch, indices)
