"""The low-resource probe: cross-lingual sentence retrieval on Tatoeba, zero-shot and with dense students.

For each language, :func:`clir_ot.datasets.tatoeba.probe_split` cuts its Tatoeba pairs into a
distillation half and a test half (leak-free, deterministic). On the test half every English
sentence (a query, encoded by the unchanged query encoder with its query prefix) retrieves its
translation among the language's sentences (encoded with the passage prefix, by the same encoder
zero-shot, or by a dense student distilled on the other half), by exact inner-product search;
P@1 and RR@10 per query (ties in score broken by docid). A student's gain over zero-shot is tested
per language with the paired randomization test, and the p-values of each method over all
languages are Holm-corrected.

Outputs under ``output`` (named by :class:`~clir_ot.datasets.tatoeba.ProbeLayout`): each language's
test half as a standard collection (``collection/``: topics, corpus, qrels), each system's TREC run
(``run.tatoeba.<system>.en-<lang>.txt``, the top :data:`RUN_DEPTH`; P@1 and RR@10 are computed from
these runs by pytrec_eval, as trec_eval would), ``probe.<lang>.json`` (the split's sizes and every
query's scores per system; reused by a later run that asks for no other system),
``table.tatoeba-probe.md`` / ``.json``, ``plot.tatoeba-probe.png``, and one student folder per
language and method (``students/<method>.<lang>``, reused when complete). A distilled student keeps GBs (checkpoints, the
last step's weights and ``best/``); once it is scored, ``keep_students`` (:data:`KEEP_STUDENTS`)
decides what stays: ``all``, ``best`` (the default: ``best/``, the scored model, and the record) or
``none`` (the record alone: ``training.json`` and ``log.jsonl``; 66 students of 1.6 GB each would
not fit this machine's disk). A student whose weights were dropped is distilled again if a later run
needs to score it (a language's ``probe.<lang>.json`` without that method).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clir_ot.datasets.tatoeba import SALT as SPLIT_SALT
from clir_ot.datasets.tatoeba import ZERO_SHOT, ProbeLayout, SentenceTask, probe_split, sentence_task, write_task
from clir_ot.distill.bitext import tatoeba_files, tatoeba_pairs
from clir_ot.distill.pipeline import distill_student
from clir_ot.distill.trainer import split_settings
from clir_ot.errors import ConfigError
from clir_ot.evaluation import evaluate
from clir_ot.formats import Hit, hits_from_scores, write_run
from clir_ot.io import PathLike, atomic_open, hash_model_folder
from clir_ot.languages import resolve_language
from clir_ot.models import BiEncoderModel, locate_model
from clir_ot.study.stats import holm, paired_randomization_test

logger = logging.getLogger(__name__)

__all__ = ["KEEP_STUDENTS", "PROBE_LANGUAGES", "RESOURCE_GROUPS", "RUN_DEPTH", "rank_task", "render_probe_table",
           "run_tatoeba_probe", "score_run"]

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
DEFAULT_METHODS = ("mse-sent", "ot", "ot-shuffled")
#: What a scored student keeps (see the module docstring).
KEEP_STUDENTS = ("all", "best", "none")
#: The record of a distillation, kept under every ``keep_students``.
STUDENT_RECORD = ("training.json", "log.jsonl")


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


def _student_settings(settings: Mapping[str, Any], method: str):
    objective, shuffled = method.removesuffix("-shuffled"), method.endswith("-shuffled")
    return split_settings({**settings, "method": objective, "shuffle_bitext": shuffled, "model_type": "bi-encoder"},
                          f"tatoeba probe student {method}")


def run_tatoeba_probe(
    tatoeba: PathLike,
    output: PathLike,
    languages: Sequence[str] = PROBE_LANGUAGES,
    methods: Sequence[str] = DEFAULT_METHODS,
    settings: Mapping[str, Any] | None = None,
    encoder: PathLike | None = None,
    batch_size: int = 64,
    max_length: int = 128,
    n_resamples: int = 10000,
    keep_students: str = "best",
) -> dict[str, Any]:
    """Run the probe (see the module docstring); returns the table written to ``table.tatoeba-probe.json``.

    ``encoder``: the zero-shot model, the query encoder and every student's start (default: the
    offline multilingual-e5-small). ``settings``: the students' training and distillation settings.
    ``keep_students``: what a student keeps once scored (:data:`KEEP_STUDENTS`).
    """
    if keep_students not in KEEP_STUDENTS:
        raise ConfigError(f"keep_students must be one of {', '.join(KEEP_STUDENTS)}, got {keep_students!r}")
    layout = ProbeLayout(Path(output))
    layout.root.mkdir(parents=True, exist_ok=True)
    languages = [resolve_language(lang).code for lang in languages]
    plans = {method: _student_settings(settings or {}, method) for method in methods}  # checked before any work
    for lang in languages:
        tatoeba_files(tatoeba, lang)
    model = BiEncoderModel.from_pretrained(encoder)
    source = locate_model(encoder)
    encoding = {"encoder": source.location,
                "weights": hash_model_folder(source.location) if source.local else None,
                "max_length": max_length, "batch_size": batch_size, "dtype": "fp32"}
    per_query: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    sizes: dict[str, dict[str, int]] = {}
    cost: dict[str, float] = {}
    for lang in languages:
        done = layout.record(lang)
        if done.is_file():  # a language finished by an earlier run with every system asked for is reused
            saved = json.loads(done.read_text(encoding="utf-8"))
            if {"zero-shot", *methods} <= set(saved["per_query"]):
                per_query[lang] = {k: saved["per_query"][k] for k in ("zero-shot", *methods)}
                sizes[lang] = saved["sizes"]
                logger.info("%s: reusing %s", lang, done)
                continue
        distill_half, test_half = probe_split(tatoeba_pairs(tatoeba, lang))
        task = sentence_task(lang, test_half)
        write_task(layout, task)
        sizes[lang] = {"distill_pairs": len(distill_half), "test_pairs": len(test_half),
                       "queries": len(task.queries), "documents": len(task.documents)}
        queries = model.encode_queries(list(task.queries.values()), batch_size=batch_size, max_length=max_length)
        docs = model.encode_passages(list(task.documents.values()), batch_size=batch_size, max_length=max_length)
        systems = {ZERO_SHOT: _score_system(layout, task, ZERO_SHOT, queries, docs)}
        _record_encoding(layout, lang, encoding)
        for method in methods:
            folder = layout.student(method, lang)
            started = time.time()
            weights = _student_weights(folder)
            if weights is None:
                if (folder / "training.json").is_file():
                    logger.info("%s: its weights were dropped after an earlier scoring; distilling it again", folder)
                    shutil.rmtree(folder)
                training, distill = plans[method]
                distill_student(encoder, folder, distill_half, training, distill,
                                bitext_files=list(tatoeba_files(tatoeba, lang)), resume=folder.exists())
                weights = _student_weights(folder)
            student = BiEncoderModel.from_pretrained(weights)
            student_docs = student.encode_passages(list(task.documents.values()), batch_size=batch_size,
                                                   max_length=max_length)
            systems[method] = _score_system(layout, task, method, queries, student_docs)
            cost[f"{lang}/{method}"] = round(time.time() - started, 1)
            del student
            _drop_student_files(folder, keep_students)
        per_query[lang] = systems
        with atomic_open(layout.record(lang)) as handle:
            json.dump({"language": lang, "sizes": sizes[lang], "per_query": systems}, handle, indent=1)
        logger.info("%s: zero-shot P@1 %.3f%s", lang, _mean(systems["zero-shot"], "P@1"),
                    "".join(f", {m} {_mean(systems[m], 'P@1'):.3f}" for m in methods))
    table = _table(per_query, sizes, methods, n_resamples)
    table["cost_s"] = cost
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


def _score_system(layout: ProbeLayout, task: SentenceTask, system: str, query_vectors: np.ndarray,
                  doc_vectors: np.ndarray) -> dict[str, dict[str, float]]:
    """Rank ``task`` for ``system``, write its run, and score every query."""
    run = rank_task(task, query_vectors, doc_vectors)
    write_run(layout.run(system, task.lang), run, tag=f"tatoeba.{system}.en-{task.lang}")
    return score_run(task, run)


def _student_weights(folder: Path) -> Path | None:
    """The folder of a finished student's scored model (``best/``, else the last step's), or ``None``
    when it is not finished or its weights were dropped."""
    if not (folder / "training.json").is_file():
        return None
    for candidate in (folder / "best", folder):
        if (candidate / "config.json").is_file() and any(candidate.glob("*.safetensors")):
            return candidate
    return None


def _drop_student_files(folder: Path, keep: str) -> None:
    """Delete what a scored student no longer needs under ``keep`` (:data:`KEEP_STUDENTS`)."""
    if keep == "all":
        return
    for entry in sorted(folder.iterdir()):
        if entry.name in STUDENT_RECORD or (keep == "best" and entry.name == "best" and entry.is_dir()):
            continue
        if keep == "best" and not (folder / "best").is_dir() and entry.is_file():
            continue  # no best/: the last step's weights at the top are the scored model
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _mean(scores: Mapping[str, Mapping[str, float]], measure: str) -> float:
    return float(np.mean([s[measure] for s in scores.values()]))


def _table(per_query, sizes, methods, n_resamples) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    raw: dict[tuple[str, str, str], float] = {}
    for lang, systems in per_query.items():
        qids = sorted(systems["zero-shot"])
        row: dict[str, Any] = {"sizes": sizes[lang]}
        for system, scores in systems.items():
            row[system] = {m: _mean(scores, m) for m in MEASURES}
        for method in methods:
            for m in MEASURES:
                base = [systems["zero-shot"][q][m] for q in qids]
                treated = [systems[method][q][m] for q in qids]
                raw[(method, m, lang)] = paired_randomization_test(treated, base, n_resamples=n_resamples)
        rows[lang] = row
    for method in methods:
        for m in MEASURES:
            adjusted = holm({lang: raw[(method, m, lang)] for lang in rows})
            for lang in rows:
                rows[lang][method][f"p {m}"] = raw[(method, m, lang)]
                rows[lang][method][f"holm {m}"] = adjusted[lang]
    groups = {name: [l for l in langs if l in rows] for name, langs in RESOURCE_GROUPS.items()}
    other = [l for l in rows if not any(l in g for g in groups.values())]
    if other:
        groups["other"] = other
    return {"measures": list(MEASURES), "methods": list(methods), "groups": groups, "rows": rows,
            "test": "paired randomization test against zero-shot, Holm-corrected per method and measure over languages"}


def render_probe_table(table: Mapping[str, Any]) -> str:
    """The probe table as Markdown: one row per language, grouped by resource level."""
    methods = table["methods"]
    header = ["lang", "test pairs", "zero-shot P@1", "zero-shot RR@10"]
    header += [f"{m} P@1 (Holm p)" for m in methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for group, langs in table["groups"].items():
        if not langs:
            continue
        lines.append(f"| **{group}** |" + " |" * (len(header) - 1))
        for lang in langs:
            row = table["rows"][lang]
            cells = [lang, str(row["sizes"]["test_pairs"]), f"{row['zero-shot']['P@1']:.3f}",
                     f"{row['zero-shot']['RR@10']:.3f}"]
            for m in methods:
                delta = row[m]["P@1"] - row["zero-shot"]["P@1"]
                cells.append(f"{row[m]['P@1']:.3f} ({delta:+.3f}, {row[m]['holm P@1']:.3g})")
            lines.append("| " + " | ".join(cells) + " |")
    for group, langs in table["groups"].items():
        if langs:
            means = [f"{np.mean([table['rows'][l]['zero-shot']['P@1'] for l in langs]):.3f}"]
            means += [f"{np.mean([table['rows'][l][m]['P@1'] for l in langs]):.3f}" for m in methods]
            lines.append(f"\nMean P@1, {group}: zero-shot {means[0]}"
                         + "".join(f", {m} {v}" for m, v in zip(methods, means[1:])))
    return "\n".join(lines) + "\n"


def _plot(table: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = [l for group in table["groups"].values() for l in group]
    systems = ["zero-shot", *table["methods"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(langs) * max(1, len(systems) / 2)), 3.6))
    width = 0.8 / len(systems)
    for k, system in enumerate(systems):
        ax.bar(np.arange(len(langs)) + k * width, [table["rows"][l][system]["P@1"] for l in langs], width, label=system)
    boundary = len(next(iter(table["groups"].values())))
    if 0 < boundary < len(langs):
        ax.axvline(boundary - 0.5 + 0.4 - width / 2, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(np.arange(len(langs)) + 0.4 - width / 2, langs)
    ax.set_ylabel("P@1 (en -> xx)")
    ax.set_ylim(0, 1)
    ax.set_title("Tatoeba sentence retrieval, test halves (left: XQuAD languages; right: low-resource)")
    ax.legend(fontsize=8, ncol=len(systems))
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
