"""Timing on a shared, drifting machine: rows called alternately, and repeated calls with a time budget."""

from __future__ import annotations

import time

import numpy as np


def interleaved(fns, *, rounds, warmup=2, settle=1):
    """Time several functions called alternately: ``{name: [seconds of each timed call]}``.

    Each round gives every function, in turn, ``settle`` untimed calls and
    then one timed call, so all of them are timed over the same stretch of
    time, and each timed call finds the caches as its own previous call left
    them (as when it runs alone), not as the other function did: a 6 MB
    write by one row slowed the next call of the ceiling by up to 1.8x.
    Use it for a ratio between rows on a machine whose speed drifts: timed
    one after the other, each row would also measure its own moment.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(settle):
                fn()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def alternating_ratio(fn, ceiling, *, rounds=200):
    """``fn``'s time over ``ceiling``'s, the two called alternately (:func:`interleaved`).

    Returns ``{"paired_min_ratio": min / min, "paired_median_ratio": median of
    the per-round ratios}``.
    """
    times = interleaved({"ceiling": ceiling, "fn": fn}, rounds=rounds)
    per_round = np.array(times["fn"]) / np.array(times["ceiling"])
    return {
        "paired_min_ratio": min(times["fn"]) / min(times["ceiling"]),
        "paired_median_ratio": float(np.median(per_round)),
    }


def measure(fn, *, repeat=20, warmup=2, min_seconds=1.0, max_seconds=3.0, min_repeat=3):
    """Time ``fn()``: ``warmup`` untimed calls, then timed calls.

    Keeps calling until both ``repeat`` calls and ``min_seconds`` of timing
    are done (so a fast row gets many samples and one busy moment on a
    shared machine cannot spoil them all), but stops once ``max_seconds``
    have passed after at least ``min_repeat`` calls. Returns the per-call
    seconds; report their minimum (least disturbed by other work) or median.
    """
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        elapsed = t1 - start
        if len(times) >= min_repeat and elapsed > max_seconds:
            break
        if len(times) >= repeat and elapsed >= min_seconds:
            break
    return times
