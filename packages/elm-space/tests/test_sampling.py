import json
import random
import subprocess
import sys

from elm_space import count_params, mean_params, neighbours, preset, sample, sample_many


def test_same_seed_same_architecture(tiny):
    assert sample(tiny, 7) == sample(tiny, 7)
    assert sample_many(tiny, 5, 3) == sample_many(tiny, 5, 3)
    assert len({a.stable_hash() for a in sample_many(tiny, 50, 0)}) > 30


def test_sampling_reproducible_across_processes():
    code = (
        "import elm_space, json;"
        "print(json.dumps([a.to_string() for a in elm_space.sample_many(elm_space.preset('elm-small'), 3, 11)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    here = [a.to_string() for a in sample_many(preset("elm-small"), 3, 11)]
    assert json.loads(out) == here


def test_samples_are_in_space_and_cover_it(tiny):
    seen = set()
    for arch in sample_many(tiny, 400, random.Random(1)):
        tiny.check(arch)
        seen.add(arch.layers[0])
    assert seen == set(tiny.options(0))  # every (candidate, heads) pick of layer 0 appears


def test_size(tiny):
    assert tiny.size() == (4 * 2) ** 3
    assert preset("elm-small").size() == 12**12


def test_neighbours_differ_in_one_layer(tiny):
    arch = sample(tiny, 0)
    result = neighbours(tiny, arch)
    assert len(result) == 3 * (8 - 1)
    assert len({a.stable_hash() for a in result}) == len(result)
    for other in result:
        assert sum(x != y for x, y in zip(arch.layers, other.layers, strict=True)) == 1
        tiny.check(other)


def test_mean_params_matches_monte_carlo(tiny):
    archs = sample_many(tiny, 4000, 5)
    empirical = sum(count_params(a) for a in archs) / len(archs)
    assert abs(empirical - mean_params(tiny)) / mean_params(tiny) < 0.01
