"""Exact order on demand: bf16 scores, float32 re-scores where the order is in doubt, fp32's top k."""
from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
import torch

from clir_ot.cli import main
from clir_ot.errors import ExactOrderError
from clir_ot.formats import Document, Hit, iter_run_by_query, write_corpus, write_run, write_topics
from clir_ot.models import CrossEncoderModel, tiny_random_model
from clir_ot.models.derive import DEFAULT_TINY_TEXTS
from clir_ot.rerank import (CrossEncoderReranker, ExactOrderReranker, ExactOrderStats, Reranker, pairs_to_rescore,
                            rerank_run)

WORDS = " ".join(DEFAULT_TINY_TEXTS).split()
TOP = 10


# --------------------------------------------------------------------------------------------------
# which pairs are re-scored


def test_only_candidates_close_to_a_neighbour_are_rescored():
    scores = np.array([5.0, 4.0, 3.95, 1.0, 0.98])
    assert pairs_to_rescore(scores, margin=0.1, top_k=2).tolist() == [False, True, True, False, False]
    # 1.0 and 0.98 are close to each other but cannot reach the top 2 (below 4.0 - 0.1)
    assert pairs_to_rescore(scores, margin=0.1, top_k=4).tolist() == [False, True, True, True, True]


def test_a_pair_just_below_the_kth_within_the_margin_is_a_candidate():
    scores = np.array([3.0, 2.0, 1.5])  # top 2: 1.5 may overtake 2.0 when the margin is 0.5 (<=)
    assert pairs_to_rescore(scores, margin=0.5, top_k=2).tolist() == [False, True, True]
    assert pairs_to_rescore(scores, margin=0.49, top_k=2).tolist() == [False, False, False]


def test_rescoring_follows_scores_not_positions():
    scores = np.array([0.1, 9.0, 0.12, 5.0])  # sorted: 9.0, 5.0, 0.12, 0.1
    assert pairs_to_rescore(scores, margin=0.05, top_k=4).tolist() == [True, False, True, False]
    assert pairs_to_rescore(scores, margin=0.05, top_k=2).tolist() == [False, False, False, False]


def test_fewer_pairs_than_top_k_and_single_pairs():
    assert pairs_to_rescore(np.array([1.0, 1.0]), margin=1e-3, top_k=10).tolist() == [True, True]
    assert pairs_to_rescore(np.array([1.0]), margin=1.0, top_k=10).tolist() == [False]
    assert pairs_to_rescore(np.zeros(0), margin=1.0, top_k=10).tolist() == []


@pytest.mark.parametrize("margin, top_k, message", [
    (0.0, 10, "margin must be a finite number above 0, got 0.0"),
    (-1e-3, 10, "margin must be a finite number above 0, got -0.001"),
    (float("nan"), 10, "margin must be a finite number above 0, got nan"),
    (float("inf"), 10, "margin must be a finite number above 0, got inf"),
    ("0.1", 10, "margin must be a finite number above 0, got '0.1'"),
    (0.1, 0, "top k must be an integer of at least 1, got 0"),
    (0.1, 2.5, "top k must be an integer of at least 1, got 2.5"),
])
def test_bad_settings_are_exact_order_errors(margin, top_k, message):
    with pytest.raises(ExactOrderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pairs_to_rescore(np.array([1.0, 2.0]), margin=margin, top_k=top_k)


# --------------------------------------------------------------------------------------------------
# against a real float32 run


@pytest.fixture(scope="module")
def scored():
    """A tiny random cross-encoder (head seeded too), 12 queries x 40 passages, and each query's fp32
    and bf16 scores."""
    rng = random.Random(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CrossEncoderModel(*tiny_random_model("bert", seed=4))
    queries = [" ".join(rng.choice(WORDS) for _ in range(3)) for _ in range(12)]
    passages = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) for _ in range(40)]
    fp32 = CrossEncoderReranker(model, batch_size=8, max_length=64, dtype="fp32")
    bf16 = CrossEncoderReranker(model, batch_size=8, max_length=64, dtype="bf16")
    return model, queries, passages, [fp32.score(q, passages) for q in queries], [bf16.score(q, passages) for q in queries]


def first_stage(passages):
    return [Hit("q", f"d{i:02d}", float(100 - i), i + 1, text=p) for i, p in enumerate(passages)]


def top(ranking):
    return [h.docid for h in ranking[:TOP]]


def test_bf16_alone_reorders_some_top_10(scored):
    """The premise of the next tests: on this model bf16 changes some query's top 10, so agreeing with
    fp32 there is the re-scoring's doing."""
    _, queries, passages, fp32, bf16 = scored
    differ = [not np.array_equal(np.argsort(-a, kind="stable")[:TOP], np.argsort(-b, kind="stable")[:TOP])
              for a, b in zip(fp32, bf16)]
    assert sum(differ) >= 1, "bf16 kept every top 10: the tiny model no longer tests exact order"


def test_with_a_margin_that_bounds_the_bf16_error_the_top_k_is_fp32s(scored):
    model, queries, passages, fp32_scores, bf16_scores = scored
    error = max(float(np.abs(a - b).max()) for a, b in zip(fp32_scores, bf16_scores))
    fast = CrossEncoderReranker(model, batch_size=8, max_length=64, dtype="bf16")
    exact = ExactOrderReranker.around(fast, margin=2.5 * error, top_k=TOP)  # premise: |bf16 - fp32| <= margin / 2
    fp32 = CrossEncoderReranker(model, batch_size=8, max_length=64, dtype="fp32")
    hits = first_stage(passages)
    for query in queries:
        got, want = exact.rerank(query, hits), fp32.rerank(query, hits)
        assert top(got) == top(want), query
        # the top k's scores are fp32's where re-scored, bf16's within the error elsewhere
        want_score = {h.docid: h.score for h in want}
        assert all(abs(h.score - want_score[h.docid]) <= error * 1.01 for h in got[:TOP])
    stats = exact.stats
    assert stats.queries == len(queries) and stats.pairs == len(queries) * len(passages)
    assert 0 < stats.rescored < stats.pairs  # it re-scored some pairs, not all
    assert stats.over_half_margin == 0 and 0 < stats.max_error <= error


def test_a_margin_below_the_error_is_not_enough_and_says_so(scored):
    """The guarantee needs the premise: with a margin far below bf16's error the result is bf16's order
    where nothing was close enough to re-score, and every re-scored pair that moved more than half the
    margin is counted."""
    model, queries, passages, fp32_scores, bf16_scores = scored
    fast = CrossEncoderReranker(model, batch_size=8, max_length=64, dtype="bf16")
    exact = ExactOrderReranker.around(fast, margin=1e-9, top_k=TOP)
    hits = first_stage(passages)
    agree = sum(top(exact.rerank(q, hits)) == [f"d{i:02d}" for i in np.argsort(-f, kind="stable")[:TOP]]
                for q, f in zip(queries, fp32_scores))
    assert agree < len(queries)
    assert exact.stats.over_half_margin == exact.stats.rescored  # any bf16 error exceeds 5e-10


def test_equal_fp32_scores_keep_the_first_stage_order(scored):
    """Duplicate passages tie in fp32; re-scored, they stay in first-stage order as assemble_ranking keeps ties."""
    model, queries, passages, _, _ = scored
    doubled = [passages[0], passages[1], passages[0], passages[1]]
    hits = [Hit("q", d, 10.0 - i, i + 1, text=t) for i, (d, t) in enumerate(zip(["b", "a", "d", "c"], doubled))]
    fast = CrossEncoderReranker(model, batch_size=8, max_length=64, dtype="bf16")
    ranked = ExactOrderReranker.around(fast, margin=1e-3, top_k=4).rerank(queries[0], hits)
    positions = {h.docid: i for i, h in enumerate(ranked)}
    assert positions["b"] < positions["d"] and positions["a"] < positions["c"]


def test_an_fp32_fast_path_rescores_nothing(scored):
    model, queries, passages, fp32_scores, _ = scored
    fast = CrossEncoderReranker(model, batch_size=8, max_length=64, dtype="fp32")
    exact = ExactOrderReranker.around(fast, margin=1.0, top_k=TOP)
    assert exact.same_precision
    np.testing.assert_array_equal(exact.score(queries[0], passages), fp32_scores[0])
    assert exact.stats.rescored == 0 and exact.stats.pairs == len(passages)


def test_the_signature_names_margin_top_k_and_both_precisions(scored):
    model = scored[0]
    fast = CrossEncoderReranker(model, max_length=64, dtype="bf16")
    signature = ExactOrderReranker.around(fast, margin=1e-3, top_k=5).signature()
    assert (signature["reranker"], signature["margin"], signature["top_k"]) == ("ExactOrderReranker", 1e-3, 5)
    assert (signature["fast"]["dtype"], signature["exact"]["dtype"]) == ("bf16", "fp32")
    assert signature["fast"]["weights"] == signature["exact"]["weights"]
    assert ExactOrderReranker.around(fast, margin=2e-3, top_k=5).signature() != signature
    assert ExactOrderReranker.around(fast, margin=1e-3, top_k=6).signature() != signature


class TextLengthReranker(Reranker):
    def score(self, query, texts):
        return np.array([len(t) for t in texts], dtype=float)


def test_a_reranker_without_a_model_needs_its_exact_twin():
    with pytest.raises(ExactOrderError, match="TextLengthReranker has no model to re-score in float32"):
        ExactOrderReranker.around(TextLengthReranker(), margin=0.1)


# --------------------------------------------------------------------------------------------------
# run files and the command line


@pytest.fixture(scope="module")
def run_inputs(scored, tmp_path_factory):
    model, queries, passages, _, _ = scored
    root = tmp_path_factory.mktemp("exact")
    docs = {f"d{i:02d}": p for i, p in enumerate(passages)}
    write_corpus(root / "corpus.jsonl", [Document(d, t) for d, t in docs.items()])
    topics = {f"q{i:02d}": q for i, q in enumerate(queries)}
    write_topics(root / "topics.tsv", topics)
    write_run(root / "run.txt", {q: [Hit(q, d, 100.0 - i, i + 1) for i, d in enumerate(docs)] for q in topics},
              tag="first")
    model.save_pretrained(root / "model")
    return root, topics, docs


def test_rerank_run_reports_the_rescored_share(scored, run_inputs, tmp_path):
    root, topics, docs = run_inputs
    error = max(float(np.abs(a - b).max()) for a, b in zip(scored[3], scored[4]))
    fast = CrossEncoderReranker(scored[0], batch_size=8, max_length=64, dtype="bf16")
    exact = ExactOrderReranker.around(fast, margin=2.5 * error, top_k=TOP)
    report = rerank_run(exact, root / "run.txt", topics, docs, tmp_path / "exact.txt", depth=20, chunk_pairs=100)
    fp32 = CrossEncoderReranker(scored[0], batch_size=8, max_length=64, dtype="fp32")
    rerank_run(fp32, root / "run.txt", topics, docs, tmp_path / "fp32.txt", depth=20, chunk_pairs=100)
    assert report.reranker["exact_order"] == exact.stats.to_dict()
    assert report.reranker["exact_order"]["pairs"] == report.pairs == 12 * 20
    assert 0 < report.reranker["exact_order"]["rescored_share"] < 1
    got, want = dict(iter_run_by_query(tmp_path / "exact.txt")), dict(iter_run_by_query(tmp_path / "fp32.txt"))
    assert {q: top(h) for q, h in got.items()} == {q: top(h) for q, h in want.items()}


def test_each_run_reports_only_its_own_pairs(scored, run_inputs, tmp_path):
    """One reranker serving two runs (a study reranks every language with one): the second report
    counts the second run's pairs and truncation, not both runs'."""
    root, topics, docs = run_inputs
    fast = CrossEncoderReranker(scored[0], batch_size=8, max_length=64, dtype="bf16")
    exact = ExactOrderReranker.around(fast, margin=1e-3, top_k=TOP)
    first = rerank_run(exact, root / "run.txt", topics, docs, tmp_path / "a.txt", depth=20, chunk_pairs=100)
    second = rerank_run(exact, root / "run.txt", topics, docs, tmp_path / "b.txt", depth=10, chunk_pairs=100)
    assert first.reranker["exact_order"]["pairs"] == 12 * 20 and second.reranker["exact_order"]["pairs"] == 12 * 10
    assert second.reranker["exact_order"]["queries"] == 12
    assert second.reranker["truncation"].startswith(f"{12 * 10} pairs at max length 64")


def cli_args(root, out, *extra):
    return ["rerank", "--run", str(root / "run.txt"), "--topics", str(root / "topics.tsv"), "--corpus",
            str(root / "corpus.jsonl"), "--output", str(out), "--model", str(root / "model"), "--depth", "20",
            "--batch-size", "8", "--max-length", "64", "--dtype", "bf16", *extra]


def test_cli_exact_order_writes_its_share_in_the_report(run_inputs, tmp_path, capsys):
    root, _, _ = run_inputs
    assert main(cli_args(root, tmp_path / "out.txt", "--exact-order-margin", "1e-3", "--exact-top", "5")) == 0
    report = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert report["exact_order"]["top_k"] == 5 and report["exact_order"]["margin"] == 1e-3
    assert report["exact_order"]["pairs"] == 12 * 20 and report["exact_order"]["rescored"] > 0


@pytest.mark.parametrize("extra, message", [
    (["--exact-top", "5"], "--exact-top needs --exact-order-margin"),
    (["--exact-order-margin", "1e-3", "--exact-top", "21"], "--exact-top 21 is beyond --depth 20"),
    (["--exact-order-margin", "0"], "argument --exact-order-margin: must be a positive number, got '0'"),
    (["--exact-order-margin", "1e-3", "--exact-top", "0"], "argument --exact-top: must be a positive integer"),
])
def test_cli_bad_exact_order_flags_are_one_line(run_inputs, tmp_path, capsys, caplog, extra, message):
    """A bad value is the parser's one stderr line; a bad combination, one ERROR log line (stderr too,
    under the real command; caught here by caplog), before any model is loaded."""
    root, _, _ = run_inputs
    caplog.set_level(logging.INFO)
    assert main(cli_args(root, tmp_path / "out.txt", *extra)) == 2
    lines = capsys.readouterr().err.strip().splitlines() + [r.getMessage() for r in caplog.records
                                                          if r.levelname == "ERROR"]
    assert len(lines) == 1 and message in lines[0], lines
    assert not any("cross-encoder" in r.getMessage() for r in caplog.records)  # the model was never loaded
    assert not (tmp_path / "out.txt").exists()


def test_stats_of_several_processes_sum_their_counts_and_keep_the_largest_error():
    one = ExactOrderStats(1e-3, 5, queries=2, pairs=40, rescored=4, max_error=2e-4, over_half_margin=0)
    two = ExactOrderStats(1e-3, 5, queries=3, pairs=60, rescored=6, max_error=6e-4, over_half_margin=1)
    summed = ExactOrderStats.summed([one.to_dict(), two.to_dict()])
    assert summed == ExactOrderStats(1e-3, 5, queries=5, pairs=100, rescored=10, max_error=6e-4, over_half_margin=1)
    assert summed.to_dict()["rescored_share"] == 0.1
