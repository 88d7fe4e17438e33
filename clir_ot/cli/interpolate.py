"""``clir-ot interpolate``: a reranked run combined with its first stage, score by score."""
from __future__ import annotations

import argparse
import json
import logging

from clir_ot.cli.arguments import input_file, measure, output_file, positive_int, run_tag, unit_interval
from clir_ot.errors import ConfigError
from clir_ot.formats import iter_run_by_query, load_run, read_qrels, write_run
from clir_ot.rerank.interpolation import choose_weight, interpolate_run

logger = logging.getLogger(__name__)


DESCRIPTION = """\
Reranking interpolation: for each query's first-stage top DEPTH, w * minmax(reranker) + (1 - w) *
minmax(first stage); the rest keeps its first-stage order. The weight is given (--weight) or chosen
on held-out queries (--tune-run/--tune-first-stage/--tune-qrels: runs of other queries, e.g.
validation questions), never on the queries it is applied to.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("interpolate", help="combine a reranked run with its first stage's scores",
                                   description=DESCRIPTION)
    parser.add_argument("--run", required=True, type=input_file, help="the reranked run (clir-ot rerank's output)")
    parser.add_argument("--first-stage", required=True, type=input_file, help="the run that was reranked")
    parser.add_argument("--output", required=True, type=output_file, help="the interpolated run")
    parser.add_argument("--depth", type=positive_int, default=None,
                        help="how many hits were reranked (default: read from the run, whose hits below the "
                        "reranked head keep the first-stage order one point apart)")
    parser.add_argument("--weight", type=unit_interval, default=None, help="reranker weight in [0, 1]")
    tune = parser.add_argument_group("choosing the weight on held-out queries")
    tune.add_argument("--tune-run", type=input_file, default=None, help="reranked run of the tuning queries")
    tune.add_argument("--tune-first-stage", type=input_file, default=None, help="their first-stage run")
    tune.add_argument("--tune-qrels", type=input_file, default=None, help="their qrels")
    tune.add_argument("--tune-measure", type=measure, default="RR@10", help="measure to maximise (default RR@10)")
    parser.add_argument("--run-tag", type=run_tag, default="interpolated")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    tuning = (args.tune_run, args.tune_first_stage, args.tune_qrels)
    if (args.weight is None) == all(t is None for t in tuning) or (any(tuning) and not all(tuning)):
        raise ConfigError("give --weight, or all of --tune-run, --tune-first-stage and --tune-qrels (not both)")
    first_stage, reranked = dict(iter_run_by_query(args.first_stage)), load_run(args.run)
    if not first_stage:
        raise ConfigError(f"{args.first_stage}: the first-stage run is empty")
    extra = [q for q in reranked if q not in first_stage]
    if extra:
        raise ConfigError(f"{args.run} has {len(extra)} queries that {args.first_stage} lacks (e.g. {extra[0]!r}): "
                          "give the first-stage run that was reranked")
    weight = args.weight
    if weight is None:
        tune_first_stage = dict(iter_run_by_query(args.tune_first_stage))
        shared = [q for q in tune_first_stage if q in first_stage]
        if shared:
            raise ConfigError(f"{args.tune_first_stage} shares {len(shared)} of its queries with {args.first_stage} "
                              f"(e.g. {shared[0]!r}): the weight must be chosen on other queries than those it is applied to")
        choice = choose_weight(tune_first_stage, load_run(args.tune_run), read_qrels(args.tune_qrels),
                               depth=args.depth, measure=args.tune_measure)
        weight = choice.weight
        logger.info("weight %.2f chosen on %d queries (%s %.4f); curve %s", weight, choice.queries, choice.measure,
                    choice.value, json.dumps(choice.curve))
    mixed = interpolate_run(first_stage, reranked, weight, args.depth)
    write_run(args.output, mixed, tag=args.run_tag, keep_order=True)
    logger.info("wrote %d queries to %s (reranker weight %.2f)", len(mixed), args.output, weight)
    return 0
