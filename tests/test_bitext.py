"""clir_ot.distill.bitext: real Tatoeba files (the ``tatoeba_dir`` fixture skips when absent), every
reader error with its file and line, deterministic held-out slices, and the shuffled control's
derangement."""
from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from clir_ot.distill.bitext import (
    BitextPair,
    discover_bitext,
    find_bitext,
    iter_bitext,
    iter_parallel_files,
    read_bitext,
    read_parallel_files,
    shuffled_control,
    split_bitext,
    take_pairs,
    tatoeba_files,
    tatoeba_pairs,
    write_bitext,
)
from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError

XQUAD_LANGS = ("ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh")
#: The codes of the shared copy's file names for XQuAD's languages (LASER's Tatoeba names).
TATOEBA_XQUAD_CODES = {
    "ar": "ara", "de": "deu", "el": "ell", "es": "spa", "hi": "hin",
    "ru": "rus", "th": "tha", "tr": "tur", "vi": "vie", "zh": "cmn",
}


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def pairs_of(n: int, prefix: str = "") -> list[BitextPair]:
    return [BitextPair(f"{prefix}english {i}", f"{prefix}foreign {i}", "mem", i + 1) for i in range(n)]


# --------------------------------------------------------------------------------------------------
# Real Tatoeba data


def test_tatoeba_greek_real_pairs(tatoeba_dir):
    pairs = tatoeba_pairs(tatoeba_dir, "el")
    assert len(pairs) == 1000
    assert pairs[0] == BitextPair(
        "If you have something to say, say it.", "Αν έχεις να πεις κάτι, πες το.",
        str(tatoeba_dir / "tatoeba.ell-eng.ell"), 1,
    )
    assert pairs[1].english == "This is my old bicycle." and pairs[1].line == 2
    assert [p.line for p in pairs] == list(range(1, 1001))
    assert tatoeba_pairs(tatoeba_dir, "ell") == pairs  # the ISO 639-3 code works too


def test_tatoeba_every_xquad_language_has_bitext(tatoeba_dir):
    sizes = {lang: len(tatoeba_pairs(tatoeba_dir, lang)) for lang in XQUAD_LANGS}
    assert sizes["th"] == 548
    assert all(n == 1000 for lang, n in sizes.items() if lang != "th"), sizes
    for lang, code in TATOEBA_XQUAD_CODES.items():
        foreign, english = tatoeba_files(tatoeba_dir, lang)
        assert (foreign.name, english.name) == (f"tatoeba.{code}-eng.{code}", f"tatoeba.{code}-eng.eng")


def test_tatoeba_lower_resource_languages(tatoeba_dir):
    assert len(tatoeba_pairs(tatoeba_dir, "sw")) == 390
    assert len(tatoeba_pairs(tatoeba_dir, "amh")) == 168


def test_tatoeba_real_split_and_control(tatoeba_dir):
    pairs = tatoeba_pairs(tatoeba_dir, "th")
    train, valid = split_bitext(pairs, 0.1, seed=13)
    assert len(valid) == 55 and len(train) + len(valid) == len(pairs)
    control = shuffled_control(train, seed=13)
    assert all(c.foreign != p.foreign for c, p in zip(control, train))
    assert Counter(c.foreign for c in control) == Counter(p.foreign for p in train)


# --------------------------------------------------------------------------------------------------
# Language map


def test_language_map_covers_xquad(tatoeba_dir):
    """Tatoeba's file codes (cmn for zh: Mandarin, a member of the macrolanguage) are found from XQuAD's."""
    found = {lang: tatoeba_files(tatoeba_dir, lang)[0].name.split(".")[-1] for lang in XQUAD_LANGS}
    assert found == TATOEBA_XQUAD_CODES


@pytest.mark.parametrize("lang, message", [
    ("ro", r"no bitext for language 'ro' \(Romanian\) in .*the folder has bitext for el \(ell\)"),
    ("en", "English is the pivot"),
    ("eng", "English is the pivot"),
    ("xx", "unsupported language 'xx': not a language code"),
])
def test_language_without_bitext_is_a_config_error(lang, message, tmp_path):
    write(tmp_path / "tatoeba.ell-eng.ell", "α\n")
    write(tmp_path / "tatoeba.ell-eng.eng", "a\n")
    with pytest.raises(ConfigError, match=message):
        tatoeba_pairs(tmp_path, lang)


def test_known_language_missing_from_folder_is_a_config_error(tmp_path):
    write(tmp_path / "tatoeba.tha-eng.eng", "a\n")
    with pytest.raises(ConfigError, match=r"no bitext for language 'th' .*tatoeba\.tha-eng\.eng lacks its counterpart"):
        tatoeba_pairs(tmp_path, "th")


def test_three_letter_code_present_in_folder(tmp_path):
    write(tmp_path / "tatoeba.epo-eng.epo", "Saluton!\n")
    write(tmp_path / "tatoeba.epo-eng.eng", "Hello!\n")
    assert tatoeba_pairs(tmp_path, "epo")[0].foreign == "Saluton!"


# --------------------------------------------------------------------------------------------------
# Two-file layout: errors name the file and the line


def two_files(tmp_path, foreign, english):
    return write(tmp_path / "tatoeba.ell-eng.ell", foreign), write(tmp_path / "tatoeba.ell-eng.eng", english)


def test_two_files_read_and_strip(tmp_path):
    f, e = two_files(tmp_path, "ένα \r\nδύο\n", "one\r\n two\n")
    assert read_parallel_files(f, e) == [
        BitextPair("one", "ένα", str(f), 1), BitextPair("two", "δύο", str(f), 2),
    ]


def test_two_files_gzip(tmp_path):
    f = write(tmp_path / "x.ell.gz", gzip.compress("ένα\n".encode()))
    e = write(tmp_path / "x.eng.gz", gzip.compress(b"one\n"))
    assert read_parallel_files(f, e)[0].english == "one"


@pytest.mark.parametrize("foreign, english, longer, line, counts", [
    ("α\nβ\nγ\n", "a\nb\n", "ell", 3, (3, 2)),
    ("α\n", "a\nb\nc\n", "eng", 2, (1, 3)),
])
def test_two_files_line_count_mismatch_names_both_files_and_counts(tmp_path, foreign, english, longer, line, counts):
    f, e = two_files(tmp_path, foreign, english)
    with pytest.raises(InputFormatError) as info:
        read_parallel_files(f, e)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / ('tatoeba.ell-eng.' + longer)}:{line}: line-count mismatch")
    assert f"{f} has {counts[0]} lines" in message and f"{e} has {counts[1]}" in message
    assert info.value.line == line


@pytest.mark.parametrize("foreign, english, bad, line", [
    ("α\n\nγ\n", "a\nb\nc\n", "ell", 2),
    ("α\nβ\nγ\n", "a\nb\n   \n", "eng", 3),
    ("\nβ\n", "a\nb\n", "ell", 1),
    ("α\nβ\n\n", "a\nb\n", "ell", 3),  # a trailing blank line is an empty line, not a line ending
])
def test_two_files_empty_line_names_file_and_line(tmp_path, foreign, english, bad, line):
    f, e = two_files(tmp_path, foreign, english)
    with pytest.raises(InputFormatError, match="empty line") as info:
        read_parallel_files(f, e)
    assert info.value.path == str(tmp_path / f"tatoeba.ell-eng.{bad}") and info.value.line == line
    assert str(info.value).startswith(f"{tmp_path / ('tatoeba.ell-eng.' + bad)}:{line}: ")


@pytest.mark.parametrize("which", ["ell", "eng"])
def test_two_files_invalid_utf8_names_file_and_line(tmp_path, which):
    bad = b"ok\n\xff\xfe broken\n"
    f, e = two_files(tmp_path, bad if which == "ell" else "α\nβ\n", bad if which == "eng" else "a\nb\n")
    with pytest.raises(InputFormatError, match="invalid UTF-8") as info:
        read_parallel_files(f, e)
    assert info.value.path == str(tmp_path / f"tatoeba.ell-eng.{which}") and info.value.line == 2


def test_two_files_missing_and_empty(tmp_path):
    f, e = two_files(tmp_path, "", "")
    with pytest.raises(InputFormatError, match="no sentence pairs"):
        read_parallel_files(f, e)
    with pytest.raises(InputFormatError, match="no such file"):
        read_parallel_files(tmp_path / "nope.ell", e)


# --------------------------------------------------------------------------------------------------
# TSV and JSONL


def test_tsv_read_skips_blank_lines(tmp_path):
    path = write(tmp_path / "bitext.tsv", "one\tένα\n\n two \t δύο\n")
    assert read_bitext(path) == [BitextPair("one", "ένα", str(path), 1), BitextPair("two", "δύο", str(path), 3)]


@pytest.mark.parametrize("text, line, match", [
    ("a\tb\nonly one column\n", 2, "expected 2 tab-separated columns 'english<TAB>foreign', found 1"),
    ("a\tb\tc\n", 1, "found 3"),
    ("a\tb\n\t b\n", 2, "empty english column"),
    ("a\t \n", 1, "empty foreign column"),
])
def test_tsv_errors_name_file_and_line(tmp_path, text, line, match):
    path = write(tmp_path / "bitext.tsv", text)
    with pytest.raises(InputFormatError, match=match) as info:
        read_bitext(path)
    assert (info.value.path, info.value.line) == (str(path), line)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_tsv_invalid_utf8(tmp_path):
    path = write(tmp_path / "bitext.tsv", b"a\tb\nc\t\xc3\x28\n")
    with pytest.raises(InputFormatError, match=f"{path}:2: invalid UTF-8"):
        read_bitext(path)


def test_jsonl_read(tmp_path):
    path = write(tmp_path / "bitext.jsonl", '{"english": "one", "foreign": "ένα", "id": 7}\n\n'
                                            '{"foreign": "δύο", "english": "two"}\n')
    assert read_bitext(path) == [BitextPair("one", "ένα", str(path), 1), BitextPair("two", "δύο", str(path), 3)]


@pytest.mark.parametrize("text, line, match", [
    ('{"english": "a", "foreign": "b"}\n{"en": "a", "foreign": "b"}\n', 2, "missing the 'english' field"),
    ('{"english": "a"}\n', 1, "missing the 'foreign' field"),
    ('{"english": "a", "foreign": 3}\n', 1, "field 'foreign' must be a string, found int"),
    ('{"english": " ", "foreign": "b"}\n', 1, "empty 'english' field"),
    ('{"english": "a", "foreign": "b"\n', 1, "invalid JSON"),
    ('["a", "b"]\n', 1, "expected a JSON object"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, text, line, match):
    path = write(tmp_path / "bitext.jsonl", text)
    with pytest.raises(InputFormatError, match=match) as info:
        read_bitext(path)
    assert (info.value.path, info.value.line) == (str(path), line)


def test_unknown_suffix_and_empty_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot tell the bitext format"):
        read_bitext(write(tmp_path / "bitext.txt", "a\tb\n"))
    with pytest.raises(InputFormatError, match="no sentence pairs"):
        read_bitext(write(tmp_path / "bitext.tsv", "\n\n"))


@pytest.mark.parametrize("name", ["out.tsv", "out.jsonl", "out.jsonl.gz"])
def test_write_then_read_back(tmp_path, name):
    pairs = [BitextPair("one", "ένα", "x", 4), BitextPair('say "hi"', "πες «γεια»", "x", 9)]
    path = write_bitext(tmp_path / name, pairs)
    back = read_bitext(path)
    assert [(p.english, p.foreign) for p in back] == [(p.english, p.foreign) for p in pairs]
    if name == "out.jsonl":
        assert json.loads(path.read_text(encoding="utf-8").splitlines()[0]) == {"english": "one", "foreign": "ένα"}


def test_write_tsv_refuses_tabs(tmp_path):
    with pytest.raises(ConfigError, match="x:3 holds a tab"):
        write_bitext(tmp_path / "out.tsv", [BitextPair("a\tb", "c", "x", 3)])
    assert not (tmp_path / "out.tsv").exists()


# --------------------------------------------------------------------------------------------------
# Held-out slice


def test_split_is_deterministic_disjoint_and_ordered():
    pairs = pairs_of(200)
    train, valid = split_bitext(pairs, 0.1, seed=1)
    assert (train, valid) == split_bitext(pairs, 0.1, seed=1)
    assert len(valid) == 20 and len(train) == 180
    assert set(train).isdisjoint(valid) and sorted(train + valid, key=lambda p: p.line) == pairs
    assert [p.line for p in valid] == sorted(p.line for p in valid)  # original order
    assert split_bitext(pairs, 0.1, seed=2)[1] != valid


def test_split_keeps_repeated_english_on_one_side():
    pairs = [BitextPair(f"e{i % 10}", f"f{i}", "mem", i) for i in range(50)]  # each English text 5 times
    for seed in range(5):
        train, valid = split_bitext(pairs, 0.3, seed=seed)
        assert {p.english for p in train}.isdisjoint({p.english for p in valid})
        assert len({p.english for p in valid}) == 3


def test_split_bounds_and_errors():
    assert [len(x) for x in split_bitext(pairs_of(3), 0.01, seed=0)] == [2, 1]  # at least one held out
    assert [len(x) for x in split_bitext(pairs_of(3), 0.99, seed=0)] == [1, 2]  # at least one kept
    for fraction in (0, 1, -0.1, 1.5):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            split_bitext(pairs_of(10), fraction, seed=0)
    with pytest.raises(ConsistencyError, match="1 distinct English"):
        split_bitext([BitextPair("same", f"f{i}", "mem", i) for i in range(4)], 0.5, seed=0)


# --------------------------------------------------------------------------------------------------
# Shuffled control


@pytest.mark.parametrize("n", [2, 3, 5, 10, 101])
def test_shuffled_control_is_a_derangement(n):
    pairs = pairs_of(n)
    for seed in range(20):
        control = shuffled_control(pairs, seed=seed)
        assert [(c.english, c.source, c.line) for c in control] == [(p.english, p.source, p.line) for p in pairs]
        assert all(c.foreign != p.foreign for c, p in zip(control, pairs))
        assert sorted(c.foreign for c in control) == sorted(p.foreign for p in pairs)


def test_shuffled_control_is_deterministic_and_varies_with_seed():
    pairs = pairs_of(50)
    assert shuffled_control(pairs, seed=3) == shuffled_control(pairs, seed=3)
    assert shuffled_control(pairs, seed=3) != shuffled_control(pairs, seed=4)


def test_shuffled_control_never_pairs_a_duplicate_translation():
    # pairs 0-2 share a foreign text, pairs 3 and 4 an English text: a pair must not receive a
    # foreign text equal to its own, nor the translation of its own English text
    pairs = [
        BitextPair("yes", "ναι", "mem", 1), BitextPair("yeah", "ναι", "mem", 2),
        BitextPair("yep", "ναι", "mem", 3),
        BitextPair("hello", "γεια", "mem", 4), BitextPair("hello", "χαίρετε", "mem", 5),
        BitextPair("dog", "σκύλος", "mem", 6), BitextPair("cat", "γάτα", "mem", 7),
        BitextPair("sea", "θάλασσα", "mem", 8), BitextPair("sun", "ήλιος", "mem", 9),
    ]
    translations = {}
    for p in pairs:
        translations.setdefault(p.english, set()).add(p.foreign)
    for seed in range(50):
        control = shuffled_control(pairs, seed=seed)
        assert all(c.foreign not in translations[c.english] and c.foreign != p.foreign
                   for c, p in zip(control, pairs))
        assert Counter(c.foreign for c in control) == Counter(p.foreign for p in pairs)


def test_shuffled_control_impossible_cases():
    with pytest.raises(ConsistencyError, match="at least 2"):
        shuffled_control(pairs_of(1), seed=0)
    with pytest.raises(ConsistencyError, match="share one English or foreign text"):
        shuffled_control([BitextPair(f"e{i}", "same", "mem", i) for i in range(4)], seed=0)


def test_xquad_paragraph_pairs_come_from_training_folds_only(xquad_collection):
    from clir_ot.datasets.xquad import read_folds
    from clir_ot.distill import xquad_paragraph_pairs

    folds = read_folds(xquad_collection / "folds.json")
    test = {int(p) for p in folds[0]["paragraphs"]}
    pairs = xquad_paragraph_pairs(xquad_collection, "el", exclude_fold=0)
    assert pairs and not {p.line for p in pairs} & test
    assert {p.line for p in pairs} == {int(p) for f in folds[1:] for p in f["paragraphs"]}
    assert all(p.english != p.foreign and p.foreign for p in pairs)
    with pytest.raises(ConfigError, match="no fold 7"):
        xquad_paragraph_pairs(xquad_collection, "el", exclude_fold=7)


# --------------------------------------------------------------------------------------------------
# Discovery by any code of the language, in every layout


def bitext_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "bitext"
    folder.mkdir()
    write(folder / "tatoeba.ron-eng.ron", "Bună ziua!\nMulțumesc.\n")
    write(folder / "tatoeba.ron-eng.eng", "Good day!\nThank you.\n")
    write(folder / "WikiMatrix.en-sw.en", "Thank you.\nGood morning.\n")
    write(folder / "WikiMatrix.en-sw.sw", "Asante.\nHabari za asubuhi.\n")
    write(folder / "bitext.en-yo.tsv", "Thank you.\tẸ ṣé.\n")
    write(folder / "amh.jsonl", json.dumps({"english": "Thank you.", "foreign": "አመሰግናለሁ።"}, ensure_ascii=False) + "\n")
    with gzip.open(folder / "corpus.km-en.km.gz", "wt", encoding="utf-8") as handle:
        handle.write("អរគុណ។\n")
    with gzip.open(folder / "corpus.km-en.en.gz", "wt", encoding="utf-8") as handle:
        handle.write("Thank you.\n")
    write(folder / "README.txt", "not bitext\n")
    write(folder / "notes.en-xx.xx", "a half pair of a code that is no language\n")
    return folder


@pytest.mark.parametrize("codes, layout, first", [
    (["ro", "ron", "rum", "ron_Latn", "mo"], "tatoeba", "Bună ziua!"),
    (["sw", "swh", "swa", "swh_Latn"], "opus", "Asante."),
    (["yo", "yor", "yor_Latn"], "tsv", "Ẹ ṣé."),
    (["am", "amh", "amh_Ethi"], "jsonl", "አመሰግናለሁ።"),
    (["km", "khm", "khm_Khmr"], "opus", "អរគុណ។"),
])
def test_find_bitext_by_every_code_form(codes, layout, first, tmp_path):
    folder = bitext_folder(tmp_path)
    found = {find_bitext(folder, code) for code in codes}
    assert len(found) == 1
    (files,) = found
    assert files.layout == layout
    pairs = list(files.pairs())
    assert pairs[0].foreign == first and pairs[0].english in ("Good day!", "Thank you.")


def test_discover_bitext_lists_every_language(tmp_path):
    found = discover_bitext(bitext_folder(tmp_path))
    assert sorted((f.code, f.layout) for f in found) == [
        ("amh", "jsonl"), ("km", "opus"), ("ron", "tatoeba"), ("sw", "opus"), ("yo", "tsv")]


def test_tatoeba_files_takes_the_two_file_layouts_only(tmp_path):
    folder = bitext_folder(tmp_path)
    assert [p.name for p in tatoeba_files(folder, "sw")] == ["WikiMatrix.en-sw.sw", "WikiMatrix.en-sw.en"]
    with pytest.raises(ConfigError, match=r"no bitext for language 'yo' \(Yoruba\).*has bitext.en-yo.tsv \(tsv\) for it"):
        tatoeba_files(folder, "yo")  # a TSV is not a two-file layout
    write(folder / "tatoeba.swh-eng.swh", "Asante sana.\n")
    write(folder / "tatoeba.swh-eng.eng", "Thank you very much.\n")
    assert tatoeba_files(folder, "sw")[0].name == "tatoeba.swh-eng.swh"  # Tatoeba's layout first
    write(folder / "OpenSubtitles.en-sw.sw", "Asante.\n")
    write(folder / "OpenSubtitles.en-sw.en", "Thanks.\n")
    with pytest.raises(ConfigError, match="2 opus bitexts for sw"):
        find_bitext(folder, "sw", layouts=("opus",))


def test_shared_copy_by_every_code_form(tatoeba_dir):
    for codes in (["sw", "swh", "swa", "swh_Latn"], ["zh", "cmn", "zh-Hans", "zho_Hans"], ["ar", "ara", "arb"],
                  ["tl", "tgl", "fil"], ["km", "khm"], ["am", "amh"], ["jv", "jav"], ["kk", "kaz"]):
        assert len({tatoeba_files(tatoeba_dir, c) for c in codes}) == 1, codes
    assert len(discover_bitext(tatoeba_dir)) == 22


# --------------------------------------------------------------------------------------------------
# Streaming: a large bitext is never loaded whole


def test_readers_are_lazy_streams(tmp_path):
    """The first pairs come out although line 5 of each format is broken: nothing past them is read."""
    f, e = two_files(tmp_path, "a\nb\nc\nd\n\nf\n", "1\n2\n3\n4\n5\n6\n")
    stream = iter_parallel_files(f, e)
    assert next(stream).foreign == "a"
    assert [p.foreign for p in take_pairs(iter_parallel_files(f, e), 3)] == ["a", "b", "c"]
    with pytest.raises(InputFormatError, match=r"tatoeba\.ell-eng\.ell:5: empty line"):
        list(iter_parallel_files(f, e))
    tsv = write(tmp_path / "b.tsv", "e1\tf1\ne2\tf2\ne3\tf3\ne4\tf4\nbroken line\n")
    assert [p.foreign for p in take_pairs(iter_bitext(tsv), 2)] == ["f1", "f2"]
    with pytest.raises(InputFormatError, match=r"b\.tsv:5"):
        read_bitext(tsv)


def test_reservoir_sample_of_a_large_bitext_holds_only_the_sample(tmp_path):
    import tracemalloc

    n, k = 30_000, 200
    f, e = tmp_path / "corpus.en-sw.sw", tmp_path / "corpus.en-sw.en"
    f.write_text("".join(f"sentensi ya {i} kwa Kiswahili, ndefu kidogo kuliko kawaida\n" for i in range(n)))
    e.write_text("".join(f"sentence number {i} in English, a little longer than usual\n" for i in range(n)))
    tracemalloc.start()
    sample = take_pairs(iter_parallel_files(f, e), k, seed=3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    whole = sum(len(line) for line in f.read_text().splitlines()) + sum(len(line) for line in e.read_text().splitlines())
    assert peak < whole / 4, (peak, whole)  # the text (and more as objects) never held at once
    lines = [p.line for p in sample]
    assert len(sample) == k and lines == sorted(lines) and len(set(lines)) == k
    assert max(lines) > n // 2 and min(lines) < n // 2  # a sample of the whole file, not its head
    assert all(p.foreign.startswith(f"sentensi ya {p.line - 1} ") for p in sample)  # still aligned
    assert take_pairs(iter_parallel_files(f, e), k, seed=3) == sample  # deterministic in the seed
    assert take_pairs(iter_parallel_files(f, e), k, seed=4) != sample
    assert [p.line for p in tatoeba_pairs(tmp_path, "swh", limit=5)] == [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="at least 1 pair"):
        take_pairs(iter_parallel_files(f, e), 0)


# --------------------------------------------------------------------------------------------------
# XQuAD's in-domain query bitext (the ``mini_xquad`` fixture of conftest.py)


def query_bitext(root: Path, test_fold: int, **options) -> list[BitextPair]:
    from clir_ot.distill.bitext import xquad_query_bitext

    c = root / "collection"
    return xquad_query_bitext(c / "topics.xquad.en.tsv", c / "qrels.xquad.cross.en.txt", c / "corpus" / "en",
                              c / "corpus" / "el", c / "folds.json", test_fold, **options)


def test_xquad_query_bitext_gives_each_training_question_its_paragraph_in_both_languages(mini_xquad):
    from conftest import mini_translate

    from clir_ot.formats import load_corpus, read_folds, read_topics

    folds = read_folds(mini_xquad / "collection" / "folds.json")
    topics = read_topics(mini_xquad / "collection" / "topics.xquad.en.tsv")
    english = load_corpus(mini_xquad / "collection" / "corpus" / "en")
    for test_fold in (0, 1):
        train_qids = {q for f in folds if f["fold"] != test_fold for q in f["qids"]}
        test_paragraphs = {p for f in folds if f["fold"] == test_fold for p in f["paragraphs"]}
        pairs = query_bitext(mini_xquad, test_fold)
        assert sorted(p.qid for p in pairs) == sorted(train_qids)  # every training question once, no test one
        for pair in pairs:
            number = int(pair.qid[1:3])
            assert pair.query == topics[pair.qid] and pair.line == number and number not in test_paragraphs
            assert pair.docids == (f"en-{number:03d}", f"el-{number:03d}")
            assert pair.english == english[f"en-{number:03d}"] and pair.foreign == mini_translate(pair.english)


def test_xquad_query_bitext_hard_negatives_pass_over_the_test_fold(mini_xquad):
    """The first stage ranks the other fold's paragraphs first for every question: for a training
    question those are test paragraphs, so the negatives must be the next ones, from the training fold."""
    pairs = query_bitext(mini_xquad, 0, run=mini_xquad / "run.xquad.e5-small.cross.en-el.txt", negatives=2)
    by_question: dict[str, list[BitextPair]] = {}
    for pair in pairs:
        by_question.setdefault(pair.qid, []).append(pair)
    assert len(by_question) == 16
    for qid, group in by_question.items():
        own = int(qid[1:3])
        numbers = [p.line for p in group]
        assert numbers[0] == own and len(numbers) == 3  # the positive, then 2 negatives
        assert numbers[1:] == sorted(j for j in range(8, 16) if j != own)[:2]  # top of the training fold
        assert all(p.query == group[0].query for p in group)
    with pytest.raises(ConsistencyError, match="fewer than the 8 negatives"):
        query_bitext(mini_xquad, 0, run=mini_xquad / "run.xquad.e5-small.cross.en-el.txt", negatives=8)
    with pytest.raises(ConfigError, match="need a first-stage run"):
        query_bitext(mini_xquad, 0, negatives=1)


def test_the_leakage_guard_covers_bitext(mini_xquad, tmp_path):
    import shutil

    from clir_ot.distill.bitext import check_bitext_leakage, xquad_paragraph_pairs
    from clir_ot.errors import LeakageError

    folds = mini_xquad / "collection" / "folds.json"
    clean = query_bitext(mini_xquad, 0) + xquad_paragraph_pairs(mini_xquad / "collection", "el", 0)
    out_of_domain = [BitextPair("a cat", "xa xtac", "made", 1)]  # no ids: not XQuAD, not checked
    assert check_bitext_leakage(clean + out_of_domain, folds, 0)["docids_checked"] > 0
    with pytest.raises(LeakageError, match="test questions"):
        check_bitext_leakage([BitextPair("e", "f", "x", 1, query="q", qid="q08a")], folds, 1)
    with pytest.raises(LeakageError, match="test paragraphs .*th-003"):  # any language, by paragraph number
        check_bitext_leakage([BitextPair("e", "f", "x", 1, docids=("th-003",))], folds, 0)
    # a collection whose folds file puts a training question on a test paragraph: the builder's guard stops it
    broken = tmp_path / "broken"
    shutil.copytree(mini_xquad, broken)
    data = json.loads((broken / "collection" / "folds.json").read_text())
    data["folds"][1]["qids"].append("q00a")
    data["folds"][0]["qids"].remove("q00a")
    (broken / "collection" / "folds.json").write_text(json.dumps(data))
    with pytest.raises(LeakageError, match="test paragraphs .*en-000"):
        query_bitext(broken, 0)


def test_xquad_query_bitext_needs_every_paragraph_in_both_languages(mini_xquad, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(mini_xquad, broken)
    docs = broken / "collection" / "corpus" / "el" / "docs.jsonl"
    docs.write_text("".join(line + "\n" for line in docs.read_text().splitlines() if '"el-012"' not in line))
    with pytest.raises(ConsistencyError, match="paragraph 12 has no foreign version"):
        query_bitext(broken, 0)
