"""Is the dense first stage reproducible? Encode one XQuAD language twice per precision and compare.

    HF_HUB_OFFLINE=1 .venv/bin/python tools/check_dense_precision.py --output runs/xquad --language th \
        [--dtypes bf16 fp32] [--questions 1190]

For each precision the English questions and the language's paragraphs are encoded twice (the
offline multilingual-e5-small, max length 256, batch 32: ``make demo``'s dense settings), and the
script prints, per precision: whether the two encodings are bit-identical, the largest score
difference to the first precision's scores, the share of questions whose dense top 10 (trec_eval's order) equals the first precision's and equals the run file ``make demo`` wrote
(``runs/xquad/run.xquad.e5-small.cross.en-<lang>.txt``, possibly made on another machine), and RR@10.

Why it matters: the teacher's hard negatives come from these runs, so a first stage that differs
between machines gives a teacher trained on other data (the recipe search records the training data's
fingerprint and the hardware per trial).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from clir_ot.datasets.layout import XQuADLayout
from clir_ot.errors import ClirOtError, ConfigError
from clir_ot.formats import load_corpus, load_run, read_qrels, read_topics, trec_eval_ranking
from clir_ot.models import BiEncoderModel
from clir_ot.models.loading import PRECISIONS, hardware_id

DEPTH = 10


def top_docids(scores: np.ndarray, docids: list[str], depth: int = DEPTH) -> list[tuple[str, ...]]:
    """Each row's ``depth`` best docids in trec_eval's order (:func:`~clir_ot.formats.trec_eval_ranking`)."""
    return [tuple(trec_eval_ranking(dict(zip(docids, row.tolist())))[:depth]) for row in scores]


def reciprocal_rank(ranked: tuple[str, ...], relevant: set[str]) -> float:
    return next((1.0 / k for k, d in enumerate(ranked, start=1) if d in relevant), 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("runs/xquad"), help="XQuAD outputs of `make demo`")
    parser.add_argument("--language", default="th", help="the paragraphs' language (questions are English)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], help="precisions; the first is the reference")
    parser.add_argument("--questions", type=int, default=None, help="the first N questions only (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.questions is not None and args.questions < 1:
            raise ConfigError(f"--questions must be at least 1, got {args.questions}")
        unknown = [d for d in args.dtypes if d not in PRECISIONS]
        if unknown:
            raise ConfigError(f"--dtypes: unknown precision {unknown[0]!r}; valid: {', '.join(PRECISIONS)}")
        rows = compare_precisions(XQuADLayout(args.output), args.language, args.dtypes, args.questions)
    except (ClirOtError, OSError) as err:
        print(f"check_dense_precision: error: {err}", file=sys.stderr)
        return 2
    for line in rows:
        print(line)
    return 0


def compare_precisions(layout: XQuADLayout, language: str, dtypes: list[str], questions: int | None) -> list[str]:
    """The table's lines (see the module docstring)."""
    collection = layout.collection
    run_path = layout.first_stage_run(language)
    for path in (collection.topics("en"), collection.corpus(language), collection.qrels(language), run_path):
        if not path.exists():
            raise ConfigError(f"{path} is missing: run `make demo` (clir-ot baseline) for {language!r} first")
    topics = read_topics(collection.topics("en"))
    qids = sorted(topics)[:questions] if questions else sorted(topics)
    corpus = load_corpus(collection.corpus(language))
    docids = sorted(corpus)
    qrels = read_qrels(collection.qrels(language))
    recorded = {q: tuple(trec_eval_ranking(scores)[:DEPTH]) for q, scores in load_run(run_path).items()}
    model = BiEncoderModel.from_pretrained(None)
    lines = [f"{hardware_id()}; {len(qids)} questions, {len(docids)} {language} paragraphs; recorded run {run_path}",
             f"{'precision':9s} {'repeat identical':>16s} {'max |Δscore| vs ' + dtypes[0]:>22s} "
             f"{'top 10 = ' + dtypes[0]:>14s} {'top 10 = run file':>18s} {'RR@10':>7s}"]
    reference = None
    for dtype in dtypes:
        encodings = []
        for _ in range(2):
            q = model.encode_queries([topics[i] for i in qids], batch_size=32, max_length=256, dtype=dtype,
                                     show_progress=False)
            d = model.encode_passages([corpus[i] for i in docids], batch_size=32, max_length=256, dtype=dtype,
                                      show_progress=False)
            encodings.append((q, d))
        identical = all(np.array_equal(a, b) for a, b in zip(*encodings))
        scores = encodings[0][0] @ encodings[0][1].T
        tops = top_docids(scores, docids)
        if reference is None:
            reference = (scores, tops)
        same_as_reference = np.mean([a == b for a, b in zip(tops, reference[1])])
        same_as_run = np.mean([tops[k] == recorded.get(q) for k, q in enumerate(qids)])
        rr = np.mean([reciprocal_rank(tops[k], {d for d, r in qrels.get(q, {}).items() if r > 0})
                      for k, q in enumerate(qids)])
        lines.append(f"{dtype:9s} {str(identical):>16s} {np.abs(scores - reference[0]).max():22.2e} "
                     f"{same_as_reference:14.1%} {same_as_run:18.1%} {rr:7.4f}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
