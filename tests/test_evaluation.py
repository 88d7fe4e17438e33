"""Tests of clir_ot.evaluation and the ``clir-ot evaluate`` verb.

Hand-computed values on small inline runs (whose rank columns contradict their scores on purpose),
plus a comparison with the trec_eval that ships inside Pyserini, on a generated run with ties.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from clir_ot.cli import main
from clir_ot.errors import ConfigError, ConsistencyError
from clir_ot.evaluation import (
    DEFAULT_MEASURES,
    Measure,
    count_tied_queries,
    evaluate,
    format_per_query,
    format_table,
    format_value,
    parse_measure,
    parse_measures,
    trec_eval_ranking,
    truncate_run,
)
from clir_ot.formats import load_run, read_qrels

REPO = Path(__file__).resolve().parents[1]

# q1: the rank column says d2 first, the scores say d1, d3, d2, d4.
# q2: one relevant document, second by score.
QRELS = """\
q1 0 d1 1
q1 0 d2 0
q1 0 d3 1
q2 0 d5 1
q2 0 d6 0
"""
RUN = """\
q1 Q0 d2 1 0.5 bm25
q1 Q0 d1 2 0.9 bm25
q1 Q0 d3 3 0.7 bm25
q1 Q0 d4 4 0.1 bm25
q2 Q0 d5 1 0.3 bm25
q2 Q0 d6 2 0.8 bm25
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path, "qrels.txt", QRELS), write(tmp_path, "bm25.txt", RUN)


# --------------------------------------------------------------------------------------------------
# Measures


@pytest.mark.parametrize(
    "text, display, trec, key, depth",
    [
        ("P.5", "P@5", "P.5", "P_5", None),
        ("P_5", "P@5", "P.5", "P_5", None),
        ("P@5", "P@5", "P.5", "P_5", None),
        ("p@5", "P@5", "P.5", "P_5", None),
        ("success.5", "Success@5", "success.5", "success_5", None),
        ("Success@5", "Success@5", "success.5", "success_5", None),
        ("ndcg_cut.10", "nDCG@10", "ndcg_cut.10", "ndcg_cut_10", None),
        ("ndcg_cut_10", "nDCG@10", "ndcg_cut.10", "ndcg_cut_10", None),
        ("nDCG@10", "nDCG@10", "ndcg_cut.10", "ndcg_cut_10", None),
        ("ndcg", "nDCG", "ndcg", "ndcg", None),
        ("recall.100", "R@100", "recall.100", "recall_100", None),
        ("R@100", "R@100", "recall.100", "recall_100", None),
        ("map", "AP", "map", "map", None),
        ("AP", "AP", "map", "map", None),
        ("AP@10", "AP@10", "map", "map", 10),
        ("map_cut.10", "AP@10", "map", "map", 10),
        ("recip_rank", "RR", "recip_rank", "recip_rank", None),
        ("RR", "RR", "recip_rank", "recip_rank", None),
        ("RR@10", "RR@10", "recip_rank", "recip_rank", 10),
        ("MRR@10", "RR@10", "recip_rank", "recip_rank", 10),
        ("Rprec", "Rprec", "Rprec", "Rprec", None),
        ("num_ret", "NumRet", "num_ret", "num_ret", None),
        ("num_rel", "NumRel", "num_rel", "num_rel", None),
        ("num_rel_ret", "NumRelRet", "num_rel_ret", "num_rel_ret", None),
    ],
)
def test_parse_measure_spellings(text: str, display: str, trec: str, key: str, depth: int | None) -> None:
    assert parse_measure(text) == Measure(display, trec, key, depth)


@pytest.mark.parametrize("text", ["P", "P@0", "bpref", "Rprec@5", "ndcg_cut", "P@x", ""])
def test_parse_measure_unknown_lists_valid_forms(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_measure(text)
    assert repr(text) in str(err.value)
    if text != "P@0":
        assert "P@k = P.k = P_k" in str(err.value) and "RR@k" in str(err.value)


def test_parse_measures_expands_lists_and_drops_repeats() -> None:
    displays = [m.display for m in parse_measures(["P.5,10", "P@5", "ndcg_cut.10,20", "MRR@10", "RR@10"])]
    assert displays == ["P@5", "P@10", "nDCG@10", "nDCG@20", "RR@10"]
    assert [m.display for m in DEFAULT_MEASURES] == ["P@5", "Success@5", "RR@10", "nDCG@10", "R@100"]


def test_trec_eval_args() -> None:
    assert parse_measure("RR@10").trec_eval_args() == ["-M", "10", "-m", "recip_rank"]
    assert parse_measure("P@5").trec_eval_args() == ["-m", "P.5"]


# --------------------------------------------------------------------------------------------------
# Values computed by hand


def test_scores_not_rank_column_define_the_ranking(files: tuple[Path, Path]) -> None:
    qrels, run = read_qrels(files[0]), load_run(files[1])
    ev = evaluate(qrels, run, ["P@1", "P@2", "P@5", "RR", "AP", "Success@1", "nDCG@10", "R@100", "NumRelRet"])
    assert ev.per_query["q1"] == {
        "P@1": 1.0, "P@2": 1.0, "P@5": 0.4, "RR": 1.0, "AP": 1.0, "Success@1": 1.0,
        "nDCG@10": 1.0, "R@100": 1.0, "NumRelRet": 2.0,
    }
    q2 = ev.per_query["q2"]
    assert (q2["P@1"], q2["P@2"], q2["P@5"], q2["RR"], q2["AP"], q2["Success@1"]) == (0.0, 0.5, 0.2, 0.5, 0.5, 0.0)
    assert q2["nDCG@10"] == pytest.approx(1 / math.log2(3))
    assert ev.means["P@1"] == 0.5
    assert ev.means["RR"] == 0.75
    assert ev.means["P@5"] == pytest.approx(0.3)
    assert ev.means["nDCG@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert ev.means["NumRelRet"] == 3.0  # counts are summed, as trec_eval sums them
    assert ev.tied_queries == 0 and ev.missing == () and ev.ignored == ()


def test_ties_are_broken_by_docid_descending_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    qrels = {"q1": {"a": 1, "b": 0}}
    with caplog.at_level(logging.WARNING, logger="clir_ot.evaluation"):
        ev = evaluate(qrels, {"q1": {"a": 1.0, "b": 1.0}}, ["P@1", "RR"], name="tied")
    assert ev.means == {"P@1": 0.0, "RR": 0.5}  # b before a
    assert ev.tied_queries == 1
    assert any("tied: 1 of 1 queries have tied scores" in r.getMessage() for r in caplog.records)


def test_scores_equal_in_single_precision_are_ties() -> None:
    """trec_eval keeps scores as 32-bit floats: 1.0 and the next double below it tie."""
    qrels = {"q1": {"a": 1, "b": 0}}
    close = {"q1": {"a": 1.0, "b": math.nextafter(1.0, -math.inf)}}
    assert count_tied_queries(close) == 1
    assert evaluate(qrels, close, ["P@1"]).means["P@1"] == 0.0
    apart = {"q1": {"a": 1.0, "b": 0.99999}}
    assert count_tied_queries(apart) == 0
    assert evaluate(qrels, apart, ["P@1"]).means["P@1"] == 1.0


def test_complete_counts_missing_queries_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1, "d": 1, "e": 0}}
    run = {"q1": {"a": 2.0, "z": 1.0}, "q2": {"z": 2.0, "b": 1.0}, "q9": {"a": 1.0}}
    measures = ["P@1", "RR", "NumRel", "NumRet"]
    full = evaluate(qrels, run, measures, complete=True)
    assert full.num_queries == 3 and full.missing == ("q3",) and full.ignored == ("q9",)
    assert full.means["P@1"] == pytest.approx(1 / 3)
    assert full.means["RR"] == pytest.approx(1.5 / 3)
    assert full.means["NumRel"] == 4.0  # q3's two relevant documents count, as with trec_eval -c
    assert full.means["NumRet"] == 4.0
    assert full.per_query["q3"] == {"P@1": 0.0, "RR": 0.0, "NumRel": 2.0, "NumRet": 0.0}
    partial = evaluate(qrels, run, measures, complete=False)
    assert sorted(partial.per_query) == ["q1", "q2"]
    assert partial.means["P@1"] == 0.5 and partial.means["RR"] == 0.75 and partial.means["NumRel"] == 2.0


def test_nothing_to_evaluate() -> None:
    with pytest.raises(ConsistencyError, match="no query of the run is in the qrels; nothing to evaluate"):
        evaluate({"q1": {"a": 1}}, {"q9": {"a": 1.0}}, ["P@1"], complete=False)
    with pytest.raises(ConsistencyError, match="the qrels judge no query"):
        evaluate({}, {"q9": {"a": 1.0}}, ["P@1"])
    assert evaluate({"q1": {"a": 1}}, {"q9": {"a": 1.0}}, ["P@1"]).means == {"P@1": 0.0}


def test_rr_at_10_truncates_like_trec_eval_minus_M() -> None:
    scores = {f"d{i:02d}": float(20 - i) for i in range(1, 12)}  # d11 is 11th
    qrels = {"q1": {"d11": 1}}
    ev = evaluate(qrels, {"q1": scores}, ["RR", "RR@10", "AP@10", "AP"])
    assert ev.means["RR"] == pytest.approx(1 / 11)
    assert ev.means["RR@10"] == 0.0
    assert ev.means["AP@10"] == 0.0
    assert ev.means["AP"] == pytest.approx(1 / 11)
    # Nine distinct scores, then x and y tied at places 10 and 11: y (larger docid) is 10th.
    tied = {**{f"d{i}": float(20 - i) for i in range(1, 10)}, "x": 1.0, "y": 1.0}
    assert trec_eval_ranking(tied)[9:] == ["y", "x"]
    assert list(truncate_run({"q1": tied}, 10)["q1"]) == [*(f"d{i}" for i in range(1, 10)), "y"]
    assert evaluate({"q1": {"y": 1}}, {"q1": tied}, ["RR@10"]).means["RR@10"] == pytest.approx(0.1)
    assert evaluate({"q1": {"x": 1}}, {"q1": tied}, ["RR@10"]).means["RR@10"] == 0.0


def test_ap_at_k_equals_map_cut() -> None:
    qrels = {"q1": {"a": 1, "c": 1}}
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}}
    ev = evaluate(qrels, run, ["AP@2", "AP"])
    assert ev.means["AP@2"] == pytest.approx(0.5)
    assert ev.means["AP"] == pytest.approx((1 + 2 / 3) / 2)


# --------------------------------------------------------------------------------------------------
# Output


def test_format_table() -> None:
    rows = {"bm25": {"P@5": 0.3, "NumRel": 4.0}, "dense|x": {"P@5": 0.123456, "NumRel": 4.0}}
    assert format_table(rows, ["P@5", "num_rel"], "tsv") == "run\tP@5\tNumRel\nbm25\t0.3000\t4\ndense|x\t0.1235\t4\n"
    assert format_table(rows, ["P@5", "num_rel"], "markdown") == (
        "| run | P@5 | NumRel |\n|:--|--:|--:|\n| bm25 | 0.3000 | 4 |\n| dense\\|x | 0.1235 | 4 |\n"
    )
    assert json.loads(format_table(rows, ["P.5", "NumRel"], "json")) == rows
    with pytest.raises(ConfigError, match="unknown output format 'csv'; choose one of tsv, markdown, json"):
        format_table(rows, ["P@5"], "csv")
    with pytest.raises(ConsistencyError, match="run 'bm25' has no value for P@10"):
        format_table(rows, ["P@10"], "tsv")
    assert format_value(parse_measure("P@5"), 0.00005) == "0.0001"


def test_format_per_query_trec_eval_style() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    ev = evaluate(qrels, {"q1": {"a": 1.0}}, ["P@1", "NumRel"])
    lines = format_per_query({"bm25": ev}).splitlines()
    assert [line.split("\t") for line in lines] == [
        ["runid".ljust(22), "all", "bm25"],
        ["P@1".ljust(22), "q1", "1.0000"],
        ["NumRel".ljust(22), "q1", "1"],
        ["P@1".ljust(22), "q2", "0.0000"],
        ["NumRel".ljust(22), "q2", "1"],
        ["P@1".ljust(22), "all", "0.5000"],
        ["NumRel".ljust(22), "all", "2"],
    ]
    data = json.loads(format_per_query({"bm25": ev}, "json"))
    assert data == {"bm25": {"per_query": {"q1": {"P@1": 1.0, "NumRel": 1.0}, "q2": {"P@1": 0.0, "NumRel": 1.0}},
                             "all": {"P@1": 0.5, "NumRel": 2.0}}}
    markdown = format_per_query({"bm25": ev, "dense": ev}, "markdown")
    assert "### bm25" in markdown and "### dense" in markdown and "| all | 0.5000 | 2 |" in markdown


# --------------------------------------------------------------------------------------------------
# CLI


def test_cli_table(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   caplog: pytest.LogCaptureFixture) -> None:
    qrels, run = files
    other = write(tmp_path, "dense.txt", RUN.replace("d5 1 0.3", "d5 1 0.9") + "q7 Q0 d1 1 1.0 x\n")
    code = main(["evaluate", "--qrels", str(qrels), "--run", str(run), "--run", str(other), "-m", "P.1", "-m", "recip_rank"])
    assert code == 0
    assert capsys.readouterr().out == "run\tP@1\tRR\nbm25\t0.5000\t0.7500\ndense\t1.0000\t1.0000\n"
    assert any("dense: 1 queries are not in the qrels" in r.getMessage() for r in caplog.records)


def test_cli_output_file_per_query_and_errors(files: tuple[Path, Path], tmp_path: Path) -> None:
    qrels, run = files
    out = tmp_path / "out" / "eval.json"
    code = main(["evaluate", "--qrels", str(qrels), "--run", str(run), "--per-query", "--format", "json",
                 "--output", str(out), "--no-complete"])
    assert code == 0
    data = json.loads(out.read_text())
    assert list(data["bm25"]["all"]) == [m.display for m in DEFAULT_MEASURES]
    assert data["bm25"]["per_query"]["q2"]["RR@10"] == 0.5
    assert main(["evaluate", "--qrels", str(qrels), "--run", str(run), "-m", "bogus"]) == 2


# --------------------------------------------------------------------------------------------------
# Agreement with Pyserini's bundled trec_eval

_JAR_SCRIPT = (
    "import sys; import clir_ot.java as j; "
    "sys.exit(j.run_pyserini_module('pyserini.eval.trec_eval', sys.argv[1:]))"
)


def pyserini_trec_eval(args: list[str]) -> dict[str, str]:
    """Run Pyserini's trec_eval; return its ``measure -> value`` summary (``all``) lines."""
    if importlib.util.find_spec("clir_ot.cli.pyserini") is not None:
        cmd = [sys.executable, "-m", "clir_ot", "pyserini", "pyserini.eval.trec_eval", *args]
    else:  # the `pyserini` verb is not built yet
        cmd = [sys.executable, "-c", _JAR_SCRIPT, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = {}
    for line in proc.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) == 3 and cols[1] == "all":
            summary[cols[0].strip()] = cols[2].strip()
    return summary


def generated_collection(tmp_path: Path) -> tuple[Path, Path]:
    """~50 queries x 100 docs with random scores: ties in some queries, qrels queries missing from the run,
    run queries missing from the qrels, lines shuffled and rank columns that contradict the scores."""
    rng = random.Random(20240611)
    qrels_lines, run_lines = [], []
    for i in range(60):
        qid = f"q{i}"
        for doc in rng.sample(range(300), 12):
            qrels_lines.append(f"{qid} 0 d{doc} {rng.choice([0, 0, 1, 1, 2])}\n")
    judged = {}
    for line in qrels_lines:
        qid, _, docid, rel = line.split()
        judged.setdefault(qid, {})[docid] = int(rel)
    run_qids = [f"q{i}" for i in range(55) if i % 7 != 3] + ["x1", "x2"]
    for n, qid in enumerate(run_qids):
        docids = [f"d{doc}" for doc in rng.sample(range(300), 100)]
        if qid in judged:  # make sure some relevant documents are retrieved
            docids = list(dict.fromkeys([d for d, r in judged[qid].items() if r > 0][:3] + docids))[:100]
        scores = []
        for docid in docids:
            score = rng.random() + (0.4 if judged.get(qid, {}).get(docid, 0) > 0 and rng.random() < 0.6 else 0.0)
            if n % 5 == 0:
                score = round(score, 1)  # many exact ties
            scores.append(score)
        if n % 5 == 1:  # ties visible only at trec_eval's single precision, at the top of the ranking
            top = max(range(len(scores)), key=scores.__getitem__)
            scores[0] = scores[top] * (1 + 1e-12)  # docids[0] is relevant: first in double precision only
            for k in range(2, 40, 2):
                scores[k + 1] = scores[k] * (1 - 1e-12)
        ranks = list(range(1, len(docids) + 1))
        rng.shuffle(ranks)
        run_lines += [f"{qid} Q0 {d} {r} {s!r} gen\n" for d, r, s in zip(docids, ranks, scores)]
    rng.shuffle(run_lines)
    return write(tmp_path, "qrels.txt", "".join(qrels_lines)), write(tmp_path, "gen.txt", "".join(run_lines))


def test_agrees_with_pyserini_trec_eval(tmp_path: Path) -> None:
    qrels_path, run_path = generated_collection(tmp_path)
    qrels, run = read_qrels(qrels_path), load_run(run_path)
    assert count_tied_queries(run) >= 10

    plain = ["P.5", "P.10", "recall.100", "ndcg_cut.10", "ndcg", "map", "success.5", "recip_rank", "Rprec",
             "map_cut.10", "num_ret", "num_rel", "num_rel_ret"]
    # trec_eval keeps only the first of "-m P.5 -m P.10": cutoffs of one measure go in one list
    args = ["-m", "P.5,10", *(a for m in plain if not m.startswith("P.") for a in ("-m", m))]
    ours = evaluate(qrels, run, plain + ["RR@10", "AP@10", "RR@1"], complete=True)
    assert ours.missing and ours.ignored == ("x1", "x2")

    jar = pyserini_trec_eval(["-c", *args, str(qrels_path), str(run_path)])
    for name in plain:
        measure = parse_measure(name)
        key = name.replace(".", "_")
        assert format_value(measure, ours.means[measure.display]) == jar[key], name

    jar_depth = pyserini_trec_eval(["-c", "-M", "10", "-m", "recip_rank", "-m", "map", str(qrels_path), str(run_path)])
    assert f"{ours.means['RR@10']:.4f}" == jar_depth["recip_rank"]
    assert f"{ours.means['AP@10']:.4f}" == jar_depth["map"] == jar["map_cut_10"]
    jar_depth1 = pyserini_trec_eval(["-c", "-M", "1", "-m", "recip_rank", str(qrels_path), str(run_path)])
    assert f"{ours.means['RR@1']:.4f}" == jar_depth1["recip_rank"]

    partial = evaluate(qrels, run, ["P.5", "recip_rank", "num_rel"], complete=False)
    jar_partial = pyserini_trec_eval(["-m", "P.5", "-m", "recip_rank", "-m", "num_rel", str(qrels_path), str(run_path)])
    assert f"{partial.means['P@5']:.4f}" == jar_partial["P_5"]
    assert f"{partial.means['RR']:.4f}" == jar_partial["recip_rank"]
    assert str(round(partial.means["NumRel"])) == jar_partial["num_rel"]
