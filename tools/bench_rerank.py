"""Reranker throughput and the quality guard: clir_ot's inference paths against sentence-transformers' backends.

    python tools/bench_rerank.py --model MODEL [--pairs 1000] [--max-lengths 256 512] [--repeats 3]
        [--paths torch/fp32 torch/bf16 ...] [--peers torch onnx ...] [--peer-python PY] [--limits PATH ...]
    python tools/bench_rerank.py --guard --model MODEL --fold 0 [--questions 300] [--max-lengths 256 512]

Pairs are real XQuAD pairs: English questions with Hindi paragraphs (each question's top 10 of the
dense en->hi first stage). ``--model`` is a cross-encoder folder (default: the offline backbone with
a seeded, untrained head).

**Throughput** (default). Per max length, on the same pairs and batch size, interleaved, best of
``--repeats``: each of our inference paths (:mod:`clir_ot.models.backends`) through
``CrossEncoderReranker.score_pairs`` (tokenisation included), the bare forward limit of each path
(pre-tokenised, length-sorted batches; no scorer of that path can beat it), and sentence-transformers'
``CrossEncoder`` on each of its backends (``torch`` fp32, ``onnx``, ``onnx`` O3, ``onnx`` qint8,
``openvino``, ``openvino`` qint8), each on the same encoder folder. A peer backend that cannot be built
here is skipped with the reason printed. sentence-transformers 6 needs transformers 5, and the
``optimum`` packages its onnx / openvino backends need support transformers < 4.58 only, so those
peers usually need another interpreter: ``--peer-python`` runs them in a worker process
(``tools/bench_peer_worker.py``, e.g. a venv with sentence-transformers 5, optimum-onnx and
optimum-intel), still interleaved with ours. Printed: every pairs/s, every ratio to the fastest
peer, and the goal: our ``auto`` path >= 1.2x the fastest peer.

**Guard** (``--guard``). The quality guard of :mod:`clir_ot.rerank.guard` for each path against
torch/fp32, on ``--questions`` questions of the test fold ``--fold`` of a cross-fitted teacher (its
held-out questions) with their top 10: top-10 order share, P@5 and RR@10 against fp32's with the
paired randomization test, the largest score error, pairs/s. One record per max length is written
to the guard folder (``--guard-dir``, default ``$CLIR_OT_GUARD_DIR`` or ``~/.cache/clir_ot/guard``),
where ``--backend auto`` reads it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clir_ot.cli.arguments import nonnegative_int, positive_int  # noqa: E402
from clir_ot.evaluation import evaluate  # noqa: E402
from clir_ot.formats import iter_run_by_query, load_corpus, read_folds, read_qrels, read_topics  # noqa: E402
from clir_ot.models.backends import InferencePath, backend_available  # noqa: E402
from clir_ot.models.loading import parameters_digest  # noqa: E402
from clir_ot.rerank.guard import (  # noqa: E402
    GUARD_MEASURES,
    GUARD_TOP,
    REFERENCE,
    GuardRecord,
    PathQuality,
    choose_path,
    hardware_id,
    judge_path,
    read_guard_records,
    write_guard_record,
)
from clir_ot.study.stats import paired_randomization_test  # noqa: E402

logger = logging.getLogger("bench_rerank")

DEFAULT_PATHS = ("torch/fp32", "torch/bf16", "torch-compile/bf16", "onnx/fp32", "openvino/fp32", "openvino/bf16")
PEERS = ("torch", "onnx", "onnx-O3", "onnx-qint8", "openvino", "openvino-qint8")
GOAL = 1.2
WORKER = Path(__file__).resolve().parent / "bench_peer_worker.py"


@dataclass
class Pairs:
    """Question-passage pairs grouped by question, each question's candidates in first-stage order."""

    qids: list[str]
    queries: list[str]
    passages: list[str]
    docids: list[str]

    def __len__(self) -> int:
        return len(self.queries)


def load_pairs(collection: Path, run: Path, count: int | None = None, *, language: str = "hi", depth: int = 10,
               questions: Sequence[str] | None = None, max_questions: int | None = None) -> Pairs:
    """The top ``depth`` of each question of ``run`` (only ``questions`` if given), with texts, until
    ``count`` pairs or ``max_questions`` questions."""
    topics = read_topics(collection / "topics.xquad.en.tsv")
    corpus = load_corpus(collection / "corpus" / language)
    wanted = set(questions) if questions is not None else None
    pairs = Pairs([], [], [], [])
    seen = 0
    for qid, hits in iter_run_by_query(run):
        if wanted is not None and qid not in wanted:
            continue
        if (count is not None and len(pairs) >= count) or (max_questions is not None and seen >= max_questions):
            break
        seen += 1
        for hit in hits[:depth]:
            pairs.qids.append(qid)
            pairs.queries.append(topics[qid])
            pairs.passages.append(corpus[hit.docid])
            pairs.docids.append(hit.docid)
    if count is not None:
        pairs = Pairs(pairs.qids[:count], pairs.queries[:count], pairs.passages[:count], pairs.docids[:count])
    return pairs


def groups(qids: Sequence[str]) -> dict[str, list[int]]:
    """qid -> its rows, in order."""
    rows: dict[str, list[int]] = {}
    for i, qid in enumerate(qids):
        rows.setdefault(qid, []).append(i)
    return rows


def ranking(rows: list[int], scores: np.ndarray, top: int) -> list[int]:
    """The reranked top ``top`` rows: by float32 score, ties in first-stage order (as assemble_ranking)."""
    return sorted(rows, key=lambda i: (-np.float32(scores[i]), i))[:top]


def order_share(qids: Sequence[str], a: np.ndarray, b: np.ndarray, top: int = GUARD_TOP) -> float:
    """Share of questions whose top ``top`` under ``a`` is ``b``'s, in the same order."""
    by_question = groups(qids)
    same = sum(ranking(rows, a, top) == ranking(rows, b, top) for rows in by_question.values())
    return same / len(by_question)


def per_question_measures(pairs: Pairs, scores: np.ndarray, qrels: dict[str, dict[str, int]]) -> dict[str, np.ndarray]:
    """P@5 and RR@10 per question (in the order of :func:`groups`) of the reranked top 10."""
    by_question = groups(pairs.qids)
    run = {qid: {pairs.docids[i]: float(GUARD_TOP - r) for r, i in enumerate(ranking(rows, scores, GUARD_TOP))}
           for qid, rows in by_question.items()}
    judged = {qid: qrels[qid] for qid in by_question if qid in qrels}
    result = evaluate(judged, run, GUARD_MEASURES, complete=True, name="guard")
    return {m: np.array([result.per_query[qid][m] for qid in judged]) for m in GUARD_MEASURES}


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved(methods: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Run every method ``repeats`` times, interleaved; the fastest seconds and the last result of each."""
    best = {name: float("inf") for name in methods}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            seconds, result = timed(fn)
            best[name] = min(best[name], seconds)
            results[name] = result
    return best, results


def build_rerankers(model, paths: Sequence[InferencePath], batch_size: int, max_length: int) -> dict:
    """One reranker per installed path; a path whose backend is not installed is skipped with the reason."""
    from clir_ot.rerank import CrossEncoderReranker

    rerankers = {}
    for path in paths:
        ok, why = backend_available(path.backend)
        if not ok:
            print(f"  skipped {path}: {why}")
            continue
        rerankers[str(path)] = CrossEncoderReranker(model, batch_size=batch_size, max_length=max_length,
                                                    dtype=path.dtype, backend=path.backend)
    return rerankers


def warm_up(rerankers: dict, pairs: Pairs) -> None:
    """Score a few pairs of every length class once (torch.compile compiles, onnx/openvino allocate)."""
    rows = list(range(0, len(pairs), max(1, len(pairs) // 96)))
    for reranker in rerankers.values():
        reranker.score_pairs([pairs.queries[i] for i in rows], [pairs.passages[i] for i in rows])


def measure_guard(model, pairs: Pairs, qrels: dict[str, dict[str, int]], paths: Sequence[InferencePath], *,
                  max_length: int, batch_size: int = 32, repeats: int = 1, note: str = "") -> GuardRecord:
    """The guard's figures for every installed path against torch/fp32 on ``pairs`` (see the module docstring)."""
    paths = [REFERENCE, *[p for p in paths if p != REFERENCE]]
    rerankers = build_rerankers(model, paths, batch_size, max_length)
    warm_up(rerankers, pairs)
    methods = {name: (lambda r=r: r.score_pairs(pairs.queries, pairs.passages)) for name, r in rerankers.items()}
    best, scores = interleaved(methods, repeats)
    reference = np.asarray(scores[str(REFERENCE)], dtype=np.float64)
    reference_measures = per_question_measures(pairs, reference, qrels)
    results = []
    for name in rerankers:
        s = np.asarray(scores[name], dtype=np.float64)
        measures = per_question_measures(pairs, s, qrels)
        deltas = {m: float(np.mean(measures[m] - reference_measures[m])) for m in GUARD_MEASURES}
        p_values = {m: paired_randomization_test(measures[m], reference_measures[m]) for m in GUARD_MEASURES}
        results.append(PathQuality.judged(name, len(pairs) / best[name], order_share(pairs.qids, s, reference),
                                          deltas, p_values, float(np.max(np.abs(s - reference)))))
    reranker = rerankers[str(REFERENCE)]
    return GuardRecord(hardware=hardware_id(model.device), model=str(model.name_or_path),
                       weights=reranker.weights_digest, max_length=reranker.max_length, batch_size=batch_size,
                       questions=len(groups(pairs.qids)), pairs=len(pairs), paths=tuple(results), note=note)


def print_guard(record: GuardRecord) -> None:
    print(f"\nquality guard, max length {record.max_length}: {record.questions} questions, {record.pairs} pairs "
          f"({record.model})")
    print(f"  {'path':20s} {'pairs/s':>8s} {'top-10 = fp32':>14s} {'dP@5':>8s} {'p':>6s} {'dRR@10':>8s} {'p':>6s} "
          f"{'max |err|':>10s}  verdict")
    for q in record.paths:
        _, reasons = judge_path(q.order_share, q.p_values)
        print(f"  {q.path:20s} {q.pairs_per_s:8.1f} {q.order_share:14.1%} {q.deltas['P@5']:+8.4f} "
              f"{q.p_values['P@5']:6.3f} {q.deltas['RR@10']:+8.4f} {q.p_values['RR@10']:6.3f} {q.max_abs_error:10.2e}"
              f"  {'PASS' if q.passed else 'FAIL: ' + '; '.join(reasons)}")


# --------------------------------------------------------------------------------------------------
# peers: sentence-transformers' CrossEncoder backends, in this process or in a worker process


class PeerWorker:
    """sentence-transformers' backends in another interpreter (``--peer-python``), driven line by line."""

    def __init__(self, python: str, pairs_file: Path, folder: Path, batch_size: int):
        self.process = subprocess.Popen([python, str(WORKER), "--pairs", str(pairs_file), "--folder", str(folder),
                                         "--batch-size", str(batch_size)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the peer worker exited")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def peer_methods(peers: Sequence[str], worker: PeerWorker | None, folder: Path, texts: list[tuple[str, str]],
                 max_length: int, batch_size: int) -> dict[str, Callable[[], object]]:
    """One timed callable per peer backend that can be built; the others are printed with the reason.
    ``texts``: the pairs as the model reads them (prefixes included)."""
    methods: dict[str, Callable[[], object]] = {}
    for peer in peers:
        if worker is not None:
            answer = worker.ask(load=peer, max_length=max_length)
            if "error" in answer:
                print(f"  skipped ST {peer}: {answer['error']}")
                continue

            def remote(peer=peer):
                return worker.ask(run=peer, max_length=max_length)["seconds"]
            methods[f"ST {peer}"] = remote
            continue
        sys.path.insert(0, str(WORKER.parent))
        from bench_peer_worker import build_peer, describe

        try:
            model = build_peer(peer, folder, max_length, texts[:256])
        except Exception as err:  # noqa: BLE001 - the reason is printed, the peer skipped
            print(f"  skipped ST {peer}: {describe(err)} (sentence-transformers 6 needs transformers 5; the optimum "
                  "packages of its onnx/openvino backends support transformers < 4.58: see --peer-python)")
            continue
        methods[f"ST {peer}"] = lambda m=model: m.predict(texts, batch_size=batch_size, show_progress_bar=False)
    return methods


def limit_methods(model, rerankers: dict, pairs: Pairs, max_length: int, batch_size: int) -> dict[str, Callable]:
    """The bare forward pass of each path over pre-tokenised, length-sorted, padded batches."""
    from clir_ot.models.loading import compute_precision, iter_length_sorted_batches

    def tokenize(positions):
        q, p = model.pair_texts([pairs.queries[i] for i in positions], [pairs.passages[i] for i in positions])
        return model.tokenizer(q, p, truncation="longest_first", max_length=max_length)

    batches = [b for _, b in iter_length_sorted_batches(len(pairs), tokenize, batch_size=batch_size,
                                                       pad_token_id=model.tokenizer.pad_token_id)]
    methods = {}
    for name, reranker in rerankers.items():
        runner = reranker._runner

        def forward(runner=runner, dtype=reranker.dtype):
            with torch.inference_mode():
                for batch in batches:
                    if runner is None:
                        with compute_precision(model.device, dtype):
                            model(**batch)
                    else:
                        model.score_states(runner(batch), batch["attention_mask"])
        methods[f"limit {name}"] = forward
    return methods


def guard_verdicts(weights: str, max_length: int, device, folder: Path | None) -> dict[str, str]:
    """path -> "PASS (order share)" / "FAIL (...)" from the guard record nearest ``max_length`` (none: {})."""
    pool = [r for r in read_guard_records(folder) if r.weights == weights and r.hardware == hardware_id(device)]
    if not pool:
        return {}
    record = min(pool, key=lambda r: (abs(r.max_length - max_length), -r.max_length))
    return {q.path: f"{'PASS' if q.passed else 'FAIL'} ({q.order_share:.0%} top-10 = fp32, len {record.max_length})"
            for q in record.paths}


def throughput(args, model, pairs: Pairs, paths: list[InferencePath]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "encoder"
        model.encoder.save_pretrained(folder)
        model.tokenizer.save_pretrained(folder)
        texts = list(zip(*model.pair_texts(pairs.queries, pairs.passages)))
        pairs_file = Path(tmp) / "pairs.json"
        pairs_file.write_text(json.dumps(texts))
        worker = PeerWorker(args.peer_python, pairs_file, folder, args.batch_size) if args.peer_python else None
        try:
            for max_length in args.max_lengths:
                throughput_at(args, model, pairs, paths, max_length, worker, folder, texts)
        finally:
            if worker is not None:
                worker.close()


def throughput_at(args, model, pairs: Pairs, paths: list[InferencePath], max_length: int,
                  worker: PeerWorker | None, folder: Path, texts: list[tuple[str, str]]) -> None:
    print(f"\nmax length {max_length}")
    weights = parameters_digest(model)
    auto_path, why = choose_path(weights, max_length, "auto", model.device, args.guard_dir)
    rerankers = build_rerankers(model, [*paths, *([auto_path] if auto_path not in paths else [])], args.batch_size,
                                max_length)
    warm_up(rerankers, pairs)
    ours = {name: (lambda r=r: r.score_pairs(pairs.queries, pairs.passages)) for name, r in rerankers.items()}
    peers = peer_methods(args.peers, worker, folder, texts, max_length, args.batch_size)
    limited = {name: r for name, r in rerankers.items() if args.limits is None or name in args.limits}
    limits = limit_methods(model, limited, pairs, max_length, args.batch_size) if limited else {}
    for fn in peers.values():  # warm-up (graph allocation)
        fn()
    best, _ = interleaved({**ours, **limits, **peers}, args.repeats)
    rate = {name: len(pairs) / s for name, s in best.items()}
    fastest_peer = max((n for n in rate if n.startswith("ST ")), key=rate.get, default=None)
    verdicts = guard_verdicts(weights, max_length, model.device, args.guard_dir)
    print(f"  {'scorer':28s} {'pairs/s':>8s}  {'/ fastest ST':>12s}  guard")
    for name in [*ours, *limits, *peers]:
        ratio = f"{rate[name] / rate[fastest_peer]:11.2f}x" if fastest_peer else ""
        verdict = verdicts.get(name, "") if name in ours else ""
        print(f"  {name:28s} {rate[name]:8.1f}  {ratio:>12s}  {verdict}")
    auto = str(auto_path)
    print(f"  auto = {auto} ({why})")
    if fastest_peer and auto in rate:
        ratio = rate[auto] / rate[fastest_peer]
        print(f"  goal: auto ({auto}) / fastest ST ({fastest_peer}) = {ratio:.2f}x "
              f">= {GOAL}: {'PASS' if ratio >= GOAL else 'NOT MET'}")
    elif not fastest_peer:
        print("  goal: no sentence-transformers backend could be run here; not measured")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, default=ROOT / "runs/xquad/collection")
    parser.add_argument("--run", type=Path, default=ROOT / "runs/xquad/run.xquad.e5-small.cross.en-hi.txt",
                        help="first-stage run of English questions over Hindi paragraphs (from make demo)")
    parser.add_argument("--language", default="hi", help="the run's document language (default hi)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained cross-encoder folder (default: the offline backbone with a seeded head)")
    parser.add_argument("--pairs", type=positive_int, default=1000, help="throughput: pairs (default 1000)")
    parser.add_argument("--max-lengths", type=positive_int, nargs="+", default=[256, 512])
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--paths", nargs="+", default=list(DEFAULT_PATHS), help="our inference paths, BACKEND/DTYPE")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    parser.add_argument("--peer-python", default=None,
                        help="an interpreter with sentence-transformers and optimum (onnx, openvino) to run the peers in")
    parser.add_argument("--limits", nargs="*", default=None, metavar="PATH",
                        help="the paths whose bare forward limit is timed too (default: all of --paths; none: no limits)")
    parser.add_argument("--guard", action="store_true", help="measure the quality guard and write its records")
    parser.add_argument("--fold", type=nonnegative_int, default=None,
                        help="guard: the questions of this fold of folds.json (a cross-fitted teacher's test fold)")
    parser.add_argument("--questions", type=positive_int, default=300, help="guard: questions (default 300)")
    parser.add_argument("--guard-dir", type=Path, default=None, help="where guard records go (default: the guard folder)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default torch's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("transformers", "sentence_transformers", "clir_ot"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if not args.run.is_file():
        parser.error(f"{args.run} not found: run `make demo` first (it writes the dense en->{args.language} run)")
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [InferencePath.parse(p) for p in args.paths]

    from clir_ot.models import CrossEncoderModel, default_model_dir, prepare_default_model
    from clir_ot.models.loading import cpu_has_native_bf16

    if args.model is None:
        prepare_default_model()
    torch.manual_seed(0)
    model = CrossEncoderModel.from_pretrained(args.model or default_model_dir())
    model.eval()
    print(f"model: {args.model or 'offline backbone, seeded untrained head'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}; "
          f"{hardware_id()}")
    if args.guard:
        questions = None
        if args.fold is not None:
            questions = read_folds(args.collection / "folds.json")[args.fold]["qids"]
        pairs = load_pairs(args.collection, args.run, language=args.language, questions=questions,
                           max_questions=args.questions)
        qrels = read_qrels(args.collection / f"qrels.xquad.cross.{args.language}.txt")
        for max_length in args.max_lengths:
            record = measure_guard(model, pairs, qrels, paths, max_length=max_length, batch_size=args.batch_size,
                                   repeats=args.repeats,
                                   note=f"XQuAD en-{args.language}, {args.run.name}, fold {args.fold}")
            print_guard(record)
            print(f"  written: {write_guard_record(record, args.guard_dir)}")
        return 0
    pairs = load_pairs(args.collection, args.run, args.pairs, language=args.language)
    print(f"{len(pairs)} XQuAD pairs (en question, {args.language} paragraph), {len(groups(pairs.qids))} questions; "
          f"batch {args.batch_size}; best of {args.repeats}, interleaved")
    throughput(args, model, pairs, paths)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
