"""The clir-ot command end to end on a small collection made in the test."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from clir_ot.cli import main
from clir_ot.formats import Document, load_run, write_corpus, write_qrels, write_topics

DOCS = [
    Document("d1", "The Panthers won Super Bowl 50 against the Broncos."),
    Document("d2", "Optimal transport aligns tokens of two sentences."),
    Document("d3", "The Broncos lost the game in Santa Clara."),
    Document("d4", "Sinkhorn iterations solve entropic optimal transport."),
]
TOPICS = {"q1": "who won super bowl 50", "q2": "entropic optimal transport sinkhorn", "q3": "broncos santa clara"}
QRELS = {"q1": {"d1": 1}, "q2": {"d4": 1, "d2": 1}, "q3": {"d3": 1}}


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_corpus(root / "corpus" / "docs.jsonl", DOCS)
    write_topics(root / "topics.tsv", TOPICS)
    write_qrels(root / "qrels.txt", QRELS)
    return root


def test_index_search_evaluate(collection, capsys):
    root = collection
    assert main(["index", "--input", str(root / "corpus"), "--index", str(root / "idx"), "--language", "en"]) == 0
    assert main(["search", "--index", str(root / "idx"), "--topics", str(root / "topics.tsv"),
                 "--output", str(root / "run.txt"), "--hits", "3", "--bm25", "0.9", "0.4", "--threads", "2"]) == 0
    run = load_run(root / "run.txt")
    assert set(run) == {"q1", "q2", "q3"} and all(len(h) <= 3 for h in run.values())
    assert max(run["q1"], key=run["q1"].get) == "d1"
    capsys.readouterr()
    assert main(["evaluate", "--qrels", str(root / "qrels.txt"), "--run", str(root / "run.txt"),
                 "-m", "P.1", "-m", "recip_rank", "--format", "json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    # the expected values, computed here from the run and the qrels: P@1 and RR of each query, averaged
    first_relevant = []
    for qid, scores in run.items():
        ranked = sorted(scores, key=lambda d: (-scores[d], d))
        first_relevant.append(next((r for r, d in enumerate(ranked, 1) if QRELS[qid].get(d, 0) > 0), None))
    expected_p1 = sum(r == 1 for r in first_relevant) / 3
    expected_rr = sum(1 / r for r in first_relevant if r) / 3
    assert measured == {"run": {"P@1": pytest.approx(expected_p1), "RR": pytest.approx(expected_rr)}}
    # a run with other values: q1's relevant document at rank 2, q2's at rank 1, none for q3
    (root / "other.txt").write_text("q1 Q0 d3 1 3.0 t\nq1 Q0 d1 2 2.0 t\nq2 Q0 d2 1 5.0 t\nq3 Q0 d4 1 1.0 t\n")
    assert main(["evaluate", "--qrels", str(root / "qrels.txt"), "--run", str(root / "other.txt"),
                 "-m", "P.1", "-m", "recip_rank", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"other": {"P@1": pytest.approx(1 / 3), "RR": pytest.approx(0.5)}}


def test_errors_are_one_line_and_exit_2(collection, caplog, tmp_path):
    bad = tmp_path / "topics.tsv"
    bad.write_text("q1\tfine\nq2\n")
    code = main(["search", "--index", str(collection / "idx"), "--topics", str(bad), "--output", str(tmp_path / "r")])
    assert code == 2
    assert f"{bad}:2: expected 2 tab-separated columns" in caplog.text
    assert not (tmp_path / "r").exists()
    assert main(["index", "--input", str(collection / "corpus"), "--index", str(tmp_path / "i"),
                 "--language", "portuguese"]) == 2
    assert "Did you mean 'pt'" in caplog.text


def test_console_script_and_pyserini_passthrough(collection, tmp_path):
    """`clir-ot pyserini pyserini.search.lucene ...` runs Pyserini's own CLI on the right JVM."""
    env = {**os.environ}
    out = tmp_path / "pyserini-run.txt"
    done = subprocess.run(
        [sys.executable, "-m", "clir_ot", "-q", "pyserini", "pyserini.search.lucene",
         "--index", str(collection / "idx"), "--topics", str(collection / "topics.tsv"),
         "--output", str(out), "--hits", "3", "--bm25"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ours = load_run(collection / "run.txt")
    theirs = load_run(out)
    for qid in ours:  # same index, same BM25: the same documents with the same scores
        assert {d: round(s, 4) for d, s in ours[qid].items()} == {d: round(s, 4) for d, s in theirs[qid].items()}
