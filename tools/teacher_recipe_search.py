"""Find the English teacher's recipe by measurement: trials on XQuAD fold 0, each a change to the best so far.

Every trial trains a cross-encoder from multilingual-e5-small on the English questions of the folds
other than ``--fold`` (10% of them held out for validation, as ``clir-ot xquad-teacher`` does) and
validates every ``save_every`` steps on the held-out questions' **dense top 10** (the positive and the
9 best-ranked non-relevant paragraphs of the dense first stage: the reranking the teacher does at test
time). The validation curve, the cost (pairs/s, wall time) and the best MRR@10 are recorded beside the
dense first stage's own MRR@10 on the same groups (the goal line).

The trials run in order; a trial that names ``base="best"`` applies its change to the best recipe
found so far (by best validation MRR@10), so the search is greedy and deterministic given its results.
Finished trials are skipped and an interrupted one resumes from its checkpoint (run the same command
again); checkpoints of finished trials are deleted (GBs each). ``--report`` writes the table.

Test questions (fold ``--fold``) are never used to choose: ``--evaluate TRIAL`` reranks them once with
a chosen trial's best model (en and any ``--languages``), pure and interpolated with the first-stage
score (weight chosen on the validation questions), and prints the measures.

    python tools/teacher_recipe_search.py --output runs/xquad --search runs/teacher-search
    python tools/teacher_recipe_search.py --output runs/xquad --search runs/teacher-search --report
    python tools/teacher_recipe_search.py --output runs/xquad --search runs/teacher-search --evaluate soft-targets
    python tools/teacher_recipe_search.py --search runs/teacher-search --evaluate soft-targets --windows 4  # MaxP
    python tools/teacher_recipe_search.py --search runs/teacher-search --trials max-length-512 \
        --base-recipe tools/configs/teacher-xquad-cpu.json   # a fresh folder: start from the winner so far
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clir_ot.cli.arguments import nonnegative_int, positive_int
from clir_ot.datasets.layout import XQuADCollection, XQuADLayout
from clir_ot.errors import ClirOtError, ConfigError
from clir_ot.evaluation import evaluate
from clir_ot.formats import iter_run_by_query, load_corpus, load_run, read_folds, read_qrels, read_topics, write_run
from clir_ot.io import atomic_open
from clir_ot.rerank import CrossEncoderReranker, rerank_run
from clir_ot.rerank.interpolation import choose_weight, interpolate_run
from clir_ot.rerank.windows import DEFAULT_OVERLAP, PassageWindows
from clir_ot.training import DataSpec, TrainingConfig, load_training_data, train_cross_encoder
from clir_ot.training.validation import reciprocal_ranks

logger = logging.getLogger("teacher_recipe_search")

#: today's recipe (tools/configs/teacher-xquad-cpu.json before the search), with top-10 validation
BASE_SETTINGS: dict[str, Any] = {
    "epochs": 1, "batch_size": 4, "lr": 1e-4, "negatives": 3, "max_length": 256, "save_every": 40,
    "log_every": 10, "dtype": "auto", "valid_negatives": 9, "keep_last": 1,
}
BASE_DATA: dict[str, Any] = {"negatives_run": "fused"}
#: screening trials stop here (the learning-rate schedule decays to 0 at this step)
SCREEN_STEPS = 80


@dataclass(frozen=True)
class Trial:
    """One recipe: ``changes`` to the settings (TrainingConfig keys, and ``negatives_run``: ``fused`` or
    ``dense``) on top of today's recipe (``base="today"``) or the best trial so far (``base="best"``)."""

    name: str
    changes: dict[str, Any]
    base: str = "best"
    screen: bool = True  # stop at SCREEN_STEPS steps
    question: str = ""


TRIALS: tuple[Trial, ...] = (
    Trial("today", {}, base="today", question="today's recipe, screened at 80 steps"),
    Trial("e5-input", {"pooling": "mean", "query_prefix": "query: ", "passage_prefix": "passage: "},
          question="E5's own input format and mean pooling instead of the first token"),
    Trial("dense-negatives", {"negatives_run": "dense"}, question="hard negatives from the dense run, not the fused run"),
    Trial("soft-targets", {"soft_weight": 1.0, "soft_temperature": 0.02},
          question="a listwise KL term to the dense first stage's scores of each group"),
    Trial("negatives-7", {"negatives": 7}, question="7 negatives per group instead of 3"),
    Trial("lr-3e-5", {"lr": 3e-5}, question="learning rate 3e-5 instead of 1e-4"),
    Trial("max-length-512", {"max_length": 512, "batch_size": 2, "grad_accum": 2},
          question="512 tokens per pair instead of 256 (the length that truncates at most 5% of every "
                   "language's pairs, tools/truncation_report.py); the same global batch in two micro-batches, "
                   "as a first attempt at 4 groups x 8 passages of 512 tokens was OOM-killed on 24 GB"),
    Trial("epochs-3", {"epochs": 3}, screen=False, question="the best recipe for 3 full epochs"),
    Trial("freeze-embeddings", {"freeze_embeddings": True},
          question="the word-embedding matrix kept fixed (words English training never shows keep their "
                   "multilingual vectors: for zero-shot languages)"),
)


@dataclass
class Paths:
    """The XQuAD outputs (named by :class:`~clir_ot.datasets.layout.XQuADLayout`) and the search's folder."""

    output: Path
    search: Path
    fold: int

    @property
    def layout(self) -> XQuADLayout:
        return XQuADLayout(self.output)

    @property
    def collection(self) -> XQuADCollection:
        return self.layout.collection

    def run(self, kind: str, lang: str = "en") -> Path:
        """The ``dense`` first stage or the ``fused`` (BM25 + dense RRF) run of ``lang``."""
        if kind == "dense":
            return self.layout.first_stage_run(lang)
        if kind == "fused":
            return self.layout.rrf_run(self.layout.first_stage, lang)
        raise ConfigError(f"unknown run kind {kind!r}: dense or fused")

    def trial(self, name: str) -> Path:
        return self.search / name

    @property
    def results(self) -> Path:
        return self.search / "results.json"


def _data_spec(paths: Paths, negatives_run: str) -> DataSpec:
    c = paths.collection
    return DataSpec(topics=c.topics("en"), qrels=c.qrels("en"), corpus=c.corpus("en"),
                    run=paths.run(negatives_run), folds=c.folds, exclude_fold=paths.fold,
                    valid_fraction=0.1, valid_run=paths.run("dense"), soft_run=paths.run("dense"))


def _recipe(trial: Trial, results: dict[str, Any], base_recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings of ``trial``: its changes on today's recipe, on ``base_recipe`` (a training config)
    when one is given, or else on the best finished screen (by best validation MRR@10). With a base
    recipe every trial changes one thing on it, so trials run in a fresh folder after an earlier
    search stay one-change comparisons with that search's winner (a finished trial of the fresh folder
    is never taken as the base merely for being the only one there)."""
    if trial.base == "today":
        recipe = {**BASE_SETTINGS, **BASE_DATA}
    elif base_recipe is not None:
        recipe = {**BASE_SETTINGS, **BASE_DATA, **base_recipe}
    else:
        done = [r for r in results.values() if r.get("finished") and r.get("screen", True)]
        if done:
            recipe = dict(max(done, key=lambda r: r["best_mrr"])["recipe"])
        else:
            raise SystemExit(f"trial {trial.name} builds on the best trial so far, but none has finished "
                             "(run the earlier trials, or give --base-recipe)")
    recipe.update(trial.changes)
    if trial.screen:
        recipe["max_steps"] = SCREEN_STEPS
    else:
        recipe.pop("max_steps", None)
    return recipe


def _load_results(paths: Paths) -> dict[str, Any]:
    return json.loads(paths.results.read_text()) if paths.results.is_file() else {}


def _save_results(paths: Paths, results: dict[str, Any]) -> None:
    with atomic_open(paths.results) as handle:
        json.dump(results, handle, indent=1)


def _curve(folder: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": r["step"], **r["valid"]} for r in rows if "valid" in r]


def run_trial(paths: Paths, trial: Trial, results: dict[str, Any],
              base_recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    recipe = _recipe(trial, results, base_recipe)
    settings = {k: v for k, v in recipe.items() if k != "negatives_run"}
    spec = _data_spec(paths, recipe["negatives_run"])
    folder = paths.trial(trial.name)
    logger.info("trial %s (%s): %s", trial.name, trial.question, json.dumps(recipe))
    result = train_cross_encoder(None, folder, spec, TrainingConfig.from_dict(settings, where=f"trial {trial.name}"),
                                 resume=True)
    manifest = result.manifest
    data = load_training_data(spec, negatives=settings["negatives"], valid_negatives=settings["valid_negatives"])
    first_stage = float(reciprocal_ranks([np.asarray(g.target_scores) for g in data.valid]).mean())
    record = {
        "name": trial.name, "question": trial.question, "recipe": recipe, "screen": trial.screen, "finished": True,
        "curve": _curve(folder), "best_mrr": manifest["metrics"]["best"]["value"],
        "best_step": manifest["metrics"]["best"]["step"], "valid_questions": len(data.valid),
        "first_stage_mrr": first_stage, "steps": manifest["steps"],
        "wall_s": manifest["time"]["wall_s"], "pairs_per_s": manifest["time"]["pairs_per_s"],
        # what a rerun elsewhere must match to reproduce the curve: the training data (its negatives come
        # from the first-stage runs) and the hardware and threads the bf16 kernels ran on
        "data_fingerprint": manifest["resolved"]["data_fingerprint"],
        "hardware": manifest["resolved"].get("hardware"), "threads": manifest["resolved"].get("threads"),
    }
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return record


def search(paths: Paths, names: list[str] | None, base_recipe: dict[str, Any] | None = None) -> None:
    results = _load_results(paths)
    for trial in TRIALS:
        if names and trial.name not in names:
            continue
        if results.get(trial.name, {}).get("finished"):
            logger.info("trial %s finished before: best MRR@10 %.4f", trial.name, results[trial.name]["best_mrr"])
            continue
        results[trial.name] = run_trial(paths, trial, results, base_recipe)
        _save_results(paths, results)
        r = results[trial.name]
        logger.info("trial %s: best MRR@10 %.4f at step %d (dense first stage %.4f), %.0f s, %.2f pairs/s",
                    trial.name, r["best_mrr"], r["best_step"], r["first_stage_mrr"], r["wall_s"], r["pairs_per_s"])


def report(paths: Paths) -> str:
    results = _load_results(paths)
    lines = ["| trial | question | change | steps | MRR@10 per 40 steps | best MRR@10 | dense first stage | wall s | pairs/s |",
             "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for trial in TRIALS:
        r = results.get(trial.name)
        if not r:
            continue
        curve = " / ".join(f"{p['MRR@10']:.3f}" for p in r["curve"])
        change = ", ".join(f"{k}={v}" for k, v in trial.changes.items()) or "—"
        lines.append(f"| {trial.name} | {trial.question} | {change} | {r['steps']} | {curve} | {r['best_mrr']:.4f} | "
                     f"{r['first_stage_mrr']:.4f} | {r['wall_s']:.0f} | {r['pairs_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


def _test_qids(paths: Paths) -> set[str]:
    """The questions of the held-out fold (the test fold: never used to choose anything)."""
    return {str(q) for q in read_folds(paths.collection.folds)[paths.fold]["qids"]}


def evaluate_trial(paths: Paths, name: str, languages: list[str], depth: int = 10,
                   windows: PassageWindows = PassageWindows()) -> dict[str, Any]:
    """Rerank fold ``paths.fold``'s test questions with trial ``name``'s best model (pure and interpolated);
    with ``windows`` enabled, passages longer than the model's input are scored by their best window
    (MaxP), recorded as ``evaluation.windows<N>`` (``.overlap<T>`` when not the default overlap) beside
    the truncating ``evaluation``."""
    results = _load_results(paths)
    record = results[name]
    recipe = record["recipe"]
    model_dir = paths.trial(name) / "best"
    spec = _data_spec(paths, recipe["negatives_run"])
    data = load_training_data(spec, negatives=recipe["negatives"], valid_negatives=recipe["valid_negatives"])
    valid_qids = {g.qid for g in data.valid}
    test_qids = _test_qids(paths)
    topics = read_topics(paths.collection.topics("en"))
    reranker = CrossEncoderReranker(model_dir, max_length=recipe["max_length"], dtype="auto", windows=windows)
    suffix = f".windows{windows.max_windows}" if windows.enabled else ""
    if windows.enabled and windows.overlap != DEFAULT_OVERLAP:
        suffix += f".overlap{windows.overlap}"
    out = paths.search / f"eval.{name}{suffix}"
    out.mkdir(parents=True, exist_ok=True)

    def rerank_subset(lang: str, qids: set[str], tag: str) -> tuple[dict, dict]:
        first = {q: hits for q, hits in iter_run_by_query(paths.run("dense", lang)) if q in qids}
        subset = out / f"run.dense.{tag}.en-{lang}.txt"
        write_run(subset, first, tag="dense", keep_order=True)
        reranked_path = out / f"run.teacher.{tag}.en-{lang}.txt"
        corpus = load_corpus(paths.collection.corpus(lang))
        rerank_run(reranker, subset, {q: topics[q] for q in qids}, corpus, reranked_path, depth=depth)
        return first, load_run(reranked_path)

    first_valid, reranked_valid = rerank_subset("en", valid_qids, "valid")
    qrels_en = read_qrels(paths.collection.qrels("en"))
    choice = choose_weight(first_valid, reranked_valid, qrels_en, depth=depth)
    logger.info("interpolation weight %.2f chosen on %d validation questions (RR@10 %.4f)", choice.weight,
                choice.queries, choice.value)
    table: dict[str, Any] = {"weight": choice.weight, "curve": choice.curve, "languages": {}}
    measures = ["P@5", "Success@5", "RR@10"]
    for lang in ["en", *languages]:
        qrels = read_qrels(paths.collection.qrels(lang))
        qrels = {q: v for q, v in qrels.items() if q in test_qids}
        first, reranked = rerank_subset(lang, test_qids, "test")
        mixed = interpolate_run(first, reranked, choice.weight, depth)
        row = {}
        for label, run in (("first stage", {q: {h.docid: h.score for h in hs} for q, hs in first.items()}),
                           ("teacher", reranked),
                           ("interpolated", {q: {h.docid: h.score for h in hs} for q, hs in mixed.items()})):
            row[label] = evaluate(qrels, run, measures, name=f"{label} {lang}").means
        table["languages"][lang] = row
        logger.info("%s: %s", lang, json.dumps(row))
    if windows.enabled:
        table["windows"] = {"max_windows": windows.max_windows, "overlap": windows.overlap}
    record[f"evaluation{suffix}"] = table
    results[name] = record
    _save_results(paths, results)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("runs/xquad"), help="XQuAD outputs of `make demo`")
    parser.add_argument("--search", type=Path, default=Path("runs/teacher-search"), help="the search's folder")
    parser.add_argument("--fold", type=nonnegative_int, default=0)
    parser.add_argument("--trials", nargs="+", default=None, help="run only these trials (default: all, in order)")
    parser.add_argument("--report", action="store_true", help="print the table of finished trials")
    parser.add_argument("--evaluate", default=None, help="rerank the test fold with this trial's best model")
    parser.add_argument("--languages", nargs="*", default=["th", "hi", "el"])
    parser.add_argument("--windows", type=positive_int, default=1,
                        help="with --evaluate: score a passage longer than the input in up to this many windows (MaxP)")
    parser.add_argument("--window-overlap", type=nonnegative_int, default=None,
                        help=f"with --windows: tokens shared by consecutive windows (default {DEFAULT_OVERLAP})")
    parser.add_argument("--base-recipe", type=Path, default=None,
                        help="a training config JSON on which every trial changes one thing, instead of the best "
                             "screened trial in --search (e.g. tools/configs/teacher-xquad-cpu.json, the winner so far)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    paths = Paths(args.output, args.search, args.fold)
    paths.search.mkdir(parents=True, exist_ok=True)
    if args.report:
        sys.stdout.write(report(paths))
        return 0
    if not args.evaluate and (args.windows != 1 or args.window_overlap is not None):
        raise SystemExit("--windows and --window-overlap apply to --evaluate (training truncates at max_length)")
    if args.evaluate:
        if args.window_overlap is not None and args.windows == 1:
            raise SystemExit("--window-overlap needs --windows N (N > 1): without windows a long passage is truncated")
        try:
            windows = PassageWindows(args.windows, DEFAULT_OVERLAP if args.window_overlap is None else args.window_overlap)
        except ClirOtError as err:
            raise SystemExit(f"--windows {args.windows} --window-overlap {args.window_overlap}: {err}")
        evaluate_trial(paths, args.evaluate, args.languages, windows=windows)
        return 0
    base_recipe = None
    if args.base_recipe is not None:
        try:
            base_recipe = json.loads(args.base_recipe.read_text(encoding="utf-8"))
            TrainingConfig.from_dict(base_recipe, where=str(args.base_recipe))  # unknown keys, bad types
        except (OSError, ValueError, ClirOtError) as err:
            raise SystemExit(f"--base-recipe {args.base_recipe}: {err}")
    search(paths, args.trials, base_recipe)
    sys.stdout.write(report(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
