"""TREC runs, qrels, topics and corpora: round trips, tie handling, atomic writes, and every bad input."""
from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from clir_ot.errors import ConsistencyError, InputFormatError
from clir_ot.formats import (
    Document,
    Hit,
    as_float32,
    RunWriter,
    atomic_open,
    check_qids,
    iter_corpus,
    iter_lines,
    iter_run_by_query,
    load_corpus,
    load_run,
    read_qrels,
    read_topics,
    strictly_decreasing,
    write_corpus,
    write_qrels,
    write_run,
    write_topics,
)

# rank column contradicts the scores on purpose: the ranking is defined by the score
RUN = """q1 Q0 d1 1 1.5 t
q1 Q0 d2 2 2.5 t
q1 Q0 d3 3 0.5 t
q2 Q0 d9 1 -1 t
q2 Q0 d1 2 3 t
"""


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_run_stream_orders_by_score_not_rank_column(tmp_path):
    path = write(tmp_path, "run.txt", RUN)
    queries = list(iter_run_by_query(path))
    assert [q for q, _ in queries] == ["q1", "q2"]
    assert [h.docid for h in queries[0][1]] == ["d2", "d1", "d3"]
    assert [h.rank for h in queries[0][1]] == [1, 2, 3]
    assert [h.docid for h in queries[1][1]] == ["d1", "d9"]


def test_run_round_trip_is_exact_and_strictly_decreasing_at_float32(tmp_path):
    # 0.1 + 0.2 > 0.3 in float64, but they tie in float32, the precision trec_eval compares at
    run = {"q1": [Hit("q1", "b", 0.1 + 0.2), Hit("q1", "a", 0.3), Hit("q1", "c", 1e-30)],
           "q2": [Hit("q2", "x", 5.0)]}
    path = write_run(tmp_path / "out.txt", run, tag="t")
    lines = path.read_text().splitlines()
    assert [l.split()[2] for l in lines if l.startswith("q1")] == ["b", "a", "c"]
    back = load_run(path)
    assert back["q1"]["b"] == as_float32(0.3) and back["q1"]["c"] == as_float32(1e-30)
    assert back["q1"]["a"] < back["q1"]["b"]
    scores = np.array([float(l.split()[4]) for l in lines if l.startswith("q1")], dtype=np.float32)
    assert all(a > b for a, b in zip(scores, scores[1:]))
    # read back through the trec_eval ordering, the written order survives
    assert [h.docid for h in next(iter_run_by_query(path))[1]] == ["b", "a", "c"]


def test_ties_become_strictly_decreasing_in_docid_order():
    hits = [Hit("q", "c", 1.0), Hit("q", "a", 1.0), Hit("q", "b", 1.0), Hit("q", "z", 2.0)]
    out = strictly_decreasing(hits)
    assert [h.docid for h in out] == ["z", "a", "b", "c"]
    assert [h.rank for h in out] == [1, 2, 3, 4]
    assert out[1].score == 1.0 and out[2].score < 1.0 and out[3].score < out[2].score
    assert math.isclose(out[3].score, 1.0, rel_tol=1e-6)


def test_scores_equal_in_float32_are_ties():
    hits = [Hit("q", "b", 1.0 + 1e-12), Hit("q", "a", 1.0)]
    out = strictly_decreasing(hits)
    assert [h.docid for h in out] == ["b", "a"]
    assert np.float32(out[0].score) > np.float32(out[1].score)


def test_keep_order_keeps_given_order():
    hits = [Hit("q", "low", 0.0), Hit("q", "high", 9.0)]
    out = strictly_decreasing(hits, keep_order=True)
    assert [h.docid for h in out] == ["low", "high"]
    assert out[0].score > out[1].score


def test_run_writer_is_atomic(tmp_path):
    target = tmp_path / "run.txt"
    target.write_text("old contents\n")
    with pytest.raises(RuntimeError):
        with RunWriter(target, tag="t") as writer:
            writer.write("q1", [Hit("q1", "d1", 1.0)])
            raise RuntimeError("failed mid-way")
    assert target.read_text() == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.txt"]


def test_run_writer_rejects_duplicates(tmp_path):
    with pytest.raises(ValueError, match="written twice"):
        with RunWriter(tmp_path / "r.txt") as writer:
            writer.write("q1", [Hit("q1", "d1", 1.0)])
            writer.write("q1", [Hit("q1", "d2", 1.0)])
    with pytest.raises(ValueError, match="twice"):
        write_run(tmp_path / "r.txt", {"q1": [Hit("q1", "d1", 1.0), Hit("q1", "d1", 0.5)]})
    assert not (tmp_path / "r.txt").exists()


def test_gzip_run_round_trip(tmp_path):
    path = write_run(tmp_path / "run.txt.gz", {"q": [Hit("q", "d", 1.0)]})
    with gzip.open(path, "rt") as handle:
        assert handle.read().startswith("q Q0 d 1 1.0 ")
    assert load_run(path) == {"q": {"d": 1.0}}


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 t\n", 2, "expected 6 columns"),
        ("q1 Q0 d1 1 high t\n", 1, "score 'high' is not a number"),
        ("q1 Q0 d1 1 nan t\n", 1, "not finite"),
        ("q1 Q0 d1 one 1.0 t\n", 1, "rank 'one' is not an integer"),
        ("q1 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n", 2, "appears twice"),
    ],
)
def test_bad_run_lines_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, "bad.run", text)
    with pytest.raises(InputFormatError, match=message) as err:
        load_run(path)
    assert err.value.line == line and str(path) in str(err.value)
    assert f"bad.run:{line}:" in str(err.value)


def test_non_contiguous_query_cannot_stream(tmp_path):
    path = write(tmp_path, "r.txt", "q1 Q0 a 1 1 t\nq2 Q0 a 1 1 t\nq1 Q0 b 2 0 t\n")
    with pytest.raises(InputFormatError, match="contiguous") as err:
        list(iter_run_by_query(path))
    assert err.value.line == 3
    assert load_run(path) == {"q1": {"a": 1.0, "b": 0.0}, "q2": {"a": 1.0}}


def test_unknown_qid_and_docid(tmp_path):
    path = write(tmp_path, "r.txt", "q1 Q0 a 1 1 t\nq9 Q0 a 1 1 t\n")
    with pytest.raises(InputFormatError, match="query 'q9' is not in the topics") as err:
        load_run(path, known_qids={"q1"})
    assert err.value.line == 2
    with pytest.raises(InputFormatError, match="document 'a' is not in the corpus"):
        list(iter_run_by_query(path, known_docids={"b"}))
    with pytest.raises(ConsistencyError, match="q9"):
        check_qids({"q1"}, ["q1", "q9"], "topics.tsv", "run.txt")


def test_invalid_utf8_names_line(tmp_path):
    path = write(tmp_path, "t.tsv", b"q1\tfine\nq2\tbad \xff byte\n", mode="wb")
    with pytest.raises(InputFormatError, match="invalid UTF-8") as err:
        read_topics(path)
    assert err.value.line == 2


def test_missing_file(tmp_path):
    for reader in (load_run, read_qrels, read_topics, load_corpus):
        with pytest.raises(InputFormatError, match="no such file"):
            reader(tmp_path / "absent.txt")


def test_qrels_round_trip_and_errors(tmp_path):
    qrels = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    assert read_qrels(write_qrels(tmp_path / "q.txt", qrels)) == qrels
    with pytest.raises(InputFormatError, match="expected 4 columns") as err:
        read_qrels(write(tmp_path, "b.txt", "q1 0 d1 1\nq1 d2 1\n"))
    assert err.value.line == 2
    with pytest.raises(InputFormatError, match="relevance 'yes'"):
        read_qrels(write(tmp_path, "b.txt", "q1 0 d1 yes\n"))
    with pytest.raises(InputFormatError, match="judged twice"):
        read_qrels(write(tmp_path, "b.txt", "q1 0 d1 1\nq1 0 d1 0\n"))
    with pytest.raises(InputFormatError, match="query 'q2' is not in the topics"):
        read_qrels(write(tmp_path, "b.txt", "q1 0 d1 1\nq2 0 d1 1\n"), known_qids={"q1"})


def test_topics_tsv_and_jsonl(tmp_path):
    topics = {"q1": "what is optimal transport", "q2": "ขอบคุณ"}
    assert read_topics(write_topics(tmp_path / "t.tsv", topics)) == topics
    assert read_topics(write_topics(tmp_path / "t.jsonl", topics)) == topics
    alt = write(tmp_path, "alt.jsonl", '{"id": 7, "title": "seven"}\n')
    assert read_topics(alt) == {"7": "seven"}


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("t.tsv", "q1\tok\nq2\t  \n", "empty text"),
        ("t.tsv", "q1\tok\nq2 only\n", "expected 2 tab-separated columns"),
        ("t.tsv", "q1\tok\nq1\tagain\n", "appears twice"),
        ("t.jsonl", '{"qid": "q1", "query": "x"}\n{"qid": "q2"}\n', "missing the query text"),
        ("t.jsonl", '{"qid": "q1", "query": "x"}\n{not json\n', "invalid JSON"),
    ],
)
def test_bad_topics(tmp_path, name, text, message):
    with pytest.raises(InputFormatError, match=message) as err:
        read_topics(write(tmp_path, name, text))
    assert err.value.line == 2


def test_corpus_file_and_folder(tmp_path):
    docs = [Document("d1", "first", {"lang": "en"}), Document("d2", "второй")]
    path = write_corpus(tmp_path / "c" / "part1.jsonl", docs)
    assert load_corpus(path) == {"d1": "first", "d2": "второй"}
    assert list(iter_corpus(tmp_path / "c"))[0].fields == {"lang": "en"}
    write_corpus(tmp_path / "c" / "part2.jsonl", [Document("d1", "duplicate")])
    with pytest.raises(InputFormatError, match="appears twice") as err:
        load_corpus(tmp_path / "c")
    assert "part2.jsonl:1" in str(err.value)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"contents": "no id"}', "missing the 'id' field"),
        ('{"id": "d2", "contents": ""}', "empty contents"),
        ('{"id": "d2"}', "no string 'contents'"),
        ('{"id": "d 2", "contents": "x"}', "whitespace"),
        ('["a", "list"]', "expected a JSON object"),
    ],
)
def test_bad_corpus(tmp_path, line, message):
    path = write(tmp_path, "c.jsonl", json.dumps({"id": "d1", "contents": "ok"}) + "\n" + line + "\n")
    with pytest.raises(InputFormatError, match=message) as err:
        load_corpus(path)
    assert err.value.line == 2


def test_atomic_open_leaves_nothing_on_error(tmp_path):
    with pytest.raises(KeyError):
        with atomic_open(tmp_path / "x.json") as handle:
            handle.write("partial")
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


# A resumable writer killed mid-run (a real SIGKILL, in a subprocess) is tested in tests/test_kill.py.


def test_a_gz_name_on_other_bytes_or_a_cut_off_gz_names_the_file(tmp_path):
    fake = tmp_path / "run.txt.gz"
    fake.write_bytes(b"q1 Q0 d1 1 1.0 t\n")
    with pytest.raises(InputFormatError, match=rf"{fake}:1: not a readable gzip file"):
        list(iter_lines(fake))
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gzip.compress(b"".join(b"line %d\n" % i for i in range(1000)))[:-20])
    with pytest.raises(InputFormatError, match=rf"{cut}:\d+: not a readable gzip file"):
        list(iter_lines(cut))
