"""Bitext for distillation: (English, foreign) sentence pairs, their readers, splits and the shuffled control.

Every reader returns a list of :class:`BitextPair` and raises
:class:`~clir_ot.errors.InputFormatError` naming the file, the 1-based line and the problem.

Formats
-------
two files  Tatoeba's layout (LASER's ``data/tatoeba/v1``): ``tatoeba.<xxx>-eng.<xxx>`` and
           ``tatoeba.<xxx>-eng.eng``, one sentence a line; line *i* of one translates line *i* of the
           other (:func:`read_parallel_files`, :func:`tatoeba_pairs`). Both files must have the same
           number of lines, and no line may be empty (an empty line breaks the alignment silently
           wherever a tool skips it).
TSV        ``english<TAB>foreign``, exactly two columns a line (:func:`read_bitext` on ``*.tsv``).
JSONL      ``{"english": "...", "foreign": "..."}`` a line, other keys ignored (:func:`read_bitext` on
           ``*.jsonl``/``*.json``). The keys are spelled as :class:`BitextPair`'s fields, so what
           :func:`write_bitext` writes reads back unchanged.

In TSV and JSONL a wholly blank line is skipped (as every other reader of the toolkit does); an
empty *field* is an error. ``.gz`` files are read too.

Languages
---------
:data:`TATOEBA_CODES` maps the ISO 639-1 codes of XQuAD (``ar de el es hi ru th tr vi zh``) and of
the lower-resource languages in the shared Tatoeba copy to the ISO 639-3 codes of Tatoeba's file
names (``zh`` -> ``cmn``, Mandarin; ``sw`` -> ``swh``). :func:`tatoeba_pairs` accepts either code.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from itertools import zip_longest
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.formats import iter_lines, load_corpus, parse_json_line, read_folds
from clir_ot.io import PathLike, atomic_open, data_suffix

logger = logging.getLogger(__name__)

__all__ = [
    "BitextPair",
    "TATOEBA_CODES",
    "read_bitext",
    "read_parallel_files",
    "shuffled_control",
    "split_bitext",
    "tatoeba_files",
    "tatoeba_pairs",
    "write_bitext",
    "xquad_paragraph_pairs",
]

#: ISO 639-1 -> the ISO 639-3 code of Tatoeba's file names. The first ten are the non-English XQuAD
#: languages; the others are the lower-resource languages of the shared Tatoeba copy.
TATOEBA_CODES: dict[str, str] = {
    "ar": "ara", "de": "deu", "el": "ell", "es": "spa", "hi": "hin",
    "ru": "rus", "th": "tha", "tr": "tur", "vi": "vie", "zh": "cmn",
    "af": "afr", "am": "amh", "bn": "ben", "jv": "jav", "kk": "kaz", "km": "khm",
    "mr": "mar", "sw": "swh", "ta": "tam", "te": "tel", "tl": "tgl", "ur": "urd",
}

#: The JSONL keys of the two sides.
JSONL_KEYS = ("english", "foreign")


@dataclass(frozen=True, slots=True)
class BitextPair:
    """One English sentence/passage and its translation.

    ``source`` is the file the pair was read from (for the two-file layout, the foreign-language
    file) and ``line`` its 1-based line there, so any pair can be traced back; for XQuAD's parallel
    paragraphs ``source`` is the language's corpus folder and ``line`` the paragraph number.
    """

    english: str
    foreign: str
    source: str
    line: int


# --------------------------------------------------------------------------------------------------
# Readers


def read_parallel_files(foreign_path: PathLike, english_path: PathLike) -> list[BitextPair]:
    """Read two line-aligned files (line *i* of one translates line *i* of the other).

    Raises :class:`InputFormatError` on an empty line (naming the file and line), on invalid UTF-8,
    and when the files have different numbers of lines (naming both files and both counts).
    """
    foreign_path, english_path = Path(foreign_path), Path(english_path)
    pairs: list[BitextPair] = []
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
        pairs.append(BitextPair(e_item[1].strip(), f_item[1].strip(), source, f_item[0]))
    if f_count != e_count:
        longer, shorter = (foreign_path, english_path) if f_count > e_count else (english_path, foreign_path)
        raise InputFormatError(
            longer, min(f_count, e_count) + 1,
            f"line-count mismatch: {foreign_path} has {f_count} lines but {english_path} has {e_count}; "
            f"line i of one must translate line i of the other, and this line of {longer.name} has no "
            f"counterpart in {shorter.name}",
        )
    if not pairs:
        raise InputFormatError(foreign_path, None, f"no sentence pairs (the file and {english_path} are empty)")
    return pairs


def read_bitext(path: PathLike) -> list[BitextPair]:
    """Read a one-file bitext: ``*.tsv`` (``english<TAB>foreign``) or ``*.jsonl``/``*.json``
    (``{"english": ..., "foreign": ...}``), ``.gz`` too. For two line-aligned files use
    :func:`read_parallel_files`."""
    path = Path(path)
    kind = data_suffix(path)
    if kind == ".tsv":
        pairs = list(_read_tsv(path))
    elif kind in (".jsonl", ".json"):
        pairs = list(_read_jsonl(path))
    else:
        raise ConfigError(
            f"cannot tell the bitext format of {path}: name it *.tsv (english<TAB>foreign) or *.jsonl "
            '({"english": ..., "foreign": ...}); for two line-aligned files use read_parallel_files'
        )
    if not pairs:
        raise InputFormatError(path, None, "no sentence pairs in the file")
    return pairs


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


def _tatoeba_code(lang: str, folder: Path) -> str:
    if lang in TATOEBA_CODES:
        return TATOEBA_CODES[lang]
    if lang in TATOEBA_CODES.values():
        return lang
    available = sorted(p.name.split(".")[1].split("-")[0] for p in folder.glob("tatoeba.*-eng.eng"))
    if len(lang) == 3 and lang in available:
        return lang
    xquad = " ".join(list(TATOEBA_CODES)[:10])
    raise ConfigError(
        f"no Tatoeba bitext for language {lang!r}: give an ISO 639-1 code of {' '.join(TATOEBA_CODES)} "
        f"(XQuAD's with bitext: {xquad}) or an ISO 639-3 code"
        + (f" present in {folder} ({' '.join(available)})" if available else "")
    )


def tatoeba_files(folder: PathLike, lang: str) -> tuple[Path, Path]:
    """``(foreign_file, english_file)`` of language ``lang`` (ISO 639-1 or 639-3) in a Tatoeba folder."""
    folder = Path(folder)
    code = _tatoeba_code(lang, folder)
    foreign = folder / f"tatoeba.{code}-eng.{code}"
    english = folder / f"tatoeba.{code}-eng.eng"
    missing = [p.name for p in (foreign, english) if not p.is_file()]
    if missing:
        raise ConfigError(
            f"no Tatoeba bitext for {lang!r} in {folder}: missing {', '.join(missing)} "
            "(LASER's data/tatoeba/v1 layout, tatoeba.<xxx>-eng.<xxx> and tatoeba.<xxx>-eng.eng)"
        )
    return foreign, english


def tatoeba_pairs(folder: PathLike, lang: str) -> list[BitextPair]:
    """The Tatoeba pairs of ``lang`` (``"el"`` or ``"ell"``) from a folder in LASER's layout.

    >>> pairs = tatoeba_pairs("../shared/data/tatoeba", "el")   # doctest: +SKIP
    >>> pairs[0].english, pairs[0].foreign                       # doctest: +SKIP
    ('If you have something to say, say it.', 'Αν έχεις να πεις κάτι, πες το.')
    """
    return read_parallel_files(*tatoeba_files(folder, lang))


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
        pairs.append(BitextPair(e, f, source, number))
    return pairs


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
