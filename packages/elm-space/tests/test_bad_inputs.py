"""Issue 16: every bad input a new user tried ends in one SpaceError naming the field or file.

Each example below once gave a raw traceback (IndexError, ZeroDivisionError, UnicodeDecodeError)
or was silently accepted; now each raises SpaceError with a one-line message saying what is wrong.
"""

from __future__ import annotations

import random

import pytest

import elm_space as es
from elm_space import SpaceError


def _arch(space: es.SearchSpace) -> es.Architecture:
    return es.Architecture.from_string("0:B32h2|2:M16/16h4|1:B64h4", space.backbone)


CASES = {
    # raw tracebacks before
    "with_heads zero": (
        lambda s: _arch(s).with_heads([0, 2, 2]),
        r"with_heads: layers\[0\]\.heads: .*greater than 0",
    ),
    "options out of range": (lambda s: s.options(99), r"layer 99 is not in space 'tiny' \(layers 0\.\.2\)"),
    "sample_choice out of range": (
        lambda s: es.sample_choice(s, 99, random.Random(0)),
        r"layer 99 is not in space 'tiny'",
    ),
    "grow_ranked layer out of range": (
        lambda s: es.grow_ranked(s, [(7, 0)], limit=1),
        r"grow_ranked: layer 7 is not in the space \(0\.\.2\)",
    ),
    "grow_ranked candidate out of range": (
        lambda s: es.grow_ranked(s, [(0, 9)], limit=1),
        r"grow_ranked: candidate 9 is not in layer 0 \(0\.\.3\)",
    ),
    # silently accepted before
    "with_heads negative": (lambda s: _arch(s).with_heads([-2, 2, 2]), r"layers\[0\]\.heads: .*got -2"),
    "with_heads not dividing": (
        lambda s: _arch(s).with_heads([2, 3, 2]),
        r"layers\[1\]\.heads=3 does not divide the attention width 16",
    ),
    "unknown head name": (lambda s: es.count_params(_arch(s), head="mlm"), r"head='mlm' is not one of"),
    "unknown head name for flops": (lambda s: es.count_flops(_arch(s), 8, head="lm"), r"head='lm'"),
    "negative labels": (
        lambda s: es.count_params(_arch(s), head="classification", num_labels=-5),
        r"num_labels=-5 must be at least 1",
    ),
    "negative labels without a classifier": (
        lambda s: es.head_params(s.backbone, "none", num_labels=-5),
        r"num_labels=-5",
    ),
    "negative options index": (lambda s: s.options(-1), r"layer -1 is not in space"),
    "grow_ranked negative limit": (lambda s: es.grow_ranked(s, [(0, 0)], limit=-1), r"limit=-1 must be >= 0"),
    "grow_ranked negative budget": (
        lambda s: es.grow_ranked(s, [(0, 0)], limit=1, budget=-5),
        r"budget=-5 must be a positive",
    ),
    "sample_many negative count": (lambda s: es.sample_many(s, -5, 0), r"n=-5 must be >= 0"),
    "float seed": (lambda s: es.sample(s, 1.5), r"seed=1\.5 is not an int"),
    "zero sequence length": (lambda s: es.count_flops(_arch(s), 0), r"seq_len=0 must be positive"),
    "grow with a bad pair": (
        lambda s: es.grow(s, [(0,)]),
        r"grow: \(0,\) is not a \(layer, candidate\) pair",
    ),
    "token with zero heads": (lambda s: es.LayerChoice.from_token("0:B32h0"), r"'0:B32h0': heads: "),
    "bad preset override": (lambda s: es.preset("tiny", hidden_size=-3), r"preset 'tiny': hidden_size: "),
    "unknown dump format": (lambda s: es.dumps(s, "xml"), r"format 'xml' is not 'json' or 'yaml'"),
    "unknown loads format": (lambda s: es.loads(es.SearchSpace, "{}", "toml"), r"format 'toml'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_call_raises_one_line_space_error(tiny, name):
    call, message = CASES[name]
    with pytest.raises(SpaceError, match=message) as info:
        call(tiny)
    assert "\n" not in str(info.value)


FILES = {
    "binary JSON": (
        "space.json",
        b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe",
        r"space\.json, line 1: not UTF-8 text \(byte 0x89\)",
    ),
    "binary after a first line": (
        "space.json",
        b'{\n"name": "\xff"}',
        r"space\.json, line 2: not UTF-8 text",
    ),
    "binary YAML": ("space.yaml", b"\xff\xfe\x00b\x00", r"space\.yaml, line 1: not UTF-8 text"),
    "latin-1 YAML": ("space.yaml", "name: caf\xe9\n".encode("latin-1"), r"not UTF-8 text \(byte 0xe9\)"),
    "JSON list": (
        "space.json",
        b"[1, 2]",
        r"space\.json: invalid SearchSpace: Input should be a valid dictionary",
    ),
    "broken JSON": ("space.json", b"{not json", r"space\.json: not valid JSON"),
    "deeply nested JSON": ("space.json", b"[" * 100_000, r"space\.json: not valid JSON"),
    "bad YAML": ("space.yaml", b"a: [1,\n", r"space\.yaml: not valid YAML"),
    "empty file": ("space.yaml", b"", r"space\.yaml: invalid SearchSpace"),
    "negative heads in a file": (
        "space.json",
        b'{"backbone": {"hidden_size": 32, "vocab_size": 10}, "layers": [[{"kind": "bert", "ffn_width": 8,'
        b' "max_ffn_width": 8, "increment": 8, "heads": [-2]}]]}',
        r"space\.json: invalid SearchSpace: layers\[0\]\[0\]\.heads\[0\]: .*greater than 0 \(got -2\)",
    ),
}


@pytest.mark.parametrize("name", list(FILES))
def test_bad_file_raises_one_line_space_error_naming_it(tmp_path, name):
    filename, content, message = FILES[name]
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(SpaceError, match=message) as info:
        es.load(es.SearchSpace, path)
    assert "\n" not in str(info.value)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(es.SpaceFileNotFoundError, match="missing.json: no such file") as info:
        es.load(es.Architecture, tmp_path / "missing.json")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, SpaceError)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(SpaceError, match=r"dir\.json: not a file"):
        es.load(es.Architecture, tmp_path / "dir.json")
    with pytest.raises(SpaceError, match=r"cannot write"):
        es.save(es.preset("tiny"), tmp_path / "no" / "such" / "dir" / "space.json")


def test_unknown_preset_is_a_space_error_and_a_key_error():
    with pytest.raises(es.UnknownPresetError) as info:
        es.preset("huge")
    assert isinstance(info.value, SpaceError) and isinstance(info.value, KeyError)
    assert str(info.value).startswith("unknown search-space preset 'huge'")


def test_copies_with_changes_are_validated(tiny):
    """model_copy(update=...) skips validation; every update path here re-validates instead."""
    grown = es.grow(tiny, [(0, 0)])
    assert es.SearchSpace.model_validate(grown.model_dump()) == grown
    assert es.preset("tiny-factorized").name == "tiny-factorized"
    arch = _arch(tiny).with_heads([4, 4, 2])
    assert [layer.heads for layer in arch.layers] == [4, 4, 2]
    assert es.Architecture.model_validate(arch.model_dump()) == arch


def test_numpy_style_integers_are_accepted(tiny):
    class Index:  # what numpy and torch integers provide
        def __init__(self, value: int) -> None:
            self.value = value

        def __index__(self) -> int:
            return self.value

    assert tiny.options(Index(1)) == tiny.options(1)
    grown, chosen = es.grow_ranked(tiny, [(Index(0), Index(1))], limit=Index(1))
    assert chosen == [(0, 1)] and grown.layers[0][1].ffn_width == 96
    assert isinstance(chosen[0][0], int)
