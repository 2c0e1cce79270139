"""The measuring bench: what fastseq is measured against, and how.

- :mod:`~fastseq.bench.synthetic`: seeded synthetic data (tests, benchmarks, CLIs);
- :mod:`~fastseq.bench.baselines`: the loaders users write by hand (NumPy
  Sequence, tf.data, Keras preprocessing layers);
- :mod:`~fastseq.bench.kernel_rows`: one batch job and its timed rows
  (fastseq, the baselines, the memory-bandwidth ceiling);
- :mod:`~fastseq.bench.verdicts`: the per-shape targets, when each applies
  (threads, step-bound fit, noise) and the closing summary: pure functions;
- :mod:`~fastseq.bench.timing`: alternating and budgeted timing;
- :mod:`~fastseq.bench.feed`: ``model.fit`` fed by each loader;
- :mod:`~fastseq.bench.photo_rows`: a photo folder through Keras' and fastseq's
  ``image_dataset_from_directory`` (:mod:`~fastseq.bench.photos` makes one);
- :mod:`~fastseq.bench.first_run`: the README quickstart as a new user's script, beside tf.data;
- :mod:`~fastseq.bench.cli`: ``python -m fastseq bench``.

Imports point one way: cli -> kernel_rows, feed, photo_rows, timing ->
baselines, synthetic -> the product; everything may use verdicts, which
imports nothing. Nothing in the product imports this package.
"""
