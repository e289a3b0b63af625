"""Trade-off figures: pure data in, a matplotlib Figure out (saving is the report's business)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sasa_bench.models.thirdparty import is_thirdparty  # noqa: E402

FAMILY_COLORS = {
    "baseline (conv)": "#1f77b4",
    "attention": "#d62728",
    "timm": "#2ca02c",
    "torchvision": "#9467bd",
}


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # the configuration both numbers come from (legend entry)
    family: str  # a key of FAMILY_COLORS
    source: str  # "paper" or "measured": where the point's numbers come from
    y_err: float | None = None  # a spread of y (the sd over seeds), drawn as an error bar


@dataclass(frozen=True)
class Panel:
    """One scatter plot: x and y of every point come from one configuration each, and every
    point of a panel from one source of numbers (one dataset on the accuracy axis)."""

    title: str  # says the dataset, width and resolution of the points
    x_label: str
    y_label: str
    points: tuple[Point, ...]
    log_x: bool = False


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")


def family_of(model_name: str) -> str:
    if is_thirdparty(model_name):
        return model_name.partition(":")[0]  # timm or torchvision
    return (
        "baseline (conv)"
        if "resnet" in model_name.split(":")[0] and ("stages=" not in model_name)
        else "attention"
    )


def tradeoff(panels: list[Panel], *, title: str) -> Figure:
    """One scatter panel per Panel, two to a row. Points are told apart by marker and named in
    each panel's legend (under it, so that no label covers a point); colour = family; filled
    markers are measured here, hollow ones reported by the paper; vertical bars are ± sd."""
    cols = min(len(panels), 2)
    rows = -(-len(panels) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(6.6 * cols, 5.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.remove()
    for ax, panel in zip(axes.flat, panels, strict=False):
        for index, p in enumerate(panel.points):
            color = FAMILY_COLORS[p.family]
            ax.plot(
                [p.x], [p.y], marker=MARKERS[index % len(MARKERS)], color=color, markersize=8,
                linestyle="none", markerfacecolor=color if p.source == "measured" else "none",
                label=p.label,
            )  # fmt: skip
            if p.y_err is not None:  # fmt="none": the bar alone; the point stays one line
                ax.errorbar([p.x], [p.y], yerr=[p.y_err], fmt="none", ecolor=color, capsize=0)
        xs = [p.x for p in panel.points if p.x > 0]
        if panel.log_x and xs and max(xs) / min(xs) > 20:  # log only where points span decades
            ax.set_xscale("log")
        ax.set_xlabel(panel.x_label)
        ax.set_ylabel(panel.y_label)
        ax.set_title(textwrap.fill(panel.title, 60), fontsize=9)
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plotted_points(figure: Figure) -> int:
    """How many data points the figure's axes hold (for checks that a figure is not empty)."""
    return sum(len(line.get_xdata()) for ax in figure.axes for line in ax.get_lines())


def panel_data(figure: Figure) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """What each panel plots, read back from the figure: (title, [(label, x, y), ...])."""
    return [
        (
            ax.get_title().replace("\n", " "),
            [
                (line.get_label(), float(line.get_xdata()[0]), float(line.get_ydata()[0]))
                for line in ax.get_lines()
            ],
        )  # fmt: skip
        for ax in figure.axes
    ]
