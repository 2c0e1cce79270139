"""Issue 34: the tiered start compiles in a separate process, once per variant, and a killed compile breaks nothing.

Most tests use ``tests/compile_probe.py``'s small cached kernel (about a
second to compile) in fresh interpreters with an empty ``NUMBA_CACHE_DIR``;
the slow one runs the README quickstart.
"""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numba
import pytest

from fastseq.kernels import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_PROBE = """
import json, os, sys, time
from fastseq.bench.compile_rows import CompileEvents
events = CompileEvents().install()
from fastseq.kernels import config
from tests import compile_probe as cp
types = tuple(__import__("numba").typeof(a) for a in cp.example())
lock, log = config._variant_files(cp.scaled_sum, types)

def compiled_here():
    return [f["name"] for f in events.summary()["functions"] if f["module"] == "tests.compile_probe"]

def log_lines():
    return open(log).read().splitlines() if os.path.exists(log) else []

def started(job):
    while job.process is None and not job.ready():  # its thread looks in the cache, then starts the process
        time.sleep(0.01)
"""


def run_script(code, cache, timeout=300, probe=True, **env):
    """Run ``code`` (after ``_PROBE``'s set-up) in a fresh interpreter with ``NUMBA_CACHE_DIR=cache``; its result."""
    environ = dict(os.environ, NUMBA_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="3", **env)
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, environ.get("PYTHONPATH")) if p)
    environ.pop("FASTSEQ_COMPILE_IN", None)
    environ.update(env)
    code = (_PROBE if probe else "") + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=environ, cwd=ROOT)


def last_json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])




@pytest.mark.slow
def test_two_processes_at_once_compile_it_once(tmp_path):
    """Two compile processes started while a third holds the variant's lock: one compiles, the other loads."""
    result = run_script("""
    import fcntl
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as if another process were compiling it
        children = [config._spawn(cp.scaled_sum, types) for _ in range(2)]
        time.sleep(2)
        waiting = [c.poll() is None for c in children]
    codes = [c.wait(120) for c in children]
    loaded = config.load_cached(cp.scaled_sum, types)
    print(json.dumps(dict(waiting=waiting, codes=codes, log=log_lines(), loaded=loaded, here=compiled_here(),
                          value=float(cp.scaled_sum(*cp.example())))))
    """, tmp_path)
    r = last_json(result)
    assert r["waiting"] == [True, True] and r["codes"] == [0, 0], r
    assert sorted(line.split()[0] for line in r["log"]) == ["compiled", "loaded"], r["log"]
    assert r["loaded"] and r["here"] == [] and r["value"] == 20.0, r


@pytest.mark.slow
@pytest.mark.parametrize("where", ["after_index", "mid_data"])
def test_a_killed_compile_leaves_no_entry_that_loads(where, tmp_path):
    """Killed after Numba wrote the cache index but not the data, or halfway through writing the data.

    Numba writes each file under a temporary name and renames it, so the data file is whole or absent; an
    index entry whose data is absent is a miss. The next compile process takes the lock the dead one held
    (the kernel released it), compiles, and a fresh process loads the result.
    """
    killed = run_script(f"""
    import base64, pickle, signal
    from numba.core import caching
    from fastseq.kernels import _compile_child

    def die(*args):
        os.kill(os.getpid(), signal.SIGKILL)

    if {where!r} == "after_index":
        caching.IndexDataCacheFile._save_data = lambda self, name, data: die()
    else:
        def half(self, name, data):
            data = self._dump(data)
            with self._open_for_write(self._data_path(name)) as f:
                f.write(data[: len(data) // 2])
                f.flush()
                die()
        caching.IndexDataCacheFile._save_data = half
    spec = dict(module="tests.compile_probe", qualname="scaled_sum", lock=lock,
                types=base64.b64encode(pickle.dumps(types)).decode())
    _compile_child.main(["", json.dumps(spec)])
    """, tmp_path)
    assert killed.returncode == -9, killed.stderr
    again = last_json(run_script("""
    hit = config.load_cached(cp.scaled_sum, types)  # what the killed process left: no entry that loads
    code = config._spawn(cp.scaled_sum, types).wait(120)
    lines = log_lines()
    job = config.background_compile(cp.scaled_sum, cp.example(), "probe")  # as a later run: from the cache
    print(json.dumps(dict(hit=hit, code=code, log=lines, ok=job.wait(60), source=job.source, here=compiled_here(),
                          value=float(cp.scaled_sum(*cp.example())))))
    """, tmp_path))
    assert not again["hit"] and again["code"] == 0, again
    assert again["log"][-1].startswith("compiled") and "waited 0.0 s" in again["log"][-1], again["log"]
    assert again["ok"] and again["source"] == "cache" and again["here"] == [] and again["value"] == 20.0, again
    leftovers = [name for _, _, files in os.walk(tmp_path) for name in files if ".tmp." in name]
    assert where == "after_index" or leftovers  # the half-written data never got its real name


@pytest.mark.slow
def test_the_script_ends_without_waiting_for_the_compile(tmp_path):
    """The compile process outlives the script that started it; the next process loads its result."""
    first = last_json(run_script("""
    job = config.background_compile(cp.scaled_sum, cp.example(), "probe")
    started(job)
    print(json.dumps(dict(source=job.source, running=job.process is not None and job.process.poll() is None,
                          log=log, lines=log_lines())))
    """, tmp_path, FASTSEQ_TEST_CHILD_DELAY="3"))
    assert first["running"] and first["lines"] == [], first  # ended while its compile process ran
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (os.path.exists(first["log"]) and open(first["log"]).read()):
        time.sleep(0.2)
    lines = open(first["log"]).read().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compiled"), lines
    second = last_json(run_script("""
    job = config.background_compile(cp.scaled_sum, cp.example(), "probe")
    print(json.dumps(dict(ok=job.wait(60), source=job.source, here=compiled_here())))
    """, tmp_path))
    assert second == {"ok": True, "source": "cache", "here": []}, second


def test_the_thread_compiles_where_no_process_can_start(monkeypatch):
    """``_spawn`` raising (no fork/exec here) or declining (no lock, no cache folder): the thread of old compiles."""
    for spawn in (lambda kernel, types: (_ for _ in ()).throw(OSError("no processes here")), lambda kernel, types: None):
        monkeypatch.setattr(config, "_spawn", spawn)
        kernel = numba.njit(lambda v: v * 3)  # no cache: nothing for load_cached to find
        job = config.ProcessCompile(kernel, (numba.int64,), "a stand-in").start()
        assert job.wait(120) and job.source == "thread" and job.error is None
        assert (numba.int64,) in kernel.overloads and kernel(2) == 6


def test_ready_asks_the_process_at_most_every_poll_interval(monkeypatch):
    class Process:
        polls = 0
        returncode = None

        def poll(self):
            Process.polls += 1
            return self.returncode

    class Kernel:
        overloads = {}

        def compile(self, types):
            self.overloads[types] = True

    job = config.ProcessCompile(Kernel(), ("t",), "a stand-in")
    job._t0 = time.perf_counter()
    job.process = Process()
    threads = [threading.Thread(target=lambda: [job.ready() for _ in range(2000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Process.polls == 1  # 8,000 asks, one waitpid
    job.process.returncode = 0
    job._next_poll = 0.0
    assert not job.ready()  # this ask notices the exit; a thread loads the kernel (here: compiles the stand-in)
    assert job.wait(10) and ("t",) in Kernel.overloads


@pytest.mark.parametrize("value, kind", [("thread", config.BackgroundCompile), ("process", config.ProcessCompile)])
def test_compile_in_chooses_thread_or_process(value, kind, monkeypatch):
    monkeypatch.setattr(config, "COMPILE_IN", value)
    kernel = numba.njit(lambda v: v - 1)
    job = config.background_compile(kernel, (1,), "a stand-in")
    assert type(job) is kind and job.wait(120) and kernel(1) == 0


def test_an_unknown_compile_in_is_refused(tmp_path):
    result = run_script("import fastseq.kernels", tmp_path, probe=False, FASTSEQ_COMPILE_IN="sometimes")
    assert result.returncode != 0 and 'FASTSEQ_COMPILE_IN must be "process" or "thread", got \'sometimes\'' in result.stderr


_QUICKSTART = """
import json, time
import numpy as np
from fastseq.bench.compile_rows import CompileEvents
events = CompileEvents().install()
import keras
import fastseq
from fastseq.kernels import quick

served = []  # (indices, origins, flips, pixels) of every batch the NumPy tier made
real = quick.fused


def spy(*args):
    ok = real(*args)
    served.append((args[3].copy(), args[5].copy(), args[6].copy(), args[-2].copy()))
    return ok


quick.fused = spy
x = np.random.default_rng(0).integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
y = np.arange(512) % 10
train = fastseq.ArraySequence(x, y, batch_size=128, crop=fastseq.RandomCrop(32, 32, padding=4),
                              flip="horizontal", normalize=fastseq.Rescale(1 / 255))
model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(train, epochs=1, verbose=0)
during_first_fit = len(served)
job = train._plan._tier_job()
ok = job.wait(600)
model.fit(train, epochs=1, verbose=0)
after = len(served) - during_first_fit
same = all(np.array_equal(train._plan(idx, origins, flips).reshape(pixels.shape).view(np.uint8), pixels.view(np.uint8))
           for idx, origins, flips, pixels in served)
here = [f["module"] + ":" + f["name"] for f in events.summary()["functions"]]
print(json.dumps(dict(ok=ok, source=job.source, first=during_first_fit, after=after, same=same, here=here,
                      batches=train.stats()["batches"])))
"""


@pytest.mark.slow
def test_the_quickstart_never_compiles_the_fused_kernel_in_the_training_process(tmp_path):
    """From an empty cache: NumPy batches first, the kernel compiled by the compile process, loaded, then used.

    Numba's compile events in the training process name only the draws; every batch the NumPy tier made is
    made again by the compiled kernel afterwards, with the same bits.
    """
    pytest.importorskip("keras")
    r = last_json(run_script(_QUICKSTART, tmp_path, probe=False, timeout=900))
    assert r["ok"] and r["source"] == "process", r
    assert r["first"] >= 1 and r["after"] == 0, r  # NumPy served the first batches, the kernel every one after
    assert r["same"], r
    ours = [name for name in r["here"] if name.startswith("fastseq.")]
    assert ours and all(name.startswith("fastseq.kernels.random:") for name in ours), ours


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_compile_process_runs_at_idle_priority(tmp_path):
    """The tiered start's child runs at SCHED_IDLE (training threads get the cores first); asked, at normal."""
    r = last_json(run_script("""
    policies = []
    for idle in (True, False):
        child = config._spawn(cp.scaled_sum, types, idle=idle)
        time.sleep(1.0)  # the child sleeps 3 s after its imports (FASTSEQ_TEST_CHILD_DELAY): still running
        policies.append(os.sched_getscheduler(child.pid))
        child.wait(120)
    print(json.dumps(dict(policies=policies, idle=os.SCHED_IDLE, other=os.SCHED_OTHER)))
    """, tmp_path, FASTSEQ_TEST_CHILD_DELAY="3"))
    assert r["policies"] == [r["idle"], r["other"]], r


@pytest.mark.slow
def test_an_idle_compile_that_runs_too_long_restarts_at_normal_priority(tmp_path):
    """Past FASTSEQ_COMPILE_IDLE_SECONDS the idle child is killed and a normal one compiles; the kernel loads."""
    r = last_json(run_script("""
    job = config.background_compile(cp.scaled_sum, cp.example(), "probe")
    started(job)
    first = job.process.pid
    was_idle = job.idle
    ok = job.wait(120)
    print(json.dumps(dict(ok=ok, was_idle=was_idle, restarted=job.restarted, idle=job.idle, source=job.source,
                          second=job.process.pid, first=first, lines=log_lines(), here=compiled_here(),
                          value=float(cp.scaled_sum(*cp.example())))))
    """, tmp_path, FASTSEQ_TEST_CHILD_DELAY="2", FASTSEQ_COMPILE_IDLE_SECONDS="0.5"))
    assert r["ok"] and r["was_idle"] and r["restarted"] and not r["idle"], r
    assert r["second"] != r["first"] and r["source"] == "process", r
    assert [line.split()[0] for line in r["lines"]] == ["compiled"], r  # the killed child wrote nothing
    assert r["here"] == [] and r["value"] == 20.0, r
