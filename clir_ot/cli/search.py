"""``clir-ot search``: first-stage retrieval of a topics file into a TREC run."""
from __future__ import annotations

import argparse
import logging

from clir_ot.cli.arguments import input_dir, input_file, nonnegative_float, output_file, positive_int, run_tag
from clir_ot.formats import read_topics
from clir_ot.models import BiEncoderModel
from clir_ot.models.loading import DTYPES, resolve_precision
from clir_ot.retrieval.analysis import THAI_TOKENIZERS
from clir_ot.retrieval.dense import DenseSearcher, check_faiss_index, dense_search_to_run, read_dense_manifest
from clir_ot.retrieval.lucene import DEFAULT_B, DEFAULT_K1, BM25Searcher, search_to_run

logger = logging.getLogger(__name__)

QUERY_MAX_LENGTH = 256
EF_SEARCH = 128


class BM25Parameters(argparse.Action):
    """``--bm25 K1 B``: two non-negative numbers, B at most 1 (a length normalisation weight)."""

    def __call__(self, parser, namespace, values, option_string=None):
        k1, b = values
        if b > 1:
            parser.error(f"argument {option_string}: B must be in [0, 1], got {b:g}")
        setattr(namespace, self.dest, (k1, b))


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "search", help="BM25 search of a topics file into a TREC run",
        description="Search every topic against a Lucene index with BM25, or with --dense a faiss index with a "
        "bi-encoder, and write a TREC run (strictly decreasing scores per query).",
    )
    parser.add_argument("--index", required=True, type=input_dir, help="index folder (from clir-ot index or Pyserini)")
    parser.add_argument("--topics", required=True, type=input_file, help="topics: TSV qid<TAB>text or JSONL")
    parser.add_argument("--output", required=True, type=output_file, help="run file to write")
    parser.add_argument("--hits", type=positive_int, default=1000, help="hits per query (default 1000)")
    parser.add_argument("--bm25", nargs=2, type=nonnegative_float, metavar=("K1", "B"), default=(DEFAULT_K1, DEFAULT_B),
                        action=BM25Parameters,
                        help=f"BM25 parameters, K1 >= 0 and B in [0, 1] (default {DEFAULT_K1} {DEFAULT_B}, Anserini's)")
    parser.add_argument("--language", default=None,
                        help="query analysis language; read from the index's manifest when it was built by clir-ot")
    parser.add_argument("--threads", type=positive_int, default=1, help="search threads (default 1)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="queries per batch (default 128)")
    parser.add_argument("--run-tag", type=run_tag, default="bm25", help="tag in the last run column (default bm25)")
    parser.add_argument("--thai-tokenizer", choices=THAI_TOKENIZERS, default="auto",
                        help="Thai segmentation for indexes without a clir-ot manifest")
    parser.add_argument("--analyzer", default="auto",
                        help="analysis for indexes without a clir-ot manifest (as clir-ot index --analyzer)")
    dense = parser.add_argument_group("dense search (a faiss index from clir-ot encode)")
    dense.add_argument("--dense", action="store_true", help="search a faiss index with a bi-encoder")
    dense.add_argument("--encoder", default=None,
                       help="query encoder (default: the encoder recorded in the index, else the offline default)")
    dense.add_argument("--max-length", type=positive_int, default=QUERY_MAX_LENGTH,
                       help=f"tokens per query (default {QUERY_MAX_LENGTH})")
    dense.add_argument("--dtype", choices=DTYPES, default="auto")
    dense.add_argument("--ef-search", type=positive_int, default=EF_SEARCH, help=f"HNSW search breadth (default {EF_SEARCH})")
    parser.set_defaults(func=run)
    return parser


def _warn_unused(args: argparse.Namespace) -> None:
    """Name the flags given for the other kind of search (BM25's with --dense, dense's without it)."""
    bm25 = {"--bm25": tuple(args.bm25) != (DEFAULT_K1, DEFAULT_B), "--language": args.language is not None,
            "--thai-tokenizer": args.thai_tokenizer != "auto", "--analyzer": args.analyzer != "auto",
            "--threads": args.threads != 1}
    dense = {"--encoder": args.encoder is not None, "--max-length": args.max_length != QUERY_MAX_LENGTH,
             "--dtype": args.dtype != "auto", "--ef-search": args.ef_search != EF_SEARCH}
    unused = [flag for flag, given in (bm25 if args.dense else dense).items() if given]
    if unused:
        logger.warning("%s: %s, not used by %s search", ", ".join(unused),
                       "BM25 settings" if args.dense else "dense settings", "dense" if args.dense else "BM25")


def run(args: argparse.Namespace) -> int:
    _warn_unused(args)
    topics = read_topics(args.topics)
    if args.dense:
        return _run_dense(args, topics)
    searcher = BM25Searcher(args.index, language=args.language, k1=args.bm25[0], b=args.bm25[1],
                            thai_tokenizer=args.thai_tokenizer, analyzer=args.analyzer)
    search_to_run(searcher, topics, args.output, k=args.hits, threads=args.threads,
                  batch_size=args.batch_size, tag=args.run_tag)
    return 0


def _run_dense(args: argparse.Namespace, topics: dict[str, str]) -> int:
    check_faiss_index(args.index)  # before the query encoder loads
    encoder = args.encoder or read_dense_manifest(args.index).get("encoder") or None
    model = BiEncoderModel.from_pretrained(encoder)
    searcher = DenseSearcher(args.index, model, ef_search=args.ef_search)
    tag = args.run_tag if args.run_tag != "bm25" else "dense"
    dense_search_to_run(searcher, topics, args.output, k=args.hits, batch_size=args.batch_size,
                        max_length=args.max_length, dtype=resolve_precision(args.dtype, model.device), tag=tag)
    return 0
