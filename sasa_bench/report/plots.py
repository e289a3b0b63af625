"""Trade-off figures: pure data in, a matplotlib Figure out (saving is the report's business)."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

FAMILY_COLORS = {"baseline (conv)": "#1f77b4", "attention": "#d62728"}
SOURCE_MARKERS = {"paper": "^", "measured": "o"}


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # shown beside the point
    family: str  # a key of FAMILY_COLORS
    source: str  # "paper" or "measured": where the point's numbers come from


def family_of(model_name: str) -> str:
    return (
        "baseline (conv)"
        if "resnet" in model_name.split(":")[0] and ("stages=" not in model_name)
        else "attention"
    )


def tradeoff(
    panels: list[tuple[str, str, list[Point]]],
    *,
    title: str,
    y_label: str,
    log_x: bool = False,
    sources: dict[str, str] | None = None,
) -> Figure:
    """One scatter panel per (x_label, panel title, points); legend: colour = family, marker =
    source of the numbers (paper-reported or measured here), named by `sources`."""
    sources = sources or {"paper": "paper-reported", "measured": "measured here"}
    figure, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    for ax, (x_label, subtitle, points) in zip(axes[0], panels, strict=True):
        for family, color in FAMILY_COLORS.items():
            for source, marker in SOURCE_MARKERS.items():
                chosen = [p for p in points if p.family == family and p.source == source]
                if not chosen:
                    continue
                chosen.sort(key=lambda p: p.x)
                ax.plot(
                    [p.x for p in chosen],
                    [p.y for p in chosen],
                    marker=marker,
                    color=color,
                    linestyle="-" if source == "measured" else ":",
                    markersize=8,
                    label=f"{family}, {sources[source]}",
                )
                for p in chosen:
                    ax.annotate(
                        p.label,
                        (p.x, p.y),
                        textcoords="offset points",
                        xytext=(5, 4),
                        fontsize=7,
                        color=color,
                    )
        xs = [p.x for p in points if p.x > 0]
        if log_x and xs and max(xs) / min(xs) > 20:  # log only where the points span decades
            ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(subtitle, fontsize=10)
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8, loc="best")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plotted_points(figure: Figure) -> int:
    """How many data points the figure's axes hold (for checks that a figure is not empty)."""
    return sum(len(line.get_xdata()) for ax in figure.axes for line in ax.get_lines())
