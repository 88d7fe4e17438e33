"""`clir-ot xquad-dense-students` on a miniature XQuAD: a tiny bi-encoder is the first stage, its
students are distilled from a Tatoeba-layout folder, re-encode the foreign paragraphs and are compared
with the first stage; finished students are reused."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from clir_ot.cli import main
from clir_ot.errors import ConfigError
from clir_ot.formats import Document, load_run, write_corpus, write_qrels, write_topics
from clir_ot.models import BiEncoderModel, tiny_random_model
from clir_ot.pipelines.xquad_dense_students import run_xquad_dense_students
from clir_ot.retrieval.dense import DenseSearcher, dense_search_to_run, encode_corpus

WORDS = "the a cat dog house tree river city book water red green big small runs sees eats old new".split()
FOREIGN = {w: f"x{w[::-1]}" for w in WORDS}
SETTINGS = {"max_steps": 6, "batch_size": 8, "max_length": 32, "save_every": 3, "dtype": "fp32", "lr": 1e-3,
            "log_every": 3}


def translate(text: str) -> str:
    return " ".join(FOREIGN[w] for w in text.split())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A baseline folder (collection + the tiny encoder's dense run en->el), a Tatoeba folder, the encoder."""
    root = tmp_path_factory.mktemp("dense-students")
    rng = random.Random(3)
    collection = root / "xquad" / "collection"
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(12)]
    topics = {f"q{i:02d}": " ".join(p.split()[1:5]) for i, p in enumerate(paragraphs)}
    write_topics(collection / "topics.xquad.en.tsv", topics)
    write_corpus(collection / "corpus" / "el" / "docs.jsonl",
                 [Document(f"el-{i:03d}", translate(p)) for i, p in enumerate(paragraphs)])
    write_qrels(collection / "qrels.xquad.cross.el.txt", {f"q{i:02d}": {f"el-{i:03d}": 1} for i in range(len(paragraphs))})
    sentences = sorted({" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(60)})
    tatoeba = root / "tatoeba"
    tatoeba.mkdir()
    (tatoeba / "tatoeba.ell-eng.eng").write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    (tatoeba / "tatoeba.ell-eng.ell").write_text("".join(translate(s) + "\n" for s in sentences), encoding="utf-8")
    model, tokenizer = tiny_random_model("bert", paragraphs + [translate(p) for p in paragraphs] + sentences, seed=4)
    BiEncoderModel(model, tokenizer).save_pretrained(root / "encoder")
    encoder = BiEncoderModel.from_pretrained(root / "encoder")
    encode_corpus(collection / "corpus" / "el", root / "indexes" / "el", encoder, batch_size=8, max_length=32)
    dense_search_to_run(DenseSearcher(root / "indexes" / "el", encoder), topics,
                        root / "xquad" / "run.xquad.e5-small.cross.en-el.txt", k=5, batch_size=8, max_length=32)
    return root


def test_students_are_distilled_searched_compared_and_reused(world, tmp_path):
    output, indexes = world / "xquad", tmp_path / "indexes"
    result = run_xquad_dense_students(output, indexes, world / "tatoeba", SETTINGS, languages=["el"],
                                      methods=["mse-sent", "ot-shuffled"], hits=5, batch_size=8, max_length=32,
                                      dtype="fp32", n_resamples=200, encoder=world / "encoder")
    for method in ("mse-sent", "ot-shuffled"):
        manifest = json.loads((output / f"dense-student.e5-small.{method}.el" / "training.json").read_text())
        assert manifest["kind"] == "distillation" and manifest["distillation"]["model_type"] == "bi-encoder"
        assert manifest["distillation"]["shuffle_bitext"] == (method == "ot-shuffled")
        run = load_run(output / f"run.xquad.e5-small-student-{method}.cross.en-el.txt")
        assert set(run) == {f"q{i:02d}" for i in range(12)}
        assert all(docid.startswith("el-") for hits in run.values() for docid in hits)
        cell = result["table"]["el"][method]["RR@10"]
        assert 0 <= cell["mean"] <= 1 and 0 <= cell["p_holm"] <= 1
        assert result["cost"][f"el/{method}"]["distill_s"] == pytest.approx(manifest["time"]["wall_s"], abs=0.1)
    table = (output / "table.dense-students.md").read_text()
    assert "| el | " in table and "ot-shuffled" in table

    stamps = {p: p.stat().st_mtime_ns for p in output.glob("dense-student.*/training.json")}
    again = run_xquad_dense_students(output, indexes, world / "tatoeba", SETTINGS, languages=["el"],
                                     methods=["mse-sent", "ot-shuffled"], hits=5, batch_size=8, max_length=32,
                                     dtype="fp32", n_resamples=200, encoder=world / "encoder")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert again["cost"]["el/mse-sent"]["distill_s"] == result["cost"]["el/mse-sent"]["distill_s"]
    assert again["table"]["el"]["mse-sent"]["RR@10"]["mean"] == result["table"]["el"]["mse-sent"]["RR@10"]["mean"]

    # a finished student is not reused for other settings: the error names what changed
    with pytest.raises(ConfigError, match=r"dense-student\.e5-small\.mse-sent\.el holds a student trained with other "
                                          r"settings \(lr: 0\.001 -> 0\.002\)"):
        run_xquad_dense_students(output, indexes, world / "tatoeba", {**SETTINGS, "lr": 2e-3}, languages=["el"],
                                 methods=["mse-sent"], hits=5, batch_size=8, max_length=32, dtype="fp32",
                                 n_resamples=200, encoder=world / "encoder")
    # a run whose student stamp is missing (searched by an unknown student) is searched again
    run = output / "run.xquad.e5-small-student-mse-sent.cross.en-el.txt"
    Path(str(run) + ".student").unlink()
    before = run.stat().st_mtime_ns
    run_xquad_dense_students(output, indexes, world / "tatoeba", SETTINGS, languages=["el"], methods=["mse-sent"],
                             hits=5, batch_size=8, max_length=32, dtype="fp32", n_resamples=200,
                             encoder=world / "encoder")
    assert run.stat().st_mtime_ns != before and Path(str(run) + ".student").is_file()


@pytest.mark.parametrize("change, message", [
    ({"languages": ["th"]}, "no Tatoeba bitext for 'th'"),
    ({"methods": ["kl"]}, "unknown distillation method 'kl'"),
    ({"settings": {**SETTINGS, "rank_weight": 1.0}}, "rank_weight applies to cross-encoder students"),
])
def test_bad_requests_fail_before_any_training(world, tmp_path, change, message):
    arguments = {"languages": ["el"], "methods": ["ot"], "settings": SETTINGS, **change}
    with pytest.raises(ConfigError, match=message):
        run_xquad_dense_students(world / "xquad", tmp_path / "indexes", world / "tatoeba", arguments["settings"],
                                 languages=arguments["languages"], methods=arguments["methods"],
                                 encoder=world / "encoder")
    assert not list((world / "xquad").glob("dense-student.*.ot.*"))


def test_missing_baseline_is_named(world, tmp_path):
    with pytest.raises(ConfigError, match=r"qrels.xquad.cross.el.txt is missing: run `clir-ot baseline"):
        run_xquad_dense_students(tmp_path, tmp_path / "indexes", world / "tatoeba", SETTINGS, languages=["el"],
                                 methods=["ot"], encoder=world / "encoder")


def test_cli_reports_a_bad_config_file(world, tmp_path, caplog):
    config = tmp_path / "settings.json"
    config.write_text('{"lr": "fast"}')
    code = main(["xquad-dense-students", "--output", str(world / "xquad"), "--tatoeba", str(world / "tatoeba"),
                 "--languages", "el", "--methods", "ot", "--config", str(config), "--encoder", str(world / "encoder")])
    assert code != 0
    assert "setting lr must be a number, got 'fast'" in caplog.text
