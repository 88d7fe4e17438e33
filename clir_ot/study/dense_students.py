"""Dense students as a study: ``clir-ot xquad-dense-students`` is a thin alias over the study of
``tools/studies/xquad-dense-students.yaml``.

For each language D and method M (``ot``, ``mse-sent``, ...) a bi-encoder student initialised from the
first stage's encoder (multilingual-e5-small unless ``encoder`` says otherwise) learns to encode D's
side of Tatoeba the way the frozen encoder encodes the English side; it re-encodes D's paragraphs and
the unchanged English query encoder searches them. The student never sees XQuAD, so no cross-fitting
is needed; ``none`` is the dense first stage of ``clir-ot baseline``. All of it -- keys, reuse,
resume, paired tests with Holm's correction, ``report.md`` -- is the study's
(:mod:`clir_ot.study.runner`, a backbone of ``kind: bi-encoder``); this module only builds the study
config from the command's arguments and writes the command's own tables,
``table.dense-students.md`` and ``.json``, from the study's results.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from clir_ot.datasets.layout import DEFAULT_FIRST_STAGE, XQuADLayout
from clir_ot.formats import atomic_open
from clir_ot.study.config import BASELINE_METHOD, BI_ENCODER, load_study_config, study_config_from_data
from clir_ot.study.evaluate import (
    ComparisonCell,
    collect_scores,
    compare_methods,
    comparison_tables,
    training_manifest,
)
from clir_ot.study.plan import StudyPlan
from clir_ot.study.runner import plan_study, run_study
from clir_ot.training.trainer import TrainingConfig

logger = logging.getLogger(__name__)

__all__ = ["DENSE_MEASURES", "DenseStudentsResult", "dense_students_config", "run_xquad_dense_students"]

DENSE_MEASURES = ("Success@1", "P@5", "Success@5", "RR@10")
STUDY_NAME = "xquad-dense-students"
STUDY_FOLDER = "dense-students"
TABLE = "dense-students"


@dataclass(frozen=True)
class StudentCost:
    """Recorded wall seconds of one language and method: the student's distillation and its search."""

    distill_s: float | None
    encode_search_s: float | None


@dataclass(frozen=True)
class DenseStudentsResult:
    """The comparison cells (every method beside ``none``), the costs per ``<lang>/<method>`` and the plan."""

    cells: tuple[ComparisonCell, ...]
    cost: dict[str, StudentCost]
    plan: StudyPlan

    def cell(self, language: str, method: str, metric: str) -> ComparisonCell:
        return next(c for c in self.cells if (c.language, c.method, c.metric) == (language, method, metric))


def dense_students_config(
    output: str | Path,
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
    """The study config (as YAML data) of one ``clir-ot xquad-dense-students`` call.

    ``settings`` are the training and distillation settings of every student (a ``seed`` among them
    becomes the study's seed). Paths are made absolute, so the config reads the same from anywhere.
    """
    distill = dict(settings)
    seed = distill.pop("seed", TrainingConfig().seed)
    # students of earlier runs of this command (dense-student.* in the output folder) are reused
    # when they were trained with these settings and this encoder
    backbone: dict[str, Any] = {"name": DEFAULT_FIRST_STAGE, "kind": BI_ENCODER, "students": str(Path(output).resolve())}
    if encoder is not None:
        backbone["base"] = str(Path(encoder).resolve()) if Path(encoder).exists() else str(encoder)
    return {
        "name": STUDY_NAME,
        "description": "bi-encoder students distilled on bitext, searched by the original query encoder",
        "baseline": str(Path(output).resolve()),
        "first_stage": DEFAULT_FIRST_STAGE,
        "languages": list(languages),
        "reference_language": None,
        "low_resource": list(languages),
        "bitext": {"tatoeba": str(Path(tatoeba).resolve())},
        "seeds": [seed],
        "backbones": [backbone],
        "methods": [BASELINE_METHOD, *[m for m in methods if m != BASELINE_METHOD]],
        "distill": distill,
        "search": {"hits": hits, "batch_size": batch_size, "max_length": max_length, "dtype": dtype},
        "measures": list(DENSE_MEASURES),
        "pool": False,
        "n_resamples": n_resamples,
    }


def _costs(plan: StudyPlan) -> dict[str, StudentCost]:
    cost: dict[str, StudentCost] = {}
    for step in plan.order():
        if step.kind != "search" or step.artifact is None or not step.done:
            continue
        student = plan.steps[step.sources[0]]
        if student.artifact is not None:
            wall = student.artifact.record().get("wall_s") if student.done else None
        else:  # reused from an earlier run: its training.json has the time
            wall = ((training_manifest(student.model) or {}).get("time") or {}).get("wall_s")
        search = step.artifact.record().get("wall_s")
        cost[f"{step.cell.language}/{step.cell.method.name}"] = StudentCost(
            None if wall is None else round(float(wall), 1), None if search is None else round(float(search), 1))
    return cost


def _table_json(cells: Sequence[ComparisonCell]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """{language: {method: {metric: {mean, diff, p_holm}}}} (``none``: the mean only)."""
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for c in cells:
        entry = {"mean": c.mean} if c.diff is None else {"mean": c.mean, "diff": c.diff, "p_holm": c.p_holm}
        table.setdefault(c.language, {}).setdefault(c.method, {})[c.metric] = entry
    return table


def write_dense_students_tables(plan: StudyPlan, output: str | Path, methods: Sequence[str]) -> DenseStudentsResult:
    """``table.dense-students.md`` / ``.json`` in ``output`` from the study's finished runs."""
    config = plan.config
    scores, _ = collect_scores(plan)
    cells = compare_methods(scores, languages=config.languages, measures=config.measures, methods=methods,
                            n_resamples=config.n_resamples)
    cost = _costs(plan)
    lines = ["Dense students (bi-encoder distilled on Tatoeba; English queries by the original encoder), cross en->D. "
             "Cell: mean (difference to none, paired randomization p Holm-adjusted across languages); ** p < 0.05.", ""]
    lines += comparison_tables(cells, languages=config.languages, heading="### {metric}")
    lines += ["Cost (the recorded wall time of each student's distillation and of its encoding + search; "
              f"the study's steps are under {plan.root}):", "",
              "| step | distillation s | encoding + search s |", "|---|---|---|"]
    lines += [f"| {k} | {v.distill_s} | {v.encode_search_s} |" for k, v in cost.items()]
    layout = XQuADLayout(output)
    with atomic_open(layout.table(TABLE, "md")) as handle:
        handle.write("\n".join(lines) + "\n")
    with atomic_open(layout.table(TABLE, "json")) as handle:
        json.dump({"table": _table_json(cells), "cost": {k: vars(v) for k, v in cost.items()}}, handle, indent=1)
    logger.info("\n%s", "\n".join(lines))
    return DenseStudentsResult(tuple(cells), cost, plan)


def run_xquad_dense_students(output: str | Path, tatoeba: str | Path, settings: Mapping[str, Any], *,
                             methods: Sequence[str] = ("mse-sent", "ot", "ot-shuffled"), jobs: int = 1,
                             **options: Any) -> DenseStudentsResult:
    """Write the study config of these arguments to ``<output>/dense-students/study.yaml``, run that
    study (every input and every method's settings are checked before any training starts), and write
    ``table.dense-students.md`` / ``.json`` in ``output``. ``options``: those of
    :func:`dense_students_config`."""
    data = dense_students_config(output, tatoeba, settings, methods=methods, **options)
    root = Path(output) / STUDY_FOLDER
    path = root / "study.yaml"
    plan_study(study_config_from_data(data, path), root)  # every problem named before anything is written
    root.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as handle:  # the study's workers read the config from its file
        yaml.safe_dump(data, handle, sort_keys=False)
    plan = run_study(load_study_config(path), root, jobs=jobs)
    return write_dense_students_tables(plan, output, [m for m in data["methods"] if m != BASELINE_METHOD])
