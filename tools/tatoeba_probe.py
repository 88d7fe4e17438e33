"""The Tatoeba sentence-retrieval probe's folder (issue 15 item 6): test halves and zero-shot runs.

    HF_HUB_OFFLINE=1 .venv/bin/python tools/tatoeba_probe.py --tatoeba ../shared/data/tatoeba \
        --output runs/tatoeba-probe [--languages sw km ...] [--encoder MODEL] [--max-length 128]

Writes each language's test half as a collection (topics, corpus, qrels), the zero-shot TREC runs of
multilingual-e5-small, table.tatoeba-probe.{md,json} and plot.tatoeba-probe.png (see
clir_ot.pipelines.tatoeba_probe). The students are the study's work on this folder:

    clir-ot study --config tools/studies/tatoeba-probe.yaml [--dry-run]
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clir_ot.errors import ClirOtError
from clir_ot.pipelines.tatoeba_probe import PROBE_LANGUAGES, render_probe_table, run_tatoeba_probe


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tatoeba", required=True, help="folder of Tatoeba bitext (LASER's layout)")
    parser.add_argument("--output", required=True, help="output folder (the study's `baseline:`)")
    parser.add_argument("--languages", nargs="+", default=list(PROBE_LANGUAGES), help="languages (any code form)")
    parser.add_argument("--encoder", default=None, help="zero-shot model (default: the offline multilingual-e5-small)")
    parser.add_argument("--batch-size", type=_positive, default=64, help="sentences per forward pass")
    parser.add_argument("--max-length", type=_positive, default=128, help="tokens per sentence")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        table = run_tatoeba_probe(args.tatoeba, args.output, args.languages, encoder=args.encoder,
                                  batch_size=args.batch_size, max_length=args.max_length)
    except ClirOtError as error:
        print(f"tatoeba_probe: error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(render_probe_table(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
