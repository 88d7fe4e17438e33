"""Benchmark the streamed training-data pipeline and on-disk reranking at MS MARCO scale (issue 13).

Generates (into ``--work``, deleted afterwards unless ``--keep``) a 1M-passage ``collection.tsv``, a
``queries.tsv``, MS MARCO id triples (``qid<TAB>pid+<TAB>pid-``) of 100k, 1M and 10M lines, the same
passages as a JSONL corpus and a first-stage run, then measures, each in a fresh subprocess so that
peak RSS (``resource.getrusage``) is that of the one job:

* **index**: building the line index of each triples file (and, once, the two text stores);
* **pipeline**: what the trainer does per example, without the model: the epoch's seeded permutation
  of line positions (as :meth:`clir_ot.training.Trainer.epoch_order`), reading the groups in that
  order, looking the query and passages up in the stores, tokenising and collating the pairs (the
  call :meth:`clir_ot.models.CrossEncoderModel.tokenize` makes) -- examples/s and peak RSS;
* **train**: a few real optimizer steps of the model (``--model``, default the offline
  multilingual-e5-small) on the 100k triples through :class:`~clir_ot.training.Trainer`: the rate at
  which training consumes examples on this machine;
* **rerank**: :func:`clir_ot.rerank.rerank_run` over the JSONL corpus read through the on-disk store,
  and, for contrast, through an in-memory dict (:func:`clir_ot.formats.load_corpus`). The scorer is a
  constant-cost one (passage length), so the figures are the data path's, not a model's.

It prints examples/s and peak RSS per size and the two ratios against the goals: peak RSS at 10M
within 1.2x of 100k, and the pipeline at least 20x faster than training consumes examples.

    .venv/bin/python tools/bench_training_data.py                 # 100k, 1M, 10M; ~1.3 GB of data in /tmp
    .venv/bin/python tools/bench_training_data.py --parts       # index and pipeline only, no training or rerank
    .venv/bin/python tools/bench_training_data.py --sizes 100000 1000000 --passages 100000   # quicker
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clir_ot.cli.arguments import positive_int

logger = logging.getLogger("bench_training_data")

RSS_GOAL = 1.2
SPEED_GOAL = 20.0
VOCABULARY = 5000


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    """This process's resident set size now (``VmRSS``), in MiB: what is held, not the high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def words(rng: np.random.Generator) -> np.ndarray:
    """A fixed pseudo-vocabulary of lower-case 'words' (3-9 letters)."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(["".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(VOCABULARY)])


def write_texts(path: Path, count: int, length: tuple[int, int], rng: np.random.Generator, vocab: np.ndarray,
                jsonl: Path | None = None, id_offset: int = 0, block: int = 20_000) -> None:
    """``count`` lines ``id<TAB>text`` of Zipf-ish random words (and the same as Pyserini JSONL)."""
    with open(path, "w", encoding="utf-8") as tsv, (open(jsonl, "w", encoding="utf-8") if jsonl else open(os.devnull, "w")) as js:
        for start in range(0, count, block):
            n = min(block, count - start)
            sizes = rng.integers(length[0], length[1] + 1, size=n)
            picks = np.minimum(rng.zipf(1.3, size=int(sizes.sum())) - 1, VOCABULARY - 1)
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            texts = [" ".join(vocab[picks[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])]
            tsv.write("".join(f"{start + i + id_offset}\t{t}\n" for i, t in enumerate(texts)))
            if jsonl:
                js.write("".join(json.dumps({"id": str(start + i + id_offset), "contents": t}) + "\n"
                                 for i, t in enumerate(texts)))


def write_triples(path: Path, lines: int, queries: int, passages: int, rng: np.random.Generator,
                  block: int = 1_000_000) -> None:
    with open(path, "w", encoding="ascii") as handle:
        for start in range(0, lines, block):
            n = min(block, lines - start)
            rows = np.stack([rng.integers(0, queries, n), rng.integers(0, passages, n), rng.integers(0, passages, n)], 1)
            np.savetxt(handle, rows, fmt="%d", delimiter="\t")


def write_run(path: Path, queries: int, depth: int, passages: int, rng: np.random.Generator) -> None:
    with open(path, "w", encoding="ascii") as handle:
        for q in range(queries):
            docs = rng.choice(passages, size=depth, replace=False)
            handle.write("".join(f"{q} Q0 {d} {r + 1} {depth - r} bench\n" for r, d in enumerate(docs)))


def generate(work: Path, sizes: list[int], passages: int, queries: int, run_queries: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    vocab = words(rng)
    started = time.perf_counter()
    write_texts(work / "collection.tsv", passages, (40, 80), rng, vocab, jsonl=work / "corpus.jsonl")
    write_texts(work / "queries.tsv", queries, (3, 8), rng, vocab)
    for size in sizes:
        write_triples(work / f"triples.{size}.tsv", size, queries, passages, rng)
    write_run(work / "run.txt", run_queries, 100, passages, rng)
    write_texts(work / "run-topics.tsv", run_queries, (3, 8), rng, vocab)
    files = {p.name: p.stat().st_size for p in sorted(work.iterdir()) if p.is_file()}
    return {"seconds": round(time.perf_counter() - started, 1), "bytes": files}


# --------------------------------------------------------------------------------------------------
# Children (one job per fresh process)


def child_index(args: argparse.Namespace) -> dict:
    from clir_ot.store import TextStore
    from clir_ot.training.streaming import StreamedGroups

    work = Path(args.work)
    started = time.perf_counter()
    queries, passages = TextStore(work / "queries.tsv", "query"), TextStore(work / "collection.tsv", "passage")
    stores = time.perf_counter() - started
    started = time.perf_counter()
    groups = StreamedGroups(work / f"triples.{args.size}.tsv", "id-triples", queries=queries, passages=passages)
    return {"lines": len(groups), "stores_s": round(stores, 2), "lines_index_s": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def child_pipeline(args: argparse.Namespace) -> dict:
    from transformers import AutoTokenizer

    from clir_ot.store import TextStore
    from clir_ot.training.streaming import StreamedGroups

    work = Path(args.work)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    baseline = peak_rss_mb()  # interpreter, torch, transformers, the tokenizer
    held_before = rss_now_mb()
    queries, passages = TextStore(work / "queries.tsv", "query"), TextStore(work / "collection.tsv", "passage")
    groups = StreamedGroups(work / f"triples.{args.size}.tsv", "id-triples", queries=queries, passages=passages)
    started = time.perf_counter()
    n = len(groups)  # the Trainer's epoch order: default_rng([seed, epoch]).permutation(n), in int32
    order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    np.random.default_rng([42, 0]).shuffle(order)
    permutation_s = time.perf_counter() - started
    started = time.perf_counter()
    pairs = 0
    read_s = 0.0
    for start in range(0, args.examples, args.batch_size):
        tick = time.perf_counter()
        batch = [groups[i] for i in order[start:start + args.batch_size]]
        read_s += time.perf_counter() - tick
        size = 1 + len(batch[0].negatives)
        qs = [g.query for g in batch for _ in range(size)]
        ps = [p for g in batch for p in g.passages]
        inputs = tokenizer(qs, ps, truncation="longest_first", max_length=args.max_length, padding=True,
                           return_tensors="pt")
        pairs += int(inputs["input_ids"].shape[0])
    seconds = time.perf_counter() - started
    return {"lines": n, "examples": args.examples, "pairs": pairs, "examples_per_s": round(args.examples / seconds, 1),
            "read_lookup_examples_per_s": round(args.examples / read_s, 1), "permutation_s": round(permutation_s, 3),
            "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_before_data_mb": round(held_before, 1), "rss_after_mb": round(rss_now_mb(), 1)}


def child_train(args: argparse.Namespace) -> dict:
    import torch

    from clir_ot.models import CrossEncoderModel
    from clir_ot.store import TextStore
    from clir_ot.training import Trainer, TrainingConfig
    from clir_ot.training.streaming import StreamedGroups

    work = Path(args.work)
    torch.manual_seed(0)
    queries, passages = TextStore(work / "queries.tsv", "query"), TextStore(work / "collection.tsv", "passage")
    groups = StreamedGroups(work / f"triples.{args.size}.tsv", "id-triples", queries=queries, passages=passages)
    model = CrossEncoderModel.from_pretrained(args.model, max_length=args.max_length)
    config = TrainingConfig(max_steps=args.steps, batch_size=args.batch_size, save_every=args.steps, log_every=1,
                            max_length=args.max_length, keep_last=1)
    out = Path(tempfile.mkdtemp(prefix="train-", dir=work))
    try:
        trainer = Trainer(model, groups, config, out, device="cpu", progress=False)
        trainer.train()
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        rates = [r["examples_per_s"] for r in log if "examples_per_s" in r][1:]  # the first step warms up
        return {"steps": args.steps, "batch_size": args.batch_size, "precision": trainer.precision,
                "threads": torch.get_num_threads(), "examples_per_s_per_step": [round(r, 3) for r in rates],
                "examples_per_s": round(statistics.median(rates), 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def child_rerank(args: argparse.Namespace) -> dict:
    from clir_ot.formats import load_corpus, read_topics
    from clir_ot.rerank import Reranker, rerank_run
    from clir_ot.store import TextStore

    class PassageLength(Reranker):
        """A constant-cost scorer (the passage's length): the benchmark measures the data path."""

        def score(self, query, texts):
            return np.array([len(t) for t in texts], dtype=np.float64)

    work = Path(args.work)
    topics = read_topics(work / "run-topics.tsv")
    baseline = peak_rss_mb()
    started = time.perf_counter()
    corpus = TextStore(work / "corpus.jsonl") if args.source == "store" else load_corpus(work / "corpus.jsonl")
    open_s = time.perf_counter() - started
    out = work / f"reranked.{args.source}.txt"
    started = time.perf_counter()
    report = rerank_run(PassageLength(), work / "run.txt", topics, corpus, out, depth=100)
    seconds = time.perf_counter() - started
    out.unlink(missing_ok=True)
    return {"source": args.source, "documents": len(corpus), "queries": report.queries, "pairs": report.pairs,
            "open_s": round(open_s, 2), "rerank_s": round(seconds, 2), "pairs_per_s": round(report.pairs / seconds, 1),
            "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


CHILDREN = {"index": child_index, "pipeline": child_pipeline, "train": child_train, "rerank": child_rerank}


def run_child(mode: str, args: argparse.Namespace, **extra) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--work", str(args.work), "--examples", str(args.examples),
               "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--steps", str(args.steps),
               "--tokenizer", str(args.tokenizer), "--model", str(args.model)]
    for key, value in extra.items():
        command += [f"--{key}", str(value)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "CLIR_OT_STORE_DIR": str(Path(args.work) / "stores")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{mode} {extra} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    logger.info("%s %s: %s", mode, extra, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=None, help="folder for the generated data (default: a new one in /tmp)")
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--passages", type=positive_int, default=1_000_000)
    parser.add_argument("--queries", type=positive_int, default=100_000)
    parser.add_argument("--run-queries", type=positive_int, default=2_000, help="queries of the reranked run (100 hits each)")
    parser.add_argument("--examples", type=positive_int, default=4_000, help="examples the pipeline processes per size")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--max-length", type=positive_int, default=256)
    parser.add_argument("--steps", type=positive_int, default=4, help="real training steps (the first is not timed)")
    parser.add_argument("--model", default=None, help="model of the training steps (default: the offline default)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--parts", nargs="*", choices=("train", "rerank"), default=["train", "rerank"],
                        help="optional parts to run besides index and pipeline (default both)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--source", default="store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None and args.examples > min(args.sizes):
        parser.error(f"--examples {args.examples} is more than the smallest of --sizes ({min(args.sizes)}): "
                     "each size's pipeline reads that many distinct examples")
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.model is None or args.tokenizer is None:
        from clir_ot.models import prepare_default_model

        default = str(prepare_default_model())
        args.model = args.model or default
        args.tokenizer = args.tokenizer or args.model
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="clir_ot-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    args.work = work
    try:
        logger.info("generating %s triples over %d passages into %s", args.sizes, args.passages, work)
        generated = generate(work, args.sizes, args.passages, args.queries, args.run_queries, args.seed)
        logger.info("generated %.1f GB in %.0f s", sum(generated["bytes"].values()) / 1e9, generated["seconds"])
        index = {size: run_child("index", args, size=size) for size in args.sizes}
        pipeline = {size: run_child("pipeline", args, size=size) for size in args.sizes}
        train = run_child("train", args, size=args.sizes[0]) if "train" in args.parts else None
        rerank = ({source: run_child("rerank", args, source=source) for source in ("store", "dict")}
                  if "rerank" in args.parts else {})
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    small, large = args.sizes[0], args.sizes[-1]
    rss_ratio = pipeline[large]["peak_rss_mb"] / pipeline[small]["peak_rss_mb"]
    slowest = min(p["examples_per_s"] for p in pipeline.values())
    growth = pipeline[large]["rss_after_mb"] - pipeline[large]["rss_before_data_mb"]
    speed_ratio = slowest / train["examples_per_s"] if train else float("nan")
    report = {"generated": generated, "index": index, "pipeline": pipeline, "train": train, "rerank": rerank,
              "ratios": {"peak_rss_large_over_small": round(rss_ratio, 3), "rss_goal": RSS_GOAL,
                         "held_rss_growth_large_mb": round(growth, 1),
                         "pipeline_over_training": round(speed_ratio, 1), "speed_goal": SPEED_GOAL}}
    lines = [f"{'triples':>10} {'index s':>8} {'examples/s':>11} {'read+lookup/s':>14} {'peak RSS MB':>12} "
             f"{'(baseline)':>10} {'held MB before -> after data':>29}"]
    for size in args.sizes:
        p, i = pipeline[size], index[size]
        lines.append(f"{size:>10,} {i['lines_index_s']:>8.1f} {p['examples_per_s']:>11.1f} "
                     f"{p['read_lookup_examples_per_s']:>14.1f} {p['peak_rss_mb']:>12.1f} {p['baseline_rss_mb']:>10.1f} "
                     f"{p['rss_before_data_mb']:>20.1f} -> {p['rss_after_mb']:.1f}")
    if train:
        lines.append(f"training ({train['precision']}, batch {train['batch_size']}, {train['threads']} threads): "
                     f"{train['examples_per_s']:.2f} examples/s, peak RSS {train['peak_rss_mb']:.0f} MB")
    for source, r in rerank.items():
        lines.append(f"rerank data path, corpus as {source}: {r['documents']:,} docs, {r['pairs']:,} pairs, "
                     f"{r['pairs_per_s']:.0f} pairs/s, open {r['open_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
                     f"(baseline {r['baseline_rss_mb']:.0f})")
    lines.append(f"peak RSS {large:,} / {small:,} triples = {rss_ratio:.3f} (goal <= {RSS_GOAL}): "
                 f"{'met' if rss_ratio <= RSS_GOAL else 'NOT met'}")
    lines.append(f"held RSS grows by {growth:.1f} MB over the {large:,}-line run (index, permutation, stores)")
    if train:
        lines.append(f"pipeline / training = {slowest:.1f} / {train['examples_per_s']:.2f} = {speed_ratio:.1f}x "
                     f"(goal >= {SPEED_GOAL}x): {'met' if speed_ratio >= SPEED_GOAL else 'NOT met'}")
    print("\n".join(lines))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
