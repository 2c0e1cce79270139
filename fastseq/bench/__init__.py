"""The measuring bench: what fastseq is measured against, and how.

- :mod:`~fastseq.bench.synthetic`: seeded synthetic data (tests, benchmarks, CLIs);
- :mod:`~fastseq.bench.baselines`: the loaders users write by hand (NumPy
  Sequence, tf.data, Keras preprocessing layers);
- :mod:`~fastseq.bench.kernel_rows`: one batch job and its timed rows
  (fastseq, the baselines, the memory-bandwidth ceiling) with their targets;
- :mod:`~fastseq.bench.timing`: alternating and budgeted timing;
- :mod:`~fastseq.bench.feed`: ``model.fit`` fed by each loader;
- :mod:`~fastseq.bench.cli`: ``python -m fastseq bench``.

Imports point one way: cli -> kernel_rows, feed, timing -> baselines,
synthetic -> the product. Nothing in the product imports this package.
"""
