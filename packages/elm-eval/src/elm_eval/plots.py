"""PNG plots for reports, drawn on matplotlib ``Figure`` objects with the Agg canvas.

Using ``Figure`` directly (no ``pyplot``) keeps plotting free of global state and of any display
backend, so it works on headless machines and inside other programs' processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def pareto_front(xs: Sequence[float], ys: Sequence[float], *, maximize_y: bool = True) -> list[int]:
    """Indices of the points no other point dominates (x no larger and y no worse, one strictly better).

    Smaller x is better (parameters, latency); y is better larger unless ``maximize_y`` is False.
    Returned in increasing x order.
    """
    sign = 1.0 if maximize_y else -1.0
    points = [(float(x), sign * float(y)) for x, y in zip(xs, ys, strict=True)]
    front = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(
            xj <= xi and yj >= yi and (xj < xi or yj > yi) for j, (xj, yj) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_pareto(
    names: Sequence[str],
    xs: Sequence[float],
    ys: Sequence[float],
    path: str | Path,
    *,
    x_label: str,
    y_label: str,
    maximize_y: bool = True,
    log_x: bool = False,
) -> Path:
    """Scatter of models with their Pareto front drawn as a step line and marked in red."""
    figure = Figure(figsize=(6, 4.5))
    axes = figure.add_subplot()
    front = pareto_front(xs, ys, maximize_y=maximize_y)
    others = [i for i in range(len(xs)) if i not in front]
    axes.scatter([xs[i] for i in others], [ys[i] for i in others], color="tab:blue", label="model")
    axes.scatter(
        [xs[i] for i in front], [ys[i] for i in front], color="tab:red", label="Pareto front", zorder=3
    )
    axes.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="tab:red", alpha=0.6)
    for name, x, y in zip(names, xs, ys, strict=True):
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, Path(path))


def plot_loss_curves(
    curves: Mapping[str, Sequence[float]], path: str | Path, *, y_label: str = "loss"
) -> Path:
    """One line per named curve against step number."""
    figure = Figure(figsize=(6, 4.5))
    axes = figure.add_subplot()
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), list(values), label=name)
    axes.set_xlabel("step")
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(fontsize=8)
    return _save(figure, Path(path))
