"""``clir-ot index``: build a Lucene index with the analyzer of a language."""
from __future__ import annotations

import argparse

from clir_ot.cli.arguments import input_path, output_dir, positive_int
from clir_ot.retrieval.analysis import THAI_TOKENIZERS
from clir_ot.retrieval.lucene import build_index


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "index", help="build a Lucene (BM25) index of a JSONL corpus",
        description="Index a JSONL corpus ({\"id\", \"contents\"} per line; a file or a folder) with the Lucene "
        "analyzer of --language. An unsupported language is an error, never a silent fallback to English.",
    )
    parser.add_argument("--input", "--corpus", dest="input", required=True, type=input_path, help="JSONL corpus file or folder")
    parser.add_argument("--index", required=True, type=output_dir, help="output index folder")
    parser.add_argument("--language", required=True,
                        help="code of the documents' language: ISO 639-1/639-3, BCP-47 or FLORES (en, sw, swh, swh_Latn)")
    parser.add_argument("--analyzer", default="auto",
                        help="force an analysis: standard (UAX #29 words, lower-cased), whitespace, icu (dictionary "
                        "word break) or a Lucene analyzer class; default auto: the language's analyzer, else a "
                        "logged script fallback (docs/languages.md). Recorded in the index; search reuses it")
    parser.add_argument("--threads", type=positive_int, default=1, help="indexing threads (default 1)")
    parser.add_argument("--thai-tokenizer", choices=THAI_TOKENIZERS, default="auto",
                        help="Thai segmentation: Lucene's (needs a full JDK), PyThaiNLP's, or auto (default)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    build_index(args.input, args.index, args.language, threads=args.threads, thai_tokenizer=args.thai_tokenizer,
                analyzer=args.analyzer)
    return 0
