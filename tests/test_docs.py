"""The documentation: the site builds strictly, every public name is in the API
reference, every runnable example runs as written, the pictures come from
their script, and the README stays short and names CI's commands.

A code block is runnable when the line just above its opening fence is
``<!-- run -->`` (invisible on GitHub and on the site). The runnable blocks of
one page share one namespace, in page order, as a reader would run them.
"""

import importlib
import importlib.util
import inspect
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import fastseq

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = "<!-- run -->"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def rel(path):
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def runnable_blocks(path):
    """``[(line number, code)]`` of the blocks marked runnable in a Markdown file."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = lines[i + 1] if i + 1 < len(lines) else ""
        if not re.fullmatch(r"```python\s*", fence):
            raise AssertionError(f"{rel(path)}:{i + 1}: {MARKER} must stand just above a ```python fence, "
                                 f"found {fence!r}")
        end = lines.index("```", i + 2)
        blocks.append((i + 3, "\n".join(lines[i + 2 : end])))
    return blocks


def test_the_marker_finds_blocks_and_rejects_a_misplaced_one(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"text\n\n{MARKER}\n```python\nx = 1\ny = x + 1\n```\n\n```python\nnot run\n```\n")
    assert runnable_blocks(page) == [(5, "x = 1\ny = x + 1")]
    page.write_text(f"{MARKER}\n\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="must stand just above"):
        runnable_blocks(page)


PAGES_WITH_CODE = [p for p in PAGES if runnable_blocks(p)]


@pytest.mark.parametrize("path", PAGES_WITH_CODE, ids=rel)
def test_runnable_blocks_run_as_written(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    namespace = {"__name__": "__docs__"}
    for line, code in runnable_blocks(path):
        exec(compile(code, f"{rel(path)}:{line}", "exec"), namespace)


def test_the_readme_quickstart_and_the_guides_are_runnable():
    assert runnable_blocks(ROOT / "README.md"), "the README's quickstart must be marked runnable"
    for page in ("getting-started.md", "guides/arrays.md", "guides/augmentation.md", "guides/epochs.md"):
        assert runnable_blocks(DOCS / page), page


def test_readme_is_short_and_names_the_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.split("\n")) <= 150
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in ('pip install -e ".[test]"', "python -m pytest", "python -m fastseq bench"):
        assert command in readme, command
    for command in ('pip install -e ".[test]"', "python -m pytest"):
        assert re.search(rf"^{re.escape(command)}$", ci, re.M), f"{command!r} is not a line of .ci/run"


def reference_targets():
    """The ``::: target`` lines of the API reference pages."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((DOCS / "reference").glob("*.md")))
    return set(re.findall(r"^::: ([\w.]+)\s*$", text, re.M))


def test_every_public_name_is_in_the_reference():
    targets = reference_targets()
    missing = []
    for name in fastseq.__all__:
        obj = getattr(fastseq, name)
        where = obj.__name__ if isinstance(obj, type(fastseq)) else f"{obj.__module__}.{obj.__qualname__}"
        if where not in targets:
            missing.append(f"{name}: add '::: {where}' to docs/reference/index.md")
    assert not missing, "\n".join(missing)


def test_every_reference_target_exists():
    for target in reference_targets():
        module, _, attr = target.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError):
            obj = importlib.import_module(target)
        assert obj is not None


def test_mkdocs_build_strict(tmp_path):
    """The site builds with every warning an error: a broken link or anchor, a
    missing reference target, a docstring argument without a type or not in
    the signature. Sphinx roles (``:class:``...) do not render in Markdown."""
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    html = (site / "reference" / "index.html").read_text(encoding="utf-8")
    for name in fastseq.__all__:
        if name != "datasets":
            obj = getattr(fastseq, name)
            assert f'id="{obj.__module__}.{obj.__qualname__}"' in html, name
    rendered = "\n".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    roles = sorted(set(re.findall(r":(?:class|meth|func|mod|attr|ref):<code>[^<]*</code>", rendered)))
    assert not roles, f"Sphinx roles left in docstrings (write ``name`` instead): {roles}"
    assert (site / "images" / "augment-random-crop.png").is_file()
    # The search box finds every argument of every public name on its reference entry.
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    reference = [d for d in index if d["location"].startswith("reference/")]
    unfound = [f"{name}({p})" for name, obj in public_callables() for p in inspect.signature(obj).parameters
               if not any(p in d["text"] and (obj.__qualname__ in d["location"]) for d in reference)]
    assert not unfound, f"arguments the docs' search does not find on their reference entry: {unfound}"


# --- the pictures --------------------------------------------------------------

SCRIPT = DOCS / "scripts" / "draw_augmentations.py"


def load_script():
    spec = importlib.util.spec_from_file_location("draw_augmentations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_drawn_picture_is_committed_and_shown():
    script = load_script()
    page = (DOCS / "guides" / "augmentation.md").read_text(encoding="utf-8")
    for name, _ in script.ops(160):
        assert (DOCS / "images" / f"{name}.png").is_file(), f"run python {SCRIPT.relative_to(ROOT)}"
        assert f"(../images/{name}.png)" in page, name


def test_every_augment_grid_is_committed_and_shown_with_its_call():
    """Each ``augment=[...]`` picture exists, is on the page, and the call printed there is the one that drew it."""
    script = load_script()
    page = (DOCS / "guides" / "augmentation.md").read_text(encoding="utf-8")
    grids = script.keras_ops(96)
    drawn = {type(op).__name__ for *_, kwargs in grids for op in kwargs.get("augment", [])}
    assert drawn >= {c.__name__ for c in (*fastseq.augment.GEOMETRY_OPS, *fastseq.augment.COLOR_OPS)}
    assert drawn >= {"RandAugment", "TrivialAugmentWide", "AugMix"}
    for name, _, call, _ in grids:
        assert (DOCS / "images" / f"{name}.png").is_file(), f"run python {SCRIPT.relative_to(ROOT)}"
        assert f"(../images/{name}.png)" in page, name
        assert f"`{call}`" in page, f"{name}: the page must show the call that drew it, `{call}`"


IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")


@pytest.mark.parametrize("path", PAGES, ids=rel)
def test_every_picture_a_page_shows_exists(path):
    """``mkdocs build --strict`` catches a missing picture on a docs page, but not in the README, and slowly."""
    missing = []
    for target in IMAGE.findall(path.read_text(encoding="utf-8")):
        if "://" not in target and not (path.parent / target.split("#")[0]).is_file():
            missing.append(target)
    assert not missing, f"{rel(path)} shows pictures that do not exist: {missing}"


@pytest.mark.slow
def test_the_picture_script_draws_every_augment_grid(tmp_path):
    from PIL import Image

    script = load_script()
    tile, count, columns = 24, 5, 3
    paths = script.draw_keras(str(tmp_path), tile=tile, count=count, columns=columns)
    grids = script.keras_ops(tile)
    assert [os.path.basename(p) for p in paths] == [f"{name}.png" for name, *_ in grids]
    source = script.sample_image("grace_hopper.jpg", tile)
    gap = max(2, tile // 32)
    for path, (name, _, _, kwargs) in zip(paths, grids):
        picture = np.asarray(Image.open(path).convert("RGB"))
        assert picture.shape == (2 * tile + gap, columns * tile + (columns - 1) * gap, 3), path
        np.testing.assert_array_equal(picture[:tile, :tile], source)
        if "crop" in kwargs or not all(op.random for op in kwargs["augment"]):
            continue  # another output size; or deterministic
        cells = [picture[r * (tile + gap) : r * (tile + gap) + tile, c * (tile + gap) : c * (tile + gap) + tile]
                 for r in range(2) for c in range(columns)][1 : count + 1]
        assert not all(np.array_equal(d, source) for d in cells), f"{name}: no tile changed"
        assert len({d.tobytes() for d in cells}) > 1, f"{name}: every tile drew the same"


@pytest.mark.slow
def test_the_picture_script_draws_every_op(tmp_path):
    from PIL import Image

    script = load_script()
    size, count = 24, 2
    paths = script.draw(str(tmp_path), size=size, count=count)
    assert [os.path.basename(p) for p in paths] == [f"{name}.png" for name, _ in script.ops(size)]
    source = script.sample_image("grace_hopper.jpg", size)
    gap = max(2, size // 32)
    for path in paths:
        picture = np.asarray(Image.open(path).convert("RGB"))
        assert picture.shape[0] == size, path
        np.testing.assert_array_equal(picture[:, :size], source)
        if "resize" in path or "center-crop" in path:
            continue  # deterministic ops, of another output size
        assert picture.shape == (size, (count + 1) * size + count * gap, 3), path
        drawn = [picture[:, (k + 1) * (size + gap) : (k + 1) * (size + gap) + size] for k in range(count)]
        # every random op changes the photo in at least one of its samples
        assert not all(np.array_equal(d, source) for d in drawn), path


# --- every argument of every public name is documented --------------------------


def documented_names(obj):
    """Names listed in the ``Args:`` and ``Attributes:`` sections of a Google-style docstring."""
    doc = inspect.getdoc(obj) or ""
    names = set()
    for section in re.finditer(r"^(?:Args|Attributes):\n((?:[ \t]+.*\n|\n)*)", doc + "\n", re.M):
        for entry in re.findall(r"^    (\**\w+(?:, \w+)*)", section.group(1), re.M):
            names.update(n.lstrip("*") for n in entry.split(", "))
    return names


def public_callables():
    for name in fastseq.__all__:
        obj = getattr(fastseq, name)
        if isinstance(obj, type(fastseq)):
            for sub in [*obj.__all__, "open"]:
                value = getattr(obj, sub)
                # exceptions and warnings take a message, not documented arguments
                if callable(value) and not (isinstance(value, type) and issubclass(value, BaseException)):
                    yield f"{name}.{sub}", value
        else:
            yield name, obj


@pytest.mark.parametrize("name, obj", list(public_callables()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_argument_of_a_public_name_is_documented(name, obj):
    """The API reference shows each argument with its type only if the docstring lists it."""
    signature = inspect.signature(obj)
    documented = documented_names(obj)
    if inspect.isclass(obj):
        documented |= documented_names(obj.__init__)
    missing = [p for p in signature.parameters if p not in documented]
    assert not missing, f"{name}: add {missing} to the docstring's Args: section, as 'name (type): meaning'"
