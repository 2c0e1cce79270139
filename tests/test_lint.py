"""``ruff check`` is clean: the rules and their few per-file exceptions are in pyproject.toml's [tool.ruff]."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def ruff_command():
    try:
        import ruff  # noqa: F401  (installed by the test extra)
    except ImportError:
        exe = shutil.which("ruff")
        if exe is None:
            pytest.skip("ruff is not installed: pip install -e '.[test]'")
        return [exe]
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_is_clean():
    result = subprocess.run([*ruff_command(), "check", "--no-cache", "--output-format", "concise"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
