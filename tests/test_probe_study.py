"""A study on the Tatoeba probe (``dataset: tatoeba-probe``): the probe folder is the baseline (its test
halves and zero-shot runs), students are distilled on the distillation halves only, searched over the
test halves with each language's own English queries, and compared with zero-shot; the config is
checked before any work (tiny random bi-encoder, generated two-language Tatoeba folder)."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from clir_ot.datasets.tatoeba import ProbeLayout, check_probe_leakage, probe_half
from clir_ot.distill.bitext import tatoeba_pairs
from clir_ot.errors import ConfigError, LeakageError
from clir_ot.evaluation import evaluate
from clir_ot.formats import BitextPair, iter_corpus, load_run, read_qrels, read_topics
from clir_ot.models import BiEncoderModel, tiny_random_model
from clir_ot.pipelines.tatoeba_probe import PROBE_LANGUAGES, RESOURCE_GROUPS, run_tatoeba_probe
from clir_ot.study.config import load_study_config, study_config_from_data
from clir_ot.study.runner import plan_study, run_study

WORDS = "the a cat dog house tree river city book water red green big small runs sees eats old new".split()
LANGUAGES = {"swh": "sw", "khm": "km"}  # file code -> canonical code
SETTINGS = {"max_steps": 4, "batch_size": 8, "max_length": 32, "save_every": 2, "dtype": "fp32", "lr": 1e-3,
            "log_every": 2}
SEARCH = {"hits": 10, "batch_size": 8, "max_length": 32, "dtype": "fp32"}

pytestmark = pytest.mark.usefixtures("one_thread")


def translate(text: str, lang: str) -> str:
    return " ".join(f"{lang}{w[::-1]}" for w in text.split())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A Tatoeba folder (sw, km), a tiny encoder, and the probe folder made from them (zero-shot only)."""
    root = tmp_path_factory.mktemp("probe-study")
    rng = random.Random(5)
    tatoeba = root / "tatoeba"
    tatoeba.mkdir()
    for code in LANGUAGES:
        sentences = sorted({" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(50)})
        (tatoeba / f"tatoeba.{code}-eng.eng").write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        (tatoeba / f"tatoeba.{code}-eng.{code}").write_text("".join(translate(s, code) + "\n" for s in sentences),
                                                            encoding="utf-8")
    texts = [line for p in tatoeba.iterdir() for line in p.read_text(encoding="utf-8").splitlines()]
    model, tokenizer = tiny_random_model("bert", texts, seed=4)
    BiEncoderModel(model, tokenizer).save_pretrained(root / "encoder")
    run_tatoeba_probe(tatoeba, root / "probe", list(LANGUAGES.values()), encoder=root / "encoder",
                      batch_size=8, max_length=32)
    return root


def config_data(world: Path, **changes) -> dict:
    data = {"name": "probe-test", "dataset": "tatoeba-probe", "baseline": str(world / "probe"),
            "languages": ["swh", "km"], "low_resource": ["sw"], "reference_language": None,
            "bitext": {"tatoeba": str(world / "tatoeba")}, "seeds": [42],
            "backbones": [{"name": "tiny", "kind": "bi-encoder", "base": str(world / "encoder")}],
            "methods": ["none", "mse-sent"], "distill": SETTINGS, "search": SEARCH, "measures": ["P@1", "RR@10"],
            "n_resamples": 200}
    return {**data, **changes}


def test_students_learn_from_the_distillation_half_and_search_each_language_with_its_own_queries(world, tmp_path):
    config = study_config_from_data(config_data(world), tmp_path / "probe-test.yaml")
    assert config.probe and config.languages == ("sw", "km") and config.low_resource == ("sw",)
    plan = run_study(config, tmp_path / "study")
    layout = ProbeLayout(world / "probe")
    report = (plan.root / "report.md").read_text(encoding="utf-8")
    for code, lang in LANGUAGES.items():
        student = plan.steps[f"student/tiny/mse-sent/{lang}/seed42"]
        manifest = json.loads((student.model / "training.json").read_text())
        # finished: its checkpoints and the last step's weights are gone, best/ (what the search read) stays
        assert not (student.model / "checkpoints").exists() and not list(student.model.glob("*.safetensors"))
        assert list((student.model / "best").glob("*.safetensors"))
        half = probe_half(tatoeba_pairs(world / "tatoeba", lang), "distill")
        bitext = manifest["bitext"]
        assert bitext["train_pairs"] + bitext["valid_pairs"] == len(half) < len(tatoeba_pairs(world / "tatoeba", lang))
        search = plan.steps[f"search/tiny/mse-sent/{lang}/seed42"]
        run = load_run(search.run)
        topics = read_topics(layout.collection.queries_for(lang))
        assert set(run) == set(topics) and all(d.startswith(f"{lang}-") for hits in run.values() for d in hits)
        # the zero-shot baseline is the probe's own run; the student's scores come from its run by trec_eval
        none = plan.steps[f"search/tiny/none/{lang}"]
        assert none.run == layout.first_stage_run(lang)
        qrels = read_qrels(layout.qrels(lang))
        p1 = evaluate(qrels, run, ["P@1"]).means["P@1"]
        assert f"{p1:.4f}" in report
    assert re.search(r"\bP@1\b", report) and "sw" in report and "km" in report
    # planned again, every step is finished
    assert not plan_study(config, tmp_path / "study").pending()


def test_the_report_groups_languages_by_resource_level_and_applies_the_control_rule(world, tmp_path):
    config = study_config_from_data(config_data(world, methods=["none", "mse-sent", "ot"], controls=["shuffled"]),
                                    tmp_path / "probe-test.yaml")
    assert not config.pool  # each language has its own queries: nothing to pool
    plan = run_study(config, tmp_path / "study")
    report = (plan.root / "report.md").read_text(encoding="utf-8")
    assert "Multilingual pool" not in report and "`none` is the zero-shot run" in report
    section = report.split("## By resource level (P@1")[1].split("\n## ")[0]
    rows = {line.split(" | ")[1]: line for line in section.splitlines() if line.startswith("| tiny |") and " up / " in line}
    assert set(rows) == {"low-resource", "other"}
    # the group mean of a method is the mean of its per-language means (one language per group here)
    scores = {}
    for method in ("none", "mse-sent", "ot"):
        for lang in ("sw", "km"):
            run = load_run(plan.steps[f"search/tiny/{method}/{lang}" + ("" if method == "none" else "/seed42")].run)
            scores[method, lang] = evaluate(read_qrels(ProbeLayout(world / "probe").qrels(lang)), run, ["P@1"]).means["P@1"]
    assert f"| tiny | low-resource | {scores['none', 'sw']:.4f} (1) | {scores['mse-sent', 'sw']:.4f} (" in rows["low-resource"]
    assert f"({scores['ot', 'km'] - scores['none', 'km']:+.4f}; " in rows["other"] and "; of 1)" in rows["other"]
    # ot against mse-sent head to head, the controls left out (of the table and of the comparisons)
    assert "shuffled" not in section.split("\n\n")[2]  # the table's header
    head = [line for line in section.splitlines() if " − " in line and line.startswith("| tiny |")]
    assert [line.split(" | ")[2] for line in head] == ["ot − mse-sent"] * 2
    assert f"{scores['ot', 'sw'] - scores['mse-sent', 'sw']:+.4f}" in head[0]
    # the gain plot: every method and control per language, with intervals, shown in the report
    assert "](gains_by_method.png)" in report and (plan.root / "gains_by_method.png").stat().st_size > 5000
    # the control rule: without a ranking term the no-bitext control is the unchanged model, none
    rule = report.split("## Does a gain count as alignment?")[1].split("\n## ")[0]
    assert "it is `none` itself" in rule and "− no-bitext (p Holm)" in rule
    verdicts = [line.strip("|").split(" | ") for line in rule.splitlines() if line.startswith("| tiny | ")]
    assert len(verdicts) == 4  # 2 methods x 2 languages
    for cells in verdicts:
        gain, no_bitext = cells[3].strip(), cells[5].split()[0]
        assert no_bitext == gain  # the no-bitext control's difference is the gain over none


def test_a_student_never_sees_a_test_sentence(world, tmp_path):
    """A Tatoeba folder that is not the one the probe was made from can put a test sentence in the
    distillation half (here: a new pair joins a test pair's group and moves it there); the student's
    step refuses it."""
    layout = ProbeLayout(world / "probe")
    test_foreign = next(iter(_documents(layout, "sw")))
    pairs = tatoeba_pairs(world / "tatoeba", "sw")
    for k in range(200):  # a new English text, sorting first in the group, whose hash sends the group to distil
        extra = BitextPair(f"0 {k}", test_foreign, "x", 1)
        if any(p.foreign == test_foreign for p in probe_half([*pairs, extra], "distill")):
            break
    else:
        pytest.fail("no English text moved the group")
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / "tatoeba.swh-eng.eng").write_text("".join(p.english + "\n" for p in [*pairs, extra]), encoding="utf-8")
    (leaky / "tatoeba.swh-eng.swh").write_text("".join(p.foreign + "\n" for p in [*pairs, extra]), encoding="utf-8")
    config = study_config_from_data(config_data(world, languages=["sw"], low_resource=["sw"],
                                                bitext={"tatoeba": str(leaky)}), tmp_path / "probe-test.yaml")
    with pytest.raises(LeakageError, match="part of the sw probe's test half"):
        run_study(config, tmp_path / "study")


def test_the_leakage_check_reads_both_sides_of_the_test_half(world):
    layout = ProbeLayout(world / "probe")
    query = next(iter(read_topics(layout.collection.queries_for("km")).values()))
    document = next(iter(_documents(layout, "km")))
    assert check_probe_leakage([BitextPair("unseen", "unseen", "x", 1)], layout.collection, "km") == 1
    for pair in (BitextPair(query, "unseen", "x", 1), BitextPair("unseen", document, "x", 2)):
        with pytest.raises(LeakageError, match=r"bitext pair x:\d"):
            check_probe_leakage([pair], layout.collection, "km")


def _documents(layout: ProbeLayout, lang: str) -> list[str]:
    return [d.contents for d in iter_corpus(layout.corpus(lang))]


@pytest.mark.parametrize("changes, message", [
    ({"dataset": "msmarco"}, "dataset must be one of xquad, tatoeba-probe, got 'msmarco'"),
    ({"backbones": [{"name": "ce"}]}, "dataset: tatoeba-probe studies bi-encoder students; backbones ce need kind: bi-encoder"),
    ({"reference_language": "en"}, "reference_language is for XQuAD"),
    ({"languages": ["sw", "swh"]}, "languages name one language twice"),
    ({"languages": ["klingon"]}, "unsupported language 'klingon'"),
    ({"controls": ["no-bitext"], "distill": {**SETTINGS, "rank_weight": 0.5}}, "controls: no-bitext is the ranking term alone"),
    ({"pool": True}, "pool: true pools the languages' runs of the same queries"),
])
def test_a_probe_config_that_cannot_work_is_refused_before_any_work(world, tmp_path, changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        study_config_from_data(config_data(world, **changes), tmp_path / "probe-test.yaml")


def test_students_must_be_searched_as_the_zero_shot_runs_were(world, tmp_path):
    config = study_config_from_data(config_data(world, search={**SEARCH, "max_length": 64}), tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match=r"sw's zero-shot run .* was encoded with max_length 32; search: has max_length 64"):
        plan_study(config, tmp_path / "study")
    missing = study_config_from_data(config_data(world, baseline=str(tmp_path / "nowhere")), tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match=r"lacks .* build it first: python tools/tatoeba_probe.py"):
        plan_study(missing, tmp_path / "study")


def test_the_zero_shot_runs_record_how_they_were_encoded(world):
    manifest = json.loads(ProbeLayout(world / "probe").collection.manifest.read_text())
    assert manifest["dataset"] == "tatoeba-probe" and set(manifest["languages"]) == {"sw", "km"}
    assert manifest["languages"]["sw"]["max_length"] == 32 and manifest["languages"]["sw"]["dtype"] == "fp32"
    assert np.all([len(v["weights"]) == 64 for v in manifest["languages"].values()])


def test_the_shipped_probe_study_covers_the_22_languages_with_every_control(tatoeba_dir, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # a study's paths are read from the repository root
    config = load_study_config(root / "tools" / "studies" / "tatoeba-probe.yaml")
    assert config.probe and set(config.languages) == set(PROBE_LANGUAGES)
    assert set(config.low_resource) == set(RESOURCE_GROUPS["low-resource (bitext only)"])
    assert {m.name for m in config.methods} == {"none", "mse-sent", "ot", "mse-sent-shuffled", "ot-shuffled"}
    assert config.search.dtype == "fp32" and config.search.max_length == 128  # as the zero-shot runs are encoded
