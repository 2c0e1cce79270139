"""Issue 26: the README quickstart's first batch, from an empty Numba cache, compiles only its own variant.

One fresh interpreter with an empty ``NUMBA_CACHE_DIR`` builds the
quickstart's sequence and makes its first batch
(``fastseq.bench.compile_rows``' ``quickstart`` row), then waits for the
kernel it compiles in the background (the tiered start); Numba's compile
events name every function compiled. The first batch itself compiles only
the crop and flip draws. The lists below say which fastseq functions belong
to that variant: change them here, in one place, when the kernels change.
"""

import pytest

from fastseq.bench import compile_rows

#: Every fastseq function the quickstart compiles must match one of these: ``module:qualname`` exactly, or a
#: whole module when the entry ends with ":".
ALLOWED = (
    "fastseq.kernels.random:",  # the crop and flip draws
    "fastseq.kernels.images:_checked",
    "fastseq.kernels.images:_fused",
    "fastseq.kernels.images:_fused_block_overload.<locals>.impl",
    "fastseq.kernels.images:_block_affine",  # the float32 channels_last block
)
#: ... and these must be among them.
REQUIRED = (
    "fastseq.kernels.images:_block_affine",
    "fastseq.kernels.random:_random_params",
)
#: Other variants' functions and the serial twins: never compiled for the quickstart's first batch.
DENIED = (
    "fastseq.kernels.images:_block_table",
    "fastseq.kernels.images:_block_raw",
    "fastseq.kernels.images:_block_cf_affine",
    "fastseq.kernels.images:_block_cf_table",
    "fastseq.kernels.images:_block_cf_raw",
    "fastseq.kernels.images:_checked_serial",
)
#: Modules none of whose functions the quickstart compiles.
DENIED_MODULES = ("fastseq.kernels.resize", "fastseq.kernels.mix", "fastseq.kernels.ragged", "fastseq.kernels.halfprec",
                  "fastseq.kernels.warp", "fastseq.kernels.color", "fastseq.kernels.augment_pass", "fastseq.kernels.tv_color")


def allowed(name):
    return any(name == a or (a.endswith(":") and name.startswith(a)) for a in ALLOWED)


@pytest.mark.slow
def test_the_quickstart_compiles_only_its_own_variant():
    pytest.importorskip("keras")
    result = compile_rows.measured("quickstart")
    assert "error" not in result, f"{result.get('error')}\n{result.get('stderr', '')}"
    assert result["shape"] == [128, 32, 32, 3] and result["dtype"] == "float32"
    assert result["events"] > 0 and result["compile_s"] > 0, result
    names = [f"{f['module']}:{f['name']}" for f in result["functions"]]
    assert all(f["module"] and f["name"] for f in result["functions"]), names
    ours = [n for n in names if n.startswith("fastseq.")]
    denied = [n for n in ours if n in DENIED or n.split(":")[0] in DENIED_MODULES]
    assert not denied, f"the quickstart compiled other variants' functions: {denied}"
    strangers = [n for n in ours if not allowed(n)]
    assert not strangers, f"the quickstart compiled functions outside its variant: {strangers} (ALLOWED: {ALLOWED})"
    missing = [n for n in REQUIRED if n not in ours]
    assert not missing, f"not compiled: {missing}; compiled: {ours}"
    # The first batch waited for the draws only: the fused kernel compiled in the background.
    first = [n for n in result["first_batch_functions"] if n.startswith("fastseq.")]
    assert first and all(n.startswith("fastseq.kernels.random:") for n in first), first
    assert result["background_s"] > 0
    # ... and said how long it took (the compile notice stays, with the time).
    assert "fastseq: compiled the fused kernel for float32 channels_last batches in " in result["stderr"], result
    # Each of its functions compiled once (one signature), not once per caller.
    twice = [f"{f['module']}:{f['name']}" for f in result["functions"]
             if f["module"].startswith("fastseq.") and f["count"] > 1]
    assert not twice, f"compiled more than once: {twice}"


def test_nested_compiles_count_once_and_each_function_gets_its_own_share():
    import numba

    @numba.njit
    def inner(x):
        return x + 1

    @numba.njit
    def outer(x):
        return inner(x) * 2

    with compile_rows.CompileEvents() as events:
        assert outer(1) == 4
    s = events.summary()
    by_name = {f["name"].rsplit(".", 1)[-1]: f for f in s["functions"] if f["module"] == __name__}
    o, i = by_name["outer"], by_name["inner"]  # inner compiled inside outer's compile
    assert o["count"] == i["count"] == 1
    assert o["inclusive_s"] == pytest.approx(o["exclusive_s"] + i["inclusive_s"], abs=1e-3)
    assert s["compile_s"] == pytest.approx(o["inclusive_s"], abs=1e-3)  # the outermost only: no double count
    assert 0 < s["llvm_s"] <= s["compile_s"]


def test_unknown_variants_are_refused_with_the_list(capsys):
    import argparse

    assert compile_rows.run(argparse.Namespace(variants="quickstart,nope", jobs=1, markdown=None)) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("row, absent", [("augment_geometry", "fastseq.kernels.color"),
                                         ("augment_color", "fastseq.kernels.warp")])
def test_an_augment_list_compiles_only_the_families_it_uses(row, absent):
    """Issues 31 and 32: geometric ops alone compile no color code, color ops alone no warp code; neither compiles
    the other pass variants; and a sequence without ``augment`` compiles none of it (the quickstart test above)."""
    pytest.importorskip("keras")
    result = compile_rows.measured(row)
    assert "error" not in result, f"{result.get('error')}\n{result.get('stderr', '')}"
    names = [f"{f['module']}:{f['name']}" for f in result["functions"]]
    assert not [n for n in names if n.startswith(absent + ":")], names
    variant = "_pass_warp" if row == "augment_geometry" else "_pass_copy"
    passes = {n.split(":")[1] for n in names if n.startswith("fastseq.kernels.augment_pass:_pass")}
    assert passes == {variant}, names
    assert not [n for n in names if n.startswith(("fastseq.kernels.tv_color", "fastseq.kernels.images:_block"))], names
