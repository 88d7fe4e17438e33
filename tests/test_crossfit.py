"""Cross-fitted reranking (clir_ot.rerank.crossfit): each fold's queries by that fold's model, merged;
and model selection (clir_ot.training.selection)."""
from __future__ import annotations

import numpy as np
import pytest

from clir_ot.errors import ConfigError
from clir_ot.formats import Hit, iter_run_by_query, load_run, write_run
from clir_ot.rerank import Reranker, rerank_cross_fitted
from clir_ot.training import selected_model


class MarkedReranker(Reranker):
    """Scores a passage by the position of its last character in ``order``: model k ranks the
    documents in its own order, so the merged run shows which model scored which query."""

    def __init__(self, name: str, order: str):
        self.name, self.order = name, order

    def score(self, query, texts):
        return np.array([float(self.order.index(t[-1])) for t in texts])

    def signature(self):
        return {"model": self.name}


def test_each_fold_is_reranked_by_its_own_model_and_merged(tmp_path):
    corpus = {f"d{c}": f"text {c}" for c in "abc"}
    topics = {f"q{i}": f"question {i}" for i in range(4)}
    # first stage: d-a, d-b, d-c for every query (rank column contradicts nothing here)
    write_run(tmp_path / "first.txt", {q: [Hit(q, f"d{c}", 3.0 - j, j + 1) for j, c in enumerate("abc")]
                                       for q in topics})
    models = [MarkedReranker("zero", "abc"), MarkedReranker("one", "cba")]  # fold 0 prefers c, fold 1 prefers a
    folds = [["q0", "q2"], ["q1", "q3"]]
    parts = [tmp_path / ".part0.txt", tmp_path / ".part1.txt"]
    report = rerank_cross_fitted(models, folds, tmp_path / "first.txt", topics, corpus, tmp_path / "merged.txt",
                                 parts, depth=3, tag="cf")
    merged = load_run(tmp_path / "merged.txt")
    assert set(merged) == set(topics)
    for q in ("q0", "q2"):
        assert max(merged[q], key=merged[q].get) == "dc"
    for q in ("q1", "q3"):
        assert max(merged[q], key=merged[q].get) == "da"
    assert [qid for qid, _ in iter_run_by_query(tmp_path / "merged.txt")] == ["q0", "q2", "q1", "q3"]  # fold order
    assert report.pairs == 12 and not any(p.exists() for p in parts)


def test_mismatched_folds_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="one model, one query set and one part file per fold"):
        rerank_cross_fitted([MarkedReranker("x", "abc")], [["q0"], ["q1"]], tmp_path / "r.txt", {}, {},
                            tmp_path / "o.txt", [tmp_path / "p"], depth=1, tag="t")


def test_selected_model_prefers_best(tmp_path):
    assert selected_model(tmp_path) == tmp_path
    (tmp_path / "best").mkdir()
    assert selected_model(tmp_path) == tmp_path / "best"
    assert selected_model(str(tmp_path)) == tmp_path / "best"
