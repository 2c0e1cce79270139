"""One place for every Numba option, and the guard for concurrent launches.

Kernels take their decorator options from here and nowhere else, so a
change (say, turning bounds checks on to debug) is one edit.
"""

import contextlib
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# OpenMP threads that spin while waiting for work steal the CPU from the
# training step (and from each other): measured on 2 busy cores, a 2-thread
# batch took 7.7 ms with GNU OpenMP's default active wait against 0.93 ms with
# passive waiting. The threading layer reads this when it starts (at the
# first parallel call), so setting it here, before then, is in time. A value
# the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# ... but a short spin first: a passive wait costs every launch a futex
# wake-up of each thread, about 15 us of a CIFAR batch's 300 us. GNU OpenMP
# spins GOMP_SPINCOUNT times (here about 20 us) before it sleeps, so batches
# requested back to back find the threads awake, while idle threads still
# give the core away almost at once. Measured: a 1-sample launch went from
# 25 us to 5 us; a 512-sample CIFAR batch from 0.37 to 0.35 ms; with two
# CPU-bound processes beside it, no worse than passive.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

import numba  # noqa: E402

#: Options of every compiled function. ``boundscheck=False`` is safe only
#: because each public wrapper proves every index in range before the call.
#: ``fastmath=False`` keeps IEEE float32 semantics: no FMA contraction, so the
#: float32 path is bit-for-bit ``float32(v) * a + b``.
JIT = {
    "nogil": True,
    "cache": True,
    "fastmath": False,
    "boundscheck": False,
    "error_model": "numpy",
}

#: Options of kernels that are parallel over the batch.
PARALLEL_JIT = dict(JIT, parallel=True)

# Threading layers that allow two Python threads to run parallel regions at
# once. Numba's own "workqueue" layer does not: it aborts the process.
_CONCURRENT_SAFE_LAYERS = ("omp", "tbb")
_launch_lock = threading.Lock()
_concurrent_safe = None  # unknown until the first parallel launch picks a layer
_parallel_used = False  # this process has started the threading layer
_forked_after_parallel = False  # ... and this is a child forked after that


def _after_fork_in_child():
    # A threading layer's pool does not survive fork(): GNU OpenMP in
    # particular hangs the child on its next parallel region. Keras'
    # use_multiprocessing=True forks workers after the parent has already
    # run batches (its output-signature probe does), so children go serial.
    global _forked_after_parallel, _launch_lock
    _launch_lock = threading.Lock()
    if _parallel_used:
        _forked_after_parallel = True


os.register_at_fork(after_in_child=_after_fork_in_child)


#: Work (bytes of output, or its equivalent: see :func:`launch`) that one
#: more thread must have before it is woken. A parallel launch wakes its
#: threads and waits for every one of them at the end, whatever its share, and
#: what that costs depends on what else the machine runs. On this project's
#: 2-core VM, CIFAR 32x32x3 pad-4 crop + flip + normalise to float32:
#:
#: * quiet, ``python -m fastseq bench`` (32 rotating batches of 512, 6.3 MB
#:   out): 2 threads made 2.74M images/s against 1.34M on one (2.04x);
#:   alternating 1 and 2 threads in one process, 2 threads took 1.09x as
#:   long at batch 32 (0.39 MB), 0.96x at 256 (3.1 MB), 0.81x at 4,096;
#: * the other core busy (as while a model trains on the CPU): each extra
#:   thread cost about 120 us a launch; 2 threads took 4.0x as long at batch
#:   32, 2.1x at 256, 1.5x at 512, 1.02x at 4,096 (50 MB).
#:
#: No fixed value serves both, and a measurement at import would measure the
#: load of that moment, not the machine. 2 MiB a thread keeps small batches
#: (the issue's 1.8-3.4x slowdowns at batch 32) on one thread on any machine
#: and gives a quiet machine its second core from about 4 MiB of output
#: (CIFAR float32 batches of 342 and up). On a small machine kept busy by
#: other work, raise it: ``FASTSEQ_WORK_PER_THREAD`` (bytes) overrides it.
WORK_PER_THREAD = int(os.environ.get("FASTSEQ_WORK_PER_THREAD", 2 << 20))
if WORK_PER_THREAD < 1:
    raise ValueError(f"FASTSEQ_WORK_PER_THREAD must be a positive number of bytes, got {WORK_PER_THREAD}.")


#: A resampling pass's work per output byte, in ``launch``'s units (bytes of a
#: copy-like pass's output): one thread made 224x224 float32 crops at 2-7 GB/s
#: against 20-26 GB/s for the fused crop-flip-normalise pass (shared 2-core
#: machine). The fixed-size and the photo-folder resamples both use it.
RESAMPLE_COST = 4


def threads_for(work, limit):
    """The thread count for a launch of ``work``: ``work // WORK_PER_THREAD``, at least 1, at most ``limit``.

    ``limit`` is the caller's Numba setting (``numba.get_num_threads()``); the
    result is never above it. The one rule for every kernel: see :func:`launch`.
    """
    return max(1, min(int(limit), int(work) // WORK_PER_THREAD))


def launch(kernel, *args, serial=None, work=None):
    """Call a kernel that runs ``parallel=True`` code, safely from any number of threads.

    Args:
        kernel: the compiled parallel kernel; called as ``kernel(*args)``.
        *args: its arguments.
        serial: its serial twin (same arguments), or None.
        work: the size of this launch's work, in bytes of output or the
            equivalent (a kernel whose cost per output byte is several
            times a copy's, such as a resample, scales its bytes by that
            factor). The launch runs on :func:`threads_for` ``(work,
            numba.get_num_threads())`` threads: from one up to the calling
            thread's Numba setting, never above it. None: all of them.

    Keras calls ``__getitem__`` from several worker threads at once. Under the
    "workqueue" layer (the one Numba falls back to when neither TBB nor
    OpenMP is installed) two concurrent parallel launches abort the whole
    interpreter, so launches are serialised by a lock there. Each launch
    already uses every core it needs, so serialising costs little. Under "omp" and
    "tbb" the lock is dropped after the first call has revealed the layer.
    The lock is taken with the GIL held but the kernel runs with it released
    (``nogil=True``), so the training thread keeps running meanwhile.

    In a process forked after this one had started parallel work, the
    ``serial`` twin runs instead (one process is one worker there anyway).
    The thread count is set for the calling thread only (Numba's setting is
    per thread) and restored after the call, so pixels never depend on it:
    kernels split work into blocks whose results do not depend on who runs them.
    """
    global _parallel_used
    if _forked_after_parallel and serial is not None:
        return serial(*args)
    _parallel_used = True
    if work is not None:
        limit = numba.get_num_threads()
        threads = threads_for(work, limit)
        if threads < limit:
            numba.set_num_threads(threads)
            try:
                return _launch(kernel, args)
            finally:
                numba.set_num_threads(limit)
    return _launch(kernel, args)


_pool = (None, None)  # (pid, executor): a forked child makes its own


def _executor():
    global _pool
    pid, executor = _pool
    if pid != os.getpid():
        executor = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="fastseq")
        _pool = (os.getpid(), executor)
    return executor


def run_split(kernel, n, threads, *args):
    """``kernel(start, stop, *args)`` over ``range(n)`` in ``threads`` contiguous chunks, the caller running the first.

    For the serial, GIL-releasing (``nogil``) chunk loops of the augmentation
    pass and the color wrapper: Python threads instead of a parallel region
    compile in half the time (no parfor lowering), and are safe under any
    Numba threading layer, from any number of calling threads, and in forked
    children (the pool is made again after a fork). The chunks write disjoint
    samples, so the pixels never depend on the thread count.
    """
    if threads <= 1 or n < 2:
        kernel(0, n, *args)
        return
    threads = min(threads, n)
    bounds = [n * i // threads for i in range(threads + 1)]
    pool = _executor()
    futures = [pool.submit(kernel, bounds[i], bounds[i + 1], *args) for i in range(1, threads)]
    try:
        kernel(bounds[0], bounds[1], *args)
    finally:
        for f in futures:
            f.result()


def _launch(kernel, args):
    global _concurrent_safe
    if _concurrent_safe:
        return kernel(*args)
    with _launch_lock:
        result = kernel(*args)
        if _concurrent_safe is None:
            _concurrent_safe = threading_layer() in _CONCURRENT_SAFE_LAYERS
        return result


def serial_only():
    """Whether launches here run the serial twins (a process forked after this one had started parallel work)."""
    return _forked_after_parallel


def threading_layer():
    """Name of the Numba threading layer in use, or ``None`` before the first parallel call."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


#: A first call that takes longer than this announces that it is compiling.
COMPILE_NOTICE_SECONDS = 2.0


def _say(message):
    """``message`` on the ``fastseq`` logger at INFO where the application configured logging, else on stderr."""
    logger = logging.getLogger("fastseq")
    if logger.hasHandlers():
        logger.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def compile_notice(what):
    """Say once, on the ``fastseq`` logger, that a slow first call is compiling ``what``.

    Numba compiles a kernel variant on its first call and caches it on disk,
    which takes seconds on a small machine: without a word, a first ``fit``
    looks hung. A timer logs one line if the call is still running after
    :data:`COMPILE_NOTICE_SECONDS` (a cached variant loads in a tenth of
    that, and says nothing; a compile takes 5 s or more). Logged at INFO on ``logging.getLogger("fastseq")``
    when the application has configured logging, else written to stderr.
    """
    message = (
        f"fastseq: compiling {what} (once: cached on disk for later runs; "
        "`python -m fastseq compile` does it ahead of time)"
    )

    timer = threading.Timer(COMPILE_NOTICE_SECONDS, _say, (message,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# Kernel variants that have run in this process: their first call is over.
_warm = set()


def announced(variant, what, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; the first call for ``variant`` in this process runs under :func:`compile_notice`.

    ``variant`` is any hashable naming the compiled specialisation (a kernel
    and its output type); later calls cost one set lookup.
    """
    if variant in _warm:
        return fn(*args, **kwargs)
    with compile_notice(what):
        result = fn(*args, **kwargs)
    _warm.add(variant)
    return result


def mark_warm(variant):
    """Record that ``variant`` was compiled on purpose (``python -m fastseq compile``): no notice for it."""
    _warm.add(variant)


# ---- tiered start: compile in another process (or a thread), serve the first batches from NumPy ----

#: ``FASTSEQ_BACKGROUND_COMPILE=0`` turns the tiered start off: a sequence's
#: first batch then waits for its kernel to compile, as ``fastseq.kernels``'
#: functions always do.
BACKGROUND_COMPILE = os.environ.get("FASTSEQ_BACKGROUND_COMPILE", "1").strip().lower() not in ("0", "false", "no", "off")

#: Where a tiered start compiles: ``"process"`` (the default), a separate
#: process that fills Numba's on-disk cache while this one serves from NumPy
#: and then loads the result; or ``"thread"``, a thread of this process (the
#: only way where a process cannot be started). ``FASTSEQ_COMPILE_IN`` sets
#: it. Measured on the README quickstart as a script from an empty cache
#: (``python -m fastseq.bench.first_run``, 2 shared cores): with the thread, Numba's
#: typing and lowering held the training process's GIL (first ``fit``
#: 3.9-9.1 s) and the script waited 33-38 s at exit for the compile (48-53 s
#: in all); with the process, first ``fit`` 1.1-2.6 s, 12-16 s in all
#: (docs/guides/compile-time.md).
COMPILE_IN = os.environ.get("FASTSEQ_COMPILE_IN", "process").strip().lower()
if COMPILE_IN not in ("process", "thread"):
    raise ValueError(f'FASTSEQ_COMPILE_IN must be "process" or "thread", got {COMPILE_IN!r}.')

#: How often, at most, a batch asks whether a compile process has finished (seconds): one ``waitpid``.
POLL_SECONDS = 0.5

#: The compile process first runs at Linux's ``SCHED_IDLE`` policy: it gets a core only when the training
#: process's threads leave one free, so on 2 cores the first ``fit`` of the README quickstart from an empty
#: cache took 1.54-1.57 s against 1.79-2.06 s at normal priority, its second ``fit`` (the compile still running)
#: 0.38-0.44 s against 0.71-0.73 s (warm cache: 0.22-0.30 s), the whole script 14.3-15.6 s against 16.3-18.5 s
#: (3 pairs, alternating; tf.data's script 10.4-15.4 s). Where training keeps every core busy, an idle compile
#: would wait for ever, and the NumPy tier serve meanwhile: a compile process still running after this many
#: seconds is stopped and started again at normal priority (a killed compile leaves no cache entry).
#: ``FASTSEQ_COMPILE_IDLE_SECONDS`` sets it; 0: never idle.
IDLE_SECONDS = float(os.environ.get("FASTSEQ_COMPILE_IDLE_SECONDS", "90"))


class BackgroundCompile:
    """One compiled kernel signature, being compiled (or loaded from the cache) in a thread of its own.

    ``FASTSEQ_COMPILE_IN=thread``, and what :class:`ProcessCompile` falls back on.

    Numba's typing and lowering hold the GIL, but LLVM, most of a kernel's
    compile time, runs without it: the thread overlaps the user's model
    building and first training steps, while :mod:`fastseq.kernels.quick`
    serves the batches asked for meanwhile. The thread is not a daemon: a
    process that ends before the compile is done waits for it (a daemon
    thread would be stopped inside LLVM at exit), and the next process
    loads the result from the on-disk cache.

    ``ready()`` is true once the kernel can be called with these types
    without compiling; after a failed compile too (the error then surfaces
    from the next call, which compiles in the foreground and raises).
    """

    def __init__(self, kernel, types, what):
        self.kernel, self.types, self.what = kernel, types, what
        self.seconds = None
        self.error = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fastseq compile: {what}")

    def start(self):
        self._thread.start()
        return self

    def ready(self):
        return self._done.is_set()

    def wait(self, timeout=None):
        """Block until the compile is over; True if it is."""
        return self._done.wait(timeout)

    def _run(self):
        t0 = time.perf_counter()
        timer = threading.Timer(COMPILE_NOTICE_SECONDS, _say, (
            f"fastseq: compiling {self.what} in the background (once: cached on disk for later runs; "
            "`python -m fastseq compile` does it ahead of time); the batches asked for meanwhile come "
            "from NumPy, with the same pixels",))
        timer.daemon = True
        timer.start()
        try:
            self.kernel.compile(self.types)
        except BaseException as exc:  # noqa: BLE001 - reported by the foreground call that compiles again
            self.error = exc
        finally:
            timer.cancel()
            self.seconds = time.perf_counter() - t0
            self._done.set()
            if self.seconds >= COMPILE_NOTICE_SECONDS:
                _say(f"fastseq: compiled {self.what} in {self.seconds:.1f} s")


def load_cached(kernel, types):
    """Give ``kernel`` its compiled ``types`` from Numba's on-disk cache; True if it has them now. Never compiles.

    Numba's ``compile`` loads from the cache when it can and compiles
    otherwise; a compile in the training process is what the compile
    process is there to avoid. So the cache is asked first (its index,
    then the entry's data), and only a hit goes on to ``compile``, which
    then loads it again, as a hit, and installs it as Numba does.
    """
    if types in kernel.overloads:
        return True
    cache = getattr(kernel, "_cache", None)
    if cache is None or not hasattr(cache, "load_overload"):
        return False
    from numba.core.compiler_lock import global_compiler_lock

    try:
        with global_compiler_lock:
            hit = cache.load_overload(types, kernel.targetctx) is not None
    except Exception:  # noqa: BLE001 - an unreadable entry is a miss: the caller compiles
        return False
    if hit:
        kernel.compile(types)
    return types in kernel.overloads


def _variant_files(kernel, types):
    """``(lock, log)`` paths of the compile of ``kernel`` for ``types``, in Numba's cache folder; None without one.

    One name per kernel and signature, the same in every process that
    uses the same cache, so that they compile it once between them.
    """
    import hashlib

    fn = getattr(kernel, "py_func", None)
    try:
        folder = kernel.stats.cache_path
    except AttributeError:
        return None
    if fn is None or not folder or fn.__module__ in (None, "__main__"):
        return None
    digest = hashlib.sha1(f"{fn.__module__}:{fn.__qualname__}:{types}".encode()).hexdigest()[:16]
    base = os.path.join(folder, f"fastseq-compile-{fn.__qualname__}-{digest}")
    return base + ".lock", base + ".log"


def _spawn(kernel, types, idle=False):
    """Start ``python -m fastseq.kernels._compile_child`` for ``kernel`` and ``types``; its ``Popen``, or None.

    ``idle``: the child runs at ``SCHED_IDLE`` (where Linux has it).

    None where that cannot work here: no ``fcntl`` (the lock), no cache
    folder, a kernel the child cannot import, no interpreter to start. The
    child is detached (a session of its own, no terminal, output to the
    variant's log), so it outlives a script that ends first and the
    script does not wait for it; the next process loads what it wrote.
    """
    import base64
    import json
    import pickle
    import subprocess

    try:
        import fcntl  # noqa: F401 - the child locks with it
    except ImportError:
        return None
    files = _variant_files(kernel, types)
    if files is None or not sys.executable:
        return None
    lock, log = files
    fn = kernel.py_func
    top = sys.modules.get(fn.__module__.split(".")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(getattr(top, "__file__", None) or ".")))
    spec = {"module": fn.__module__, "qualname": fn.__qualname__, "lock": lock, "idle": bool(idle),
            "types": base64.b64encode(pickle.dumps(types)).decode("ascii")}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "fastseq.kernels._compile_child", json.dumps(spec)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True,
                                close_fds=True)


class ProcessCompile:
    """One compiled kernel signature, compiled by a separate process into Numba's on-disk cache, then loaded here.

    The same interface as :class:`BackgroundCompile`. A short thread first
    loads the kernel from the cache if it is there (a later run: no process
    at all); else it starts ``python -m fastseq.kernels._compile_child``,
    which takes the variant's lock in the cache folder (so that processes
    asking at once compile it once: the others wait on the lock, then load),
    compiles and exits. Numba's typing and lowering then hold that
    process's GIL, not the training process's. :meth:`ready` looks at the
    child at most every :data:`POLL_SECONDS` (one ``waitpid``); once it has
    exited, a thread loads the cached kernel (a tenth of a second) and the
    batches switch to it. Where the child cannot start or fails, that thread
    compiles here instead, as :class:`BackgroundCompile` does.

    ``source`` says where the kernel came from once ready: ``"cache"``,
    ``"process"`` or ``"thread"`` (compiled here).
    """

    def __init__(self, kernel, types, what):
        self.kernel, self.types, self.what = kernel, types, what
        self.seconds = None
        self.error = None
        self.source = None
        self.process = None
        self._done = threading.Event()
        self._next_poll = 0.0
        self._poll_lock = threading.Lock()
        self._collecting = False
        self._t0 = None
        self._timer = None
        #: the compile process runs at idle priority (until :data:`IDLE_SECONDS` have passed)
        self.idle = False
        self.restarted = False

    def start(self):
        self._t0 = time.perf_counter()
        threading.Thread(target=self._begin, name=f"fastseq compile: {self.what}").start()
        return self

    def ready(self):
        return self._done.is_set() or self._check(force=False)

    def wait(self, timeout=None):
        """Block until the kernel is loaded (or compiled here); True if it is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            self._check(force=True)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self._done.wait(0.05 if left is None else min(0.05, left))
        return self._done.is_set()

    def _begin(self):
        try:
            if load_cached(self.kernel, self.types):
                self.source = "cache"
                return self._finish()
            self.idle = IDLE_SECONDS > 0
            process = _spawn(self.kernel, self.types, idle=self.idle)
        except Exception:  # noqa: BLE001 - no process: compile in this thread, as the thread mode does
            process = None
        if process is None:
            return self._compile_here()
        self._timer = threading.Timer(COMPILE_NOTICE_SECONDS, _say, (
            f"fastseq: compiling {self.what} in a separate process (once: cached on disk for later runs; "
            "`python -m fastseq compile` does it ahead of time); the batches asked for meanwhile come "
            "from NumPy, with the same pixels",))
        self._timer.daemon = True
        self._timer.start()
        self._reap(process)
        self.process = process

    def _reap(self, process):
        # Reaps the child when it exits, so that no zombie is left where nothing asks again (a discarded
        # sequence); a daemon blocked in waitpid does not hold up the exit. ``poll()`` then reads its returncode.
        threading.Thread(target=process.wait, name=f"fastseq reap: {self.what}", daemon=True).start()

    def _restart_at_normal_priority(self, process):
        """The idle compile ran past :data:`IDLE_SECONDS`: stop it and start one at normal priority."""
        self.idle = False
        self.restarted = True
        try:
            process.kill()  # what it wrote loads or is absent: Numba renames whole files into place
            process.wait(10)
            again = _spawn(self.kernel, self.types, idle=False)
        except Exception:  # noqa: BLE001 - no process: this thread compiles, as where none could start
            again = None
        if again is None:
            self.process = None  # no process to look at: ready() reads the event this thread sets
            threading.Thread(target=self._compile_here, name=f"fastseq compile: {self.what}").start()
            return
        self._reap(again)
        self.process = again

    def _check(self, force):
        """Whether the kernel is here; looks at the compile process (rate-limited unless ``force``)."""
        process = self.process
        if process is None or self._collecting:
            return self._done.is_set()
        now = time.monotonic()
        if not force and now < self._next_poll:
            return False
        if not self._poll_lock.acquire(blocking=False):
            return False
        try:
            if self._collecting:
                return self._done.is_set()
            self._next_poll = now + POLL_SECONDS
            if process.poll() is None:
                if self.idle and time.perf_counter() - self._t0 > IDLE_SECONDS:
                    self._collecting = True  # nobody looks at the old process while it is replaced
                    try:
                        self._restart_at_normal_priority(process)
                    finally:
                        self._collecting = False
                return False
            self._collecting = True
        finally:
            self._poll_lock.release()
        # The batch that noticed goes on with NumPy; a thread loads the kernel (or, if the child failed, compiles it).
        threading.Thread(target=self._collect, args=(process.returncode,), name=f"fastseq load: {self.what}").start()
        return False

    def _collect(self, returncode):
        if self._timer is not None:
            self._timer.cancel()
        try:
            if returncode == 0 and load_cached(self.kernel, self.types):
                self.source = "process"
                seconds = time.perf_counter() - self._t0
                if seconds >= COMPILE_NOTICE_SECONDS:
                    _say(f"fastseq: compiled {self.what} in {seconds:.1f} s (in a separate process)")
                return self._finish()
        except Exception:  # noqa: BLE001 - compiled here below, which reports its own error
            pass
        self._compile_here()

    def _compile_here(self):
        job = BackgroundCompile(self.kernel, self.types, self.what)
        job._run()
        self.error = job.error
        self.source = "thread"
        self._finish()

    def _finish(self):
        self.seconds = time.perf_counter() - self._t0
        self._done.set()


_compiles = {}  # (kernel, types) -> BackgroundCompile or ProcessCompile, one per process
_compiles_lock = threading.Lock()


def background_compile(kernel, args, what):
    """Start compiling ``kernel`` for the types of ``args`` (once per process): in a process or a thread; its handle.

    Args:
        kernel: a Numba dispatcher.
        args: arguments of the exact types the later calls will pass (the
            same arrays' kinds: dtype, dimensions, layout, read-only or not).
        what: what is compiled, for the notice.

    Returns:
        A :class:`ProcessCompile` (``FASTSEQ_COMPILE_IN=process``, the
        default) or a :class:`BackgroundCompile` (``thread``), already ready
        when the kernel has these types compiled in this process.
    """
    global _parallel_used
    types = tuple(numba.typeof(a) for a in args)
    key = (kernel, types)
    # Compiling a kernel that calls parallel code starts Numba's threading layer (lowering reads its thread
    # count), as a launch does: a child forked after this must run the serial twins. GNU OpenMP terminates a
    # forked child that starts a parallel region ("fork() called from a process already using GNU OpenMP"),
    # which is what torch's DataLoader workers met when every batch of the parent had come from NumPy.
    _parallel_used = True
    with _compiles_lock:
        job = _compiles.get(key)
        if job is None:
            job = (ProcessCompile if COMPILE_IN == "process" else BackgroundCompile)(kernel, types, what)
            _compiles[key] = job
            if types in kernel.overloads:
                job._done.set()
            else:
                job.start()
    return job


def _hold_compiles_for_fork():
    # A fork while a background compile holds Numba's compiler lock would
    # leave the child a lock that no thread of it can release: its first
    # compile would hang. So a fork waits for the compile in progress.
    from numba.core.compiler_lock import global_compiler_lock

    global_compiler_lock.acquire()


def _release_compiles_after_fork():
    from numba.core.compiler_lock import global_compiler_lock

    global_compiler_lock.release()


def _release_compiles_in_child():
    global _compiles_lock
    _release_compiles_after_fork()
    _compiles_lock = threading.Lock()
    # The child has none of the parent's threads: a compile that had not
    # finished there never will here. Its kernel is then compiled by the
    # first call that needs it, in the foreground.
    for job in _compiles.values():
        job._done.set()


os.register_at_fork(before=_hold_compiles_for_fork, after_in_parent=_release_compiles_after_fork,
                    after_in_child=_release_compiles_in_child)


class Tiered:
    """A plan whose first batches can come from NumPy while its kernel compiles (mixed into the plans).

    A plan sets ``_tier_kernels = (parallel kernel, serial twin)``,
    ``_tier_what`` (for the notice) and defines ``_tier_example()``:
    arguments of the kernels of exactly the types its batches pass. Its
    launch then asks :meth:`_numpy_tier` whether to take the NumPy path.
    """

    _tiered = False
    _tier_jobs = {}  # kernel -> BackgroundCompile; replaced whole, never mutated (safe for concurrent readers)

    def prepare(self):
        """Start compiling (or loading from the cache) this plan's kernel in the background; returns ``self``.

        Until it is ready, batches are made by the plan's NumPy tier
        (:mod:`fastseq.kernels.quick`): the same pixels, with nothing to
        compile. A sequence calls this when it is built, so its first batch
        does not wait for the compiler. Without it (or with
        ``FASTSEQ_BACKGROUND_COMPILE=0``) the first call compiles in the
        foreground.
        """
        if BACKGROUND_COMPILE:
            self._tiered = True
            self._tier_job()
        return self

    def _tier_job(self):
        kernel = self._tier_kernels[1] if serial_only() else self._tier_kernels[0]
        job = self._tier_jobs.get(kernel)
        if job is None:
            job = background_compile(kernel, self._tier_example(), self._tier_what)
            self._tier_jobs = {**self._tier_jobs, kernel: job}
        return job

    def _numpy_tier(self):
        """Whether this batch comes from NumPy: prepared, and the kernel it would launch not compiled yet."""
        return self._tiered and not self._tier_job().ready()
