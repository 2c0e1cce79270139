"""Results the benchmark tests leave for the end-of-run ratio table.

Each benchmark calls :func:`record`, which fills ``benchmark.extra_info``
(images/s, GB/s, shape, dtype, threads, notes) and keeps a copy here;
``benchmarks/conftest.py`` prints :func:`lines` when the session ends.
"""

import os

from fastseq.bench import first_run as bench_first_run
from fastseq.bench import verdicts
from fastseq.bench.verdicts import Timing

#: ``{group: {row name: extra_info}}`` for this run, in the order recorded.
RESULTS = {}
#: ``{"import_s": ..., "first_call_s": ...}`` from the first-call benchmark.
FIRST_CALL = {}
FIRST_CALL_TARGET_S = 1.0
#: ``test_cold_first_batch``'s figures: an empty Numba cache, then the cache it left.
COLD = {}
COLD_TARGET_S = 5.0  # issue 26: construction to the first batch from an empty cache
#: ``benchmarks/test_first_run.py``'s rows: ``{row: the script's figures}`` (first and second fit, whole script).
FIRST_RUN = {}
#: ``benchmarks/test_memmap.py``'s rows: ``{row: images/s}`` (median round).
MEMMAP = {}
#: issue 34, item 4: memory-mapped data outside RAM, read ahead, against the same batches from RAM.
MEMMAP_TARGET = 0.9
#: ``{"start": the 1-minute load average when the session started}`` (``benchmarks/conftest.py``).
LOAD = {}
HEADLINE = "cifar-b512-f32"
#: The kernel groups judged against their shape's targets (``fastseq.bench.verdicts.TARGETS``); the other
#: groups (other dtypes and layouts) are shown without verdicts.
JUDGED = {HEADLINE: "cifar", "mnist-b512-f32": "mnist"}
FEED, PHOTO_FIRST, PHOTO_SECOND = "feed-cifar-b512", "folders-first-epoch-224", "folders-second-size"
#: ``{group: [verdicts.RowRatio, ...]}``: the targets between rows of the augmentation groups
#: (``benchmarks/test_augment.py`` adds one pair per color op).
RATIOS = {group: list(ratios) for group, ratios in verdicts.AUGMENT_RATIOS.items()}


def timed(benchmark):
    """Whether this benchmark was timed (``--benchmark-only``/``--benchmark-enable``)."""
    return not benchmark.disabled and benchmark.stats is not None


def record(benchmark, row, group):
    """Put ``row``'s facts, and rates from the minimum round time when timed, in ``extra_info``."""
    seconds = benchmark.stats.stats.min if timed(benchmark) else None
    info = row.info(seconds)
    if seconds:
        info["spread"] = round(benchmark.stats.stats.median / seconds, 3)  # median/min: a busy machine shows here
    benchmark.extra_info.update(info)
    RESULTS.setdefault(group, {})[row.name] = info
    return info


def _kernel_timings(rows):
    return {name: Timing(r["images_per_sec"], r.get("spread", 1.0), r["threads"] if isinstance(r.get("threads"), int)
                         else 1)
            for name, r in rows.items() if "images_per_sec" in r}


def _fit_timings(rows):
    return {name: Timing(r["images_per_sec"], verdicts.spread([1 / w for w in r.get("windows_images_per_sec", ())]))
            for name, r in rows.items() if "images_per_sec" in r}


def _photo_timings():
    """The photo-folder rows of this run as ``verdicts.photo_verdicts`` reads them, and the folder's file count."""
    first, second = RESULTS.get(PHOTO_FIRST, {}), RESULTS.get(PHOTO_SECOND, {})
    rows, files = {}, 0
    for name, r in (("keras epoch", first.get("keras")), ("fastseq first call", first.get("fastseq"))):
        if r and r.get("seconds"):
            rows[name] = Timing(r["images"] / r["seconds"])
            files = r["images"]
    r = second.get("fastseq")
    if r and r.get("seconds"):
        rows["fastseq second size"] = Timing(1 / r["seconds"])
        files = files or r["images"]
    return rows, files


def _kernel_verdicts(group, shape):
    """The group's kernel verdicts; the headline's ceiling ratio from the two rows called alternately when timed so."""
    rows = RESULTS[group]
    timings = _kernel_timings(rows)
    found = verdicts.kernel_verdicts(shape, timings)
    paired = rows.get("fastseq", {})
    if "paired_min_ratio" not in paired:
        return found
    out = []
    for v in found:
        if v.key == "fused/ceiling":
            # The rows' minima from the same stretch of time decide; the one-after-the-other ratio is shown beside.
            label = f"fused / ceiling, alternating (median {paired['paired_median_ratio']:.2f}x)"
            # Noisy if the pairs spread, or if either row's own rounds did.
            spreads = [paired["paired_median_ratio"] / paired["paired_min_ratio"]]
            spreads += [rows[n].get("spread", 1.0) for n in ("fastseq", "ceiling") if n in rows]
            out.append(verdicts.judge(v.key, label, paired["paired_min_ratio"], v.target, spreads=spreads))
            out.append(verdicts.Verdict(v.key, "fused / ceiling, rows one after other", v.value, None, ""))
        else:
            out.append(v)
    return out


def lines():
    """The end-of-run table: rows per group, the verdicts of each shape's targets, the tally and the summary.

    ``time/ceiling`` is against the ``ceiling`` row, whose source comes from
    memory; the ``ceiling-cache`` row is shown beside it for comparison.
    The verdicts follow ``fastseq.bench.verdicts`` (the rules of ``python -m
    fastseq bench``): thread targets only where the work rule ran the launch
    on more than one thread, fit ratios only where the loader bounds the fit,
    "noisy: rerun" where the rows' median/min shows a busy machine.
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
            spread = f"  median/min {r['spread']:.2f}x" if "spread" in r else ""
            note = f"  ({r['note']})" if r.get("note") else ""
            out.append(f"  {name:<13} {ips:>12,.0f} images/s {r.get('GB_per_sec', 0.0):7.2f} GB/s  threads "
                       f"{r.get('threads', '-')}{vs}{spread}{note}")
    found, sections = [], []
    for group, shape in JUDGED.items():
        if "fastseq" in RESULTS.get(group, {}) and "images_per_sec" in RESULTS[group]["fastseq"]:
            got = _kernel_verdicts(group, shape)
            found += got
            sections.append((f"{group} ({verdicts.SHAPES[shape]})", got))
    fit = _fit_timings(RESULTS.get(FEED, {}))
    if fit:
        got = verdicts.fit_verdicts("cifar", fit)
        bound = verdicts.step_bound(fit)
        if "noop" in fit and "fastseq" in fit:
            got.append(verdicts.Verdict("fit fastseq/noop", "fastseq / noop (not a target)",
                                        fit["fastseq"].ips / fit["noop"].ips, None, ""))
        found += got
        sections.append((f"{FEED}, median windows" + (f"; step-bound: {bound}" if bound else ""), got))
    photos, files = _photo_timings()
    if photos:
        got = verdicts.photo_verdicts(photos, files)
        found += got
        sections.append((f"photo folders ({files} files, {verdicts.SHAPES['photos-224']})", got))
    for group, ratios in RATIOS.items():
        got = verdicts.row_ratio_verdicts(ratios, _kernel_timings(RESULTS.get(group, {})))
        if got:
            found += got
            sections.append((group, got))
    other = []
    if "first_call_s" in FIRST_CALL:
        s = FIRST_CALL["first_call_s"]
        other.append(verdicts.judge("first call", f"first call (import {FIRST_CALL['import_s']:.2f} s)", s,
                                    verdicts.Target("first call", "max", FIRST_CALL_TARGET_S,
                                                    "import + loading the kernels", unit=" s")))
    if "cold_first_batch_s" in COLD:
        s = COLD["cold_first_batch_s"]
        other.append(verdicts.judge(
            "cold", f"cold first batch, empty cache ({COLD['cold_first_batch_cpu_s']:.1f} s CPU; warm "
            f"{COLD['warm_first_batch_s']:.2f} s)", s,
            verdicts.Target("cold", "max", COLD_TARGET_S, "compiling every kernel variant", unit=" s")))
    getitem = RESULTS.get("getitem-cifar-b512", {})
    if "ceiling" in getitem and "seq[i]" in getitem:
        info = getitem["seq[i]"]
        target = verdicts.Target("seq[i]", "max", 1.6, "the sequence's per-batch cost")
        if "paired_min_ratio" in info:
            other.append(verdicts.judge("seq[i]", f"seq[i] / ceiling, alternating (median "
                                        f"{info['paired_median_ratio']:.2f}x)", info["paired_min_ratio"], target,
                                        spreads=[info["paired_median_ratio"] / info["paired_min_ratio"]]))
        else:
            other.append(verdicts.judge("seq[i]", "seq[i] / ceiling time", getitem["ceiling"]["images_per_sec"]
                                        / info["images_per_sec"], target))
    if other:
        found += other
        sections.append(("first call and seq[i]", other))
    if "ram" in MEMMAP and "memmap-cold-readahead" in MEMMAP:
        got = [verdicts.judge("memmap cold", "memmap outside RAM, read ahead / in RAM (median rounds)",
                              MEMMAP["memmap-cold-readahead"] / MEMMAP["ram"],
                              verdicts.Target("memmap cold", "min", MEMMAP_TARGET,
                                              "one madvise per row (about 15 us of CPU each here) and the faults "
                                              "that map the read pages"))]
        if "memmap-cold-faults" in MEMMAP:
            got.append(verdicts.judge("memmap faults", "memmap outside RAM, page faults only / in RAM",
                                      MEMMAP["memmap-cold-faults"] / MEMMAP["ram"], None))
        found += got
        sections.append(("memmap-cold (page cache emptied before every batch)", got))
    first_run = bench_first_run.verdicts(FIRST_RUN)
    if first_run:
        found += first_run
        sections.append(("first-run (the README quickstart as a script, fresh process)", first_run))
    if found:
        out.append("targets (minimum round times; reported, not asserted):")
        for title, got in sections:
            out.append(f"  {title}:")
            out += verdicts.verdict_lines(got, indent="    ")
        out.append(f"verdicts: {verdicts.tally(found)}")
        busy = verdicts.busy_note(LOAD.get("start"), os.cpu_count())
        if busy:
            out.append(busy)
    head = _kernel_timings(RESULTS.get(HEADLINE, {}))
    if head or fit or photos:
        out.append("summary:")
        out += [f"  {line}" for line in verdicts.summary_lines(
            kernel=head, fit=fit, photos=photos, what="CIFAR-shaped arrays 32x32x3, batch 512")]
    return out
