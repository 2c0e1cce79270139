"""Results the benchmark tests leave for the end-of-run ratio table.

Each benchmark calls :func:`record`, which fills ``benchmark.extra_info``
(images/s, GB/s, shape, dtype, threads, notes) and keeps a copy here;
``benchmarks/conftest.py`` prints :func:`lines` when the session ends.
"""

from fastseq.bench import kernel_rows

#: ``{group: {row name: extra_info}}`` for this run, in the order recorded.
RESULTS = {}
#: ``{"import_s": ..., "first_call_s": ...}`` from the first-call benchmark.
FIRST_CALL = {}
FIRST_CALL_TARGET_S = 1.0
#: ``test_cold_first_batch``'s figures: an empty Numba cache, then the cache it left.
COLD = {}
COLD_TARGET_S = 15.0
HEADLINE = "cifar-b512-f32"


def timed(benchmark):
    """Whether this benchmark was timed (``--benchmark-only``/``--benchmark-enable``)."""
    return not benchmark.disabled and benchmark.stats is not None


def record(benchmark, row, group):
    """Put ``row``'s facts, and rates from the minimum round time when timed, in ``extra_info``."""
    seconds = benchmark.stats.stats.min if timed(benchmark) else None
    info = row.info(seconds)
    benchmark.extra_info.update(info)
    RESULTS.setdefault(group, {})[row.name] = info
    return info


def _time_ratio_lines(row, one_after_other, info, target):
    """Target lines for ``row``'s time over the ceiling's (at most ``target``).

    With the two also timed alternately (``info`` from ``timing.alternating_ratio``)
    that ratio decides: the rows' minima from the same stretch of time; the
    one-after-the-other ratio is shown beside it.
    """
    limit = f"<= {target:g}x"
    if "paired_min_ratio" not in info:
        return [(f"{row} / ceiling time", f"{one_after_other:.2f}x", limit, one_after_other <= target)]
    paired = info["paired_min_ratio"]
    return [
        (f"{row} / ceiling, alternating (median {info['paired_median_ratio']:.2f}x)", f"{paired:.2f}x", limit,
         paired <= target),
        (f"{row} / ceiling, rows one after other", f"{one_after_other:.2f}x", "", None),
    ]


def lines():
    """The end-of-run table: rows per group, then the headline ratios against their targets.

    ``time/ceiling`` is against the ``ceiling`` row, whose source comes from
    memory; the ``ceiling-cache`` row is shown beside it for comparison.
    """
    out = []
    for group, rows in RESULTS.items():
        if not any("images_per_sec" in r for r in rows.values()):
            continue
        ceiling = rows.get("ceiling", {}).get("images_per_sec")
        out.append(f"{group}:")
        for name, r in rows.items():
            ips = r.get("images_per_sec")
            if ips is None:
                continue
            vs = f"  time/ceiling {ceiling / ips:5.2f}x" if ceiling else ""
            note = f"  ({r['note']})" if r.get("note") else ""
            out.append(f"  {name:<13} {ips:>12,.0f} images/s {r['GB_per_sec']:7.2f} GB/s  threads {r['threads']}{vs}{note}")
    head = {n: r["images_per_sec"] for n, r in RESULTS.get(HEADLINE, {}).items() if "images_per_sec" in r}
    targets = []
    for name, v, kind, t, ok in kernel_rows.ratios(head):
        if name == "fused / ceiling time":
            targets += _time_ratio_lines("fused", v, RESULTS[HEADLINE]["fastseq"], t)
        else:
            targets.append((name, f"{v:.2f}x", kernel_rows.format_target(kind, t), ok))
    if "first_call_s" in FIRST_CALL:
        s = FIRST_CALL["first_call_s"]
        targets.append(
            (f"first call (import {FIRST_CALL['import_s']:.2f} s)", f"{s:.2f} s",
             f"<= {FIRST_CALL_TARGET_S:g} s", s <= FIRST_CALL_TARGET_S)
        )
    if "cold_first_batch_s" in COLD:
        s = COLD["cold_first_batch_s"]
        targets.append(
            (f"cold first batch, empty cache ({COLD['cold_first_batch_cpu_s']:.1f} s CPU; warm "
             f"{COLD['warm_first_batch_s']:.2f} s)", f"{s:.1f} s", f"<= {COLD_TARGET_S:g} s", s <= COLD_TARGET_S)
        )
    from fastseq.bench import feed as bench_feed

    feed = {n: r["images_per_sec"] for n, r in RESULTS.get("feed-cifar-b512", {}).items()}
    for label, value, target, ok in bench_feed.ratios(feed):
        targets.append((f"feed {label} (median window)", f"{value:.2f}x", f">= {target:g}x", ok))
    for label, value in bench_feed.context_ratios(feed):
        targets.append((f"feed {label} (median window; not a target)", f"{value:.2f}x", "", None))
    getitem = RESULTS.get("getitem-cifar-b512", {})
    if "ceiling" in getitem and "seq[i]" in getitem:
        value = getitem["ceiling"]["images_per_sec"] / getitem["seq[i]"]["images_per_sec"]
        targets += _time_ratio_lines("seq[i]", value, getitem["seq[i]"], 1.6)
    if targets:
        out.append(f"targets ({HEADLINE}, minimum round times; reported, not asserted):")
        for name, v, t, ok in targets:
            verdict = "" if ok is None else f"target {t:<9} {'PASS' if ok else 'MISS'}"
            out.append(f"  {name:<44} {v:>7}  {verdict}".rstrip())
    return out
