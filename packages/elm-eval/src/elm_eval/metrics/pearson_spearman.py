"""STS-B's metric (Pearson, Spearman and their mean) as an offline ``evaluate`` module, via scipy.

Constant predictions have no correlation; scipy then returns NaN, which is reported as is rather
than hidden behind a made-up number.
"""

import warnings

import datasets
import evaluate
from scipy.stats import ConstantInputWarning, pearsonr, spearmanr


class PearsonSpearman(evaluate.Metric):
    """Pearson and Spearman correlation of real-valued predictions and their mean (the GLUE STS-B score)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Pearson r, Spearman rho and their mean (scipy.stats).",
            citation="",
            inputs_description="predictions, references: real numbers (float).",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions: list[float], references: list[float]) -> dict[str, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantInputWarning)
            pearson = float(pearsonr(predictions, references)[0])
            spearman = float(spearmanr(predictions, references)[0])
        return {"pearson": pearson, "spearman": spearman, "pearson_spearman_mean": (pearson + spearman) / 2}
