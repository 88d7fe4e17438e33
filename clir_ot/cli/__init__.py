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
import os
import sys

from clir_ot import __version__
from clir_ot.cli.arguments import ArgumentParser, jvm_heap, one_line, parse_or_exit_code
from clir_ot.errors import ClirOtError
from clir_ot.java import HEAP_ENV
from clir_ot.progress import set_progress_bars

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
    "interpolate": "interpolate",
    "train": "train",
    "xquad-teacher": "xquad_teacher",
    "distill": "distill",
    "xquad-dense-students": "xquad_dense_students",
    "study": "study",
    "pyserini": "pyserini",
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="clir-ot",
        description="Cross-lingual retrieval for low-resource languages: collections, BM25 and dense "
        "first stages, cross-encoder reranking, OT distillation and trec_eval evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"clir_ot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    parser.add_argument(
        "--jvm-heap", default=None, metavar="SIZE", type=jvm_heap,
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
    """Run one ``clir-ot`` command line and return its exit status.

    A bad argument value is one line on stderr from the parser (status 2); a toolkit error
    (:class:`~clir_ot.errors.ClirOtError`) or an unreadable or unwritable path (``OSError``) during
    the work is one ``ERROR`` log line, also on stderr (status 2), never a traceback.
    """
    parser = build_parser()
    args = parse_or_exit_code(parser, argv)
    if isinstance(args, int):
        return args
    configure_logging(args.verbose, args.quiet)
    if args.quiet:
        set_progress_bars(False)
    if args.jvm_heap:
        os.environ[HEAP_ENV] = args.jvm_heap
    try:
        return int(args.func(args) or 0)
    except ClirOtError as err:
        logger.error("%s", one_line(err))
        return 2
    except OSError as err:  # a path that cannot be read or written, found only while working
        logger.error("%s", one_line(_describe_os_error(err)))
        return 2
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130


def _describe_os_error(err: OSError) -> str:
    """``path: reason`` for an ``OSError`` that names a path, else its own text."""
    if err.filename is None or not err.strerror:
        return str(err) or type(err).__name__
    where = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else str(err.filename)
    return f"{where}: {err.strerror}"


if __name__ == "__main__":
    sys.exit(main())
