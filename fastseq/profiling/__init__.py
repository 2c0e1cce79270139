"""Is the accelerator starving, and by how much? GPU-starvation measurement.

- :mod:`~fastseq.profiling.report`: the verdict rules, :class:`ProfileReport`,
  the summary table (NumPy only);
- :mod:`~fastseq.profiling.measure`: :func:`profile`, the three timed runs;
- :mod:`~fastseq.profiling.monitor`: the Keras callbacks
  (:class:`StarvationMonitor`), imported on first access because it imports Keras;
- :mod:`~fastseq.profiling.plot`: the PNG;
- :mod:`~fastseq.profiling.cli`: ``python -m fastseq profile``.

Imports point one way: cli -> measure, plot -> report, monitor -> the product.
Importing this package imports neither Keras nor TensorFlow.
"""

from fastseq.profiling.measure import profile
from fastseq.profiling.report import STARVATION_THRESHOLD, ProfileReport, Verdict, decide, summary_table

__all__ = [
    "ProfileReport",
    "STARVATION_THRESHOLD",
    "StarvationMonitor",
    "Verdict",
    "decide",
    "profile",
    "summary_table",
]


def __getattr__(name):
    # StarvationMonitor subclasses keras.callbacks.Callback: load it on first access only.
    if name in ("StarvationMonitor", "StepRecorder"):
        from fastseq.profiling import monitor

        value = getattr(monitor, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
