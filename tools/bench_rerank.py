"""Reranker throughput: clir_ot's cross-encoder vs sentence-transformers' CrossEncoder vs the bare forward pass.

    python tools/bench_rerank.py [--pairs 1000] [--max-lengths 256 512] [--batch-size 32] [--repeats 2]

Pairs are real XQuAD pairs: English questions with Hindi paragraphs (each question's top 10 of the
dense en->hi first stage, ``--pairs / 10`` questions), on the offline default backbone
(multilingual-e5-small) as a cross-encoder with a seeded head. Three ways of scoring them, same
model weights, pairs, batch size and max length:

* ``clir_ot``: :class:`clir_ot.rerank.CrossEncoderReranker.score_pairs` (tokenisation included);
* ``CrossEncoder``: sentence-transformers' ``CrossEncoder.predict`` on the same encoder folder
  (its classification head differs only by a 384x384 pooler, negligible in time);
* ``limit``: the bare model forward pass over batches tokenised, length-sorted and padded beforehand
  -- the upper bound for any scorer of this model on this machine.

Each method runs ``--repeats`` times, interleaved, and the fastest time counts (the machine's
other load affects all methods alike). Printed per max length: pairs/s of each, the ratios
(goals: fp32 >= 97% of the limit and >= 1.10x CrossEncoder; bf16 >= 2.5x CrossEncoder's fp32
throughput), and the bf16 top-10 agreement: the share of questions whose top-10 order under bf16
equals fp32's, for the cross-encoder and for the bi-encoder similarity (a trained scorer).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clir_ot.formats import iter_run_by_query, load_corpus, read_topics  # noqa: E402

logger = logging.getLogger("bench_rerank")


def load_pairs(collection: Path, run: Path, count: int) -> tuple[list[str], list[str], list[str]]:
    topics = read_topics(collection / "topics.xquad.en.tsv")
    corpus = load_corpus(collection / "corpus" / "hi")
    qids, queries, passages = [], [], []
    for qid, hits in iter_run_by_query(run):
        for hit in hits[:10]:
            qids.append(qid)
            queries.append(topics[qid])
            passages.append(corpus[hit.docid])
        if len(queries) >= count:
            break
    return qids[:count], queries[:count], passages[:count]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def top10_agreement(qids: list[str], a: np.ndarray, b: np.ndarray) -> float:
    same = total = 0
    for qid in dict.fromkeys(qids):
        rows = [i for i, q in enumerate(qids) if q == qid]
        order_a = sorted(rows, key=lambda i: (-np.float32(a[i]), i))
        order_b = sorted(rows, key=lambda i: (-np.float32(b[i]), i))
        same += order_a == order_b
        total += 1
    return same / total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, default=ROOT / "runs/xquad/collection")
    parser.add_argument("--run", type=Path, default=ROOT / "runs/xquad/run.xquad.e5-small.cross.en-hi.txt",
                        help="first-stage run of English questions over Hindi paragraphs (from make demo)")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained cross-encoder folder (default: the offline backbone with a seeded head)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("transformers", "sentence_transformers", "clir_ot"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if not args.run.is_file():
        parser.error(f"{args.run} not found: run `make demo` first (it writes the dense en->hi run)")

    from sentence_transformers import CrossEncoder

    from clir_ot.models import BiEncoderModel, CrossEncoderModel, default_model_dir, prepare_default_model
    from clir_ot.models.loading import cpu_has_native_bf16, iter_length_sorted_batches
    from clir_ot.rerank import CrossEncoderReranker

    prepare_default_model()
    folder = default_model_dir()
    torch.manual_seed(0)
    model = CrossEncoderModel.from_pretrained(args.model or folder)
    model.eval()
    bi_encoder = BiEncoderModel.from_pretrained(folder)
    qids, queries, passages = load_pairs(args.collection, args.run, args.pairs)
    pairs = list(zip(queries, passages))
    print(f"model: {args.model or 'offline backbone, seeded untrained head'}")
    print(f"{len(pairs)} XQuAD pairs (en question, hi paragraph), {len(set(qids))} questions; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}")

    with tempfile.TemporaryDirectory() as tmp:
        st_folder = Path(tmp) / "encoder"
        model.encoder.save_pretrained(st_folder)
        model.tokenizer.save_pretrained(st_folder)
        for max_length in args.max_lengths:
            ours32 = CrossEncoderReranker(model, batch_size=args.batch_size, max_length=max_length, dtype="fp32")
            ours16 = CrossEncoderReranker(model, batch_size=args.batch_size, max_length=max_length, dtype="bf16")
            st = CrossEncoder(str(st_folder), num_labels=1, max_length=max_length, device="cpu")
            limit_length = ours32.max_length

            def tokenize(positions):
                return model.tokenizer([queries[i] for i in positions], [passages[i] for i in positions],
                                       truncation="longest_first", max_length=limit_length)

            batches = [b for _, b in iter_length_sorted_batches(len(pairs), tokenize, batch_size=args.batch_size,
                                                               pad_token_id=model.tokenizer.pad_token_id)]

            def limit():
                with torch.inference_mode():
                    for batch in batches:
                        model(**batch)

            methods = {
                "clir_ot fp32": lambda: ours32.score_pairs(queries, passages),
                "CrossEncoder fp32": lambda: st.predict(pairs, batch_size=args.batch_size, show_progress_bar=False),
                "limit fp32": limit,
                "clir_ot bf16": lambda: ours16.score_pairs(queries, passages),
            }
            ours32.score_pairs(queries[:64], passages[:64])  # warm-up
            ours16.score_pairs(queries[:64], passages[:64])
            best = {name: float("inf") for name in methods}
            scores = {}
            for _ in range(args.repeats):
                for name, fn in methods.items():
                    seconds, result = timed(fn)
                    best[name] = min(best[name], seconds)
                    if result is not None:
                        scores[name] = np.asarray(result, dtype=np.float64)
            rate = {name: len(pairs) / s for name, s in best.items()}
            ours32.truncation.reset()
            ours32.record_lengths(queries, passages)
            bi32 = []
            bi16 = []
            for dtype, out in (("fp32", bi32), ("bf16", bi16)):
                q = bi_encoder.encode_queries(queries, max_length=max_length, dtype=dtype)
                p = bi_encoder.encode_passages(passages, max_length=max_length, dtype=dtype,
                                               batch_size=args.batch_size)
                out.append(np.sum(q * p, axis=1))
            print(f"\nmax length {max_length} ({ours32.truncation.summary()})")
            for name in methods:
                print(f"  {name:18s} {rate[name]:8.1f} pairs/s  ({best[name]:.1f} s)")
            share = rate["clir_ot fp32"] / rate["limit fp32"]
            vs_st = rate["clir_ot fp32"] / rate["CrossEncoder fp32"]
            bf16_vs_st = rate["clir_ot bf16"] / rate["CrossEncoder fp32"]
            agree_ce = top10_agreement(qids, scores["clir_ot fp32"], scores["clir_ot bf16"])
            agree_bi = top10_agreement(qids, bi32[0], bi16[0])
            st_share = rate["CrossEncoder fp32"] / rate["limit fp32"]
            print(f"  clir_ot fp32 / limit        = {share:.3f}   (goal >= 0.97: {'PASS' if share >= 0.97 else 'FAIL'})")
            print(f"  CrossEncoder fp32 / limit   = {st_share:.3f}")
            print(f"  clir_ot fp32 / CrossEncoder = {vs_st:.2f}x  (goal >= 1.10: {'PASS' if vs_st >= 1.10 else 'FAIL'})")
            print(f"  clir_ot bf16 / CrossEncoder fp32 = {bf16_vs_st:.2f}x  "
                  f"(goal >= 2.5: {'PASS' if bf16_vs_st >= 2.5 else 'FAIL'})")
            print(f"  bf16 top-10 order = fp32's: cross-encoder {agree_ce:.1%} of questions, "
                  f"bi-encoder similarity {agree_bi:.1%} (goal >= 95%)")
            max_diff = float(np.max(np.abs(scores["clir_ot fp32"] - scores["clir_ot bf16"])))
            print(f"  largest |bf16 - fp32| cross-encoder score difference: {max_diff:.4f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
