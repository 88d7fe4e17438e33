"""The ``clir-ot`` command: a thin layer of argument parsing over the library.

Each verb lives in its own module ``clir_ot/cli/<verb>.py`` exposing ``add_parser(subparsers)``,
which registers the sub-command and sets ``func`` to a ``run(args) -> int`` that only parses
flags and calls library functions. Flag names follow Pyserini's (``--index --topics --output --hits
--language --threads --batch-size``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from clir_ot import __version__
from clir_ot.errors import ClirOtError

logger = logging.getLogger("clir_ot")

# verb -> module under clir_ot.cli; the order is the order of `clir-ot --help`
VERBS = {
    "xquad": "xquad",
    "index": "index",
    "search": "search",
    "evaluate": "evaluate",
    "fuse": "fuse",
    "baseline": "baseline",
    "models": "models",
    "encode": "encode",
    "rerank": "rerank",
    "train": "train",
    "xquad-teacher": "xquad_teacher",
    "distill": "distill",
    "xquad-dense-students": "xquad_dense_students",
    "study": "study",
    "pyserini": "pyserini",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clir-ot",
        description="Cross-lingual retrieval for low-resource languages: collections, BM25 and dense "
        "first stages, cross-encoder reranking, OT distillation and trec_eval evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"clir_ot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument(
        "--jvm-heap", default=None, metavar="SIZE",
        help="maximum JVM heap for Lucene/Anserini, e.g. 8g (default: $CLIR_OT_JVM_HEAP or the JVM default)",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module_name in VERBS.values():
        try:
            module = importlib.import_module(f"clir_ot.cli.{module_name}")
        except ModuleNotFoundError as err:
            if err.name == f"clir_ot.cli.{module_name}":
                continue  # verb not built yet
            raise
        module.add_parser(subparsers)
    return parser


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("faiss.loader", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    if args.jvm_heap:
        import os

        from clir_ot.java import HEAP_ENV

        os.environ[HEAP_ENV] = args.jvm_heap
    try:
        return int(args.func(args) or 0)
    except ClirOtError as err:
        logger.error("%s", err)
        return 2
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
