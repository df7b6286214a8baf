import json

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from elm_search import BlockLatency, LatencyPredictor, LatencyTable, LatencyTableError
from elm_space import sample_many


def test_prediction_is_exact_on_additive_data(space6, make_table):
    table = make_table(space6, 3)
    predictor = LatencyPredictor(table=table)
    ms = {(b.kind, b.ffn_width, b.heads, b.inner_size): b.ms for b in table.blocks}
    archs = sample_many(space6, 50, seed=1)
    # a device that really is additive: measured = fixed + sum of blocks
    measured = [
        (
            a,
            table.embedding_ms
            + table.head_ms
            + sum(ms[(c.kind, c.ffn_width, c.heads, c.inner_size)] for c in a.layers),
        )
        for a in archs
    ]
    for arch, truth in measured:
        assert predictor.predict(arch) == pytest.approx(truth, rel=1e-12)
    report = predictor.report(measured)
    assert report.n == 50
    assert report.mape == pytest.approx(0.0, abs=1e-10)
    assert report.max_abs_error_ms == pytest.approx(0.0, abs=1e-10)
    assert report.kendall_tau == pytest.approx(1.0)


def test_error_report_on_noisy_measurements(space6, make_table):
    table = make_table(space6, 4)
    predictor = LatencyPredictor(table=table)
    rng = np.random.default_rng(0)
    archs = sample_many(space6, 40, seed=2)
    pred = np.array([predictor.predict(a) for a in archs], dtype=np.float64)
    truth = pred * rng.uniform(0.8, 1.3, len(pred)) + 0.5  # a device that is not quite additive
    report = predictor.report(list(zip(archs, truth.tolist(), strict=True)))
    rel = np.abs(pred - truth) / truth
    assert report.mape == pytest.approx(100 * rel.mean(), rel=1e-12)
    assert report.max_rel_error == pytest.approx(rel.max(), rel=1e-12)
    assert report.max_abs_error_ms == pytest.approx(np.abs(pred - truth).max(), rel=1e-12)
    assert report.kendall_tau == pytest.approx(stats.kendalltau(pred, truth).statistic, rel=1e-12)
    assert 0 < report.kendall_tau < 1


def test_report_rejects_bad_measurements(space6, make_table):
    predictor = LatencyPredictor(table=make_table(space6, 0))
    arch = sample_many(space6, 1, seed=0)[0]
    with pytest.raises(ValueError, match="at least one"):
        predictor.report([])
    with pytest.raises(ValueError, match="positive finite"):
        predictor.report([(arch, 0.0)])


def test_missing_block_and_wrong_hidden_size_are_named(space6, make_table):
    table = make_table(space6, 0)
    first = table.blocks[0]
    partial = LatencyPredictor(table=table.model_copy(update={"blocks": table.blocks[1:]}))
    arch = next(
        a
        for a in sample_many(space6, 500, seed=0)
        if any(
            c.ffn_width == first.ffn_width and c.kind == first.kind and c.heads == first.heads
            for c in a.layers
        )
    )
    with pytest.raises(
        LatencyTableError,
        match=f"no entry for the {first.kind.value} block \\(ffn_width={first.ffn_width}, heads={first.heads}",
    ):
        partial.predict(arch)
    other = LatencyPredictor(table=table.model_copy(update={"hidden_size": 64}))
    with pytest.raises(
        LatencyTableError, match="measured at hidden_size=64, but the architecture has hidden_size=32"
    ):
        other.predict(arch)
    assert partial.table.missing(space6) == [first.key]


def test_table_validation():
    with pytest.raises(ValidationError, match="inner_size is required for a 'mobile' block"):
        BlockLatency(kind="mobile", ffn_width=32, heads=2, ms=1.0)
    with pytest.raises(ValidationError, match="ms"):
        BlockLatency(kind="bert", ffn_width=32, heads=2, ms=-1.0)
    block = BlockLatency(kind="bert", ffn_width=32, heads=2, ms=1.0)
    with pytest.raises(
        ValidationError, match=r"blocks\[1\] measures the bert block \(ffn_width=32, heads=2\) a second time"
    ):
        LatencyTable(
            hidden_size=32, batch_size=1, seq_len=8, device="cpu", embedding_ms=0.1, blocks=(block, block)
        )


def test_table_json_round_trip_and_bad_file(space6, make_table, tmp_path):
    table = make_table(space6, 0)
    table.save(tmp_path / "table.json")
    loaded = LatencyPredictor.from_json(tmp_path / "table.json")
    assert loaded.table == table
    arch = sample_many(space6, 1, seed=3)[0]
    assert loaded.predict(arch) == LatencyPredictor(table=table).predict(arch)
    raw = json.loads((tmp_path / "table.json").read_text())
    del raw["device"]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(LatencyTableError, match=r"bad.json is not valid:[\s\S]*device"):
        LatencyTable.load(tmp_path / "bad.json")
    with pytest.raises(LatencyTableError, match="cannot read latency table"):
        LatencyTable.load(tmp_path / "absent.json")
