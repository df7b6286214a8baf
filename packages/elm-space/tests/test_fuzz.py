"""Fuzzing elm-space's public functions (issue 16) with hypothesis, derandomised so runs repeat.

Every case either succeeds with a value that passes an independent validity check written here
(so nothing invalid is silently accepted), or raises SpaceError with a one-line message; any other
exception fails the test with its traceback. Where the rule is simple (head counts, indices,
growth pairs, head names) the test also predicts which of the two must happen.

Case classes and counts (``FUZZ_CASES``; 1,550 in all, about 5 s on a busy 2-core machine):
mutated space files, mutated architecture files, random bytes and text as files, ``with_heads``,
layer indices (``options``, ``sample_choice``), ``grow``, ``grow_ranked``, parameter and FLOP
counts with head names and label counts, architecture strings, and presets with overrides.
"""

from __future__ import annotations

import itertools
import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import elm_space as es
from elm_space import SpaceError

FUZZ_CASES = {
    "space_file": 300,
    "architecture_file": 200,
    "random_file": 150,
    "with_heads": 150,
    "layer_index": 100,
    "grow": 150,
    "grow_ranked": 100,
    "counts": 150,
    "architecture_string": 150,
    "preset": 100,
}


def fuzz(name: str) -> Callable:
    return settings(
        max_examples=FUZZ_CASES[name],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def outcome(call: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, value) or (False, message) for a SpaceError; anything else propagates."""
    try:
        return True, call()
    except SpaceError as err:
        message = str(err)
        assert message and "\n" not in message, f"not one line: {message!r}"
        assert "Traceback" not in message
        return False, message


# ---------- an independent statement of what is valid ----------


def _attention_width(kind: str, hidden: int, inner: int | None) -> int:
    return hidden if kind == "bert" else inner  # type: ignore[return-value]


def assert_valid_backbone(b: es.Backbone) -> None:
    assert b.hidden_size > 0 and b.vocab_size > 0 and b.max_positions > 0 and b.type_vocab_size >= 0
    if b.embedding.kind == "plain":
        assert b.embedding.size is None
    else:
        assert b.embedding.kind == "factorized" and b.embedding.size and b.embedding.size > 0


def assert_valid_space(space: es.SearchSpace) -> None:
    assert_valid_backbone(space.backbone)
    assert space.param_budget is None or space.param_budget > 0
    assert len(space.layers) >= 1
    for layer in space.layers:
        assert len(layer) >= 1
        for c in layer:
            assert 0 < c.ffn_width <= c.max_ffn_width and c.increment > 0
            assert (c.kind == "mobile") == (c.inner_size is not None)
            assert c.inner_size is None or c.inner_size > 0
            assert len(c.heads) >= 1 and len(set(c.heads)) == len(c.heads)
            width = _attention_width(c.kind, space.backbone.hidden_size, c.inner_size)
            assert all(h > 0 and width % h == 0 for h in c.heads)
    arch = es.sample(space, 0)
    space.check(arch)
    assert_valid_arch(arch)
    assert es.loads(es.SearchSpace, es.dumps(space)) == space


def assert_valid_arch(arch: es.Architecture) -> None:
    assert_valid_backbone(arch.backbone)
    assert len(arch.layers) >= 1
    for layer in arch.layers:
        assert layer.candidate >= 0 and layer.ffn_width > 0 and layer.heads > 0
        assert (layer.kind == "mobile") == (layer.inner_size is not None)
        width = _attention_width(layer.kind, arch.backbone.hidden_size, layer.inner_size)
        assert width > 0 and width % layer.heads == 0
    assert es.count_params(arch) > 0 and es.count_flops(arch, 4) > 0
    assert es.Architecture.from_string(arch.to_string(), arch.backbone) == arch


# ---------- strategies ----------

ODD_VALUES = [0, -2, -1, 1, 3, 7, 2.5, 1e30, 10**30, "x", "", None, True, [], {}, [2], {"a": 1}]
SPACES = {
    "tiny": es.preset("tiny"),
    "tiny-factorized": es.preset("tiny-factorized"),
    "grown": es.grow(es.preset("tiny"), [(0, 0), (1, 3)]),
    "causal": es.preset("tiny", family="causal", type_vocab_size=0),
}


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


def _mutate(data: Any, rng: random.Random) -> Any:
    """One random edit: replace a value, delete a key, add an unknown key, or empty a list."""
    path = rng.choice(_paths(data)[1:])
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    action = rng.randrange(4)
    if action == 0 and isinstance(parent, dict):
        del parent[key]
    elif action == 1 and isinstance(parent[key], dict):
        parent[key]["unknown_field"] = 1
    elif action == 2 and isinstance(parent[key], list):
        parent[key] = []
    else:
        value = parent[key]
        pool = [*ODD_VALUES, "bert", "mobile", "factorized", "plain", "causal"]
        if isinstance(value, int) and not isinstance(value, bool):
            pool += [value * 2, value + 1, value - 1, value // 2]
        parent[key] = rng.choice(pool)
    return data


mutations = st.integers(min_value=0, max_value=2)


_NAMES = itertools.count()


def _write(folder: Path, suffix: str, data: Any) -> Path:
    path = folder / f"case{next(_NAMES)}{suffix}"
    text = json.dumps(data) if suffix == ".json" else yaml.safe_dump(data)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="elm-space-fuzz-") as name:
        yield Path(name)


# ---------- files ----------


@fuzz("space_file")
@given(base=st.sampled_from(sorted(SPACES)), edits=mutations, seed=st.integers(0, 2**32), json_=st.booleans())
def test_fuzzed_space_files(folder, base, edits, seed, json_):
    rng = random.Random(seed)
    data = SPACES[base].model_dump(mode="json")
    for _ in range(edits):
        data = _mutate(data, rng)
    path = _write(folder, ".json" if json_ else ".yaml", data)
    ok, value = outcome(lambda: es.load(es.SearchSpace, path))
    if ok:
        assert_valid_space(value)
    else:
        assert str(path) in value


@fuzz("architecture_file")
@given(base=st.sampled_from(sorted(SPACES)), edits=mutations, seed=st.integers(0, 2**32), json_=st.booleans())
def test_fuzzed_architecture_files(folder, base, edits, seed, json_):
    rng = random.Random(seed)
    data = es.sample(SPACES[base], seed).model_dump(mode="json")
    for _ in range(edits):
        data = _mutate(data, rng)
    path = _write(folder, ".json" if json_ else ".yml", data)
    ok, value = outcome(lambda: es.load(es.Architecture, path))
    if ok:
        assert_valid_arch(value)
    else:
        assert str(path) in value


@fuzz("random_file")
@given(
    content=st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64).map(lambda t: t.encode("utf-8")),
        st.sampled_from(
            [b"", b"{", b"[[[[", b"\x00\x01", b"- 1\n- 2", b"null", b"!!binary AAAA", b"a: !!int x"]
        ),
    ),
    suffix=st.sampled_from([".json", ".yaml", ".yml", ".txt", ""]),
    space=st.booleans(),
)
def test_random_bytes_as_files(folder, content, suffix, space):
    path = folder / f"random{len(list(folder.iterdir()))}{suffix}"
    path.write_bytes(content)
    cls = es.SearchSpace if space else es.Architecture
    ok, value = outcome(lambda: es.load(cls, path))
    if ok:
        (assert_valid_space if space else assert_valid_arch)(value)


# ---------- operations, with the outcome predicted ----------

ARCH = es.Architecture.from_string("0:B32h2|2:M16/16h4|1:B64h4", SPACES["tiny"].backbone)
WIDTHS = [32, 16, 32]  # attention width of each layer of ARCH
odd = st.sampled_from([1.5, "2", None, True, (1,)])


@fuzz("with_heads")
@given(
    heads=st.one_of(
        st.lists(st.sampled_from([1, 2, 4, 8, 16, 32]), min_size=3, max_size=3),
        st.lists(st.one_of(st.integers(-3, 40), odd), min_size=0, max_size=5),
    )
)
def test_with_heads(heads):
    ok, value = outcome(lambda: ARCH.with_heads(heads))
    valid = len(heads) == 3 and all(
        type(h) is int and h > 0 and w % h == 0 for h, w in zip(heads, WIDTHS, strict=False)
    )
    assert ok == valid, (heads, value)
    if ok:
        assert [layer.heads for layer in value.layers] == heads
        assert_valid_arch(value)


@fuzz("layer_index")
@given(
    layer=st.one_of(st.integers(0, 2), st.integers(-20, 40), odd),
    how=st.sampled_from(["options", "sample_choice"]),
)
def test_layer_index(layer, how):
    space = SPACES["tiny"]
    if how == "options":
        ok, value = outcome(lambda: space.options(layer))
    else:
        ok, value = outcome(lambda: es.sample_choice(space, layer, random.Random(0)))
    assert ok == (type(layer) is int and 0 <= layer < 3), (layer, value)


pair = st.one_of(
    st.tuples(st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.integers(-1, 4), st.integers(-1, 5)),
    st.sampled_from([(0,), (0, 1, 2), "01", (0.0, 1), (None, 1), 5]),
)


def _pair_valid(space: es.SearchSpace, p: Any) -> bool:
    return (
        isinstance(p, tuple)
        and len(p) == 2
        and all(type(v) is int for v in p)
        and 0 <= p[0] < space.num_layers
        and 0 <= p[1] < len(space.layers[p[0]])
    )


@fuzz("grow")
@given(base=st.sampled_from(sorted(SPACES)), pairs=st.lists(pair, max_size=4))
def test_grow(base, pairs):
    space = SPACES[base]
    ok, value = outcome(lambda: es.grow(space, pairs))
    valid = (
        all(_pair_valid(space, p) for p in pairs)
        and len(set(pairs)) == len(pairs)
        and all(space.layers[p[0]][p[1]].can_grow for p in pairs)
    )
    assert ok == valid, (pairs, value)
    if ok:
        assert_valid_space(value)
        for layer, cand in pairs:
            old = space.layers[layer][cand]
            assert value.layers[layer][cand].ffn_width == old.ffn_width + old.increment


@fuzz("grow_ranked")
@given(
    pairs=st.lists(pair, max_size=4),
    limit=st.one_of(st.integers(0, 4), st.integers(-2, 4), odd),
    budget=st.one_of(st.none(), st.integers(1, 10**6), st.integers(-10, 10**6), odd),
)
def test_grow_ranked(pairs, limit, budget):
    space = SPACES["tiny"]
    ok, value = outcome(lambda: es.grow_ranked(space, pairs, limit, budget))
    valid = (
        all(_pair_valid(space, p) for p in pairs)
        and type(limit) is int
        and limit >= 0
        and (budget is None or (type(budget) is int and budget > 0))
    )
    assert ok == valid, (pairs, limit, budget, value)
    if ok:
        grown, chosen = value
        assert len(chosen) <= limit and set(chosen) <= set(pairs)
        assert_valid_space(grown)


@fuzz("counts")
@given(
    base=st.sampled_from(sorted(SPACES)),
    head=st.one_of(st.sampled_from(es.HEADS), st.sampled_from(["mlm", "", "CLASSIFICATION", None, 1])),
    labels=st.one_of(st.integers(1, 6), st.integers(-6, 6), odd),
    seq_len=st.one_of(st.integers(1, 70), st.integers(-3, 3), odd),
)
def test_counts(base, head, labels, seq_len):
    arch = es.sample(SPACES[base], 1)
    args_ok = head in es.HEADS and type(labels) is int and labels >= 1
    ok, value = outcome(lambda: es.count_params(arch, head, labels))
    assert ok == args_ok, (head, labels, value)
    if ok:
        assert value >= es.count_params(arch)
    ok, value = outcome(lambda: es.count_flops(arch, seq_len, head, labels))
    assert ok == (args_ok and type(seq_len) is int and seq_len >= 1), (head, labels, seq_len, value)
    if ok:
        assert value > 0


token = st.one_of(
    st.sampled_from(["0:B32h2", "1:B64h4", "2:M16/16h4", "3:M16/32h2", "0:B32h4", "2:M16/16h2"]),
    st.builds(
        lambda i, w, h: f"{i}:B{w}h{h}",
        st.integers(-1, 4),
        st.sampled_from([0, 16, 32, 33, -4]),
        st.integers(-1, 9),
    ),
    st.builds(
        lambda i, n, w, h: f"{i}:M{n}/{w}h{h}",
        st.integers(0, 4),
        st.sampled_from([0, 8, 16, -1]),
        st.sampled_from([16, 0]),
        st.integers(-1, 9),
    ),
    st.text(alphabet="0123456789:BMhx/|- ", max_size=10),
)


@fuzz("architecture_string")
@given(
    tokens=st.one_of(
        st.lists(token.filter(lambda t: ":" in t), min_size=3, max_size=3),
        st.lists(token, min_size=1, max_size=4),
    ),
    in_space=st.booleans(),
)
def test_architecture_strings(tokens, in_space):
    space = SPACES["tiny"]
    text = "|".join(tokens)
    ok, value = outcome(lambda: es.Architecture.from_string(text, space.backbone))
    if ok:
        assert_valid_arch(value)
        if in_space:
            outcome(lambda: space.check(value))
            assert space.contains(value) == outcome(lambda: space.architecture(value.layers))[0]


@fuzz("preset")
@given(
    name=st.sampled_from([*es.PRESETS, "huge", "", "TINY"]),
    overrides=st.dictionaries(
        st.sampled_from(
            ["hidden_size", "vocab_size", "max_positions", "type_vocab_size", "family", "embedding", "bogus"]
        ),
        st.one_of(
            st.sampled_from([64, 96, 128, 2, "causal", "masked", {"kind": "factorized", "size": 8}]),
            st.sampled_from(ODD_VALUES),
        ),
        max_size=2,
    ),
)
def test_presets_with_overrides(name, overrides):
    ok, value = outcome(lambda: es.preset(name, **overrides))
    if name not in es.PRESETS:
        assert not ok and "unknown search-space preset" in value
    if ok:
        assert_valid_space(value)


def test_fuzz_case_count():
    """The suite's size, as the issue asks to report it."""
    assert sum(FUZZ_CASES.values()) == 1550
