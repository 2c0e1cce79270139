"""``python -m fastseq.kernels._compile_child SPEC``: compile one kernel signature into Numba's on-disk cache.

Started by :class:`fastseq.kernels.config.ProcessCompile` (the tiered
start) so that Numba's typing and lowering hold this process's GIL, not the
training process's. ``SPEC`` is JSON: the kernel's ``module`` and
``qualname``, its argument ``types`` (pickled Numba types, base64), the
variant's ``lock`` file and ``idle``: run at Linux's ``SCHED_IDLE`` policy,
so that the training process's threads get the cores first.

Once per variant, however many processes ask at once: each child takes an
exclusive ``fcntl.flock`` on the lock file before it compiles, so a second
one waits for the first and then finds the kernel in the cache (a load, no
compile). The kernel releases a dead owner's lock with its file
descriptor: a killed compile blocks nobody. A killed compile leaves no
entry that loads either: Numba writes each cache file under a temporary
name and renames it into place, the data before the index that names it
(``tests/test_compile_process.py`` kills one at each step to show it).

Prints one line, ``compiled`` or ``loaded``, with the seconds, on the log
its parent gave it as stdout. NumPy and Numba only.
"""

import base64
import fcntl
import importlib
import json
import os
import pickle
import sys
import time


def main(argv):
    spec = json.loads(argv[1])
    t0 = time.perf_counter()
    if spec.get("idle") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # CPU only when nothing else wants it
        except OSError:  # not allowed here: compile at the parent's priority
            pass
    kernel = getattr(importlib.import_module(spec["module"]), spec["qualname"])
    types = pickle.loads(base64.b64decode(spec["types"]))
    os.makedirs(os.path.dirname(spec["lock"]), exist_ok=True)
    with open(spec["lock"], "a+b") as lock:
        t1 = time.perf_counter()
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # another process compiling this variant: wait for it
        waited = time.perf_counter() - t1
        kernel.compile(types)  # from the cache if that process put it there
        compiled = sum(kernel.stats.cache_misses.values()) > 0
    print(f"{'compiled' if compiled else 'loaded'} {spec['module']}:{spec['qualname']} pid {os.getpid()} "
          f"in {time.perf_counter() - t0:.1f} s (waited {waited:.1f} s for the lock)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
