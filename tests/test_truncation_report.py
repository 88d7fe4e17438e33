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
    """The report windows pairs as the reranker does: a passage of exactly the budget is one window,
    one token more makes two, and only a passage longer than 4 windows is still cut."""
    from clir_ot.models import tiny_random_model
    from clir_ot.rerank import PassageWindows
    from clir_ot.rerank.windows import prefix_tokens

    _, tokenizer = tiny_random_model("bert", seed=1)
    question = "query: who"
    q_len = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    budget = 64 - tokenizer.num_special_tokens_to_add(pair=True) - q_len - prefix_tokens(tokenizer, "passage: ")
    passages = [" ".join(["word"] * budget), " ".join(["word"] * (budget + 1)), " ".join(["word"] * 400)]
    assert [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in passages] == [budget, budget + 1, 400]
    costs = report.window_costs(tokenizer, [question] * 3, passages, [64], PassageWindows(4, overlap=8))[64]
    assert costs["windows_per_pair"] == pytest.approx((1 + 2 + 4) / 3)
    assert costs["cut"] == pytest.approx(1 / 3)  # only the 400-word passage outlasts 4 windows


def test_bad_windows_are_one_clear_error(report, capsys, tmp_path):
    assert report.main(["--output", str(tmp_path), "--windows", "0"]) == 2
    assert "windows must be an integer of at least 1" in capsys.readouterr().err
