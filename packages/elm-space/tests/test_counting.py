"""Parameter and FLOP counts against numbers worked out by hand (arithmetic in the comments)."""

from elm_space import (
    Architecture,
    count_flops,
    count_params,
    embedding_params,
    flop_breakdown,
    param_breakdown,
    preset,
)


def test_tiny_plain_masked_lm_by_hand(tiny):
    arch = Architecture.from_string("0:B32h2|2:M16/16h4|1:B64h4", tiny.backbone)
    # embedding: 100*32 tokens + 64*32 positions + 2*32 segments + 64 LayerNorm = 5376
    # B32: 4*(32*32+32) attention + 64 LN + (32*32+32)+(32*32+32) FFN + 64 LN = 6464
    # M16/16: bottleneck (32*16+16)+(16*32+32)+64 = 1136; attention 3*528+(16*16+16)+32 = 1888;
    #         FFN (16*16+16)*2+32 = 576 -> 3600
    # B64: 4224 + 64 + (32*64+64)+(64*32+32) + 64 = 8544
    bd = param_breakdown(arch)
    assert bd.embedding == 5376
    assert bd.layers == (6464, 3600, 8544)
    assert bd.total == 23984
    # masked-LM head: dense 32*32+32, LayerNorm 64, decoder bias 100 (weights tied) = 1220
    assert count_params(arch, head="masked_lm") == 23984 + 1220


def test_paper_preset_reference_architecture_by_hand(staircase):
    # The reference's test.sh architecture [1,2,0,1,3,11,6,9,9,10,6,7] in its 528-wide space.
    space = staircase(preset("elm-small"))
    assert [c.ffn_width for c in space.layers[5]] == [132, 264, 396, 528, 660, 792] * 2
    choices = [space.options(i)[c] for i, c in enumerate([1, 2, 0, 1, 3, 11, 6, 9, 9, 10, 6, 7])]
    arch = space.architecture(choices)
    # embedding: 30522*128 + (384*528+528) + 512*528 + 2*528 + 2*528 = 4,382,544
    assert embedding_params(space.backbone) == 4_382_544
    # BERT block of width w: 4*(528^2+528) + 1056 + (528w+w) + (528w+528) + 1056 = 1,119,888 + 1057w
    # mobile block of width w (inner 132): 140,052 + 1056 + 209,484 + 17,556 + 264
    #                                       + (132w+w) + (132w+132) + 264 = 368,808 + 265w
    bert = {w: 1_119_888 + 1057 * w for w in (132, 264, 396, 528)}
    mobile = {w: 368_808 + 265 * w for w in (132, 264, 528, 660, 792)}
    expected_layers = (
        bert[264], bert[396], bert[132], bert[264], bert[528], mobile[792],
        mobile[132], mobile[528], mobile[528], mobile[660], mobile[132], mobile[264],
    )  # fmt: skip
    assert param_breakdown(arch).layers == expected_layers
    assert count_params(arch) == 15_042_468
    # The reference reports 15.03M because it leaves NoNorm out: 7 mobile blocks x (1056 + 2*264)
    assert count_params(arch) - 7 * 1584 == 15_031_380


def test_factorized_classification_by_hand():
    space = preset("tiny-factorized")
    arch = Architecture.from_string("1:B64h4|3:M16/32h2|2:M16/16h4", space.backbone)
    # embedding: 100*16 table + (48*32+32) projection + 64*32 + 2*32 + 64 = 5344
    # M16/32: 1136 + 1888 + (16*32+32)+(32*16+16)+32 = 4128
    assert param_breakdown(arch).layers == (8544, 4128, 3600)
    assert count_params(arch) == 5344 + 8544 + 4128 + 3600
    # classifier: pooler 32*32+32 + Linear(32->3) 99
    assert count_params(arch, head="classification", num_labels=3) == 21616 + 1155


def test_flops_by_hand(tiny):
    arch = Architecture.from_string("0:B32h2|2:M16/16h4|1:B64h4", tiny.backbone)
    t = 8
    # B32: projections 2*8*4*32*32 = 65,536; scores+context 2*2*8*8*32 = 8192; FFN 2*8*2*32*32 = 32,768
    b32 = 65_536 + 8_192 + 32_768
    # M16/16: bottleneck in+out 2*8*2*32*16 = 16,384; QKV+out 2*8*(3*32*16+16*16) = 28,672;
    #         scores+context 2*2*8*8*16 = 4096; FFN 2*8*2*16*16 = 8192
    m16 = 16_384 + 28_672 + 4_096 + 8_192
    fb = flop_breakdown(arch, t)
    assert fb.layers[:2] == (b32, m16)
    assert fb.embedding == 0
    assert count_flops(arch, t) == sum(fb.layers)


def test_flops_grow_with_sequence_length(tiny):
    arch = Architecture.from_string("0:B32h2|2:M16/16h4|1:B64h4", tiny.backbone)
    # the quadratic attention term makes FLOPs per token grow with length
    assert count_flops(arch, 32) / 32 > count_flops(arch, 8) / 8


def test_heads_do_not_change_parameters(tiny):
    a = Architecture.from_string("0:B32h2|2:M16/16h4|1:B64h4", tiny.backbone)
    b = a.with_heads([4, 2, 2])
    assert count_params(a) == count_params(b)
