"""Soak: 100 fit epochs with prefetching threads and 20 with worker processes, on each installed backend.

Memory stays flat, no thread or file descriptor accumulates, and no worker
process outlives the fit. A subprocess per backend, about 30 s each on 2 cores.
"""

import pytest

from tests import keras_runs

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", keras_runs.BACKENDS)
def test_soak_no_leaks(backend):
    keras_runs.require(backend)
    out = keras_runs.run("soak", backend, timeout=300)
    assert out["rc"] == 0 and out["result"] is not None, out["stderr"]
    r = out["result"]
    at10, at100 = r["threads"]["10"], r["threads"]["100"]
    assert at100["rss_mb"] - at10["rss_mb"] < 50, r
    # a thread or descriptor per epoch would add 90, one every ten epochs 9; allow for pool threads still winding
    # down when the mark is read (torch under load was seen once at 6 -> 9: Keras' workers of the last epochs)
    assert at100["threads"] <= at10["threads"] + 5, r
    assert at100["fds"] <= at10["fds"] + 2, r
    # JAX and torch: plus the pass their probe's prefetching may complete before training (see test_epochs)
    assert r["epoch_after_threads"] in ((100, 101) if backend in ("jax", "torch") else (100,))
    assert r["epoch_after_processes"] == 20  # passes served in worker processes counted in the parent
    # Worker processes existed (at most this epoch's two and the last epoch's two). At least one, not two: on this
    # session's VM, torch with a precompiled (warm) Numba cache showed one live worker at every batch end, in the
    # suite and alone, with or without the first-run work, and two with a cache the soak itself filled; the leak
    # checks (children_after == 0, threads, fds, memory) are unchanged.
    assert 1 <= max(r["children_during"]) <= 4, r
    assert r["children_after"] == 0, r
