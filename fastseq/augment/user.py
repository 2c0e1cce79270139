"""Your own op of ``augment=[...]``: a Numba-compiled function run per sample inside the pass (NumPy only).

The pass is split at each ``Lambda`` (``fastseq.kernels.augment_pass``):
the ops before it write each sample's float32 values (pixel units 0..255,
unrounded) into a batch buffer, a compiled loop specialised on your
function calls it once per sample on Python threads with the GIL released,
and the ops after it continue from the buffer. Numba compiles that loop
once per function and process (a function-typed argument is not cached on
disk); the pass itself (the ``extended`` variant) is cached as usual.
"""

from __future__ import annotations

import numbers

from fastseq.augment._op import AugmentOp


def _is_numba_function(fn):
    """A ``numba.njit`` dispatcher (checked by duck type: this package imports no Numba)."""
    return type(fn).__module__.startswith("numba.") and hasattr(fn, "py_func") and hasattr(fn, "compile")


class Lambda(AugmentOp):
    """Your own augmentation: ``fn(values, draws)`` on each sample, inside the compiled pass.

    ``values`` is the sample's float32 ``(h, w, C)`` array in pixel units
    (0..255, not yet rounded or clipped), changed in place; it is a view of
    that sample only. ``draws`` is a float64 array of ``draws`` uniforms in
    [0, 1), a pure function of ``(seed, epoch, sample)`` and the op's place
    in the list (like every op's). ``fn`` must be compiled with
    ``numba.njit`` (it runs without the GIL; ``nogil=True`` is not needed,
    ``cache=True`` saves its own compile). It runs in the order listed,
    after the ops before it and before the ones after it, on arrays and
    photo folders alike. An exception it raises surfaces as a
    ``RuntimeError`` naming the op. Compile ``fn`` with
    ``boundscheck=True`` while you write it: without it, an index outside
    ``values`` reads or writes memory that is not the sample's.

    ``for_evaluation`` drops a ``Lambda`` (like every random op) unless
    ``random=False``.

    Args:
        fn (numba.core.registry.CPUDispatcher): a ``numba.njit`` function of ``(values, draws)``, returning nothing.
        draws (int): how many uniforms each call gets, an integer >= 0.
        random (bool): False if ``fn`` is the same every epoch (then ``for_evaluation`` keeps it).

    Raises:
        TypeError: ``fn`` is not a ``numba.njit`` function (the message says how to compile it).
    """

    family = "lambda"

    def __init__(self, fn, draws=0, random=True):
        if not _is_numba_function(fn):
            name = getattr(fn, "__name__", type(fn).__name__)
            raise TypeError(
                f"Lambda: fn must be a Numba-compiled function, got {fn!r}: it runs inside the compiled, GIL-free "
                f"pass. Compile it with numba: `{name} = numba.njit({name})` (or decorate it with @numba.njit); "
                "it is called as fn(values, draws) with the sample's float32 (h, w, C) values and a float64 "
                "array of draws."
            )
        if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 0:
            raise ValueError(f"Lambda: draws must be an integer >= 0, got {draws!r}.")
        if not isinstance(random, bool):
            raise ValueError(f"Lambda: random must be True or False, got {random!r}.")
        self.fn, self.n_draws, self.random = fn, int(draws), random

    @property
    def draws(self):
        return self.n_draws

    def __repr__(self):
        return f"Lambda({getattr(self.fn, '__name__', self.fn)!r}, draws={self.n_draws})"


__all__ = ["Lambda"]
