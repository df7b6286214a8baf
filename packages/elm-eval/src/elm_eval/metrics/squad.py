"""SQuAD v1.1's metric (exact match and token F1, max over the gold answers, in percent) as an
offline ``evaluate`` module: the official v1.1 evaluation script's normalisation and scores."""

import re
import string
from collections import Counter

import datasets
import evaluate


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, the articles a/an/the and extra whitespace (the official rule)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


class Squad(evaluate.Metric):
    """Exact match and F1 of SQuAD v1.1, each the best over a question's gold answers, averaged over
    the questions and given in percent (as the official script and the hub's ``squad`` metric)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="SQuAD v1.1 exact match and token F1 (official evaluation script rules).",
            citation="Rajpurkar et al. 2016, SQuAD: 100,000+ Questions for Machine Comprehension of Text.",
            inputs_description=(
                "predictions: {id, prediction_text}; references: {id, answers: {text: [...], answer_start: [...]}}."
            ),
            features=datasets.Features(
                {
                    "predictions": {
                        "id": datasets.Value("string"),
                        "prediction_text": datasets.Value("string"),
                    },
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.features.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions: list[dict], references: list[dict]) -> dict[str, float]:
        by_id = {p["id"]: p["prediction_text"] for p in predictions}
        exact = f1 = 0.0
        for ref in references:
            golds = ref["answers"]["text"]
            predicted = by_id.get(ref["id"], "")
            exact += max(exact_match_score(predicted, gold) for gold in golds)
            f1 += max(f1_score(predicted, gold) for gold in golds)
        total = len(references)
        return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}
