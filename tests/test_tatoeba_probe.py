"""The Tatoeba sentence-retrieval probe: a leak-free deterministic split, the task's relevance, scoring
with ties broken by docid, and zero-shot multilingual-e5-small on real Swahili (slow)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from clir_ot.datasets.tatoeba import ProbeLayout, probe_split, sentence_task
from clir_ot.distill.bitext import BitextPair, tatoeba_pairs
from clir_ot.errors import ConfigError
from clir_ot.evaluation import evaluate
from clir_ot.formats import load_corpus, load_run, read_qrels, read_topics
from clir_ot.models import BiEncoderConfig, BiEncoderModel
from clir_ot.pipelines.tatoeba_probe import rank_task, render_probe_table, run_tatoeba_probe, score_run


def pairs_of(texts):
    return [BitextPair(e, f, "mem", i + 1) for i, (e, f) in enumerate(texts)]


def test_split_is_leak_free_and_deterministic(tatoeba_dir):
    pairs = tatoeba_pairs(tatoeba_dir, "sw")
    distill, test = probe_split(pairs)
    assert len(distill) + len(test) == len(pairs) and 0.35 < len(test) / len(pairs) < 0.65
    assert not {p.english for p in distill} & {p.english for p in test}
    assert not {p.foreign for p in distill} & {p.foreign for p in test}
    assert probe_split(list(reversed(pairs)))[1] == list(reversed(test))  # the texts decide, not the order
    assert probe_split(pairs, salt="other")[1] != test


def test_pairs_sharing_a_text_stay_together():
    pairs = pairs_of([("a", "x"), ("b", "x"), ("b", "y"), ("c", "z")] + [(f"e{i}", f"f{i}") for i in range(40)])
    for salt in ("s1", "s2", "s3", "s4"):
        distill, test = probe_split(pairs, salt=salt)
        chained = {p.line for p in test} & {1, 2, 3}
        assert chained in (set(), {1, 2, 3})  # a, b share x; b shares y: one group
    with pytest.raises(ConfigError, match="between 0 and 1"):
        probe_split(pairs, test_fraction=1.0)


def test_task_relevance_counts_every_translation():
    task = sentence_task("sw", pairs_of([("Hello.", "Habari."), ("Hello.", "Jambo."), ("Thanks.", "Asante.")]))
    assert task.queries == {"en-0": "Hello.", "en-1": "Thanks."}
    assert task.documents == {"sw-0": "Habari.", "sw-1": "Jambo.", "sw-2": "Asante."}
    assert task.qrels == {"en-0": frozenset({"sw-0", "sw-1"}), "en-1": frozenset({"sw-2"})}


def test_ranking_is_by_inner_product_with_ties_broken_by_docid_and_scored_by_trec_eval_rules():
    task = sentence_task("xx", pairs_of([("q0", "d0"), ("q1", "d1"), ("q2", "d2")]))
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    docs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # d0 and d1 always tie
    run = rank_task(task, queries, docs)
    assert [h.docid for h in run["en-0"]] == ["xx-0", "xx-1", "xx-2"]  # xx-0 wins its tie with xx-1 by docid
    assert [h.docid for h in run["en-1"]] == ["xx-2", "xx-0", "xx-1"]  # 2.0, then the tie (0.0 each) by docid
    assert all(a.score > b.score for hits in run.values() for a, b in zip(hits, hits[1:]))  # trec_eval keeps it
    scores = score_run(task, run)
    assert scores["en-0"] == {"P@1": 1.0, "RR@10": 1.0}
    assert scores["en-1"] == {"P@1": 0.0, "RR@10": 1.0 / 3}
    assert scores["en-2"] == {"P@1": 1.0, "RR@10": 1.0}        # xx-2 scores 2 > 1
    assert [h.docid for h in rank_task(task, queries, docs, depth=1)["en-1"]] == ["xx-2"]


def test_a_tie_at_the_depth_cut_is_broken_by_docid_not_by_position():
    task = sentence_task("xx", pairs_of([(f"q{k}", f"d{k}") for k in range(12)]))
    queries, docs = np.ones((12, 1)), np.ones((12, 1))  # every document ties
    hits = rank_task(task, queries, docs, depth=3)["en-0"]
    assert [h.docid for h in hits] == sorted(task.documents)[:3] == ["xx-0", "xx-1", "xx-10"]


@pytest.mark.slow
def test_zero_shot_probe_on_real_swahili_and_khmer(tatoeba_dir, default_model, tmp_path):
    table = run_tatoeba_probe(tatoeba_dir, tmp_path, ["swh", "khm"])
    assert set(table["rows"]) == {"sw", "km"}
    for lang in ("sw", "km"):
        row = table["rows"][lang]
        assert 0.2 < row["zero-shot"]["P@1"] <= row["zero-shot"]["RR@10"] <= 1.0
        saved = json.loads((tmp_path / f"probe.{lang}.json").read_text())
        assert len(saved["per_query"]["zero-shot"]) == row["sizes"]["queries"]
    again = run_tatoeba_probe(tatoeba_dir, tmp_path, ["sw", "km"])
    assert again["rows"] == table["rows"]  # finished languages are reused, not recomputed differently
    assert "| sw |" in render_probe_table(table) and (tmp_path / "plot.tatoeba-probe.png").stat().st_size > 1000


def _tiny_tatoeba(folder: Path, n: int = 40) -> Path:
    folder.mkdir(parents=True)
    english = [f"The {word} number {k} is here." for k, word in enumerate(["cat", "dog", "bird", "fish"] * (n // 4))]
    foreign = [f"Huyu {word} namba {k} yupo." for k, word in enumerate(["paka", "mbwa", "ndege", "samaki"] * (n // 4))]
    (folder / "tatoeba.swh-eng.eng").write_text("\n".join(english) + "\n", encoding="utf-8")
    (folder / "tatoeba.swh-eng.swh").write_text("\n".join(foreign) + "\n", encoding="utf-8")
    return folder


def test_the_probe_folder_is_a_standard_collection_with_trec_runs_and_is_reused(tiny_models, tmp_path):
    model, tokenizer = tiny_models["bert"]
    encoder = BiEncoderModel(copy.deepcopy(model), tokenizer, BiEncoderConfig(pooling="mean", normalize=True))
    encoder.save_pretrained(tmp_path / "tiny")
    tatoeba = _tiny_tatoeba(tmp_path / "tatoeba")
    out = tmp_path / "probe"
    table = run_tatoeba_probe(tatoeba, out, ["swh"], encoder=tmp_path / "tiny", batch_size=8, max_length=32)
    layout = ProbeLayout(out)
    run, qrels = load_run(layout.run("zero-shot", "sw")), read_qrels(layout.qrels("sw"))
    assert set(run) == set(read_topics(layout.topics("sw"))) == set(qrels)
    assert evaluate(qrels, run, ["P@1"]).means["P@1"] == pytest.approx(table["rows"]["sw"]["zero-shot"]["P@1"])
    assert len(load_corpus(layout.corpus("sw"))) == table["rows"]["sw"]["sizes"]["documents"]
    distill, test = probe_split(tatoeba_pairs(tatoeba, "sw"))
    assert table["rows"]["sw"]["sizes"]["test_pairs"] == len(test) and len(distill) + len(test) == 40
    # the manifest says how the zero-shot run was encoded (the study checks its search settings against it)
    manifest = json.loads(layout.collection.manifest.read_text())
    assert manifest["languages"]["sw"]["max_length"] == 32 and manifest["languages"]["sw"]["dtype"] == "fp32"
    # a second call reuses the finished language: its run file is not written again
    before = layout.run("zero-shot", "sw").stat().st_mtime_ns
    again = run_tatoeba_probe(tatoeba, out, ["sw"], encoder=tmp_path / "tiny", batch_size=8, max_length=32)
    assert again["rows"] == table["rows"] and layout.run("zero-shot", "sw").stat().st_mtime_ns == before
    assert "| sw | " in (out / "table.tatoeba-probe.md").read_text()
    # encoded otherwise (another max length), the language is encoded again and the manifest says so
    other = run_tatoeba_probe(tatoeba, out, ["sw"], encoder=tmp_path / "tiny", batch_size=8, max_length=16)
    assert layout.run("zero-shot", "sw").stat().st_mtime_ns != before
    assert json.loads(layout.collection.manifest.read_text())["languages"]["sw"]["max_length"] == 16
    assert other["encoding"]["max_length"] == 16


def test_a_language_without_bitext_is_refused_before_any_work(tmp_path):
    tatoeba = _tiny_tatoeba(tmp_path / "tatoeba")
    with pytest.raises(ConfigError, match="km|khm|Khmer"):
        run_tatoeba_probe(tatoeba, tmp_path / "out", ["sw", "km"])
    assert not (tmp_path / "out" / "collection").exists()
