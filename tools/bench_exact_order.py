"""Exact order on demand: what share of pairs it re-scores in float32, its speed, and whether the top 10 is fp32's.

    python tools/bench_exact_order.py [--pairs 400] [--max-length 256] [--batch-size 32] [--safety 1.0 2.0]

Pairs as in ``tools/bench_rerank.py``: English XQuAD questions with their top 10 Hindi paragraphs of
the dense first stage, on the offline default backbone as a cross-encoder with a seeded head (or
``--model``). The questions are split in two halves. On the first (calibration) half, bf16 and fp32
scores give the fast path's largest error ``e``; on the second (test) half, exact order runs with
margin ``2 * e * safety`` for each ``--safety``, and the script prints the share of pairs re-scored,
pairs/s of bf16, fp32 and exact order, the share of test questions whose top 10 equals fp32's (bf16
alone and exact order), and how many re-scored pairs breached the premise (error above margin / 2).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_rerank import load_pairs  # noqa: E402

from clir_ot.cli.arguments import positive_float, positive_int  # noqa: E402
from clir_ot.models import CrossEncoderModel, default_model_dir, prepare_default_model  # noqa: E402
from clir_ot.rerank import CrossEncoderReranker, ExactOrderReranker  # noqa: E402


def groups_of(qids: list[str], queries: list[str], passages: list[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, tuple[str, list[str]]] = {}
    for qid, query, passage in zip(qids, queries, passages):
        groups.setdefault(qid, (query, []))[1].append(passage)
    return list(groups.values())


def top10(scores: np.ndarray) -> list[int]:
    return np.argsort(-scores, kind="stable")[:10].tolist()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, default=ROOT / "runs/xquad/collection")
    parser.add_argument("--run", type=Path, default=ROOT / "runs/xquad/run.xquad.e5-small.cross.en-hi.txt")
    parser.add_argument("--pairs", type=positive_int, default=400)
    parser.add_argument("--max-length", type=positive_int, default=256)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--safety", type=positive_float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained cross-encoder folder (default: the offline backbone with a seeded head)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.run.is_file():
        parser.error(f"{args.run} not found: run `make demo` first (it writes the dense en->hi run)")
    prepare_default_model()
    torch.manual_seed(0)
    model = CrossEncoderModel.from_pretrained(args.model or default_model_dir())
    pairs = load_pairs(args.collection, args.run, args.pairs)
    qids, queries, passages = pairs.qids, pairs.queries, pairs.passages
    groups = groups_of(qids, queries, passages)
    half = len(groups) // 2
    calibration, test = groups[:half], groups[half:]
    fp32 = CrossEncoderReranker(model, batch_size=args.batch_size, max_length=args.max_length, dtype="fp32")
    bf16 = CrossEncoderReranker(model, batch_size=args.batch_size, max_length=args.max_length, dtype="bf16")
    bf16.score_groups(calibration[:2])  # warm-up
    error = max(float(np.abs(a - b).max()) for a, b in zip(fp32.score_groups(calibration), bf16.score_groups(calibration)))
    test_pairs = sum(len(t) for _, t in test)
    t32, exact_scores = timed(lambda: fp32.score_groups(test))
    t16, fast_scores = timed(lambda: bf16.score_groups(test))
    print(f"model: {args.model or 'offline backbone, seeded untrained head'}; {torch.get_num_threads()} threads; "
          f"max length {args.max_length}, batch {args.batch_size}")
    print(f"calibration: {len(calibration)} questions, largest |bf16 - fp32| = {error:.3g}; "
          f"test: {len(test)} questions, {test_pairs} pairs")
    agree16 = np.mean([top10(a) == top10(b) for a, b in zip(exact_scores, fast_scores)])
    print(f"fp32 {test_pairs / t32:.1f} pairs/s; bf16 {test_pairs / t16:.1f} pairs/s, top 10 = fp32's on {agree16:.0%}")
    for safety in args.safety:
        reranker = ExactOrderReranker(bf16, fp32, margin=2 * error * safety, top_k=10)
        seconds, scores = timed(lambda: reranker.score_groups(test))
        agree = np.mean([top10(a) == top10(b) for a, b in zip(exact_scores, scores)])
        stats = reranker.stats
        print(f"exact order, margin {reranker.margin:.3g} (safety {safety:g}): re-scored {stats.share:.1%} of pairs, "
              f"{test_pairs / seconds:.1f} pairs/s, top 10 = fp32's on {agree:.0%}, "
              f"premise breached by {stats.over_half_margin} re-scored pairs (largest error seen {stats.max_error:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
