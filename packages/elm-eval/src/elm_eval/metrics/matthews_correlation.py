"""Matthews correlation (CoLA's metric) as an ``evaluate`` module that loads offline, via sklearn."""

import datasets
import evaluate
from sklearn.metrics import matthews_corrcoef


class MatthewsCorrelation(evaluate.Metric):
    """Matthews correlation coefficient; robust to CoLA's class imbalance, 0 for constant predictions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Matthews correlation coefficient (sklearn.metrics.matthews_corrcoef).",
            citation="",
            inputs_description="predictions, references: class ids (int).",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
