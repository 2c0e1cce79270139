"""Fixtures of the benchmark suites and the end-of-run ratio table.

The data come from the root ``conftest.py`` (``cifar``, ``mnist``), so the
benchmarks time the very arrays the correctness tests check.
"""

import pytest

from benchmarks import summary
from fastseq.bench import kernel_rows


@pytest.fixture(scope="session")
def jobs(cifar, mnist):
    """Every job the kernel suite times, by group name."""
    x, y = cifar
    made = [
        kernel_rows.cifar_job(x, y),
        kernel_rows.cifar_job(x, y, data_format="channels_first"),
        kernel_rows.cifar_job(x, y, dtype="float16"),
        kernel_rows.cifar_job(x, y, dtype="bfloat16"),
        kernel_rows.mnist_job(*mnist),
    ]
    return {job.name: job for job in made}


@pytest.fixture(scope="session")
def warm_kernels(jobs):
    """Compile (or load from the on-disk cache) every kernel variant before anything is timed."""
    from fastseq import kernels

    for job in jobs.values():
        origins, flips = job.params()
        kernels.fused(job.x, job.indices[:8], **job.fused_kwargs(origins[:8], flips[:8]))
    return True


@pytest.fixture
def job(request, jobs, warm_kernels):
    """The job named by the test's ``job`` parameter (indirect)."""
    return jobs[request.param]


def pytest_sessionstart(session):
    """Keep the load average before anything runs: the closing table names a machine that was busy."""
    import os

    try:
        summary.LOAD["start"] = os.getloadavg()[0]
    except (AttributeError, OSError):
        pass


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not (summary.RESULTS or summary.FIRST_RUN or summary.MEMMAP):
        return
    text = summary.lines()
    tr = terminalreporter
    if not text:
        tr.write_line("")
        tr.write_line(
            "benchmarks ran once each as correctness checks (timing disabled); "
            "run `pytest benchmarks --benchmark-only` for images/s and the ratio table."
        )
        return
    tr.write_sep("=", "fastseq throughput (shared machine: compare rows of one run, not runs)")
    for line in text:
        tr.write_line(line)
