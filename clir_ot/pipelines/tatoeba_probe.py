"""The low-resource probe's collection and its zero-shot runs: cross-lingual sentence retrieval on Tatoeba.

For each language, :func:`clir_ot.datasets.tatoeba.probe_split` cuts its Tatoeba pairs into a
distillation half and a test half (leak-free, deterministic). On the test half every English
sentence (a query, encoded with the query prefix) retrieves its translation among the language's
sentences (encoded with the passage prefix) by exact inner-product search; P@1 and RR@10 per query
(ties in score broken by docid), zero-shot.

This is the probe's *baseline*: the students are distilled, searched and tested against it by the
study runner (``dataset: tatoeba-probe``, ``tools/studies/tatoeba-probe.yaml``: paired tests, Holm,
seeds, controls, resume, its report), the one experiment system of the toolkit.

Outputs under ``output`` (named by :class:`~clir_ot.datasets.tatoeba.ProbeLayout`): each language's
test half as a standard collection (``collection/``: topics, corpus, qrels, and a ``manifest.json``
recording how the zero-shot runs were encoded, which the study checks its search settings against),
the zero-shot TREC run per language (``run.tatoeba.zero-shot.en-<lang>.txt``, the top
:data:`RUN_DEPTH`; P@1 and RR@10 come from these runs by pytrec_eval, as trec_eval would),
``probe.<lang>.json`` (the split's sizes and every query's scores; a language with one is reused),
``table.tatoeba-probe.md`` / ``.json`` and ``plot.tatoeba-probe.png``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clir_ot.datasets.tatoeba import SALT as SPLIT_SALT
from clir_ot.datasets.tatoeba import ZERO_SHOT, ProbeLayout, SentenceTask, probe_split, sentence_task, write_task
from clir_ot.distill.bitext import tatoeba_files, tatoeba_pairs
from clir_ot.evaluation import evaluate
from clir_ot.formats import Hit, hits_from_scores, write_run
from clir_ot.io import PathLike, atomic_open, hash_model_folder
from clir_ot.languages import resolve_language
from clir_ot.models import BiEncoderModel, locate_model

logger = logging.getLogger(__name__)

__all__ = ["PROBE_LANGUAGES", "RESOURCE_GROUPS", "RUN_DEPTH", "rank_task", "render_probe_table", "run_tatoeba_probe",
           "score_run"]

#: The 22 languages of the shared Tatoeba copy, by resource level: XQuAD's (well resourced in the
#: backbone's pretraining) and the languages that have bitext only.
RESOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "XQuAD languages": ("ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh"),
    "low-resource (bitext only)": ("af", "am", "bn", "jv", "kk", "km", "mr", "sw", "ta", "te", "fil", "ur"),
}
PROBE_LANGUAGES = tuple(lang for group in RESOURCE_GROUPS.values() for lang in group)
MEASURES = ("P@1", "RR@10")
#: Hits per query in a probe run (P@1 and RR@10 read the first 10).
RUN_DEPTH = 100


def rank_task(task: SentenceTask, query_vectors: np.ndarray, doc_vectors: np.ndarray,
              depth: int = RUN_DEPTH) -> dict[str, list[Hit]]:
    """Each query's top ``depth`` documents by exact inner product, as run hits (ties in score broken
    by docid, and written strictly decreasing so trec_eval keeps that order).

    Shapes: ``query_vectors`` (n_queries, dim) and ``doc_vectors`` (n_docs, dim), in the order of
    ``task.queries`` / ``task.documents``.
    """
    docids = list(task.documents)
    scores = query_vectors @ doc_vectors.T
    keep = min(depth, len(docids))
    order = np.argsort(-scores, axis=1, kind="stable")
    run = {}
    for row, qid in enumerate(task.queries):
        # every document whose score reaches the depth-th best, so a tie at the cut is broken by docid too
        cut = scores[row, order[row, keep - 1]]
        chosen = {docids[j]: float(scores[row, j]) for j in np.flatnonzero(scores[row] >= cut)}
        run[qid] = hits_from_scores(qid, chosen)[:keep]
    return run


def score_run(task: SentenceTask, run: Mapping[str, Sequence[Hit]]) -> dict[str, dict[str, float]]:
    """P@1 and RR@10 of every query of ``task`` in ``run``, by pytrec_eval (trec_eval's ``-c``)."""
    qrels = {qid: dict.fromkeys(docs, 1) for qid, docs in task.qrels.items()}
    scores = {qid: {h.docid: h.score for h in hits} for qid, hits in run.items()}
    return evaluate(qrels, scores, MEASURES, name=f"tatoeba probe {task.lang}").per_query


def run_tatoeba_probe(
    tatoeba: PathLike,
    output: PathLike,
    languages: Sequence[str] = PROBE_LANGUAGES,
    encoder: PathLike | None = None,
    batch_size: int = 64,
    max_length: int = 128,
) -> dict[str, Any]:
    """Write the probe folder (see the module docstring); returns the table written to
    ``table.tatoeba-probe.json``.

    ``encoder``: the zero-shot model (default: the offline multilingual-e5-small); a study on this
    folder must use the same weights as its backbone and search with the same ``max_length``.
    """
    languages = [resolve_language(lang).code for lang in languages]
    for lang in languages:  # every language's files are found before any work
        tatoeba_files(tatoeba, lang)
    layout = ProbeLayout(Path(output))
    layout.root.mkdir(parents=True, exist_ok=True)
    model = BiEncoderModel.from_pretrained(encoder)
    source = locate_model(encoder)
    encoding = {"encoder": source.location,
                "weights": hash_model_folder(source.location) if source.local else None,
                "max_length": max_length, "batch_size": batch_size, "dtype": "fp32"}
    manifest = layout.collection.manifest
    recorded = json.loads(manifest.read_text(encoding="utf-8")).get("languages", {}) if manifest.is_file() else {}
    rows: dict[str, dict[str, Any]] = {}
    for lang in languages:
        done = layout.record(lang)
        if done.is_file() and layout.run(ZERO_SHOT, lang).is_file():  # finished by an earlier run
            if recorded.get(lang) == encoding:
                saved = json.loads(done.read_text(encoding="utf-8"))
                rows[lang] = _row(saved["sizes"], saved["per_query"][ZERO_SHOT])
                logger.info("%s: reusing %s", lang, done)
                continue
            logger.info("%s: its zero-shot run was encoded otherwise (%s); encoding it again", lang, recorded.get(lang))
        distill_half, test_half = probe_split(tatoeba_pairs(tatoeba, lang))
        task = sentence_task(lang, test_half)
        write_task(layout, task)
        sizes = {"distill_pairs": len(distill_half), "test_pairs": len(test_half),
                 "queries": len(task.queries), "documents": len(task.documents)}
        queries = model.encode_queries(list(task.queries.values()), batch_size=batch_size, max_length=max_length)
        docs = model.encode_passages(list(task.documents.values()), batch_size=batch_size, max_length=max_length)
        run = rank_task(task, queries, docs)
        write_run(layout.run(ZERO_SHOT, lang), run, tag=f"tatoeba.{ZERO_SHOT}.en-{lang}")
        per_query = score_run(task, run)
        _record_encoding(layout, lang, encoding)
        with atomic_open(done) as handle:
            json.dump({"language": lang, "sizes": sizes, "per_query": {ZERO_SHOT: per_query}}, handle, indent=1)
        rows[lang] = _row(sizes, per_query)
        logger.info("%s: zero-shot P@1 %.3f", lang, rows[lang][ZERO_SHOT]["P@1"])
    table = {"measures": list(MEASURES), "groups": _groups(rows), "rows": rows, "encoding": encoding}
    with atomic_open(layout.table("json")) as handle:
        json.dump(table, handle, indent=2)
    with atomic_open(layout.table("md")) as handle:
        handle.write(render_probe_table(table))
    _plot(table, layout.plot)
    return table


def _record_encoding(layout: ProbeLayout, lang: str, encoding: Mapping[str, Any]) -> None:
    """Add ``lang`` to the collection's manifest: the encoder and settings of its zero-shot run. A study
    on this folder (``dataset: tatoeba-probe``) searches its students the same way, and refuses a
    folder whose zero-shot runs were encoded otherwise."""
    path = layout.collection.manifest
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    languages = manifest.get("languages", {})
    languages[lang] = dict(encoding)
    with atomic_open(path) as handle:
        json.dump({"dataset": "tatoeba-probe", "split": {"salt": SPLIT_SALT, "test_fraction": 0.5},
                   "languages": dict(sorted(languages.items()))}, handle, indent=1)


def _row(sizes: Mapping[str, int], per_query: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    return {"sizes": dict(sizes), ZERO_SHOT: {m: float(np.mean([s[m] for s in per_query.values()])) for m in MEASURES}}


def _groups(rows: Mapping[str, Any]) -> dict[str, list[str]]:
    """The languages of ``rows`` by resource level (:data:`RESOURCE_GROUPS`; any other under ``other``)."""
    groups = {name: [lang for lang in langs if lang in rows] for name, langs in RESOURCE_GROUPS.items()}
    other = [lang for lang in rows if not any(lang in g for g in groups.values())]
    if other:
        groups["other"] = other
    return groups


def render_probe_table(table: Mapping[str, Any]) -> str:
    """The zero-shot table as Markdown: one row per language, grouped by resource level, and each
    group's mean P@1."""
    lines = ["| lang | test pairs | zero-shot P@1 | zero-shot RR@10 |", "|---|---:|---:|---:|"]
    for group, langs in table["groups"].items():
        if not langs:
            continue
        lines.append(f"| **{group}** | | | |")
        for lang in langs:
            row = table["rows"][lang]
            lines.append(f"| {lang} | {row['sizes']['test_pairs']} | {row[ZERO_SHOT]['P@1']:.3f} "
                         f"| {row[ZERO_SHOT]['RR@10']:.3f} |")
    for group, langs in table["groups"].items():
        if langs:
            mean = np.mean([table["rows"][lang][ZERO_SHOT]["P@1"] for lang in langs])
            lines.append(f"\nMean P@1, {group}: zero-shot {mean:.3f}")
    return "\n".join(lines) + "\n"


def _plot(table: Mapping[str, Any], path: Path) -> None:
    import matplotlib  # optional at import time: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = [lang for group in table["groups"].values() for lang in group]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(langs)), 3.6))
    ax.bar(np.arange(len(langs)), [table["rows"][lang][ZERO_SHOT]["P@1"] for lang in langs], 0.7, label=ZERO_SHOT)
    boundary = len(next(iter(table["groups"].values())))
    if 0 < boundary < len(langs):
        ax.axvline(boundary - 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(np.arange(len(langs)), langs)
    ax.set_ylabel("P@1 (en -> xx)")
    ax.set_ylim(0, 1)
    ax.set_title("Tatoeba sentence retrieval, test halves, zero-shot (left: XQuAD languages; right: low-resource)")
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
