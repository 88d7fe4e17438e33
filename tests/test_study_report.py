"""Tests of clir_ot.study.stats and clir_ot.study.report on hand-made data.

Statistics are checked against exact enumeration, scipy and hand-computed values; the report
against constructed studies whose answer is known ("distinguishable" or not).
"""
from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
from scipy import stats as scipy_stats

from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.study import report as report_module
from clir_ot.study import stats as stats_module
from clir_ot.study.report import (
    QueryScore,
    StepCost,
    build_report,
    read_results_csv,
    write_report,
    write_results_csv,
)
from clir_ot.study.stats import (
    bootstrap_ci,
    gain_difference,
    holm,
    max_rank_distance,
    paired_randomization_test,
    paired_t_test,
)

N_RESAMPLES = 2000


def test_docstring_examples():
    assert doctest.testmod(stats_module).failed == 0


# --------------------------------------------------------------------------------------------------
# Paired tests


def _enumerated_p(d: np.ndarray) -> float:
    """All 2^n sign flips, written independently of the library (itertools, exact sums)."""
    observed = abs(sum(d))
    hits = sum(
        1 for signs in itertools.product((1, -1), repeat=len(d)) if abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-12
    )
    return hits / 2 ** len(d)


def test_randomization_exact_matches_enumeration():
    a = np.array([0.2, 0.4, 0.0, 0.6, 0.2, 0.2, 0.8, 0.0, 0.4, 0.2])
    b = np.array([0.0, 0.2, 0.2, 0.2, 0.0, 0.2, 0.4, 0.0, 0.0, 0.4])
    expected = _enumerated_p(list(np.round((a - b) * 5).astype(int)))  # integer copy: no rounding questions
    assert paired_randomization_test(a, b, exact=True) == pytest.approx(expected, abs=1e-12)
    # 2^10 = 1024 <= 2000: the default enumerates too.
    assert paired_randomization_test(a, b, n_resamples=N_RESAMPLES) == pytest.approx(expected, abs=1e-12)


def test_randomization_monte_carlo_close_to_enumeration():
    a = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], dtype=float)
    b = np.array([2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5], dtype=float)
    expected = _enumerated_p(list((a - b).astype(int)))
    got = paired_randomization_test(a, b, n_resamples=N_RESAMPLES, exact=False, seed=1)
    # Monte Carlo standard error at R=2000 is at most 0.5/sqrt(2000) ~ 0.011.
    assert got == pytest.approx(expected, abs=0.04)
    assert got >= 1 / (1 + N_RESAMPLES)


def test_randomization_hand_case_and_edge_cases():
    assert paired_randomization_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == 0.25  # |sum| = 6 twice out of 8
    assert paired_randomization_test([0.2, 0.4], [0.2, 0.4]) == 1.0
    assert paired_randomization_test([0.3] * 50, [0.1] * 50, exact=False, n_resamples=999) == pytest.approx(1 / 1000)
    with pytest.raises(ValueError, match="same length"):
        paired_randomization_test([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError):
        paired_randomization_test([1.0] * 30, [0.0] * 30, exact=True)


def test_t_test_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(size=40)
    b = a + rng.normal(0.3, 1.0, size=40)
    assert paired_t_test(a, b) == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert paired_t_test([0.2, 0.4, 0.6], [0.2, 0.4, 0.6]) == 1.0
    assert paired_t_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == 0.0
    with pytest.raises(ValueError, match="same length"):
        paired_t_test([1.0, 2.0, 3.0], [1.0, 2.0])


def test_holm_hand_computed():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    # sorted: d .005*4=.02, a .01*3=.03, c .03*2=.06, b max(.04*1, .06)=.06
    assert list(adjusted) == ["a", "b", "c", "d"]
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}
    assert holm({}) == {}
    with pytest.raises(ValueError):
        holm({"x": 1.5})


def test_bootstrap_constant_differences_give_zero_width():
    values = np.full(25, 0.2)
    estimate, low, high = bootstrap_ci(lambda idx: values[idx].mean(), 25, n_resamples=N_RESAMPLES)
    assert estimate == pytest.approx(0.2) and low == pytest.approx(0.2) and high == pytest.approx(0.2)


def test_bootstrap_two_items_hand_computed():
    # Resampling 2 items from {0, 1}: mean 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4, so the 2.5% and
    # 97.5% quantiles are 0 and 1.
    values = np.array([0.0, 1.0])
    estimate, low, high = bootstrap_ci(lambda idx: values[idx].mean(), 2, n_resamples=N_RESAMPLES, seed=5)
    assert (estimate, low, high) == (0.5, 0.0, 1.0)


def test_bootstrap_vectorized_equals_loop_and_contains_estimate():
    values = np.random.default_rng(0).normal(size=30)
    loop = bootstrap_ci(lambda idx: values[idx].mean(), 30, n_resamples=N_RESAMPLES, seed=7)
    vec = bootstrap_ci(lambda idx: values[idx].mean(axis=-1), 30, n_resamples=N_RESAMPLES, seed=7, vectorized=True)
    assert loop == pytest.approx(vec, rel=1e-12)
    estimate, low, high = loop
    assert estimate == pytest.approx(values.mean())
    assert low < estimate < high


# --------------------------------------------------------------------------------------------------
# gain_difference


def _study_scores(qids, gain_small, gain_large, languages=("th", "hi")):
    """(backbone, method, language) -> {qid: value}; gain_X(language, i) gives ot − none of query i."""
    scores = {}
    for backbone, gain in (("small", gain_small), ("large", gain_large)):
        for language in languages:
            base = {q: 0.2 * (i % 3) for i, q in enumerate(qids)}
            scores[(backbone, "none", language)] = base
            scores[(backbone, "ot", language)] = {q: base[q] + gain(language, i) for i, q in enumerate(qids)}
    return scores


def test_gain_difference_constant_known_answer():
    qids = [f"q{i}" for i in range(20)]
    scores = _study_scores(qids, lambda lang, i: 0.1, lambda lang, i: 0.3)
    result = gain_difference(scores, backbones=("small", "large"), languages=("th", "hi"), n_resamples=N_RESAMPLES)
    assert result.gains == pytest.approx({"small": 0.1, "large": 0.3})
    assert (result.difference, result.low, result.high) == pytest.approx((0.2, 0.2, 0.2))
    assert result.n_queries == 20 and result.distinguishable_from_zero


def test_gain_difference_resamples_queries_jointly_over_languages():
    # Per query, the large-minus-small gain is +x in th and −x in hi: every query contributes 0 to
    # the group difference, so a joint resample of query ids gives exactly [0, 0]. Resampling each
    # language on its own would give a wide interval.
    qids = [f"q{i}" for i in range(30)]
    x = np.linspace(-0.4, 0.6, 30)
    scores = _study_scores(qids, lambda lang, i: 0.0, lambda lang, i: x[i] if lang == "th" else -x[i])
    result = gain_difference(scores, backbones=("small", "large"), languages=("th", "hi"), n_resamples=N_RESAMPLES)
    assert result.difference == pytest.approx(0.0, abs=1e-12)
    assert result.low == pytest.approx(0.0, abs=1e-12) and result.high == pytest.approx(0.0, abs=1e-12)
    assert not result.distinguishable_from_zero


def test_gain_difference_hand_computed_mean():
    qids = ["a", "b", "c", "d"]
    small = {"th": [0.2, 0.0, 0.0, 0.0], "hi": [0.0, 0.0, 0.2, 0.2]}
    large = {"th": [0.2, 0.2, 0.2, 0.0], "hi": [0.4, 0.0, 0.2, 0.2]}
    scores = _study_scores(qids, lambda lang, i: small[lang][i], lambda lang, i: large[lang][i])
    result = gain_difference(scores, backbones=("small", "large"), languages=("th", "hi"), n_resamples=N_RESAMPLES)
    # small: th 0.05, hi 0.1 -> 0.075; large: th 0.15, hi 0.2 -> 0.175; difference 0.1
    assert result.gains == pytest.approx({"small": 0.075, "large": 0.175})
    assert result.difference == pytest.approx(0.1)
    assert result.low <= result.difference <= result.high


def test_gain_difference_refuses_misaligned_queries():
    qids = [f"q{i}" for i in range(5)]
    scores = _study_scores(qids, lambda lang, i: 0.1, lambda lang, i: 0.2)
    del scores[("large", "ot", "hi")]["q3"]
    with pytest.raises(ConsistencyError, match="differ"):
        gain_difference(scores, backbones=("small", "large"), languages=("th", "hi"), n_resamples=N_RESAMPLES)
    with pytest.raises(ConsistencyError, match="no per-query scores"):
        gain_difference(scores, backbones=("small", "large"), languages=("th", "el"), n_resamples=N_RESAMPLES)
    with pytest.raises(ConfigError):
        gain_difference(scores, backbones=("small",), languages=("th",))


# --------------------------------------------------------------------------------------------------
# max_rank_distance


def test_max_rank_distance_tiny_run():
    run = {
        "q1": ["en1", "x", "th1", "y", "hi1"],  # hi1 beyond depth 3 -> rank 4; ranks 1, 3, 4
        "q2": ["z", "en2", "th2", "hi2"],  # hi2 beyond depth: ranks 2, 3, 4 -> 2
        "q3": ["en3", "en3", "th3"],  # repeated docid dropped: ranks 1, 2 -> 1
        "q9": ["a"],  # not judged: ignored
    }
    relevant = {
        "q1": {"en1", "th1", "hi1"},
        "q2": {"en2": 1, "th2": 1, "hi2": 1, "junk": 0},  # qrels form: grade 0 is not relevant
        "q3": {"en3", "th3"},
        "q4": {"en4", "th4"},  # absent from the run: every rank is depth + 1
    }
    assert max_rank_distance(run, relevant, depth=3) == {"q1": 3.0, "q2": 2.0, "q3": 1.0, "q4": 0.0}
    assert max_rank_distance(run, relevant, depth=5)["q1"] == 4.0
    with pytest.raises(ConfigError):
        max_rank_distance(run, relevant, depth=0)


# --------------------------------------------------------------------------------------------------
# Results file


def test_results_csv_round_trip(tmp_path):
    scores = [
        QueryScore("e5-small", "none", "th", "cross", "P@5", "q1", 0.2),
        QueryScore("e5-small", "none", "th", "cross", "P@5", "q2", 0.0),
        QueryScore("e5-small", "ot", "th", "cross", "P@5", "q1", 0.1 + 0.2),  # not exactly 0.3
        QueryScore("e5-small", "ot", "mul", "pool", "bias", "q1", 7.0),
    ]
    path = write_results_csv(tmp_path / "results.csv", scores)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "backbone,method,language,setting,metric,qid,value"
    assert lines[1] == "e5-small,none,th,cross,P@5,all,0.1"
    assert [line.split(",")[5] for line in lines[1:4]] == ["all", "all", "all"]
    assert len(lines) == 1 + 3 + 4
    assert read_results_csv(path) == scores


def test_results_csv_errors(tmp_path):
    with pytest.raises(ConsistencyError, match="reserved"):
        write_results_csv(tmp_path / "r.csv", [QueryScore("b", "m", "th", "cross", "P@5", "all", 0.2)])
    with pytest.raises(ConsistencyError, match="two values"):
        write_results_csv(tmp_path / "r.csv", [QueryScore("b", "m", "th", "cross", "P@5", "q", 0.2)] * 2)
    assert not (tmp_path / "r.csv").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("backbone,method,language,setting,metric,qid,value\nb,m,th,cross,P@5,q1,abc\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"bad\.csv:2"):
        read_results_csv(bad)
    edited = tmp_path / "edited.csv"
    edited.write_text(
        "backbone,method,language,setting,metric,qid,value\nb,m,th,cross,P@5,all,0.5\nb,m,th,cross,P@5,q1,0.2\n",
        encoding="utf-8",
    )
    with pytest.raises(ConsistencyError, match="edited.csv:2"):
        read_results_csv(edited)


# --------------------------------------------------------------------------------------------------
# The report


LANGUAGES = ("en", "de", "el", "th", "hi")
LOW = ("th", "hi", "el")


def _records(large_extra: str, n_queries: int = 40) -> list[QueryScore]:
    """A constructed study with backbones small and large.

    ``none`` has P@5 in {0, 0.2} by query; ``ot`` adds, per low-resource language and query, a
    gain that is 0.2 on every other query for ``small``. For ``large`` it is:

    * ``"much"``: 0.2 on every query (twice the small gain everywhere: distinguishable);
    * ``"same"``: the small gains of another query (same mean, different queries: not distinguishable).
    """
    qids = [f"q{i:02d}" for i in range(n_queries)]
    records: list[QueryScore] = []
    for backbone in ("small", "large"):
        for language in LANGUAGES:
            for i, qid in enumerate(qids):
                base = 0.2 if (i + len(language)) % 3 == 0 else 0.0
                small_gain = 0.2 if i % 2 == 0 else 0.0
                if language not in LOW:
                    gain = 0.0
                elif backbone == "small":
                    gain = small_gain
                elif large_extra == "much":
                    gain = 0.2
                else:
                    gain = 0.2 if (i * 7 + 3) % n_queries % 2 == 0 else 0.0
                for method, value in (("none", base), ("ot", base + gain)):
                    records.append(QueryScore(backbone, method, language, "cross", "P@5", qid, value))
                    records.append(QueryScore(backbone, method, language, "cross", "Success@5", qid, min(1.0, 5 * value)))
                    records.append(QueryScore(backbone, method, language, "cross", "RR@10", qid, min(1.0, 2.5 * value)))
        for method in ("none", "ot"):
            for i, qid in enumerate(qids):
                records.append(QueryScore(backbone, method, "mul", "pool", "P@5", qid, 0.4))
                records.append(QueryScore(backbone, method, "mul", "pool", "bias", qid, float(i % 4)))
    return records


def test_report_distinguishable(tmp_path):
    records = _records("much")
    costs = {"distill ot": StepCost(123.4, 56.7, "examples/s"), "evaluate": StepCost(9.0),
             "rerank none": StepCost(4.0, None, "pairs/s", "reused")}
    report = build_report(
        records, low_resource=LOW, backbones=("small", "large"), n_resamples=N_RESAMPLES, costs=costs, seed=1
    )
    assert report.group_gains == pytest.approx({"small": 0.1, "large": 0.2})
    assert report.answer.difference == pytest.approx(0.1)
    assert report.answer.low > 0
    assert "which is distinguishable from zero" in report.sentence
    assert "not distinguishable" not in report.sentence
    assert "On the low-resource group (th, hi, el)" in report.sentence
    assert "+0.1000 for small and +0.2000 for large" in report.sentence
    assert "over 40 queries" in report.sentence
    md = report.markdown
    assert report.sentence in md
    for heading in ("### P@5", "### Success@5", "### RR@10", "### Gap to English", "### Gain of `ot` over `none`",
                    "## Multilingual pool", "### Language bias", "## Cost"):
        assert heading in md, heading
    # columns in order of first appearance; a step without a column's value shows a dash
    assert "| step | wall_s | examples/s | pairs/s | note |" in md
    assert "| distill ot | 123.4 | 56.7 | — | — |" in md and "| evaluate | 9.0 | — | — | — |" in md
    assert "| rerank none | 4.0 | — | — | reused |" in md
    # en has no gain: its p-value is 1 and Holm keeps it at 1.
    en_row = next(r for r in report.gains["small"] if r.language == "en")
    assert en_row.gain == 0.0 and en_row.p_randomization == 1.0 and en_row.p_holm == 1.0
    th_row = next(r for r in report.gains["large"] if r.language == "th")
    assert th_row.gain == pytest.approx(0.2) and th_row.p_randomization < 0.01
    assert report.languages == ("en", "de", "el", "th", "hi")  # DEFAULT_RESOURCE_ORDER

    written = write_report(tmp_path / "out", report, records)
    names = {p.name for p in written}
    assert names == {"report.md", "results.csv", report_module.PLOT_METRIC, report_module.PLOT_GAIN}
    for path in written:
        assert path.is_file() and path.stat().st_size > 0
    for png in (report_module.PLOT_METRIC, report_module.PLOT_GAIN):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "report.md").read_text(encoding="utf-8") == md
    assert read_results_csv(tmp_path / "out" / "results.csv") == records


def test_report_not_distinguishable():
    report = build_report(_records("same"), low_resource=LOW, backbones=("small", "large"), n_resamples=N_RESAMPLES)
    assert report.group_gains["small"] == pytest.approx(report.group_gains["large"])
    assert report.answer.difference == pytest.approx(0.0, abs=1e-12)
    assert report.answer.low < 0 < report.answer.high
    assert "which is not distinguishable from zero" in report.sentence


def test_report_config_errors():
    records = _records("much")
    with pytest.raises(ConfigError, match="available"):
        build_report(records, low_resource=LOW, backbones=("small", "huge"), n_resamples=N_RESAMPLES)
    with pytest.raises(ConfigError, match="low-resource language 'sw'"):
        build_report(records, low_resource=("sw",), backbones=("small", "large"), n_resamples=N_RESAMPLES)
    with pytest.raises(ConfigError, match="at least two"):
        build_report(records, low_resource=LOW, backbones=("small",), n_resamples=N_RESAMPLES)
    unpaired = [r for r in records if not (r.backbone == "large" and r.method == "ot" and r.language == "th" and r.qid == "q05")]
    with pytest.raises(ConsistencyError, match="different"):
        build_report(unpaired, low_resource=LOW, backbones=("small", "large"), n_resamples=N_RESAMPLES)


def test_pool_merge_breaks_cross_language_ties_by_own_rank_not_by_docid(tmp_path):
    from clir_ot.formats import Hit, write_run
    from clir_ot.study.evaluate import merge_language_runs

    # bf16-like scores: th-a and el-a tie at 1.0; el-a is first in its run, th-a second in its run.
    # trec_eval (docid descending) would put th-a first; the merge must not let the prefix decide.
    write_run(tmp_path / "th.txt", {"q1": [Hit("q1", "th-0", 2.0, 1), Hit("q1", "th-a", 1.0, 2), Hit("q1", "th-z", 0.1, 3)]},
              keep_order=True)
    write_run(tmp_path / "el.txt", {"q1": [Hit("q1", "el-a", 1.0, 1), Hit("q1", "el-b", 0.5, 2)]}, keep_order=True)
    merged = merge_language_runs([tmp_path / "th.txt", tmp_path / "el.txt"], depth=2)
    assert merged == {"q1": ["th-0", "el-a", "th-a", "el-b"]}  # depth 2 per language: th-z is cut
    # full ties (same score, same own rank) are broken the same way whichever run comes first
    write_run(tmp_path / "hi.txt", {"q1": [Hit("q1", "hi-0", 2.0, 1)]}, keep_order=True)
    one = merge_language_runs([tmp_path / "th.txt", tmp_path / "hi.txt"], depth=1)
    other = merge_language_runs([tmp_path / "hi.txt", tmp_path / "th.txt"], depth=1)
    assert one == other and sorted(one["q1"]) == ["hi-0", "th-0"]


# --------------------------------------------------------------------------------------------------
# Seeds: the hierarchical bootstrap and the seed spread; controls: the alignment rule


def _seeded(rng: np.random.Generator, n: int, offsets: dict[str, list[float]]):
    """Scores of two backbones whose ot students have three seeds each; ``offsets[backbone]`` shifts each
    seed's values (0s: the seeds agree). Seed-averaged values are the same whatever the offsets' mean is 0."""
    qids = [f"q{i:03d}" for i in range(n)]
    scores, seed_scores = {}, {}
    for backbone, gain in (("small", 0.0), ("large", 0.05)):
        for lang in ("th", "hi"):
            base = {q: float(v) for q, v in zip(qids, rng.uniform(0, 1, n))}
            noise = rng.normal(0, 0.1, n)
            mean = {q: base[q] + gain + noise[i] for i, q in enumerate(qids)}
            scores[(backbone, "none", lang)] = base
            scores[(backbone, "ot", lang)] = mean
            seed_scores[(backbone, "ot", lang)] = {s: {q: mean[q] + off for q in qids}
                                                   for s, off in zip((1, 2, 3), offsets[backbone])}
    return scores, seed_scores


def test_hierarchical_bootstrap_widens_when_seeds_disagree():
    kwargs = dict(backbones=("small", "large"), languages=("th", "hi"), n_resamples=N_RESAMPLES, seed=3)
    scores, agree = _seeded(np.random.default_rng(0), 200, {"small": [0, 0, 0], "large": [0, 0, 0]})
    _, disagree = _seeded(np.random.default_rng(0), 200, {"small": [-0.06, 0.0, 0.06], "large": [-0.08, 0.0, 0.08]})
    queries_only = gain_difference(scores, **kwargs)
    same = gain_difference(scores, seed_scores=agree, **kwargs)
    spread = gain_difference(scores, seed_scores=disagree, **kwargs)
    # the estimate is the seed mean either way
    assert same.difference == pytest.approx(queries_only.difference) == pytest.approx(spread.difference)
    assert same.resamples_seeds and spread.n_seeds == {"small": 3, "large": 3} and not queries_only.resamples_seeds
    width = lambda r: r.high - r.low
    # identical seeds add nothing: the interval is the queries-only one (up to resampling noise)
    assert width(same) == pytest.approx(width(queries_only), rel=0.15)
    # seeds that disagree by +-0.06 / +-0.08 widen it: a seed draw alone moves the difference by up to ~0.1
    assert width(spread) > 1.5 * width(same)
    assert spread.low < same.low and spread.high > same.high


def test_hierarchical_bootstrap_needs_the_same_seeds_in_every_language():
    scores, seeds = _seeded(np.random.default_rng(1), 20, {"small": [0, 0, 0], "large": [0, 0.1, 0.2]})
    del seeds[("large", "ot", "hi")][3]
    with pytest.raises(ConsistencyError, match="seeds"):
        gain_difference(scores, backbones=("small", "large"), languages=("th", "hi"), seed_scores=seeds,
                        n_resamples=100)


def test_seed_spread_of_each_method_and_language():
    key = report_module.ScoreKey("b", "ot", "th", "cross", "P@5")
    spreads = report_module.seed_spreads({key: {2: {"q1": 0.2, "q2": 0.0}, 1: {"q1": 0.4, "q2": 0.4}},
                                          key._replace(method="one-seed"): {1: {"q1": 0.2}}})
    spread, = spreads  # one seed: no spread to give
    assert spread.seeds == (1, 2) and spread.means == pytest.approx((0.4, 0.1))
    assert spread.sd == pytest.approx(np.std([0.4, 0.1], ddof=1)) and spread.range == pytest.approx(0.3)


def _controlled_scores(rng: np.random.Generator, n: int = 300) -> list[QueryScore]:
    """ot beats both controls on el; beats the shuffled control but not the no-bitext one on th; on hi
    the gain is shared by every control (score spreading, not alignment)."""
    qids = [f"q{i:03d}" for i in range(n)]
    out = []
    effects = {  # language -> (ot, ot-shuffled, no-bitext) mean shift over none
        "el": (0.10, 0.00, 0.01), "th": (0.08, 0.00, 0.08), "hi": (0.05, 0.05, 0.05)}
    for lang, (ot, shuffled, rank_only) in effects.items():
        base = rng.uniform(0, 1, n)
        for method, shift in (("none", 0.0), ("ot", ot), ("ot-shuffled", shuffled), ("no-bitext", rank_only)):
            values = base + shift + (rng.normal(0, 0.05, n) if method != "none" else 0)
            out += [QueryScore("b", method, lang, "cross", "P@5", q, float(v)) for q, v in zip(qids, values)]
    return out


CONTROLS = {"ot": {"shuffled": "ot-shuffled", "no-bitext": "no-bitext"}}


def test_alignment_needs_both_controls_beaten_after_holm():
    scores = _controlled_scores(np.random.default_rng(5))
    grouped = report_module._group(scores)
    verdicts = {v.language: v for v in report_module.alignment_verdicts(grouped, CONTROLS, n_resamples=N_RESAMPLES)}
    assert set(verdicts) == {"el", "th", "hi"}
    assert verdicts["el"].alignment and verdicts["el"].reading() == "alignment"
    assert not verdicts["th"].alignment and verdicts["th"].reading() == "not alignment: not above no-bitext"
    assert not verdicts["hi"].alignment and "ot-shuffled" in verdicts["hi"].reading()
    assert verdicts["el"].gain == pytest.approx(0.10, abs=0.01)
    # p(Holm) of each control comparison is Holm over the three languages of its raw p-values
    for kind in ("shuffled", "no-bitext"):
        raw = {l: next(c for c in v.comparisons if c.kind == kind).p_randomization for l, v in verdicts.items()}
        adjusted = holm(raw)
        for lang, verdict in verdicts.items():
            assert next(c for c in verdict.comparisons if c.kind == kind).p_holm == pytest.approx(adjusted[lang])


def test_alignment_is_undecided_without_a_control_and_holm_can_overturn_a_raw_p():
    scores = _controlled_scores(np.random.default_rng(5))
    grouped = report_module._group(scores)
    only_shuffled = report_module.alignment_verdicts(grouped, {"ot": {"shuffled": "ot-shuffled"}},
                                                     n_resamples=N_RESAMPLES)
    el = next(v for v in only_shuffled if v.language == "el")
    assert not el.alignment and el.missing == ("no-bitext",) and "no no-bitext control results" in el.reading()
    # three languages with one raw p-value each just under 0.05: Holm (x3 for the smallest) lifts them over
    comparison = report_module.ControlComparison("shuffled", "ot-shuffled", 0.01, 0.03, holm({"a": 0.03, "b": 0.04, "c": 0.045})["a"])
    assert comparison.p_randomization < 0.05 and not comparison.beaten


def test_report_states_the_control_rule_and_the_seed_spread():
    rng = np.random.default_rng(7)
    scores = _controlled_scores(rng) + [
        QueryScore("a", s.method, s.language, s.setting, s.metric, s.qid, s.value) for s in _controlled_scores(rng)]
    seed_scores = {report_module.ScoreKey(b, "ot", l, "cross", "P@5"): {1: {}, 2: {}} for b in "ab" for l in ("el", "th", "hi")}
    grouped = report_module._group(scores)
    for key in seed_scores:  # two seeds, +-0.01 around the seed mean
        mean = grouped[key]
        seed_scores[key] = {1: {q: v - 0.01 for q, v in mean.items()}, 2: {q: v + 0.01 for q, v in mean.items()}}
    report = build_report(scores, low_resource=("th", "hi", "el"), backbones=("a", "b"), n_resamples=500,
                          controls=CONTROLS, seed_scores=seed_scores)
    assert "By the control rule" in report.sentence and "counts as alignment on 1 of 3 low-resource languages (el)" \
        in report.sentence
    assert "## Does a gain count as alignment?" in report.markdown and "## Seed spread" in report.markdown
    assert report.answer.resamples_seeds and "each backbone's training seeds of `ot`" in report.markdown
    assert {(s.backbone, s.language) for s in report.spreads} == {(b, l) for b in "ab" for l in ("el", "th", "hi")}
    assert all(s.range == pytest.approx(0.02) for s in report.spreads)


def test_gain_intervals_are_each_languages_mean_difference_with_a_bootstrap_interval_around_it(tmp_path):
    from clir_ot.study.report import GainInterval, ScoreKey, gain_intervals, plot_method_gains

    rng = np.random.default_rng(3)
    base = {f"q{i}": float(v) for i, v in enumerate(rng.integers(0, 2, 200))}
    noisy = {q: float(rng.integers(0, 2)) for q in base}
    grouped = {
        ScoreKey("b", "none", "sw", "cross", "P@1"): base,
        ScoreKey("b", "ot", "sw", "cross", "P@1"): noisy,
        ScoreKey("b", "mse-sent", "sw", "cross", "P@1"): {q: v + 0.25 for q, v in base.items()},  # constant gain
        ScoreKey("b", "none", "km", "cross", "P@1"): base,  # km has no method results: no interval
    }
    found = {g.method: g for g in gain_intervals(grouped, backbone="b", metric="P@1", methods=["ot", "mse-sent"],
                                                 languages=["sw", "km"], n_resamples=500)}
    assert set(found) == {"ot", "mse-sent"} and all(g.language == "sw" for g in found.values())
    ot = found["ot"]
    assert ot.gain == pytest.approx(np.mean([noisy[q] - base[q] for q in base]))
    assert ot.low < ot.gain < ot.high and ot.high - ot.low > 0.05  # 200 coin flips: a real spread
    assert found["mse-sent"] == GainInterval("b", "mse-sent", "sw", "P@1", 0.25, 0.25, 0.25)
    path = plot_method_gains(list(found.values()), tmp_path / "gains.png", groups={"low-resource": ["sw"]})
    assert path.stat().st_size > 5000


def test_the_resource_table_has_as_many_cells_as_its_header_while_only_the_baseline_is_finished():
    from clir_ot.study.evaluate import ComparisonCell, resource_group_markdown

    cells = [ComparisonCell("e5-small", "P@5", lang, "none", 0.15) for lang in ("th", "hi")]
    lines = resource_group_markdown([], cells, groups={"low": ["th", "hi"]}, methods=["ot"], metric="P@5")
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 3  # header, separator, one row
    assert len({line.count("|") for line in table}) == 1, table
    assert table[2].startswith("| e5-small | low | 0.1500 (2) |")
