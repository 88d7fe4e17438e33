"""Save a heatmap of one OT plan (English teacher tokens x foreign student tokens) as a PNG.

    python tools/plot_ot_plan.py --english "..." --foreign "..." --output runs/<study>/ot-plan.png \
        [--teacher MODEL] [--student MODEL] [--model-type bi-encoder|cross-encoder] [--epsilon 0.1]

Defaults: the offline multilingual-e5-small on both sides (the zero-shot plan, before any distillation).
The console lists each English token's best-aligned foreign token.
"""
from __future__ import annotations

import argparse
import logging
import sys

import clir_ot  # noqa: F401  (JVM hook, offline defaults)
from clir_ot.cli.arguments import positive_float
from clir_ot.distill.alignment import align_pair, plot_plan
from clir_ot.distill.pipeline import load_model

logger = logging.getLogger("plot_ot_plan")

EXAMPLE = ("In 1851 Herman Melville published Moby-Dick in London.",
           "Το 1851 ο Χέρμαν Μέλβιλ δημοσίευσε το Μόμπι Ντικ στο Λονδίνο.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--english", default=EXAMPLE[0])
    parser.add_argument("--foreign", default=EXAMPLE[1])
    parser.add_argument("--teacher", default=None, help="default: the offline multilingual-e5-small")
    parser.add_argument("--student", default=None, help="default: the teacher")
    parser.add_argument("--model-type", default="bi-encoder", choices=("bi-encoder", "cross-encoder"))
    parser.add_argument("--layer", type=int, default=-1)
    parser.add_argument("--epsilon", type=positive_float, default=0.1, help="relative to the mean cost")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    teacher = load_model(args.teacher, args.model_type)
    student = teacher if args.student is None else load_model(args.student, args.model_type)
    alignment = align_pair(teacher, student, args.english, args.foreign, layer=args.layer, epsilon=args.epsilon)
    for i, token in enumerate(alignment.english_tokens):
        j = int(alignment.plan[i].argmax())
        share = alignment.plan[i, j] / alignment.plan[i].sum()
        logger.info("%14s -> %-14s %.2f", token, alignment.foreign_tokens[j], share)
    plot_plan(alignment, args.output)
    logger.info("<P, C> = %.4f; heatmap: %s", alignment.cost, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
