"""``clir-ot xquad``: turn XQuAD's SQuAD-format files into retrieval collections."""
from __future__ import annotations

import argparse

from clir_ot.cli.arguments import output_dir, positive_int, xquad_language_code, xquad_source
from clir_ot.datasets.xquad import DEFAULT_LANGUAGES, XQUAD_LANGUAGES, build_xquad_collections


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "xquad", help="build XQuAD retrieval collections (topics, corpora, qrels, folds)",
        description="Turn XQuAD (SQuAD-format JSON, one file per language) into topics, JSONL corpora, "
        "qrels for the cross and pool settings, and article folds.",
    )
    parser.add_argument("--source", default=None, type=xquad_source,
                        help="folder with xquad.<lang>.json files; 'download' fetches them from the official repository")
    parser.add_argument("--output", required=True, type=output_dir, help="folder for the collections")
    parser.add_argument("--languages", nargs="+", default=list(DEFAULT_LANGUAGES), type=xquad_language_code,
                        metavar="LANG", help="languages to include, by any of their codes (XQuAD has "
                        f"{' '.join(XQUAD_LANGUAGES)}; default: the 11 of the shared copy); English, whose questions "
                        "are the queries, is always included")
    parser.add_argument("--folds", type=positive_int, default=2,
                        help="number of article folds, at least 2 (default 2): each fold's models train on the others")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    source = None if args.source in (None, "download") else args.source
    build_xquad_collections(source, args.output, args.languages, folds=args.folds)
    return 0
