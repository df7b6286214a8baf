"""MNLI's mismatched validation set: each MNLI model, chosen on the matched set, scored on it too.

GLUE reports MNLI twice (matched and mismatched genres), and so does the reference (its test
prediction writes MNLI-m and MNLI-mm). elm-eval's ``mnli`` task validates on the matched split; the
mismatched one is the same task spec reading ``validation_mismatched`` instead, so the labels are
encoded exactly as for training. The scores are elm-eval TaskResults of task ``mnli-mm``, beside
``mnli``'s, for the report and the comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import elm_eval
from elm_eval import HubSource, TaskResult, TaskSpec
from elm_train.glue_submission import glue_task
from elm_train.training.task_distill import encode, score

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedTokenizerBase

MISMATCHED_TASK = "mnli-mm"
"""The task name the mismatched scores are reported under."""
MISMATCHED_SPLIT = "validation_mismatched"


def mismatched_spec(spec: TaskSpec) -> TaskSpec | None:
    """``spec`` validating on MNLI's mismatched split; None for any task but GLUE's MNLI."""
    if glue_task(spec) != "mnli" or not isinstance(spec.source, HubSource):
        return None
    splits = {**spec.source.splits, "validation": MISMATCHED_SPLIT}
    splits.pop("test", None)  # the submission predicts the test sets; nothing to score here
    return spec.model_copy(update={"source": spec.source.model_copy(update={"splits": splits})})


def score_mismatched(
    spec: TaskSpec,
    matched: list[TaskResult],
    models: dict[str, Path],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    pad_id: int,
) -> list[TaskResult]:
    """Each model of ``models`` (who -> its fine-tuned MNLI model), scored on the mismatched
    validation split; every result is its ``matched`` result's, with the mismatched scores."""
    from transformers import AutoModelForSequenceClassification

    mm = mismatched_spec(spec)
    if mm is None:
        return []
    data = elm_eval.load_task_data(mm)
    valid = encode(tokenizer, data, "validation", max_length)
    out = []
    for result in matched:
        model = AutoModelForSequenceClassification.from_pretrained(str(models[result.model]))
        scored = score(model, valid, mm, pad_id)
        out.append(
            result.model_copy(
                update={
                    "task": MISMATCHED_TASK,
                    "score": scored["score"],
                    "validation_metrics": scored["values"],
                    "num_validation_examples": len(valid),
                    "settings": {
                        **result.settings,
                        "validation_split": MISMATCHED_SPLIT,
                        "selected_on": "validation_matched",
                    },
                }
            )
        )
    return out
