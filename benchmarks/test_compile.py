"""Group ``compile``: each kernel variant's first batch from an empty Numba cache, in a fresh process (issue 26).

One row per variant of ``fastseq.bench.compile_rows.VARIANTS`` (the same
rows as ``python -m fastseq bench --compile``). The row's own time is the
whole child process (imports, data, a serial row's parallel kernel, the
first batch); ``extra_info`` has the figures of the table: the time from
just before construction to the end of the first batch, the process's CPU
time over it, the time inside Numba's compile events, the part of it under
the LLVM lock, and the slowest functions by exclusive compile time.
Figures, not asserts: there is no timed target here.

A plain ``pytest`` runs benchmarks once as correctness checks
(``--benchmark-disable``) inside the suite's 10-minute budget: there every
row is a cold compile of 20-60 s of CPU, so none runs here, and the
quickstart row's child (the same ``compile_rows.measure``) runs as a test in
``tests/test_compile_events.py``, which checks its result by name; ``pytest
benchmarks --benchmark-only -k compile`` runs every row.
"""

import pytest

from fastseq.bench import compile_rows


@pytest.mark.slow
@pytest.mark.parametrize("name", list(compile_rows.VARIANTS))
def test_compile(benchmark, name):
    benchmark.group = "compile"
    variant = compile_rows.VARIANTS[name]
    if benchmark.disabled:
        pytest.skip("a cold compile of 20-60 s: run with --benchmark-only (tests/test_compile_events.py runs the "
                    "quickstart row's child as a test)")
    if variant.keras and not compile_rows.keras_available():
        pytest.skip("builds a sequence: needs Keras")
    result = benchmark.pedantic(compile_rows.measure, args=(name,), rounds=1, iterations=1)
    assert "error" not in result, f"{name}: {result.get('error')}\n{result.get('stderr', '')}"
    benchmark.extra_info.update(
        first_batch_s=result["first_batch_s"],
        first_batch_cpu_s=result["first_batch_cpu_s"],
        compile_s=result["compile_s"],
        llvm_s=result["llvm_s"],
        top_functions=[f"{n} {s:.2f}" for n, s in compile_rows.top_functions(result, 5)],
    )
    assert result["shape"] == list(variant.shape) and result["dtype"] == variant.dtype, result
    assert result["events"] > 0 and result["compile_s"] > 0, f"{name}: no compile events recorded"
    assert result["functions"] and all(f["module"] and f["name"] for f in result["functions"])
