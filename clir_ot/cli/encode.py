"""``clir-ot encode``: embed a corpus with a bi-encoder into a faiss index (Pyserini's layout)."""
from __future__ import annotations

import argparse

from clir_ot.cli.arguments import input_path, output_dir, positive_int
from clir_ot.models import BiEncoderModel
from clir_ot.models.loading import DTYPES, resolve_precision
from clir_ot.retrieval.dense import INDEX_TYPES, encode_corpus


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "encode", help="embed a corpus into a faiss index for dense search",
        description="Embed every passage of a JSONL corpus with a bi-encoder and write a faiss index "
        "('index' + 'docid', the layout Pyserini's FaissSearcher reads). Resumes if killed.",
    )
    parser.add_argument("--corpus", "--input", dest="corpus", required=True, type=input_path, help="JSONL corpus file or folder")
    parser.add_argument("--index", required=True, type=output_dir, help="output index folder")
    parser.add_argument("--encoder", default=None,
                        help="hub name or folder (default: the offline multilingual-e5-small)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--max-length", type=positive_int, default=256, help="tokens per passage (default 256)")
    parser.add_argument("--index-type", choices=INDEX_TYPES, default="flat",
                        help="flat (exact inner product, default) or hnsw (approximate, for large corpora)")
    parser.add_argument("--hnsw-m", type=positive_int, default=32)
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--device", default=None)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    model = BiEncoderModel.from_pretrained(args.encoder, device=args.device)
    encode_corpus(args.corpus, args.index, model, batch_size=args.batch_size, max_length=args.max_length,
                  index_type=args.index_type, hnsw_m=args.hnsw_m, dtype=resolve_precision(args.dtype, model.device))
    return 0
