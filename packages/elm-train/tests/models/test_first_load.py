"""A user's first load of an exported student, in an interpreter that has only torch and
transformers: the model card's own snippet, run verbatim with stdin closed, loads the tokenizer (a
stock one, named by ``tokenizer_class`` in its config) and the model and prints nothing alarming:
no "Do you wish to run the custom code?" prompt, no "You are using a model of type elm to
instantiate a model of type ``" warning. Both families: a BERT word-piece tokenizer next to a
masked model, a trained byte-level BPE next to a causal one.

``python -I -S`` with only the directories of torch and transformers on sys.path (so the editable
installs' .pth files never run), as in test_remote_code.py; elm_train and elm_space are proven
unimportable there first.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import torch
import transformers
from transformers import BertTokenizerFast

import elm_space
from elm_train.models import ElmForCausalLM, ElmForMaskedLM, elm_config
from elm_train.models.model_card import ModelCardInfo, write_model_card
from elm_train.tokenizer import train_bpe

PRELUDE = """
import importlib.util, json, sys
sys.path[:0] = json.loads(sys.argv[1])
print("missing:", [m for m in ("elm_train", "elm_space") if importlib.util.find_spec(m) is None])
"""
ALARMING = ("custom code", "Do you wish", "You are using a model of type", "trust_remote_code", "[y/N]")


def _export(directory: Path, model: torch.nn.Module, tokenizer, head: str, arch) -> str:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    info = ModelCardInfo.for_architecture(arch, name=directory.name, head=head, model_id=str(directory))
    card = write_model_card(directory, info).read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    return snippet + "print('loaded:', type(tokenizer).__name__, type(model).__module__.split('.')[0])\n"


def test_the_cards_snippet_loads_an_export_quietly(tmp_path, spaces):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "movie", "was", "good"]
    bert = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    bpe = train_bpe(["the movie was good and the film was fun"] * 20, vocab_size=300)
    masked = elm_space.sample(spaces["tiny"], 1)
    causal = elm_space.sample(spaces["tiny_causal"], 2)
    code = PRELUDE
    code += _export(tmp_path / "masked", ElmForMaskedLM(elm_config(masked)), bert, "masked_lm", masked)
    code += _export(tmp_path / "causal", ElmForCausalLM(elm_config(causal)), bpe, "causal_lm", causal)
    for name in ("masked", "causal"):
        saved = json.loads((tmp_path / name / "tokenizer_config.json").read_text())
        assert saved["tokenizer_class"] in ("BertTokenizer", "TokenizersBackend", "PreTrainedTokenizerFast")
    site_dirs = sorted({str(Path(m.__file__).parents[1]) for m in (torch, transformers)})
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, json.dumps(site_dirs)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "missing: ['elm_train', 'elm_space']" in run.stdout
    loaded = [line for line in run.stdout.splitlines() if line.startswith("loaded:")]
    assert loaded == [
        "loaded: BertTokenizer transformers_modules",
        f"loaded: {type(transformers.AutoTokenizer.from_pretrained(tmp_path / 'causal')).__name__} "
        "transformers_modules",
    ]
    assert not [word for word in ALARMING if word in output], output[-3000:]
