import matplotlib.image as mpimg
import numpy as np
import pytest

from elm_search import (
    EvolutionarySearch,
    EvolutionConfig,
    Objective,
    param_objective,
    plot_pareto,
    plot_progress,
)

CONFIG = EvolutionConfig(generations=4, population=16, parents=4, mutations=6, crossovers=5)


def assert_real_png(path, min_bytes=8_000):
    assert path.exists() and path.stat().st_size > min_bytes
    image = mpimg.imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 500
    # a plot, not a blank canvas: many distinct colours, and red markers for the front
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20
    return image


def test_progress_and_front_plots(space6, make_problem, tmp_path):
    result = EvolutionarySearch(
        space6, [Objective("score", make_problem(space6, 0)), param_objective()], CONFIG
    ).search(progress=False)
    assert_real_png(plot_progress(result, tmp_path / "progress.png"))
    image = assert_real_png(plot_pareto(result, tmp_path / "plots" / "front.png"))
    red = (image[..., 0] > 0.7) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)
    assert red.sum() > 50  # tab:red front line and markers are drawn


def test_single_objective_front_is_plotted_against_params(space6, make_problem, tmp_path):
    result = EvolutionarySearch(space6, Objective("score", make_problem(space6, 0)), CONFIG).search(
        progress=False
    )
    assert_real_png(plot_pareto(result, tmp_path / "front.png"))
    with pytest.raises(ValueError, match=r"cannot plot 'latency': this result has \['params', 'score'\]"):
        plot_pareto(result, tmp_path / "x.png", x="latency")
