"""Rerun the model.fit/evaluate/predict tests under every other installed backend.

Keras reads KERAS_BACKEND once, at import, so each backend gets a pytest
subprocess of its own. jax (CPU) comes with the test extra; torch is not a
dependency (users of the other backends need not carry it), so its reruns
skip where it is not installed, except where FASTSEQ_REQUIRE_BACKENDS names
it: CI installs a CPU build of torch and sets it (.ci/run), so there they fail.
"""

import os
import subprocess
import sys

import pytest

from tests import keras_runs

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (test file, -k expression). StarvationMonitor's own tests in test_profile.py time a TensorFlow-only
# sleeping layer; tests/test_epochs.py runs the monitor in a fit on every backend instead.
SUITES = {
    "fit": ("tests/test_fit.py", None),
}


def this_backend():
    return os.environ.get("KERAS_BACKEND", "tensorflow")


@pytest.mark.skipif("FASTSEQ_BACKEND_RERUN" in os.environ, reason="already a rerun")
@pytest.mark.parametrize("suite", sorted(SUITES))
@pytest.mark.parametrize("backend", [b for b in keras_runs.BACKENDS])
def test_suite_passes_on_backend(backend, suite):
    if backend == this_backend():
        pytest.skip(f"{backend} is this process's backend: the suite runs here directly")
    keras_runs.require(backend)
    path, expr = SUITES[suite]
    if not os.path.exists(os.path.join(ROOT, path)):
        pytest.skip(f"{path} has moved")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable", path]
    if expr:
        cmd += ["-k", expr]
    env = dict(os.environ, KERAS_BACKEND=backend, FASTSEQ_BACKEND_RERUN="1", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], tail


def test_a_missing_backend_skips_unless_required(monkeypatch):
    """CI names every backend in FASTSEQ_REQUIRE_BACKENDS: there a missing one fails its tests, never skips them."""
    monkeypatch.setattr(keras_runs, "backend_available", lambda backend: backend != "torch")
    monkeypatch.delenv(keras_runs.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="torch is not installed"):
        keras_runs.require("torch")
    monkeypatch.setenv(keras_runs.REQUIRE_ENV, "tensorflow,jax")
    with pytest.raises(pytest.skip.Exception):
        keras_runs.require("torch")
    monkeypatch.setenv(keras_runs.REQUIRE_ENV, "tensorflow jax torch")
    with pytest.raises(pytest.fail.Exception, match="FASTSEQ_REQUIRE_BACKENDS='tensorflow jax torch' requires"):
        keras_runs.require("torch")
    keras_runs.require("jax")  # installed: neither skips nor fails
