import pytest
from transformers import AutoTokenizer

from elm_train.config import DataConfig
from elm_train.data import DataError, build_blocks, load_corpus, pack


def test_ptb_splits_are_the_standard_ones():
    corpus = load_corpus(DataConfig(source="ptb"))
    words = {split: sum(len(line.split()) for line in docs) for split, docs in corpus.items()}
    # the standard PTB LM split: 887,521 / 70,390 / 78,669 words (without end-of-sentence tokens)
    assert words == {"train": 887_521, "validation": 70_390, "test": 78_669}


def test_pack_masked_and_causal(tiny_teacher_dir):
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    docs = [[10, 11, 12], [13, 14], [15, 16, 17, 18]]
    # stream: 10 11 12 S 13 14 S 15 16 17 18 S  (12 tokens)
    sep, cls = tok.sep_token_id, tok.cls_token_id
    assert pack(docs, 6, tok, masked=False) == [[10, 11, 12, sep, 13, 14], [sep, 15, 16, 17, 18, sep]]
    assert pack(docs, 6, tok, masked=True) == [
        [cls, 10, 11, 12, sep, sep],
        [cls, 13, 14, sep, 15, sep],
        [cls, 16, 17, 18, sep, sep],
    ]


def test_blocks_are_saved_as_arrow(tmp_path, tiny_teacher_dir):
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    train = tmp_path / "train.txt"
    train.write_text(
        "\n".join(
            f"the market rose {i} points and the dollar fell against the yen in new york" for i in range(200)
        )
    )
    cfg = DataConfig(source="text", train_files=[train], block_size=16, valid_fraction=0.1)
    target = tmp_path / "data" / "blocks"
    blocks = build_blocks(cfg, tok, masked=True, target=target)
    assert set(blocks) == {"train", "validation"}
    assert all(len(ids) == 16 for ids in blocks["train"]["input_ids"])
    assert blocks["train"][0]["input_ids"][0] == tok.cls_token_id
    # published whole (no temporary directory left beside it), and read back from disk
    assert blocks["train"].cache_files[0]["filename"].startswith(str(target))
    assert [p.name for p in target.parent.iterdir()] == ["blocks"]


def test_bad_corpus_files_are_named(tmp_path, tiny_teacher_dir):
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    missing = DataConfig(source="text", train_files=[tmp_path / "nope.txt"])
    with pytest.raises(DataError, match=r"nope\.txt does not exist"):
        build_blocks(missing, tok, True, tmp_path / "b")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        build_blocks(DataConfig(source="text", train_files=[empty]), tok, True, tmp_path / "b")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"ok line\n\xff\xfe\x00 bad")
    with pytest.raises(DataError, match=r"bin\.txt is not UTF-8 text"):
        build_blocks(DataConfig(source="text", train_files=[binary]), tok, True, tmp_path / "b")
    short = tmp_path / "short.txt"
    short.write_text("a b\nc d\n")
    with pytest.raises(DataError, match="fewer than 16 tokens"):
        build_blocks(
            DataConfig(source="text", train_files=[short], block_size=16, valid_fraction=0.4),
            tok,
            True,
            tmp_path / "b",
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []  # no work directory left


def test_text_source_needs_files():
    with pytest.raises(ValueError, match="data.train_files is empty"):
        DataConfig(source="text")


def test_no_hub_access_needed_for_ptb(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert len(load_corpus(DataConfig(source="ptb"))["test"]) > 3000
