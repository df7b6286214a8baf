"""F1 as an ``evaluate`` metric module that loads offline (by path) and computes with sklearn."""

import datasets
import evaluate
from sklearn.metrics import f1_score


class F1(evaluate.Metric):
    """F1 of class predictions; ``average`` is passed to sklearn ("binary" for two classes, else "macro")."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="F1: harmonic mean of precision and recall (sklearn.metrics.f1_score).",
            citation="",
            inputs_description="predictions, references: class ids (int); average: sklearn average mode.",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self, predictions: list[int], references: list[int], average: str | None = None
    ) -> dict[str, float]:
        if average is None:
            average = "binary" if set(references) | set(predictions) <= {0, 1} else "macro"
        return {"f1": float(f1_score(references, predictions, average=average))}
