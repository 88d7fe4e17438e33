"""XQuAD (Artetxe et al., 2020) as cross-lingual retrieval collections.

XQuAD is SQuAD v1.1 dev translated into 11 languages: 48 articles, 240 paragraphs, 1,190 questions,
fully parallel (same article and paragraph order and the same question ids in every language).
As a retrieval task, each question's relevant passage is the paragraph it was asked about:

``cross``  queries in language Q, paragraphs in language D; one relevant paragraph per question,
           so P@5 <= 0.2 and Success@5 / MRR@10 are the informative measures.
``pool``   the paragraphs of all chosen languages in one collection; relevant = the question's
           paragraph in every language (up to 11 relevant per question, as in LAReQA).

Identifiers: a question keeps its XQuAD id (the same in every language); a paragraph is
``<lang>-<nnn>`` with ``nnn`` its 0-based position among the 240 paragraphs, so the same paragraph in
two languages differs only by the language prefix.

Article folds (``k`` of them) are assigned deterministically from the article's position: articles
are ordered by the SHA-256 of ``"xquad-article-<index>"`` and dealt round-robin, which is stable
across runs, machines and languages and does not depend on any random generator.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from clir_ot.datasets.layout import QUERY_LANGUAGE, XQuADCollection
from clir_ot.errors import ConfigError, InputFormatError
from clir_ot.languages import resolve_language, try_resolve_language
from clir_ot.formats import Document, atomic_open, read_folds, write_corpus, write_qrels, write_topics  # noqa: F401 (read_folds re-exported)

logger = logging.getLogger(__name__)

#: XQuAD's 12 languages: the 11 of the original release and Romanian, added upstream later.
XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
#: The 11 languages whose files ship in ../shared/data/xquad (ro exists upstream only): the default.
DEFAULT_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
XQUAD_URL = "https://raw.githubusercontent.com/google-deepmind/xquad/master/xquad.{lang}.json"
EXPECTED = {"articles": 48, "paragraphs": 240, "questions": 1190}

__all__ = [
    "DEFAULT_LANGUAGES",
    "XQUAD_LANGUAGES",
    "XQuAD",
    "XQuADParagraph",
    "available_languages",
    "build_xquad_collections",
    "docid",
    "download_xquad",
    "fold_of_articles",
    "load_xquad",
    "xquad_language",
]


def docid(lang: str, paragraph: int) -> str:
    """The docid of paragraph ``paragraph`` (0-based, 0..239) in language ``lang``."""
    return f"{lang}-{paragraph:03d}"


@dataclass(frozen=True)
class XQuADParagraph:
    index: int  # 0..239, parallel across languages
    article: int  # 0..47
    context: str
    questions: tuple[tuple[str, str], ...]  # (qid, question)


@dataclass
class XQuAD:
    """One language of XQuAD: paragraphs in order with their questions."""

    lang: str
    path: Path
    titles: list[str]
    paragraphs: list[XQuADParagraph] = field(default_factory=list)

    @property
    def questions(self) -> dict[str, str]:
        return {qid: q for p in self.paragraphs for qid, q in p.questions}

    @property
    def relevant(self) -> dict[str, int]:
        """qid -> paragraph index."""
        return {qid: p.index for p in self.paragraphs for qid, _ in p.questions}


def xquad_language(lang: str) -> str:
    """XQuAD's code for ``lang``, given by any code of the language (``ron`` -> ``ro``, ``zh-Hans`` -> ``zh``)."""
    code = resolve_language(lang).code
    if code not in XQUAD_LANGUAGES:
        raise ConfigError(f"XQuAD has no language {lang!r}; it has {', '.join(XQUAD_LANGUAGES)}")
    return code


def available_languages(source: str | os.PathLike) -> list[str]:
    """The XQuAD languages whose ``xquad.<lang>.json`` is in ``source`` (Romanian too, when its file is there)."""
    return [lang for lang in XQUAD_LANGUAGES if (Path(source) / f"xquad.{lang}.json").is_file()]


def download_xquad(lang: str, folder: str | os.PathLike, timeout: float = 30.0) -> Path:
    """Fetch ``xquad.<lang>.json`` from the official repository into ``folder`` (atomically)."""
    lang = xquad_language(lang)
    target = Path(folder) / f"xquad.{lang}.json"
    if target.is_file():
        return target
    url = XQUAD_URL.format(lang=lang)
    logger.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise ConfigError(
            f"could not download {url} ({err}); without a network, pass --source with a folder holding "
            f"xquad.<lang>.json files"
        ) from None
    with atomic_open(target, "wb") as out:
        out.write(payload)
    return target


def _clean(text: str) -> str:
    """Collapse whitespace and drop byte-order marks (some XQuAD paragraphs start with U+FEFF)."""
    return " ".join(text.replace("\ufeff", " ").split())


def load_xquad(lang: str, source: str | os.PathLike) -> XQuAD:
    """Read ``<source>/xquad.<lang>.json`` (SQuAD v1.1 format); ``lang`` may be any code of the language."""
    lang = xquad_language(lang)
    path = Path(source) / f"xquad.{lang}.json"
    if not path.is_file():
        raise InputFormatError(path, None, f"no such file (XQuAD {lang}); download it or pass another --source")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InputFormatError(path, None, f"invalid UTF-8 at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise InputFormatError(path, err.lineno, f"invalid JSON ({err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputFormatError(path, None, "not SQuAD format: expected an object with a 'data' list of articles")
    result = XQuAD(lang=lang, path=path, titles=[])
    index = 0
    for a, article in enumerate(data["data"]):
        result.titles.append(str(article.get("title", f"article-{a}")))
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context")
            if not isinstance(context, str) or not context.strip():
                raise InputFormatError(path, None, f"article {a}, paragraph {index}: empty or missing 'context'")
            questions = []
            for qa in paragraph.get("qas", []):
                qid, question = qa.get("id"), qa.get("question")
                if not isinstance(qid, str) or not isinstance(question, str) or not question.strip():
                    raise InputFormatError(path, None, f"article {a}, paragraph {index}: question without id or text")
                questions.append((qid, _clean(question)))
            result.paragraphs.append(XQuADParagraph(index, a, _clean(context), tuple(questions)))
            index += 1
    return result


def _check_parallel(reference: XQuAD, other: XQuAD) -> None:
    if len(other.paragraphs) != len(reference.paragraphs):
        raise InputFormatError(
            other.path, None,
            f"{len(other.paragraphs)} paragraphs, but {reference.path.name} has {len(reference.paragraphs)}: "
            "the languages are not parallel",
        )
    for mine, theirs in zip(reference.paragraphs, other.paragraphs):
        if mine.article != theirs.article or [q for q, _ in mine.questions] != [q for q, _ in theirs.questions]:
            raise InputFormatError(
                other.path, None,
                f"paragraph {theirs.index} does not match {reference.path.name} (article or question ids differ)",
            )


def fold_of_articles(num_articles: int, k: int) -> list[int]:
    """Fold number (0..k-1) of each article; see the module docstring for the rule."""
    if k < 2:
        raise ConfigError(f"--folds must be at least 2 (each fold's models train on the others), got {k}")
    if k > num_articles:
        raise ConfigError(f"--folds {k} exceeds the {num_articles} articles")
    order = sorted(range(num_articles), key=lambda a: hashlib.sha256(f"xquad-article-{a}".encode()).hexdigest())
    folds = [0] * num_articles
    for position, article in enumerate(order):
        folds[article] = position % k
    return folds


def build_xquad_collections(
    source: str | os.PathLike | None,
    output: str | os.PathLike,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    folds: int = 2,
    download_dir: str | os.PathLike | None = None,
    check_counts: bool = True,
) -> dict:
    """Write XQuAD retrieval collections under ``output``; returns the manifest.

    Layout (``<L>`` each language)::

        topics.xquad.<L>.tsv        the 1,190 questions in language L
        corpus/<L>/docs.jsonl       the 240 paragraphs in language L (a Pyserini JsonCollection)
        qrels.xquad.cross.<L>.txt   cross setting: each question -> its paragraph in language L
        qrels.xquad.pool.txt        pool setting: each question -> its paragraph in every language
        folds.json                  article folds: articles, titles, qids and docids of each fold
        manifest.json               languages, counts, source files and their SHA-256

    ``source=None`` downloads the files (into ``download_dir``, default ``output/source``). Languages
    may be given by any of their codes (``ron``); the collections use XQuAD's (``ro``). Romanian, the
    12th language, is built whenever it is asked for and ``xquad.ro.json`` is in ``source`` (or
    downloadable); the default stays the 11 languages of the shared copy.
    """
    unknown = [l for l in languages if l not in XQUAD_LANGUAGES and
               (try_resolve_language(l) is None or try_resolve_language(l).code not in XQUAD_LANGUAGES)]
    if unknown:
        raise ConfigError(f"XQuAD has no language {', '.join(unknown)}; it has {', '.join(XQUAD_LANGUAGES)}")
    languages = list(dict.fromkeys(xquad_language(l) for l in languages))
    if not languages:
        raise ConfigError("no languages chosen")
    if QUERY_LANGUAGE not in languages:  # its questions are the queries of every cross setting
        logger.info("adding English to %s: its questions are the queries of the cross setting", ", ".join(languages))
        languages.insert(0, QUERY_LANGUAGE)
    output = Path(output)
    if source is None:
        source = Path(download_dir) if download_dir else output / "source"
        for lang in languages:
            download_xquad(lang, source)
    data = {lang: load_xquad(lang, source) for lang in languages}
    reference = data[languages[0]]
    for lang in languages[1:]:
        _check_parallel(reference, data[lang])
    counts = {
        "articles": len(reference.titles),
        "paragraphs": len(reference.paragraphs),
        "questions": len(reference.questions),
    }
    if check_counts and counts != EXPECTED:
        raise InputFormatError(reference.path, None, f"counts {counts} differ from XQuAD's {EXPECTED}")
    fold_of = fold_of_articles(counts["articles"], folds)

    collection = XQuADCollection(output)
    for lang, xq in data.items():
        write_topics(collection.topics(lang), xq.questions)
        write_corpus(
            collection.corpus_file(lang),
            (Document(docid(lang, p.index), p.context) for p in xq.paragraphs),
        )
        write_qrels(
            collection.qrels(lang),
            {qid: {docid(lang, p): 1} for qid, p in xq.relevant.items()},
        )
    write_qrels(
        collection.pool_qrels,
        {qid: {docid(lang, p): 1 for lang in languages} for qid, p in reference.relevant.items()},
    )
    english_titles = data["en"].titles if "en" in data else reference.titles
    fold_records = []
    for f in range(folds):
        articles = [a for a in range(counts["articles"]) if fold_of[a] == f]
        paragraphs = [p for p in reference.paragraphs if fold_of[p.article] == f]
        fold_records.append({
            "fold": f,
            "articles": articles,
            "titles": [english_titles[a] for a in articles],
            "qids": [qid for p in paragraphs for qid, _ in p.questions],
            "paragraphs": [p.index for p in paragraphs],
            "docids": {lang: [docid(lang, p.index) for p in paragraphs] for lang in languages},
        })
    with atomic_open(collection.folds) as out:
        json.dump({"k": folds, "rule": "sha256('xquad-article-<index>') order, round-robin", "folds": fold_records},
                  out, indent=1, ensure_ascii=False)
    manifest = {
        "dataset": "xquad",
        "languages": languages,
        "counts": counts,
        "folds": folds,
        "sources": {
            lang: {"file": str(xq.path.resolve()), "sha256": hashlib.sha256(xq.path.read_bytes()).hexdigest()}
            for lang, xq in data.items()
        },
    }
    with atomic_open(collection.manifest) as out:
        json.dump(manifest, out, indent=2, ensure_ascii=False)
    logger.info(
        "XQuAD collections for %s written to %s (%d articles, %d paragraphs, %d questions per language, %d folds)",
        ",".join(languages), output, counts["articles"], counts["paragraphs"], counts["questions"], folds,
    )
    return manifest


def pool_corpus_dirs(collection: str | os.PathLike, languages: Iterable[str]) -> list[Path]:
    """The per-language corpus folders that make up the ``pool`` collection."""
    return [XQuADCollection(collection).corpus(lang) for lang in languages]
