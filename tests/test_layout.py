"""The house's shape: imports point one way, and the low layers never load Keras.

Every ``import`` inside ``fastseq/`` (top-level and inside functions) is read
with :mod:`ast`, so a lazy import counts as much as an eager one. Each module
has a layer; a module may import its own layer or lower ones, never a higher
one, and the import graph has no cycle. ``fastseq/__init__.py`` and
``__main__.py`` are the facade: they sit on top and nothing inside the
package may import names through them (``from fastseq import ArraySequence``
would hide which module it really needs).
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastseq"

# Lowest first. A module's layer is that of its longest matching prefix.
LAYERS = [
    ("kernels", ["fastseq.kernels"]),
    ("below both packages (numpy only)", ["fastseq.augment", "fastseq.ragged", "fastseq._memmap", "fastseq.warmup"]),
    ("the batch order (numpy only)", ["fastseq.sequence.order"]),
    ("the sequence's parts (Keras only lazily, in sharding)",
     ["fastseq.sequence.options", "fastseq.sequence.sharding", "fastseq.sequence.plans", "fastseq.sequence.targets",
      "fastseq.sequence.position", "fastseq.sequence._pool", "fastseq.sequence.keras_quirks"]),
    ("the sequence (Keras-facing)", ["fastseq.sequence", "fastseq.callbacks", "fastseq.layers"]),
    ("photos", ["fastseq.photos"]),
    ("datasets", ["fastseq.datasets"]),
    ("bench", ["fastseq.bench"]),
    ("profiler", ["fastseq.profiling"]),
    ("facade", ["fastseq.__main__", "fastseq"]),
]

# Modules that must not load Keras or TensorFlow, checked in a fresh interpreter. A package's
# __init__ that hands on a Keras-facing name (fastseq, fastseq.sequence, fastseq.photos) does it lazily.
KERAS_FREE = ["fastseq", "fastseq.kernels", "fastseq.sequence.order", "fastseq.ragged", "fastseq.augment",
              "fastseq.warmup", "fastseq.sequence", "fastseq.sequence.options", "fastseq.sequence.position",
              "fastseq.sequence.plans", "fastseq.sequence.targets", "fastseq.sequence._pool", "fastseq.sequence.sharding",
              "fastseq.photos", "fastseq.photos.listing", "fastseq.photos.decode", "fastseq.photos.store",
              "fastseq.datasets", "fastseq.datasets.convert", "fastseq.bench", "fastseq.bench.photos",
              "fastseq.profiling"]

# Who may import the measuring bench and the profiler: their own modules and the command lines
# (``python -m fastseq``, and the profiler's command, which feeds the bench's synthetic data and
# baselines to the model). The facade fastseq/__init__.py names three profiler objects in its lazy
# table (``fastseq.profile``, ``ProfileReport``, ``StarvationMonitor``); those are strings read on
# first use, not imports, and are allowed by name in test_only_the_command_lines_import_bench_and_profiling.
TOOL_IMPORTERS = {
    "fastseq.bench": ("fastseq.bench", "fastseq.__main__", "fastseq.profiling.cli"),
    "fastseq.profiling": ("fastseq.profiling", "fastseq.__main__"),
}
MAX_TOP_LEVEL_MODULES = 8


def module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name, modules):
    """The module a dotted name refers to: itself, or its longest prefix that is a module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name, path, modules):
    """Internal modules that module ``name`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            # `from pkg import sub` imports the submodule pkg.sub where there is one.
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        else:
            continue
        for t in targets:
            if t == "fastseq" or t.startswith("fastseq."):
                found.add(resolve(t, modules))
    found.discard(name)
    return found


def layer_of(name):
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, index = len(p), i
    return index


@pytest.fixture(scope="module")
def graph():
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer(graph):
    assert [m for m in graph if layer_of(m) is None] == []


def test_imports_never_point_up_or_through_the_facade(graph):
    bad = []
    for name, targets in graph.items():
        for t in targets:
            if t in ("fastseq", "fastseq.__main__") and layer_of(name) != len(LAYERS) - 1:
                bad.append(f"{name} imports through the facade {t}")
            elif layer_of(t) > layer_of(name):
                bad.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})")
    assert bad == []


def test_no_import_cycles(graph):
    # A depth-first search: an edge back to a module still on the stack closes a cycle.
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_the_checker_sees_lazy_upward_imports_and_cycles(tmp_path):
    """The checks above can fail: a function-level upward import and a cycle are both found."""
    pkg = tmp_path / "fastseq"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "order.py").write_text("from fastseq import sequence\n")
    (pkg / "sequence.py").write_text("def f():\n    from fastseq.order import x\n")
    (pkg / "kernels" / "__init__.py").write_text("def g():\n    import fastseq.sequence\n")
    modules = {str(p.relative_to(tmp_path).with_suffix("")).replace("/", ".").removesuffix(".__init__"): p
               for p in pkg.rglob("*.py")}
    g = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert g["fastseq.kernels"] == {"fastseq.sequence"}
    assert g["fastseq.order"] == {"fastseq.sequence"} and g["fastseq.sequence"] == {"fastseq.order"}
    assert layer_of("fastseq.sequence") > layer_of("fastseq.kernels")


@pytest.mark.parametrize("module", KERAS_FREE)
def test_low_layers_do_not_load_keras(module):
    code = (
        f"import sys, {module}; "
        "bad = [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_datasets_after_a_plain_import_fastseq():
    code = "import fastseq; print(fastseq.datasets.open.__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fastseq.datasets.cache"


def inside(name, package):
    return name == package or name.startswith(package + ".")


def test_only_the_command_lines_import_bench_and_profiling(graph):
    bad = [f"{name} imports {t}" for name, targets in graph.items() for t in targets for tool, allowed in TOOL_IMPORTERS.items()
           if inside(t, tool) and not any(inside(name, a) for a in allowed)]
    assert bad == []
    # The facade's lazy table: the profiler's three public objects, and nothing from the bench.
    import fastseq

    tools = {k: m for k, (m, _) in fastseq._LAZY.items() if inside(m, "fastseq.bench") or inside(m, "fastseq.profiling")}
    assert sorted(tools) == ["ProfileReport", "StarvationMonitor", "profile"], tools


def test_the_sequence_never_imports_the_photo_path(graph):
    bad = [f"{name} imports {t}" for name, targets in graph.items() if inside(name, "fastseq.sequence")
           for t in targets if inside(t, "fastseq.photos")]
    assert bad == []
    code = "import sys, fastseq.sequence.array_sequence; assert not [m for m in sys.modules if m.startswith('fastseq.photos')]"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_at_most_eight_modules_directly_in_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("package, name", [("fastseq.sequence", "ArraySequence"), ("fastseq.photos", "FolderSequence"),
                                           ("fastseq.photos", "image_dataset_from_directory")])
def test_package_inits_hand_on_their_keras_facing_names(package, name):
    code = f"import {package} as p; print(getattr(p, {name!r}).__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(package + ".")


def test_building_a_sequence_runs_one_way():
    """options -> plan -> assembled: one call into each, and neither calls back (traced with sys.setprofile)."""
    import numpy as np

    from fastseq.augment import Cutout, MixUp, RandomCrop
    from fastseq.sequence.array_sequence import ArraySequence

    x = np.zeros((8, 6, 6, 3), np.uint8)
    calls = []

    def record(frame, event, arg):
        if event != "call" or frame.f_back is None:
            return
        callee, caller = frame.f_globals.get("__name__", ""), frame.f_back.f_globals.get("__name__", "")
        if callee != caller and callee.startswith("fastseq.") and caller.startswith("fastseq."):
            calls.append((caller.rpartition(".")[2], callee.rpartition(".")[2], frame.f_code.co_name))

    def traced(build):
        calls.clear()
        sys.setprofile(record)
        try:
            return build()
        finally:
            sys.setprofile(None)

    def assert_one_way():
        steps = [callee for caller, callee, _ in calls if caller == "array_sequence" and callee in ("options", "plans")]
        assert steps == ["options", "plans"], calls
        back = [c for c in calls if (c[0], c[1]) in {("options", "array_sequence"), ("options", "plans"),
                                                       ("plans", "array_sequence"), ("plans", "options")}]
        assert back == []

    train = traced(lambda: ArraySequence(x, np.arange(8) % 2, batch_size=4, crop=RandomCrop(4, 4, padding=1),
                                         flip="horizontal", num_classes=2, mix=MixUp(0.2), cutout=Cutout(1)))
    assert_one_way()
    traced(lambda: train.for_evaluation(x[:6], np.arange(6) % 2))
    assert_one_way()
