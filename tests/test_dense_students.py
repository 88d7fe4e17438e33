"""`clir-ot xquad-dense-students` (the study of a bi-encoder backbone) on a miniature XQuAD: a tiny
bi-encoder is the first stage, its students are distilled from a Tatoeba-layout folder, re-encode the
foreign paragraphs and are compared with the first stage; finished steps are reused."""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

import numpy as np

from clir_ot.cli import main
from clir_ot.errors import ConfigError
from clir_ot.evaluation import evaluate, parse_measure
from clir_ot.formats import Document, load_run, read_qrels, read_topics, write_corpus, write_qrels, write_topics
from clir_ot.models import BiEncoderModel, tiny_random_model
from clir_ot.retrieval.dense import DenseSearcher, dense_search_to_run, encode_corpus
from clir_ot.study.config import load_study_config, study_config_from_data
from clir_ot.study.dense_students import DENSE_MEASURES, dense_students_config, run_xquad_dense_students
from clir_ot.study.runner import run_study
from clir_ot.study.stats import paired_randomization_test
from clir_ot.training import selected_model

WORDS = "the a cat dog house tree river city book water red green big small runs sees eats old new".split()
FOREIGN = {w: f"x{w[::-1]}" for w in WORDS}
SETTINGS = {"max_steps": 6, "batch_size": 8, "max_length": 32, "save_every": 3, "dtype": "fp32", "lr": 1e-3,
            "log_every": 3}


ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"hits": 5, "batch_size": 8, "max_length": 32, "dtype": "fp32", "n_resamples": 200}


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


def run(world: Path, settings=SETTINGS, methods=("mse-sent", "ot-shuffled"), **changes):
    options = {**OPTIONS, "languages": ["el"], "encoder": world / "encoder", **changes}
    return run_xquad_dense_students(world / "xquad", world / "tatoeba", settings, methods=methods, **options)


def finished(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.glob("artifacts/*/*/artifact.json")}


def test_students_are_distilled_searched_compared_and_reused(world, tmp_path, capsys):
    output = world / "xquad"
    result = run(world)
    plan = result.plan
    qrels = read_qrels(output / "collection" / "qrels.xquad.cross.el.txt")
    measures = [parse_measure(m) for m in DENSE_MEASURES]
    first = evaluate(qrels, load_run(output / "run.xquad.e5-small.cross.en-el.txt"), measures).per_query
    topics = read_topics(output / "collection" / "topics.xquad.en.tsv")
    encoder = BiEncoderModel.from_pretrained(world / "encoder")
    for method in ("mse-sent", "ot-shuffled"):
        student = plan.steps[f"student/e5-small/{method}/el/seed42"]
        manifest = json.loads((student.model / "training.json").read_text())
        assert manifest["kind"] == "distillation" and manifest["distillation"]["model_type"] == "bi-encoder"
        assert manifest["distillation"]["shuffle_bitext"] == (method == "ot-shuffled")
        search = plan.steps[f"search/e5-small/{method}/el/seed42"]
        run_file = load_run(search.run)
        assert set(run_file) == {f"q{i:02d}" for i in range(12)}
        assert all(docid.startswith("el-") for hits in run_file.values() for docid in hits)
        # the run is the student's paragraphs searched by the unchanged query encoder: redo it by hand
        again = tmp_path / f"{method}.txt"
        encode_corpus(output / "collection" / "corpus" / "el", tmp_path / f"index-{method}",
                      BiEncoderModel.from_pretrained(selected_model(student.model)), batch_size=8, max_length=32)
        dense_search_to_run(DenseSearcher(tmp_path / f"index-{method}", encoder), topics, again, k=5, batch_size=8,
                            max_length=32)
        by_hand = load_run(again)
        assert by_hand.keys() == run_file.keys()
        for q, hits in run_file.items():
            assert by_hand[q].keys() == hits.keys() and all(abs(by_hand[q][d] - v) < 1e-5 for d, v in hits.items())
        # every cell equals the paired comparison computed here from the two runs
        treated = evaluate(qrels, run_file, measures).per_query
        for m in DENSE_MEASURES:
            qids = sorted(set(first) & set(treated))
            a = np.array([treated[q][m] for q in qids]); b = np.array([first[q][m] for q in qids])
            cell = result.cell("el", method, m)
            assert cell.mean == pytest.approx(a.mean(), abs=1e-12) and cell.diff == pytest.approx((a - b).mean(), abs=1e-12)
            # one language: Holm leaves the p-value as it is
            assert cell.p_holm == pytest.approx(paired_randomization_test(a, b, n_resamples=200), abs=1e-12)
        assert result.cell("el", "none", "RR@10").mean == pytest.approx(np.mean([v["RR@10"] for v in first.values()]))
        assert result.cost[f"el/{method}"].distill_s == pytest.approx(manifest["time"]["wall_s"], abs=0.1)
    table = (output / "table.dense-students.md").read_text()
    assert "### Success@1" in table and "| language | none | mse-sent | ot-shuffled |" in table
    cell = result.cell("el", "ot-shuffled", "RR@10")
    assert f"{cell.mean:.4f} ({cell.diff:+.4f}, p={cell.p_holm:.3f})" in table
    saved = json.loads((output / "table.dense-students.json").read_text())
    assert saved["table"]["el"]["ot-shuffled"]["RR@10"] == {"mean": cell.mean, "diff": cell.diff, "p_holm": cell.p_holm}

    # everything is reused: nothing is rebuilt and the tables are the same
    before = finished(plan.root)
    again = run(world)
    assert finished(plan.root) == before
    assert again.cells == result.cells
    run_study(load_study_config(plan.root / "study.yaml"), plan.root, dry_run=True)
    out = capsys.readouterr().out
    assert re.search(r"search/e5-small/none/el +baseline run", out) and "0 to build" in out
    assert re.search(r"student/e5-small/mse-sent/el/seed42 +cached", out)

    # other settings are another student (its own key); the finished one is kept as it is
    changed = run(world, settings={**SETTINGS, "lr": 2e-3}, methods=("mse-sent",))
    assert changed.plan.steps["student/e5-small/mse-sent/el/seed42"].key != plan.steps["student/e5-small/mse-sent/el/seed42"].key
    after = finished(plan.root)
    assert all(after[p] == stamp for p, stamp in before.items()) and len(after) == len(before) + 2

    # a search step that did not finish (no artifact.json) is searched again
    search = plan.steps["search/e5-small/mse-sent/el/seed42"]
    (search.artifact.folder / "artifact.json").unlink()
    run(world, methods=("mse-sent",))
    assert (search.artifact.folder / "artifact.json").is_file() and search.run.is_file()


def test_students_of_an_earlier_run_are_reused_with_the_same_settings_only(world, tmp_path):
    """A dense-student.e5-small.<method>.<L> folder of the command's earlier (pre-study) layout is reused
    as the student when its training.json records the settings and encoder asked for now."""
    first = run(world, methods=("mse-sent",))
    trained = first.plan.steps["student/e5-small/mse-sent/el/seed42"]
    output = tmp_path / "xquad"
    shutil.copytree(world / "xquad", output, ignore=shutil.ignore_patterns("dense-students", "table.*"))
    shutil.copytree(trained.model, output / "dense-student.e5-small.mse-sent.el")
    options = {**OPTIONS, "languages": ["el"], "encoder": world / "encoder", "methods": ("mse-sent",)}
    reused = run_xquad_dense_students(output, world / "tatoeba", SETTINGS, **options)
    student = reused.plan.steps["student/e5-small/mse-sent/el/seed42"]
    assert student.artifact is None and student.model == output / "dense-student.e5-small.mse-sent.el"
    assert not list((output / "dense-students").glob("artifacts/student/*"))  # nothing trained
    assert reused.cell("el", "mse-sent", "RR@10") == first.cell("el", "mse-sent", "RR@10")
    assert reused.cost["el/mse-sent"].distill_s == first.cost["el/mse-sent"].distill_s
    # other settings: the earlier student is left alone and the study trains its own
    other = run_xquad_dense_students(output, world / "tatoeba", {**SETTINGS, "lr": 2e-3}, **options)
    assert other.plan.steps["student/e5-small/mse-sent/el/seed42"].artifact is not None
    assert len(list((output / "dense-students").glob("artifacts/student/*/artifact.json"))) == 1


def test_the_shipped_study_config_is_the_commands_default():
    """`clir-ot xquad-dense-students` with the Makefile's arguments is tools/studies/xquad-dense-students.yaml."""
    shipped = load_study_config(ROOT / "tools" / "studies" / "xquad-dense-students.yaml")
    settings = json.loads((ROOT / "tools" / "configs" / "distill-xquad-cpu.json").read_text())
    alias = study_config_from_data(dense_students_config("runs/xquad", "../shared/data/tatoeba", settings), "alias.yaml")
    for name in ("name", "first_stage", "languages", "reference_language", "low_resource", "seeds", "backbones",
                 "methods", "distill", "search", "measures", "pool", "n_resamples"):
        if name == "backbones":  # the students folder: the same folder, spelled from another cwd
            assert [(b.name, b.kind, b.base, Path(b.students).resolve()) for b in alias.backbones] == \
                [(b.name, b.kind, b.base, Path(b.students).resolve()) for b in shipped.backbones]
            continue
        assert getattr(alias, name) == getattr(shipped, name), name
    assert alias.baseline.resolve() == shipped.baseline.resolve()
    assert {k: v.resolve() for k, v in alias.bitext.items()} == {k: v.resolve() for k, v in shipped.bitext.items()}


@pytest.mark.parametrize("change, message", [
    ({"languages": ["th"]}, "no bitext for 'th'"),
    ({"methods": ["kl"]}, "unknown method 'kl'"),
    ({"settings": {**SETTINGS, "rank_weight": 1.0}}, "rank_weight applies to cross-encoder students"),
])
def test_bad_requests_fail_before_any_training(world, tmp_path, change, message):
    arguments = {"languages": ["el"], "methods": ["ot"], "settings": SETTINGS, **change}
    output = tmp_path / "xquad"
    shutil.copytree(world / "xquad", output, ignore=shutil.ignore_patterns("dense-students", "table.*"))
    with pytest.raises(ConfigError, match=message):
        run_xquad_dense_students(output, world / "tatoeba", arguments["settings"], languages=arguments["languages"],
                                 methods=arguments["methods"], encoder=world / "encoder")
    assert not (output / "dense-students").exists()


def test_missing_baseline_is_named(world, tmp_path):
    with pytest.raises(ConfigError, match=r"lacks \d+ input\(s\), e\.g\. .*; build it first: clir-ot baseline"):
        run_xquad_dense_students(tmp_path, world / "tatoeba", SETTINGS, languages=["el"], methods=["ot"],
                                 encoder=world / "encoder")
    assert not (tmp_path / "dense-students").exists()


def test_cli_reports_a_bad_config_file(world, tmp_path, caplog, capsys):
    config = tmp_path / "settings.json"
    config.write_text('{"lr": "fast"}')
    code = main(["xquad-dense-students", "--output", str(world / "xquad"), "--tatoeba", str(world / "tatoeba"),
                 "--languages", "el", "--methods", "ot", "--config", str(config), "--encoder", str(world / "encoder")])
    assert code != 0
    assert "setting lr must be a number, got 'fast'" in caplog.text + capsys.readouterr().err
