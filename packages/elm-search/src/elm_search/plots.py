"""PNG plots of a search: progress per generation and the Pareto front.

Figures are built with ``matplotlib.figure.Figure`` and its Agg canvas, never through pyplot:
no display is needed (servers, CI), and importing elm-search does not switch the backend of a
user's notebook or hold figures in pyplot's global registry.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from elm_search.result import EvaluatedArchitecture, SearchResult


def _axis_values(
    records: tuple[EvaluatedArchitecture, ...] | list[EvaluatedArchitecture], key: str
) -> list[float]:
    if key == "params":
        return [float(r.params) for r in records]
    return [r.values[key] for r in records]


def _check_key(result: SearchResult, key: str) -> None:
    known = ["params", *(o.name for o in result.objectives)]
    if key not in known:
        raise ValueError(f"cannot plot {key!r}: this result has {known}")


def plot_progress(result: SearchResult, path: str | Path) -> Path:
    """Best value of the first objective after each generation."""
    if not result.generations:
        raise ValueError("the result has no completed generation to plot")
    name = result.objectives[0].name
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot([g.generation for g in result.generations], [g.best for g in result.generations], marker="o")
    ax.set_xlabel("generation")
    ax.set_ylabel(f"best {name}")
    ax.set_title(f"{result.algorithm} on {result.space_name}: {result.evaluations} evaluations")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_pareto(result: SearchResult, path: str | Path, x: str | None = None, y: str | None = None) -> Path:
    """All evaluated architectures and the front of ``y`` (default: the first objective) against
    ``x`` (default: the last objective, or the parameter count in a single-objective run)."""
    if not result.records:
        raise ValueError("the result has no evaluated architecture to plot")
    y = y or result.objectives[0].name
    x = x or (result.objectives[-1].name if len(result.objectives) > 1 else "params")
    _check_key(result, x)
    _check_key(result, y)
    front = sorted(result.pareto_front, key=lambda r: _axis_values([r], x)[0])
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter(
        _axis_values(result.records, x), _axis_values(result.records, y), s=10, c="0.6", label="evaluated"
    )
    ax.plot(_axis_values(front, x), _axis_values(front, y), "o-", c="tab:red", label="Pareto front")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{result.algorithm} on {result.space_name}")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
