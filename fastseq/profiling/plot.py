"""The profile plot: per-step wait against compute, and throughput bars (matplotlib's object API, Agg)."""

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
    """Write a PNG: per-step wait vs compute timeline per report, and throughput bars.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no display,
    no global backend switch).
    """
    Figure = import_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    n = len(reports)
    fig = Figure(figsize=(13, 1.2 + 2.3 * max(n, 2)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(n, 2, width_ratios=(1.9, 1))
    wait_c, compute_c = "#e4572e", "#4c72b0"
    top = max(1e3 * (w + c) for r in reports for w, c in (r.fit_step_timeline or [[0, 0]])) or 1.0
    for i, r in enumerate(reports):
        ax = fig.add_subplot(grid[i, 0])
        steps = np.arange(1, len(r.fit_step_timeline) + 1)
        tl = np.array(r.fit_step_timeline or [[0.0, 0.0]]) * 1e3
        ax.bar(steps, tl[: len(steps), 1], color=compute_c, label="compute (step - wait)", width=0.8)
        ax.bar(steps, tl[: len(steps), 0], bottom=tl[: len(steps), 1], color=wait_c, label="waiting for input", width=0.8)
        ax.axhline(1e3 * r.model_step_seconds, color="black", ls="--", lw=1, label="model alone (resident batch)")
        wait = "n/a" if r.measured_wait_fraction is None else f"{r.measured_wait_fraction:.0%}"
        ax.set_title(
            f"{r.name}: starvation {r.starvation:.0%} (measured wait {wait}), "
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
    fig.savefig(path, format="png")
    return path


def _short(v):
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
