"""The built wheel works on its own: installed without the source tree and without reinstalling its
dependencies, it runs the README's quickstart (the ``<!-- run -->`` block) in a fresh interpreter.

The rest of the suite imports the source tree (an editable install); this test is the one that would
catch a module or data file left out of the wheel, or an import that only works from a checkout.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def readme_quickstart():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- run -->\s*\n```python\n(.*?)```", text, re.S)
    assert match, "README.md has no <!-- run --> python block"
    return match.group(1)


def test_the_wheel_runs_the_readme_quickstart(tmp_path):
    # Build from a copy of what the wheel is made of, so the build leaves nothing in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "fastseq", src / "fastseq", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    log = build.stdout + build.stderr
    assert "SetuptoolsDeprecationWarning" not in log, log[-4000:]
    (wheel,) = dist.glob("fastseq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastseq/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "fastseq/photos/store.py" in names and "fastseq/sequence/array_sequence.py" in names

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]

    work = tmp_path / "work"  # an empty working directory: nothing of the checkout beside the script
    work.mkdir()
    script = work / "quickstart.py"
    script.write_text(
        "import pathlib, sys\n"
        "import fastseq\n"
        f"site = pathlib.Path({str(site)!r}).resolve()\n"
        "where = pathlib.Path(fastseq.__file__).resolve()\n"
        "assert site in where.parents, f'fastseq imported from {where}, not from the installed wheel in {site}'\n"
        "assert (where.parent / 'py.typed').is_file()\n"
        + textwrap.dedent(readme_quickstart())
        + "print('quickstart ran from', where.parent)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NUMBA_CACHE_DIR"))}
    env["PYTHONPATH"] = str(site)  # the wheel first; its dependencies come from this interpreter's site-packages
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")  # nothing compiled by the checkout's runs
    # -s: no user site-packages; the script's own folder (work/) is the only other path put first.
    run = subprocess.run([sys.executable, "-s", str(script)], capture_output=True, text=True, cwd=work, env=env,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert f"quickstart ran from {(site / 'fastseq').resolve()}" in run.stdout
