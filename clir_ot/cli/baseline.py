"""``clir-ot baseline``: the XQuAD first-stage baseline end to end (``make demo``)."""
from __future__ import annotations

import argparse
import sys

from clir_ot.cli.arguments import output_dir, positive_int, xquad_language_code, xquad_source
from clir_ot.datasets.xquad import DEFAULT_LANGUAGES
from clir_ot.models import BiEncoderModel, is_prepared, prepare_default_model
from clir_ot.models.loading import DTYPES
from clir_ot.pipelines.xquad_baseline import (
    DENSE_MEASURES,
    DENSE_SETTINGS,
    render_table,
    run_xquad_bm25,
    run_xquad_dense,
)
from clir_ot.retrieval.analysis import THAI_TOKENIZERS


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "baseline", help="XQuAD first-stage baseline: collections, indexes, BM25 runs, evaluation table",
        description="Prepare XQuAD, index every language, run BM25 cross (en->D) and mono (D->D), "
        "evaluate and print one table.",
    )
    parser.add_argument("--source", default="download", type=xquad_source,
                        help="folder with xquad.<lang>.json, or 'download' (default) to fetch them")
    parser.add_argument("--output", default="runs/xquad", type=output_dir, help="folder for collections, runs and tables")
    parser.add_argument("--index-root", default="indexes", type=output_dir, help="folder for the Lucene indexes")
    parser.add_argument("--languages", nargs="+", default=list(DEFAULT_LANGUAGES), type=xquad_language_code,
                        metavar="LANG")
    parser.add_argument("--hits", type=positive_int, default=100, help="hits per query (default 100, the depth of R@100)")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--thai-tokenizer", choices=THAI_TOKENIZERS, default="auto")
    parser.add_argument("--no-dense", action="store_true", help="BM25 only: skip the dense first stage and RRF")
    parser.add_argument("--encoder", default=None,
                        help="bi-encoder for the dense stage (default: the offline multilingual-e5-small, "
                        "prepared on first use)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="dense encoding precision (default auto)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    source = None if args.source == "download" else args.source
    result = run_xquad_bm25(source, args.output, args.index_root, args.languages, hits=args.hits,
                            threads=args.threads, thai_tokenizer=args.thai_tokenizer)
    sys.stdout.write(f"\nBM25 on XQuAD, cross = en->D, mono = D->D ({result.seconds:.0f} s)\n\n")
    sys.stdout.write(render_table(result.table))
    if args.no_dense:
        return 0
    if args.encoder is None and not is_prepared():
        prepare_default_model()
    model = BiEncoderModel.from_pretrained(args.encoder)
    dense = run_xquad_dense(args.output, args.index_root, result, model, args.languages, hits=args.hits,
                            batch_size=args.batch_size, dtype=args.dtype)
    sys.stdout.write(f"\nDense (multilingual-e5-small) and RRF with BM25, cross = en->D ({dense.seconds:.0f} s)\n\n")
    sys.stdout.write(render_table(dense.table, DENSE_MEASURES, DENSE_SETTINGS))
    return 0
