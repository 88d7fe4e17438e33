"""``clir-ot pyserini MODULE [ARGS...]``: run any Pyserini command line with the JVM booted correctly.

``python -m pyserini.search.lucene --index ...`` becomes ``clir-ot pyserini pyserini.search.lucene
--index ...``: the JVM is started on Java >= 21 (see :mod:`clir_ot.java`), its ``bin/`` is first on
``PATH`` for modules that spawn ``java`` (``pyserini.eval.trec_eval``), and the module runs as
``__main__`` in this process.
"""
from __future__ import annotations

import argparse

from clir_ot.java import run_pyserini_module


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pyserini", help="run a Pyserini module (python -m pyserini...) on the right JVM",
        description="Run 'python -m MODULE ARGS...' for a Pyserini module with the JVM booted by clir_ot.",
    )
    parser.add_argument("module", help="e.g. pyserini.search.lucene or pyserini.eval.trec_eval")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the module's own arguments, passed unchanged")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    return run_pyserini_module(args.module, list(args.args))
