"""``clir-ot distill``: distil a multilingual student from the English teacher with bitext (OPTICAL and baselines).

Under torchrun: ``torchrun --nproc-per-node N -m clir_ot -- distill ...`` (see ``clir-ot train``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clir_ot.cli.arguments import (fraction, input_dir, input_file, input_path, nonnegative_float, nonnegative_int,
                                   output_dir, positive_float, positive_int, torch_device)
from clir_ot.datasets.layout import XQuADCollection, XQuADLayout
from clir_ot.distill import (
    check_bitext_leakage,
    read_bitext,
    tatoeba_files,
    tatoeba_pairs,
    xquad_paragraph_pairs,
    xquad_query_bitext,
)
from clir_ot.distill.pipeline import distill_student
from clir_ot.distill.trainer import split_settings
from clir_ot.errors import ConfigError
from clir_ot.formats import read_text
from clir_ot.io import is_tsv
from clir_ot.training import TRAINING_DTYPES, DataSpec

# flag -> setting; a flag given on the command line wins over --config
SETTING_FLAGS = {
    "method": "method", "model_type": "model_type", "mode": "mode", "layers": "layers", "epsilon": "epsilon",
    "marginal_penalty": "marginal_penalty", "rank_weight": "rank_weight", "score_weight": "score_weight",
    "distill_weight": "distill_weight", "valid_fraction": "valid_fraction", "patience": "patience",
    "epsilon_mode": "epsilon_mode", "centre": "centre", "shuffled": "shuffle_bitext",
    "freeze_embeddings": "freeze_embeddings", "epochs": "epochs", "max_steps": "max_steps", "batch_size": "batch_size", "grad_accum": "grad_accum",
    "lr": "lr", "max_length": "max_length", "save_every": "save_every", "seed": "seed", "dtype": "dtype",
    "negatives": "negatives",
}


DESCRIPTION = """\
Initialise a student from the frozen teacher and train it on bitext so that it represents the
foreign side as the teacher represents the English side: optimal-transport token alignment
(OPTICAL), sentence MSE, hard token alignment or score distillation, optionally with the English
ranking loss. Held-out bitext gives the validation loss (best model in OUT/best, early stopping with
--patience). Checkpoints, --resume, torchrun and training.json as for `clir-ot train`.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("distill", help="distil a multilingual student from the teacher with bitext (ot, mse-sent, mse-token, score-kd)",
                                   description=DESCRIPTION)
    parser.add_argument("--teacher", required=True,
                        help="the teacher: a cross-encoder folder (from `clir-ot train`), or a bi-encoder with "
                        "--model-type bi-encoder (e.g. multilingual-e5-small)")
    parser.add_argument("--out", "--output", dest="out", required=True, type=output_dir, help="output folder of the student")
    bitext = parser.add_argument_group("bitext (--bitext or --tatoeba, and/or --xquad-bitext)")
    bitext.add_argument("--bitext", default=None, type=input_file, help="TSV (english<TAB>foreign) or JSONL {english, foreign}")
    bitext.add_argument("--tatoeba", default=None, type=input_dir, help="folder in Tatoeba's two-file layout, with --language")
    bitext.add_argument("--language", default=None, help="ISO code of the foreign language (with --tatoeba)")
    bitext.add_argument("--valid-bitext", default=None, type=input_file, help="held-out bitext (default: --valid-fraction of it)")
    bitext.add_argument("--add-xquad-paragraphs", default=None, type=input_dir, metavar="COLLECTION",
                        help="add the parallel XQuAD paragraphs of the training folds (needs --exclude-fold)")
    bitext.add_argument("--xquad-bitext", default=None, type=input_dir, metavar="XQUAD_DIR",
                        help="in-domain query bitext: the training folds' English questions, each with its paragraph "
                        "in English and in --language, from an XQuAD output folder (XQUAD_DIR/collection, e.g. "
                        "runs/xquad); needs --exclude-fold and --mode query or --method score-kd; alone or added to "
                        "--tatoeba/--bitext; its folds.json also cross-fits the English relevance data unless --folds "
                        "is given")
    bitext.add_argument("--xquad-negatives", default=0, type=nonnegative_int, metavar="N",
                        help="with --xquad-bitext: also each question's top N non-relevant training-fold paragraphs "
                        "of the first-stage run (default 0)")
    bitext.add_argument("--xquad-negatives-run", default=None, type=input_file, metavar="RUN",
                        help="the run those negatives come from (default: the dense first stage of --language, "
                        "XQUAD_DIR/run.xquad.e5-small.cross.en-<language>.txt)")
    method = parser.add_argument_group("distillation")
    method.add_argument("--method", choices=("ot", "mse-sent", "mse-token", "score-kd"), default=None,
                        help="default ot")
    method.add_argument("--model-type", choices=("cross-encoder", "bi-encoder"), default=None,
                        help="the reranker (default) or the dense first stage's encoder")
    method.add_argument("--mode", choices=("passage", "query"), default=None,
                        help="passage: each side alone (default); query: an English training query before both")
    method.add_argument("--layers", type=int, nargs="+", default=None, help="hidden layers aligned (default -1: last)")
    method.add_argument("--epsilon", type=positive_float, default=None, help="entropic regularisation (default 0.1, relative)")
    method.add_argument("--epsilon-mode", choices=("relative", "absolute"), default=None,
                        help="relative: epsilon times the mean cost of each pair (default); absolute: as given")
    method.add_argument("--centre", action=argparse.BooleanOptionalAction, default=None,
                        help="subtract the batch's mean token state before the cosine cost (default off)")
    method.add_argument("--marginal-penalty", type=positive_float, default=None, help="unbalanced OT (default: balanced)")
    method.add_argument("--distill-weight", type=nonnegative_float, default=None, help="weight of the distillation term (default 1)")
    method.add_argument("--rank-weight", type=nonnegative_float, default=None, help="weight of the English ranking loss (default 0)")
    method.add_argument("--score-weight", type=nonnegative_float, default=None, help="weight of added score distillation (default 0)")
    method.add_argument("--shuffled", action=argparse.BooleanOptionalAction, default=None,
                        help="train on the shuffled-bitext control (default off)")
    method.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the word-embedding matrix frozen (default on; --no-freeze-embeddings trains it)")
    rank = parser.add_argument_group("English relevance data (rank term, queries of query mode and score-kd)")
    rank.add_argument("--topics", default=None, type=input_file)
    rank.add_argument("--qrels", default=None, type=input_file)
    rank.add_argument("--corpus", default=None, type=input_path)
    rank.add_argument("--run", default=None, type=input_file, help="first-stage run for hard negatives")
    rank.add_argument("--groups", default=None, type=input_file, help="JSONL groups or triples TSV instead of a collection")
    rank.add_argument("--folds", default=None, type=input_file, help="XQuAD folds.json, with --exclude-fold")
    rank.add_argument("--exclude-fold", type=nonnegative_int, default=None, help="XQuAD cross-fitting: the teacher's test fold")
    settings = parser.add_argument_group("settings (override --config)")
    settings.add_argument("--config", default=None, type=input_file,
                          help="JSON object of settings: training (batch_size, lr, ...) and distillation (method, ...)")
    settings.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    settings.add_argument("--valid-fraction", type=fraction, default=None, help="bitext held out (default 0.1)")
    settings.add_argument("--patience", type=positive_int, default=None, help="early stopping after N validations without gain")
    settings.add_argument("--epochs", type=positive_int, default=None)
    settings.add_argument("--max-steps", type=positive_int, default=None)
    settings.add_argument("--batch-size", type=positive_int, default=None, help="bitext pairs per process per micro-batch")
    settings.add_argument("--grad-accum", type=positive_int, default=None)
    settings.add_argument("--lr", type=positive_float, default=None)
    settings.add_argument("--negatives", type=positive_int, default=None, help="negatives per rank group")
    settings.add_argument("--max-length", type=positive_int, default=None)
    settings.add_argument("--save-every", type=positive_int, default=None)
    settings.add_argument("--seed", type=int, default=None)
    settings.add_argument("--dtype", choices=TRAINING_DTYPES, default=None)
    settings.add_argument("--device", type=torch_device, default=None)
    parser.set_defaults(func=run)
    return parser


def build_settings(args: argparse.Namespace):
    """(TrainingConfig, DistillationConfig) from --config and the flags."""
    data: dict = {}
    if args.config is not None:
        path = Path(args.config)
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config {path}: invalid JSON at line {err.lineno} ({err.msg})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--config {path}: expected a JSON object of settings")
    data.update({field: getattr(args, flag) for flag, field in SETTING_FLAGS.items() if getattr(args, flag) is not None})
    return split_settings(data, args.config or "command-line settings")


def read_pairs(args: argparse.Namespace):
    """The bitext of --bitext or --tatoeba (one of them, or neither with --xquad-bitext) and its files."""
    if args.bitext is not None and args.tatoeba is not None:
        raise ConfigError("give exactly one bitext source: --bitext FILE or --tatoeba DIR --language L "
                          "(--xquad-bitext may be added to either)")
    if args.tatoeba is not None:
        if not args.language:
            raise ConfigError("--tatoeba needs --language (e.g. el)")
        return tatoeba_pairs(args.tatoeba, args.language), list(tatoeba_files(args.tatoeba, args.language))
    if args.bitext is not None:
        return read_bitext(args.bitext), [args.bitext]
    if args.xquad_bitext is None:
        raise ConfigError("give exactly one bitext source: --bitext FILE or --tatoeba DIR --language L, "
                          "or --xquad-bitext XQUAD_DIR")
    return [], []


def xquad_query_pairs(args: argparse.Namespace):
    """The in-domain query bitext of --xquad-bitext (paths from :class:`XQuADLayout`) and its files."""
    layout = XQuADLayout(args.xquad_bitext)
    collection = layout.collection
    run = None
    if args.xquad_negatives:
        run = args.xquad_negatives_run or layout.first_stage_run(args.language)
    files = [collection.topics("en"), collection.qrels("en"), collection.corpus("en"),
             collection.corpus(args.language), collection.folds] + ([run] if run is not None else [])
    missing = [str(f) for f in files if not Path(f).exists()]
    if missing:
        raise ConfigError(f"--xquad-bitext {args.xquad_bitext}: missing {', '.join(missing)} (build the collection "
                          "with `clir-ot xquad`, the runs with `clir-ot baseline`)")
    pairs = xquad_query_bitext(collection.topics("en"), collection.qrels("en"), collection.corpus("en"),
                               collection.corpus(args.language), collection.folds, args.exclude_fold, run=run,
                               negatives=args.xquad_negatives)
    return pairs, files


def rank_spec(args: argparse.Namespace):
    collection = [args.topics, args.qrels, args.corpus, args.run]
    if args.groups is None and all(p is None for p in collection):
        return None
    if args.groups is not None:
        triples = args.groups if is_tsv(args.groups) else None
        return DataSpec(triples=triples, groups=None if triples else args.groups)
    folds = args.folds
    if folds is None and args.xquad_bitext is not None and args.exclude_fold is not None:
        folds = XQuADLayout(args.xquad_bitext).collection.folds  # the bitext's folds cross-fit the rank data too
    return DataSpec(topics=args.topics, qrels=args.qrels, corpus=args.corpus, run=args.run, folds=folds,
                    exclude_fold=args.exclude_fold)


def _teacher_test_fold(teacher: str) -> int | None:
    """The XQuAD fold a teacher trained by `clir-ot train` / `xquad-teacher` held out (None: unknown)."""
    folder = Path(teacher)
    manifest = next((m for m in (folder / "training.json", folder.parent / "training.json") if m.is_file()), None)
    if manifest is None:  # a hub name, or a folder not trained here
        return None
    try:
        return ((json.loads(manifest.read_text(encoding="utf-8")).get("data") or {}).get("xquad") or {}).get("test_fold")
    except (json.JSONDecodeError, AttributeError):
        return None


def check_xquad_sources(args: argparse.Namespace, distill) -> None:
    """XQuAD bitext (--add-xquad-paragraphs, --xquad-bitext) is cross-fitted: the teacher's test fold is held out."""
    for flag, given in (("--add-xquad-paragraphs", args.add_xquad_paragraphs), ("--xquad-bitext", args.xquad_bitext)):
        if not given:
            continue
        if args.exclude_fold is None or not args.language:
            raise ConfigError(f"{flag} needs --exclude-fold (the teacher's test fold) and --language")
        if distill.model_type == "bi-encoder":
            raise ConfigError(f"{flag} is for cross-encoder students: a dense student is evaluated "
                              "on every fold, so another fold's paragraphs would be its test data")
        teacher_fold = _teacher_test_fold(args.teacher)
        if teacher_fold is not None and teacher_fold != args.exclude_fold:
            raise ConfigError(f"--exclude-fold {args.exclude_fold}, but the teacher {args.teacher} was trained "
                              f"without fold {teacher_fold} (its training.json): a student must hold out the same "
                              "fold as its teacher, or the reranked test questions' paragraphs leak into training")
    if args.xquad_bitext is None and (args.xquad_negatives or args.xquad_negatives_run):
        raise ConfigError("--xquad-negatives and --xquad-negatives-run go with --xquad-bitext")
    if args.xquad_negatives_run and not args.xquad_negatives:
        raise ConfigError("--xquad-negatives-run is read only for --xquad-negatives N > 0 (the number of hard "
                          "negatives per question to take from it)")
    if args.xquad_bitext and not distill.uses_queries and not distill.rank_only:
        # the trainer refuses it too, but only after the models and the data are loaded
        raise ConfigError(f"--xquad-bitext gives each pair its English question, which {distill.method} in "
                          f"{distill.mode} mode would ignore: use --mode query or --method score-kd")


def run(args: argparse.Namespace) -> int:
    config, distill = build_settings(args)
    check_xquad_sources(args, distill)
    pairs, files = read_pairs(args)
    folds = []
    if args.add_xquad_paragraphs:
        pairs = pairs + xquad_paragraph_pairs(args.add_xquad_paragraphs, args.language, args.exclude_fold)
        files = files + [args.add_xquad_paragraphs]
        folds.append(XQuADCollection(args.add_xquad_paragraphs).folds)
    if args.xquad_bitext:
        in_domain, more = xquad_query_pairs(args)
        pairs, files = pairs + in_domain, files + more
        folds.append(XQuADLayout(args.xquad_bitext).collection.folds)
    for path in folds:  # the leakage guard over everything the student will see
        check_bitext_leakage(pairs, path, args.exclude_fold)
    valid = read_bitext(args.valid_bitext) if args.valid_bitext else None
    result = distill_student(args.teacher, args.out, pairs, config, distill, valid_pairs=valid,
                             rank_data=rank_spec(args), bitext_files=files, resume=args.resume, device=args.device)
    summary = {"output": str(result.output), "best": str(result.best) if result.best else None,
               "steps": result.steps, "metrics": result.metrics,
               "examples_per_s": (result.manifest.get("time") or {}).get("examples_per_s")}
    sys.stderr.write(json.dumps(summary) + "\n")
    return 0
