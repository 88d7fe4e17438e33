"""Dense students on XQuAD: distil the first stage's bi-encoder for one language from bitext, encode
that language's paragraphs with the student, search them with the *original* query encoder.

For each language D and method M (``ot``, ``mse-sent``, ...): the frozen multilingual-e5-small
encodes the English side of Tatoeba, a student initialised from it learns to encode the D side the
same way (:func:`clir_ot.distill.pipeline.distill_student`, ``model_type="bi-encoder"``); the
student re-encodes D's paragraphs into a new faiss index and the unchanged English query encoder
searches it. The student never sees XQuAD, so no cross-fitting is needed; it replaces the encoder
for D's passages only (English passages keep the original encoder). ``none`` is the dense first
stage of ``clir-ot baseline``.

Every step is reused when its output exists (training resumes from its checkpoints): a finished
student only when its ``training.json`` records the settings and encoder asked for now (otherwise
:class:`~clir_ot.errors.ConfigError` names the differences), a student's run only when its
``<run>.student`` stamp names that student's manifest (otherwise the paragraphs are searched again).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clir_ot.errors import ConfigError
from clir_ot.formats import atomic_open, sha256_of

logger = logging.getLogger(__name__)

__all__ = ["run_xquad_dense_students", "check_student_settings"]

MEASURES = ("Success@1", "P@5", "Success@5", "RR@10")


def check_student_settings(folder: Path, training, distill, encoder_location: str) -> None:
    """Refuse to reuse the finished student in ``folder`` when it was trained with other settings or
    from another encoder than asked for now (its ``training.json`` says what it was trained with)."""
    from clir_ot.training.trainer import RESUMABLE_CHANGES, describe_changes

    manifest = json.loads((folder / "training.json").read_text())
    was = {**manifest.get("config", {}), **{f"distill.{k}": v for k, v in manifest.get("distillation", {}).items()},
           "encoder": str(Path((manifest.get("teacher") or {}).get("location", "?")).resolve())}
    now = {**training.to_dict(), **{f"distill.{k}": v for k, v in distill.to_dict().items()},
           "encoder": str(Path(encoder_location).resolve())}
    diffs = describe_changes(was, now, ignore=RESUMABLE_CHANGES)
    if diffs:
        raise ConfigError(f"{folder} holds a student trained with other settings ({diffs}); remove that folder to "
                          "train it again with these settings, or write to another --output")


def run_xquad_dense_students(
    output: str | Path,
    index_root: str | Path,
    tatoeba: str | Path,
    settings: Mapping[str, Any],
    languages: Sequence[str] = ("th", "hi", "el"),
    methods: Sequence[str] = ("mse-sent", "ot", "ot-shuffled"),
    hits: int = 100,
    batch_size: int = 32,
    max_length: int = 256,
    dtype: str = "auto",
    n_resamples: int = 10000,
    encoder: str | Path | None = None,
) -> dict[str, Any]:
    """Distil, encode, search and evaluate; writes ``table.dense-students.md`` / ``.json`` in ``output``.

    ``encoder`` is the bi-encoder of the baseline's dense run (default: the offline multilingual-e5-small);
    it stays the query encoder and initialises every student. Every method's settings are checked, and
    every input found, before any training starts.
    """
    from clir_ot.distill import tatoeba_files, tatoeba_pairs
    from clir_ot.distill.pipeline import distill_student
    from clir_ot.distill.trainer import split_settings
    from clir_ot.evaluation import evaluate, parse_measure
    from clir_ot.formats import load_run, read_qrels, read_topics
    from clir_ot.models import BiEncoderModel
    from clir_ot.models.loading import resolve_precision
    from clir_ot.retrieval.dense import DenseSearcher, dense_search_to_run, encode_corpus
    from clir_ot.study.stats import holm, paired_randomization_test

    output, index_root = Path(output), Path(index_root)
    collection = output / "collection"
    plans = {}
    for method in methods:
        objective, shuffled = method.removesuffix("-shuffled"), method.endswith("-shuffled")
        plans[method] = split_settings({**settings, "method": objective, "shuffle_bitext": shuffled,
                                        "model_type": "bi-encoder"}, f"dense student {method}")
    for lang in languages:
        tatoeba_files(tatoeba, lang)
        for needed in (collection / f"qrels.xquad.cross.{lang}.txt", output / f"run.xquad.e5-small.cross.en-{lang}.txt",
                       collection / "corpus" / lang):
            if not needed.exists():
                raise ConfigError(f"{needed} is missing: run `clir-ot baseline --output {output}` first")
    topics = read_topics(collection / "topics.xquad.en.tsv")
    query_model = BiEncoderModel.from_pretrained(encoder)
    precision = resolve_precision(dtype, query_model.device)
    measures = [parse_measure(m) for m in MEASURES]
    per_query: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    cost: dict[str, dict[str, float]] = {}
    for lang in languages:
        qrels = read_qrels(collection / f"qrels.xquad.cross.{lang}.txt")
        first = output / f"run.xquad.e5-small.cross.en-{lang}.txt"
        per_query[(lang, "none")] = evaluate(qrels, load_run(first), measures, name=first.name).per_query
        for method in methods:
            training, distill = plans[method]
            folder = output / f"dense-student.e5-small.{method}.{lang}"
            run_path = output / f"run.xquad.e5-small-student-{method}.cross.en-{lang}.txt"
            if (folder / "training.json").is_file():
                check_student_settings(folder, training, distill, query_model.name_or_path)
            else:
                resume = folder.exists()  # also restarts a run killed before its first checkpoint
                distill_student(encoder, folder, tatoeba_pairs(tatoeba, lang), training, distill,
                                bitext_files=list(tatoeba_files(tatoeba, lang)), resume=resume)
            manifest = folder / "training.json"
            trained = json.loads(manifest.read_text())["time"]["wall_s"]
            started = time.time()
            student_stamp, student_digest = Path(str(run_path) + ".student"), sha256_of(manifest)
            if not run_path.is_file() or not student_stamp.is_file() or student_stamp.read_text().strip() != student_digest:
                # a run searched with another student (or one of unknown origin) is searched again
                student = BiEncoderModel.from_pretrained(folder / "best" if (folder / "best").is_dir() else folder)
                index_dir = index_root / f"faiss.xquad.{lang}.e5-small-student-{method}"
                encode_corpus(collection / "corpus" / lang, index_dir, student, batch_size=batch_size,
                              max_length=max_length, dtype=precision)
                dense_search_to_run(DenseSearcher(index_dir, query_model), topics, run_path, k=hits,
                                    batch_size=batch_size, max_length=max_length, dtype=precision,
                                    tag=f"e5-small-student-{method}.en-{lang}")
                with atomic_open(student_stamp) as handle:
                    handle.write(student_digest + "\n")
            cost[f"{lang}/{method}"] = {"distill_s": round(trained, 1), "encode_search_s": round(time.time() - started, 1)}
            per_query[(lang, method)] = evaluate(qrels, load_run(run_path), measures, name=run_path.name).per_query

    table: dict[str, dict[str, dict[str, Any]]] = {}
    for method in methods:
        for m in MEASURES:
            raw = {}
            for lang in languages:
                base, treated = per_query[(lang, "none")], per_query[(lang, method)]
                qids = sorted(set(base) & set(treated))
                a = np.array([treated[q][m] for q in qids]); b = np.array([base[q][m] for q in qids])
                raw[lang] = (float(a.mean()), float((a - b).mean()), paired_randomization_test(a, b, n_resamples=n_resamples))
            adjusted = holm({l: p for l, (_, _, p) in raw.items()})
            for lang, (mean, diff, p) in raw.items():
                table.setdefault(lang, {}).setdefault(method, {})[m] = {"mean": mean, "diff": diff, "p_holm": adjusted[lang]}
    for lang in languages:
        base = per_query[(lang, "none")]
        table[lang]["none"] = {m: {"mean": float(np.mean([v[m] for v in base.values()]))} for m in MEASURES}

    lines = ["Dense students (bi-encoder distilled on Tatoeba; English queries by the original encoder), cross en->D. "
             "Cell: mean (difference to none, paired randomization p Holm-adjusted across languages); ** p < 0.05.", ""]
    for m in MEASURES:
        lines += [f"### {m}", "", "| language | none | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
        for lang in languages:
            cells = [f"{table[lang]['none'][m]['mean']:.4f}"]
            for method in methods:
                c = table[lang][method][m]
                mark = "**" if c["p_holm"] < 0.05 else ""
                cells.append(f"{mark}{c['mean']:.4f} ({c['diff']:+.4f}, p={c['p_holm']:.3f}){mark}")
            lines.append(f"| {lang} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Cost (distillation: the student's recorded training wall time; encoding + search: this run, "
              "0 when the run file was reused):", "",
              "| step | distillation s | encoding + search s |", "|---|---|---|"]
    lines += [f"| {k} | {v['distill_s']} | {v['encode_search_s']} |" for k, v in cost.items()]

    with atomic_open(output / "table.dense-students.md") as handle:
        handle.write("\n".join(lines) + "\n")
    with atomic_open(output / "table.dense-students.json") as handle:
        json.dump({"table": table, "cost": cost}, handle, indent=1)
    logger.info("\n%s", "\n".join(lines))
    return {"table": table, "cost": cost}
