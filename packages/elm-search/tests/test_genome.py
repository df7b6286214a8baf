import random
from collections import Counter

from elm_search import FeasibleSampler, GenomeCodec, ParamBudget
from elm_space import preset, sample_choice


def test_encode_decode_round_trip(space6):
    codec = GenomeCodec(space6)
    rng = random.Random(0)
    for _ in range(50):
        genome = tuple(rng.randrange(8) for _ in range(6))
        arch = codec.decode(genome)
        assert space6.contains(arch)
        assert codec.encode(arch) == genome


def test_random_gene_follows_elm_space_sampling():
    # the same draws as elm-space (candidate uniformly, then heads), so search and supernet agree
    space = preset("tiny")
    codec = GenomeCodec(space)
    a, b = random.Random(9), random.Random(9)
    genes = [codec.random_gene(1, a) for _ in range(200)]
    assert [codec.options[1][g] for g in genes] == [sample_choice(space, 1, b) for _ in range(200)]


def test_unconstrained_sampling_is_uniform(space3):
    sampler = FeasibleSampler(GenomeCodec(space3), [], max_tries=5)
    rng = random.Random(1)
    counts = Counter(sampler.sample(rng)[0] for _ in range(8000))
    assert set(counts) == set(range(8))
    assert all(abs(c - 1000) < 150 for c in counts.values())


def test_guided_sampling_meets_a_budget_rejection_cannot(space6):
    budget = ParamBudget(max_params=int(ParamBudget(max_params=1).minimum(space6)))
    codec = GenomeCodec(space6)
    sampler = FeasibleSampler(codec, [budget], max_tries=3)
    rng = random.Random(0)
    genomes = {sampler.sample(rng) for _ in range(300)}
    assert all(budget.satisfied(codec.decode(g)) for g in genomes)
    assert len(genomes) > 40  # of the 64 minimal architectures, most are reached
