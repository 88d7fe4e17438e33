"""Bitext for distillation: (English, foreign) sentence pairs, their readers, splits and the shuffled control.

Every reader is a generator (:func:`iter_parallel_files`, :func:`iter_bitext`,
:meth:`BitextFiles.pairs`), so a 10M-line OPUS file is streamed, never loaded whole; the list
readers (:func:`read_parallel_files`, :func:`read_bitext`, :func:`tatoeba_pairs`) collect a stream,
and :func:`take_pairs` keeps the first *N* pairs or a seeded reservoir sample of *N* where
distillation needs a list (and logs which). Every reader raises
:class:`~clir_ot.errors.InputFormatError` naming the file, the 1-based line and the problem.

Formats
-------
two files  line *i* of one file translates line *i* of the other, one sentence a line:
           Tatoeba's layout (LASER's ``data/tatoeba/v1``), ``tatoeba.<xxx>-eng.<xxx>`` and
           ``tatoeba.<xxx>-eng.eng``; and OPUS/Moses's, ``<corpus>.<l1>-<l2>.<l1>`` and
           ``<corpus>.<l1>-<l2>.<l2>`` (``WikiMatrix.en-ro.en`` / ``WikiMatrix.en-ro.ro``).
           Both files must have the same number of lines, and no line may be empty (an empty line
           breaks the alignment silently wherever a tool skips it).
TSV        ``english<TAB>foreign``, exactly two columns a line (:func:`read_bitext` on ``*.tsv``).
JSONL      ``{"english": "...", "foreign": "..."}`` a line, other keys ignored (:func:`read_bitext` on
           ``*.jsonl``/``*.json``). The keys are spelled as :class:`BitextPair`'s fields, so what
           :func:`write_bitext` writes reads back unchanged.

In TSV and JSONL a wholly blank line is skipped (as every other reader of the toolkit does); an
empty *field* is an error. ``.gz`` files are read too.

Languages
---------
:func:`find_bitext` looks a language's files up in a folder by *any* code of the language: the
codes in the file names and the code asked for are both resolved by
:func:`clir_ot.languages.resolve_language`, so ``ro``, ``ron`` and ``ron_Latn`` find
``tatoeba.ron-eng.ron``, and ``sw``, ``swh`` and ``swa`` find ``tatoeba.swh-eng.swh``
(``zh``/``cmn``, ``ar``/``ara``/``arb``, ``tl``/``tgl``/``fil`` alike). One-file bitext is found as
``[<name>.]<en>-<xx>.{tsv,jsonl}`` or ``<xx>.{tsv,jsonl}`` (English first in the file, whatever the
name's order). :func:`tatoeba_files` / :func:`tatoeba_pairs` take the two-file layouts only
(Tatoeba's first, then OPUS/Moses).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from itertools import islice, zip_longest
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.formats import BitextPair, iter_lines, load_corpus, load_run, parse_json_line, read_folds, read_qrels, read_topics
from clir_ot.io import PathLike, atomic_open, data_suffix
from clir_ot.languages import resolve_language, try_resolve_language
from clir_ot.training.data import FoldSplit, assert_no_leakage, xquad_fold_split

logger = logging.getLogger(__name__)

__all__ = [
    "BitextFiles",
    "BitextPair",
    "check_bitext_leakage",
    "discover_bitext",
    "find_bitext",
    "iter_bitext",
    "iter_parallel_files",
    "read_bitext",
    "read_parallel_files",
    "shuffled_control",
    "split_bitext",
    "take_pairs",
    "tatoeba_files",
    "tatoeba_pairs",
    "write_bitext",
    "xquad_paragraph_pairs",
    "xquad_query_bitext",
]

#: The JSONL keys of the two sides.
JSONL_KEYS = ("english", "foreign")


# --------------------------------------------------------------------------------------------------
# Readers


def iter_parallel_files(foreign_path: PathLike, english_path: PathLike) -> Iterator[BitextPair]:
    """Stream two line-aligned files (line *i* of one translates line *i* of the other), pair by pair.

    Raises :class:`InputFormatError` on an empty line (naming the file and line), on invalid UTF-8,
    and, when one file ends before the other, on the line-count mismatch (naming both files and both
    counts; the rest of the longer file is read, not kept, to count it).
    """
    foreign_path, english_path = Path(foreign_path), Path(english_path)
    source = str(foreign_path)
    f_count = e_count = 0
    for f_item, e_item in zip_longest(iter_lines(foreign_path), iter_lines(english_path)):
        for item, path in ((f_item, foreign_path), (e_item, english_path)):
            if item is not None and not item[1].strip():
                raise InputFormatError(
                    path, item[0], "empty line; in a line-aligned bitext every line must hold a sentence "
                    "(remove the line and its counterpart in the other file)"
                )
        f_count += f_item is not None
        e_count += e_item is not None
        if f_item is None or e_item is None:
            continue  # keep counting the longer file, to report both lengths
        yield BitextPair(e_item[1].strip(), f_item[1].strip(), source, f_item[0])
    if f_count != e_count:
        longer, shorter = (foreign_path, english_path) if f_count > e_count else (english_path, foreign_path)
        raise InputFormatError(
            longer, min(f_count, e_count) + 1,
            f"line-count mismatch: {foreign_path} has {f_count} lines but {english_path} has {e_count}; "
            f"line i of one must translate line i of the other, and this line of {longer.name} has no "
            f"counterpart in {shorter.name}",
        )


def read_parallel_files(foreign_path: PathLike, english_path: PathLike) -> list[BitextPair]:
    """All pairs of two line-aligned files (:func:`iter_parallel_files`, collected); errors as there.

    An empty pair of files is an :class:`InputFormatError` too.
    """
    pairs = list(iter_parallel_files(foreign_path, english_path))
    if not pairs:
        raise InputFormatError(foreign_path, None, f"no sentence pairs (the file and {english_path} are empty)")
    return pairs


def iter_bitext(path: PathLike) -> Iterator[BitextPair]:
    """Stream a one-file bitext: ``*.tsv`` (``english<TAB>foreign``) or ``*.jsonl``/``*.json``
    (``{"english": ..., "foreign": ...}``), ``.gz`` too. For two line-aligned files use
    :func:`iter_parallel_files`."""
    path = Path(path)
    kind = data_suffix(path)
    if kind == ".tsv":
        return _read_tsv(path)
    if kind in (".jsonl", ".json"):
        return _read_jsonl(path)
    raise ConfigError(
        f"cannot tell the bitext format of {path}: name it *.tsv (english<TAB>foreign) or *.jsonl "
        '({"english": ..., "foreign": ...}); for two line-aligned files use read_parallel_files'
    )


def read_bitext(path: PathLike) -> list[BitextPair]:
    """All pairs of a one-file bitext (:func:`iter_bitext`, collected); an empty file is an error."""
    pairs = list(iter_bitext(path))
    if not pairs:
        raise InputFormatError(path, None, "no sentence pairs in the file")
    return pairs


def take_pairs(pairs: Iterable[BitextPair], limit: int | None, seed: int | None = None) -> list[BitextPair]:
    """At most ``limit`` pairs of a stream, in stream order, holding only ``limit`` of them at a time.

    ``seed=None`` keeps the first ``limit``; an integer seed keeps a uniform reservoir sample of
    ``limit`` (Algorithm R; deterministic in ``seed``), read through the whole stream. Which of the
    two, and how many pairs the stream had, is logged. ``limit=None`` keeps all.
    """
    if limit is None:
        return list(pairs)
    if limit < 1:
        raise ConfigError(f"a bitext limit must be at least 1 pair, got {limit}")
    if seed is None:
        kept = list(islice(pairs, limit))
        logger.info("bitext: kept the first %d pairs (limit %d)", len(kept), limit)
        return kept
    rng = np.random.default_rng([int(seed), 7919])
    reservoir: list[tuple[int, BitextPair]] = []
    seen = 0
    for seen, pair in enumerate(pairs, start=1):
        if len(reservoir) < limit:
            reservoir.append((seen, pair))
        else:
            j = int(rng.integers(seen))
            if j < limit:
                reservoir[j] = (seen, pair)
    reservoir.sort(key=lambda item: item[0])
    logger.info("bitext: kept a reservoir sample of %d of %d pairs (seed %d)", len(reservoir), seen, seed)
    return [pair for _, pair in reservoir]


def _read_tsv(path: Path) -> Iterable[BitextPair]:
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            raise InputFormatError(
                path, number, f"expected 2 tab-separated columns 'english<TAB>foreign', found {len(cols)}"
            )
        for name, value in zip(JSONL_KEYS, cols):
            if not value.strip():
                raise InputFormatError(path, number, f"empty {name} column")
        yield BitextPair(cols[0].strip(), cols[1].strip(), str(path), number)


def _read_jsonl(path: Path) -> Iterable[BitextPair]:
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        record = parse_json_line(path, number, line)
        texts = []
        for key in JSONL_KEYS:
            if key not in record:
                raise InputFormatError(
                    path, number, f'missing the {key!r} field (each line must be {{"english": ..., "foreign": ...}})'
                )
            value = record[key]
            if not isinstance(value, str):
                raise InputFormatError(path, number, f"field {key!r} must be a string, found {type(value).__name__}")
            if not value.strip():
                raise InputFormatError(path, number, f"empty {key!r} field")
            texts.append(value.strip())
        yield BitextPair(texts[0], texts[1], str(path), number)


def write_bitext(path: PathLike, pairs: Iterable[BitextPair]) -> Path:
    """Write pairs (atomically) as ``*.tsv`` or ``*.jsonl``, the formats :func:`read_bitext` reads."""
    path = Path(path)
    kind = data_suffix(path)
    if kind not in (".tsv", ".jsonl", ".json"):
        raise ConfigError(f"cannot write bitext to {path}: name it *.tsv or *.jsonl")
    with atomic_open(path) as handle:
        for pair in pairs:
            if kind == ".tsv":
                for name, text in (("english", pair.english), ("foreign", pair.foreign)):
                    if any(c in text for c in "\t\r\n"):
                        raise ConfigError(
                            f"the {name} text of {pair.source}:{pair.line} holds a tab or line break and "
                            "cannot be written as TSV; write *.jsonl instead"
                        )
                handle.write(f"{pair.english}\t{pair.foreign}\n")
            else:
                handle.write(json.dumps({"english": pair.english, "foreign": pair.foreign}, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------------------------------
# Tatoeba


#: The layouts :func:`discover_bitext` recognises, in the order :func:`find_bitext` prefers them.
LAYOUTS = ("tatoeba", "opus", "tsv", "jsonl")
_CODE = r"[A-Za-z]{2,3}(?:_[A-Za-z0-9]+)*"
_TWO_FILE = re.compile(rf"^(?P<prefix>.+)\.(?P<a>{_CODE})-(?P<b>{_CODE})\.(?P<side>{_CODE})$")
_ONE_FILE = re.compile(rf"^(?:(?P<prefix>.+)\.)?(?:(?P<a>{_CODE})-)?(?P<b>{_CODE})\.(?P<kind>tsv|jsonl|json)$")


@dataclass(frozen=True)
class BitextFiles:
    """The bitext of one language found in a folder.

    ``layout`` is one of :data:`LAYOUTS`; ``code`` the language's code as the file names spell it
    (``swh``); ``foreign`` the foreign-language file (or the one TSV/JSONL file) and ``english`` the
    English file of a two-file layout (``None`` otherwise).
    """

    layout: str
    code: str
    foreign: Path
    english: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [self.foreign] if self.english is None else [self.foreign, self.english]

    def pairs(self) -> Iterator[BitextPair]:
        """Stream the pairs (:func:`iter_parallel_files` or :func:`iter_bitext`)."""
        if self.english is not None:
            return iter_parallel_files(self.foreign, self.english)
        return iter_bitext(self.foreign)


def _code_of(code: str) -> str | None:
    found = try_resolve_language(code)
    return None if found is None else found.code


def _scan(folder: Path) -> tuple[list[BitextFiles], list[Path]]:
    """Bitext in ``folder``, and the two-file halves whose other half is missing."""
    if not folder.is_dir():
        raise ConfigError(f"bitext folder {folder} does not exist")
    found: list[BitextFiles] = []
    halves: list[Path] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        gz = path.name[len(name):]
        one = _ONE_FILE.match(name)
        if one:
            a, b = one.group("a"), one.group("b")
            sides = [c for c in (a, b) if c is not None]
            foreign = [c for c in sides if _code_of(c) not in (None, "en")]
            if len(foreign) == 1 and (len(sides) == 1 or any(_code_of(c) == "en" for c in sides)):
                found.append(BitextFiles("tsv" if one.group("kind") == "tsv" else "jsonl", foreign[0], path))
            continue
        two = _TWO_FILE.match(name)
        if not two:
            continue
        a, b, side, prefix = two.group("a"), two.group("b"), two.group("side"), two.group("prefix")
        if side not in (a, b) or (_code_of(a) == "en") == (_code_of(b) == "en"):
            continue  # not one side of an English-foreign pair
        code, english_code = (b, a) if _code_of(a) == "en" else (a, b)
        if _code_of(code) is None:
            continue
        other = folder / f"{prefix}.{a}-{b}.{english_code if side == code else code}{gz}"
        if not other.is_file():
            halves.append(path)
        elif side == code:  # a pair is recorded once, from its foreign side
            found.append(BitextFiles("tatoeba" if prefix == "tatoeba" else "opus", code, path, other))
    return found, halves


def discover_bitext(folder: PathLike) -> list[BitextFiles]:
    """Every English-foreign bitext in ``folder`` (not its subfolders), in any layout of :data:`LAYOUTS`."""
    return _scan(Path(folder))[0]


def find_bitext(folder: PathLike, lang: str, layouts: Sequence[str] = LAYOUTS) -> BitextFiles:
    """The bitext of ``lang`` (any code of the language) in ``folder``, in the first of ``layouts`` that has it.

    Raises :class:`ConfigError` when the folder has none (naming the languages it has, and a file
    whose counterpart is missing), when ``lang`` is English (the pivot) or names no language, and
    when one layout holds two bitexts of the language (pass the file itself then).
    """
    folder = Path(folder)
    unknown = [l for l in layouts if l not in LAYOUTS]
    if unknown:
        raise ConfigError(f"unknown bitext layouts {unknown}; valid: {', '.join(LAYOUTS)}")
    wanted = resolve_language(lang)
    if wanted.code == "en":
        raise ConfigError(f"no bitext for language {lang!r}: English is the pivot side of every pair; "
                          "give the foreign language")
    found, halves = _scan(folder)
    for layout in layouts:
        matches = [f for f in found if f.layout == layout and _code_of(f.code) == wanted.code]
        if len(matches) > 1:
            raise ConfigError(
                f"{folder} holds {len(matches)} {layout} bitexts for {wanted}: "
                f"{', '.join(m.foreign.name for m in matches)}; pass the one to use as a file"
            )
        if matches:
            logger.info("bitext for %s: %s (%s layout)", wanted, ", ".join(str(p) for p in matches[0].files), layout)
            return matches[0]
    available = sorted({f"{_code_of(f.code)} ({f.code})" for f in found if f.layout in layouts})
    lacking = [h.name for h in halves if any(_code_of(part) == wanted.code for part in re.split(r"[.-]", h.name))]
    elsewhere = [f"{f.foreign.name} ({f.layout})" for f in found if _code_of(f.code) == wanted.code]
    raise ConfigError(
        f"no bitext for language {lang!r} ({wanted.name}) in {folder}: looked for "
        f"{', '.join(_LAYOUT_NAMES[l] for l in layouts)}"
        + (f"; {', '.join(lacking)} lacks its counterpart file" if lacking else "")
        + (f"; the folder has {', '.join(elsewhere)} for it, in another layout: pass that file as the bitext"
           if elsewhere else "")
        + (f"; the folder has bitext for {', '.join(available)}" if available else "; the folder has none")
    )


_LAYOUT_NAMES = {
    "tatoeba": "tatoeba.<xxx>-eng.<xxx> + tatoeba.<xxx>-eng.eng",
    "opus": "<corpus>.<en>-<xx>.<xx> + <corpus>.<en>-<xx>.<en>",
    "tsv": "[<name>.][<en>-]<xx>.tsv",
    "jsonl": "[<name>.][<en>-]<xx>.jsonl",
}


def tatoeba_files(folder: PathLike, lang: str) -> tuple[Path, Path]:
    """``(foreign_file, english_file)`` of ``lang`` (any code of the language) in a folder of
    two-file bitext: Tatoeba's layout first, then OPUS/Moses's (see :func:`find_bitext`)."""
    found = find_bitext(folder, lang, layouts=("tatoeba", "opus"))
    assert found.english is not None
    return found.foreign, found.english


def tatoeba_pairs(folder: PathLike, lang: str, limit: int | None = None, seed: int | None = None) -> list[BitextPair]:
    """The pairs of ``lang`` (``"el"``, ``"ell"`` or ``"ell_Grek"``) from a folder of two-file bitext.

    ``limit``/``seed``: keep the first ``limit`` pairs, or a seeded reservoir sample of them
    (:func:`take_pairs`); the files are streamed either way.

    >>> pairs = tatoeba_pairs("../shared/data/tatoeba", "el")   # doctest: +SKIP
    >>> pairs[0].english, pairs[0].foreign                       # doctest: +SKIP
    ('If you have something to say, say it.', 'Αν έχεις να πεις κάτι, πες το.')
    """
    foreign, english = tatoeba_files(folder, lang)
    pairs = take_pairs(iter_parallel_files(foreign, english), limit, seed)
    if not pairs:
        raise InputFormatError(foreign, None, f"no sentence pairs (the file and {english} are empty)")
    return pairs


def xquad_paragraph_pairs(collection: PathLike, lang: str, exclude_fold: int) -> list[BitextPair]:
    """Parallel XQuAD paragraphs (English, ``lang``) of the *training* folds only.

    XQuAD's paragraphs are translations of each other (docids ``en-005`` and ``el-005`` are the same
    paragraph), so the articles that the fold-``exclude_fold`` teacher trained on give extra,
    in-domain bitext. The paragraphs of the test fold ``exclude_fold`` are never returned (checked
    against ``folds.json``), so a student of that fold sees nothing of its test articles.
    """
    collection = Path(collection)
    folds = read_folds(collection / "folds.json")
    numbers = [int(f["fold"]) for f in folds]
    if exclude_fold not in numbers:
        raise ConfigError(f"no fold {exclude_fold} in {collection / 'folds.json'}; it has folds {numbers}")
    test = {int(p) for f in folds if int(f["fold"]) == exclude_fold for p in f["paragraphs"]}
    train = sorted({int(p) for f in folds if int(f["fold"]) != exclude_fold for p in f["paragraphs"]} - test)
    english, foreign = load_corpus(collection / "corpus" / "en"), load_corpus(collection / "corpus" / lang)
    source = str(collection / "corpus" / lang)
    pairs = []
    for number in train:
        e, f = english.get(f"en-{number:03d}"), foreign.get(f"{lang}-{number:03d}")
        if e is None or f is None:
            raise ConsistencyError(f"{collection}: paragraph {number} lacks its en or {lang} version")
        pairs.append(BitextPair(e, f, source, number, docids=(f"en-{number:03d}", f"{lang}-{number:03d}")))
    return pairs


_PARAGRAPH_ID = re.compile(r"^(?P<lang>[a-z]{2,3})-(?P<number>\d+)$")


def _paragraphs_by_number(corpus: PathLike) -> dict[int, tuple[str, str]]:
    """``{paragraph number: (docid, text)}`` of an XQuAD corpus (docids ``<lang>-<nnn>``)."""
    out: dict[int, tuple[str, str]] = {}
    for docid, text in load_corpus(corpus).items():
        match = _PARAGRAPH_ID.match(docid)
        if match is None:
            raise ConsistencyError(f"{corpus}: document id {docid!r} is not an XQuAD paragraph id <lang>-<nnn>")
        out[int(match.group("number"))] = (docid, text)
    return out


def xquad_query_bitext(
    topics: PathLike,
    qrels: PathLike,
    english_corpus: PathLike,
    foreign_corpus: PathLike,
    folds: PathLike,
    test_fold: int,
    *,
    run: PathLike | None = None,
    negatives: int = 0,
) -> list[BitextPair]:
    """In-domain query bitext: XQuAD's English questions of the training folds, each with its paragraph
    in English and in the foreign language (human translations, aligned by paragraph number).

    One :class:`BitextPair` per training question and relevant paragraph, ``query`` the question; with
    ``negatives > 0`` also the question's top ``negatives`` non-relevant training-fold paragraphs of
    ``run`` (a first-stage run of these English questions, over any language's paragraphs, ranked by
    score, ties by docid), so that score distillation sees low teacher scores as well as high ones.
    Nothing of fold ``test_fold`` is returned: its questions are skipped, a negative that is a
    test-fold paragraph is passed over, and the result goes through the leakage guard
    (:func:`check_bitext_leakage`) before it is returned.

    Args:
        topics, qrels: the English questions and their cross qrels (``en-<nnn>`` paragraphs).
        english_corpus, foreign_corpus: the paragraphs in English and in the foreign language.
        folds: the collection's ``folds.json``; ``test_fold`` the fold the teacher held out.
        run, negatives: hard negatives (``run`` is needed when ``negatives > 0``).

    Raises :class:`~clir_ot.errors.ConfigError` on an unknown fold or negatives without a run,
    :class:`~clir_ot.errors.ConsistencyError` when a paragraph lacks its translation or a run holds
    too few negatives for a question, :class:`~clir_ot.errors.LeakageError` if anything of the test
    fold would be returned.
    """
    if isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 0:
        raise ConfigError(f"negatives must be an integer >= 0, got {negatives!r}")
    if negatives and run is None:
        raise ConfigError("hard negatives need a first-stage run of the English questions")
    split = xquad_fold_split(folds, test_fold)
    questions = read_topics(topics)
    judged = read_qrels(qrels)
    english, foreign = _paragraphs_by_number(english_corpus), _paragraphs_by_number(foreign_corpus)
    ranking = load_run(run) if negatives else {}
    source = str(foreign_corpus)
    skipped_test = 0

    def pair(qid: str, number: int) -> BitextPair:
        if number not in english or number not in foreign:
            raise ConsistencyError(f"paragraph {number} has no {'English' if number not in english else 'foreign'} "
                                   f"version ({english_corpus}, {foreign_corpus})")
        (e_id, e_text), (f_id, f_text) = english[number], foreign[number]
        return BitextPair(e_text, f_text, source, number, query=questions[qid], qid=qid, docids=(e_id, f_id))

    pairs: list[BitextPair] = []
    for qid in questions:
        if qid not in split.train_qids:
            continue
        relevant = sorted({int(m.group("number")) for d, rel in judged.get(qid, {}).items() if rel > 0
                           for m in [_PARAGRAPH_ID.match(d)] if m})
        if not relevant:
            raise ConsistencyError(f"{qrels}: training question {qid} has no relevant XQuAD paragraph")
        pairs.extend(pair(qid, number) for number in relevant)
        if not negatives:
            continue
        hits = sorted(ranking.get(qid, {}).items(), key=lambda item: (-item[1], item[0]))
        chosen: list[int] = []
        for docid, _ in hits:
            match = _PARAGRAPH_ID.match(docid)
            number = int(match.group("number")) if match else None
            if number is None or number in relevant or number in chosen:
                continue
            if number not in split.train_paragraphs:
                skipped_test += 1  # a test-fold paragraph retrieved for a training question
                continue
            chosen.append(number)
            if len(chosen) == negatives:
                break
        if len(chosen) < negatives:
            raise ConsistencyError(f"{run}: question {qid} has {len(chosen)} non-relevant training-fold paragraphs, "
                                   f"fewer than the {negatives} negatives asked")
        pairs.extend(pair(qid, number) for number in chosen)
    if not pairs:
        raise ConsistencyError(f"no training questions of {topics} outside test fold {test_fold}")
    checked = check_bitext_leakage(pairs, split)
    logger.info("xquad query bitext: %d pairs (%d training questions, %d negatives each; %d test-fold paragraphs "
                "passed over as negatives); leakage guard: %d ids checked against test fold %d", len(pairs),
                len({p.qid for p in pairs}), negatives, skipped_test, checked["docids_checked"], test_fold)
    return pairs


def check_bitext_leakage(pairs: Iterable[BitextPair], folds: PathLike | FoldSplit, test_fold: int | None = None) -> dict[str, int]:
    """The leakage guard (:func:`clir_ot.training.assert_no_leakage`) over bitext: raise
    :class:`~clir_ot.errors.LeakageError` if a pair's ``qid`` or ``docids`` name anything of the test
    fold (a question, a paragraph in any language). Pairs without ids (Tatoeba, files) are
    out-of-domain and not checked; the counts checked are returned, for manifests."""
    split = folds if isinstance(folds, FoldSplit) else xquad_fold_split(folds, int(test_fold if test_fold is not None else -1))
    ids = [i for p in pairs for i in ((p.qid,) if p.qid else ()) + tuple(p.docids)]
    return assert_no_leakage(ids, split)


# --------------------------------------------------------------------------------------------------
# Held-out slice and the shuffled control


def split_bitext(
    pairs: Sequence[BitextPair], valid_fraction: float, seed: int
) -> tuple[list[BitextPair], list[BitextPair]]:
    """Hold out about ``valid_fraction`` of the pairs for validation, deterministically in ``seed``.

    Pairs are split by their English text, so an English sentence that occurs several times is
    never on both sides. At least one group is held out and at least one kept. Returns
    ``(train, valid)``, each in the original order.
    """
    if not 0 < valid_fraction < 1:
        raise ConfigError(f"valid_fraction must be between 0 and 1 (exclusive), got {valid_fraction}")
    keys = sorted({p.english for p in pairs})
    if len(keys) < 2:
        raise ConsistencyError(
            f"cannot hold out a validation slice: the bitext has {len(keys)} distinct English text(s)"
        )
    count = min(len(keys) - 1, max(1, round(valid_fraction * len(keys))))
    order = np.random.default_rng([int(seed), 104729]).permutation(len(keys))
    held = {keys[i] for i in order[:count]}
    train = [p for p in pairs if p.english not in held]
    valid = [p for p in pairs if p.english in held]
    return train, valid


def shuffled_control(pairs: Sequence[BitextPair], seed: int) -> list[BitextPair]:
    """The shuffled-bitext control: the same pairs with their foreign sides deliberately misaligned.

    Pair *i* keeps its English text, ``source`` and ``line`` and receives the foreign text of another
    pair, by a random derangement (deterministic in ``seed``): no pair gets its own translation,
    nor a translation of the same English text, nor the same foreign text (duplicates in the bitext
    are taken into account). The multiset of foreign texts is unchanged, so training on the control
    sees the same sentences and differs only in their alignment.

    Raises :class:`ConsistencyError` when such a misalignment does not exist (fewer than two pairs,
    or one text repeated in most pairs).
    """
    n = len(pairs)
    if n < 2:
        raise ConsistencyError(f"cannot misalign {n} pair(s): the shuffled control needs at least 2")
    e_id = _codes([p.english for p in pairs])
    f_id = _codes([p.foreign for p in pairs])
    rng = np.random.default_rng([int(seed), 15485863])
    perm = rng.permutation(n)
    idx = np.arange(n)

    def clash(i, k):  # pair i may not receive the foreign side of pair k
        return (i == k) | (e_id[i] == e_id[k]) | (f_id[i] == f_id[k])

    # repair the clashes of a uniform permutation by swaps that fix both ends (a few, for real bitext)
    tries = 0
    for i in np.flatnonzero(clash(idx, perm)):
        while clash(i, perm[i]):
            tries += 1
            if tries > 100 * n + 1000:
                raise ConsistencyError(
                    "cannot misalign the bitext: too many pairs share one English or foreign text "
                    "(deduplicate it first)"
                )
            j = int(rng.integers(n))
            if not clash(i, perm[j]) and not clash(j, perm[i]):
                perm[i], perm[j] = perm[j], perm[i]
    assert not bool(clash(idx, perm).any())
    return [replace(pair, foreign=pairs[k].foreign) for pair, k in zip(pairs, perm.tolist())]


def _codes(texts: Sequence[str]) -> np.ndarray:
    index: dict[str, int] = {}
    return np.array([index.setdefault(t, len(index)) for t in texts], dtype=np.int64)
