"""Evaluation with trec_eval's measures, through pytrec_eval, named as ir_measures names them.

Measures
--------
:data:`MEASURE_TABLE` is the one table that maps display names (ir_measures style) to trec_eval
measures and pytrec_eval result keys. :func:`parse_measure` accepts any of the three spellings
(``P@5`` / ``P.5`` / ``P_5``) and returns a :class:`Measure`; an unknown name raises
:class:`~clir_ot.errors.ConfigError` listing the valid forms.

Semantics (those of ``trec_eval -c``, checked against Pyserini's bundled trec_eval in the tests)
-----------------------------------------------------------------------------------------------
* **Queries.** Only queries of the qrels are evaluated; queries of the run that the qrels lack are
  ignored, as trec_eval ignores them. With ``complete=True`` (trec_eval ``-c``) a qrels query the run
  lacks counts with the value of an empty ranking -- 0 for every measure here, except ``NumRel``,
  its number of relevant documents -- so it pulls the mean down; with ``complete=False`` it is left
  out of the mean. Unlike ``trec_eval -q -c``, which prints no per-query line for such a query, the
  per-query values here include it (its zeros are part of the mean). A qrels query with no relevant
  document is evaluated (all zeros), as trec_eval evaluates it.
* **Aggregates.** The ``all`` value is the arithmetic mean over the evaluated queries, except for the
  counts ``NumRet``, ``NumRel`` and ``NumRelRet``, which are summed, as trec_eval sums them.
* **Ranking and ties.** The ranking is defined by the score, never by the rank column. trec_eval
  stores scores as 32-bit floats and sorts by score descending, then by docid *descending* (byte
  order). Scores that differ only beyond single precision are therefore ties, and ties are decided
  by docid, which silently changes P@k, RR and the rest; :func:`evaluate` logs a warning with the
  number of queries that have tied scores.
* **Depth (trec_eval ``-M k``).** ``RR@k`` is ``recip_rank`` computed on the run truncated to the top
  ``k`` documents per query: the ranking is ordered exactly as above (32-bit score descending,
  docid descending) and the first ``k`` are kept -- the same as ``trec_eval -M k -m recip_rank``,
  since trec_eval's ``recip_rank`` has no cutoff of its own. ``AP@k`` is ``map`` with the same
  truncation; trec_eval's ``map_cut.k`` has the same value and is parsed as ``AP@k``. Measures of
  the same depth are computed in one pytrec_eval call.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

import pytrec_eval

from clir_ot.errors import ConfigError, ConsistencyError
from clir_ot.formats import scores_as_float32, trec_eval_ranking

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MEASURES",
    "Evaluation",
    "FORMATS",
    "MEASURE_TABLE",
    "Measure",
    "count_tied_queries",
    "evaluate",
    "format_per_query",
    "format_table",
    "format_value",
    "parse_measure",
    "parse_measures",
    "trec_eval_ranking",
    "truncate_run",
]

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

#: Output formats of :func:`format_table` and :func:`format_per_query`.
FORMATS = ("tsv", "markdown", "json")

_NAME_WIDTH = 22  # trec_eval prints measure names with "%-22s"


# --------------------------------------------------------------------------------------------------
# Measures


@dataclass(frozen=True, slots=True)
class Measure:
    """One evaluation measure, under its three names.

    ``display`` is the ir_measures-style name used in tables (``P@5``, ``RR@10``); ``trec_eval`` the
    name given to ``trec_eval -m`` and to pytrec_eval (``P.5``, ``recip_rank``); ``key`` the name of
    trec_eval's output lines and of pytrec_eval's result dict (``P_5``); ``depth`` the number of
    documents per query it sees (trec_eval ``-M depth``), ``None`` for the whole ranking.
    """

    display: str
    trec_eval: str
    key: str
    depth: int | None = None

    @property
    def summed(self) -> bool:
        """Whether the aggregate over queries is a sum (trec_eval's counts), not a mean."""
        return self.trec_eval.startswith("num_")

    def trec_eval_args(self) -> list[str]:
        """The trec_eval options that compute this measure, e.g. ``['-M', '10', '-m', 'recip_rank']``."""
        depth = ["-M", str(self.depth)] if self.depth is not None else []
        return [*depth, "-m", self.trec_eval]

    def __str__(self) -> str:
        return self.display


CutoffKind = Literal["none", "cutoff", "depth"]


@dataclass(frozen=True, slots=True)
class MeasureFamily:
    """One row of :data:`MEASURE_TABLE`.

    ``display`` and ``trec_eval`` are templates in ``k`` where ``cutoff`` is ``"cutoff"`` (a
    parameter of the trec_eval measure, ``P.5``) or ``"depth"`` (trec_eval ``-M k``, ``RR@10``).
    ``stems`` are the names accepted by :func:`parse_measure` (case-insensitive), before an optional
    ``@k``, ``.k`` or ``_k``.
    """

    display: str
    trec_eval: str
    cutoff: CutoffKind
    stems: tuple[str, ...]
    forms: str

    def measure(self, k: int | None) -> Measure:
        if self.cutoff == "cutoff":
            assert k is not None
            trec = self.trec_eval.format(k=k)
            return Measure(self.display.format(k=k), trec, trec.replace(".", "_"))
        if self.cutoff == "depth":
            assert k is not None
            return Measure(self.display.format(k=k), self.trec_eval, self.trec_eval, depth=k)
        return Measure(self.display, self.trec_eval, self.trec_eval)


#: The one table of supported measures: display name, trec_eval name, accepted spellings.
MEASURE_TABLE: tuple[MeasureFamily, ...] = (
    MeasureFamily("P@{k}", "P.{k}", "cutoff", ("P",), "P@k = P.k = P_k"),
    MeasureFamily("Success@{k}", "success.{k}", "cutoff", ("Success",), "Success@k = success.k"),
    MeasureFamily("R@{k}", "recall.{k}", "cutoff", ("R", "recall"), "R@k = recall.k"),
    MeasureFamily("nDCG@{k}", "ndcg_cut.{k}", "cutoff", ("nDCG", "ndcg_cut"), "nDCG@k = ndcg_cut.k"),
    MeasureFamily("nDCG", "ndcg", "none", ("nDCG",), "nDCG = ndcg"),
    MeasureFamily("AP", "map", "none", ("AP", "MAP"), "AP = MAP = map"),
    MeasureFamily("AP@{k}", "map", "depth", ("AP", "MAP", "map_cut"), "AP@k = map_cut.k = map with -M k"),
    MeasureFamily("RR", "recip_rank", "none", ("RR", "MRR", "recip_rank"), "RR = MRR = recip_rank"),
    MeasureFamily("RR@{k}", "recip_rank", "depth", ("RR", "MRR", "recip_rank"), "RR@k = MRR@k = recip_rank with -M k"),
    MeasureFamily("Rprec", "Rprec", "none", ("Rprec",), "Rprec"),
    MeasureFamily("NumRet", "num_ret", "none", ("NumRet", "num_ret"), "NumRet = num_ret"),
    MeasureFamily("NumRel", "num_rel", "none", ("NumRel", "num_rel"), "NumRel = num_rel"),
    MeasureFamily("NumRelRet", "num_rel_ret", "none", ("NumRelRet", "num_rel_ret"), "NumRelRet = num_rel_ret"),
)


def _build_lookup() -> dict[tuple[str, bool], MeasureFamily]:
    lookup: dict[tuple[str, bool], MeasureFamily] = {}
    for family in MEASURE_TABLE:
        names = {s.lower() for s in family.stems} | {family.trec_eval.split(".")[0].lower()}
        for name in names:
            slot = (name, family.cutoff != "none")
            assert slot not in lookup, f"measure spelling {slot} is ambiguous"
            lookup[slot] = family
    return lookup


_LOOKUP = _build_lookup()
_SPELLING = re.compile(r"(?P<stem>[A-Za-z][A-Za-z_]*?)(?:[@._](?P<k>\d+))?")


def _valid_forms() -> str:
    return "; ".join(family.forms for family in MEASURE_TABLE)


def parse_measure(text: str | Measure) -> Measure:
    """Parse a measure name in display (``P@5``, ``MRR@10``), trec_eval (``P.5``) or key (``P_5``) form.

    >>> parse_measure("ndcg_cut.10")
    Measure(display='nDCG@10', trec_eval='ndcg_cut.10', key='ndcg_cut_10', depth=None)
    >>> parse_measure("MRR@10")
    Measure(display='RR@10', trec_eval='recip_rank', key='recip_rank', depth=10)
    """
    if isinstance(text, Measure):
        return text
    match = _SPELLING.fullmatch(text.strip())
    family = None
    k = None
    if match:
        k = int(match["k"]) if match["k"] is not None else None
        family = _LOOKUP.get((match["stem"].lower(), k is not None))
    if family is None:
        raise ConfigError(f"unknown measure {text!r}; valid measures (k a positive integer): {_valid_forms()}")
    if k is not None and k < 1:
        raise ConfigError(f"measure {text!r}: the cutoff must be a positive integer")
    return family.measure(k)


def parse_measures(texts: Iterable[str | Measure]) -> tuple[Measure, ...]:
    """Parse several measures, dropping repeats; also expands trec_eval lists such as ``P.5,10``."""
    out: dict[Measure, None] = {}
    for text in texts:
        if isinstance(text, Measure):
            out.setdefault(text)
            continue
        prefix = None
        for piece in (p.strip() for p in text.split(",")):
            if piece.isdigit() and prefix is not None:
                piece = prefix + piece
            match = _SPELLING.fullmatch(piece)
            if match and match["k"] is not None:
                prefix = piece[: match.start("k")]
            out.setdefault(parse_measure(piece))
    return tuple(out)


#: Measures reported when none are asked for.
DEFAULT_MEASURES: tuple[Measure, ...] = parse_measures(["P@5", "Success@5", "RR@10", "nDCG@10", "R@100"])


# --------------------------------------------------------------------------------------------------
# Ranking as trec_eval sees it


# trec_eval_ranking (32-bit score descending, then docid descending) is defined once, in clir_ot.formats.


def truncate_run(run: Run, depth: int) -> dict[str, dict[str, float]]:
    """Keep the first ``depth`` documents of every query, as ``trec_eval -M depth`` keeps them."""
    if depth < 1:
        raise ConfigError(f"depth must be a positive integer, got {depth}")
    out: dict[str, dict[str, float]] = {}
    for qid, scores in run.items():
        if len(scores) <= depth:
            out[qid] = dict(scores)
        else:
            out[qid] = {docid: scores[docid] for docid in trec_eval_ranking(scores)[:depth]}
    return out


def count_tied_queries(run: Run) -> int:
    """Number of queries with two documents of equal score, compared as trec_eval's 32-bit floats."""
    return sum(1 for scores in run.values() if len(set(scores_as_float32(scores.values()))) < len(scores))


# --------------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate` for one run.

    ``per_query`` maps each evaluated qid (sorted) to ``{display: value}``; ``means`` maps each
    display name to the aggregate over those queries (a sum for the counts, see the module
    docstring). ``missing`` are qrels queries absent from the run (0 in the mean when ``complete``,
    else left out); ``ignored`` are run queries absent from the qrels; ``tied_queries`` counts the
    evaluated queries with tied scores.
    """

    measures: tuple[Measure, ...]
    per_query: dict[str, dict[str, float]]
    means: dict[str, float]
    complete: bool = True
    missing: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    tied_queries: int = 0

    @property
    def num_queries(self) -> int:
        """Number of queries in the mean."""
        return len(self.per_query)


def _empty_ranking_value(measure: Measure, judged: Mapping[str, int]) -> float:
    """A measure's value for a query with no retrieved document (trec_eval ``-c``)."""
    if measure.trec_eval == "num_rel":
        return float(sum(1 for rel in judged.values() if rel >= 1))
    return 0.0


def evaluate(
    qrels: Qrels,
    run: Run,
    measures: Iterable[str | Measure] = DEFAULT_MEASURES,
    complete: bool = True,
    *,
    name: str = "run",
) -> Evaluation:
    """Evaluate a run ``{qid: {docid: score}}`` against qrels ``{qid: {docid: relevance}}``.

    ``complete=True`` is trec_eval's ``-c``: qrels queries that the run lacks count as an empty
    ranking. Run queries that the qrels lack are ignored. ``name`` labels the log messages.
    Relevance ``>= 1`` is relevant (trec_eval's default ``-l 1``).

    >>> ev = evaluate({"q1": {"d1": 1}, "q2": {"d9": 1}}, {"q1": {"d1": 2.0, "d2": 1.0}}, ["P@1", "RR"])
    >>> ev.means
    {'P@1': 0.5, 'RR': 0.5}
    """
    chosen = parse_measures(measures)
    if not chosen:
        raise ConfigError("no measure to compute")
    judged = {qid: dict(docs) for qid, docs in qrels.items() if docs}
    if not judged:
        raise ConsistencyError("the qrels judge no query")
    ranked = {qid: scores for qid, scores in run.items() if qid in judged and scores}
    missing = tuple(sorted(qid for qid in judged if qid not in ranked))
    ignored = tuple(sorted(qid for qid in run if qid not in judged))
    if not ranked and not complete:
        raise ConsistencyError(f"{name}: no query of the run is in the qrels; nothing to evaluate")

    tied = count_tied_queries(ranked)
    if tied:
        logger.warning(
            "%s: %d of %d queries have tied scores (equal as trec_eval's 32-bit floats); trec_eval orders "
            "ties by docid, descending, which decides P@k, RR and the rest -- give every document of a "
            "query a distinct score", name, tied, len(ranked),
        )

    values: dict[str, dict[str, float]] = {qid: {} for qid in ranked}
    by_depth: dict[int | None, list[Measure]] = {}
    for measure in chosen:
        by_depth.setdefault(measure.depth, []).append(measure)
    if ranked:
        for depth, group in by_depth.items():
            scored = truncate_run(ranked, depth) if depth is not None else ranked
            evaluator = pytrec_eval.RelevanceEvaluator(judged, sorted({m.trec_eval for m in group}))
            results = evaluator.evaluate({qid: {d: float(s) for d, s in docs.items()} for qid, docs in scored.items()})
            for qid in ranked:
                for measure in group:
                    values[qid][measure.display] = float(results[qid][measure.key])

    evaluated = sorted(judged) if complete else sorted(ranked)
    per_query: dict[str, dict[str, float]] = {}
    for qid in evaluated:
        if qid in ranked:
            per_query[qid] = {m.display: values[qid][m.display] for m in chosen}
        else:
            per_query[qid] = {m.display: _empty_ranking_value(m, judged[qid]) for m in chosen}

    means: dict[str, float] = {}
    for measure in chosen:
        column = [per_query[qid][measure.display] for qid in evaluated]  # trec_eval adds in qid order
        total = sum(column, 0.0)
        means[measure.display] = total if measure.summed else total / len(column)
    return Evaluation(
        measures=chosen,
        per_query=per_query,
        means=means,
        complete=complete,
        missing=missing,
        ignored=ignored,
        tied_queries=tied,
    )


# --------------------------------------------------------------------------------------------------
# Output


def format_value(measure: Measure, value: float) -> str:
    """A value as trec_eval prints it: 4 decimals, counts as integers."""
    return str(round(value)) if measure.summed else f"{value:.4f}"


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = [_markdown_row(header), "|:--" + "|--:" * (len(header) - 1) + "|"]
    lines.extend(_markdown_row(row) for row in rows)
    return lines


def _value(row: Mapping[str, float], measure: Measure, where: str) -> float:
    try:
        return row[measure.display]
    except KeyError:
        raise ConsistencyError(f"{where} has no value for {measure.display}") from None


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    measures: Iterable[str | Measure],
    fmt: str = "tsv",
) -> str:
    """Several runs side by side: one row per run name, one column per measure.

    ``rows`` maps a run name to its ``{display: value}`` (e.g. :attr:`Evaluation.means`). ``tsv`` and
    ``markdown`` print 4 decimals, like trec_eval; ``json`` keeps full precision.
    """
    _check_format(fmt)
    chosen = parse_measures(measures)
    if fmt == "json":
        data = {run: {m.display: _value(row, m, f"run {run!r}") for m in chosen} for run, row in rows.items()}
        return json.dumps(data, indent=2) + "\n"
    header = ["run", *(m.display for m in chosen)]
    body = [[run, *(format_value(m, _value(row, m, f"run {run!r}")) for m in chosen)] for run, row in rows.items()]
    if fmt == "tsv":
        lines = ["\t".join(header), *("\t".join(row) for row in body)]
    else:
        lines = _markdown_table(header, body)
    return "\n".join(lines) + "\n"


def format_per_query(evaluations: Mapping[str, Evaluation], fmt: str = "tsv") -> str:
    """Per-query values of one or more runs.

    ``tsv`` is trec_eval's ``-q`` output: for each run a ``runid<TAB>all<TAB>name`` line, then
    ``measure<TAB>qid<TAB>value`` for every query (sorted) and measure, then the ``all`` lines; the
    measure column holds the display name, padded to 22 characters as trec_eval pads its names.
    ``markdown`` gives one table per run with a final ``all`` row; ``json`` maps each run name to
    ``{"per_query": {qid: {measure: value}}, "all": {measure: value}}`` at full precision.
    """
    _check_format(fmt)
    if fmt == "json":
        data = {run: {"per_query": ev.per_query, "all": ev.means} for run, ev in evaluations.items()}
        return json.dumps(data, indent=2) + "\n"
    lines: list[str] = []
    for run, ev in evaluations.items():
        if fmt == "tsv":
            lines.append(f"{'runid':<{_NAME_WIDTH}}\tall\t{run}")
            for qid, row in [*ev.per_query.items(), ("all", ev.means)]:
                lines.extend(
                    f"{m.display:<{_NAME_WIDTH}}\t{qid}\t{format_value(m, row[m.display])}" for m in ev.measures
                )
        else:
            if lines:
                lines.append("")
            lines.extend([f"### {run}", ""])
            header = ["qid", *(m.display for m in ev.measures)]
            body = [
                [qid, *(format_value(m, row[m.display]) for m in ev.measures)]
                for qid, row in [*ev.per_query.items(), ("all", ev.means)]
            ]
            lines.extend(_markdown_table(header, body))
    return "\n".join(lines) + "\n"
