"""The profile plot: each fit step split into model, CPU contention and waiting for input; throughput bars.

matplotlib's object API with the Agg canvas: no pyplot, no display, no
global backend switch.
"""

from __future__ import annotations

import numpy as np


def import_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "--plot needs matplotlib, which is not installed: pip install 'fastseq[plot]' (or matplotlib)."
        ) from e
    return Figure


def plot_reports(reports, path, title=""):
    """Write a PNG of ``reports`` to ``path`` (see :func:`figure`); return ``path``."""
    figure(reports, title).savefig(path, format="png")
    return path


#: Colours and legend labels of the three parts of a step (:meth:`ProfileReport.step_breakdown`).
STEP_PARTS = (
    ("model", "#4c72b0", "model (as fast as the model alone)"),
    ("contention", "#f2a541", "CPU contention (slower than the model alone, not waiting)"),
    ("wait", "#e4572e", "waiting for input"),
)


def figure(reports, title=""):
    """The profile figure: per report, each timed fit step as stacked bars of model time, CPU
    contention and waiting for input, against the model-alone step time; and throughput bars.
    """
    Figure = import_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    n = len(reports)
    fig = Figure(figsize=(13, 1.2 + 2.3 * max(n, 2)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(n, 2, width_ratios=(1.9, 1))
    top = max(1e3 * (w + c) for r in reports for w, c in (r.fit_step_timeline or [[0, 0]])) or 1.0
    for i, r in enumerate(reports):
        ax = fig.add_subplot(grid[i, 0])
        steps = np.arange(1, len(r.fit_step_timeline) + 1)
        parts = np.array(r.step_breakdown() or [(0.0, 0.0, 0.0)]).reshape(-1, 3) * 1e3
        bottom = np.zeros(len(steps))
        for j, (_, color, label) in enumerate(STEP_PARTS):
            ax.bar(steps, parts[: len(steps), j], bottom=bottom, color=color, label=label, width=0.8)
            bottom = bottom + parts[: len(steps), j]
        ax.axhline(1e3 * r.model_step_seconds, color="black", ls="--", lw=1, label="model alone (resident batch)")
        wait = "n/a" if r.measured_wait_fraction is None else f"{r.measured_wait_fraction:.0%}"
        spread = r.starvation_spread
        windows = "" if spread is None else f", {spread[0]:.0%}-{spread[1]:.0%} over windows"
        ax.set_title(
            f"{r.name}: starvation {r.starvation:.0%}{windows} (measured wait {wait}), "
            f"{r.achieved_images_per_sec:,.0f} img/s in fit",
            fontsize=10, loc="left",
        )
        ax.set_ylabel("ms per step")
        ax.set_ylim(0, top * 1.15)
        ax.set_xlim(0.3, max(len(steps), 1) + 0.7)
        ax.grid(axis="y", alpha=0.3)
        if i == 0:
            handles, labels = ax.get_legend_handles_labels()
        if i == n - 1:
            ax.set_xlabel("timed fit step")
    bx = fig.add_subplot(grid[:, 1])
    kinds = [("loader alone", "loader_images_per_sec", "#55a868"), ("model alone", "model_images_per_sec", "#8172b2"),
             ("achieved in fit", "achieved_images_per_sec", "#c44e52")]
    xs = np.arange(n)
    width = 0.27
    values = [[getattr(r, attr) for r in reports] for _, attr, _ in kinds]
    for j, (label, _, color) in enumerate(kinds):
        bars = bx.bar(xs + (j - 1) * width, values[j], width, label=label, color=color)
        for b, v in zip(bars, values[j]):
            bx.annotate(_short(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 1), textcoords="offset points")
    flat = [v for vs in values for v in vs if v > 0]
    if flat and max(flat) / min(flat) > 30:
        bx.set_yscale("log")
        bx.set_ylim(min(flat) / 3, max(flat) * 2)
        bx.set_ylabel("images / s (log scale)")
    else:
        bx.set_ylabel("images / s")
        bx.set_ylim(0, max(flat or [1]) * 1.15)
    bx.set_xticks(xs, [r.name for r in reports])
    bx.set_title("throughput: loader alone vs model alone vs achieved", fontsize=10, loc="left")
    bar_handles, bar_labels = bx.get_legend_handles_labels()
    fig.legend(handles + bar_handles, labels + bar_labels, loc="outside lower center", ncols=6, fontsize=9,
               frameon=False)
    bx.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _short(v):
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
