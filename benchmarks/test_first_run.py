"""Group ``first-run``: the README quickstart as a new user's script, beside the same script on tf.data (issue 34).

Each row runs ``python -m fastseq.bench.first_run`` in a fresh interpreter and is
timed from start to exit (imports, building, two ``fit``s of one epoch, and
any wait at exit); ``extra_info`` holds the script's own figures (first and
second ``fit``):

- ``tf.data``: the same model on the TensorFlow tutorial's pipeline;
- ``fastseq-empty-cache``: an empty ``NUMBA_CACHE_DIR`` (a new venv, CI job
  or Colab session): the kernel compiles in a separate process while the
  batches come from the NumPy tier;
- ``fastseq-warm-cache``: the cache that compile left (a later run).

Targets (issue 34; reported in the end-of-run table, not asserted): the
first ``fit`` from an empty cache at most 1.5x tf.data's, the whole script
at most 1.3x tf.data's, and the second ``fit`` (the compile still running)
at most 2x the warm cache's.

A plain ``pytest`` runs the ``tf.data`` row and the ``fastseq`` script on
the suite's precompiled cache, as correctness checks; the empty-cache row
(a detached compile of 20-60 s of CPU) is skipped there:
``tests/test_compile_process.py`` runs the same script from an empty cache
and checks that the training process compiled nothing.
"""

import pytest

from benchmarks import summary
from fastseq.bench import first_run


@pytest.fixture(scope="module")
def empty_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("numba-cache")


@pytest.mark.slow
@pytest.mark.parametrize("row", first_run.ROWS)
def test_first_run(benchmark, row, empty_cache):
    benchmark.group = "first-run"
    if benchmark.disabled and row == "fastseq-empty-cache":
        pytest.skip("a cold compile of 20-60 s of CPU: run with --benchmark-only (tests/test_compile_process.py runs "
                    "the same quickstart from an empty cache)")
    if benchmark.disabled:
        cache = None  # the fastseq script on the suite's precompiled cache: a correctness check
    else:
        cache = empty_cache
        if row == "fastseq-warm-cache":
            if "fastseq-empty-cache" not in summary.FIRST_RUN:
                first_run.run_script("fastseq", cache)  # this row alone: fill the cache first
            first_run.wait_for_compile(cache)  # the compile process the empty-cache row left running
    out = {}

    def once():
        out["info"] = first_run.measure(row, cache)

    benchmark.pedantic(once, rounds=1, iterations=1)
    info = out["info"]
    assert info["fit1_s"] > 0 and info["fit2_s"] > 0 and info["loss"] == info["loss"]  # a real number, not NaN
    assert info["loader"] == ("tf.data" if row == "tf.data" else "fastseq")
    benchmark.extra_info.update(info)
    summary.FIRST_RUN[row] = info
