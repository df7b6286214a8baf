"""How big a run is before it runs: what ``--plan`` and every stage's estimate share.

The context of a plan (:class:`PlanContext`: the config, the process count, the training blocks,
the parameter counts of teacher, supernet and student) and the sizes that can be known without
downloading: hub data and models from their documented sizes (the tables below), local ones read,
and what cannot be known before the data stage has run (the number of training blocks of a hub
corpus) said so, with the formula. Each stage's own estimate lives in its stage module.

Disk figures are estimates from the sizes of what the stages write: a DeepSpeed checkpoint holds
about 16 bytes per trained parameter (the module's weights twice, AdamW's two moments, and under
bf16/fp16 the fp32 master weights), exported weights 4 bytes (fp32), packed blocks 2 bytes a token
(4 for a vocabulary beyond 65,536 entries).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import elm_eval
import elm_space
from elm_train.config import DataSource, RunConfig

CHECKPOINT_BYTES_PER_PARAM = 16
EXPORT_BYTES_PER_PARAM = 4
KEEP_CHECKPOINTS = 2
"""Every training loop keeps its two newest checkpoints."""


def block_bytes_per_token(vocab: int | None) -> int:
    """What the data stage stores a token id in: ``uint16`` while the vocabulary fits it."""
    return 2 if vocab is not None and vocab <= 65_536 else 4


DOCUMENTED_CORPORA: dict[tuple[str, str | None], dict[str, int]] = {
    ("wikimedia/wikipedia", "20231101.en"): {"train": 6_407_814},
    # the original release's two text files, a row per line: bookcorpus/bookcorpus's card counts
    # 74,004,228 rows of the same files (its script reads them from the same archive)
    ("rojagtap/bookcorpus", None): {"train": 74_004_228},
}
"""Documents per split of hub corpora the presets name (the dataset cards)."""


DOCUMENTED_MODELS: dict[str, tuple[int, int]] = {
    "bert-base-uncased": (109_482_240, 440_449_768),
    "google-bert/bert-base-uncased": (109_482_240, 440_449_768),
    "gpt2": (124_439_808, 548_105_171),
    "openai-community/gpt2": (124_439_808, 548_105_171),
}
"""(parameters without task heads, bytes of ``model.safetensors``) of hub teachers the docs name."""


GLUE_SPLITS: dict[str, dict[str, int]] = {
    "cola": {"train": 8_551, "validation": 1_043, "test": 1_063},
    "sst2": {"train": 67_349, "validation": 872, "test": 1_821},
    "mrpc": {"train": 3_668, "validation": 408, "test": 1_725},
    "qqp": {"train": 363_846, "validation": 40_430, "test": 390_965},
    "stsb": {"train": 5_749, "validation": 1_500, "test": 1_379},
    "mnli": {
        "train": 392_702,
        "validation_matched": 9_815,
        "validation_mismatched": 9_832,
        "test_matched": 9_796,
        "test_mismatched": 9_847,
    },
    "qnli": {"train": 104_743, "validation": 5_463, "test": 5_463},
    "rte": {"train": 2_490, "validation": 277, "test": 3_000},
    "wnli": {"train": 635, "validation": 71, "test": 146},
    "ax": {"test": 1_104},
}
"""Rows per split of ``nyu-mll/glue`` (its dataset card)."""


GLUE_DATASET = "nyu-mll/glue"


SQUAD_SPLITS: dict[str, dict[str, int]] = {
    "rajpurkar/squad": {"train": 87_599, "validation": 10_570},
    "rajpurkar/squad_v2": {"train": 130_319, "validation": 11_873},
}
"""Questions per split of SQuAD v1.1 and v2.0 (their dataset cards); a question whose context is
longer than a window gives more than one training window, so steps are a lower bound."""


def task_spec(name: str) -> elm_eval.TaskSpec | elm_eval.QATaskSpec:
    return elm_eval.get_qa_task(name) if elm_eval.is_qa_task(name) else elm_eval.get_task(name)


@dataclass
class StagePlan:
    name: str
    summary: str
    runs: bool = True
    steps: str = "-"
    tokens: int | None = 0
    """Tokens through the models (training and scoring); None: not known before the data stage."""
    tokens_text: str | None = None
    disk: int | None = 0
    """Bytes the stage leaves in the run directory; None: not known before the data stage."""
    disk_text: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class PlanContext:
    config: RunConfig
    processes: int
    train_blocks: int | None
    valid_blocks: int | None
    blocks_note: str
    vocab: int | None
    teacher_params: int | None
    student_params: int
    supernet_params: int

    @property
    def global_batch(self) -> int:
        """Blocks per optimizer step over all processes: the same on any process count."""
        return self.config.deepspeed.global_batch

    @property
    def block(self) -> int:
        return self.config.data.block_size

    def steps(self, epochs: int, cap: int | None) -> tuple[int | None, str]:
        """Optimizer steps of a loop over the training blocks: exact, or the formula."""
        if self.train_blocks is not None:
            per_epoch = self.train_blocks // self.global_batch
            per_epoch = min(per_epoch, cap) if cap else per_epoch
            return epochs * per_epoch, f"{epochs * per_epoch:,}"
        if cap:
            return epochs * cap, f"<= {epochs * cap:,}"
        return None, f"{epochs} x N/{self.global_batch:,}"


def si(n: float, unit: str = "") -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {prefix}{unit}"
    return f"{n:,.0f} {unit}".rstrip()


def byte_size(n: int) -> str:
    return si(n, "B") if n >= 1000 else f"{n} B"


def _rows(path: Path) -> int:
    """Rows of a parquet file (from its metadata) or a JSON-lines file (its non-empty lines)."""
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def mirror_rows(directory: str | Path, config_name: str | None) -> dict[str, int] | None:
    """Rows per split of a local copy in the hub's layout, from its parquet files' metadata or its
    JSON-lines files' lines (the ``README.md`` header's ``configs``; nothing is converted or
    cached); None when the copy is not of that form."""
    import yaml

    directory = Path(directory).expanduser()
    readme = directory / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if not text.startswith("---"):
        return None
    try:
        header = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    entries = [c for c in header.get("configs") or [] if isinstance(c, dict)]
    entry = next((c for c in entries if c.get("config_name") == (config_name or "default")), None)
    files = entry.get("data_files") if entry else None
    if isinstance(files, dict):
        items = list(files.items())
    elif isinstance(files, list):
        items = [(f.get("split", "train"), f.get("path")) for f in files if isinstance(f, dict)]
    else:
        items = [("train", files)] if isinstance(files, str) else []
    out: dict[str, int] = {}
    for split, patterns in items:
        patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
        paths = sorted({p for pattern in patterns for p in directory.glob(pattern)})
        if not paths or any(p.suffix not in (".parquet", ".jsonl") for p in paths):
            return None
        out[str(split)] = sum(_rows(p) for p in paths)
    return out or None


def _corpus_documents(config: RunConfig, source: DataSource) -> tuple[dict[str, int], str]:
    """Documents per split of a hub source: read in its local copy, else documented (a copy the
    plan cannot read, one not in parquet, is taken to be what the card documents)."""
    mirror = config.hub_mirrors.get(str(source.hub_id))
    rows = mirror_rows(mirror, source.hub_config) if mirror is not None else None
    if rows:
        return rows, "in the local copy"
    documented = DOCUMENTED_CORPORA.get((str(source.hub_id), source.hub_config), {})
    return documented, "documented" if documented else ""


def local_dir(config: RunConfig, name: str) -> str | None:
    """The local directory a teacher/tokenizer name loads from, or None for a hub id not mirrored."""
    from elm_train import teacher as teacher_lib

    where = teacher_lib.resolve(config.hub_source(name))
    return where if Path(where).is_dir() else None


def _local_tokenizer(config: RunConfig) -> Any | None:
    from transformers import AutoTokenizer

    from elm_train import tokenizer as tokenizer_lib

    source = config.tokenizer_source
    if source == "gpt2-files":
        assert config.tokenizer.files is not None
        return tokenizer_lib.gpt2_from_files(config.tokenizer.files)
    if source == "teacher":
        where = local_dir(config, str(config.teacher.tokenizer or config.teacher.name_or_path))
        return AutoTokenizer.from_pretrained(where) if where else None
    return None  # a BPE is trained by the data stage


def _count_blocks(config: RunConfig, tokenizer: Any, masked: bool) -> tuple[int, int]:
    """The blocks the data stage will make of a local corpus (its mix of the sources included)."""
    from elm_train.data import block_splits

    blocks = block_splits(config.data, tokenizer, masked, seed=config.seed)
    return len(blocks["train"]), len(blocks["validation"])


def _hub_documents_note(config: RunConfig) -> tuple[str, bool]:
    """' from D documents (how)' of the hub sources (each named when there are several), and
    whether every one of them is read from a local copy."""
    hub = [source for _, source in config.data.mix() if source.kind == "hub"]
    parts = []
    for source in hub:
        docs, how = _corpus_documents(config, source)
        of = f" of {source.hub_id}" if len(hub) > 1 else ""
        if docs.get("train"):
            parts.append(f"{docs['train']:,} documents{of} ({how})")
        elif of:
            parts.append(f"an unknown number{of}")
    mirrored = all(str(source.hub_id) in config.hub_mirrors for source in hub)
    return (f" from {' + '.join(parts)}" if parts else ""), mirrored


def _blocks(config: RunConfig, run_dir: Path | None, tokenizer: Any) -> tuple[int | None, int | None, str]:
    from elm_train.pipeline.layout import RunLayout

    data = config.data
    what = f"training blocks of {data.block_size} tokens"
    if run_dir is not None:
        blocks = RunLayout(run_dir).blocks
        if (blocks / "dataset_dict.json").is_file():
            import datasets

            saved = datasets.load_from_disk(str(blocks))
            train = len(saved["train"])
            return train, len(saved["validation"]), f"N = {train:,} {what}, counted in {blocks}"
    has_hub = any(source.kind == "hub" for _, source in data.mix())
    if not has_hub and tokenizer is not None:
        train, valid = _count_blocks(config, tokenizer, masked=not config.causal)
        return train, valid, f"N = {train:,} {what}, counted on the local corpus"
    if data.max_train_blocks:
        note = f"N <= {data.max_train_blocks:,} {what} (data.max_train_blocks)"
        return data.max_train_blocks, data.max_valid_blocks, note
    if has_hub:
        known, mirrored = _hub_documents_note(config)
        why = f"unknown until the corpus is {'read' if mirrored else 'downloaded'} and tokenised"
    else:
        known, why = "", "unknown until the data stage trains the tokenizer"
    note = (
        f"N = {what}{known}: {why}; run `elm-train stage data` with the same --run-dir, then --plan "
        "again for exact figures"
    )
    return None, data.max_valid_blocks, note


def _count(build: Callable[[], Any]) -> int:
    import torch

    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def _teacher_params(config: RunConfig, vocab: int | None) -> int | None:
    from transformers import AutoConfig, AutoModel, GPT2Config, GPT2LMHeadModel

    train = config.teacher.train
    if train is not None:
        positions = max(config.data.block_size, config.eval.latency_seq_len)
        gpt2 = GPT2Config(
            vocab_size=vocab or config.tokenizer.vocab_size,
            n_positions=positions,
            n_embd=train.hidden,
            n_layer=train.layers,
            n_head=train.heads,
        )
        return _count(lambda: GPT2LMHeadModel(gpt2))
    name = str(config.teacher.name_or_path)
    where = local_dir(config, name)
    if where is None:
        return DOCUMENTED_MODELS.get(name, (None, None))[0]
    auto = AutoConfig.from_pretrained(where)
    return _count(lambda: AutoModel.from_config(auto))


def _vocab(config: RunConfig, tokenizer: Any) -> int | None:
    if tokenizer is not None:
        return len(tokenizer)
    if config.tokenizer_source == "bpe":
        return config.tokenizer.vocab_size
    return None  # the space's own (BERT's 30,522 for the paper spaces)


def plan_context(config: RunConfig, run_dir: Path | None, processes: int) -> PlanContext:
    from elm_train.models import ElmSupernet

    tokenizer = _local_tokenizer(config)
    train, valid, note = _blocks(config, run_dir, tokenizer)
    vocab = _vocab(config, tokenizer)
    space = config.search_space(vocab_size=vocab)
    budget = config.search.param_budget or space.param_budget
    return PlanContext(
        config=config,
        processes=processes,
        train_blocks=train,
        valid_blocks=valid,
        blocks_note=note,
        vocab=vocab,
        teacher_params=_teacher_params(config, vocab),
        student_params=int(budget or elm_space.mean_params(space)),
        supernet_params=_count(lambda: ElmSupernet(space, config.model)),
    )


def loop_disk(params: int) -> int:
    """A training loop's checkpoints and its exported model."""
    return params * (KEEP_CHECKPOINTS * CHECKPOINT_BYTES_PER_PARAM + EXPORT_BYTES_PER_PARAM)


def add_tokens(ctx: PlanContext, plan: StagePlan, steps: int | None, copies: int = 1) -> None:
    per_step = ctx.global_batch * ctx.block
    if steps is None:
        plan.tokens, plan.tokens_text = None, f"{si(per_step * copies)} a step"
    else:
        plan.tokens = steps * per_step * copies


def students_count(config: RunConfig) -> int:
    return 2 if config.baseline.enabled else 1


def task_rows(ctx: PlanContext, name: str) -> tuple[int | None, int | None, str]:
    """(train, validation) examples of a task before the caps, and where the numbers come from."""
    spec = task_spec(name)
    source = spec.source
    mirror = ctx.config.hub_mirrors.get(source.dataset) if isinstance(source, elm_eval.HubSource) else None
    if isinstance(source, elm_eval.HubSource) and mirror is not None:
        rows = mirror_rows(mirror, source.config) or {}
        how = "in the local copy" if rows else "local copy, not counted"
        return rows.get(source.splits["train"]), rows.get(source.splits["validation"]), how
    if isinstance(source, elm_eval.HubSource) and source.dataset == GLUE_DATASET:
        sizes = GLUE_SPLITS.get(str(source.config), {})
        return sizes.get(source.splits["train"]), sizes.get(source.splits["validation"]), "documented"
    if isinstance(source, elm_eval.HubSource) and source.dataset in SQUAD_SPLITS:
        sizes = SQUAD_SPLITS[source.dataset]
        return sizes["train"], sizes["validation"], "documented; windows: more"
    if isinstance(source, elm_eval.HubSource):
        return None, None, "unknown until downloaded"
    if isinstance(spec, elm_eval.QATaskSpec):
        qa = elm_eval.load_qa_data(spec)
        return len(qa.train), len(qa.validation), "counted"
    data = elm_eval.load_task_data(spec)
    return len(data.train), len(data.validation), "counted"


def capped_rows(ctx: PlanContext, name: str, parts: list[str]) -> tuple[int, int | None, str] | None:
    """A task's training and validation rows under the tasks section's caps, and where the sizes
    come from; None (with a note in ``parts``) when they are unknown before downloading."""
    train, valid, how = task_rows(ctx, name)
    if train is None:
        parts.append(f"{name}: sizes {how}")
        return None
    cfg = ctx.config.tasks
    if cfg.max_train_examples:
        train = min(train, cfg.max_train_examples)
    if cfg.max_eval_examples and valid is not None:
        valid = min(valid, cfg.max_eval_examples)
    return train, valid, how
