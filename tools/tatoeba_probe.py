"""The Tatoeba sentence-retrieval probe (issue 15 item 6): zero-shot multilingual-e5-small and dense students.

    HF_HUB_OFFLINE=1 .venv/bin/python tools/tatoeba_probe.py --tatoeba ../shared/data/tatoeba \
        --output runs/tatoeba-probe [--languages sw km ...] [--methods mse-sent ot ot-shuffled | --methods] \
        [--config tools/configs/distill-xquad-cpu.json] [--keep-students all|best|none]

Writes runs/tatoeba-probe/table.tatoeba-probe.{md,json}, plot.tatoeba-probe.png and probe.<lang>.json
(see clir_ot.pipelines.tatoeba_probe). ``--methods`` with no value runs zero-shot only.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from clir_ot.pipelines.tatoeba_probe import DEFAULT_METHODS, KEEP_STUDENTS, PROBE_LANGUAGES, run_tatoeba_probe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tatoeba", required=True, help="folder of Tatoeba bitext (LASER's layout)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--languages", nargs="+", default=list(PROBE_LANGUAGES), help="languages (any code form)")
    parser.add_argument("--methods", nargs="*", default=list(DEFAULT_METHODS), help="student methods (none: zero-shot only)")
    parser.add_argument("--config", default=None, help="JSON of the students' training/distillation settings")
    parser.add_argument("--n-resamples", type=int, default=10000, help="paired randomization test resamples")
    parser.add_argument("--keep-students", choices=KEEP_STUDENTS, default="best",
                        help="what a student keeps once scored: all, best (default: best/ and its record), "
                             "or none (its record only: training.json, log.jsonl)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = json.loads(Path(args.config).read_text()) if args.config else {}
    run_tatoeba_probe(args.tatoeba, args.output, args.languages, args.methods, settings, n_resamples=args.n_resamples,
                      keep_students=args.keep_students)
    print(Path(args.output, "table.tatoeba-probe.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
