"""Every language, the low-resource ones first: one resolution of language codes (clir_ot.languages),
BM25 on real text of ro, sw, am, km and yo with the analysis the table promises (sw, am, km from the
shared Tatoeba sentences; ro and yo, which the shared copy lacks, from short texts after the UDHR),
--analyzer recorded and reused, the language table in docs/languages.md, and XQuAD's 12th language."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import pytest

from clir_ot.errors import ConfigError
from clir_ot.formats import Document, load_run, write_corpus, write_topics
from clir_ot.languages import (
    UnknownLanguageError,
    language_code,
    matching_codes,
    resolve_language,
    same_language,
)
from clir_ot.retrieval import BM25Searcher, Pretokenizer, build_index, read_index_info, resolve_analysis
from clir_ot.retrieval.analysis import ICU, STANDARD, render_language_table

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------------
# Language codes


@pytest.mark.parametrize("codes, key", [
    (["sw", "swa", "swh", "swh_Latn", "sw-KE", "SWH"], "sw"),           # macrolanguage and its member
    (["zh", "zho", "chi", "cmn", "zh-Hans", "zh-Hant", "zho_Hans", "cmn_Hans"], "zh"),
    (["ar", "ara", "arb", "arb_Arab"], "ar"),
    (["ro", "ron", "rum", "mo", "ron_Latn"], "ro"),                      # mo: deprecated Moldavian
    (["tl", "tgl", "fil", "tgl_Latn"], "fil"),                          # CLDR: Tagalog is Filipino
    (["fa", "fas", "pes", "pes_Arab"], "fa"),
    (["km", "khm", "khm_Khmr"], "km"),
    (["am", "amh", "amh_Ethi"], "am"),
    (["yo", "yor", "yor_Latn"], "yo"),
    (["he", "iw", "heb"], "he"),
    (["sr", "srp", "sh", "hbs"], "sr"),
])
def test_every_code_form_names_one_language(codes, key):
    assert {language_code(c) for c in codes} == {key}
    assert all(same_language(codes[0], c) for c in codes)


def test_distinct_languages_stay_distinct():
    assert not same_language("ckb", "ku")  # Sorani has its own Lucene analyzer; Kurmanji does not
    assert not same_language("nb", "nn")
    assert not same_language("yue", "zh")
    assert resolve_language("km").script == "Khmr" and resolve_language("sr-Latn").script == "Latn"
    assert str(resolve_language("swh")) == "sw (Swahili)"


@pytest.mark.parametrize("tag, hint", [
    ("portuguese", "Did you mean 'pt' (Portuguese)?"),
    ("Swahili", "Did you mean 'sw' (Swahili)?"),
    ("romanain", "Did you mean 'ro' (Romanian)?"),
    ("sorani", "Did you mean 'ckb' (Central Kurdish)?"),
    ("rox", "Did you mean 'ro' (Romanian)?"),
    ("xx", ""), ("qaa", ""), ("und", ""), ("zxx", ""), ("", ""), ("x-klingon", ""),
])
def test_a_code_that_is_no_language_is_an_error(tag, hint):
    with pytest.raises(UnknownLanguageError, match=f"unsupported language {tag!r}: not a language code") as info:
        resolve_language(tag)
    assert isinstance(info.value, ConfigError)
    assert hint in str(info.value)


def test_matching_codes_finds_file_codes_of_the_language():
    assert matching_codes("sw", ["swh", "amh", "eng", "sw", "not-a-code", "swa"]) == ["swh", "sw", "swa"]
    assert matching_codes("zh-Hans", ["cmn", "yue", "zho"]) == ["cmn", "zho"]


# --------------------------------------------------------------------------------------------------
# What each language gets


@pytest.mark.parametrize("code, method, tokenizer, choice", [
    ("ro", "pretokenized", "org.apache.lucene.analysis.ro.RomanianAnalyzer", "table"),
    ("ron", "pretokenized", "org.apache.lucene.analysis.ro.RomanianAnalyzer", "table"),
    ("bg", "pretokenized", "org.apache.lucene.analysis.bg.BulgarianAnalyzer", "table"),
    ("cs", "pretokenized", "org.apache.lucene.analysis.cz.CzechAnalyzer", "table"),
    ("ckb", "pretokenized", "org.apache.lucene.analysis.ckb.SoraniAnalyzer", "table"),
    ("ta", "pretokenized", "org.apache.lucene.analysis.ta.TamilAnalyzer", "table"),
    ("el", "pretokenized", "org.apache.lucene.analysis.el.GreekAnalyzer", "table"),
    ("vi", "pretokenized", STANDARD, "table"),
    ("ar", "lucene", "ArabicAnalyzer", "table"),
    ("te", "lucene", "TeluguAnalyzer", "table"),
    ("zh-Hans", "lucene", "CJKAnalyzer", "table"),
    ("swh", "pretokenized", STANDARD, "fallback"),
    ("am", "pretokenized", STANDARD, "fallback"),
    ("yo", "pretokenized", STANDARD, "fallback"),
    ("ku", "pretokenized", STANDARD, "fallback"),
    ("km", "pretokenized", ICU, "fallback"),
    ("lo", "pretokenized", ICU, "fallback"),
    ("my", "pretokenized", ICU, "fallback"),
    ("yue", "pretokenized", "org.apache.lucene.analysis.cjk.CJKAnalyzer", "fallback"),
])
def test_analysis_of_each_kind_of_language(code, method, tokenizer, choice, caplog):
    with caplog.at_level(logging.WARNING, logger="clir_ot.retrieval.analysis"):
        analysis = resolve_analysis(code)
    assert (analysis.method, analysis.tokenizer, analysis.choice) == (method, tokenizer, choice)
    assert analysis.language == language_code(code)
    fallback_logged = "Lucene has no analyzer for" in caplog.text
    assert fallback_logged == (choice == "fallback")  # a fallback is never silent


def test_forced_analyzers_and_their_errors():
    assert resolve_analysis("sw", analyzer="RomanianAnalyzer").tokenizer.endswith("ro.RomanianAnalyzer")
    forced = resolve_analysis("sw", analyzer="whitespace")
    assert forced.choice == "forced" and Pretokenizer(forced).terms("Hakuna, Matata.") == ["hakuna,", "matata."]
    assert resolve_analysis("ro", analyzer="standard").tokenizer == STANDARD
    with pytest.raises(ConfigError, match="neither one of standard, whitespace, icu nor a Lucene analyzer"):
        resolve_analysis("sw", analyzer="Romanian")
    with pytest.raises(UnknownLanguageError, match="Did you mean 'sw'"):
        resolve_analysis("swahili")


def test_icu_segments_khmer_lao_and_myanmar_words():
    assert Pretokenizer(resolve_analysis("km")).terms("គាត់ខឹងយើង ។") == ["គាត់", "ខឹង", "យើង"]
    assert len(Pretokenizer(resolve_analysis("lo")).terms("ສະບາຍດີທ່ານ")) >= 2
    assert len(Pretokenizer(resolve_analysis("my")).terms("မင်္ဂလာပါ။")) >= 2
    # UAX #29 alone leaves a Khmer run whole: the reason for the ICU path
    assert Pretokenizer(resolve_analysis("km", analyzer="standard")).terms("គាត់ខឹងយើង ។") == ["គាត់ខឹងយើង"]


def test_language_table_is_docs_languages_md():
    """docs/languages.md holds the table the code implements (regenerate it with render_language_table)."""
    text = (ROOT / "docs" / "languages.md").read_text(encoding="utf-8")
    assert render_language_table() in text


# --------------------------------------------------------------------------------------------------
# BM25 on real text


def _index(tmp_path: Path, name: str, texts: list[str], language: str, analyzer: str = "auto"):
    docs = [Document(f"{name}-{i:04d}", t) for i, t in enumerate(texts, start=1)]
    write_corpus(tmp_path / f"{name}.jsonl", docs)
    info = build_index(tmp_path / f"{name}.jsonl", tmp_path / f"idx-{name}", language, analyzer=analyzer)
    return info, BM25Searcher(tmp_path / f"idx-{name}"), dict((d.docid, d.contents) for d in docs)


def _lines(tatoeba_dir: Path, code: str, n: int) -> list[str]:
    path = tatoeba_dir / f"tatoeba.{code}-eng.{code}"
    if not path.is_file():
        pytest.skip(f"{path} is absent from the shared Tatoeba copy")
    return path.read_text(encoding="utf-8").splitlines()[:n]


ROMANIAN = [  # after the UDHR, articles 1, 3 and 4, and a sentence of XQuAD's first paragraph
    "Toate ființele umane se nasc libere și egale în demnitate și în drepturi.",
    "Orice persoană are dreptul la viață, la libertate și la securitatea sa.",
    "Nimeni nu va fi ținut în sclavie, nici în servitute.",
    "Meciul s-a jucat pe stadionul Levi's din Santa Clara, în California.",
]
YORUBA = [  # after the UDHR, article 1, and two short sentences
    "Gbogbo ènìyàn ni a bí ní òmìnira; iyì àti ẹ̀tọ́ kọ̀ọ̀kan sì dọ́gba.",
    "Wọ́n ní ẹ̀bùn ti làákàyè àti ti ẹ̀rí-ọkàn.",
    "Ọjà ńlá wà ní Ìbàdàn.",
]


def test_romanian_bm25_stems_with_lucenes_romanian_analyzer(tmp_path):
    info, searcher, _ = _index(tmp_path, "ro", ROMANIAN, "ron")
    assert info.analysis.language == "ro" and info.analysis.tokenizer.endswith("RomanianAnalyzer")
    assert read_index_info(tmp_path / "idx-ro").analysis == info.analysis  # recorded, reused by the searcher
    # neither "ființă" nor "liberă" is in the text: the stemmer maps them to ființele / libere
    assert searcher.search("ființă liberă", k=1)[0].docid == "ro-0001"
    assert searcher.search("stadionului", k=1)[0].docid == "ro-0004"
    assert searcher.search("toate", k=5) == []  # a Romanian stop word
    assert BM25Searcher(tmp_path / "idx-ro", language="ro_Latn").num_docs == 4  # any code of the language


def test_yoruba_bm25_uax29_words_lower_cased_no_stemming(tmp_path):
    info, searcher, _ = _index(tmp_path, "yo", YORUBA, "yor")
    assert (info.analysis.tokenizer, info.analysis.choice) == (STANDARD, "fallback")
    assert Pretokenizer(info.analysis).terms(YORUBA[0]) == [
        "gbogbo", "ènìyàn", "ni", "a", "bí", "ní", "òmìnira", "iyì", "àti", "ẹ̀tọ́", "kọ̀ọ̀kan", "sì", "dọ́gba"]
    assert searcher.search("ÒMÌNIRA", k=1)[0].docid == "yo-0001"  # combining tone marks survive lower-casing
    assert searcher.search("Ìbàdàn", k=1)[0].docid == "yo-0003"
    assert searcher.search("ibadan", k=3) == []  # no folding of tone marks: a different word


def test_swahili_bm25_on_tatoeba(tatoeba_dir, tmp_path):
    texts = _lines(tatoeba_dir, "swh", 60)
    info, searcher, docs = _index(tmp_path, "sw", texts, "swh")
    assert (info.analysis.language, info.analysis.tokenizer, info.analysis.choice) == ("sw", STANDARD, "fallback")
    assert texts[2] == "Hakuna matata."
    assert searcher.search("HAKUNA MATATA", k=1)[0].docid == "sw-0003"
    assert Pretokenizer(info.analysis).terms("Mimi si daktari.") == ["mimi", "si", "daktari"]  # no stop words
    hits = searcher.search("daktari", k=10)
    assert hits and all("daktari" in Pretokenizer(info.analysis).terms(docs[h.docid]) for h in hits)


def test_amharic_bm25_on_tatoeba(tatoeba_dir, tmp_path):
    texts = _lines(tatoeba_dir, "amh", 40)
    info, searcher, docs = _index(tmp_path, "am", texts, "amh_Ethi")
    assert (info.analysis.language, info.analysis.tokenizer) == ("am", STANDARD)
    assert Pretokenizer(info.analysis).terms(texts[0]) == ["በውነት", "ያስፈራል"]  # the Ethiopic full stop dropped
    hits = {h.docid for h in searcher.search("ተማሪ", k=10)}
    assert {"am-0003", "am-0006"} <= hits
    assert all("ተማሪ" in docs[d].split() or "ተማሪ" in Pretokenizer(info.analysis).terms(docs[d]) for d in hits)


def test_khmer_bm25_on_tatoeba_needs_dictionary_segmentation(tatoeba_dir, tmp_path):
    texts = _lines(tatoeba_dir, "khm", 40)
    assert texts[1].startswith("គាត់ខឹង") and texts[2].startswith("គាត់ខឹង")
    info, searcher, _ = _index(tmp_path, "km", texts, "khm")
    assert (info.analysis.tokenizer, info.analysis.choice) == (ICU, "fallback")
    assert {"km-0002", "km-0003"} <= {h.docid for h in searcher.search("ខឹង", k=10)}
    # the same corpus with UAX #29 alone: the word inside the unspaced runs is never found
    forced, plain, _ = _index(tmp_path, "km-standard", texts, "km", analyzer="standard")
    assert forced.analysis.choice == "forced"
    assert not {"km-standard-0002", "km-standard-0003"} & {h.docid for h in plain.search("ខឹង", k=10)}


def test_cli_index_records_a_forced_analyzer_and_search_reuses_it(tmp_path, caplog):
    from clir_ot.cli import main

    write_corpus(tmp_path / "c.jsonl", [Document(f"d{i}", t) for i, t in enumerate(YORUBA, start=1)])
    assert main(["index", "--input", str(tmp_path / "c.jsonl"), "--index", str(tmp_path / "idx"),
                 "--language", "yor_Latn", "--analyzer", "whitespace"]) == 0
    analysis = read_index_info(tmp_path / "idx").analysis
    assert (analysis.language, analysis.tokenizer, analysis.choice) == ("yo", "whitespace-lowercase", "forced")
    write_topics(tmp_path / "t.tsv", {"q1": "Ìbàdàn.", "q2": "ÒMÌNIRA;"})
    assert main(["search", "--index", str(tmp_path / "idx"), "--topics", str(tmp_path / "t.tsv"),
                 "--output", str(tmp_path / "run.txt"), "--hits", "3"]) == 0
    run = load_run(tmp_path / "run.txt")
    assert max(run["q1"], key=run["q1"].get) == "d3" and max(run["q2"], key=run["q2"].get) == "d1"
    assert main(["index", "--input", str(tmp_path / "c.jsonl"), "--index", str(tmp_path / "i2"),
                 "--language", "yo", "--analyzer", "NoSuchAnalyzer"]) == 2
    assert "nor a Lucene analyzer class" in caplog.text and not (tmp_path / "i2").exists()
    assert main(["index", "--input", str(tmp_path / "c.jsonl"), "--index", str(tmp_path / "i3"),
                 "--language", "yoruba"]) == 2
    assert "Did you mean 'yo' (Yoruba)?" in caplog.text


# --------------------------------------------------------------------------------------------------
# Bitext by any code (the shared copy) and `clir-ot distill --tatoeba ... --language ...`


@pytest.mark.parametrize("lang", ["sw", "swh", "swa", "swh_Latn"])
def test_distill_cli_finds_swahili_tatoeba_by_any_code(lang, tatoeba_dir):
    from clir_ot.cli.distill import read_pairs

    pairs, files = read_pairs(argparse.Namespace(bitext=None, tatoeba=str(tatoeba_dir), language=lang))
    assert [Path(f).name for f in files] == ["tatoeba.swh-eng.swh", "tatoeba.swh-eng.eng"]
    assert len(pairs) == 390 and pairs[2].foreign == "Hakuna matata."


@pytest.mark.parametrize("lang", ["ro", "ron", "rum", "ron_Latn"])
def test_distill_cli_finds_romanian_tatoeba_by_any_code(lang, tmp_path):
    from clir_ot.cli.distill import read_pairs

    (tmp_path / "tatoeba.ron-eng.ron").write_text("Toate ființele umane se nasc libere.\nBună ziua!\n", encoding="utf-8")
    (tmp_path / "tatoeba.ron-eng.eng").write_text("All human beings are born free.\nGood day!\n", encoding="utf-8")
    pairs, files = read_pairs(argparse.Namespace(bitext=None, tatoeba=str(tmp_path), language=lang))
    assert [p.foreign for p in pairs] == ["Toate ființele umane se nasc libere.", "Bună ziua!"]
    assert Path(files[0]).name == "tatoeba.ron-eng.ron"


# --------------------------------------------------------------------------------------------------
# XQuAD's 12th language


def _romanian_xquad(xquad_dir: Path, folder: Path) -> Path:
    """A source folder with the shared English file and a Romanian one of the same structure: its
    first paragraph and first question are real Romanian (our translation), the rest the English text."""
    folder.mkdir()
    shutil.copy(xquad_dir / "xquad.en.json", folder / "xquad.en.json")
    data = json.loads((xquad_dir / "xquad.en.json").read_text(encoding="utf-8"))
    first = data["data"][0]["paragraphs"][0]
    first["context"] = (
        "Super Bowl 50 a fost un meci de fotbal american care a desemnat campioana Ligii Naționale de Fotbal "
        "(NFL) pentru sezonul 2015. Campioana Conferinței Americane, Denver Broncos, a învins-o pe campioana "
        "Conferinței Naționale, Carolina Panthers, cu scorul de 24–10. Meciul s-a jucat pe 7 februarie 2016, "
        "pe stadionul Levi's din Santa Clara, California."
    )
    first["qas"][0]["question"] = "Cum se numea gazda meciului dintre campioanele sezonului?"
    (folder / "xquad.ro.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return folder


def test_xquad_cli_builds_romanian_when_its_file_is_there(xquad_dir, tmp_path):
    from clir_ot.cli import main
    from clir_ot.datasets.xquad import DEFAULT_LANGUAGES, available_languages

    source = _romanian_xquad(xquad_dir, tmp_path / "src")
    assert "ro" not in DEFAULT_LANGUAGES and available_languages(source) == ["en", "ro"]
    assert "ro" not in available_languages(xquad_dir)  # the shared copy: 11 languages
    assert main(["xquad", "--source", str(source), "--output", str(tmp_path / "out"), "--languages", "en", "ro"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["languages"] == ["en", "ro"] and manifest["counts"]["paragraphs"] == 240
    first = (tmp_path / "out" / "corpus" / "ro" / "docs.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(first)["id"] == "ro-000" and "stadionul" in json.loads(first)["contents"]
    assert main(["xquad", "--source", str(xquad_dir), "--output", str(tmp_path / "o2"), "--languages", "ro"]) == 2


def test_xquad_bm25_baseline_runs_romanian(xquad_dir, tmp_path):
    from clir_ot.datasets.layout import XQuADLayout
    from clir_ot.pipelines.xquad_baseline import run_xquad_bm25

    source = _romanian_xquad(xquad_dir, tmp_path / "src")
    result = run_xquad_bm25(source, tmp_path / "runs", tmp_path / "indexes", languages=["ro"], hits=10, threads=1)
    layout = XQuADLayout(tmp_path / "runs", tmp_path / "indexes")
    assert read_index_info(layout.lucene_index("ro")).analysis.tokenizer.endswith("RomanianAnalyzer")
    mono = load_run(result.runs["ro"]["mono"])
    qid = json.loads((source / "xquad.ro.json").read_text(encoding="utf-8"))["data"][0]["paragraphs"][0]["qas"][0]["id"]
    ro = json.loads((source / "xquad.ro.json").read_text(encoding="utf-8"))["data"][0]["paragraphs"][0]
    question, paragraph = ro["qas"][0]["question"], ro["context"]
    words = {w.strip("?.,").lower() for w in question.split()}
    assert not words & {w.strip("?.,()").lower() for w in paragraph.split()}  # no word of it in the paragraph
    # meciului/meci, campioanele/campioana, sezonului/sezonul: the Romanian stemmer finds the paragraph
    assert max(mono[qid], key=mono[qid].get) == "ro-000"
    assert set(result.table) == {"ro"} and 0 < result.table["ro"]["cross"]["RR@10"] <= 1
