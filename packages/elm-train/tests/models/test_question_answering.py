"""ElmForQuestionAnswering against independent routes: its own encoder plus a hand-applied linear
layer, transformers' BertForQuestionAnswering on exported weights, save/load, remote code, the card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoConfig, AutoModelForQuestionAnswering, BertForQuestionAnswering
from transformers.modeling_outputs import QuestionAnsweringModelOutput

import elm_space
from elm_space import BlockKind
from elm_train.models import (
    ElmForQuestionAnswering,
    ElmModelError,
    elm_config,
    export_bert,
)
from elm_train.models.model_card import ModelCardInfo, write_model_card


def _qa(arch, perturb, seed=0) -> ElmForQuestionAnswering:
    model = ElmForQuestionAnswering(elm_config(arch))
    perturb(model, seed=seed)
    return model.eval()


def test_logits_and_loss_match_a_hand_applied_head(spaces, perturb, batch):
    model = _qa(elm_space.sample(spaces["tiny"], 3), perturb)
    starts, ends = torch.tensor([1, 4, 2]), torch.tensor([3, 4, 5])
    out = model(**batch, start_positions=starts, end_positions=ends, output_hidden_states=True)
    assert isinstance(out, QuestionAnsweringModelOutput)
    hidden = model.elm(**batch).last_hidden_state.double()
    weight, bias = model.qa_outputs.weight.double(), model.qa_outputs.bias.double()
    logits = hidden @ weight.T + bias
    torch.testing.assert_close(out.start_logits.double(), logits[..., 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.end_logits.double(), logits[..., 1], atol=1e-5, rtol=0)
    expected = (F.cross_entropy(logits[..., 0], starts) + F.cross_entropy(logits[..., 1], ends)) / 2
    torch.testing.assert_close(out.loss.double(), expected, atol=1e-5, rtol=0)
    # the encoder fields distillation reads come through
    assert len(out.hidden_states) == len(out.attention_outputs) + 1 == model.config.num_hidden_layers + 1
    # a position past the sequence is ignored (transformers' rule), for start and end alike
    beyond = model(**batch, start_positions=torch.tensor([1, 99, 2]), end_positions=torch.tensor([3, 99, 5]))
    kept = [0, 2]
    expected = (
        F.cross_entropy(logits[kept, :, 0], starts[kept]) + F.cross_entropy(logits[kept, :, 1], ends[kept])
    ) / 2
    torch.testing.assert_close(beyond.loss.double(), expected, atol=1e-5, rtol=0)
    with pytest.raises(ElmModelError, match="both start_positions and end_positions"):
        model(**batch, start_positions=starts)


def test_bert_export_gives_transformers_own_qa_outputs(
    tmp_path, spaces, uniform_architecture, perturb, batch
):
    arch = uniform_architecture(spaces["tiny"], BlockKind.BERT, heads=2)
    model = _qa(arch, perturb, seed=4)
    export_bert(model, tmp_path)
    bert = AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert type(bert) is BertForQuestionAnswering
    positions = {"start_positions": torch.tensor([0, 2, 5]), "end_positions": torch.tensor([1, 3, 5])}
    ours, theirs = model(**batch, **positions), bert(**batch, **positions)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours.start_logits[real], theirs.start_logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.end_logits[real], theirs.end_logits[real], atol=1e-5, rtol=0)
    full = {"input_ids": batch["input_ids"][[0, 2]]}  # no padding: the losses see the same logits
    pos = {k: v[[0, 2]] for k, v in positions.items()}
    torch.testing.assert_close(model(**full, **pos).loss, bert(**full, **pos).loss, atol=1e-5, rtol=1e-5)


def test_save_and_load_through_the_auto_class(tmp_path, spaces, perturb, batch):
    arch = elm_space.sample(spaces["tiny_factorized"], 10)
    model = _qa(arch, perturb)
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.auto_map["AutoModelForQuestionAnswering"] == "modeling_elm.ElmForQuestionAnswering"
    loaded = AutoModelForQuestionAnswering.from_pretrained(tmp_path)
    assert type(loaded) is ElmForQuestionAnswering
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, atol=0, rtol=0)
    torch.testing.assert_close(loaded(**batch).start_logits, model(**batch).start_logits, atol=0, rtol=0)


def test_model_card_counts_the_qa_head(tmp_path, spaces, perturb):
    arch = elm_space.sample(spaces["tiny"], 2)
    model = _qa(arch, perturb)
    model.save_pretrained(tmp_path)
    info = ModelCardInfo.for_architecture(
        arch, name="qa", head="question_answering", scores={"squad_v2 f1": 61.5}
    )
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert info.head_parameters == model.config.hidden_size * 2 + 2
    text = write_model_card(tmp_path, info).read_text()
    assert "pipeline_tag: question-answering" in text
    assert "AutoModelForQuestionAnswering.from_pretrained(" in text


LOADER = """
import importlib.util, json, sys
sys.path[:0] = json.loads(sys.argv[1])
missing = [name for name in ("elm_space", "elm_train", "elm_distill") if importlib.util.find_spec(name) is None]
import torch
from transformers import AutoModelForQuestionAnswering
model = AutoModelForQuestionAnswering.from_pretrained(sys.argv[2], trust_remote_code=True)
ids = torch.tensor(json.loads(sys.argv[3]))
out = model(input_ids=ids)
print(json.dumps({"missing": missing, "module": type(model).__module__, "start": out.start_logits.tolist()}))
"""


@pytest.mark.slow
def test_remote_code_loads_the_qa_head_without_our_packages(tmp_path, spaces, perturb):
    """As tests/models/test_remote_code.py: ``python -I -S`` with only torch and transformers."""
    model = _qa(elm_space.sample(spaces["tiny"], 5), perturb)
    model.save_pretrained(tmp_path / "model")
    ids = [[5, 17, 42, 8, 99, 1]]
    site_dirs = sorted({str(Path(m.__file__).parents[1]) for m in (torch, transformers)})
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "HOME": str(tmp_path)}
    run = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            LOADER,
            json.dumps(site_dirs),
            str(tmp_path / "model"),
            json.dumps(ids),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["missing"] == ["elm_space", "elm_train", "elm_distill"]
    assert result["module"].startswith("transformers_modules")
    expected = model(input_ids=torch.tensor(ids)).start_logits
    torch.testing.assert_close(torch.tensor(result["start"]), expected, atol=1e-5, rtol=0)
