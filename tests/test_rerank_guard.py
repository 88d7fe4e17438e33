"""The quality guard (clir_ot.rerank.guard) and tools/bench_rerank.py --guard, on a tiny model.

The verdict's thresholds, records written and read back, and ``backend="auto"`` choosing the fastest
installed path that passed -- never a faster one that failed, never a path of other weights or other
hardware. The measurement itself runs on a tiny random cross-encoder against its real fp32 scores.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

from clir_ot import BackendError, InputFormatError
from clir_ot.models import CrossEncoderModel, tiny_random_model
from clir_ot.models.backends import InferencePath, backend_available
from clir_ot.models.loading import cpu_has_native_bf16
from clir_ot.rerank import CrossEncoderReranker
from clir_ot.rerank.guard import (
    GuardRecord,
    PathQuality,
    choose_path,
    hardware_id,
    judge_path,
    read_guard_records,
    write_guard_record,
)
from tools_loader import load_tool

NATIVE = "bf16" if cpu_has_native_bf16() else "fp32"


@pytest.fixture(scope="module")
def bench():
    return load_tool("bench_rerank")


def quality(path: str, speed: float, share: float = 1.0, p: float = 1.0) -> PathQuality:
    return PathQuality.judged(path, speed, share, {"P@5": 0.0, "RR@10": 0.0}, {"P@5": p, "RR@10": p}, 1e-3)


def record(weights: str = "w" * 64, max_length: int = 256, *paths: PathQuality, hardware: str | None = None) -> GuardRecord:
    return GuardRecord(hardware=hardware or hardware_id(), model="m", weights=weights, max_length=max_length,
                       batch_size=32, questions=100, pairs=1000, paths=tuple(paths))


def test_the_verdict_holds_at_the_thresholds_and_fails_below():
    assert judge_path(0.95, {"P@5": 0.05, "RR@10": 1.0}) == (True, [])
    passed, reasons = judge_path(0.949, {"P@5": 1.0, "RR@10": 1.0})
    assert not passed and "94.9%" in reasons[0]
    passed, reasons = judge_path(1.0, {"P@5": 1.0, "RR@10": 0.049})
    assert not passed and reasons == ["RR@10 differs from fp32's (paired randomization p = 0.049 < 0.05)"]
    assert not judge_path(1.0, {"P@5": 1.0})[0]  # an untested measure is no pass


def test_records_round_trip_and_replace_their_predecessor(tmp_path):
    first = record("a" * 64, 256, quality("torch/fp32", 10.0), quality("torch/bf16", 30.0, share=0.5))
    path = write_guard_record(first, tmp_path)
    (back,) = read_guard_records(tmp_path)
    assert back == dataclasses.replace(first, measured_at=back.measured_at) and back.measured_at
    assert not back.paths[1].passed
    write_guard_record(dataclasses.replace(first, questions=7), tmp_path)  # same weights, hardware, length
    assert [r.questions for r in read_guard_records(tmp_path)] == [7]
    write_guard_record(dataclasses.replace(first, max_length=512), tmp_path)
    assert len(read_guard_records(tmp_path)) == 2
    assert json.loads(path.read_text())["rule"]["min_order_share"] == 0.95


def test_a_broken_record_is_an_input_format_error(tmp_path):
    (tmp_path / "guard.x.json").write_text('{"format": 1, "paths": [{"path": "torch/fp32"}]}')
    with pytest.raises(InputFormatError, match="not a quality-guard record"):
        read_guard_records(tmp_path)
    (tmp_path / "guard.x.json").write_text("{")
    with pytest.raises(InputFormatError, match="not JSON"):
        read_guard_records(tmp_path)


def test_auto_takes_the_fastest_path_that_passed_never_a_faster_failure():
    recs = [record("w" * 64, 256, quality("torch/fp32", 10.0), quality("torch/bf16", 30.0),
                   quality("torch-compile/bf16", 90.0, share=0.90),  # fastest, but reorders 10% of top 10s
                   quality("torch-compile/fp32", 12.0))]
    path, why = choose_path("w" * 64, 256, records=recs)
    assert path == InferencePath("torch", "bf16")
    assert "passed the quality guard" in why and "30.0 pairs/s" in why
    # asked for fp32 only: the fastest fp32 path that passed
    assert choose_path("w" * 64, 256, dtype="fp32", records=recs)[0] == InferencePath("torch-compile", "fp32")


def test_auto_never_picks_a_path_that_failed_even_when_its_precision_is_asked_for():
    recs = [record("w" * 64, 256, quality("torch/fp32", 10.0), quality("torch/bf16", 30.0, share=0.8),
                   quality("openvino/bf16", 60.0, share=0.78))]
    with pytest.raises(BackendError, match=r"no installed bf16 path passed .* \(failed: torch/bf16, openvino/bf16\)"):
        choose_path("w" * 64, 256, dtype="bf16", records=recs)
    assert choose_path("w" * 64, 256, records=recs)[0] == InferencePath("torch", "fp32")


def test_auto_uses_only_records_of_these_weights_on_this_hardware():
    fast = quality("torch-compile/fp32", 99.0)
    other_weights = record("x" * 64, 256, quality("torch/fp32", 1.0), fast)
    other_machine = record("w" * 64, 256, quality("torch/fp32", 1.0), fast, hardware="cpu elsewhere x2 []; torch 0")
    path, why = choose_path("w" * 64, 256, records=[other_weights, other_machine])
    assert path == InferencePath("torch", NATIVE)  # the default rule
    assert "no quality-guard record for these weights on this hardware" in why


def test_auto_reads_the_record_of_the_nearest_max_length():
    recs = [record("w" * 64, 128, quality("torch/fp32", 10.0), quality("torch-compile/fp32", 50.0)),
            record("w" * 64, 512, quality("torch/fp32", 10.0), quality("torch-compile/fp32", 5.0))]
    assert choose_path("w" * 64, 200, records=recs)[0] == InferencePath("torch-compile", "fp32")
    assert choose_path("w" * 64, 400, records=recs)[0] == InferencePath("torch", "fp32")


def test_auto_skips_a_recorded_path_whose_backend_is_not_installed(monkeypatch):
    recs = [record("w" * 64, 256, quality("torch/fp32", 10.0), quality("openvino/fp32", 50.0))]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert choose_path("w" * 64, 256, records=recs)[0] == InferencePath("torch", "fp32")


# --------------------------------------------------------------------------------------------------
# the measurement, on a tiny model


@pytest.fixture(scope="module")
def tiny_case(bench):
    """A tiny random cross-encoder, 30 questions x 10 candidates, and qrels marking one candidate each."""
    torch.manual_seed(4)
    model = CrossEncoderModel(*tiny_random_model("bert", seed=4))
    model.eval()
    rng = np.random.default_rng(0)
    words = ["who", "won", "the", "game", "panthers", "optimal", "transport", "mass", "moves", "what", "is", "a"]
    pairs = bench.Pairs([], [], [], [])
    qrels = {}
    for q in range(30):
        qid = f"q{q}"
        query = " ".join(rng.choice(words, 4))
        for d in range(10):
            pairs.qids.append(qid)
            pairs.queries.append(query)
            pairs.passages.append(" ".join(rng.choice(words, int(rng.integers(3, 30)))))
            pairs.docids.append(f"{qid}-d{d}")
        qrels[qid] = {f"{qid}-d{int(rng.integers(10))}": 1}
    return model, pairs, qrels


def test_the_guard_measures_every_path_against_fp32(bench, tiny_case, tmp_path):
    model, pairs, qrels = tiny_case
    paths = [InferencePath("torch", "fp32"), InferencePath("torch", "bf16"), InferencePath("onnx", "fp32")]
    rec = bench.measure_guard(model, pairs, qrels, paths, max_length=64, batch_size=8)
    by_path = {q.path: q for q in rec.paths}
    assert rec.questions == 30 and rec.pairs == 300 and rec.max_length == 64
    reference = by_path["torch/fp32"]
    assert reference.passed and reference.order_share == 1.0 and reference.max_abs_error == 0.0
    assert reference.p_values == {"P@5": 1.0, "RR@10": 1.0}
    # bf16's figures are what the real scores say
    fp32 = CrossEncoderReranker(model, max_length=64, batch_size=8, dtype="fp32").score_pairs(pairs.queries, pairs.passages)
    bf16 = CrossEncoderReranker(model, max_length=64, batch_size=8, dtype="bf16").score_pairs(pairs.queries, pairs.passages)
    assert by_path["torch/bf16"].order_share == pytest.approx(bench.order_share(pairs.qids, bf16, fp32))
    assert by_path["torch/bf16"].max_abs_error == pytest.approx(float(np.max(np.abs(bf16 - fp32))), abs=1e-6)
    assert by_path["torch/bf16"].passed == judge_path(by_path["torch/bf16"].order_share,
                                                      by_path["torch/bf16"].p_values)[0]
    if backend_available("onnx")[0]:
        assert by_path["onnx/fp32"].max_abs_error < 1e-5
    # auto reads the record back and picks its fastest passing path
    write_guard_record(rec, tmp_path)
    best = max((q for q in rec.paths if q.passed), key=lambda q: q.pairs_per_s)
    auto = CrossEncoderReranker(model, max_length=64, backend="auto", guard_dir=tmp_path)
    assert str(auto.path) == best.path
    # and a run's report says which path the record gave, and why
    chosen = auto.run_report()["inference_path"]
    assert chosen["path"] == best.path and "guard" in chosen["why"]


def test_a_path_that_reorders_fails_the_guard(bench, tiny_case):
    """The order share and the measures are computed from the scores: a path that reverses each
    question's order (simulated by negated fp32 scores) is caught."""
    _, pairs, qrels = tiny_case
    scores = np.linspace(1.0, 0.0, len(pairs))
    assert bench.order_share(pairs.qids, scores, scores) == 1.0
    assert bench.order_share(pairs.qids, -scores, scores) == 0.0
    assert not judge_path(bench.order_share(pairs.qids, -scores, scores), {"P@5": 1.0, "RR@10": 1.0})[0]
    measures = bench.per_question_measures(pairs, scores, qrels)
    assert set(measures) == {"P@5", "RR@10"} and len(measures["P@5"]) == 30
    # RR@10 of the first-stage order: 1 / (position of the relevant candidate + 1)
    expected = [1.0 / (int(next(iter(qrels[f"q{q}"])).split("-d")[1]) + 1) for q in range(30)]
    assert measures["RR@10"] == pytest.approx(expected)
