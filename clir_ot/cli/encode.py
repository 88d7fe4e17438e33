"""``clir-ot encode``: embed a corpus with a bi-encoder into a faiss index (Pyserini's layout)."""
from __future__ import annotations

import argparse

from clir_ot.cli.arguments import input_path, output_dir, positive_int, torch_device
from clir_ot.models import BiEncoderModel
from clir_ot.models.backends import BACKENDS, check_request, resolve_path
from clir_ot.models.loading import DTYPES
from clir_ot.retrieval.dense import INDEX_TYPES, check_index_target, encode_corpus
from clir_ot.training.distributed import init_distributed, shutdown_distributed


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "encode", help="embed a corpus into a faiss index for dense search",
        description="Embed every passage of a JSONL corpus with a bi-encoder and write a faiss index "
        "('index' + 'docid', the layout Pyserini's FaissSearcher reads). Resumes if killed. Under torchrun "
        "(torchrun --nproc-per-node N -m clir_ot encode ...) the processes share the shards and write one index.",
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
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="compute precision; auto = bf16 where the hardware has it natively and the backend "
                        "computes in it, else fp32")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="what runs the encoder: torch (default), torch-compile, onnx (extra clir_ot[onnx]), "
                        "openvino (extra clir_ot[openvino])")
    parser.add_argument("--device", type=torch_device, default=None,
                        help="torch device (default: cpu; under torchrun, cuda:LOCAL_RANK where CUDA is available)")
    parser.add_argument("--shard-size", type=positive_int, default=10_000,
                        help="passages per checkpointed shard, and per unit of work under torchrun (default 10000)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    dist, started = init_distributed(args.device)
    try:
        device = args.device or (str(dist.default_device()) if dist.distributed else None)
        check_request(args.backend, args.dtype, device)  # before the model loads
        check_index_target(args.index, args.corpus)
        model = BiEncoderModel.from_pretrained(args.encoder, device=device)
        path = resolve_path(args.backend, args.dtype, model.device)
        encode_corpus(args.corpus, args.index, model, batch_size=args.batch_size, max_length=args.max_length,
                      index_type=args.index_type, hnsw_m=args.hnsw_m, shard_size=args.shard_size, dtype=path.dtype,
                      runner=model.runner(path) if path.backend != "torch" else None,
                      group=dist if dist.distributed else None)
    finally:
        shutdown_distributed(started)
    return 0
