"""SQuAD v2.0's metric as an offline ``evaluate`` module: the official v2.0 evaluation script's
normalisation, exact match and token F1 (an unanswerable question's gold answer is the empty
string), the HasAns/NoAns split, the no-answer threshold and the best thresholds."""

import re
import string
from collections import Counter

import datasets
import evaluate


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, the articles a/an/the and extra whitespace (the official rule)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text, flags=re.UNICODE)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def compute_exact(gold: str, predicted: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(predicted))


def compute_f1(gold: str, predicted: str) -> float:
    gold_tokens, predicted_tokens = _tokens(gold), _tokens(predicted)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)  # no-answer: right only when both are empty
    same = sum((Counter(gold_tokens) & Counter(predicted_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best_threshold(predictions: dict, scores: dict, na_probs: dict, has_answer: dict) -> tuple[float, float]:
    """The official ``find_best_thresh``: sweep the no-answer scores, best total score and its threshold."""
    current = best = sum(1 for qid in has_answer if not has_answer[qid])
    threshold = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        diff = scores[qid] if has_answer[qid] else -1 if predictions[qid] else 0
        current += diff
        if current > best:
            best, threshold = current, na_probs[qid]
    return 100.0 * best / len(scores), threshold


class SquadV2(evaluate.Metric):
    """SQuAD v2.0: exact, f1 and total; HasAns_* and NoAns_* for the answerable and unanswerable
    questions; best_exact/best_f1 and their no-answer-probability thresholds (official script)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="SQuAD v2.0 exact match and token F1 with unanswerable questions (official rules).",
            citation="Rajpurkar et al. 2018, Know What You Don't Know: Unanswerable Questions for SQuAD.",
            inputs_description=(
                "predictions: {id, prediction_text ('' for no answer), no_answer_probability}; "
                "references: {id, answers: {text: [...], answer_start: [...]}} (empty lists: unanswerable)."
            ),
            features=datasets.Features(
                {
                    "predictions": {
                        "id": datasets.Value("string"),
                        "prediction_text": datasets.Value("string"),
                        "no_answer_probability": datasets.Value("float32"),
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

    def _compute(
        self, predictions: list[dict], references: list[dict], no_answer_threshold: float = 1.0
    ) -> dict[str, float]:
        texts = {p["id"]: p["prediction_text"] for p in predictions}
        na_probs = {p["id"]: p["no_answer_probability"] for p in predictions}
        raw_exact, raw_f1, has_answer = {}, {}, {}
        for ref in references:
            qid = ref["id"]
            golds = [text for text in ref["answers"]["text"] if normalize_answer(text)] or [""]
            has_answer[qid] = golds != [""]
            predicted = texts.get(qid, "")
            raw_exact[qid] = max(compute_exact(gold, predicted) for gold in golds)
            raw_f1[qid] = max(compute_f1(gold, predicted) for gold in golds)
        probs = {qid: na_probs.get(qid, 0.0) for qid in raw_exact}
        exact, f1 = dict(raw_exact), dict(raw_f1)
        for qid in exact:  # a no-answer probability above the threshold means "no answer"
            if probs[qid] > no_answer_threshold:
                exact[qid] = f1[qid] = float(not has_answer[qid])
        total = len(exact)
        out: dict[str, float] = {
            "exact": 100.0 * sum(exact.values()) / total,
            "f1": 100.0 * sum(f1.values()) / total,
            "total": float(total),
        }
        for prefix, wanted in (("HasAns", True), ("NoAns", False)):
            ids = [qid for qid in exact if has_answer[qid] == wanted]
            if ids:
                out[f"{prefix}_exact"] = 100.0 * sum(exact[q] for q in ids) / len(ids)
                out[f"{prefix}_f1"] = 100.0 * sum(f1[q] for q in ids) / len(ids)
                out[f"{prefix}_total"] = float(len(ids))
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(texts, raw_exact, probs, has_answer)
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(texts, raw_f1, probs, has_answer)
        return out
