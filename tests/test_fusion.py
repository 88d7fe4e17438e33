"""Reciprocal rank fusion on hand-made runs."""
from __future__ import annotations

import pytest

from clir_ot.errors import ConfigError
from clir_ot.formats import Hit, load_run, write_run
from clir_ot.retrieval.fusion import fuse_run_files, reciprocal_rank_fusion


def ranking(qid, docids):
    return [Hit(qid, d, float(len(docids) - i)) for i, d in enumerate(docids)]


def test_rrf_by_hand():
    a = ranking("q", ["d1", "d2", "d3"])
    b = ranking("q", ["d3", "d1"])
    fused = reciprocal_rank_fusion([a, b], k=60)
    expected = {"d1": 1 / 61 + 1 / 62, "d2": 1 / 62, "d3": 1 / 63 + 1 / 61}
    assert [h.docid for h in fused] == ["d1", "d3", "d2"]
    for hit in fused:
        assert hit.score == pytest.approx(expected[hit.docid], rel=1e-6)
    assert [h.rank for h in fused] == [1, 2, 3]


def test_rrf_ties_broken_by_docid_and_depth():
    a = ranking("q", ["x", "y"])
    b = ranking("q", ["y", "x"])
    fused = reciprocal_rank_fusion([a, b], k=0)
    assert [h.docid for h in fused] == ["x", "y"]  # equal fused scores: docid order
    assert fused[0].score > fused[1].score  # still strictly decreasing
    assert len(reciprocal_rank_fusion([a, b], depth=1)) == 1


def test_weights():
    a = ranking("q", ["d1", "d2"])
    b = ranking("q", ["d2", "d1"])
    assert reciprocal_rank_fusion([a, b], weights=[1.0, 2.0])[0].docid == "d2"
    with pytest.raises(ConfigError, match="1 weights for 2 runs; give one weight per run"):
        reciprocal_rank_fusion([a, b], weights=[1.0])


def test_fuse_files_with_rank_column_contradicting_scores(tmp_path):
    # rank columns are wrong on purpose: fusion must use the score order
    (tmp_path / "a.txt").write_text("q1 Q0 d1 2 9.0 a\nq1 Q0 d2 1 1.0 a\nq2 Q0 d5 1 1.0 a\n")
    write_run(tmp_path / "b.txt", {"q1": ranking("q1", ["d2", "d1"])})
    out = fuse_run_files([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "f.txt", k=60)
    fused = load_run(out)
    assert fused["q1"]["d1"] == pytest.approx(1 / 61 + 1 / 62, rel=1e-6)
    assert fused["q1"]["d2"] == pytest.approx(1 / 62 + 1 / 61, rel=1e-6)
    assert fused["q2"] == {"d5": pytest.approx(1 / 61, rel=1e-6)}
