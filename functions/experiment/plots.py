"""PNG figures, drawn with matplotlib's headless Agg backend when matplotlib is installed.

matplotlib is optional (`pip install 'hexq[experiments]'`): experiments describe their figures as Figure
objects whose `draw` gets matplotlib Axes, and render() draws them, or says how to get them. The helpers
below are the few kinds of panel the experiments share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hexq.functions.experiment.stats import ecdf

INSTALL = "pip install 'hexq[experiments]'"


@dataclass(frozen=True)
class Figure:
    file: str  # the PNG's name in the run's directory
    caption: str  # what it shows, for report.md
    draw: Callable[[list[Any]], None]  # draws on `panels` matplotlib Axes, left to right
    panels: int = 1


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def render(figures: Sequence[Figure], directory: Path) -> list[Figure]:
    """Draw each figure into directory/<file>; the ones drawn (none without matplotlib)."""
    if not figures or not available():
        return []
    import matplotlib

    matplotlib.use("Agg")  # headless: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    drawn = []
    for figure in figures:
        fig, axes = plt.subplots(1, figure.panels, figsize=(6.4 * figure.panels, 4.4), squeeze=False)
        try:
            figure.draw(list(axes[0]))
            fig.tight_layout()
            fig.savefig(directory / figure.file, dpi=110)
        finally:
            plt.close(fig)
        drawn.append(figure)
    return drawn


def cdf(ax: Any, series: Mapping[str, Sequence[float]], *, xlabel: str, title: str, logx: bool = True,
        styles: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Empirical CDFs, one step line per series (values in seconds, drawn in ms)."""
    for label, values in series.items():
        if not values:
            continue
        xs, ys = ecdf([max(v, 1e-4) * 1000 for v in values])
        ax.step(xs, ys, where="post", label=f"{label} (n={len(values)})", **(styles or {}).get(label, {}))
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize="small")


def boxes(ax: Any, series: Mapping[str, Sequence[float]], *, ylabel: str, title: str, logy: bool = True) -> None:
    """Box plots (whiskers at p1/p99, so the tail shows), values in seconds drawn in ms."""
    labels = [label for label, values in series.items() if values]
    ax.boxplot([[max(v, 1e-4) * 1000 for v in series[label]] for label in labels], whis=(1, 99), showfliers=True,
               flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize="small", rotation=15)
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.set_title(title)


def lines(ax: Any, series: Mapping[str, tuple[Sequence[float], Sequence[float | None]]], *, xlabel: str,
          ylabel: str, title: str, logx: bool = False, logy: bool = False,
          styles: Mapping[str, str] | None = None) -> None:
    """One line per series of (x, y); None values are gaps."""
    for label, (xs, ys) in series.items():
        style = (styles or {}).get(label, "o-")
        ax.plot(xs, [math.nan if y is None else y for y in ys], style, label=label, markersize=4)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize="small")


def stacked(ax: Any, bins: Sequence[float], layers: Mapping[str, Sequence[float]], *, width: float, xlabel: str,
            ylabel: str, title: str) -> None:
    """Stacked bars: one layer per series over the same bins."""
    bottom = [0.0] * len(bins)
    for label, heights in layers.items():
        ax.bar(bins, heights, width=width, bottom=bottom, label=label, align="edge")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize="small")
