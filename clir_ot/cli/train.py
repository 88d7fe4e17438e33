"""``clir-ot train``: train a cross-encoder reranker (alone, or as ``torchrun ... -m clir_ot -- train ...``).

Under torchrun, put ``--`` between ``-m clir_ot`` and ``train``: torchrun parses the whole command line
and would otherwise reject ``--run`` as an ambiguous abbreviation of its own ``--run-path``.
"""
from __future__ import annotations

import argparse
import json
import sys

from clir_ot.cli.arguments import (fraction, input_file, input_path, nonnegative_float, nonnegative_int, output_dir,
                                   positive_float, positive_int, probability, torch_device)
from clir_ot.errors import ConfigError
from clir_ot.io import is_jsonl, is_tsv
from clir_ot.training import TRAINING_DTYPES, DataSpec, TrainingConfig, train_cross_encoder

# flag -> TrainingConfig field; a flag given on the command line wins over --config
CONFIG_FLAGS = {
    "epochs": "epochs", "batch_size": "batch_size", "grad_accum": "grad_accum", "lr": "lr",
    "max_steps": "max_steps", "negatives": "negatives", "depth": "depth", "valid_negatives": "valid_negatives",
    "max_length": "max_length", "save_every": "save_every", "keep_last": "keep_last", "seed": "seed",
    "dtype": "dtype", "loss": "loss", "dropout": "dropout", "head": "head", "pooling": "pooling",
    "query_prefix": "query_prefix", "passage_prefix": "passage_prefix", "soft_weight": "soft_weight",
    "soft_temperature": "soft_temperature", "freeze_embeddings": "freeze_embeddings",
}


def _warmup(value: str) -> dict:
    """``--warmup 100`` is 100 steps; ``--warmup 0.1`` is 10% of the steps."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--warmup takes a step count or a fraction below 1, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"--warmup must not be negative, got {value!r}")
    if number < 1 and not value.strip().isdigit():
        return {"warmup_ratio": number, "warmup_steps": None}
    if number != int(number):
        raise argparse.ArgumentTypeError(f"--warmup of 1 or more is a step count and must be whole, got {value!r}")
    return {"warmup_steps": int(number)}


DESCRIPTION = """\
Train a cross-encoder on groups (query, positive, k negatives) with checkpoints, exact --resume,
periodic MRR@10 validation and a training.json manifest. The same command runs under torchrun for
data-parallel training: torchrun --nproc-per-node N -m clir_ot -- train ... (the '--' keeps
torchrun's own parser from reading --run as an abbreviation of its --run-path).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train a cross-encoder reranker (listwise LCE or pairwise margin)",
                                   description=DESCRIPTION)
    parser.add_argument("--base", default=None,
                        help="model to start from: hub name or folder (default: offline multilingual-e5-small)")
    parser.add_argument("--out", "--output", dest="out", required=True, type=output_dir,
                        help="output folder: final model, best/, checkpoints/, log.jsonl, training.json")
    data = parser.add_argument_group("training data (one source)")
    data.add_argument("--train", default=None, type=input_file,
                      help="triples TSV (query<TAB>positive<TAB>negative, '.tsv') or JSONL groups ('.jsonl')")
    data.add_argument("--triples", default=None, type=input_file, help="triples TSV (MS MARCO format)")
    data.add_argument("--groups", default=None, type=input_file, help='JSONL groups {"query", "positive", "negatives": [...]}')
    data.add_argument("--topics", default=None, type=input_file, help="topics (TSV or JSONL), with --qrels --corpus --run")
    data.add_argument("--qrels", default=None, type=input_file, help="TREC qrels: every relevant document is kept out of the negatives")
    data.add_argument("--corpus", default=None, type=input_path, help="JSONL corpus (file or folder)")
    data.add_argument("--run", default=None, type=input_file, help="first-stage TREC run: hard negatives come from its top --depth")
    data.add_argument("--folds", default=None, type=input_file, help="XQuAD folds.json, with --exclude-fold")
    data.add_argument("--exclude-fold", type=nonnegative_int, default=None,
                      help="XQuAD cross-fitting: train on the other folds only (checked for leakage)")
    stream = parser.add_argument_group("streamed data (MS MARCO scale: read from disk on demand; docs/training-data.md)")
    stream.add_argument("--id-triples", "--docpairs", dest="id_triples", default=None, type=input_file,
                        help="qid<TAB>pid+<TAB>pid- lines (MS MARCO qidpidtriples, ir_datasets export ... docpairs; "
                        "TSV or JSONL), with --queries and --collection; always streamed")
    stream.add_argument("--queries", default=None, type=input_file,
                        help="query texts by id: qid<TAB>text (queries.train.tsv, ir_datasets export ... queries) or JSONL")
    stream.add_argument("--collection", default=None, type=input_path,
                        help="passage texts by id: pid<TAB>text (collection.tsv, ir_datasets export ... docs) or a JSONL corpus")
    stream.add_argument("--stream", action="store_true",
                        help="read --triples/--groups from disk on demand instead of into memory (needs --valid, "
                        "not --valid-fraction)")
    valid = parser.add_argument_group("validation (MRR@10 every --save-every steps; best model in OUT/best)")
    valid.add_argument("--valid", default=None, type=input_file, help="held-out triples TSV or JSONL groups")
    valid.add_argument("--valid-fraction", type=fraction, default=None,
                       help="hold out this fraction of the training queries (whole positives at a time)")
    valid.add_argument("--valid-run", default=None, type=input_file,
                       help="with --valid-fraction: validate on this run's top documents (default: --run)")
    settings = parser.add_argument_group("settings (override --config)")
    settings.add_argument("--config", default=None, type=input_file, help="JSON object of TrainingConfig settings")
    settings.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    settings.add_argument("--epochs", type=positive_int, default=None, help="default 1")
    settings.add_argument("--max-steps", type=positive_int, default=None, help="total optimizer steps (overrides --epochs)")
    settings.add_argument("--batch-size", type=positive_int, default=None, help="groups per process per micro-batch (default 8)")
    settings.add_argument("--grad-accum", type=positive_int, default=None, help="micro-batches per step (default 1)")
    settings.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 2e-5)")
    settings.add_argument("--warmup", type=_warmup, default=None,
                          help="warm-up: a step count, or a fraction of the steps below 1 (default 0.1)")
    settings.add_argument("--loss", choices=("listwise", "pairwise"), default=None, help="default listwise")
    settings.add_argument("--negatives", type=positive_int, default=None, help="negatives per group (default 7)")
    settings.add_argument("--depth", type=positive_int, default=None, help="negatives come from the run's top DEPTH (default 100)")
    settings.add_argument("--valid-negatives", type=positive_int, default=None,
                          help="negatives of --valid-fraction groups: the run's top ones (default 29)")
    settings.add_argument("--max-length", type=positive_int, default=None, help="tokens per pair (default 256)")
    settings.add_argument("--dropout", type=probability, default=None, help="override the model's dropout")
    settings.add_argument("--save-every", type=positive_int, default=None, help="checkpoint + validation interval (default 100)")
    settings.add_argument("--keep-last", type=positive_int, default=None, help="checkpoints kept (default 2)")
    settings.add_argument("--seed", type=int, default=None, help="default 42")
    settings.add_argument("--dtype", choices=TRAINING_DTYPES, default=None,
                          help="compute precision; auto = bf16 where the hardware has it natively, else fp32")
    settings.add_argument("--head", choices=("linear", "mlp"), default=None,
                          help="head for a base without a trained one (default linear)")
    settings.add_argument("--pooling", choices=("first", "mean"), default=None,
                          help="what a new head reads: the first token's state (default) or the mean of the pair's")
    settings.add_argument("--query-prefix", default=None, help="text before every query (E5: 'query: ')")
    settings.add_argument("--passage-prefix", default=None, help="text before every passage (E5: 'passage: ')")
    settings.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, default=None,
                          help="keep the word-embedding matrix fixed (words the training data never shows keep "
                               "their pre-trained vectors)")
    settings.add_argument("--device", type=torch_device, default=None, help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    soft = parser.add_argument_group("soft targets (a listwise KL term to another model's scores of each group)")
    soft.add_argument("--soft-run", default=None, type=input_file,
                      help="TREC run whose scores are the targets (e.g. the dense first stage); with a collection source")
    soft.add_argument("--soft-weight", type=nonnegative_float, default=None, help="weight of the KL term (default 0: off)")
    soft.add_argument("--soft-temperature", type=positive_float, default=None,
                      help="softmax temperature of the target scores (default 0.05)")
    parser.set_defaults(func=run)
    return parser


def _data_spec(args: argparse.Namespace):
    triples, groups = args.triples, args.groups
    if args.train is not None:
        if triples is not None or groups is not None:
            raise ConfigError("give --train, --triples or --groups, not several")
        if is_jsonl(args.train):
            groups = args.train
        elif is_tsv(args.train):
            triples = args.train
        else:
            raise ConfigError(f"--train {args.train}: name triples '.tsv' and groups '.jsonl' (or use --triples/--groups)")
    return DataSpec(topics=args.topics, qrels=args.qrels, corpus=args.corpus, run=args.run, triples=triples,
                    groups=groups, valid=args.valid, valid_fraction=args.valid_fraction, folds=args.folds,
                    exclude_fold=args.exclude_fold, soft_run=args.soft_run, valid_run=args.valid_run,
                    id_triples=args.id_triples, queries=args.queries, collection=args.collection, stream=args.stream)


def build_config(args: argparse.Namespace):
    overrides = {field: getattr(args, flag) for flag, field in CONFIG_FLAGS.items() if getattr(args, flag) is not None}
    if args.warmup is not None:
        overrides.update(args.warmup)
    if args.config is not None:
        return TrainingConfig.from_json(args.config, overrides)
    return TrainingConfig.from_dict(overrides, where="command-line settings")


def run(args: argparse.Namespace) -> int:
    result = train_cross_encoder(args.base, args.out, _data_spec(args), build_config(args), resume=args.resume,
                                 head=args.head, device=args.device)
    summary = {"output": str(result.output), "best": str(result.best) if result.best else None, "steps": result.steps,
               "metrics": result.metrics}
    if result.manifest.get("time"):
        summary["examples_per_s"] = result.manifest["time"].get("examples_per_s")
    sys.stderr.write(json.dumps(summary) + "\n")
    return 0
