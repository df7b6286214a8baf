"""Pretraining sources as a list (``data.sources``), mixed in proportion.

Two local text corpora with disjoint words tell every block's source apart: each source is cut
into blocks on its own when weighted, so a block is all one source's words. Counts are exact
(the shares, the seeded resampling); nothing reaches the network (hub sources are read from
local copies through ``hub_mirrors``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets
import pytest
import yaml
from transformers import AutoTokenizer

from elm_train import cli
from elm_train.config import ConfigError, DataConfig, RunConfig, load_config, merge_configs
from elm_train.data import DataError, block_splits, build_blocks, heldout_texts, load_corpus
from elm_train.pipeline.plan import make_plan
from elm_train.presets import preset

BLOCK = 16  # masked: [CLS] + 14 tokens + [SEP]
WORDS_PER_LINE = 6  # + the separator: 7 tokens a document, so 2 documents a block
BOOKCORPUS = "rojagtap/bookcorpus"
WIKIPEDIA = "wikimedia/wikipedia"


@pytest.fixture(scope="module")
def tok(tiny_teacher_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_teacher_dir)


@pytest.fixture(scope="module")
def words(tok) -> tuple[list[str], list[str]]:
    """Two disjoint sets of plain words the tokenizer knows (one token each)."""
    plain = sorted(w for w in tok.get_vocab() if w.isalpha() and w.islower() and len(w) > 2)
    return plain[:30], plain[30:60]


def write_lines(path: Path, vocabulary: list[str], lines: int, offset: int = 0) -> Path:
    """``lines`` documents of WORDS_PER_LINE words of ``vocabulary``, no two alike (the first two
    words spell the line's number in base ``len(vocabulary)``)."""
    n = len(vocabulary)
    rows = []
    for i in range(offset, offset + lines):
        number = [vocabulary[i % n], vocabulary[(i // n) % n]]
        rest = [vocabulary[(i + 3 * j) % n] for j in range(WORDS_PER_LINE - 2)]
        rows.append(" ".join(number + rest))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def corpora(tmp_path: Path, words) -> dict[str, Path]:
    """Source a: 40 training blocks, 8 held out; source b: 4 training blocks, 1 held out."""
    a_words, b_words = words
    return {
        "a": write_lines(tmp_path / "a.txt", a_words, 80),
        "a_valid": write_lines(tmp_path / "a_valid.txt", a_words, 16, offset=500),
        "b": write_lines(tmp_path / "b.txt", b_words, 8),
        "b_valid": write_lines(tmp_path / "b_valid.txt", b_words, 2, offset=500),
    }


def text_source(corpora: dict[str, Path], name: str, weight: float | None = None) -> dict:
    return {
        "kind": "text",
        "files": [corpora[name]],
        "valid_files": [corpora[f"{name}_valid"]],
        "weight": weight,
    }


def source_of(block: list[int], tok, words) -> str:
    """'a' or 'b' (a block of one source's words), else 'mixed'."""
    ids = {tok.convert_tokens_to_ids(w): name for name, ws in zip("ab", words, strict=True) for w in ws}
    found = {ids[t] for t in block if t in ids}
    return found.pop() if len(found) == 1 else "mixed"


def own_blocks(corpora, name: str, tok, split: str = "train") -> list[list[int]]:
    """The blocks source ``name`` gives on its own (its whole corpus)."""
    cfg = DataConfig(sources=[text_source(corpora, name)], block_size=BLOCK)
    return block_splits(cfg, tok, masked=True)[split]


def test_the_sources_own_sizes(corpora, tok):
    assert len(own_blocks(corpora, "a", tok)) == 40 and len(own_blocks(corpora, "a", tok, "validation")) == 8
    assert len(own_blocks(corpora, "b", tok)) == 4 and len(own_blocks(corpora, "b", tok, "validation")) == 1


def test_weights_give_each_source_its_share_of_a_capped_split(corpora, tok, words):
    cfg = DataConfig(
        sources=[text_source(corpora, "a", 3), text_source(corpora, "b", 1)],
        block_size=BLOCK,
        max_train_blocks=40,
        max_valid_blocks=8,
    )
    blocks = block_splits(cfg, tok, masked=True, seed=7)
    train = blocks["train"]
    assert Counter(source_of(b, tok, words) for b in train) == {"a": 30, "b": 10}
    # a gives its first 30 blocks (a cap reads no further, as for one source); b, 4 blocks short of
    # its 10, is repeated: twice whole, then 2 of its 4 drawn with the seed
    a_own, b_own = own_blocks(corpora, "a", tok), own_blocks(corpora, "b", tok)
    assert [b for b in train if source_of(b, tok, words) == "a"] == a_own[:30]
    b_counts = Counter(tuple(b) for b in train if source_of(b, tok, words) == "b")
    assert set(b_counts) == {tuple(b) for b in b_own} and sorted(b_counts.values()) == [2, 2, 3, 3]
    # evenly interleaved: every prefix holds the sources in about the mix's proportion
    assert Counter(source_of(b, tok, words) for b in train[:8]) == {"a": 6, "b": 2}
    # held out: 3 to 1 too, never repeated, so b's single block limits them to 4 of the 8 allowed
    assert Counter(source_of(b, tok, words) for b in blocks["validation"]) == {"a": 3, "b": 1}


def test_weights_without_a_cap_reproportion_all_the_blocks(corpora, tok, words):
    cfg = DataConfig(sources=[text_source(corpora, "a", 1), text_source(corpora, "b", 1)], block_size=BLOCK)
    blocks = block_splits(cfg, tok, masked=True, seed=7)
    train = blocks["train"]
    # 40 + 4 blocks in all, half each: a subsampled to 22 (in corpus order), b repeated to 22
    assert Counter(source_of(b, tok, words) for b in train) == {"a": 22, "b": 22}
    a_own = own_blocks(corpora, "a", tok)
    a_taken = [b for b in train if source_of(b, tok, words) == "a"]
    assert a_taken == [b for b in a_own if b in a_taken]  # a sample of a's blocks, in order
    # the seed draws the sample: the same seed the same blocks, another seed others
    assert block_splits(cfg, tok, masked=True, seed=7) == blocks
    assert block_splits(cfg, tok, masked=True, seed=8)["train"] != train
    # held out: 8 + 1 available; 1 to 1 without repeating b's one block is 1 each
    assert Counter(source_of(b, tok, words) for b in blocks["validation"]) == {"a": 1, "b": 1}


def test_no_weights_is_the_concatenation(corpora, tok):
    listed = DataConfig(sources=[text_source(corpora, "a"), text_source(corpora, "b")], block_size=BLOCK)
    one_corpus = DataConfig(
        source="text",
        train_files=[corpora["a"], corpora["b"]],
        valid_files=[corpora["a_valid"], corpora["b_valid"]],
        block_size=BLOCK,
    )
    assert block_splits(listed, tok, masked=True) == block_splits(one_corpus, tok, masked=True)
    assert load_corpus(listed) == load_corpus(one_corpus)
    capped = listed.model_copy(update={"max_train_blocks": 40})  # a cap is filled by a first
    assert block_splits(capped, tok, masked=True)["train"] == own_blocks(corpora, "a", tok)


def test_weighted_heldout_documents_come_from_every_source(corpora):
    cfg = DataConfig(sources=[text_source(corpora, "a", 3), text_source(corpora, "b", 1)])
    texts = heldout_texts(cfg, limit=4)
    a_valid = corpora["a_valid"].read_text().splitlines()
    b_valid = corpora["b_valid"].read_text().splitlines()
    assert texts == a_valid[:3] + b_valid[:1]
    unweighted = DataConfig(sources=[text_source(corpora, "a"), text_source(corpora, "b")])
    assert heldout_texts(unweighted, limit=4) == a_valid[:4]


def test_the_shorthand_is_a_list_of_one(corpora, tok, tmp_path):
    shorthand = DataConfig(
        source="text", train_files=[corpora["a"]], valid_files=[corpora["a_valid"]], block_size=BLOCK
    )
    listed = DataConfig(
        sources=[{"kind": "text", "files": [corpora["a"]], "valid_files": [corpora["a_valid"]]}],
        block_size=BLOCK,
    )
    assert [s.model_dump() for _, s in shorthand.mix()] == [s.model_dump() for _, s in listed.mix()]
    saved = {
        name: build_blocks(cfg, tok, True, tmp_path / name)
        for name, cfg in {"shorthand": shorthand, "listed": listed}.items()
    }
    assert {s: saved["shorthand"][s]["input_ids"] for s in saved["shorthand"]} == {
        s: saved["listed"][s]["input_ids"] for s in saved["listed"]
    }
    ptb = {"block_size": BLOCK, "max_train_blocks": 20, "max_valid_blocks": 4}
    assert block_splits(DataConfig(source="ptb", **ptb), tok, masked=True) == block_splits(
        DataConfig(sources=[{"kind": "ptb"}], **ptb), tok, masked=True
    )


def test_a_single_weighted_source_is_itself(corpora, tok):
    plain = DataConfig(sources=[text_source(corpora, "a")], block_size=BLOCK, max_train_blocks=12)
    weighted = DataConfig(sources=[text_source(corpora, "a", 2.5)], block_size=BLOCK, max_train_blocks=12)
    assert block_splits(weighted, tok, masked=True) == block_splits(plain, tok, masked=True)


def test_shorthand_and_sources_together_are_refused(corpora):
    with pytest.raises(
        ValueError, match=r"data\.sources and the single-source fields \(data\.source, data\.hub_id\)"
    ):
        DataConfig(sources=[{"kind": "ptb"}], source="hub", hub_id=WIKIPEDIA)


def test_a_preset_list_and_a_shorthand_override_are_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"preset: elm-small\ndata: {{source: text, train_files: [{tmp_path / 'a.txt'}]}}\n")
    with pytest.raises(
        ConfigError, match=r"data\.source, data\.train_files\) are both given.*data\.sources: \[\]"
    ):
        load_config(config)
    config.write_text(
        f"preset: elm-small\ndata: {{sources: [], source: text, train_files: [{tmp_path / 'a.txt'}]}}\n"
    )
    assert load_config(config).data.corpus_name == "text"


@pytest.mark.parametrize(
    ("sources", "named"),
    [
        (
            [{"kind": "ptb"}, {"kind": "hub"}],
            r"data\.sources\[1\]\.hub_id is required when data\.sources\[1\]\.kind is 'hub'",
        ),
        ([{"kind": "text"}], r"data\.sources\[0\]\.files is empty but data\.sources\[0\]\.kind is 'text'"),
        ([{"kind": "ptb", "hub_config": "x"}], r"data\.sources\[0\]\.hub_config is for kind 'hub' only"),
        (
            [{"kind": "hub", "hub_id": "x", "files": ["a.txt"]}],
            r"data\.sources\[0\]\.files is for kind 'text' only",
        ),
        (
            [{"kind": "ptb", "weight": 2}, {"kind": "ptb"}],
            r"data\.sources\[1\]\.weight is not given but data\.sources\[0\]\.weight is",
        ),
    ],
)
def test_a_bad_source_field_is_named(sources, named):
    with pytest.raises(ValueError, match=named):
        DataConfig(sources=sources)


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("{kind: hub, hubid: x}", r"data\.sources\[1\]\.hubid: Extra inputs are not permitted"),
        ("{kind: book}", r"data\.sources\[1\]\.kind: Input should be 'ptb', 'text' or 'hub'"),
        ("{kind: ptb, weight: 0}", r"data\.sources\[1\]\.weight: Input should be greater than 0"),
    ],
)
def test_a_bad_source_in_a_file_is_named(tmp_path, source, named):
    config = tmp_path / "run.yaml"
    config.write_text(f"preset: tiny\ndata:\n  sources:\n  - {{kind: ptb}}\n  - {source}\n")
    with pytest.raises(ConfigError, match=named):
        load_config(config)


def write_bookcorpus(root: Path, lines: list[str]) -> Path:
    """``rojagtap/bookcorpus``'s layout: the original release's two text files, a sentence a line,
    and a dataset card without configs (``datasets`` reads the files with its ``text`` loader)."""
    root.mkdir(parents=True)
    half = len(lines) // 2
    (root / "books_large_p1.txt").write_text("\n".join(lines[:half]) + "\n")
    (root / "books_large_p2.txt").write_text("\n".join(lines[half:]) + "\n")
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    return root


def write_wikipedia(root: Path, documents: list[str]) -> Path:
    """``wikimedia/wikipedia``'s layout: a config's parquet file named in the card's header."""
    (root / "20231101.en").mkdir(parents=True)
    rows = {"id": [str(i) for i in range(len(documents))], "text": documents}
    datasets.Dataset.from_dict(rows).to_parquet(str(root / "20231101.en" / "train-00000-of-00001.parquet"))
    header = "configs:\n- config_name: 20231101.en\n  data_files:\n  - split: train\n    path: 20231101.en/train-*\n"
    (root / "README.md").write_text(f"---\n{header}---\n")
    return root


@pytest.fixture
def hub_copies(tmp_path: Path, words, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Local copies of the paper presets' two corpora, by hub id (``hub_mirrors``); loading any
    other path fails as offline (no test reaches the network, whatever the environment says)."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    load_dataset = datasets.load_dataset

    def local_only(path: str, *args: object, **kwargs: object) -> object:
        if not Path(path).is_dir():
            raise ConnectionError(f"Couldn't reach '{path}' on the Hub (offline)")
        return load_dataset(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", local_only)
    a_words, b_words = words
    book_lines = write_lines(tmp_path / "book.txt", b_words, 60).read_text().splitlines()
    wiki_docs = write_lines(tmp_path / "wiki.txt", a_words, 40).read_text().splitlines()
    return {
        BOOKCORPUS: str(write_bookcorpus(tmp_path / "bookcorpus", book_lines)),
        WIKIPEDIA: str(write_wikipedia(tmp_path / "wikipedia", wiki_docs)),
    }


def test_hub_sources_resolve_through_their_local_copies(hub_copies, tok, words):
    cfg = DataConfig(
        sources=[
            {"kind": "hub", "hub_id": WIKIPEDIA, "hub_config": "20231101.en", "weight": 1},
            {"kind": "hub", "hub_id": BOOKCORPUS, "weight": 1},
        ],
        block_size=BLOCK,
        max_train_blocks=10,
        max_valid_blocks=2,
    )
    corpus = load_corpus(cfg, hub_copies)
    assert len(corpus["train"]) == 38 + 57 and len(corpus["validation"]) == 2 + 3  # 5% of each held out
    blocks = block_splits(cfg, tok, masked=True, mirrors=hub_copies)
    assert Counter(source_of(b, tok, words) for b in blocks["train"]) == {"a": 5, "b": 5}
    assert Counter(source_of(b, tok, words) for b in blocks["validation"]) == {"a": 1, "b": 1}
    bad = cfg.model_copy(
        update={"sources": [cfg.sources[0], cfg.sources[1].model_copy(update={"text_column": "body"})]}
    )
    with pytest.raises(
        DataError, match=r"data\.sources\[1\]\.text_column 'body' is not a column of rojagtap/bookcorpus"
    ):
        load_corpus(bad, hub_copies)
    with pytest.raises(
        DataError, match=r"cannot load data\.sources\[1\]\.hub_id 'rojagtap/bookcorpus'.*hub_mirrors"
    ):
        load_corpus(cfg, {WIKIPEDIA: hub_copies[WIKIPEDIA]})  # offline, and no copy of the second


def test_the_paper_presets_list_wikipedia_and_bookcorpus(capsys):
    assert cli.main(["config", "show", "--preset", "elm-small"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert [(s["kind"], s["hub_id"], s["hub_config"], s["weight"]) for s in data["sources"]] == [
        ("hub", WIKIPEDIA, "20231101.en", None),
        ("hub", BOOKCORPUS, None, None),
    ]
    assert data["source"] == "ptb" and data["hub_id"] is None  # the shorthand stays unused
    for name in ("elm-tiny", "elm-micro"):
        assert [s.hub_id for s in preset(name).data.sources] == [WIKIPEDIA, BOOKCORPUS]


def test_the_plan_lists_both_corpora_and_reads_their_copies(hub_copies):
    paper = preset("elm-micro")
    plan = make_plan(paper)
    corpora = {d.source: d.size for d in plan.downloads if d.what == "corpus"}
    assert corpora == {
        f"{WIKIPEDIA} (20231101.en)": "train 6,407,814 documents",
        BOOKCORPUS: "train 74,004,228 documents",
    }
    mirrored = RunConfig.model_validate(
        merge_configs(paper.model_dump(mode="json"), {"hub_mirrors": hub_copies})
    )
    plan = make_plan(mirrored)
    corpora = {d.source: d.size for d in plan.downloads if d.what == "corpus"}
    assert all(size.startswith("nothing, read from the local copy") for size in corpora.values())
    assert len(corpora) == 2
    # the parquet copy is counted; the text copy cannot be without reading it, so its card's count
    assert f"from 40 documents of {WIKIPEDIA} (in the local copy)" in plan.blocks_note
    assert f"74,004,228 documents of {BOOKCORPUS} (documented)" in plan.blocks_note
