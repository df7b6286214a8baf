"""Stage 1: tokenise the corpus (with the teacher's tokenizer, or one trained or built for the run)
into cached Arrow blocks."""

from __future__ import annotations

from typing import Any

from elm_train import data
from elm_train.run import Run

STAGE = "data"


def run_stage(run: Run) -> dict[str, Any]:
    info = {
        "splits": data.summary(run.blocks),
        "tokenizer": run.tokenizer_name,
        "tokenizer_vocab": len(run.tokenizer),
    }
    run.mark_done(STAGE, info)
    return info
