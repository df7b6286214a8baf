"""A saved directory loads by remote code in an interpreter that cannot import our packages.

Building a fresh venv is too slow for CI, so the check runs ``python -I -S`` (no site hooks, so
the editable installs' .pth files never run) with only the directories that hold torch and
transformers on sys.path, and first proves that elm_space and elm_train are not importable there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import elm_space
from elm_train.models import ElmForMaskedLM, elm_config

LOADER = """
import importlib.util, json, sys
sys.path[:0] = json.loads(sys.argv[1])
missing = [name for name in ("elm_space", "elm_train", "elm_distill") if importlib.util.find_spec(name) is None]
import torch
from transformers import AutoModelForMaskedLM
model = AutoModelForMaskedLM.from_pretrained(sys.argv[2], trust_remote_code=True)
ids = torch.tensor(json.loads(sys.argv[3]))
logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
print(json.dumps({"missing": missing, "module": type(model).__module__, "logits": logits.tolist()}))
"""


@pytest.mark.slow
def test_remote_code_loads_without_our_packages(tmp_path, spaces, perturb):
    arch = elm_space.sample(spaces["tiny_factorized"], 12)
    model = ElmForMaskedLM(elm_config(arch))
    perturb(model)
    model.eval()
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
    expected = model(input_ids=torch.tensor(ids)).logits
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, atol=1e-5, rtol=0)
