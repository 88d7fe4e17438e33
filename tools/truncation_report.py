"""How much text each XQuAD language loses at a given max length, and the length that loses at most 5%.

For every language's paragraphs (the passage side: what the bi-encoder and the students encode alone)
and for every (English question, relevant paragraph in that language) pair (what the cross-encoder
reads, ``query: q </s></s> passage: p`` with the model's special tokens), the token lengths under the
model's tokenizer, their median / p90 / p95 / max, the share truncated at each ``--lengths`` value, and
the smallest length (a multiple of 32, at most the model's limit) that truncates at most
``--budget`` of them. Only the tokenizer runs: seconds on a CPU.

``--windows N`` also gives, for the pairs at each length, what passage windows (MaxP,
:mod:`clir_ot.rerank.windows`: up to N windows of ``--overlap`` shared tokens, each fitting beside
the question) would cost and keep: windows scored per pair on average, and the share of pairs still
cut after N windows.

    python tools/truncation_report.py --output runs/xquad --lengths 256 384 512
    python tools/truncation_report.py --output runs/xquad --lengths 256 --windows 4 --overlap 32
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from clir_ot.datasets.layout import QUERY_LANGUAGE, XQuADLayout
from clir_ot.errors import ClirOtError, ConfigError
from clir_ot.formats import load_corpus, read_qrels, read_topics
from clir_ot.io import atomic_open
from clir_ot.models.default import resolve_model
from clir_ot.models.loading import load_tokenizer, locate_model
from clir_ot.rerank.windows import PassageWindows, passage_windows, prefix_tokens

logger = logging.getLogger("truncation_report")

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "


@dataclass(frozen=True)
class LengthSummary:
    """Token lengths of one kind of input (``paragraphs`` or ``pairs``) in one language."""

    language: str
    kind: str
    count: int
    median: float
    p90: float
    p95: float
    longest: int
    truncated: dict[int, float]  # max length -> share of inputs longer than it
    length_for_budget: int | None  # smallest multiple of 32 that truncates at most the budget
    #: pairs with --windows: max length -> {"windows_per_pair": mean, "cut": share still cut}
    windows: dict[int, dict[str, float]] | None = None


def summarise(language: str, kind: str, lengths: np.ndarray, limits: list[int], budget: float,
              model_limit: int) -> LengthSummary:
    """The statistics of ``lengths`` (tokens, special tokens included)."""
    def share(limit: int) -> float:
        return float(np.mean(lengths > limit))

    fitting = [n for n in range(32, model_limit + 1, 32) if share(n) <= budget]
    return LengthSummary(
        language=language, kind=kind, count=int(lengths.size), median=float(np.median(lengths)),
        p90=float(np.percentile(lengths, 90)), p95=float(np.percentile(lengths, 95)), longest=int(lengths.max()),
        truncated={limit: share(limit) for limit in limits},
        length_for_budget=fitting[0] if fitting else None)


def token_lengths(tokenizer, texts: list[str], pair_with: list[str] | None = None) -> np.ndarray:
    """Lengths with special tokens, untruncated: of ``texts`` alone, or of ``(pair_with[i], texts[i])``."""
    if pair_with is None:
        encoded = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    else:
        encoded = tokenizer(pair_with, texts, truncation=False, verbose=False)["input_ids"]
    return np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(texts))


def window_costs(tokenizer, questions: list[str], passages: list[str], limits: list[int],
                 windows: PassageWindows) -> dict[int, dict[str, float]]:
    """For (prefixed) ``questions[i]`` and raw ``passages[i]``: at each max length, the mean number of
    windows per pair and the share of pairs still cut, as :class:`~clir_ot.rerank.CrossEncoderReranker`
    would window them (the passage prefix in front of every window)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    question_lengths = token_lengths(tokenizer, questions) - tokenizer.num_special_tokens_to_add(pair=False)
    prefix = prefix_tokens(tokenizer, PASSAGE_PREFIX)
    offsets = tokenizer(passages, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    out = {}
    for limit in limits:
        counts, cut = [], 0
        for q_len, passage, spans in zip(question_lengths, passages, offsets):
            texts, lost = passage_windows(passage, spans, limit - specials - int(q_len) - prefix, windows)
            counts.append(len(texts))
            cut += lost
        out[limit] = {"windows_per_pair": float(np.mean(counts)), "cut": cut / len(passages)}
    return out


def measure(layout: XQuADLayout, languages: list[str], tokenizer, limits: list[int], budget: float,
            model_limit: int, windows: PassageWindows | None = None) -> list[LengthSummary]:
    collection = layout.collection
    questions = read_topics(collection.topics(QUERY_LANGUAGE))
    summaries = []
    for lang in languages:
        corpus = load_corpus(collection.corpus(lang))
        docids = sorted(corpus)
        paragraphs = token_lengths(tokenizer, [PASSAGE_PREFIX + corpus[d] for d in docids])
        qrels = read_qrels(collection.qrels(lang))
        pairs_q, pairs_p, raw = [], [], []
        for qid in sorted(qrels):
            for docid, grade in sorted(qrels[qid].items()):
                if grade > 0 and qid in questions and docid in corpus:
                    pairs_q.append(QUERY_PREFIX + questions[qid])
                    pairs_p.append(PASSAGE_PREFIX + corpus[docid])
                    raw.append(corpus[docid])
        pairs = token_lengths(tokenizer, pairs_p, pair_with=pairs_q)
        summaries.append(summarise(lang, "paragraphs", paragraphs, limits, budget, model_limit))
        summary = summarise(lang, "pairs", pairs, limits, budget, model_limit)
        if windows is not None and windows.enabled:
            summary = replace(summary, windows=window_costs(tokenizer, pairs_q, raw, limits, windows))
        summaries.append(summary)
        logger.info("%s: %d paragraphs, %d pairs", lang, paragraphs.size, pairs.size)
    return summaries


def markdown(summaries: list[LengthSummary], limits: list[int], budget: float) -> str:
    windowed = any(s.windows for s in summaries)
    head = (["lang", "input", "n", "median", "p90", "p95", "max"] + [f"cut at {n}" for n in limits]
            + [f"length for ≤{budget:.0%}"]
            + ([h for n in limits for h in (f"windows/pair at {n}", f"cut with windows at {n}")] if windowed else []))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for s in summaries:
        cells = [s.language, s.kind, str(s.count), f"{s.median:.0f}", f"{s.p90:.0f}", f"{s.p95:.0f}", str(s.longest)]
        cells += [f"{100 * s.truncated[n]:.1f}%" for n in limits]
        cells.append(str(s.length_for_budget) if s.length_for_budget else "none")
        if windowed:
            cells += ([c for n in limits for c in (f"{s.windows[n]['windows_per_pair']:.2f}",
                                                   f"{100 * s.windows[n]['cut']:.1f}%")]
                      if s.windows else ["", ""] * len(limits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("runs/xquad"), help="XQuAD outputs of `make demo`")
    parser.add_argument("--model", default=None, help="model whose tokenizer counts (default: multilingual-e5-small)")
    parser.add_argument("--languages", nargs="+", default=None, help="default: every language of the collection")
    parser.add_argument("--lengths", nargs="+", type=int, default=[256, 384, 512], help="max lengths to report")
    parser.add_argument("--budget", type=float, default=0.05, help="share of inputs a length may truncate")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--windows", type=int, default=1,
                        help="also report passage windows (MaxP) of up to this many windows per pair (default 1: off)")
    parser.add_argument("--overlap", type=int, default=32, help="tokens shared by consecutive windows (default 32)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        if any(n < 1 for n in args.lengths):
            raise ConfigError(f"--lengths must be positive, got {args.lengths}")
        if not 0.0 <= args.budget < 1.0:
            raise ConfigError(f"--budget must be in [0, 1), got {args.budget}")
        windows = PassageWindows(args.windows, args.overlap)
        layout = XQuADLayout(args.output)
        manifest = json.loads(layout.collection.manifest.read_text(encoding="utf-8")) \
            if layout.collection.manifest.exists() else {}
        languages = args.languages or manifest.get("languages") or [QUERY_LANGUAGE]
        source = locate_model(resolve_model(args.model))
        tokenizer = load_tokenizer(source)
        model_limit = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
        summaries = measure(layout, languages, tokenizer, sorted(args.lengths), args.budget, model_limit, windows)
    except (ClirOtError, OSError) as err:
        print(f"truncation_report: error: {err}", file=sys.stderr)
        return 2
    print(markdown(summaries, sorted(args.lengths), args.budget))
    if args.json:
        with atomic_open(args.json) as out:
            json.dump([asdict(s) for s in summaries], out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
