"""Passage windows (MaxP): a passage that does not fit is scored by its best window, and covered whole."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clir_ot.errors import ConfigError
from clir_ot.models import CrossEncoderModel, tiny_random_model
from clir_ot.models.derive import DEFAULT_TINY_TEXTS
from clir_ot.rerank import CrossEncoderReranker, ExactOrderReranker, PassageWindows
from clir_ot.rerank.windows import passage_windows

WORDS = " ".join(DEFAULT_TINY_TEXTS).split()


@pytest.fixture(scope="module")
def model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return CrossEncoderModel(*tiny_random_model("bert", seed=3)).eval()


def long_passage(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, n))


def test_windows_cover_the_passage_with_the_overlap_asked_for():
    offsets = [(2 * i, 2 * i + 1) for i in range(10)]  # "a b c ..." : token i is character 2i
    text = " ".join("abcdefghij")
    # a budget of 5: windows of 4 tokens (one of slack), 1 shared
    windows, cut = passage_windows(text, offsets, budget=5, windows=PassageWindows(10, overlap=1))
    assert windows == ["a b c d", "d e f g", "g h i j"] and not cut
    windows, cut = passage_windows(text, offsets, budget=5, windows=PassageWindows(2, overlap=1))
    assert windows == ["a b c d", "d e f g"] and cut  # h i j lost: at most 2 windows
    assert passage_windows(text, offsets, budget=10, windows=PassageWindows(3)) == ([text], False)  # it fits
    assert passage_windows(text, offsets, budget=5, windows=PassageWindows(1)) == ([text], True)  # windows off
    # the overlap shrinks to half a window where the query leaves little room
    assert passage_windows(text, offsets, budget=5, windows=PassageWindows(10, overlap=32))[0][:2] == ["a b c d", "c d e f"]


def test_a_passage_that_fits_scores_exactly_as_without_windows(model):
    plain = CrossEncoderReranker(model, max_length=64, dtype="fp32")
    windowed = CrossEncoderReranker(model, max_length=64, dtype="fp32", windows=PassageWindows(4, 8))
    passages = [long_passage(5, seed) for seed in range(6)]
    np.testing.assert_array_equal(windowed.score("who wrote it", passages), plain.score("who wrote it", passages))
    assert windowed.truncation.windowed == 0 and windowed.truncation.truncated == 0


def test_a_long_passage_scores_as_its_best_window(model):
    windowed = CrossEncoderReranker(model, max_length=32, dtype="fp32", windows=PassageWindows(50, 4))
    plain = CrossEncoderReranker(model, max_length=32, dtype="fp32")
    passage = long_passage(120)
    pairs = windowed.windowed_pairs(["who wrote it"], [passage])
    assert len(pairs.passages) > 2 and pairs.cut == 0 and set(pairs.owner) == {0}
    # every window fits beside the query, and together they hold every word of the passage, in order
    assert model.tokenize(pairs.queries, pairs.passages, max_length=10_000)["input_ids"].shape[1] <= 32
    assert all(w in passage for w in pairs.passages)
    assert pairs.passages[0].split()[0] == passage.split()[0] and pairs.passages[-1].split()[-1] == passage.split()[-1]
    expected = plain.score("who wrote it", pairs.passages).max()
    assert windowed.score("who wrote it", [passage])[0] == pytest.approx(expected, abs=1e-6)
    assert windowed.truncation.windowed == 2 and windowed.truncation.truncated == 0  # windowed_pairs + score
    assert "scored in" in windowed.truncation.summary()


def test_windows_are_in_the_signature_only_when_on(model):
    plain = CrossEncoderReranker(model, max_length=32, dtype="fp32")
    assert "windows" not in plain.signature()
    on = CrossEncoderReranker(model, max_length=32, dtype="fp32", windows=PassageWindows(3, 4)).signature()
    assert (on["windows"], on["window_overlap"]) == (3, 4)


def test_exact_order_rescoring_reads_the_same_windows(model):
    fast = CrossEncoderReranker(model, max_length=32, dtype="bf16", windows=PassageWindows(8, 4))
    assert ExactOrderReranker.around(fast, margin=1e-3).exact.windows == fast.windows


@pytest.mark.parametrize("windows, overlap, message", [(0, 4, "windows must be an integer of at least 1"),
                                                       (2, -1, "window overlap must be an integer of at least 0")])
def test_bad_window_settings_are_config_errors(windows, overlap, message):
    with pytest.raises(ConfigError, match=message):
        PassageWindows(windows, overlap)


def test_cli_windows_score_long_passages_whole(model, tmp_path, capsys, caplog):
    import json

    from clir_ot.cli import main
    from clir_ot.formats import Document, Hit, iter_run_by_query, write_corpus, write_run, write_topics

    docs = {f"d{i}": long_passage(10 + 30 * i, seed=i) for i in range(4)}
    write_corpus(tmp_path / "corpus.jsonl", [Document(d, t) for d, t in docs.items()])
    write_topics(tmp_path / "topics.tsv", {"q1": "who wrote it"})
    write_run(tmp_path / "run.txt", {"q1": [Hit("q1", d, 10.0 - i, i + 1) for i, d in enumerate(docs)]})
    model.save_pretrained(tmp_path / "model")
    args = ["rerank", "--run", str(tmp_path / "run.txt"), "--topics", str(tmp_path / "topics.tsv"), "--corpus",
            str(tmp_path / "corpus.jsonl"), "--model", str(tmp_path / "model"), "--max-length", "32",
            "--dtype", "fp32", "--backend", "torch"]
    assert main([*args, "--output", str(tmp_path / "maxp.txt"), "--windows", "20", "--window-overlap", "4"]) == 0
    report = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "windows (MaxP)" in report["truncation"] and "0 truncated" in report["truncation"]
    plain = CrossEncoderReranker(model, max_length=32, dtype="fp32")
    windowed = CrossEncoderReranker(model, max_length=32, dtype="fp32", windows=PassageWindows(20, 4))
    want = windowed.score("who wrote it", list(docs.values()))
    got = {h.docid: h.score for h in dict(iter_run_by_query(tmp_path / "maxp.txt"))["q1"]}
    assert [got[d] for d in docs] == pytest.approx(want.tolist(), abs=1e-6)
    assert not np.allclose(want, plain.score("who wrote it", list(docs.values())))  # windows changed scores
    assert main([*args, "--output", str(tmp_path / "bi.txt"), "--windows", "3", "--model-type", "bi-encoder"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]  # stderr under the real command
    assert len(errors) == 1 and "--windows serves the cross-encoder" in errors[0]
    caplog.clear()
    assert main([*args, "--output", str(tmp_path / "no.txt"), "--window-overlap", "8"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "--window-overlap needs --windows N" in errors[0]


def test_an_overlap_over_half_the_widest_window_is_named_once_at_start(model, caplog):
    with caplog.at_level("WARNING", logger="clir_ot.rerank.cross_encoder"):
        CrossEncoderReranker(model, max_length=32, dtype="fp32", windows=PassageWindows(4, 8))
    assert "window overlap" not in caplog.text
    with caplog.at_level("WARNING", logger="clir_ot.rerank.cross_encoder"):
        CrossEncoderReranker(model, max_length=16, dtype="fp32", windows=PassageWindows(4, 300))
    assert "window overlap 300 is more than half of the widest window (11 passage tokens at max length 16)" in caplog.text
