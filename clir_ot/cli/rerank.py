"""``clir-ot rerank``: rerank a TREC run with a cross-encoder (or a bi-encoder's similarity)."""
from __future__ import annotations

import argparse
import json
import sys

from clir_ot.cli.arguments import input_dir, input_file, input_path, output_file, positive_int
from clir_ot.formats import read_topics
from clir_ot.models.loading import DTYPES
from clir_ot.rerank import BiEncoderReranker, CrossEncoderReranker, rerank_run
from clir_ot.store import passage_store

MODEL_TYPES = ("cross-encoder", "bi-encoder")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "rerank", help="rerank a TREC run with a cross-encoder",
        description="Rerank the top --depth hits of every query of a run; the hits below keep their "
        "first-stage order under the reranked head. The run is streamed; the job resumes if killed.",
    )
    parser.add_argument("--run", required=True, type=input_file, help="first-stage TREC run")
    parser.add_argument("--topics", required=True, type=input_file, help="topics: TSV qid<TAB>text or JSONL")
    passages = parser.add_mutually_exclusive_group(required=True)
    passages.add_argument("--corpus", type=input_path, default=None,
                          help="the passages: JSONL corpus (file or folder) or id<TAB>text TSV (collection.tsv), read "
                          "on demand through an on-disk index")
    passages.add_argument("--index", type=input_dir, default=None,
                          help="the passages from a Pyserini/Lucene index with stored raw documents (-storeRaw), "
                          "instead of --corpus")
    parser.add_argument("--output", required=True, type=output_file, help="reranked run to write")
    parser.add_argument("--model", default=None,
                        help="hub name or folder (default: the offline multilingual-e5-small backbone)")
    parser.add_argument("--model-type", choices=MODEL_TYPES, default="cross-encoder",
                        help="cross-encoder (default), or bi-encoder similarity as the score")
    parser.add_argument("--depth", type=positive_int, default=100, help="hits per query to rerank (default 100)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="pairs per forward pass (default 32)")
    parser.add_argument("--max-length", type=positive_int, default=256, help="tokens per pair, specials included (default 256)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="compute precision; auto = bf16 where the hardware has it natively, else fp32")
    parser.add_argument("--device", default=None, help="torch device (default: cpu)")
    parser.add_argument("--run-tag", default="rerank")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    topics = read_topics(args.topics)
    corpus = passage_store(corpus=args.corpus, index=args.index)
    kind = CrossEncoderReranker if args.model_type == "cross-encoder" else BiEncoderReranker
    reranker = kind(args.model, batch_size=args.batch_size, max_length=args.max_length, dtype=args.dtype,
                    device=args.device)
    report = rerank_run(reranker, args.run, topics, corpus, args.output, depth=args.depth, tag=args.run_tag)
    sys.stderr.write(json.dumps(report) + "\n")
    return 0
