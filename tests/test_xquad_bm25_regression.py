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
