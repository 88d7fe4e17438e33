"""XQuAD collections: counts, identifiers, qrels of both settings, article folds."""
from __future__ import annotations

import json

import pytest

from clir_ot.datasets.xquad import build_xquad_collections, docid, fold_of_articles, load_xquad, read_folds
from clir_ot.errors import ConfigError, InputFormatError
from clir_ot.formats import load_corpus, read_qrels, read_topics


def test_fold_assignment_is_deterministic_and_balanced():
    folds = fold_of_articles(48, 2)
    assert folds == fold_of_articles(48, 2)
    assert folds.count(0) == folds.count(1) == 24
    assert sorted(set(fold_of_articles(48, 5))) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError):
        fold_of_articles(48, 0)
    with pytest.raises(ConfigError):
        fold_of_articles(3, 4)


def test_counts_match_the_source(xquad_collection, xquad_dir):
    manifest = json.loads((xquad_collection / "manifest.json").read_text())
    assert manifest["counts"] == {"articles": 48, "paragraphs": 240, "questions": 1190}
    assert len(manifest["languages"]) == 11
    for lang in manifest["languages"]:
        topics = read_topics(xquad_collection / f"topics.xquad.{lang}.tsv")
        corpus = load_corpus(xquad_collection / "corpus" / lang)
        qrels = read_qrels(xquad_collection / f"qrels.xquad.cross.{lang}.txt")
        assert len(topics) == 1190 and len(corpus) == 240 and len(qrels) == 1190
        assert all(list(rel) == [next(iter(rel))] and next(iter(rel)).startswith(f"{lang}-") for rel in qrels.values())
        assert set(topics) == set(qrels)
        assert not any("\ufeff" in text for text in corpus.values())


def test_parallel_ids_across_languages(xquad_collection):
    en = read_qrels(xquad_collection / "qrels.xquad.cross.en.txt")
    th = read_qrels(xquad_collection / "qrels.xquad.cross.th.txt")
    first = "56beb4343aeaaa14008c925b"  # the first question of XQuAD (Super Bowl 50)
    assert en[first] == {"en-000": 1} and th[first] == {"th-000": 1}
    assert {q: next(iter(r))[3:] for q, r in en.items()} == {q: next(iter(r))[3:] for q, r in th.items()}
    pool = read_qrels(xquad_collection / "qrels.xquad.pool.txt")
    assert len(pool[first]) == 11 and set(pool[first]) == {docid(l, 0) for l in
                                                           ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")}


def test_folds_are_disjoint_and_cover_everything(xquad_collection):
    folds = read_folds(xquad_collection / "folds.json")
    assert len(folds) == 2
    articles = [set(f["articles"]) for f in folds]
    qids = [set(f["qids"]) for f in folds]
    paragraphs = [set(f["paragraphs"]) for f in folds]
    assert not articles[0] & articles[1] and not qids[0] & qids[1] and not paragraphs[0] & paragraphs[1]
    assert len(articles[0] | articles[1]) == 48 and len(qids[0] | qids[1]) == 1190
    assert len(paragraphs[0] | paragraphs[1]) == 240
    # a question's paragraph is in the question's fold, in every language
    qrels = read_qrels(xquad_collection / "qrels.xquad.cross.hi.txt")
    for fold in folds:
        hindi = set(fold["docids"]["hi"])
        assert all(next(iter(qrels[q])) in hindi for q in fold["qids"])


def test_fold_file_is_stable_across_runs(xquad_dir, tmp_path):
    build_xquad_collections(xquad_dir, tmp_path / "a", ["en", "th"], folds=3)
    build_xquad_collections(xquad_dir, tmp_path / "b", ["th", "en", "de"], folds=3)
    a = read_folds(tmp_path / "a" / "folds.json")
    b = read_folds(tmp_path / "b" / "folds.json")
    assert [f["qids"] for f in a] == [f["qids"] for f in b]
    assert [f["articles"] for f in a] == [f["articles"] for f in b]


def test_bad_sources(tmp_path, xquad_dir):
    with pytest.raises(InputFormatError, match="no such file"):
        load_xquad("en", tmp_path)
    (tmp_path / "xquad.en.json").write_text('{"data": [')
    with pytest.raises(InputFormatError, match="invalid JSON"):
        load_xquad("en", tmp_path)
    with pytest.raises(ConfigError, match="has no language xx;"):
        build_xquad_collections(xquad_dir, tmp_path / "out", ["en", "xx"])
    # a truncated translation is not parallel
    data = json.loads((xquad_dir / "xquad.de.json").read_text())
    data["data"][3]["paragraphs"].pop()
    src = tmp_path / "src"
    src.mkdir()
    (src / "xquad.de.json").write_text(json.dumps(data))
    (src / "xquad.en.json").write_bytes((xquad_dir / "xquad.en.json").read_bytes())
    with pytest.raises(InputFormatError, match="not parallel"):
        build_xquad_collections(src, tmp_path / "out", ["en", "de"])


def test_layout_names_are_the_names_existing_folders_have():
    """Every XQuAD path the pipelines, the teacher and the study ask XQuADLayout for, spelled out."""
    from pathlib import Path

    from clir_ot.datasets import XQuADLayout

    layout = XQuADLayout("out", "idx", first_stage="e5-small")
    c = layout.collection
    expected = {
        c.topics("th"): "out/collection/topics.xquad.th.tsv",
        c.corpus("th"): "out/collection/corpus/th",
        c.corpus_file("th"): "out/collection/corpus/th/docs.jsonl",
        c.qrels("th"): "out/collection/qrels.xquad.cross.th.txt",
        c.pool_qrels: "out/collection/qrels.xquad.pool.txt",
        c.folds: "out/collection/folds.json",
        c.manifest: "out/collection/manifest.json",
        layout.bm25_run("mono", "th", "th"): "out/run.xquad.bm25.mono.th-th.txt",
        layout.bm25_run("cross", "en", "th"): "out/run.xquad.bm25.cross.en-th.txt",
        layout.dense_run("e5-small", "th"): "out/run.xquad.e5-small.cross.en-th.txt",
        layout.first_stage_run("th"): "out/run.xquad.e5-small.cross.en-th.txt",
        layout.rrf_run("e5-small", "th"): "out/run.xquad.bm25+e5-small.rrf.cross.en-th.txt",
        layout.negatives_run: "out/run.xquad.bm25+e5-small.rrf.cross.en-en.txt",
        layout.teacher(1): "out/teacher.e5-small.en.fold1",
        layout.teacher_run("th"): "out/run.xquad.e5-small+teacher.cross.en-th.txt",
        layout.teacher_run_part("th", 0): "out/.run.xquad.e5-small+teacher.cross.en-th.fold0.txt",
        layout.dense_student("ot", "th"): "out/dense-student.e5-small.ot.th",
        layout.dense_student_run("ot", "th"): "out/run.xquad.e5-small-student-ot.cross.en-th.txt",
        layout.lucene_index("th"): "idx/lucene.xquad.th",
        layout.faiss_index("th"): "idx/faiss.xquad.th.e5-small",
        layout.faiss_index("th", "e5-small-student-ot"): "idx/faiss.xquad.th.e5-small-student-ot",
        layout.table("teacher", "tsv"): "out/table.teacher.tsv",
    }
    for path, name in expected.items():
        assert path == Path(name), (path, name)
    assert layout.english_training == (c.topics("en"), c.qrels("en"), c.corpus("en"), layout.negatives_run, c.folds)


def test_english_is_always_built_and_languages_take_any_code(xquad_dir, tmp_path):
    """The questions are English: a collection for th alone still has them (cross en->th)."""
    from clir_ot.cli import main

    assert main(["xquad", "--source", str(xquad_dir), "--output", str(tmp_path / "c"), "--languages", "THA"]) == 0
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["languages"] == ["en", "th"]
    assert (tmp_path / "c" / "topics.xquad.en.tsv").is_file()
    with pytest.raises(ConfigError, match="--folds must be at least 2"):
        build_xquad_collections(xquad_dir, tmp_path / "one", ["en"], folds=1)
