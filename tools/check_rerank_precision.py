"""How the compute precision and the tie-break change the XQuAD teacher's reranking.

For a sample of English questions and their dense top 10 in one language, the cross-fitted teacher
(`clir-ot xquad-teacher`) scores every pair three ways -- full fp32, bf16 logits (the encoder and
the head under bf16 autocast, as before scoring version 2), and bf16 encoder with a float32 head
(what `CrossEncoderModel` does now) -- and each score list is ranked with two tie-breaks: docid
(what trec_eval does) and first-stage order (what `assemble_ranking` does now). Prints the median
spread of the top-10 scores, how many questions have tied scores, RR@10 and P@5 of each.

    python tools/check_rerank_precision.py --output runs/xquad --language th --questions 120
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from clir_ot.cli.arguments import positive_int
from clir_ot.formats import iter_run_by_query, load_corpus, read_qrels, read_topics
from clir_ot.models import CrossEncoderModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/xquad", help="folder of `clir-ot baseline` and `clir-ot xquad-teacher`")
    parser.add_argument("--language", default="th")
    parser.add_argument("--questions", type=positive_int, default=120)
    parser.add_argument("--max-length", type=positive_int, default=256)
    args = parser.parse_args()

    root = Path(args.output)
    collection = root / "collection"
    topics = read_topics(collection / "topics.xquad.en.tsv")
    qrels = read_qrels(collection / f"qrels.xquad.cross.{args.language}.txt")
    corpus = load_corpus(collection / "corpus" / args.language)
    folds = json.loads((collection / "folds.json").read_text())["folds"]
    fold_of = {q: f["fold"] for f in folds for q in f["qids"]}
    run = {q: [h.docid for h in hits[:10]]
           for q, hits in iter_run_by_query(root / f"run.xquad.e5-small.cross.en-{args.language}.txt")}
    rng = np.random.default_rng(0)
    every = sorted(run)
    qids = [every[i] for i in sorted(rng.choice(len(every), min(args.questions, len(every)), replace=False))]
    models = {k: CrossEncoderModel.from_pretrained(root / f"teacher.e5-small.en.fold{k}" / "best") for k in (0, 1)}

    def score(mode: str) -> dict[str, np.ndarray]:
        out = {}
        for q in qids:
            model = models[fold_of[q]]
            batch = model.tokenize([topics[q]] * len(run[q]), [corpus[d] for d in run[q]], max_length=args.max_length)
            with torch.inference_mode():
                if mode == "fp32":
                    logits = model(**batch)
                else:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        hidden = model.encoder(**batch).last_hidden_state[:, 0]
                        if mode == "bf16 logits":
                            logits = model.head(hidden)
                    if mode == "bf16 + fp32 head":
                        logits = model.head(hidden.float())
            out[q] = logits.squeeze(-1).float().numpy().astype(np.float64)
        return out

    def measures(scores: dict[str, np.ndarray], tie_break: str) -> tuple[float, float]:
        rr, p5 = [], []
        for q in qids:
            docs, s = run[q], scores[q]
            key = (lambda i: (-s[i], i)) if tie_break == "first stage" else (lambda i: (-s[i], docs[i]))
            ranked = [docs[i] for i in sorted(range(len(docs)), key=key)]
            relevant = qrels.get(q, {})
            rr.append(next((1 / (i + 1) for i, d in enumerate(ranked) if relevant.get(d, 0) > 0), 0.0))
            p5.append(sum(relevant.get(d, 0) > 0 for d in ranked[:5]) / 5)
        return float(np.mean(rr)), float(np.mean(p5))

    first = {q: -np.arange(len(run[q]), dtype=np.float64) for q in qids}
    rr, p5 = measures(first, "first stage")
    print(f"{args.language}, {len(qids)} questions; first stage RR@10 {rr:.3f} P@5 {p5:.3f}")
    print("| scoring | seconds | median top-10 spread | questions with ties | RR@10 / P@5, docid tie-break | RR@10 / P@5, first-stage tie-break |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in ("fp32", "bf16 logits", "bf16 + fp32 head"):
        started = time.time()
        scores = score(mode)
        seconds = time.time() - started
        spread = float(np.median([s.max() - s.min() for s in scores.values()]))
        tied = sum(len(set(s.tolist())) < len(s) for s in scores.values())
        a, b = measures(scores, "docid"), measures(scores, "first stage")
        print(f"| {mode} | {seconds:.0f} | {spread:.4f} | {tied}/{len(qids)} | {a[0]:.3f} / {a[1]:.3f} | {b[0]:.3f} / {b[1]:.3f} |")


if __name__ == "__main__":
    main()
