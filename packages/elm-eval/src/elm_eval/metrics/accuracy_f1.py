"""MRPC's and QQP's metric (accuracy, binary F1 and their mean) as an offline ``evaluate`` module."""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score


class AccuracyF1(evaluate.Metric):
    """Accuracy, F1 of the positive class (label 1), and their mean (the GLUE MRPC/QQP score)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Accuracy, binary F1 (positive class 1) and their mean (sklearn.metrics).",
            citation="",
            inputs_description="predictions, references: class ids 0 or 1 (int).",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        accuracy = float(accuracy_score(references, predictions))
        f1 = float(f1_score(references, predictions, average="binary", zero_division=0.0))
        return {"accuracy": accuracy, "f1": f1, "accuracy_f1_mean": (accuracy + f1) / 2}
