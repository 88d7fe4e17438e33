"""Progress bars: one switch (``clir-ot -q``) hides them all, in this process and its children."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clir_ot import progress
from clir_ot.progress import progress_bar, set_progress_bars


@pytest.fixture
def bars_restored():
    yield
    set_progress_bars(True)


def test_switched_off_bars_are_hidden_whatever_the_caller_asks(bars_restored, capsys):
    for _ in progress_bar(range(3), desc="shown-bar", disable=False):
        pass
    assert "shown-bar" in capsys.readouterr().err
    set_progress_bars(False)
    assert not progress.progress_bars_enabled()
    assert os.environ[progress.ENV] == "0" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    for _ in progress_bar(range(3), desc="hidden-bar", disable=False):
        pass
    assert "hidden-bar" not in capsys.readouterr().err
    set_progress_bars(True)
    assert progress.ENV not in os.environ and progress.progress_bars_enabled()


def test_hugging_face_bars_follow_the_switch(bars_restored):
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    set_progress_bars(False)
    assert are_progress_bars_disabled() and not hf_logging.is_progress_bar_enabled()
    set_progress_bars(True)
    assert not are_progress_bars_disabled() and hf_logging.is_progress_bar_enabled()


def test_a_child_process_inherits_the_switch(bars_restored):
    set_progress_bars(False)
    code = "from clir_ot.progress import progress_bars_enabled; print(progress_bars_enabled())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.strip() == "False", done.stderr


def test_quiet_flag_hides_the_bars_of_a_verb(bars_restored, tmp_path, capsys):
    from clir_ot.cli import main
    from clir_ot.formats import Document, write_corpus, write_topics

    write_corpus(tmp_path / "corpus.jsonl", [Document(f"d{i}", f"text number {i}") for i in range(3)])
    write_topics(tmp_path / "topics.tsv", {"q1": "text", "q2": "number"})
    argv = ["index", "--input", str(tmp_path / "corpus.jsonl"), "--index", str(tmp_path / "index"), "--language", "en"]
    assert main(argv) == 0
    search = ["search", "--index", str(tmp_path / "index"), "--topics", str(tmp_path / "topics.tsv"), "--hits", "2"]
    capsys.readouterr()
    assert main([*search, "--output", str(tmp_path / "a.txt")]) == 0
    assert "BM25 index" in capsys.readouterr().err  # the bar is shown without -q (stderr is not a terminal)
    assert main(["-q", *search, "--output", str(tmp_path / "b.txt")]) == 0
    assert capsys.readouterr().err == ""
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text()
