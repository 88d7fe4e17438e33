"""``clir-ot fuse``: reciprocal rank fusion of TREC runs."""
from __future__ import annotations

import argparse
import logging
import os

from clir_ot.cli.arguments import add_files_argument, nonnegative_float, output_file, positive_int, run_tag
from clir_ot.errors import ConfigError
from clir_ot.retrieval.fusion import fuse_run_files

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "fuse", help="fuse runs with reciprocal rank fusion",
        description="Reciprocal rank fusion (k=60 by default) of two or more TREC runs into one.",
    )
    add_files_argument(parser, "--runs", "--run", dest="runs", required=True,
                       help="run files to fuse: --runs A B (Pyserini's spelling) or --run A --run B")
    parser.add_argument("--output", required=True, type=output_file, help="fused run file")
    parser.add_argument("--method", choices=["rrf"], default="rrf", help="fusion method (default rrf)")
    parser.add_argument("--rrf.k", dest="rrf_k", type=nonnegative_float, default=60.0, help="RRF constant k (default 60)")
    parser.add_argument("--weights", nargs="+", type=nonnegative_float, default=None, help="one weight per run (default 1)")
    parser.add_argument("--depth", type=positive_int, default=1000, help="hits read per input and written (default 1000)")
    parser.add_argument("--run-tag", type=run_tag, default="rrf")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise ConfigError("clir-ot fuse: --runs needs at least two run files")
    seen: set[str] = set()
    for path in args.runs:
        resolved = os.path.realpath(path)
        if resolved in seen:
            logger.warning("run %s given more than once: each copy is fused (its ranks count once per copy; "
                           "--weights says the same more plainly)", path)
        seen.add(resolved)
    fuse_run_files(args.runs, args.output, k=args.rrf_k, depth=args.depth, weights=args.weights, tag=args.run_tag)
    return 0
