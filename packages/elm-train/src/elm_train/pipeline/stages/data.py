"""Data: the run's tokenizer (trained, built from GPT-2's files, or the teacher's) and the corpus
cut into token blocks, both saved in the run directory for every later stage.

A trained tokenizer learns from every source's training documents (iterated from Arrow, never
held as a list); the blocks mix the sources as ``data.sources`` says (their weights, drawn with
the run's seed). Documents are tokenised by as many processes as the run has torch threads; the
stage's figures (documents, text, tokens, blocks, seconds, peak memory) go to the run's metrics,
its ``done.json`` and the report."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import datasets
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from elm_train import data, teacher, tokenizer
from elm_train.config import ConfigError
from elm_train.pipeline.sizing import PlanContext, StagePlan, block_bytes_per_token, byte_size
from elm_train.pipeline.stage import Stage
from elm_train.runtime.fsio import atomic_directory

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def _save_tokenizer(run: Run) -> None:
    cfg = run.config
    source = cfg.tokenizer_source
    if source == "gpt2-files":
        assert cfg.tokenizer.files is not None  # the config's validator says so
        built = tokenizer.gpt2_from_files(cfg.tokenizer.files)
    elif source == "teacher":
        built = teacher.load_tokenizer(cfg.hub_source(str(cfg.teacher.tokenizer or cfg.teacher.name_or_path)))
    else:
        texts = data.load_corpus(cfg.data, cfg.hub_mirrors)["train"]
        built = tokenizer.train_bpe(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
    with atomic_directory(run.layout.tokenizer) as tmp:
        built.save_pretrained(tmp)


def check_global_batch(run: Run) -> None:
    """Enough training blocks for one optimizer step of the stages that train on them (the
    stand-in teacher, the supernet, retraining), named right after the blocks exist rather than
    when the supernet stage builds its loop."""
    cfg = run.config
    ds = cfg.deepspeed
    blocks = len(run.blocks["train"])
    if blocks < ds.global_batch:
        where = (
            f"deepspeed.global_batch_size {ds.global_batch_size}"
            if ds.global_batch_size is not None
            else f"deepspeed.micro_batch_size {ds.micro_batch_size} x deepspeed.gradient_accumulation_steps "
            f"{ds.gradient_accumulation_steps}"
        )
        raise data.DataError(
            f"data: the corpus gives {blocks} training blocks of {cfg.data.block_size} tokens, fewer than "
            f"one global batch of {ds.global_batch} ({where}); lower it, raise data.max_train_blocks, "
            "or give more text"
        )


def execute(run: Run) -> dict[str, Any]:
    if not (run.layout.tokenizer / "tokenizer_config.json").is_file():
        _save_tokenizer(run)
    info: dict[str, Any] = {}
    if not (run.layout.blocks / "dataset_dict.json").is_file():
        cfg = run.config
        start = time.perf_counter()
        # rank 0 builds the blocks while the other ranks of its node wait: it takes their cores
        processes = torch.get_num_threads() * int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        _, made = data.stream_blocks(
            cfg.data,
            run.tokenizer,
            not run.causal,
            run.layout.blocks,
            cfg.hub_mirrors,
            cfg.seed,
            num_proc=processes,
        )
        info["figures"] = {
            "documents": made.documents,
            "text_mb": round(made.text_bytes / 1e6, 3),
            "tokens": made.tokens,
            "blocks": made.blocks,
            "seconds": round(time.perf_counter() - start, 2),
            "processes": processes,
            **data.peak_memory_mb(),
        }
        run.metrics.log("data", event="blocks_built", **info["figures"])
    check_global_batch(run)
    return {
        **info,
        "splits": data.summary(run.blocks),
        "tokenizer": run.tokenizer_name,
        "tokenizer_vocab": len(run.tokenizer),
    }


# --- what later stages load (through Run, which keeps one copy per process) ------------------


def load_tokenizer(run: Run) -> PreTrainedTokenizerBase:
    if not (run.layout.tokenizer / "tokenizer_config.json").is_file():
        raise ConfigError(f"no tokenizer in {run.dir} yet; run the data stage first (elm-train stage data)")
    return AutoTokenizer.from_pretrained(run.layout.tokenizer)


def load_blocks(run: Run) -> datasets.DatasetDict:
    if not (run.layout.blocks / "dataset_dict.json").is_file():
        raise ConfigError(f"no data blocks in {run.dir} yet; run the data stage first (elm-train stage data)")
    return datasets.load_from_disk(str(run.layout.blocks))


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    plan.tokens_text = "the corpus, tokenised once"
    plan.tokens = None
    per_token = block_bytes_per_token(ctx.vocab or ctx.config.search_space().backbone.vocab_size)
    if ctx.train_blocks is None:
        plan.disk, plan.disk_text = None, f"N x {byte_size(ctx.block * per_token)}"
        return
    blocks = ctx.train_blocks + (ctx.valid_blocks or 0)
    plan.disk = blocks * ctx.block * per_token
    plan.tokens = blocks * ctx.block


STAGE = Stage(
    "data",
    "tokenizer, and the corpus cut into token blocks",
    execute,
    reads=(),
    writes=("tokenizer", "blocks"),
    ranks="rank0",
    settings=("data", "tokenizer", "hub_mirrors"),
    estimate=estimate,
    loaders=(load_tokenizer, load_blocks),
)
