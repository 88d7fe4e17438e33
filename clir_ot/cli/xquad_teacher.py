"""``clir-ot xquad-teacher``: the cross-fitted English teacher on XQuAD (train per fold, rerank, evaluate)."""
from __future__ import annotations

import argparse
import sys

from clir_ot.cli.arguments import input_file, positive_float, positive_int, working_dir, xquad_language_code
from clir_ot.datasets.xquad import DEFAULT_LANGUAGES
from clir_ot.pipelines.xquad_baseline import render_table
from clir_ot.pipelines.xquad_teacher import INTERPOLATED, MEASURES, SETTINGS, TeacherData, run_xquad_teacher
from clir_ot.training import TRAINING_DTYPES, TrainingConfig


DESCRIPTION = """\
Needs the outputs of `clir-ot baseline` (collection, BM25 and dense runs). Trains one cross-encoder
per article fold on the other folds' English questions (hard negatives from the BM25+dense RRF run),
reranks each fold's questions with its own teacher in every language, merges and evaluates. Reuses
finished steps; training resumes from checkpoints.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("xquad-teacher", help="train the English teacher per XQuAD fold and rerank every language (cross-fitted)",
                                   description=DESCRIPTION)
    parser.add_argument("--output", default="runs/xquad", type=working_dir,
                        help="folder of the baseline outputs, where teacher/ is written (default runs/xquad)")
    parser.add_argument("--base", default=None, help="backbone (default: the offline multilingual-e5-small)")
    parser.add_argument("--languages", nargs="+", default=list(DEFAULT_LANGUAGES), type=xquad_language_code,
                        metavar="LANG")
    parser.add_argument("--depth", type=positive_int, default=10, help="first-stage hits reranked per question (default 10)")
    parser.add_argument("--config", default=None, type=input_file, help="JSON TrainingConfig settings")
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--max-steps", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None, help="training groups per step")
    parser.add_argument("--lr", type=positive_float, default=None)
    parser.add_argument("--max-length", type=positive_int, default=None,
                        help="tokens per pair, in training and reranking (default: the config's, else 256)")
    parser.add_argument("--dtype", choices=TRAINING_DTYPES, default=None,
                        help="compute precision of training and reranking (default: the config's, else auto)")
    recipe = parser.add_argument_group("the recipe's data (docs/training.md: the recipe search)")
    recipe.add_argument("--negatives-from", choices=("fused", "dense"), default="fused",
                        help="hard negatives from the BM25+dense RRF run (default) or the dense first stage")
    recipe.add_argument("--soft-targets", action="store_true",
                        help="the dense first stage's scores are soft targets (set soft_weight in --config)")
    recipe.add_argument("--validate-on", choices=("negatives", "first-stage"), default="negatives",
                        help="validation reranks the held-out questions' top documents of the negatives run "
                        "(default) or of the dense first stage")
    recipe.add_argument("--interpolate", action="store_true",
                        help="also report the teacher interpolated with the first-stage score (weight chosen per "
                        "fold on its validation questions)")
    parser.set_defaults(func=run)
    return parser


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The teachers' settings: ``--config``'s (or the defaults), with the flags given on the command line
    over them; its ``max_length`` and ``dtype`` are the reranking's too."""
    overrides = {k: v for k, v in {"epochs": args.epochs, "max_steps": args.max_steps, "batch_size": args.batch_size,
                                   "lr": args.lr, "max_length": args.max_length, "dtype": args.dtype}.items()
                 if v is not None}
    return TrainingConfig.from_json(args.config, overrides) if args.config else TrainingConfig.from_dict(overrides)


def run(args: argparse.Namespace) -> int:
    config = training_config(args)
    data = TeacherData(negatives=args.negatives_from, soft_targets=args.soft_targets, validate_on=args.validate_on,
                       interpolate=args.interpolate)
    result = run_xquad_teacher(args.output, config, args.languages, depth=args.depth, base=args.base,
                               max_length=config.max_length, dtype=config.dtype, data=data)
    sys.stdout.write(f"\nEnglish teacher, cross-fitted, reranking the top {args.depth} of the dense first stage\n\n")
    sys.stdout.write(render_table(result.table, MEASURES, (*SETTINGS, INTERPOLATED) if args.interpolate else SETTINGS))
    return 0
