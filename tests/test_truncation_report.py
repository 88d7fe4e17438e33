"""tools/truncation_report.py: the length statistics and the length that keeps truncation in budget."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from tools_loader import load_tool


@pytest.fixture(scope="module")
def report():
    return load_tool("truncation_report")


def test_summary_counts_inputs_longer_than_each_limit(report):
    lengths = np.array([10, 100, 200, 257, 300, 400, 513, 600, 50, 60])
    s = report.summarise("xx", "pairs", lengths, [256, 512], budget=0.2, model_limit=512)
    assert s.count == 10 and s.longest == 600
    assert s.truncated == {256: pytest.approx(0.5), 512: pytest.approx(0.2)}
    # 20% may be cut: the two longest (513, 600) -> the smallest multiple of 32 >= 400 is 416
    assert s.length_for_budget == 416


def test_no_length_fits_when_the_budget_is_below_what_the_model_limit_cuts(report):
    s = report.summarise("xx", "pairs", np.array([600, 700, 10, 20]), [256], budget=0.1, model_limit=512)
    assert s.length_for_budget is None
    assert "none" in report.markdown([s], [256], 0.1)


def test_bad_budget_is_one_clear_error(report, capsys, tmp_path):
    assert report.main(["--output", str(tmp_path), "--budget", "1.5"]) == 2
    assert "--budget must be in [0, 1)" in capsys.readouterr().err


def test_window_costs_count_windows_and_what_they_still_cut(report):
    """A whitespace tokenizer stand-in with offsets: the report windows pairs as the reranker does."""
    from clir_ot.models import tiny_random_model
    from clir_ot.rerank import PassageWindows

    _, tokenizer = tiny_random_model("bert", seed=1)
    questions = ["query: who"] * 3
    passages = ["word " * 5, "word " * 60, "word " * 400]
    costs = report.window_costs(tokenizer, questions, passages, [64], PassageWindows(4, overlap=8))[64]
    budget = 64 - tokenizer.num_special_tokens_to_add(pair=True) - 2 - len(
        tokenizer("passage: ", add_special_tokens=False)["input_ids"])
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in passages]
    windows = [1 if n <= budget else min(4, 1 + -(-(n - budget) // (budget - 8))) for n in lengths]
    assert costs["windows_per_pair"] == pytest.approx(sum(windows) / 3)
    assert costs["cut"] == pytest.approx(1 / 3)  # only the 400-word passage outlasts 4 windows


def test_bad_windows_are_one_clear_error(report, capsys, tmp_path):
    assert report.main(["--output", str(tmp_path), "--windows", "0"]) == 2
    assert "windows must be an integer of at least 1" in capsys.readouterr().err
