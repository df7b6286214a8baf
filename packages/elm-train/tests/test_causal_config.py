"""Config rules of the causal family: one teacher, a tokenizer that exists before tokenising,
causal-only settings refused for the masked family, and family-dependent defaults."""

import pytest
import torch
import yaml
from pydantic import ValidationError

from elm_train.config import (
    ConfigError,
    KDConfig,
    SupernetStageConfig,
    TeacherConfig,
    TeacherTrainConfig,
    TokenizerConfig,
    load_config,
)
from elm_train.pipeline import Run, run_stage
from elm_train.presets import preset


def test_causal_presets_resolve_their_defaults():
    demo = preset("demo-clm")
    assert demo.causal and demo.task_names == [] and demo.tokenizer_source == "bpe"
    assert demo.search_space().name == "demo-clm"
    assert demo.supernet.lm_weight_for(demo.causal) == 1.0
    assert demo.supernet.kd.logits_weight_for(demo.causal) == 1.0
    masked = preset("demo")
    assert (
        not masked.causal
        and masked.task_names == ["tweet-sentiment", "ptb-word-order"]
        and masked.tokenizer_source == "teacher"
    )
    assert masked.supernet.lm_weight_for(masked.causal) == 0.0
    assert masked.supernet.kd.logits_weight_for(masked.causal) == 0.0


def test_one_teacher_either_loaded_or_trained():
    with pytest.raises(ValidationError, match="set teacher.name_or_path to null"):
        TeacherConfig(name_or_path="gpt2", train=TeacherTrainConfig())
    with pytest.raises(ValidationError, match="no teacher"):
        TeacherConfig(name_or_path=None)
    with pytest.raises(ValidationError, match="hidden=100 is not divisible by heads=3"):
        TeacherTrainConfig(hidden=100, heads=3)


def test_switching_to_real_gpt2_is_one_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "preset": "demo-clm",
                "teacher": {"name_or_path": "gpt2", "train": None},
                "tokenizer": {"source": "teacher"},
            }
        )
    )
    config = load_config(path)
    assert config.teacher.train is None and config.tokenizer_source == "teacher"
    path.write_text(yaml.safe_dump({"preset": "demo-clm", "tokenizer": {"source": "teacher"}}))
    with pytest.raises(ConfigError, match="tokenizer.source 'teacher' needs a teacher checkpoint"):
        load_config(path)
    path.write_text(yaml.safe_dump({"preset": "demo-clm", "tokenizer": {"source": "gpt2-files"}}))
    with pytest.raises(ConfigError, match="tokenizer.files is required"):
        load_config(path)


def test_causal_only_settings_are_refused_for_the_masked_family():
    tiny = preset("tiny")
    bad = tiny.model_dump()
    bad["supernet"] = SupernetStageConfig(kd=KDConfig(logits_weight=0.5), lm_weight=1.0).model_dump()
    with pytest.raises(
        ValidationError, match="supernet.kd.logits_weight, supernet.lm_weight apply to the causal family only"
    ):
        type(tiny).model_validate(bad)
    bad = tiny.model_dump()
    bad["teacher"] = {"name_or_path": None, "train": {}}
    bad["tokenizer"] = {"source": "bpe"}
    with pytest.raises(ValidationError, match=r"teacher.train \(a GPT-2-style causal teacher\) apply"):
        type(tiny).model_validate(bad)


def _gpt2_checkpoint(directory, vocab: int | None = None):
    """A GPT-2 checkpoint with a BPE tokenizer in one directory, as a downloaded gpt2 would be."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from elm_train.tokenizer import train_bpe

    torch.manual_seed(0)
    tok = train_bpe(["the company said its profit rose", "the market fell"] * 10, vocab_size=300)
    size = vocab or len(tok)
    config = GPT2Config(
        vocab_size=size, n_embd=16, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    GPT2LMHeadModel(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return tok


def test_a_checkpoint_teacher_brings_its_tokenizer(tmp_path):
    tok = _gpt2_checkpoint(tmp_path / "gpt2")
    config = preset("tiny-clm").model_copy(
        update={"teacher": TeacherConfig(name_or_path=str(tmp_path / "gpt2"))}
    )
    assert config.tokenizer_source == "bpe"  # the preset asks for a trained BPE explicitly
    config = config.model_copy(update={"tokenizer": TokenizerConfig()})  # auto: the teacher's own
    assert config.tokenizer_source == "teacher"
    run = Run.open(config, tmp_path / "run")
    run_stage(run, "data", echo=lambda _: None)
    info = run_stage(run, "teacher", echo=lambda _: None)
    assert info["stand_in"] is False and info["source"] == str(tmp_path / "gpt2")
    assert (info["layers"], info["hidden"], info["vocab_size"]) == (2, 16, len(tok))
    # the run keeps a copy of the teacher's tokenizer (so a resumed run reads the same files),
    # and trains no stand-in teacher
    assert run.tokenizer.get_vocab() == tok.get_vocab()
    assert (tmp_path / "run" / "tokenizer" / "tokenizer.json").is_file()
    assert not (tmp_path / "run" / "teacher" / "model").exists()


def test_teacher_and_tokenizer_must_share_the_vocabulary(tmp_path):
    _gpt2_checkpoint(tmp_path / "gpt2", vocab=64)
    config = preset("tiny-clm").model_copy(
        update={"teacher": TeacherConfig(name_or_path=str(tmp_path / "gpt2"))}
    )
    run = Run.open(config.model_copy(update={"tokenizer": TokenizerConfig()}), tmp_path / "run")
    run_stage(run, "data", echo=lambda _: None)
    with pytest.raises(ConfigError, match="vocabulary has 64 entries but the tokenizer"):
        _ = run.teacher


def test_later_stages_ask_for_the_stand_in_first(tmp_path):
    run = Run.open(preset("tiny-clm"), tmp_path / "run")
    with pytest.raises(ConfigError, match="run elm-train stage teacher"):
        _ = run.teacher_source
