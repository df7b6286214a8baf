"""The import paths of modules moved into wings still work for one release: the same module
object (so monkeypatching the old path patches the code), with a warning naming the new path."""

from __future__ import annotations

import importlib
import sys

import pytest

from elm_train._moved import MOVED


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_path_is_the_moved_module_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_a_name_set_on_the_old_path_is_seen_by_the_code(monkeypatch):
    sys.modules.pop("elm_train.precision", None)
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("elm_train.precision")
    from elm_train.runtime import precision

    monkeypatch.setattr(old, "unsupported_reason", lambda p: f"{p}: not here")
    with pytest.raises(precision.PrecisionError, match="fp16: not here"):
        precision.check_precision("fp16")
