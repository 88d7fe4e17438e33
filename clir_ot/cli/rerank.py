"""``clir-ot rerank``: rerank a TREC run with a cross-encoder (or a bi-encoder's similarity)."""
from __future__ import annotations

import argparse
import json
import sys

from clir_ot.cli.arguments import (input_dir, input_file, input_path, nonnegative_int, output_file, positive_float,
                                   positive_int, run_tag, torch_device)
from clir_ot.errors import ConfigError, ExactOrderError
from clir_ot.models.backends import BACKEND_CHOICES, BackendError, check_request
from clir_ot.formats import read_topics
from clir_ot.models.loading import DTYPES
from clir_ot.rerank import (DEFAULT_EXACT_TOP, BiEncoderReranker, CrossEncoderReranker, ExactOrderReranker,
                            PassageWindows, rerank_run_sharded)
from clir_ot.rerank.windows import DEFAULT_OVERLAP
from clir_ot.store import passage_store
from clir_ot.training.distributed import init_distributed, shutdown_distributed

MODEL_TYPES = ("cross-encoder", "bi-encoder")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "rerank", help="rerank a TREC run with a cross-encoder",
        description="Rerank the top --depth hits of every query of a run; the hits below keep their "
        "first-stage order under the reranked head. The run is streamed; the job resumes if killed. Under "
        "torchrun, each process reranks one shard of the queries and process 0 merges the parts into --output, "
        "identical to one process's.",
    )
    parser.add_argument("--run", "--run-file", dest="run", required=True, type=input_file,
                        help="first-stage TREC run (--run-file under torchrun, whose own parser takes --run for an "
                        "abbreviation of its --run-path)")
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
    parser.add_argument("--chunk-pairs", type=positive_int, default=2048,
                        help="pairs scored together and checkpointed at once; under torchrun, the unit of the shards "
                        "(default 2048)")
    parser.add_argument("--max-length", type=positive_int, default=256, help="tokens per pair, specials included (default 256)")
    parser.add_argument("--windows", type=positive_int, default=1, metavar="N",
                        help="score a passage that does not fit beside the query in up to N overlapping windows and "
                        "keep the best window's score (MaxP); default 1: truncate at --max-length")
    parser.add_argument("--window-overlap", type=nonnegative_int, default=None, metavar="TOKENS",
                        help=f"with --windows: tokens shared by consecutive windows (default {DEFAULT_OVERLAP})")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="compute precision; auto = bf16 where the hardware has it natively and the backend "
                        "computes in it, else fp32 (with --backend auto: the guard's pick)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="what runs the cross-encoder: torch, torch-compile, onnx (extra clir_ot[onnx]), openvino "
                        "(extra clir_ot[openvino]), or auto (default): the fastest path that passed the quality guard "
                        "for this model on this hardware (tools/bench_rerank.py --guard), else torch; the log says which")
    parser.add_argument("--guard-dir", type=input_dir, default=None,
                        help="folder of quality-guard records for --backend auto (default $CLIR_OT_GUARD_DIR or "
                        "~/.cache/clir_ot/guard)")
    parser.add_argument("--exact-order-margin", type=positive_float, default=None, metavar="M",
                        help="score with --dtype, then re-score in fp32 every pair whose score is within M of a "
                        "neighbour among the candidates for the top --exact-top: that top is fp32's when M is at "
                        "least twice the fast path's error (see docs/speed.md)")
    parser.add_argument("--exact-top", type=positive_int, default=None, metavar="K",
                        help=f"with --exact-order-margin: how many leading hits get fp32's order "
                        f"(default {DEFAULT_EXACT_TOP}, or --depth if smaller)")
    parser.add_argument("--device", type=torch_device, default=None,
                        help="torch device (default: cpu; under torchrun, cuda:LOCAL_RANK where CUDA is available)")
    parser.add_argument("--run-tag", type=run_tag, default="rerank")
    parser.set_defaults(func=run)
    return parser


def exact_top(args: argparse.Namespace) -> int | None:
    """The ``top_k`` of exact order the flags ask for (``None``: exact order is off)."""
    if args.exact_order_margin is None:
        if args.exact_top is not None:
            raise ExactOrderError("--exact-top needs --exact-order-margin (the score gap that puts a pair in doubt)")
        return None
    if args.exact_top is None:
        return min(DEFAULT_EXACT_TOP, args.depth)
    if args.exact_top > args.depth:
        raise ExactOrderError(f"--exact-top {args.exact_top} is beyond --depth {args.depth}: only the reranked "
                              "head is scored, so at most --depth hits can be put in fp32's order")
    return args.exact_top


def check_backend_flags(args: argparse.Namespace) -> None:
    """``--backend`` / ``--dtype`` checked before any input is read or model loaded."""
    if args.model_type == "bi-encoder" and args.backend not in ("auto", "torch"):
        raise BackendError(f"--backend {args.backend} serves the cross-encoder; bi-encoder similarity runs on torch")
    if args.window_overlap is not None and args.windows == 1:
        raise ConfigError("--window-overlap needs --windows N (N > 1): without windows a long passage is truncated")
    if args.model_type == "bi-encoder" and args.windows > 1:
        raise ConfigError("--windows serves the cross-encoder, which reads query and passage together; a bi-encoder "
                          "embeds the passage alone")
    check_request(args.backend, args.dtype, args.device)


def run(args: argparse.Namespace) -> int:
    top_k = exact_top(args)
    check_backend_flags(args)
    topics = read_topics(args.topics)
    corpus = passage_store(corpus=args.corpus, index=args.index)
    dist, started = init_distributed(args.device)
    try:
        device = args.device or (str(dist.default_device()) if dist.distributed else None)
        if args.model_type == "cross-encoder":
            reranker = CrossEncoderReranker(args.model, batch_size=args.batch_size, max_length=args.max_length,
                                            dtype=args.dtype, device=device, backend=args.backend,
                                            guard_dir=args.guard_dir,
                                            windows=PassageWindows(args.windows, DEFAULT_OVERLAP if args.window_overlap is None
                                                                   else args.window_overlap))
        else:
            reranker = BiEncoderReranker(args.model, batch_size=args.batch_size, max_length=args.max_length,
                                         dtype=args.dtype, device=device)
        if top_k is not None:
            reranker = ExactOrderReranker.around(reranker, args.exact_order_margin, top_k)
        report = rerank_run_sharded(reranker, args.run, topics, corpus, args.output, dist, depth=args.depth,
                                    chunk_pairs=args.chunk_pairs, tag=args.run_tag)
    finally:
        shutdown_distributed(started)
    if dist.is_main:
        sys.stderr.write(json.dumps(report.to_json()) + "\n")
    return 0
