import pytest

from elm_space import Architecture, SearchSpace, SpaceError, dumps, grow, load, loads, preset, sample, save


@pytest.mark.parametrize(
    "name", ["tiny", "tiny-factorized", "demo", "demo-clm", "elm-small", "elm-tiny", "elm-micro"]
)
@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_space_round_trip(name, fmt):
    space = grow(preset(name), [(0, 0)])
    assert loads(SearchSpace, dumps(space, fmt), fmt) == space


def test_architecture_round_trip_files(tmp_path, tiny):
    arch = sample(tiny, 3)
    for suffix in (".json", ".yaml", ".yml"):
        path = save(arch, tmp_path / f"arch{suffix}")
        assert load(Architecture, path) == arch
    assert Architecture.from_string(arch.to_string(), tiny.backbone) == arch


def test_stable_hash_is_content_based(tiny):
    a, b = sample(tiny, 3), sample(tiny, 3)
    assert a.stable_hash() == b.stable_hash()
    assert a.with_heads([2, 2, 2]).stable_hash() != a.with_heads([4, 4, 4]).stable_hash()
    # a fixed architecture has a fixed hash on every platform and release (file names depend on it)
    fixed = Architecture.from_string("0:B32h2|2:M16/16h4|1:B64h4", tiny.backbone)
    assert fixed.stable_hash() == fixed.model_copy().stable_hash()
    assert len(fixed.stable_hash()) == 12 and int(fixed.stable_hash(), 16) >= 0


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml: no such file"):
        load(SearchSpace, tmp_path / "missing.yaml")
    bad = tmp_path / "space.yaml"
    bad.write_text("backbone: {hidden_size: 0, vocab_size: 10}\nlayers: []\n")
    with pytest.raises(SpaceError, match=r"space.yaml: invalid SearchSpace[\s\S]*hidden_size"):
        load(SearchSpace, bad)
    (tmp_path / "x.txt").write_text("{}")
    with pytest.raises(SpaceError, match="unknown suffix '.txt'"):
        load(SearchSpace, tmp_path / "x.txt")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SpaceError, match="broken.json: not valid JSON"):
        load(SearchSpace, broken)
