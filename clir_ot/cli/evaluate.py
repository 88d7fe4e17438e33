"""``clir-ot evaluate``: trec_eval measures of one or more runs, side by side.

    clir-ot evaluate --qrels QRELS --run RUN [RUN2 ...] [-m P@5 -m ndcg_cut.10 ...]
                     [--per-query] [--format tsv|markdown|json] [--output FILE] [--no-complete]

Measures may be spelled as trec_eval (``P.5``, ``recip_rank``), pytrec_eval (``P_5``) or ir_measures
(``P@5``, ``RR@10``) spells them; see :mod:`clir_ot.evaluation` for the semantics.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clir_ot.cli.arguments import add_files_argument, input_file, measure, output_file
from clir_ot.evaluation import (
    DEFAULT_MEASURES,
    FORMATS,
    Evaluation,
    evaluate,
    format_per_query,
    format_table,
    parse_measures,
)
from clir_ot.formats import atomic_open, load_run, read_qrels

logger = logging.getLogger(__name__)

_SHOWN = 5  # qids quoted in a log message


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate runs against qrels with trec_eval measures",
        description="Evaluate TREC runs against qrels with trec_eval's measures (via pytrec_eval), "
        "trec_eval -c semantics by default. Default measures: "
        + ", ".join(m.display for m in DEFAULT_MEASURES) + ".",
    )
    parser.add_argument("--qrels", required=True, type=input_file, metavar="FILE", help="TREC qrels (qid iter docid rel)")
    add_files_argument(
        parser, "--run", "--runs", dest="runs", required=True,
        help="TREC runs: --run A B or --run A --run B (named by file stem in the table)",
    )
    parser.add_argument(
        "-m", "--measure", dest="measures", action="append", type=measure, default=None, metavar="MEASURE",
        help="measure, e.g. P.5, P@5, ndcg_cut.10, RR@10, recall.100, map; repeatable, "
        "trec_eval lists such as P.5,10 accepted",
    )
    parser.add_argument(
        "--per-query", action="store_true",
        help="per-query values (trec_eval -q style) instead of one row per run",
    )
    parser.add_argument("--format", choices=FORMATS, default="tsv", help="output format (default: tsv)")
    parser.add_argument("--output", default=None, type=output_file, metavar="FILE", help="write here (atomically) instead of stdout")
    parser.add_argument(
        "--no-complete", dest="complete", action="store_false",
        help="leave qrels queries missing from a run out of its mean (default: count them as 0, trec_eval -c)",
    )
    parser.set_defaults(func=run)
    return parser


def run_names(paths: list[str]) -> list[str]:
    """Name each run by its file stem (``runs/bm25.txt.gz`` -> ``bm25``); clashing stems keep the path."""
    def stem(path: str) -> str:
        name = Path(path).name
        name = name[: -len(".gz")] if name.endswith(".gz") else name
        return Path(name).stem or name

    stems = [stem(p) for p in paths]
    return [s if stems.count(s) == 1 else p for s, p in zip(stems, paths)]


def _some(qids: tuple[str, ...]) -> str:
    shown = ", ".join(qids[:_SHOWN])
    return shown + (", ..." if len(qids) > _SHOWN else "")


def run(args: argparse.Namespace) -> int:
    measures = parse_measures(args.measures) if args.measures else DEFAULT_MEASURES
    qrels = read_qrels(args.qrels)
    logger.info("qrels %s: %d queries", args.qrels, len(qrels))
    evaluations: dict[str, Evaluation] = {}
    for name, path in zip(run_names(args.runs), args.runs):
        if name in evaluations:
            logger.warning("run %s given twice; evaluated once", path)
            continue
        ev = evaluate(qrels, load_run(path), measures, complete=args.complete, name=name)
        if ev.ignored:
            logger.warning("%s: %d queries are not in the qrels and are ignored: %s", name, len(ev.ignored), _some(ev.ignored))
        if ev.missing and len(ev.missing) == len(qrels):
            logger.warning("%s: the run has none of the %d qrels queries: every measure is 0 (is it the run of "
                           "these qrels?)", name, len(qrels))
        elif ev.missing:
            what = "count as 0 (trec_eval -c)" if args.complete else "are left out of the mean (--no-complete)"
            logger.info("%s: %d qrels queries are missing from the run and %s: %s", name, len(ev.missing), what, _some(ev.missing))
        logger.info("%s: evaluated over %d queries", name, ev.num_queries)
        evaluations[name] = ev
    if args.per_query:
        text = format_per_query(evaluations, args.format)
    else:
        text = format_table({name: ev.means for name, ev in evaluations.items()}, measures, args.format)
    if args.output:
        with atomic_open(args.output) as handle:
            handle.write(text)
        logger.info("wrote %s", args.output)
    else:
        sys.stdout.write(text)
    return 0
