"""The scripts of tools/ refuse bad argument values while parsing: one line on stderr, exit 2, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"

CASES = [
    ("bench_ot.py", ["--batch", "0"], "argument --batch: must be a positive integer, got '0'"),
    ("bench_ot.py", ["--epsilon-factor", "-1"], "argument --epsilon-factor: must be a positive number"),
    ("bench_ot.py", ["--baseline-module", "old_ot.py"], "argument --baseline-module: old_ot.py: no such file"),
    ("bench_exact_order.py", ["--pairs", "-3"], "argument --pairs: must be a positive integer, got '-3'"),
    ("bench_rerank.py", ["--fold", "-1"], "argument --fold: must be a non-negative integer, got '-1'"),
    ("bench_training_data.py", ["--sizes", "100", "--examples", "200"],
     "--examples 200 is more than the smallest of --sizes (100)"),
    ("check_rerank_precision.py", ["--max-length", "0"], "argument --max-length: must be a positive integer"),
    ("plot_ot_plan.py", ["--epsilon", "0"], "argument --epsilon: must be a positive number"),
    ("teacher_recipe_search.py", ["--windows", "0"], "argument --windows: must be a positive integer, got '0'"),
]


@pytest.mark.parametrize("tool, argv, message", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_a_bad_value_is_refused_while_parsing(tool, argv, message, tmp_path):
    done = subprocess.run([sys.executable, str(TOOLS / tool), *argv], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"{tool}: error:")
    assert list(tmp_path.iterdir()) == []  # nothing written
