"""tools/check_dense_precision.py: trec_eval's order for the top 10, and clear errors for bad arguments."""
from __future__ import annotations

import numpy as np
import pytest
from tools_loader import load_tool


@pytest.fixture(scope="module")
def check():
    return load_tool("check_dense_precision")


def test_top_docids_follow_trec_eval_order_with_ties_by_docid_descending(check):
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [0.2, 0.2, 0.2, 0.3]], dtype=np.float32)
    assert check.top_docids(scores, ["d1", "d2", "d3", "d4"], depth=3) == [("d2", "d3", "d1"), ("d4", "d3", "d2")]


def test_reciprocal_rank_of_the_first_relevant(check):
    assert check.reciprocal_rank(("a", "b", "c"), {"c", "z"}) == pytest.approx(1 / 3)
    assert check.reciprocal_rank(("a", "b"), {"z"}) == 0.0


@pytest.mark.parametrize("argv, message", [
    (["--questions", "0"], "--questions must be at least 1, got 0"),
    (["--dtypes", "fp32", "int8"], "--dtypes: unknown precision 'int8'; valid: fp32, fp16, bf16"),
])
def test_bad_arguments_are_one_clear_error(check, capsys, tmp_path, argv, message):
    assert check.main(["--output", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_first_stage_names_the_file_and_the_fix(check, capsys, tmp_path):
    assert check.main(["--output", str(tmp_path), "--language", "th"]) == 2
    err = capsys.readouterr().err
    assert "is missing: run `make demo`" in err and "topics.xquad.en.tsv" in err
