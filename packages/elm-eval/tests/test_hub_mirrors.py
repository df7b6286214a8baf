"""A task's hub dataset read from a local copy in the hub's layout (``with_hub_mirrors``)."""

from __future__ import annotations

import datasets

import elm_eval
from elm_eval import HubSource


def _local_copy(root):
    """``nyu-mll/glue``'s ``rte`` config in the hub's layout: parquet per split, configs in README.md."""
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
            "idx": datasets.Value("int32"),
        }
    )
    lines = ["---", "configs:", "- config_name: rte", "  data_files:"]
    for split, n in {"train": 6, "validation": 4, "test": 3}.items():
        rows = {
            "sentence1": [f"a {split} premise {i}" for i in range(n)],
            "sentence2": [f"a hypothesis {i}" for i in range(n)],
            "label": [-1 if split == "test" else i % 2 for i in range(n)],
            "idx": list(range(n)),
        }
        (root / "rte").mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(
            str(root / "rte" / f"{split}-0.parquet")
        )
        lines += [f"  - split: {split}", f"    path: rte/{split}-*"]
    (root / "README.md").write_text("\n".join([*lines, "---", ""]))
    return root


def test_a_mirrored_hub_task_reads_its_local_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    copy = _local_copy(tmp_path / "glue")
    spec = elm_eval.with_hub_mirrors(elm_eval.get_task("rte"), {"nyu-mll/glue": copy})
    assert isinstance(spec.source, HubSource) and spec.source.dataset == str(copy)
    assert spec.source.config == "rte" and spec.text_columns == ["sentence1", "sentence2"]
    data = elm_eval.load_task_data(spec)
    assert (len(data.train), len(data.validation)) == (6, 4)
    assert data.train.labels == [0, 1, 0, 1, 0, 1]
    assert data.test is not None and len(data.test) == 3 and data.test.labels is None


def test_other_specs_are_unchanged():
    rte = elm_eval.get_task("rte")
    assert elm_eval.with_hub_mirrors(rte, {"someone/else": "/x"}) is rte
    tweets = elm_eval.get_task("tweet-sentiment")
    assert elm_eval.with_hub_mirrors(tweets, {"nyu-mll/glue": "/x"}) is tweets
