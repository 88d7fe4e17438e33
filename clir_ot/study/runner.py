"""Run a study: plan its steps as keyed artifacts, build what is missing, evaluate, report.

Steps (each an artifact of :mod:`clir_ot.study.artifacts`, keyed by its inputs):

``backbone``  a backbone cut to its first ``layers`` layers (:func:`clir_ot.models.derive.keep_layers`);
``teacher``   the English cross-encoder of one backbone and article fold (cross-fitted), trained by
              :func:`clir_ot.training.train_cross_encoder` -- or reused from a ``clir-ot xquad-teacher``
              folder (``teachers:``), in which case its weights' hash is its key;
``student``   one distilled student per backbone x method x language x fold x seed
              (:func:`clir_ot.distill.pipeline.distill_student`), from that fold's teacher;
``rerank``    the first stage's top ``depth`` reranked per backbone x method x language x seed, each
              fold's questions by its own fold's model, merged into one run with a manifest.

Evaluation (seconds) is redone on every run from the finished runs: ``results.csv`` (per query),
``report.md`` and plots (:mod:`clir_ot.study.report`). A killed study restarts where it stopped:
finished artifacts are reused, an unfinished training resumes from its checkpoints, an unfinished
reranking from its journal.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from clir_ot.errors import ConfigError, ConsistencyError
from clir_ot.formats import atomic_open
from clir_ot.rerank.base import SCORING_VERSION, recorded_scoring_version
from clir_ot.study.artifacts import Artifact, ArtifactStore, artifact_key, cached_sha256, hash_model_folder
from clir_ot.study.config import BASELINE_METHOD, BackboneSpec, MethodSpec, StudyConfig, describe

logger = logging.getLogger(__name__)

__all__ = ["Step", "StudyPlan", "plan_study", "run_study"]

#: Rough costs on the 2-core CPU this toolkit is developed on, for --dry-run estimates before any
#: artifact of a kind has measured its own (seconds per training step, pairs per second at 12 layers).
DEFAULT_RATES = {"teacher_s_per_step": 7.0, "student_s_per_step": 0.35, "rerank_pairs_per_s": 40.0}


@dataclass
class Step:
    id: str
    kind: str
    artifact: Artifact | None           # None: an external input (reused teacher)
    deps: list[str]
    settings: dict[str, Any]
    inputs: dict[str, Any]
    action: Callable[["Step", "StudyPlan"], dict[str, Any]] | None = None
    work: dict[str, float] = field(default_factory=dict)  # {"train_steps": n} or {"pairs": n}
    model: Path | None = None          # for model steps: the folder downstream steps load
    run: Path | None = None            # for rerank steps: the merged run
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.artifact.key if self.artifact else self.inputs["weights"]

    @property
    def done(self) -> bool:
        return self.artifact is None or self.artifact.done


@dataclass
class StudyPlan:
    config: StudyConfig
    root: Path
    store: ArtifactStore
    steps: dict[str, Step]
    folds: list[dict]

    def order(self) -> list[Step]:
        return list(self.steps.values())  # built in dependency order

    def pending(self) -> list[Step]:
        return [s for s in self.order() if not s.done]


# --------------------------------------------------------------------------------------------------
# planning


def _collection(config: StudyConfig) -> Path:
    return config.baseline / "collection"


def _first_stage_run(config: StudyConfig, lang: str) -> Path:
    return config.baseline / f"run.xquad.{config.first_stage}.cross.en-{lang}.txt"


def _negatives_run(config: StudyConfig) -> Path:
    return config.baseline / f"run.xquad.bm25+{config.first_stage}.rrf.cross.en-en.txt"


def _check_baseline(config: StudyConfig) -> None:
    collection = _collection(config)
    needed = [collection / "folds.json", collection / "topics.xquad.en.tsv", _negatives_run(config)]
    for lang in config.evaluated_languages:
        needed += [_first_stage_run(config, lang), collection / f"qrels.xquad.cross.{lang}.txt", collection / "corpus" / lang]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ConfigError(
            f"{config.path}: the baseline folder {config.baseline} lacks {len(missing)} input(s), e.g. {missing[0]}; "
            f"build it first: clir-ot baseline --source <xquad> --output {config.baseline}"
        )


def _sha(path: Path) -> str:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return artifact_key("folder", {}, {p.relative_to(path).as_posix(): cached_sha256(p) for p in files})
    return cached_sha256(path)


def _rerank_settings(config: StudyConfig) -> dict[str, Any]:
    return {"depth": config.depth, "scoring": SCORING_VERSION, "batch_size": int(config.rerank.get("batch_size", 32)),
            "max_length": int(config.rerank.get("max_length", 256)), "dtype": str(config.rerank.get("dtype", "auto"))}


def _bitext_inputs(config: StudyConfig, lang: str) -> dict[str, str]:
    from clir_ot.distill.bitext import tatoeba_files

    if config.bitext_kind == "tatoeba":
        return {p.name: cached_sha256(p) for p in tatoeba_files(config.bitext[lang], lang)}
    return {config.bitext[lang].name: cached_sha256(config.bitext[lang])}


def _selected_model(folder: Path) -> Path:
    return folder / "best" if (folder / "best").is_dir() else folder


def plan_study(config: StudyConfig, root: str | Path | None = None) -> StudyPlan:
    """Every step of the study with its key and whether it is finished; nothing is built."""
    from clir_ot.datasets.xquad import read_folds
    from clir_ot.distill.bitext import tatoeba_files
    from clir_ot.formats import read_qrels
    from clir_ot.pipelines.xquad_teacher import teacher_dir

    _check_baseline(config)
    root = Path(root) if root is not None else Path("runs") / config.name
    store = ArtifactStore(root, config.reuse)
    collection = _collection(config)
    folds = read_folds(collection / "folds.json")
    steps: dict[str, Step] = {}
    common = {"topics": _sha(collection / "topics.xquad.en.tsv"), "folds": _sha(collection / "folds.json")}
    rerank_settings = _rerank_settings(config)

    def add(step: Step) -> Step:
        steps[step.id] = step
        return step

    for backbone in config.backbones:
        # the backbone itself
        base_step = None
        base_inputs: dict[str, Any] = {"base": backbone.base or "multilingual-e5-small (offline default)"}
        if backbone.base and Path(backbone.base).is_dir():
            base_inputs["weights"] = hash_model_folder(backbone.base)
        if backbone.layers is not None and not backbone.teachers:  # reused teachers need no backbone
            settings = {"layers": backbone.layers}
            key = artifact_key("backbone", settings, base_inputs)
            base_step = add(Step(f"backbone/{backbone.name}", "backbone",
                                 store.locate("backbone", backbone.name, key), [], settings, base_inputs,
                                 action=_build_backbone, meta={"backbone": backbone}))
            base_step.model = base_step.artifact.folder / "model"
        # teachers, one per fold
        teacher_steps = []
        for k in range(len(folds)):
            sid = f"teacher/{backbone.name}/fold{k}"
            if backbone.teachers:
                folder = _selected_model(teacher_dir(Path(backbone.teachers), k, config.first_stage))
                if not (folder / "config.json").is_file():
                    raise ConfigError(f"{config.path}: backbone {backbone.name!r}: no trained teacher for fold {k} in "
                                      f"{backbone.teachers} (expected {folder})")
                step = add(Step(sid, "teacher", None, [], {}, {"weights": hash_model_folder(folder),
                                                               "path": str(folder)}, model=folder))
            else:
                data_inputs = {**common, "qrels": _sha(collection / "qrels.xquad.cross.en.txt"),
                               "corpus": _sha(collection / "corpus" / "en"), "run": _sha(_negatives_run(config))}
                inputs = {"base": base_step.key if base_step else base_inputs, **data_inputs}
                settings = {"fold": k, "training": config.teacher.to_dict()}
                key = artifact_key("teacher", settings, inputs)
                step = add(Step(sid, "teacher", store.locate("teacher", f"{backbone.name}.fold{k}", key),
                                [base_step.id] if base_step else [], settings, inputs, action=_train_teacher,
                                meta={"backbone": backbone, "fold": k, "base_step": base_step.id if base_step else None}))
                step.model = step.artifact.folder / "model"
                step.work = {"train_steps": _teacher_steps_estimate(config, folds, k)}
            teacher_steps.append(step)

        for lang in config.evaluated_languages:
            qrels_count = len(read_qrels(collection / f"qrels.xquad.cross.{lang}.txt"))
            for method in config.methods_for(lang):
                seeds = (None,) if method.name == BASELINE_METHOD else config.seeds
                for seed in seeds:
                    fold_models = []
                    if method.name == BASELINE_METHOD:
                        fold_models = teacher_steps
                    else:
                        training, distill = config.distill_settings(method, seed)
                        for k, teacher in enumerate(teacher_steps):
                            settings = {"training": training.to_dict(), "distill": distill.to_dict(), "fold": k,
                                        "language": lang}
                            if distill.method == "score-kd" or distill.score_weight > 0 or distill.rank_weight > 0:
                                # these students train on the cross-encoder's logits: scored with the
                                # float32 head since scoring version 2 (older ones regressed bf16 logits)
                                settings["scoring"] = SCORING_VERSION
                            inputs = {"teacher": teacher.key, "bitext": _bitext_inputs(config, lang)}
                            if distill.uses_queries or distill.rank_weight > 0:
                                inputs.update(common, qrels=_sha(collection / "qrels.xquad.cross.en.txt"),
                                              corpus=_sha(collection / "corpus" / "en"),
                                              run=_sha(_negatives_run(config)))
                            key = artifact_key("student", settings, inputs)
                            label = f"{backbone.name}.{method.name}.{lang}.fold{k}.seed{seed}"
                            step = add(Step(f"student/{backbone.name}/{method.name}/{lang}/fold{k}/seed{seed}", "student",
                                            store.locate("student", label, key),
                                            [teacher.id] if teacher.artifact else [], settings, inputs,
                                            action=_distil, meta={"teacher": teacher.id, "language": lang,
                                                                  "method": method, "seed": seed, "fold": k}))
                            step.model = step.artifact.folder / "model"
                            pairs = _bitext_size(config, lang)
                            per_step = training.batch_size * training.grad_accum
                            step.work = {"train_steps": training.max_steps or training.epochs * max(1, int(pairs * (1 - distill.valid_fraction)) // per_step)}
                            fold_models.append(step)
                    settings = {**rerank_settings, "language": lang, "method": method.name, "seed": seed}
                    inputs = {"models": [m.key for m in fold_models], "first_stage": _sha(_first_stage_run(config, lang)),
                              "corpus": _sha(collection / "corpus" / lang), **common}
                    key = artifact_key("rerank", settings, inputs)
                    seed_part = "" if seed is None else f".seed{seed}"
                    label = f"{backbone.name}.{method.name}.{lang}{seed_part}"
                    step = add(Step(f"rerank/{backbone.name}/{method.name}/{lang}{'' if seed is None else f'/seed{seed}'}",
                                    "rerank", store.locate("rerank", label, key),
                                    [m.id for m in fold_models if m.artifact], settings, inputs, action=_rerank,
                                    meta={"backbone": backbone, "method": method, "language": lang, "seed": seed,
                                          "models": [m.id for m in fold_models]}))
                    step.run = step.artifact.folder / "run.txt"
                    step.work = {"pairs": qrels_count * config.depth}
    return StudyPlan(config, root, store, steps, folds)


def _bitext_size(config: StudyConfig, lang: str) -> int:
    from clir_ot.distill.bitext import tatoeba_files

    path = tatoeba_files(config.bitext[lang], lang)[0] if config.bitext_kind == "tatoeba" else config.bitext[lang]
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _teacher_steps_estimate(config: StudyConfig, folds: Sequence[Mapping], k: int) -> int:
    questions = sum(len(f["qids"]) for i, f in enumerate(folds) if i != k)
    per_step = config.teacher.batch_size * config.teacher.grad_accum
    return config.teacher.max_steps or config.teacher.epochs * max(1, int(questions * 0.9) // per_step)


# --------------------------------------------------------------------------------------------------
# actions (each returns the record fields of its artifact.json)


def _build_backbone(step: Step, plan: StudyPlan) -> dict[str, Any]:
    from clir_ot.models.derive import keep_layers

    backbone: BackboneSpec = step.meta["backbone"]
    started = time.time()
    if not (step.model / "config.json").is_file():
        keep_layers(backbone.base, step.model, backbone.layers, overwrite=True)
    return {"wall_s": round(time.time() - started, 1)}


def _train_teacher(step: Step, plan: StudyPlan) -> dict[str, Any]:
    from clir_ot.training import DataSpec, train_cross_encoder

    config = plan.config
    backbone: BackboneSpec = step.meta["backbone"]
    base = plan.steps[step.meta["base_step"]].model if step.meta["base_step"] else backbone.base
    collection = _collection(config)
    spec = DataSpec(topics=collection / "topics.xquad.en.tsv", qrels=collection / "qrels.xquad.cross.en.txt",
                    corpus=collection / "corpus" / "en", run=_negatives_run(config), folds=collection / "folds.json",
                    exclude_fold=step.meta["fold"], valid_fraction=0.1)
    resume = step.model.exists()  # resume=True also restarts a run killed before its first checkpoint
    result = train_cross_encoder(None if base is None else str(base), step.model, spec, config.teacher, resume=resume)
    return _training_record(result)


def _training_record(result) -> dict[str, Any]:
    time_info = (result.manifest or {}).get("time", {})
    return {"wall_s": time_info.get("wall_s"), "train_s": time_info.get("train_s"),
            "examples_per_s": time_info.get("examples_per_s"), "steps": result.steps, "metrics": result.metrics}


def _distil(step: Step, plan: StudyPlan) -> dict[str, Any]:
    from clir_ot.distill import read_bitext, tatoeba_files, tatoeba_pairs
    from clir_ot.distill.pipeline import distill_student
    from clir_ot.training import DataSpec

    config = plan.config
    lang, method, seed = step.meta["language"], step.meta["method"], step.meta["seed"]
    training, distill = config.distill_settings(method, seed)
    if config.bitext_kind == "tatoeba":
        pairs, files = tatoeba_pairs(config.bitext[lang], lang), list(tatoeba_files(config.bitext[lang], lang))
    else:
        pairs, files = read_bitext(config.bitext[lang]), [config.bitext[lang]]
    rank = None
    if distill.uses_queries or distill.rank_weight > 0:
        collection = _collection(config)
        rank = DataSpec(topics=collection / "topics.xquad.en.tsv", qrels=collection / "qrels.xquad.cross.en.txt",
                        corpus=collection / "corpus" / "en", run=_negatives_run(config),
                        folds=collection / "folds.json", exclude_fold=step.meta["fold"])
    teacher = plan.steps[step.meta["teacher"]].model
    resume = step.model.exists()  # resume=True also restarts a run killed before its first checkpoint
    result = distill_student(str(teacher), step.model, pairs, training, distill, rank_data=rank, bitext_files=files,
                             resume=resume)
    return _training_record(result)


def _rerank(step: Step, plan: StudyPlan) -> dict[str, Any]:
    from clir_ot.formats import RunWriter, iter_run_by_query, load_corpus, read_topics
    from clir_ot.rerank import CrossEncoderReranker, rerank_run

    config = plan.config
    backbone: BackboneSpec = step.meta["backbone"]
    method: MethodSpec = step.meta["method"]
    lang = step.meta["language"]
    folder = step.artifact.folder
    folder.mkdir(parents=True, exist_ok=True)
    imported = _importable_teacher_run(config, step)
    if imported is not None:
        shutil.copyfile(imported, folder / ".run.txt.tmp")
        os.replace(folder / ".run.txt.tmp", step.run)
        logger.info("%s: reused %s (clir-ot xquad-teacher with the same teachers)", step.id, imported)
        return {"imported_from": str(imported), "imported_sha256": cached_sha256(imported), "wall_s": 0.0}
    collection = _collection(config)
    topics = read_topics(collection / "topics.xquad.en.tsv")
    corpus = load_corpus(collection / "corpus" / lang)
    settings = _rerank_settings(config)
    started, pairs, scoring = time.time(), 0, 0.0
    parts = []
    for k, model_step in enumerate(step.meta["models"]):
        model = _selected_model(plan.steps[model_step].model)
        reranker = CrossEncoderReranker(str(model), batch_size=settings["batch_size"],
                                        max_length=settings["max_length"], dtype=settings["dtype"])
        part = folder / f"fold{k}.txt"
        report = rerank_run(reranker, _first_stage_run(config, lang), topics, corpus, part, depth=config.depth,
                            tag=f"{backbone.name}.{method.name}.en-{lang}", qids=set(plan.folds[k]["qids"]))
        pairs += report["pairs"]
        scoring += report["pairs"] / report["pairs_per_second"] if report["pairs_per_second"] else 0.0
        parts.append(part)
    with RunWriter(step.run, tag=f"{backbone.name}.{method.name}.en-{lang}", keep_order=True) as writer:
        for part in parts:
            for qid, hits in iter_run_by_query(part):
                writer.write(qid, hits)
    for part in parts:
        part.unlink()
    return {"wall_s": round(time.time() - started, 1), "pairs": pairs,
            "pairs_per_s": round(pairs / scoring, 2) if scoring else None}


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
    ArtifactStore.finish(step.artifact, {"step": step.id, "settings": step.settings, "inputs": step.inputs,
                                         "deps": {d: plan.steps[d].key for d in step.deps},
                                         "study": plan.config.name, "seed": step.meta.get("seed"), **record})
    logger.info("step %s: done in %.0f s", step.id, time.time() - started)


def run_step_by_id(config_path: str, root: str, step_id: str, threads: int | None = None) -> str:
    """Build one step (used by the parallel workers and under torchrun)."""
    from clir_ot.study.config import load_study_config

    if threads:
        import torch

        torch.set_num_threads(threads)
    plan = plan_study(load_study_config(config_path), root)
    step = plan.steps[step_id]
    if not step.done:
        _execute(step, plan)
    return step_id


def _devices() -> int:
    try:
        import torch

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
    """Plan the study, build every unfinished step (``jobs`` at a time), evaluate and report."""
    plan = plan_study(config, root)
    if dry_run:
        sys.stdout.write(format_plan(plan) + "\n")
        return plan
    plan.root.mkdir(parents=True, exist_ok=True)
    with atomic_open(plan.root / "study.json") as handle:
        json.dump(describe(config), handle, indent=1)
    pending = plan.pending()
    logger.info("study %s: %d steps, %d to build (%s)", config.name, len(plan.steps), len(pending),
                estimate_text(plan))
    devices = _devices()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc=f"study {config.name}", unit="step")
    try:
        if jobs <= 1:
            for step in pending:
                if step.kind in ("teacher", "student") and devices > 1:
                    _run_with_torchrun(plan, step, devices)
                else:
                    _execute(step, plan)
                bar.update(1)
        else:
            _run_parallel(plan, pending, jobs, bar)
    finally:
        bar.close()
    plan = plan_study(config, root)  # re-read what is finished
    if report:
        from clir_ot.study.evaluate import write_study_report

        write_study_report(plan)
    return plan


def _run_parallel(plan: StudyPlan, pending: list[Step], jobs: int, bar) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    waiting = {s.id: s for s in pending}
    done_ids = {s.id for s in plan.order() if s.done}
    running: dict[Any, str] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while waiting or running:
            ready = [s for s in waiting.values() if all(d in done_ids for d in s.deps)]
            for step in ready[: max(0, jobs - len(running))]:
                del waiting[step.id]
                future = pool.submit(run_step_by_id, str(plan.config.path), str(plan.root), step.id, threads)
                running[future] = step.id
            if not running:
                raise ConsistencyError(f"steps {sorted(waiting)} wait on steps that cannot finish")
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                step_id = running.pop(future)
                future.result()  # re-raise a worker's error
                done_ids.add(step_id)
                bar.update(1)


def _rates(plan: StudyPlan) -> dict[str, float]:
    """Measured rates from finished artifacts (seconds per step, pairs per second), else the defaults."""
    rates = dict(DEFAULT_RATES)
    for kind, key in (("teacher", "teacher_s_per_step"), ("student", "student_s_per_step")):
        values = []
        for step in plan.steps.values():
            if step.kind == kind and step.artifact is not None and step.artifact.done:
                record = step.artifact.record()
                if record.get("train_s") and record.get("steps"):
                    values.append(record["train_s"] / record["steps"])
        if values:
            rates[key] = sum(values) / len(values)
    values = [s.artifact.record().get("pairs_per_s") for s in plan.steps.values()
              if s.kind == "rerank" and s.artifact is not None and s.artifact.done]
    values = [v for v in values if v]
    if values:
        rates["rerank_pairs_per_s"] = sum(values) / len(values)
    return rates


def _importable_teacher_run(config: StudyConfig, step: Step) -> Path | None:
    """The `clir-ot xquad-teacher` run a ``none`` rerank step can reuse: from the backbone's teachers
    folder and scored with the current :data:`~clir_ot.rerank.base.SCORING_VERSION`; ``None`` otherwise."""
    backbone, method, lang = step.meta["backbone"], step.meta["method"], step.meta["language"]
    if method.name != BASELINE_METHOD or not backbone.teachers:
        return None
    run = Path(backbone.teachers) / f"run.xquad.{config.first_stage}+teacher.cross.en-{lang}.txt"
    return run if run.is_file() and recorded_scoring_version(run) == SCORING_VERSION else None


def _seconds(config: StudyConfig, step: Step, rates: Mapping[str, float]) -> float:
    if step.kind == "teacher":
        return step.work.get("train_steps", 0) * rates["teacher_s_per_step"]
    if step.kind == "student":
        return step.work.get("train_steps", 0) * rates["student_s_per_step"]
    if step.kind == "rerank":
        if _importable_teacher_run(config, step) is not None:
            return 0.0
        return step.work.get("pairs", 0) / rates["rerank_pairs_per_s"]
    return 10.0


def estimate_text(plan: StudyPlan) -> str:
    rates = _rates(plan)
    seconds = sum(_seconds(plan.config, s, rates) for s in plan.pending())
    return f"about {seconds / 60:.0f} min of work left at {rates['rerank_pairs_per_s']:.0f} pairs/s reranking, " \
           f"{rates['student_s_per_step']:.1f} s per distillation step"


def format_plan(plan: StudyPlan) -> str:
    """The --dry-run table: every step, whether it is cached (and where), and the work left."""
    rates = _rates(plan)
    lines = [f"study {plan.config.name} ({plan.config.path}) -> {plan.root}", ""]
    lines.append(f"{'step':58s} {'status':26s} {'work':>14s} {'est.':>8s}")
    for step in plan.order():
        if step.artifact is None:
            status = "reused teacher"
        elif step.done:
            status = "cached" if plan.root in step.artifact.folder.parents else \
                f"reused ({step.artifact.folder.parents[2].name})"
        elif step.artifact.folder.exists():
            status = "partial (will resume)"
        else:
            status = "to build"
        work = " ".join(f"{int(v)} {k.replace('_', ' ')}" for k, v in step.work.items()) if not step.done else ""
        est = f"{_seconds(plan.config, step, rates) / 60:.1f} min" if not step.done else ""
        lines.append(f"{step.id:58s} {status:26s} {work:>14s} {est:>8s}")
    pending = plan.pending()
    lines += ["", f"{len(plan.steps)} steps, {len(plan.steps) - len(pending)} finished, {len(pending)} to build; "
              + estimate_text(plan)]
    return "\n".join(lines)
