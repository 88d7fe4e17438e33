"""Real-data regression: BM25 on XQuAD against pinned figures, and our evaluation against the trec_eval jar."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clir_ot.evaluation import evaluate, parse_measure
from clir_ot.formats import load_run, read_qrels
from clir_ot.java import thai_segmentation_available
from clir_ot.retrieval.lucene import read_index_info
from clir_ot.datasets.layout import XQuADLayout
from clir_ot.pipelines.xquad_baseline import MEASURES as PINNED_MEASURES
from clir_ot.pipelines.xquad_baseline import run_xquad_bm25

PINNED = json.loads((Path(__file__).parent / "data" / "xquad_bm25.json").read_text())
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baseline(xquad_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bm25")
    return run_xquad_bm25(xquad_dir, out, out / "indexes", ["el", "en", "th", "zh"], thai_tokenizer="pythainlp")


@pytest.mark.parametrize("lang, key", [("el", "el"), ("en", "en"), ("th", "th-pythainlp"), ("zh", "zh")])
def test_bm25_figures_are_pinned(baseline, lang, key):
    for setting, expected in PINNED[key].items():
        got = {m: round(v, 4) for m, v in baseline.table[lang][setting].items()}
        assert got == expected, f"{lang} {setting}"


def _pyserini(module: str, *args: str) -> None:
    """Run one of Pyserini's own command-line tools (``clir-ot pyserini`` only boots the right JVM)."""
    done = subprocess.run([sys.executable, "-m", "clir_ot", "-q", "pyserini", module, *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_chinese_figures_equal_a_plain_pyserini_run(baseline, tmp_path):
    """The pinned Chinese figures are also a correctness check: Pyserini's own indexer and
    ``pyserini.search.lucene`` with the same analyzer (``-language zh``: Lucene's CJKAnalyzer, as the
    clir_ot index's manifest records), BM25 k1=0.9 b=0.4 and 100 hits, on the same collection, give the
    same documents with the same scores for every query and, evaluated, the pinned figures.

    (Chinese, not Greek: Anserini has no ``-language el``, so a plain Pyserini Greek run is not the
    same analysis; clir_ot pretokenizes Greek with Lucene's GreekAnalyzer instead.)"""
    collection = XQuADLayout(baseline.runs["zh"]["mono"].parent).collection
    info = read_index_info(XQuADLayout(baseline.runs["zh"]["mono"].parent,
                                       baseline.runs["zh"]["mono"].parent / "indexes").lucene_index("zh"))
    assert (info.analysis.method, info.analysis.tokenizer) == ("lucene", "CJKAnalyzer")
    _pyserini("pyserini.index.lucene", "-collection", "JsonCollection", "-input", str(collection.corpus("zh")),
              "-index", str(tmp_path / "index"), "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1",
              "-language", "zh", "-storePositions", "-storeDocvectors", "-storeRaw")
    qrels = read_qrels(collection.qrels("zh"))
    for setting, query_lang in (("mono", "zh"), ("cross", "en")):
        output = tmp_path / f"pyserini.{setting}.txt"
        _pyserini("pyserini.search.lucene", "--index", str(tmp_path / "index"),
                  "--topics", str(collection.topics(query_lang)), "--output", str(output), "--hits", "100",
                  "--bm25", "--k1", "0.9", "--b", "0.4", "--language", "zh", "--threads", "2")
        theirs, ours = load_run(output), load_run(baseline.runs["zh"][setting])
        # a query without any hit has no line in either (English questions share few terms with Chinese)
        assert set(ours) == set(theirs) and len(ours) >= {"mono": 1180, "cross": 300}[setting], setting
        for qid in ours:  # the same hits with the same BM25 scores (ours are made strictly decreasing)
            assert {d: round(s, 4) for d, s in ours[qid].items()} == \
                {d: round(s, 4) for d, s in theirs[qid].items()}, (setting, qid)
        result = evaluate(qrels, theirs, list(PINNED_MEASURES))
        assert {m: round(result.means[m], 4) for m in PINNED_MEASURES} == PINNED["zh"][setting], setting


def test_thai_lucene_path_is_pinned(xquad_dir, tmp_path):
    if not thai_segmentation_available():
        pytest.skip("this Java runtime cannot segment Thai; the PyThaiNLP figures are checked instead")
    result = run_xquad_bm25(xquad_dir, tmp_path, tmp_path / "indexes", ["th"], thai_tokenizer="lucene")
    for setting, expected in PINNED["th-lucene"].items():
        assert {m: round(v, 4) for m, v in result.table["th"][setting].items()} == expected


MEASURES = ["P.5", "P.10", "recall.100", "ndcg_cut.10", "map", "success.5"]


@pytest.mark.parametrize("lang, setting", [("th", "cross"), ("zh", "mono")])
def test_evaluation_equals_trec_eval_jar_on_real_runs(baseline, lang, setting):
    run_path = baseline.runs[lang][setting]
    qrels_path = run_path.parent / "collection" / f"qrels.xquad.cross.{lang}.txt"
    jar = {}
    for extra in ([], ["-M", "10", "-m", "recip_rank"]):
        args = ["-c", "-m", "all_trec"] if not extra else ["-c", *extra]
        done = subprocess.run(
            [sys.executable, "-m", "clir_ot", "-q", "pyserini", "pyserini.eval.trec_eval", *args,
             str(qrels_path), str(run_path)],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "all":
                jar[("M10:" if extra else "") + parts[0]] = parts[2]
    ours = evaluate(read_qrels(qrels_path), load_run(run_path), MEASURES + ["RR@10"])
    for text in MEASURES:
        measure = parse_measure(text)
        assert f"{ours.means[measure.display]:.4f}" == jar[measure.key], text
    assert f"{ours.means['RR@10']:.4f}" == jar["M10:recip_rank"]
