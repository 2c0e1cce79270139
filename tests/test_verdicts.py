"""The bench's verdict rules on made-up timings (``fastseq.bench.verdicts``: pure, no Keras)."""

import subprocess
import sys

import pytest

from fastseq.bench import verdicts
from fastseq.bench.verdicts import Timing


def by_key(found):
    return {v.key: v for v in found}


def kernel(fastseq=2e6, threads=2, spread=1.05, **others):
    rows = {"fastseq": Timing(fastseq, spread, threads)}
    rows.update({name: Timing(ips, 1.05) for name, ips in others.items()})
    return rows


# -- shapes and targets -------------------------------------------------------------


def test_shape_keys():
    assert verdicts.shape_key((32, 32, 3)) == "cifar"
    assert verdicts.shape_key((28, 28)) == verdicts.shape_key((28, 28, 1)) == "mnist"
    assert verdicts.shape_key((224, 224, 3)) == "photos-224"
    assert verdicts.shape_key((64, 64, 3)) is None


def test_every_target_is_well_formed_and_named_once_per_shape():
    labels = {**verdicts.KERNEL_LABELS, **verdicts.FIT_LABELS, **verdicts.PHOTO_LABELS}
    for shape, targets in verdicts.TARGETS.items():
        assert shape in verdicts.SHAPES
        keys = [t.key for t in targets]
        assert len(keys) == len(set(keys)), shape
        for t in targets:
            assert t.key in labels and t.kind in ("min", "max") and t.value > 0 and t.bound


def test_a_shape_without_targets_shows_its_ratios_without_verdicts():
    found = by_key(verdicts.kernel_verdicts(None, kernel(ceiling=3e6, **{"tf.data": 2e4})))
    assert found["fused/tf.data"].status == "" and found["fused/tf.data"].value == pytest.approx(100)
    assert "target" not in found["fused/tf.data"].line()


# -- threads ------------------------------------------------------------------------


def test_a_launch_on_one_thread_gets_no_thread_verdict():
    rows = kernel(fastseq=4e6, threads=1, **{"fastseq-1t": 4e6})
    v = by_key(verdicts.kernel_verdicts("cifar", rows, batch_mb=1.6))["threads"]
    assert v.status == "not judged" and not v.judged
    assert "1.6 MB batch on 1 thread" in v.note
    assert "PASS" not in v.line() and "MISS" not in v.line()


def test_a_launch_on_two_threads_is_judged_and_labelled_with_its_threads():
    passed = by_key(verdicts.kernel_verdicts("cifar", kernel(fastseq=2e6, threads=2, **{"fastseq-1t": 1e6})))
    assert passed["threads"].status == "PASS" and passed["threads"].label == "2 threads vs 1 thread"
    missed = by_key(verdicts.kernel_verdicts("cifar", kernel(fastseq=1.5e6, threads=2, **{"fastseq-1t": 1e6})))
    assert missed["threads"].status == "MISS"
    assert missed["threads"].note == "bound: the second core: busy, or memory-bound"


def test_mnist_commits_to_no_thread_gain():
    v = by_key(verdicts.kernel_verdicts("mnist", kernel(fastseq=4e6, threads=2, **{"fastseq-1t": 4e6})))["threads"]
    assert v.target is None and v.status == ""
    v = by_key(verdicts.kernel_verdicts("mnist", kernel(fastseq=4e6, threads=1, **{"fastseq-1t": 4e6})))["threads"]
    assert v.status == "not judged"


# -- PASS, MISS and noise -----------------------------------------------------------


def test_a_clean_pass_and_a_clean_miss_with_what_bounds_it():
    found = by_key(verdicts.kernel_verdicts("cifar", kernel(fastseq=2e6, ceiling=2.8e6, **{"tf.data": 2e4})))
    assert found["fused/ceiling"].status == "PASS" and found["fused/ceiling"].note == ""
    assert found["fused/tf.data"].status == "PASS"
    found = by_key(verdicts.kernel_verdicts("cifar", kernel(fastseq=1e6, ceiling=3e6, keras=2e5)))
    assert found["fused/ceiling"].status == "MISS" and found["fused/ceiling"].value == pytest.approx(3.0)
    assert found["fused/ceiling"].note.startswith("bound: ")
    assert found["fused/keras"].status == "MISS" and found["fused/keras"].note == "bound: fastseq's kernel"
    line = found["fused/ceiling"].line()
    assert "3.00x" in line and "target <= 1.5x" in line and "MISS (bound: " in line


def test_the_same_ratio_is_judged_on_its_own_shape():
    rows = kernel(fastseq=1e6, threads=1, ceiling=3e6)  # 3x the ceiling: a CIFAR miss, an MNIST pass
    assert by_key(verdicts.kernel_verdicts("cifar", rows))["fused/ceiling"].status == "MISS"
    assert by_key(verdicts.kernel_verdicts("mnist", rows))["fused/ceiling"].status == "PASS"


def test_a_noisy_row_says_rerun_instead_of_pass_or_miss():
    # A miss on a busy machine: fastseq's repeats spread 1.6x.
    rows = kernel(fastseq=1.6e6, spread=1.6, ceiling=3e6)
    v = by_key(verdicts.kernel_verdicts("cifar", rows))["fused/ceiling"]
    assert v.status == "noisy: rerun" and v.note == "median/min 1.60" and not v.judged
    # A narrow pass on a busy machine: the noise could have made it.
    rows = kernel(fastseq=2.2e6, ceiling=3e6)
    rows["ceiling"] = Timing(3e6, 1.3)
    assert by_key(verdicts.kernel_verdicts("cifar", rows))["fused/ceiling"].status == "noisy: rerun"
    # At the threshold it is still clean.
    rows = kernel(fastseq=2.2e6, spread=verdicts.NOISY_SPREAD, ceiling=3e6)
    assert by_key(verdicts.kernel_verdicts("cifar", rows))["fused/ceiling"].status == "PASS"


def test_a_pass_wider_than_the_noise_stands():
    rows = kernel(fastseq=2e6, keras=1e5)
    rows["keras"] = Timing(1e5, 2.0)  # 20x against a 10x target: a 2x spread cannot explain it
    assert by_key(verdicts.kernel_verdicts("cifar", rows))["fused/keras"].status == "PASS"


def test_judge_order_no_target_then_not_applicable_then_step_bound_then_noise():
    t = verdicts.Target("k", "min", 2.0, "x")
    assert verdicts.judge("k", "k", 3.0, None, applies=False, why_not="w").status == "not judged"
    assert verdicts.judge("k", "k", 3.0, None).status == ""
    assert verdicts.judge("k", "k", 3.0, t, applies=False, why_not="w").status == "not judged"
    assert verdicts.judge("k", "k", 1.0, t, step_bound="s", spreads=[3.0]).status == "step-bound"
    assert verdicts.judge("k", "k", 1.0, t, spreads=[3.0]).status == "noisy: rerun"
    assert verdicts.judge("k", "k", 1.0, t).status == "MISS"


def test_spread_is_median_over_minimum():
    assert verdicts.spread([1.0, 1.0, 1.0]) == 1.0
    assert verdicts.spread([2.0, 1.0, 3.0]) == 2.0
    assert verdicts.spread([1.0, 2.0]) == 1.5
    assert verdicts.spread([]) == 1.0


# -- fit ----------------------------------------------------------------------------


def fit(noop, fastseq, **others):
    rows = {"noop": Timing(noop, 1.05), "fastseq": Timing(fastseq, 1.05)}
    rows.update({name: Timing(ips, 1.05) for name, ips in others.items()})
    return rows


def test_a_step_bound_noop_row_gets_no_fit_verdict():
    rows = fit(noop=33_730, fastseq=38_915, convert=48_000, **{"tf.data": 14_600, "grain": 5_000})  # issue 28's run
    assert verdicts.step_bound(rows)
    found = by_key(verdicts.fit_verdicts("mnist", rows))
    for key in ("fit fastseq/convert", "fit fastseq/tf.data", "fit fastseq/grain"):
        assert found[key].status == "step-bound" and "step" in found[key].note, key
        assert "PASS" not in found[key].line() and "MISS" not in found[key].line()


def test_a_loader_bound_fit_is_judged():
    rows = fit(noop=200_000, fastseq=100_000, convert=150_000, **{"tf.data": 10_000})
    assert verdicts.step_bound(rows) is None
    found = by_key(verdicts.fit_verdicts("cifar", rows))
    assert found["fit fastseq/tf.data"].status == "PASS"
    assert found["fit fastseq/convert"].status == "MISS"
    assert found["fit fastseq/convert"].note == "bound: ArraySequence's own cost per step"


def test_step_bound_threshold():
    assert verdicts.step_bound(fit(noop=129_999, fastseq=100_000))
    assert verdicts.step_bound(fit(noop=131_000, fastseq=100_000)) is None


def test_the_memmap_ratio_is_judged_even_when_step_bound():
    rows = fit(noop=100_000, fastseq=100_000, **{"fastseq-memmap": 99_000})
    assert by_key(verdicts.fit_verdicts("cifar", rows))["fit memmap/fastseq"].status == "PASS"


def test_a_noisy_fit_window_says_rerun():
    rows = fit(noop=200_000, fastseq=100_000, **{"tf.data": 30_000})
    rows["tf.data"] = Timing(30_000, 1.5)  # 3.3x against >= 4: a miss, but the windows spread 1.5x
    assert by_key(verdicts.fit_verdicts("cifar", rows))["fit fastseq/tf.data"].status == "noisy: rerun"


# -- photos -------------------------------------------------------------------------


def photos(keras_s=2.0, first_s=2.5, epoch_s=0.25, second_s=0.05, n=200, noisy=1.0):
    return {
        "keras epoch": Timing(n / keras_s, noisy),
        "fastseq first call": Timing(n / first_s),
        "fastseq second size": Timing(1 / second_s),
        "fastseq epoch": Timing(n / epoch_s),
    }


def test_photo_verdicts():
    found = by_key(verdicts.photo_verdicts(photos(), 200))
    assert found["photo epoch"].value == pytest.approx(8.0) and found["photo epoch"].status == "PASS"
    assert found["photo first call"].value == pytest.approx(1.25) and found["photo first call"].status == "PASS"
    assert found["photo second size"].value == pytest.approx(0.5) and found["photo second size"].status == "PASS"
    assert "0.50 s" in found["photo second size"].line()
    slow = by_key(verdicts.photo_verdicts(photos(first_s=4.0, epoch_s=1.0), 200))
    assert slow["photo epoch"].status == "MISS" and slow["photo first call"].status == "MISS"
    assert slow["photo first call"].note == "bound: decoding every file once"
    noisy = by_key(verdicts.photo_verdicts(photos(first_s=2.8, noisy=1.4), 200))
    assert noisy["photo first call"].status == "noisy: rerun"


def test_a_small_folder_gets_no_first_call_verdict():
    v = by_key(verdicts.photo_verdicts(photos(n=40), 40))["photo first call"]
    assert v.status == "not judged" and "40 files" in v.note


# -- the summary --------------------------------------------------------------------


def test_summary_lines_from_made_up_rows():
    lines = verdicts.summary_lines(
        kernel=kernel(fastseq=2_000_000, threads=2, **{"tf.data": 20_000}),
        fit=fit(noop=300_000, fastseq=150_000),
        photos=photos(),
        what="synthetic CIFAR-shaped arrays 32x32x3, batch 512",
    )
    assert len(lines) == 3
    assert lines[0] == ("On this machine fastseq makes 2,000,000 images/s (synthetic CIFAR-shaped arrays 32x32x3, "
                        "batch 512, 2 threads) and 800 photos/s at 224 from its store.")
    assert lines[1].startswith("That is 100x tf.data and 8.0x Keras' image_dataset_from_directory per epoch")
    assert "1.25x Keras' epoch time" in lines[1]
    assert lines[2] == ("In model.fit it keeps up with a training step that consumes up to 150,000 images/s "
                        "(a loader that does nothing fed 300,000).")


def test_summary_says_when_the_step_bounds_fit():
    lines = verdicts.summary_lines(kernel=kernel(), fit=fit(noop=33_730, fastseq=38_915))
    assert len(lines) == 3
    assert "38,915 images/s at least" in lines[2] and "the model's own step bounds fit" in lines[2]
    assert "not judged" in lines[2]


def test_summary_of_a_partial_run():
    lines = verdicts.summary_lines(kernel=kernel(fastseq=1e6, threads=1))
    assert lines[0].endswith("(arrays, 1 thread).")
    assert lines[1] == "No baseline ran beside it." and "did not run" in lines[2]


def test_tally():
    t = verdicts.Target("k", "min", 2.0, "x")
    found = [verdicts.judge("a", "a", 3.0, t), verdicts.judge("b", "b", 1.0, t), verdicts.judge("c", "c", 1.0, t),
             verdicts.judge("d", "d", 1.0, t, applies=False)]
    assert verdicts.tally(found) == "1 PASS, 2 MISS, 1 not judged"


def test_the_rules_import_no_keras_or_numba():
    code = ("import sys, fastseq.bench.verdicts\n"
            "bad = [m for m in ('keras', 'tensorflow', 'numba') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the closing table of `pytest benchmarks --benchmark-only` ------------------------


def test_the_benchmark_closing_table_has_the_same_verdicts_and_summary(monkeypatch):
    from benchmarks import summary

    def row(ips, threads=2, spread=1.05):
        return {"images_per_sec": ips, "GB_per_sec": 1.0, "threads": threads, "spread": spread}

    results = {
        "cifar-b512-f32": {"ceiling": row(3e6, 1), "fastseq": row(2.4e6), "fastseq-1t": row(1.2e6, 1),
                           "tf.data": row(2e4)},
        "mnist-b512-f32": {"ceiling": row(1.2e7, 1), "fastseq": row(4e6, 1), "fastseq-1t": row(4e6, 1)},
        "feed-cifar-b512": {name: {"images_per_sec": ips, "windows_images_per_sec": [ips, ips, ips]}
                            for name, ips in (("noop", 150_000), ("fastseq", 130_000), ("tf.data", 12_000))},
        "folders-first-epoch-224": {"keras": {"images": 2000, "seconds": 4.0},
                                    "fastseq": {"images": 2000, "seconds": 5.0}},
        "folders-second-size": {"fastseq": {"images": 2000, "seconds": 0.2}},
    }
    monkeypatch.setattr(summary, "RESULTS", results)
    monkeypatch.setattr(summary, "FIRST_CALL", {})
    monkeypatch.setattr(summary, "COLD", {})
    monkeypatch.setattr(summary, "LOAD", {"start": 99.0})
    text = "\n".join(summary.lines())
    assert "cifar-b512-f32 (CIFAR-sized 32x32x3):" in text and "mnist-b512-f32 (MNIST-sized 28x28x1):" in text
    assert "2 threads vs 1 thread" in text and "PASS" in text
    assert "not judged (the work rule ran this batch on 1 thread)" in text  # MNIST: one thread
    assert "step-bound" in text and "fastseq / tf.data" in text  # no-op 150k within 1.3x of fastseq 130k
    assert "fastseq first call / keras epoch time" in text and "second image_size, per 2,000 files" in text
    assert "verdicts: " in text and "the load average was 99.0" in text
    summary_lines = text[text.index("summary:"):].splitlines()[1:]
    assert len(summary_lines) == 3
    assert "2,400,000 images/s" in summary_lines[0]
    assert summary_lines[1] == ("  That is 120x tf.data; its first call on a photo folder (decoding every file once) "
                                "takes 1.25x Keras' epoch time.")
    assert "the model's own step bounds fit" in summary_lines[2]


def test_a_busy_machine_is_named_beside_the_verdicts():
    assert verdicts.busy_note(0.3, 2) is None and verdicts.busy_note(None, 2) is None
    note = verdicts.busy_note(7.0, 2)
    assert "7.0 on 2 cores" in note and "rerun on a quiet machine" in note


def test_the_closing_tables_alternating_ceiling_ratio_is_noisy_when_its_rows_are(monkeypatch):
    from benchmarks import summary

    fastseq = {"images_per_sec": 1e6, "threads": 2, "spread": 2.4, "paired_min_ratio": 1.4,
               "paired_median_ratio": 1.5}
    monkeypatch.setattr(summary, "RESULTS", {"cifar-b512-f32": {
        "ceiling": {"images_per_sec": 3e6, "threads": 1, "spread": 1.0, "GB_per_sec": 1.0},
        "fastseq": {**fastseq, "GB_per_sec": 1.0}}})
    monkeypatch.setattr(summary, "LOAD", {})
    text = "\n".join(summary.lines())
    assert "fused / ceiling, alternating (median 1.50x)" in text and "noisy: rerun (median/min 2.40)" in text
    assert "fused / ceiling, rows one after other" in text


def test_summary_of_the_photo_rows_alone():
    rows = photos()
    del rows["fastseq epoch"]
    lines = verdicts.summary_lines(photos=rows)
    assert lines[0] == "fastseq's array rows did not run."
    assert lines[1] == "Its first call on a photo folder (decoding every file once) takes 1.25x Keras' epoch time."
