"""The XQuAD file layout: one object names every collection file, run, index, teacher and student.

Every stage asks :class:`XQuADLayout` (rooted at an output folder such as ``runs/xquad``) or its
:class:`XQuADCollection` (``<root>/collection``) for a path instead of formatting the name itself,
so the names below are spelled once. They are the names the toolkit has always written, so
existing folders keep working::

    <root>/collection/topics.xquad.<L>.tsv                 questions in language L
    <root>/collection/corpus/<L>/docs.jsonl                paragraphs in language L
    <root>/collection/qrels.xquad.cross.<L>.txt            cross qrels of language L
    <root>/collection/qrels.xquad.pool.txt                 pool qrels
    <root>/collection/folds.json, manifest.json            article folds, manifest
    <root>/run.xquad.bm25.<setting>.<Q>-<D>.txt            BM25 runs (setting cross or mono)
    <root>/run.xquad.<tag>.cross.<Q>-<D>.txt               dense first stage of model <tag>
    <root>/run.xquad.bm25+<tag>.rrf.cross.<Q>-<D>.txt      BM25 + dense RRF (en-en: teacher negatives)
    <root>/teacher.<tag>.en.fold<k>/                       cross-fitted teacher of fold k
    <root>/run.xquad.<tag>+teacher.cross.en-<D>.txt        the teachers' merged reranked run
    <root>/table.<name>.{md,tsv,json}                      result tables
    <index_root>/lucene.xquad.<L>/, faiss.xquad.<L>.<tag>/ indexes

Example:

>>> layout = XQuADLayout("runs/xquad")
>>> layout.first_stage_run("th").as_posix()
'runs/xquad/run.xquad.e5-small.cross.en-th.txt'
>>> layout.collection.qrels("th").as_posix()
'runs/xquad/collection/qrels.xquad.cross.th.txt'
>>> layout.teacher(1).as_posix()
'runs/xquad/teacher.e5-small.en.fold1'
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from clir_ot.errors import ConfigError
from clir_ot.io import FolderLayout

__all__ = ["DEFAULT_FIRST_STAGE", "EnglishTrainingFiles", "RERANKED_RUNS", "TeacherData", "XQuADCollection", "XQuADLayout"]

#: The tag of the dense first stage of ``clir-ot baseline`` (multilingual-e5-small).
DEFAULT_FIRST_STAGE = "e5-small"
QUERY_LANGUAGE = "en"


@dataclass(frozen=True)
class XQuADCollection(FolderLayout):
    """The files of :func:`~clir_ot.datasets.xquad.build_xquad_collections` under ``root``."""

    def topics(self, lang: str) -> Path:
        return self.root / f"topics.xquad.{lang}.tsv"

    def queries_for(self, lang: str) -> Path:
        """The questions that search ``lang``'s paragraphs: the English ones, for every language."""
        return self.topics(QUERY_LANGUAGE)

    def corpus(self, lang: str) -> Path:
        """The folder of language ``lang``'s paragraphs (a Pyserini JsonCollection)."""
        return self.root / "corpus" / lang

    def corpus_file(self, lang: str) -> Path:
        return self.corpus(lang) / "docs.jsonl"

    def qrels(self, lang: str) -> Path:
        """Cross qrels: each question -> its paragraph in ``lang``."""
        return self.root / f"qrels.xquad.cross.{lang}.txt"

    @property
    def pool_qrels(self) -> Path:
        return self.root / "qrels.xquad.pool.txt"

    @property
    def folds(self) -> Path:
        return self.root / "folds.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"


class EnglishTrainingFiles(NamedTuple):
    """The files a cross-fitted English cross-encoder trains from (teacher; rank data of students).

    The field names are those of :class:`clir_ot.training.DataSpec`:
    ``DataSpec(**files._asdict(), exclude_fold=k)``.
    """

    topics: Path
    qrels: Path
    corpus: Path
    run: Path
    folds: Path


@dataclass(frozen=True)
class TeacherData:
    """The data side of the teacher's recipe (the model side is the :class:`TrainingConfig`).

    Attributes:
        negatives: ``fused`` (the BM25 + dense RRF run en-en) or ``dense`` (the dense first stage):
            the run whose top documents give the hard negatives.
        soft_targets: the dense first stage's scores become each group's targets (needs
            ``soft_weight > 0`` in the training config to be used).
        validate_on: ``negatives`` (the held-out questions' top documents of the negatives run) or
            ``first-stage`` (of the dense first stage: the reranking the teacher does at test time).
        interpolate: also write and evaluate the teacher's runs interpolated with the first stage.
    """

    negatives: str = "fused"
    soft_targets: bool = False
    validate_on: str = "negatives"
    interpolate: bool = False

    def __post_init__(self) -> None:
        if self.negatives not in ("fused", "dense"):
            raise ConfigError(f"teacher negatives come from 'fused' or 'dense', not {self.negatives!r}")
        if self.validate_on not in ("negatives", "first-stage"):
            raise ConfigError(f"teacher validation is on 'negatives' or 'first-stage', not {self.validate_on!r}")


#: The first-stage runs a reranker can read: the dense first stage (English questions), or BM25 with
#: the question in the paragraphs' language (BM25-QT, the card's Pyserini pipeline shape).
RERANKED_RUNS = ("dense", "bm25-qt")


@dataclass(frozen=True)
class XQuADLayout(FolderLayout):
    """Every path of the XQuAD pipeline under ``root``, with indexes under ``index_root``.

    ``first_stage`` is the tag of the dense first stage that the teacher reranks and the students
    replace (``e5-small`` unless a run was made with another ``--model-tag``).
    """

    index_root: Path = Path("indexes")
    first_stage: str = DEFAULT_FIRST_STAGE

    def __post_init__(self) -> None:  # accept str and os.PathLike, keep Path
        super().__post_init__()
        object.__setattr__(self, "index_root", Path(self.index_root))

    @property
    def collection(self) -> XQuADCollection:
        return XQuADCollection(self.root / "collection")

    # first-stage runs ---------------------------------------------------------------------------

    def bm25_run(self, setting: str, query_lang: str, doc_lang: str) -> Path:
        """BM25 run of ``setting`` (``cross`` or ``mono``) for queries in ``query_lang``."""
        return self.root / f"run.xquad.bm25.{setting}.{query_lang}-{doc_lang}.txt"

    def dense_run(self, tag: str, doc_lang: str, query_lang: str = QUERY_LANGUAGE) -> Path:
        """The cross run of the dense model ``tag``, e.g. the students' ``e5-small-student-ot``."""
        return self.root / f"run.xquad.{tag}.cross.{query_lang}-{doc_lang}.txt"

    def rrf_run(self, tag: str, doc_lang: str, query_lang: str = QUERY_LANGUAGE) -> Path:
        return self.root / f"run.xquad.bm25+{tag}.rrf.cross.{query_lang}-{doc_lang}.txt"

    def first_stage_run(self, doc_lang: str) -> Path:
        """The dense first stage that the teacher reranks (English questions)."""
        return self.dense_run(self.first_stage, doc_lang)

    def reranked_run(self, kind: str, doc_lang: str) -> Path:
        """The first-stage run a reranker reads (:data:`RERANKED_RUNS`): ``dense``, the dense first stage
        (:meth:`first_stage_run`); ``bm25-qt``, BM25 over ``doc_lang``'s paragraphs with the question
        in ``doc_lang`` (XQuAD's human translations standing in for query translation: the mono run)."""
        if kind == "dense":
            return self.first_stage_run(doc_lang)
        if kind == "bm25-qt":
            return self.bm25_run("mono", doc_lang, doc_lang)
        raise ConfigError(f"reranked run {kind!r} is not one of {', '.join(RERANKED_RUNS)}")

    @property
    def negatives_run(self) -> Path:
        """The en-en BM25 + dense RRF run the teacher's hard negatives come from."""
        return self.rrf_run(self.first_stage, QUERY_LANGUAGE)

    # the cross-fitted teacher -------------------------------------------------------------------

    @property
    def english_training(self) -> EnglishTrainingFiles:
        """English questions, qrels and paragraphs, the hard-negative run and the article folds."""
        c = self.collection
        return EnglishTrainingFiles(c.topics(QUERY_LANGUAGE), c.qrels(QUERY_LANGUAGE), c.corpus(QUERY_LANGUAGE),
                                    self.negatives_run, c.folds)

    def teacher_training(self, data: "TeacherData", fold: int) -> dict[str, Path | int | None]:
        """The :class:`clir_ot.training.DataSpec` fields (without validation size) of the teacher that
        holds out ``fold``, by the recipe's data choices ``data``."""
        files: dict[str, Path | int | None] = dict(self.english_training._asdict())
        dense = self.first_stage_run(QUERY_LANGUAGE)
        if data.negatives == "dense":
            files["run"] = dense
        files.update(exclude_fold=fold, soft_run=dense if data.soft_targets else None,
                     valid_run=dense if data.validate_on == "first-stage" else None)
        return files

    def teacher(self, fold: int) -> Path:
        """The folder of the teacher trained without fold ``fold``'s articles."""
        return self.root / f"teacher.{self.first_stage}.en.fold{fold}"

    def teacher_run(self, doc_lang: str) -> Path:
        """The teachers' merged (cross-fitted) rerank of the first stage."""
        return self.dense_run(f"{self.first_stage}+teacher", doc_lang)

    def teacher_interpolated_run(self, doc_lang: str) -> Path:
        """The teachers' rerank interpolated with the first stage's scores (weights chosen per fold)."""
        return self.dense_run(f"{self.first_stage}+teacher.interpolated", doc_lang)

    def teacher_validation_run(self, fold: int, kind: str) -> Path:
        """Fold ``fold``'s teacher's validation questions, en-en: ``first-stage`` or ``teacher`` (reranked)."""
        return self.root / f"valid.{self.first_stage}.en.fold{fold}.{kind}.txt"

    def teacher_run_part(self, doc_lang: str, fold: int) -> Path:
        """Fold ``fold``'s part of :meth:`teacher_run` while it is being reranked (hidden, resumable)."""
        name = self.teacher_run(doc_lang).name.removesuffix(".txt")
        return self.root / f".{name}.fold{fold}.txt"

    # dense students -----------------------------------------------------------------------------

    def student_tag(self, method: str) -> str:
        """The model tag of the dense student of ``method`` (its run and index names)."""
        return f"{self.first_stage}-student-{method}"

    def dense_student(self, method: str, lang: str) -> Path:
        return self.root / f"dense-student.{self.first_stage}.{method}.{lang}"

    def dense_student_run(self, method: str, lang: str) -> Path:
        return self.dense_run(self.student_tag(method), lang)

    # indexes and tables -------------------------------------------------------------------------

    def lucene_index(self, lang: str) -> Path:
        return self.index_root / f"lucene.xquad.{lang}"

    def faiss_index(self, lang: str, tag: str | None = None) -> Path:
        return self.index_root / f"faiss.xquad.{lang}.{tag or self.first_stage}"

    def table(self, name: str, suffix: str = "md") -> Path:
        """``table.<name>.<suffix>`` (``md``, ``tsv`` or ``json``)."""
        return self.root / f"table.{name}.{suffix}"
