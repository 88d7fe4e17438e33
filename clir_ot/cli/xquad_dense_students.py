"""``clir-ot xquad-dense-students``: distil the dense first stage per language and evaluate it on XQuAD.

A thin alias over the study of ``tools/studies/xquad-dense-students.yaml`` (a ``bi-encoder`` backbone):
its arguments become that study's config (``<output>/dense-students/study.yaml``), the study runs it, and
``table.dense-students.md`` is written from the study's results (:mod:`clir_ot.study.dense_students`).
"""
from __future__ import annotations

import argparse

from clir_ot.cli.arguments import input_dir, input_file, working_dir
from clir_ot.formats import read_json_object
from clir_ot.study.dense_students import run_xquad_dense_students
from clir_ot.training import TRAINING_DTYPES


DESCRIPTION = """\
Needs the outputs of `clir-ot baseline`. For each language and method: distil a bi-encoder student
from multilingual-e5-small on Tatoeba bitext, encode the language's XQuAD paragraphs with it, search
them with the original English query encoder, and compare with the dense first stage (paired
randomization test, Holm-corrected). Writes table.dense-students.md. The same study as `clir-ot
study --config tools/studies/xquad-dense-students.yaml`, with its steps under <output>/dense-
students; finished steps are reused.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("xquad-dense-students", help="distil the bi-encoder per language (ot, mse-sent, ...) and evaluate on XQuAD",
                                   description=DESCRIPTION)
    parser.add_argument("--output", default="runs/xquad", type=working_dir,
                        help="folder of the baseline outputs, where dense-students/ is written (default runs/xquad)")
    parser.add_argument("--tatoeba", required=True, type=input_dir, help="Tatoeba folder (two-file layout)")
    parser.add_argument("--languages", nargs="+", default=["th", "hi", "el"])
    parser.add_argument("--methods", nargs="+", default=["mse-sent", "ot", "ot-shuffled"],
                        help="ot, mse-sent, mse-token, score-kd, each optionally with -shuffled")
    parser.add_argument("--config", default=None, type=input_file, help="JSON of training + distillation settings")
    parser.add_argument("--dtype", choices=TRAINING_DTYPES, default="auto")
    parser.add_argument("--encoder", default=None,
                        help="the bi-encoder of the baseline's dense run: query encoder and the students' start "
                        "(default: the offline multilingual-e5-small)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    settings = {}
    if args.config:
        settings = read_json_object(args.config)
    run_xquad_dense_students(args.output, args.tatoeba, settings, languages=args.languages, methods=args.methods,
                             dtype=args.dtype, encoder=args.encoder)
    return 0
