"""Run a study: plan its steps as keyed artifacts, build what is missing, evaluate, report.

Steps (each an artifact of :mod:`clir_ot.study.artifacts`, keyed by its inputs):

``backbone``  a backbone cut to its first ``layers`` layers (:func:`clir_ot.models.derive.keep_layers`);
``teacher``   the English cross-encoder of one backbone and article fold (cross-fitted), trained by
              :func:`clir_ot.training.train_cross_encoder` -- or reused from a ``clir-ot xquad-teacher``
              folder (``teachers:``), in which case its weights' hash is its key;
``student``   one distilled student per backbone x method x language x fold x seed
              (:func:`clir_ot.distill.pipeline.distill_student`), from that fold's teacher; on a
              ``bi-encoder`` backbone one per backbone x method x language x seed, from the encoder;
``rerank``    the first stage's top ``depth`` reranked per backbone x method x language x seed, each
              fold's questions by its own fold's model, merged into one run
              (:func:`clir_ot.rerank.rerank_cross_fitted`);
``search``    on a ``bi-encoder`` backbone: the language's paragraphs encoded by the student and searched
              with the unchanged query encoder (``none`` is the baseline's dense run itself).

Evaluation (seconds) is redone on every run from the finished runs: ``results.csv`` (per query),
``report.md`` and plots (:mod:`clir_ot.study.report`). A killed study restarts where it stopped:
finished artifacts are reused, an unfinished training resumes from its checkpoints, an unfinished
reranking from its journal. Every input path comes from :class:`clir_ot.datasets.XQuADLayout`.
Steps run here, in ``--jobs N`` processes or as submitit (Slurm) jobs (:mod:`clir_ot.study.schedule`),
each under its artifact's lock (:mod:`clir_ot.study.locks`), so studies sharing a folder share the work.

A student on the in-domain query bitext (``bitext: {xquad: ...}``) reads the questions of its fold's
training side only (its ``cell.fold`` is the test fold), leakage-checked before training; the
no-bitext control (``controls: [no-bitext]``) trains the rank term alone for the same steps.
``--dry-run`` states the cost up front: the steps to build per kind and an *estimated* time from a
per-step cost model (:data:`DEFAULT_COSTS`, replaced by what finished artifacts measured).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from clir_ot.datasets.layout import TeacherData, XQuADLayout
from clir_ot.datasets.tatoeba import SALT as PROBE_SPLIT_SALT
from clir_ot.datasets.tatoeba import ProbeLayout, check_probe_leakage, probe_half
from clir_ot.datasets.xquad import read_folds
from clir_ot.distill import check_bitext_leakage, read_bitext, tatoeba_files, tatoeba_pairs, xquad_query_bitext
from clir_ot.distill.pipeline import distill_student
from clir_ot.errors import ConfigError, InputFormatError
from clir_ot.formats import atomic_open, iter_corpus, load_corpus, read_qrels, read_topics
from clir_ot.models import BiEncoderModel
from clir_ot.models.backends import resolve_path
from clir_ot.models.default import default_model_dir
from clir_ot.models.derive import keep_layers
from clir_ot.models.loading import resolve_precision
from clir_ot.progress import progress_bar
from clir_ot.rerank import CrossEncoderReranker, PassageWindows, rerank_cross_fitted
from clir_ot.rerank.base import SCORING_VERSION, run_provenance, why_not_reusable
from clir_ot.retrieval.dense import DenseSearcher, dense_search_to_run, encode_corpus
from clir_ot.io import cached_sha256, hash_model_folder
from clir_ot.study.artifacts import ArtifactStore, artifact_key
from clir_ot.study.config import BackboneSpec, StudyConfig, describe, load_study_config
from clir_ot.study.evaluate import training_manifest, write_study_report
from clir_ot.study.locks import ArtifactLock
from clir_ot.study.plan import Cell, Step, StudyPlan, Work
from clir_ot.study.schedule import build_pending, make_executor, step_lock
from clir_ot.training import (DataSpec, drop_unselected_weights, load_training_data, selected_model, train_cross_encoder,
                              write_groups)
from clir_ot.training.trainer import RESUMABLE_CHANGES, describe_changes

logger = logging.getLogger(__name__)

__all__ = ["Cell", "Step", "StudyPlan", "Work", "format_plan", "plan_study", "run_study"]

#: The per-step cost model of --dry-run's estimate: seconds per unit of work at FULL_LAYERS layers on the
#: 2-core CPU this toolkit is developed on, per (kind, profile), used until an artifact.json of that
#: kind and profile (in this study's folder or a reused one) records a measurement. Measured figures
#: are scaled to a backbone's depth (cost per layer). The figures: a teacher step of the recipe (batch 4,
#: 7 negatives, 256 tokens) 16 s (2,307 s for 143 steps, runs/xquad's fold-0 teacher); a distillation
#: step 0.35 s in passage mode on Tatoeba without the rank term, about 10x that with it
#: (docs/distillation.md, docs/study.md); reranking 40 pairs/s; a dense student's encoding 20
#: passages/s (a guess); with passage windows (MaxP) a pair costs 1.6 pairs (the most windows per pair
#: `tools/truncation_report.py --windows 4 --overlap 32` measured at 256 tokens: 1.21-1.58 over the
#: languages, docs/languages.md). Reused teachers' and students' training.json count as measurements too.
WINDOWS_PER_PAIR = 1.6
DEFAULT_COSTS = {("backbone", ""): 10.0, ("teacher", ""): 16.0, ("student", "distill"): 0.35,
                 ("student", "distill+rank"): 3.5, ("student", "rank-only"): 3.2, ("rerank", ""): 1 / 40.0,
                 ("rerank", "windows"): WINDOWS_PER_PAIR / 40.0, ("search", ""): 1 / 20.0}
#: The depth of a backbone without ``layers:`` (multilingual-e5-small, mBERT and XLM-R base have 12).
FULL_LAYERS = 12
WORK_UNITS = {"backbone": "step", "teacher": "train step", "student": "train step", "rerank": "pair",
              "search": "passage"}
DEFAULT_BASE = "multilingual-e5-small (offline default)"
REPORT_LOCK = "report.lock"


@dataclass
class _Context:
    """What every planning function needs: the config, the baseline's layout, the store, the folds."""

    config: StudyConfig
    layout: XQuADLayout | ProbeLayout
    store: ArtifactStore
    folds: list[dict]
    hashes: dict[Path, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def sha(self, path: Path) -> str:
        if path not in self.hashes:
            self.hashes[path] = _sha(path)
        return self.hashes[path]

    def common(self) -> dict[str, str]:
        """Topics and folds: inputs of every cross-fitted step."""
        collection = self.layout.collection
        return {"topics": self.sha(collection.topics("en")), "folds": self.sha(collection.folds)}

    def english_training(self) -> dict[str, str]:
        """The English training files' hashes (teachers, and students that train on queries)."""
        files = self.layout.english_training
        return {**self.common(), "qrels": self.sha(files.qrels), "corpus": self.sha(files.corpus),
                "run": self.sha(files.run)}

    def queries(self, lang: str) -> int:
        if lang not in self.counts:
            self.counts[lang] = len(read_qrels(self.layout.collection.qrels(lang)))
        return self.counts[lang]


# --------------------------------------------------------------------------------------------------
# planning


def baseline_layout(config: StudyConfig) -> XQuADLayout | ProbeLayout:
    """The layout of the study's baseline folder (collection and first-stage runs): XQuAD's, or the
    Tatoeba probe's (``dataset: tatoeba-probe``)."""
    if config.probe:
        return ProbeLayout(config.baseline)
    return XQuADLayout(config.baseline, first_stage=config.first_stage)


def _needs_folds(config: StudyConfig) -> bool:
    return any(not b.dense for b in config.backbones)


def _check_baseline(config: StudyConfig, layout: XQuADLayout | ProbeLayout) -> None:
    if isinstance(layout, ProbeLayout):
        _check_probe_baseline(config, layout)
        return
    collection = layout.collection
    needed = [collection.topics("en")]
    if _needs_folds(config):
        needed += [collection.folds, layout.negatives_run]
    for lang in config.evaluated_languages:
        needed += [layout.first_stage_run(lang), layout.reranked_run(config.reranked_run, lang),
                   collection.qrels(lang), collection.corpus(lang)]
    needed = list(dict.fromkeys(needed))
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ConfigError(
            f"{config.path}: the baseline folder {config.baseline} lacks {len(missing)} input(s), e.g. {missing[0]}; "
            f"build it first: clir-ot baseline --source <xquad> --output {config.baseline}"
        )


def _check_probe_baseline(config: StudyConfig, layout: ProbeLayout) -> None:
    """The probe folder has every language's test half and zero-shot run, encoded as ``search:`` will
    encode the students' (same encoder weights as each backbone's, max length, precision)."""
    collection = layout.collection
    needed = [collection.manifest]
    for lang in config.evaluated_languages:
        needed += [collection.queries_for(lang), collection.corpus(lang), collection.qrels(lang),
                   layout.first_stage_run(lang)]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ConfigError(
            f"{config.path}: the probe folder {config.baseline} lacks {len(missing)} input(s), e.g. {missing[0]}; "
            f"build it first: python tools/tatoeba_probe.py --tatoeba <tatoeba> --output {config.baseline} "
            f"--languages {' '.join(config.evaluated_languages)}"
        )
    recorded = json.loads(collection.manifest.read_text(encoding="utf-8")).get("languages", {})
    precision = resolve_precision(config.search.dtype, "cpu")
    for lang in config.evaluated_languages:
        encoding = recorded.get(lang, {})
        wanted = {"max_length": config.search.max_length, "dtype": precision}
        differs = {k: (encoding.get(k), v) for k, v in wanted.items() if encoding.get(k) != v}
        if differs:
            raise ConfigError(
                f"{config.path}: {lang}'s zero-shot run in {config.baseline} was encoded with "
                + ", ".join(f"{k} {was!r}" for k, (was, _) in differs.items())
                + "; search: has " + ", ".join(f"{k} {now!r}" for k, (_, now) in differs.items())
                + ": the students must be searched as the zero-shot run was (set search: to match)")
        for backbone in config.backbones:
            weights = _default_weights() if backbone.base is None else _base_inputs(backbone).get("weights")
            if None not in (weights, encoding.get("weights")) and encoding["weights"] != weights:
                raise ConfigError(f"{config.path}: {lang}'s zero-shot run in {config.baseline} was made by another "
                                  f"encoder ({encoding.get('encoder')}) than backbone {backbone.name!r}'s")


def _default_weights() -> str:
    return hash_model_folder(default_model_dir())


def _sha(path: Path) -> str:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return artifact_key("folder", {}, {p.relative_to(path).as_posix(): cached_sha256(p) for p in files})
    return cached_sha256(path)


def _rerank_settings(config: StudyConfig) -> dict[str, Any]:
    """A rerank step's settings (``reranked_run`` only when it is not the dense first stage, so the
    keys of dense reranks stay those of studies made before it existed)."""
    which = {"reranked_run": config.reranked_run} if config.reranked_run != "dense" else {}
    return {"depth": config.depth, "scoring": SCORING_VERSION, **config.rerank.key_settings(), **which}


def _bitext_inputs(config: StudyConfig, lang: str) -> dict[str, str]:
    if lang not in config.bitext:  # the in-domain query bitext alone (bitext: {xquad: ...})
        return {}
    if config.bitext_kind == "tatoeba":
        files = {p.name: cached_sha256(p) for p in tatoeba_files(config.bitext[lang], lang)}
        return {**files, "half": f"{PROBE_SPLIT_SALT}/distill"} if config.probe else files
    return {config.bitext[lang].name: cached_sha256(config.bitext[lang])}


def _base_inputs(backbone: BackboneSpec) -> dict[str, Any]:
    """What identifies a backbone's base model: its name, and its weights' hash when it is a folder."""
    inputs: dict[str, Any] = {"base": backbone.base or DEFAULT_BASE}
    if backbone.base and Path(backbone.base).is_dir():
        inputs["weights"] = hash_model_folder(backbone.base)
    return inputs


def _cells(config: StudyConfig, backbone: BackboneSpec) -> Iterator[Cell]:
    """Every (method, language, seed) of ``backbone`` whose run the study evaluates, in plan order."""
    for lang in config.evaluated_languages:
        for method in config.methods_for(lang):
            for seed in (None,) if method.is_baseline else config.seeds:
                yield Cell(backbone, method, lang, seed)


def _run_label(cell: Cell) -> tuple[str, str]:
    """The (step id, artifact label) of a cell's run step."""
    seed = "" if cell.seed is None else f"/seed{cell.seed}"
    label = f"{cell.backbone.name}.{cell.method.name}.{cell.language}{'' if cell.seed is None else f'.seed{cell.seed}'}"
    return f"{cell.backbone.name}/{cell.method.name}/{cell.language}{seed}", label


def _artifact_step(ctx: _Context, kind: str, sid: str, label: str, cell: Cell, settings: dict[str, Any],
                   inputs: dict[str, Any], **fields: Any) -> Step:
    """A step built here: keyed by its settings and inputs, located in the store (or a reused one)."""
    key = artifact_key(kind, settings, inputs)
    artifact = ctx.store.locate(kind, label, key)
    return Step(sid, kind, key, artifact, cell, settings, inputs, **fields)


def _backbone_step(ctx: _Context, backbone: BackboneSpec) -> Step | None:
    if backbone.layers is None or backbone.teachers:  # reused teachers need no backbone
        return None
    step = _artifact_step(ctx, "backbone", f"backbone/{backbone.name}", backbone.name, Cell(backbone),
                          {"layers": backbone.layers}, _base_inputs(backbone), action=_build_backbone)
    return replace(step, model=step.artifact.folder / "model")


def _reused_teacher_step(ctx: _Context, backbone: BackboneSpec, fold: int) -> Step:
    folder = selected_model(XQuADLayout(backbone.teachers, first_stage=ctx.config.first_stage).teacher(fold))
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{ctx.config.path}: backbone {backbone.name!r}: no trained teacher for fold {fold} in "
                          f"{backbone.teachers} (expected {folder}); the study reuses these teachers and plans "
                          f"from their weights, so train them first (`make teacher`, or `clir-ot xquad-teacher "
                          f"--output {backbone.teachers}` with the config's recipe)")
    weights = hash_model_folder(folder)
    return Step(f"teacher/{backbone.name}/fold{fold}", "teacher", weights, None, Cell(backbone, fold=fold), {},
                {"weights": weights, "path": str(folder)}, model=folder)


def _teacher_step(ctx: _Context, backbone: BackboneSpec, base: Step | None, fold: int) -> Step:
    if backbone.teachers:
        return _reused_teacher_step(ctx, backbone, fold)
    inputs = {"base": base.key if base else _base_inputs(backbone), **ctx.english_training()}
    settings = {"fold": fold, "training": ctx.config.teacher.to_dict()}
    if ctx.config.teacher_data.key_settings():  # only when not the default: default keys stay as they were
        settings["data"] = ctx.config.teacher_data.key_settings()
    step = _artifact_step(ctx, "teacher", f"teacher/{backbone.name}/fold{fold}", f"{backbone.name}.fold{fold}",
                          Cell(backbone, fold=fold), settings, inputs,
                          deps=(base.id,) if base else (), sources=(base.id,) if base else (),
                          action=_train_teacher, work=Work(train_steps=_teacher_steps_estimate(ctx, fold)))
    return replace(step, model=step.artifact.folder / "model")


def _xquad_inputs(ctx: _Context, lang: str) -> dict[str, Any]:
    """What a student's in-domain query bitext is made of (``bitext.xquad``): its settings and files."""
    config, collection = ctx.config, ctx.layout.collection
    inputs: dict[str, Any] = {"negatives": config.xquad_bitext.negatives, "topics": ctx.sha(collection.topics("en")),
                              "qrels": ctx.sha(collection.qrels("en")), "english": ctx.sha(collection.corpus("en")),
                              "foreign": ctx.sha(collection.corpus(lang)), "folds": ctx.sha(collection.folds)}
    if config.xquad_bitext.negatives:
        inputs["run"] = ctx.sha(ctx.layout.first_stage_run(lang))
    return inputs


def _xquad_pair_estimate(ctx: _Context, fold: int) -> int:
    """About how many query-bitext pairs a fold's student gets: one per training-side question, plus
    its negatives (an estimate: a question may have more relevant paragraphs, or fewer negatives)."""
    questions = sum(len(f["qids"]) for i, f in enumerate(ctx.folds) if i != fold)
    return questions * (1 + ctx.config.xquad_bitext.negatives)


def _student_work(config: StudyConfig, lang: str, training, distill, extra_pairs: int = 0) -> Work:
    pairs = (_bitext_size(config, lang) if lang in config.bitext else 0) + extra_pairs
    per_step = training.batch_size * training.grad_accum
    return Work(train_steps=training.max_steps or training.epochs * max(1, int(pairs * (1 - distill.valid_fraction)) // per_step))


def _student_step(ctx: _Context, cell: Cell, teacher: Step) -> Step:
    """A cross-encoder student of ``cell`` (its fold's teacher distilled on the language's bitext)."""
    config, backbone, method, lang = ctx.config, cell.backbone, cell.method, cell.language
    training, distill = config.distill_settings(method, cell.seed)
    settings = {"training": training.to_dict(), "distill": distill.to_dict(), "fold": cell.fold, "language": lang}
    if distill.method == "score-kd" or distill.score_weight > 0 or distill.rank_weight > 0:
        # these students train on the cross-encoder's logits: scored with the
        # float32 head since scoring version 2 (older ones regressed bf16 logits)
        settings["scoring"] = SCORING_VERSION
    if teacher.artifact is not None:
        # distilled from the teacher that validation selected (its best/, the model the `none` rows
        # rerank with); students from before this rule started from its final model: other keys
        settings["teacher_model"] = "selected"
    inputs = {"teacher": teacher.key, "bitext": _bitext_inputs(config, lang)}
    extra = 0
    if config.xquad_bitext is not None:  # the fold's training side only (cross-fitted: cell.fold is its test fold)
        inputs["xquad_bitext"] = _xquad_inputs(ctx, lang)
        extra = _xquad_pair_estimate(ctx, cell.fold)
    if distill.uses_queries or distill.rank_weight > 0:
        inputs.update(ctx.english_training())
    step = _artifact_step(ctx, "student", f"student/{backbone.name}/{method.name}/{lang}/fold{cell.fold}/seed{cell.seed}",
                          f"{backbone.name}.{method.name}.{lang}.fold{cell.fold}.seed{cell.seed}", cell, settings, inputs,
                          deps=(teacher.id,) if teacher.artifact else (), sources=(teacher.id,), action=_distil,
                          work=_student_work(config, lang, training, distill, extra))
    return replace(step, model=step.artifact.folder / "model")


def _rerank_step(ctx: _Context, cell: Cell, models: Sequence[Step]) -> Step:
    """The cross-fitted rerank of ``cell``'s first-stage run by ``models`` (one per fold)."""
    lang = cell.language
    settings = {**_rerank_settings(ctx.config), "language": lang, "method": cell.method.name, "seed": cell.seed}
    inputs = {"models": [m.key for m in models],
              "first_stage": ctx.sha(ctx.layout.reranked_run(ctx.config.reranked_run, lang)),
              "corpus": ctx.sha(ctx.layout.collection.corpus(lang)), **ctx.common()}
    sid, label = _run_label(cell)
    step = _artifact_step(ctx, "rerank", f"rerank/{sid}", label, cell, settings, inputs,
                          deps=tuple(m.id for m in models if m.artifact), sources=tuple(m.id for m in models),
                          action=_rerank, work=Work(pairs=ctx.queries(lang) * ctx.config.depth))
    return replace(step, run=step.artifact.folder / "run.txt")


def _plan_reranker(ctx: _Context, backbone: BackboneSpec) -> list[Step]:
    """A cross-encoder backbone: (backbone,) teachers per fold, students per fold, cross-fitted reranks."""
    base = _backbone_step(ctx, backbone)
    teachers = [_teacher_step(ctx, backbone, base, k) for k in range(len(ctx.folds))]
    steps = ([base] if base else []) + teachers
    for cell in _cells(ctx.config, backbone):
        if cell.method.is_baseline:
            models = teachers
        else:
            models = [_student_step(ctx, replace(cell, fold=k), teacher) for k, teacher in enumerate(teachers)]
            steps += models
        steps.append(_rerank_step(ctx, cell, models))
    return steps


def _encoder_location(backbone: BackboneSpec) -> str:
    """Where a bi-encoder backbone's encoder is read from (as a ``training.json`` records it)."""
    if backbone.base is None:
        return str(default_model_dir().resolve())
    return str(Path(backbone.base).resolve())


def _earlier_student(ctx: _Context, cell: Cell, training, distill) -> Step | None:
    """A student of an earlier ``clir-ot xquad-dense-students`` run (``students:``) with exactly these
    settings and encoder, as an external input; ``None`` when there is none or it differs."""
    backbone = cell.backbone
    folder = XQuADLayout(backbone.students, first_stage=ctx.config.first_stage).dense_student(cell.method.name,
                                                                                              cell.language)
    manifest_path = folder / "training.json"
    if not backbone.students or not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    was = {**manifest.get("config", {}), **{f"distill.{k}": v for k, v in manifest.get("distillation", {}).items()},
           "encoder": str(Path((manifest.get("teacher") or {}).get("location", "?")).resolve())}
    now = {**training.to_dict(), **{f"distill.{k}": v for k, v in distill.to_dict().items()},
           "encoder": _encoder_location(backbone)}
    newer = frozenset(k for k in now if k not in was)  # settings added since: their defaults were the behaviour
    diffs = describe_changes(was, now, ignore=RESUMABLE_CHANGES | newer)
    if diffs:
        logger.info("%s: not reused (trained with other settings: %s); the study trains its own", folder, diffs)
        return None
    model = selected_model(folder)
    weights = hash_model_folder(model)
    return Step(f"student/{backbone.name}/{cell.method.name}/{cell.language}/seed{cell.seed}", "student", weights,
                None, cell, {}, {"weights": weights, "path": str(folder)}, model=folder)


def _dense_student_step(ctx: _Context, cell: Cell) -> Step:
    """A bi-encoder student of ``cell``: the encoder distilled on the language's bitext (no folds), or
    an earlier run's student with the same settings (``students:``)."""
    config, backbone, method, lang = ctx.config, cell.backbone, cell.method, cell.language
    training, distill = config.distill_settings(method, cell.seed, backbone.kind)
    earlier = _earlier_student(ctx, cell, training, distill) if backbone.students else None
    if earlier is not None:
        return earlier
    settings = {"training": training.to_dict(), "distill": distill.to_dict(), "language": lang}
    inputs = {"encoder": _base_inputs(backbone), "bitext": _bitext_inputs(config, lang)}
    step = _artifact_step(ctx, "student", f"student/{backbone.name}/{method.name}/{lang}/seed{cell.seed}",
                          f"{backbone.name}.{method.name}.{lang}.seed{cell.seed}", cell, settings, inputs,
                          action=_distil, work=_student_work(config, lang, training, distill))
    return replace(step, model=step.artifact.folder / "model")


def _first_stage_step(ctx: _Context, cell: Cell) -> Step:
    """``none`` on a bi-encoder backbone: the baseline's dense run itself (an external input)."""
    run = ctx.layout.first_stage_run(cell.language)
    sid, _ = _run_label(cell)
    digest = ctx.sha(run)
    return Step(f"search/{sid}", "search", digest, None, cell, {}, {"run": digest, "path": str(run)}, run=run)


def _search_step(ctx: _Context, cell: Cell, student: Step) -> Step:
    """The language's paragraphs encoded by ``student``, searched by the unchanged query encoder."""
    lang = cell.language
    collection = ctx.layout.collection
    settings = {**asdict(ctx.config.search), "language": lang, "method": cell.method.name, "seed": cell.seed}
    inputs = {"student": student.key, "encoder": _base_inputs(cell.backbone),
              "corpus": ctx.sha(collection.corpus(lang)), "topics": ctx.sha(collection.queries_for(lang))}
    sid, label = _run_label(cell)
    passages = sum(1 for _ in iter_corpus(collection.corpus(lang)))
    step = _artifact_step(ctx, "search", f"search/{sid}", label, cell, settings, inputs,
                          deps=(student.id,) if student.artifact else (),
                          sources=(student.id,), action=_search, work=Work(passages=passages))
    return replace(step, run=step.artifact.folder / "run.txt")


def _plan_dense(ctx: _Context, backbone: BackboneSpec) -> list[Step]:
    """A bi-encoder backbone: the baseline's dense run as ``none``; per method a student and its search."""
    steps: list[Step] = []
    for cell in _cells(ctx.config, backbone):
        if cell.method.is_baseline:
            steps.append(_first_stage_step(ctx, cell))
        else:
            student = _dense_student_step(ctx, cell)
            steps += [student, _search_step(ctx, cell, student)]
    return steps


def plan_study(config: StudyConfig, root: str | Path | None = None) -> StudyPlan:
    """Every step of the study with its key and whether it is finished; nothing is built."""
    layout = baseline_layout(config)
    _check_baseline(config, layout)
    root = Path(root) if root is not None else Path("runs") / config.name
    store = ArtifactStore(root, config.reuse)
    folds = read_folds(layout.collection.folds) if _needs_folds(config) else []
    ctx = _Context(config, layout, store, folds)
    steps: dict[str, Step] = {}
    for backbone in config.backbones:
        for step in (_plan_dense(ctx, backbone) if backbone.dense else _plan_reranker(ctx, backbone)):
            steps[step.id] = step
    return StudyPlan(config, root, store, steps, folds, layout)


def _bitext_size(config: StudyConfig, lang: str) -> int:
    if config.probe:  # the distillation half (the split reads the texts: cheap for Tatoeba's sizes)
        return len(probe_half(tatoeba_pairs(config.bitext[lang], lang), "distill"))
    path = tatoeba_files(config.bitext[lang], lang)[0] if config.bitext_kind == "tatoeba" else config.bitext[lang]
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _teacher_steps_estimate(ctx: _Context, k: int) -> int:
    teacher = ctx.config.teacher
    questions = sum(len(f["qids"]) for i, f in enumerate(ctx.folds) if i != k)
    per_step = teacher.batch_size * teacher.grad_accum
    return teacher.max_steps or teacher.epochs * max(1, int(questions * 0.9) // per_step)


# --------------------------------------------------------------------------------------------------
# actions (each returns the record fields of its artifact.json)


def _build_backbone(step: Step, plan: StudyPlan) -> dict[str, Any]:
    started = time.time()
    if not (step.model / "config.json").is_file():
        keep_layers(step.cell.backbone.base, step.model, step.cell.backbone.layers, overwrite=True)
    return {"wall_s": round(time.time() - started, 1)}


def _train_teacher(step: Step, plan: StudyPlan) -> dict[str, Any]:
    backbone = step.cell.backbone
    base = plan.steps[step.sources[0]].model if step.sources else backbone.base
    spec = _teacher_data_spec(plan, step)
    resume = step.model.exists()  # resume=True also restarts a run killed before its first checkpoint
    result = train_cross_encoder(None if base is None else str(base), step.model, spec, plan.config.teacher,
                                 resume=resume)
    return _training_record(result)


def _teacher_data_spec(plan: StudyPlan, step: Step) -> DataSpec:
    """What a teacher step trains and validates on (``teacher_data:``, see
    :class:`~clir_ot.study.config.TeacherDataSettings`)."""
    data, fold = plan.config.teacher_data, step.cell.fold
    choices = TeacherData(data.negatives, data.soft_targets, data.validate_on)
    if data.source == "xquad":
        return DataSpec(**plan.layout.teacher_training(choices, fold), valid_fraction=0.1)
    # MS MARCO: XQuAD English is only validation -- 10% of the fold's training-side questions, dense top 10
    xquad = DataSpec(**plan.layout.teacher_training(TeacherData(validate_on="first-stage"), fold), valid_fraction=0.1)
    teacher = plan.config.teacher
    valid = load_training_data(xquad, negatives=teacher.negatives, depth=teacher.depth, valid_negatives=9,
                               seed=teacher.seed).valid
    valid_file = step.model.parent / f".{step.model.name}.valid.xquad-en.jsonl"
    write_groups(valid_file, valid)
    return DataSpec(triples=data.triples, id_triples=data.id_triples, queries=data.queries,
                    collection=data.collection, stream=data.triples is not None, valid=valid_file)


def _training_record(result) -> dict[str, Any]:
    time_info = (result.manifest or {}).get("time", {})
    return {"wall_s": time_info.get("wall_s"), "train_s": time_info.get("train_s"),
            "examples_per_s": time_info.get("examples_per_s"), "steps": result.steps, "metrics": result.metrics}


def _distil(step: Step, plan: StudyPlan) -> dict[str, Any]:
    config, cell = plan.config, step.cell
    lang = cell.language
    training, distill = config.distill_settings(cell.method, cell.seed, cell.backbone.kind)
    pairs, files = [], []
    if lang in config.bitext and config.bitext_kind == "tatoeba":
        pairs, files = tatoeba_pairs(config.bitext[lang], lang), list(tatoeba_files(config.bitext[lang], lang))
        if config.probe:  # the distillation half only, never a sentence of the test half the study scores
            pairs = probe_half(pairs, "distill")
            check_probe_leakage(pairs, plan.layout.collection, lang)
    elif lang in config.bitext:
        pairs, files = read_bitext(config.bitext[lang]), [config.bitext[lang]]
    if config.xquad_bitext is not None:
        in_domain, more = _xquad_pairs(plan, lang, cell.fold)
        pairs, files = pairs + in_domain, files + more
        check_bitext_leakage(pairs, plan.layout.collection.folds, cell.fold)  # everything the student will see
    rank = None
    if distill.uses_queries or distill.rank_weight > 0:
        rank = DataSpec(**plan.layout.english_training._asdict(), exclude_fold=cell.fold)
    # a cross-encoder student starts from its fold's teacher as validation selected it (selected_model:
    # best/, as reranking loads it); a bi-encoder student from the encoder of the baseline's dense run
    teacher = selected_model(plan.steps[step.sources[0]].model) if step.sources else cell.backbone.base
    resume = step.model.exists()  # resume=True also restarts a run killed before its first checkpoint
    result = distill_student(None if teacher is None else str(teacher), step.model, pairs, training, distill,
                             rank_data=rank, bitext_files=files, resume=resume)
    return _training_record(result)


def _xquad_pairs(plan: StudyPlan, lang: str, fold: int) -> tuple[list, list[Path]]:
    """The in-domain query bitext of a fold-``fold`` student: the questions of the other folds with their
    paragraphs in English and ``lang`` (and hard negatives of the first stage), never fold ``fold``."""
    collection, negatives = plan.layout.collection, plan.config.xquad_bitext.negatives
    run = plan.layout.first_stage_run(lang) if negatives else None
    pairs = xquad_query_bitext(collection.topics("en"), collection.qrels("en"), collection.corpus("en"),
                               collection.corpus(lang), collection.folds, fold, run=run, negatives=negatives)
    files = [collection.topics("en"), collection.qrels("en"), collection.corpus("en"), collection.corpus(lang),
             collection.folds] + ([run] if run is not None else [])
    return pairs, files


def _run_tag(cell: Cell) -> str:
    return f"{cell.backbone.name}.{cell.method.name}.en-{cell.language}"


def _rerank(step: Step, plan: StudyPlan) -> dict[str, Any]:
    config, cell = plan.config, step.cell
    folder = step.artifact.folder
    folder.mkdir(parents=True, exist_ok=True)
    imported = _importable_teacher_run(config, step, explain=True)
    if imported is not None:
        shutil.copyfile(imported, folder / ".run.txt.tmp")
        os.replace(folder / ".run.txt.tmp", step.run)
        logger.info("%s: reused %s (clir-ot xquad-teacher with the same teachers)", step.id, imported)
        return {"imported_from": str(imported), "imported_sha256": cached_sha256(imported), "wall_s": 0.0}
    started = time.time()
    collection = plan.layout.collection
    windows = PassageWindows(config.rerank.windows, config.rerank.window_overlap)
    rerankers = [CrossEncoderReranker(str(selected_model(plan.steps[sid].model)), batch_size=config.rerank.batch_size,
                                      max_length=config.rerank.max_length, dtype=config.rerank.dtype, windows=windows)
                 for sid in step.sources]
    report = rerank_cross_fitted(rerankers, [fold["qids"] for fold in plan.folds],
                                 plan.layout.reranked_run(config.reranked_run, cell.language),
                                 read_topics(collection.topics("en")),
                                 load_corpus(collection.corpus(cell.language)), step.run,
                                 [folder / f"fold{k}.txt" for k in range(len(rerankers))],
                                 depth=config.depth, tag=_run_tag(cell))
    return {"wall_s": round(time.time() - started, 1), "pairs": report.pairs,
            "pairs_per_s": round(report.pairs_per_second, 2) if report.pairs_per_second else None}


def _search(step: Step, plan: StudyPlan) -> dict[str, Any]:
    config, cell = plan.config, step.cell
    settings = config.search
    collection = plan.layout.collection
    started = time.time()
    query_model = BiEncoderModel.from_pretrained(cell.backbone.base)
    precision = resolve_precision(settings.dtype, query_model.device)
    student = BiEncoderModel.from_pretrained(selected_model(plan.steps[step.sources[0]].model))
    index_dir = step.artifact.folder / "index"
    encode_corpus(collection.corpus(cell.language), index_dir, student, batch_size=settings.batch_size,
                             max_length=settings.max_length, dtype=precision)
    encoded = time.time()
    dense_search_to_run(DenseSearcher(index_dir, query_model), read_topics(collection.queries_for(cell.language)), step.run,
                        k=settings.hits, batch_size=settings.batch_size, max_length=settings.max_length,
                        dtype=precision, tag=f"{plan.layout.student_tag(cell.method.name)}.en-{cell.language}")
    passages = step.work.passages or 0
    encode_s = encoded - started
    return {"wall_s": round(time.time() - started, 1), "passages": passages, "precision": precision,
            "passages_per_s": round(passages / encode_s, 2) if encode_s > 0 else None}


# --------------------------------------------------------------------------------------------------
# execution


def _execute(step: Step, plan: StudyPlan) -> None:
    started = time.time()
    logger.info("step %s: building %s", step.id, step.artifact.folder)
    record = step.action(step, plan)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    record.setdefault("wall_s", round(time.time() - started, 1))
    if step.model is not None and (step.model / "checkpoints").is_dir():
        shutil.rmtree(step.model / "checkpoints")  # finished: checkpoints only served resuming (GBs each)
    if step.model is not None:
        drop_unselected_weights(step.model)  # best/ is what every later step reads; the last step's weights are not
    ArtifactStore.finish(step.artifact, {"step": step.id, "settings": step.settings, "inputs": step.inputs,
                                         "deps": {d: plan.steps[d].key for d in step.deps},
                                         "study": plan.config.name, "seed": step.cell.seed,
                                         "built_by": {"pid": os.getpid(), "host": socket.gethostname()}, **record})
    logger.info("step %s: done in %.0f s", step.id, time.time() - started)


def execute_step_by_id(config_path: str, root: str, step_id: str) -> str:
    """Build one step without taking its lock: the ranks under torchrun, whose launcher holds it."""
    plan = plan_study(load_study_config(config_path), root)
    step = plan.steps[step_id]
    if not step.done:
        _execute(step, plan)
    return step_id


def run_step_by_id(config_path: str, root: str, step_id: str, threads: int | None = None,
                   torchrun: bool = False) -> str:
    """Build one step under its artifact's lock (waiting while another worker holds it); a step
    finished meanwhile is left as it is. This is what processes and submitit jobs run; with
    ``torchrun``, a training step runs under torchrun when several GPUs are visible."""
    if threads:
        torch.set_num_threads(threads)
    plan = plan_study(load_study_config(config_path), root)
    build_locked(plan, plan.steps[step_id], torchrun=torchrun)
    return step_id


def build_locked(plan: StudyPlan, step: Step, torchrun: bool = False) -> None:
    """Build ``step`` of ``plan`` under its artifact's lock, unless it is (or meanwhile was) finished."""
    if step.done:
        return
    with step_lock(step):
        if step.done:
            logger.info("step %s: built by another worker while this one waited; reused", step.id)
            return
        devices = _devices() if torchrun and step.kind in ("teacher", "student") else 0
        if devices > 1:
            _run_with_torchrun(plan, step, devices)
        else:
            _execute(step, plan)


def _devices() -> int:
    try:
        return torch.cuda.device_count()
    except Exception:  # pragma: no cover
        return 0


def _run_with_torchrun(plan: StudyPlan, step: Step, devices: int) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={devices}", "-m",
               "clir_ot.study.worker", str(plan.config.path), str(plan.root), step.id]
    logger.info("step %s under torchrun on %d devices", step.id, devices)
    subprocess.run(command, check=True)


def run_study(config: StudyConfig, root: str | Path | None = None, *, jobs: int = 1, dry_run: bool = False,
              report: bool = True) -> StudyPlan:
    """Plan the study, build every unfinished step on ``config.executor`` (``jobs`` at a time on this
    machine), evaluate and report. Other studies on the same folder share the work through the
    artifacts' locks."""
    plan = plan_study(config, root)
    if dry_run:
        sys.stdout.write(format_plan(plan) + "\n")
        return plan
    executor = make_executor(config.executor, jobs, plan.root, config.name,
                             build_here=lambda step: build_locked(plan, step, torchrun=True))
    plan.root.mkdir(parents=True, exist_ok=True)
    with atomic_open(plan.root / "study.json") as handle:
        json.dump(describe(config), handle, indent=1)
    pending = plan.pending()
    logger.info("study %s: %d steps, %d to build on %s (%s)", config.name, len(plan.steps), len(pending),
                config.executor.kind, estimate_text(plan))
    bar = progress_bar(total=len(pending), desc=f"study {config.name}", unit="step")
    try:
        build_pending(plan, pending, executor, run_step_by_id, progress=lambda: bar.update(1))
    finally:
        bar.close()
    plan = plan_study(config, root)  # re-read what is finished
    if report:
        write_report(plan)
    return plan


def write_report(plan: StudyPlan) -> Path:
    """Evaluate what is finished and write the report (:func:`~clir_ot.study.evaluate.write_study_report`)
    under the study folder's report lock, so two studies on one folder (or ``--report-only`` beside a
    running study) never write it at once."""
    with ArtifactLock(plan.root / REPORT_LOCK):
        return write_study_report(plan)


# --------------------------------------------------------------------------------------------------
# estimates and the --dry-run table


@dataclass(frozen=True)
class StepRate:
    """The cost model of one kind and profile of step: ``seconds`` per unit of work (a training step, a
    reranked pair, an encoded passage) at :data:`FULL_LAYERS` layers, and where the figure comes from."""

    kind: str
    profile: str
    seconds: float
    measured: int = 0  # artifacts the figure is the mean of (0: the documented default)
    scaled: float | None = None  # the figure is another profile's measured one times this

    @property
    def source(self) -> str:
        if not self.measured:
            return "default"
        times = f", x {self.scaled:g} windows per pair" if self.scaled else ""
        return f"measured, mean of {self.measured} artifact.json/training.json{times}"


def _profile(kind: str, settings: Mapping[str, Any]) -> str:
    """A step's cost profile from its settings: a student's the rank term alone, distillation with or
    without it; a rerank's ``windows`` when it scores passage windows (a pair then costs more)."""
    if kind == "rerank":
        return "windows" if (settings.get("windows") or 1) > 1 else ""
    if kind != "student":
        return ""
    distill = settings.get("distill") or {}
    rank = (distill.get("rank_weight") or 0) > 0
    if rank and not distill.get("distill_weight", 1.0) and not distill.get("score_weight"):
        return "rank-only"
    return "distill+rank" if rank else "distill"


def _depth(config: StudyConfig, backbone: str | None) -> int:
    spec = next((b for b in config.backbones if b.name == backbone), None)
    return (spec.layers if spec is not None and spec.layers else FULL_LAYERS)


def _unit_seconds(record: Mapping[str, Any]) -> float | None:
    """Seconds per unit of work that one artifact.json records (``None`` where it records none)."""
    kind = record.get("kind")
    if kind in ("teacher", "student"):
        return record["train_s"] / record["steps"] if record.get("train_s") and record.get("steps") else None
    rate = record.get({"rerank": "pairs_per_s", "search": "passages_per_s"}.get(kind, ""))
    return 1.0 / rate if rate else None


def _recorded(plan: StudyPlan) -> Iterator[Mapping[str, Any]]:
    """Every artifact.json in this study's store and the stores it reuses."""
    for root in [plan.store.root, *plan.store.reuse]:
        for path in sorted((root / "artifacts").glob("*/*/artifact.json")):
            try:
                yield json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue


def _reused_records(plan: StudyPlan) -> Iterator[Mapping[str, Any]]:
    """What the reused teachers and students of ``plan`` measured (their training.json), as records."""
    for step in plan.steps.values():
        if step.artifact is not None or step.kind not in ("teacher", "student") or step.model is None:
            continue
        manifest = training_manifest(step.model) or {}
        time_info = manifest.get("time") or {}
        yield {"kind": step.kind, "step": step.id, "train_s": time_info.get("train_s"), "steps": manifest.get("steps"),
               "settings": {"distill": manifest.get("distillation") or {}}}


def _rates(plan: StudyPlan) -> dict[tuple[str, str], StepRate]:
    """The cost model: per (kind, profile) the mean measured seconds per unit of work, per
    :data:`FULL_LAYERS` layers (from every artifact.json found, and the training.json of reused
    teachers and students), else :data:`DEFAULT_COSTS`."""
    measured: dict[tuple[str, str], list[float]] = {}
    for record in itertools.chain(_recorded(plan), _reused_records(plan)):
        seconds = _unit_seconds(record)
        if not seconds or record.get("imported_from"):
            continue
        kind = record.get("kind", "")
        backbone = str(record.get("step", "")).split("/")[1] if "/" in str(record.get("step", "")) else None
        scaled = seconds * FULL_LAYERS / _depth(plan.config, backbone)
        measured.setdefault((kind, _profile(kind, record.get("settings") or {})), []).append(scaled)
    rates = {key: StepRate(*key, default) for key, default in DEFAULT_COSTS.items()}
    for key, values in measured.items():
        rates[key] = StepRate(*key, sum(values) / len(values), len(values))
    plain, windowed = ("rerank", ""), ("rerank", "windows")
    if windowed not in measured and plain in measured:  # no windowed rerank measured: the measured pair rate, scaled
        rates[windowed] = replace(rates[plain], profile="windows", seconds=rates[plain].seconds * WINDOWS_PER_PAIR,
                                  scaled=WINDOWS_PER_PAIR)
    return rates


def _step_rate(rates: Mapping[tuple[str, str], StepRate], step: Step) -> StepRate:
    """The cost model of ``step``'s kind and profile."""
    key = (step.kind, _profile(step.kind, step.settings))
    if key in rates:
        return rates[key]
    return rates[("student", "distill")] if step.kind == "student" else rates[("backbone", "")]


def _importable_teacher_run(config: StudyConfig, step: Step, explain: bool = False) -> Path | None:
    """The `clir-ot xquad-teacher` run a ``none`` rerank step can reuse: from the backbone's teachers
    folder, scored with the current :data:`~clir_ot.rerank.base.SCORING_VERSION`, and recording (its
    :func:`~clir_ot.rerank.base.run_provenance`) this step's teachers and first-stage run and the
    study's max_length, depth, batch size and inference path; ``None`` otherwise (the step then
    reranks itself; with ``explain`` the log says why)."""
    cell = step.cell
    if step.kind != "rerank" or not cell.method.is_baseline or not cell.backbone.teachers:
        return None
    if config.reranked_run != "dense":  # clir-ot xquad-teacher reranks the dense first stage only
        return None
    if config.rerank.windows > 1:  # ... and truncates: the baseline must read the windows its students read
        return None
    run = XQuADLayout(cell.backbone.teachers, first_stage=config.first_stage).teacher_run(cell.language)
    if not run.is_file():
        return None
    wanted = run_provenance(models=step.inputs["models"], first_stage=step.inputs["first_stage"],
                            max_length=config.rerank.max_length, depth=config.depth,
                            batch_size=config.rerank.batch_size, path=str(resolve_path("torch", config.rerank.dtype)))
    try:
        why = why_not_reusable(run, wanted)
    except InputFormatError as err:
        why = str(err)
    if not why:
        return run
    if explain:
        logger.info("%s: not reused (%s); the study reranks its baseline itself", run, why)
    return None


def _units(config: StudyConfig, step: Step) -> float:
    """The work a step still needs, in its kind's unit (0 for a rerank that copies a teacher's run)."""
    if step.kind in ("teacher", "student"):
        return float(step.work.train_steps or 0)
    if step.kind == "rerank":
        return 0.0 if _importable_teacher_run(config, step) is not None else float(step.work.pairs or 0)
    if step.kind == "search":
        return float(step.work.passages or 0)
    return 1.0


def _seconds(config: StudyConfig, step: Step, rates: Mapping[tuple[str, str], StepRate]) -> float:
    """Estimated seconds of a step: its work x the cost per unit, scaled to its backbone's depth."""
    depth = _depth(config, step.cell.backbone.name) if step.kind != "backbone" else FULL_LAYERS
    return _units(config, step) * _step_rate(rates, step).seconds * depth / FULL_LAYERS


@dataclass(frozen=True)
class CostLine:
    """One row of --dry-run's cost estimate: the steps of a kind and profile still to build."""

    kind: str
    profile: str
    steps: int
    units: float
    seconds: float
    rate: StepRate


def estimate_costs(plan: StudyPlan) -> list[CostLine]:
    """The pending steps per kind and profile with their estimated time (an estimate, see :data:`DEFAULT_COSTS`)."""
    rates = _rates(plan)
    lines: dict[tuple[str, str], CostLine] = {}
    for step in plan.pending():
        key = (step.kind, _profile(step.kind, step.settings))
        rate = _step_rate(rates, step)
        was = lines.get(key, CostLine(*key, 0, 0.0, 0.0, rate))
        lines[key] = replace(was, steps=was.steps + 1, units=was.units + _units(plan.config, step),
                             seconds=was.seconds + _seconds(plan.config, step, rates))
    order = list(WORK_UNITS)
    return sorted(lines.values(), key=lambda l: (order.index(l.kind) if l.kind in order else len(order), l.profile))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def estimate_text(plan: StudyPlan) -> str:
    seconds = sum(line.seconds for line in estimate_costs(plan))
    return f"an estimated {_hours(seconds)} of work left on one worker (per-step cost model; --dry-run details it)"


def cost_table(plan: StudyPlan) -> list[str]:
    """--dry-run's statement of the cost: steps to build per kind, and the estimated time of each."""
    costs = estimate_costs(plan)
    if not costs:
        return ["nothing to build"]
    lines = ["cost (an ESTIMATE from a per-step cost model, not a measurement; one worker, steps one after another):",
             f"  {'kind':10s} {'profile':13s} {'to build':>8s} {'work':>20s} {'est. time':>10s}  cost per unit (source)"]
    for line in costs:
        unit = WORK_UNITS.get(line.kind, "step")
        per = line.rate.seconds
        rate = f"{per:.3g} s per {unit} at {FULL_LAYERS} layers ({line.rate.source})"
        lines.append(f"  {line.kind:10s} {line.profile or '-':13s} {line.steps:8d} {f'{line.units:,.0f} {unit}s':>20s} "
                     f"{_hours(line.seconds):>10s}  {rate}")
    total = sum(line.seconds for line in costs)
    lines.append(f"  {'total':10s} {'':13s} {sum(l.steps for l in costs):8d} {'':>20s} {_hours(total):>10s}"
                 f"  (with --jobs N, independent steps overlap; on a shared CPU they slow each other)")
    return lines


def _status(plan: StudyPlan, step: Step) -> str:
    if step.artifact is None:
        return {"teacher": "reused teacher", "student": "reused student"}.get(step.kind, "baseline run")
    if step.done:
        return "cached" if plan.root in step.artifact.folder.parents else \
            f"reused ({step.artifact.folder.parents[2].name})"
    owner = step_lock(step).holder()
    if owner is not None:
        return f"building (pid {owner.pid}@{owner.host})"
    return "partial (will resume)" if step.artifact.folder.exists() else "to build"


def format_plan(plan: StudyPlan) -> str:
    """The --dry-run table: every step, whether it is cached (and where), and the work left."""
    rates = _rates(plan)
    lines = [f"study {plan.config.name} ({plan.config.path}) -> {plan.root}", ""]
    lines.append(f"{'step':58s} {'status':26s} {'work':>14s} {'est.':>8s}")
    for step in plan.order():
        work = step.work.describe() if not step.done else ""
        est = f"{_seconds(plan.config, step, rates) / 60:.1f} min" if not step.done else ""
        lines.append(f"{step.id:58s} {_status(plan, step):26s} {work:>14s} {est:>8s}")
    pending = plan.pending()
    lines += ["", f"{len(plan.steps)} steps, {len(plan.steps) - len(pending)} finished, {len(pending)} to build", ""]
    return "\n".join(lines + cost_table(plan))
