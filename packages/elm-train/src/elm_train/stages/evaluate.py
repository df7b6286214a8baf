"""Stage 7a: evaluate the exported students and the teacher with elm-eval, the same code a user
would run on any other checkpoint: LM perplexity on held-out text, and CPU latency.
"""

from __future__ import annotations

from typing import Any

import elm_eval
from elm_eval import CausalLMConfig, LatencyConfig, MaskedLMConfig, MaskingConfig
from elm_train.data import load_corpus
from elm_train.run import Run
from elm_train.stages import retrain as retrain_stage
from elm_train.stages.tasks import RESULTS
from elm_train.teacher import resolve

STAGE = "evaluate"


def lm_texts(run: Run) -> list[str]:
    """The corpus's test split (PTB's standard one), else its validation split."""
    corpus = load_corpus(run.config.data)
    texts = corpus.get("test") or corpus["validation"]
    limit = run.config.eval.lm_documents
    return texts[:limit] if limit else texts


def run_stage(run: Run) -> dict[str, Any]:
    cfg = run.config.eval
    out = run.stage_dir(RESULTS)
    models = {name: str(retrain_stage.model_dir(run, name)) for name in retrain_stage.students(run)}
    info: dict[str, Any] = {}
    if cfg.lm:
        texts = lm_texts(run)
        length = run.config.data.block_size
        for name, path in models.items():
            if run.causal:
                config = CausalLMConfig(max_length=length, stride=length // 2, progress=True)
                result = elm_eval.causal_lm_perplexity(path, run.tokenizer, texts, config, name=name)
            else:
                config = MaskedLMConfig(max_length=length, masking=MaskingConfig(seed=run.config.seed))
                result = elm_eval.masked_lm_perplexity(path, run.tokenizer, texts, config, name=name)
            elm_eval.write_result(result, out)
            info[f"{name}.perplexity"] = result.perplexity
    if cfg.latency:
        latency = LatencyConfig(
            batch_sizes=[cfg.latency_batch_size],
            seq_lengths=[cfg.latency_seq_len],
            repeats=cfg.latency_repeats,
        )
        for name, path in {"teacher": resolve(run.config.teacher.name_or_path), **models}.items():
            result = elm_eval.measure_latency(path, latency, name=name)
            elm_eval.write_result(result, out)
            info[f"{name}.latency_ms"] = result.entries[0].stats.median_ms
    run.mark_done(STAGE, info)
    return info
