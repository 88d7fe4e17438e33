"""The study runner: keyed artifacts, reuse, kill-and-resume, bad configs, and a tiny end-to-end study
(two tiny backbones x none/ot x one language, cross-fitted over two folds) with its report."""
from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from clir_ot.cli import main
from clir_ot.errors import ConfigError
from clir_ot.formats import Document, Hit, iter_run_by_query, write_corpus, write_qrels, write_run, write_topics
from clir_ot.io import cached_sha256, hash_model_folder
from clir_ot.models import CrossEncoderModel, tiny_random_model
from clir_ot.rerank.base import record_scoring_version, run_provenance
from clir_ot.study.artifacts import artifact_key
from clir_ot.study.config import load_study_config
from clir_ot.study.report import build_report, read_results_csv
from clir_ot.study.runner import plan_study, run_study

from child_processes import finish, start

WORDS = "the a cat dog house tree river city book water red green big small runs sees eats old new".split()
FOREIGN = {w: f"x{w[::-1]}" for w in WORDS}


def translate(text: str) -> str:
    return " ".join(FOREIGN[w] for w in text.split())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A miniature XQuAD baseline folder (en + el, 2 article folds), bitext and a tiny base model."""
    root = tmp_path_factory.mktemp("study")
    rng = random.Random(1)
    base = root / "baseline"
    collection = base / "collection"
    n = 16
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(n)]
    topics = {f"q{i:02d}": " ".join(paragraphs[i].split()[2:6]) for i in range(n)}
    write_topics(collection / "topics.xquad.en.tsv", topics)
    for lang, text in (("en", lambda t: t), ("el", translate)):
        write_corpus(collection / "corpus" / lang / "docs.jsonl",
                     [Document(f"{lang}-{i:03d}", text(p)) for i, p in enumerate(paragraphs)])
        write_qrels(collection / f"qrels.xquad.cross.{lang}.txt", {f"q{i:02d}": {f"{lang}-{i:03d}": 1} for i in range(n)})
        run = {q: [Hit(q, f"{lang}-{j:03d}", float(-((j - i) % n)), 0) for j in range(n)]
               for i, q in enumerate(topics)}
        write_run(base / f"run.xquad.e5-small.cross.en-{lang}.txt", run)
        mono = {q: [Hit(q, f"{lang}-{j:03d}", float(-((i - j) % n)), 0) for j in range(n)]  # other neighbours
                for i, q in enumerate(topics)}
        write_run(base / f"run.xquad.bm25.mono.{lang}-{lang}.txt", mono)
        if lang == "en":
            write_run(base / "run.xquad.bm25+e5-small.rrf.cross.en-en.txt", run)
    folds = [{"fold": k, "qids": [f"q{i:02d}" for i in range(k * 8, k * 8 + 8)],
              "paragraphs": list(range(k * 8, k * 8 + 8)),
              "docids": {lang: [f"{lang}-{i:03d}" for i in range(k * 8, k * 8 + 8)] for lang in ("en", "el")}}
             for k in range(2)]
    (collection / "folds.json").write_text(json.dumps({"k": 2, "rule": "test", "folds": folds}))
    sentences = sorted({" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(80)})
    (root / "el.tsv").write_text("".join(f"{s}\t{translate(s)}\n" for s in sentences))
    model, tokenizer = tiny_random_model("bert", paragraphs + [translate(p) for p in paragraphs] + sentences, seed=2)
    CrossEncoderModel(model, tokenizer).save_pretrained(root / "tiny")
    return root


def write_config(world: Path, name: str = "tiny", **changes) -> Path:
    config = {
        "name": name, "baseline": str(world / "baseline"), "first_stage": "e5-small", "depth": 5,
        "languages": ["el"], "reference_language": "en", "low_resource": ["el"],
        "bitext": {"files": {"el": str(world / "el.tsv")}}, "seeds": [1],
        "backbones": [{"name": "tiny-1l", "base": str(world / "tiny"), "layers": 1},
                      {"name": "tiny", "base": str(world / "tiny")}],
        "methods": ["none", "ot"],
        "teacher": {"max_steps": 2, "batch_size": 2, "negatives": 3, "max_length": 48, "save_every": 2,
                    "dtype": "fp32", "lr": 1e-3, "valid_negatives": 3},
        "distill": {"max_steps": 2, "batch_size": 8, "max_length": 48, "save_every": 2, "dtype": "fp32", "lr": 1e-3},
        "rerank": {"batch_size": 16, "max_length": 48, "dtype": "fp32"},
        "n_resamples": 500,
    }
    config.update(changes)
    path = world / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def finished(root: Path) -> dict[str, float]:
    return {str(p.parent.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("artifacts/*/*/artifact.json")}


@pytest.fixture(scope="module")
def tiny_study(world, tmp_path_factory) -> Path:
    """The tiny study run once without interruption (its folder)."""
    root = tmp_path_factory.mktemp("uninterrupted") / "tiny"
    run_study(load_study_config(write_config(world)), root)
    return root


def results(root: Path) -> dict[tuple[str, str, str, str, str, str], float]:
    return {(s.backbone, s.method, s.language, s.setting, s.metric, s.qid): s.value
            for s in read_results_csv(root / "results.csv")}


def test_bm25_qt_reranks_the_bm25_runs_with_the_dense_studys_models(world, tiny_study, tmp_path):
    """``reranked_run: bm25-qt`` with ``reuse:`` of the dense study: teachers and students are the dense
    study's (same keys), only the reranks are new, and they rerank the BM25 mono runs' heads."""
    config = load_study_config(write_config(world, "tiny-qt", reranked_run="bm25-qt", reuse=[str(tiny_study)]))
    root = tmp_path / "tiny-qt"
    plan = plan_study(config, root)
    assert sorted({s.kind for s in plan.pending()}) == ["rerank"]
    dense = plan_study(load_study_config(write_config(world)), tiny_study)
    for sid, step in plan.steps.items():
        assert (step.key == dense.steps[sid].key) == (step.kind != "rerank"), sid
    run_study(config, root)
    step = next(s for s in plan.steps.values() if s.kind == "rerank" and s.cell.language == "el"
                and s.cell.method.is_baseline and s.cell.backbone.name == "tiny")
    reranked = dict(iter_run_by_query(root / step.artifact.folder.relative_to(root) / "run.txt"))
    bm25 = dict(iter_run_by_query(world / "baseline" / "run.xquad.bm25.mono.el-el.txt"))
    assert all({h.docid for h in reranked[q][:5]} == {h.docid for h in bm25[q][:5]} for q in bm25)
    assert "BM25-QT" in (root / "report.md").read_text()


@pytest.mark.parametrize("changes, message", [
    ({"reranked_run": "bm25"}, "reranked_run must be one of dense, bm25-qt, got 'bm25'"),
    ({"reranked_run": "bm25-qt", "backbones": [{"name": "e5", "kind": "bi-encoder"}]},
     "reranked_run: bm25-qt is what a cross-encoder reranks; backbones e5 are bi-encoders"),
])
def test_bad_reranked_runs_are_config_errors(world, changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_study_config(write_config(world, "bad-qt", **changes))


def test_tiny_study_end_to_end_then_everything_is_reused(world, tiny_study, capsys):
    config = load_study_config(write_config(world))
    root = tiny_study
    plan = plan_study(config, root)
    assert not plan.pending()
    kinds = sorted(s.kind for s in plan.steps.values())
    assert kinds.count("teacher") == 4 and kinds.count("student") == 4 and kinds.count("backbone") == 1
    assert kinds.count("rerank") == 2 * (1 + 2)  # en (none) + el (none, ot) per backbone
    report = (root / "report.md").read_text()
    # the answer sentence is the one the report's statistic gives, recomputed here from results.csv
    expected = build_report(read_results_csv(root / "results.csv"), low_resource=["el"], backbones=["tiny-1l", "tiny"],
                            n_resamples=500)
    assert expected.sentence in report and "95% bootstrap CI" in expected.sentence
    verdict = re.search(r"which is (not )?distinguishable from zero\.", expected.sentence)
    assert verdict is not None and (verdict.group(1) is None) == expected.answer.distinguishable_from_zero
    assert expected.answer.distinguishable_from_zero == (expected.answer.low > 0 or expected.answer.high < 0)
    assert (root / "metric_by_language.png").stat().st_size > 0
    scores = read_results_csv(root / "results.csv")
    assert {(s.backbone, s.method) for s in scores if s.language == "el"} == {
        ("tiny-1l", "none"), ("tiny-1l", "ot"), ("tiny", "none"), ("tiny", "ot")}
    assert {s.qid for s in scores if s.language == "el" and s.metric == "P@5"} == {f"q{i:02d}" for i in range(16)}
    assert any(s.setting == "pool" and s.metric == "bias" for s in scores)
    manifest = json.loads(next(root.glob("artifacts/rerank/*/artifact.json")).read_text())
    assert {"key", "settings", "inputs", "code", "packages", "wall_s"} <= set(manifest)
    before = finished(root)
    run_study(config, root)
    assert finished(root) == before  # nothing rebuilt
    run_study(config, root, dry_run=True)
    out = capsys.readouterr().out
    assert "0 to build" in out and "cached" in out


def test_keys_change_with_inputs_and_only_downstream(world):
    key = artifact_key("rerank", {"depth": 10, "a": 1}, {"x": "1"})
    assert key == artifact_key("rerank", {"a": 1, "depth": 10}, {"x": "1"})  # order does not matter
    assert key != artifact_key("rerank", {"depth": 11, "a": 1}, {"x": "1"})
    assert key != artifact_key("rerank", {"depth": 10, "a": 1}, {"x": "2"})
    plan = plan_study(load_study_config(write_config(world)), world / "out")
    changed = plan_study(load_study_config(write_config(world, distill={**yaml.safe_load(
        (world / "tiny.yaml").read_text())["distill"], "lr": 5e-4})), world / "out")
    for sid, step in plan.steps.items():
        same = step.key == changed.steps[sid].key
        assert same == (step.kind in ("backbone", "teacher") or "/none/" in sid), sid
    # an input file changing changes its dependants' keys
    bitext = world / "el.tsv"
    original = bitext.read_text()
    try:
        bitext.write_text(original + "the cat\txeht xtac\n")
        edited = plan_study(load_study_config(write_config(world)), world / "out")
        assert all((edited.steps[s].key == plan.steps[s].key) == (plan.steps[s].kind != "student" and "/ot/" not in s)
                   for s in plan.steps)
    finally:
        bitext.write_text(original)
        write_config(world)


def test_killed_study_resumes_and_redoes_only_the_unfinished_step(world, tiny_study, tmp_path):
    config_path = write_config(world, name="killed")
    root = tmp_path / "killed"
    command = [sys.executable, "-m", "clir_ot", "study", "--config", str(config_path), "--output", str(root)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(finished(root)) < 3 and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the study should have died of the signal, not finished or failed"
    before = finished(root)
    assert 3 <= len(before) < 15, "the kill should land mid-study"
    plan = run_study(load_study_config(config_path), root)
    assert not plan.pending()
    after = finished(root)
    assert all(after[name] == stamp for name, stamp in before.items())  # finished steps untouched
    assert len(after) == 15  # 1 backbone + 4 teachers + 4 students + 6 reranked runs
    # the resumed study has the results of the uninterrupted one, query by query
    resumed, whole = results(root), results(tiny_study)
    assert resumed.keys() == whole.keys() and all(abs(resumed[k] - whole[k]) < 1e-9 for k in whole)


def test_a_config_with_invalid_utf8_names_its_line_and_column(world, tmp_path):
    from clir_ot.errors import InputFormatError

    path = tmp_path / "bad.yaml"
    path.write_bytes(write_config(world).read_bytes() + b"description: caf\xe9\n")
    lines = path.read_bytes().count(b"\n")
    with pytest.raises(InputFormatError, match=rf"bad.yaml:{lines}: invalid UTF-8 \(byte 0xe9 at column 17\)"):
        load_study_config(path)


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "unknown key"),
    ({"languages": []}, "languages is empty"),
    ({"languages": ["xx"]}, "unknown language"),
    ({"methods": ["none", "kl"]}, "unknown method"),
    ({"methods": ["none", "ot-unbalanced"]}, "needs `method:`"),
    ({"methods": ["none", {"name": "ot-x", "method": "kl"}]}, "unknown method 'kl' of 'ot-x'"),
    ({"methods": ["none", {"name": "none2", "method": "none"}]}, "has no variants"),
    ({"methods": ["none", {"name": "ot-x", "method": "ot", "settings": {"marginal_penalty": "a"}}]}, "marginal_penalty"),
    ({"methods": ["ot"]}, "must include 'none'"),
    ({"languages": ["el", "th"], "low_resource": ["el"]}, "no bitext file"),
    ({"backbones": [{"name": "big", "base": "nobody/no-such-model"}]}, "unknown backbone"),
    ({"backbones": [{"name": "a", "base": "./missing-folder"}]}, "not a folder"),
    ({"distill": {"epsilonn": 1}}, "unknown setting"),
    ({"backbones": [{"name": "a", "teachers": "/no/such/dir"}]}, "teachers folder"),
    ({"seeds": [42, 42]}, "seeds must differ; 42 given more than once"),
    ({"depth": "ten"}, "depth must be a positive integer, got 'ten'"),
    ({"depth": 2.7}, "depth must be a positive integer, got 2.7"),
    ({"n_resamples": "many"}, "n_resamples must be a positive integer"),
    ({"pool": "no"}, "pool must be true or false, got 'no'"),
])
def test_bad_configs_fail_before_any_work(world, tmp_path, change, message, monkeypatch, caplog, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write_config(world, name="bad", **change)
    with pytest.raises(ConfigError, match=message):
        load_study_config(path)
    # the verb: one clear line, a non-zero status, and nothing written where the study would go
    output = tmp_path / "bad"
    caplog.clear()
    assert main(["study", "--config", str(path), "--output", str(output)]) != 0
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and re.search(message, errors[0].getMessage()) and "\n" not in errors[0].getMessage()
    assert "Traceback" not in capsys.readouterr().err
    assert not output.exists()


def test_named_variant_is_its_objective_with_its_settings(world, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = load_study_config(write_config(world, name="variants", methods=[
        "none", "ot", {"name": "ot-unbalanced", "method": "ot", "settings": {"marginal_penalty": 1.0}},
        {"name": "control", "method": "ot-shuffled"}]))
    by_name = {m.name: m for m in config.methods}
    assert by_name["ot-unbalanced"].objective == "ot" and not by_name["ot-unbalanced"].shuffled
    assert by_name["control"].objective == "ot" and by_name["control"].shuffled
    _, plain = config.distill_settings(by_name["ot"], 42)
    _, variant = config.distill_settings(by_name["ot-unbalanced"], 42)
    _, control = config.distill_settings(by_name["control"], 42)
    assert plain.marginal_penalty is None and variant.marginal_penalty == 1.0 and control.shuffle_bitext
    plan = plan_study(config, tmp_path / "variants")
    students = {sid: step.key for sid, step in plan.steps.items() if step.kind == "student"}
    plain_keys = {k for sid, k in students.items() if "/ot/" in sid}
    variant_keys = {k for sid, k in students.items() if "/ot-unbalanced/" in sid}
    assert plain_keys and variant_keys and not plain_keys & variant_keys  # different settings, different artifacts



def test_students_distil_from_the_teacher_that_reranking_uses(world, tiny_study):
    """The `none` rows rerank with each teacher's selected model (best/, chosen by validation); its
    students must start from that same model, not from the teacher's final weights."""
    import hashlib

    from clir_ot.training import selected_model

    plan = plan_study(load_study_config(write_config(world)), tiny_study)
    students = [step for step in plan.steps.values() if step.kind == "student"]
    assert students
    for step in students:
        teacher = plan.steps[step.sources[0]]
        chosen = selected_model(teacher.model)
        assert chosen == teacher.model / "best"  # the tiny teachers validate, so best/ exists
        manifest = json.loads((step.model / "training.json").read_text())
        assert Path(manifest["teacher"]["location"]).resolve() == chosen.resolve()
        assert manifest["teacher"]["sha256"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                                 for p in sorted(chosen.glob("*.safetensors"))}
        assert step.settings["teacher_model"] == "selected"


def test_students_trained_on_logits_carry_the_scoring_version(world, tmp_path, monkeypatch):
    """score-kd (and any rank/score term) regresses the head's logits, so its students are rebuilt when
    scoring changes; alignment-only students (ot, mse-*) keep their keys."""
    from clir_ot.rerank.base import SCORING_VERSION

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = load_study_config(write_config(world, name="scoring", methods=["none", "ot", "score-kd"]))
    plan = plan_study(config, tmp_path / "scoring")
    students = {sid: step for sid, step in plan.steps.items() if step.kind == "student"}
    assert all(step.settings.get("scoring") == SCORING_VERSION for sid, step in students.items() if "/score-kd/" in sid)
    assert all("scoring" not in step.settings for sid, step in students.items() if "/ot/" in sid)


def test_parallel_jobs_build_the_same_study(world, tmp_path):
    config = load_study_config(write_config(world, name="parallel"))
    plan = run_study(config, tmp_path / "parallel", jobs=2)
    assert not plan.pending()
    sequential = run_study(config, tmp_path / "sequential")
    for sid, step in plan.steps.items():
        assert step.key == sequential.steps[sid].key
    a = {(s.backbone, s.method, s.language, s.metric, s.qid): s.value for s in read_results_csv(tmp_path / "parallel" / "results.csv")}
    b = {(s.backbone, s.method, s.language, s.metric, s.qid): s.value for s in read_results_csv(tmp_path / "sequential" / "results.csv")}
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a)


def test_one_backbone_study_reports_every_method_beside_none(world, tmp_path):
    config = load_study_config(write_config(
        world, name="methods", backbones=[{"name": "tiny", "base": str(world / "tiny")}],
        methods=["none", "ot", "mse-sent", {"name": "ot-shuffled", "languages": ["el"]}]))
    plan = run_study(config, tmp_path / "methods")
    assert not plan.pending()
    report = (tmp_path / "methods" / "report.md").read_text()
    assert "Methods side by side" in report and "mse-sent" in report and "ot-shuffled" in report
    assert "Multilingual pool" in report and "## Cost" in report
    methods = {s.method for s in read_results_csv(tmp_path / "methods" / "results.csv")}
    assert methods == {"none", "ot", "mse-sent", "ot-shuffled"}


def test_yaml_number_read_as_text_is_named(world, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write_config(world, name="texty")
    path.write_text(path.read_text().replace("lr: 0.001", "lr: 1e-3", 1))
    with pytest.raises(ConfigError, match=r"setting lr must be a number, got '1e-3' \(str\) \(YAML reads"):
        load_study_config(path)


def test_teacher_data_msmarco_is_checked_before_work_and_trains_on_the_files(world, tmp_path, monkeypatch):
    """The paper configuration: MS MARCO triples train the teacher, XQuAD English only validates it."""
    from clir_ot.study.runner import _teacher_data_spec
    from clir_ot.training import read_groups

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = write_config(world, name="msmarco-missing", teacher_data={"source": "msmarco",
                                                                          "triples": str(tmp_path / "none.tsv")})
    with pytest.raises(ConfigError, match=r"teacher_data: triples .*none.tsv does not exist: download MS MARCO"):
        load_study_config(missing)
    with pytest.raises(ConfigError, match="source msmarco needs triples"):
        load_study_config(write_config(world, name="msmarco-empty", teacher_data={"source": "msmarco"}))
    with pytest.raises(ConfigError, match="set source: msmarco"):
        load_study_config(write_config(world, name="msmarco-xquad", teacher_data={"triples": "x.tsv"}))
    with pytest.raises(ConfigError, match="unknown key"):
        load_study_config(write_config(world, name="msmarco-typo", teacher_data={"sorce": "msmarco"}))

    triples = tmp_path / "triples.train.small.tsv"
    triples.write_text("".join(f"query {i}\tpassage {i} answers it\tpassage {i + 1} does not\n" for i in range(40)))
    config = load_study_config(write_config(world, name="msmarco", teacher_data={"source": "msmarco",
                                                                                 "triples": str(triples)}))
    default = load_study_config(write_config(world, name="xquad-default"))
    assert default.teacher_data.key_settings() == {}
    plan = plan_study(config, tmp_path / "msmarco")
    default_plan = plan_study(default, tmp_path / "default")
    teachers = sorted(sid for sid, step in plan.steps.items() if step.kind == "teacher")
    assert teachers and all(plan.steps[t].key != default_plan.steps[t].key for t in teachers)
    spec = _teacher_data_spec(plan, plan.steps[teachers[0]])
    assert spec.triples == str(triples) and spec.stream and spec.topics is None
    valid = read_groups(spec.valid)  # XQuAD English validation groups of the fold's training side
    fold = plan.steps[teachers[0]].cell.fold
    test_qids = set(json.loads((world / "baseline" / "collection" / "folds.json").read_text())["folds"][fold]["qids"])
    assert valid and not {g.qid for g in valid} & test_qids
    assert all(1 <= len(g.negatives) <= 9 for g in valid)  # the dense top 10, less the positive


# --------------------------------------------------------------------------------------------------
# past one machine: two studies on one folder, submitit executors, the executor settings


def built_by(root: Path) -> dict[str, int]:
    """artifact folder -> pid of the process that built it."""
    return {str(p.parent.relative_to(root)): json.loads(p.read_text())["built_by"]["pid"]
            for p in root.glob("artifacts/*/*/artifact.json")}


def costs_masked(report: str) -> str:
    """``report.md`` with the wall times and rates of its cost table blanked (they differ between runs)."""
    lines, in_cost = [], False
    for line in report.splitlines():
        if line.startswith("## "):
            in_cost = line == "## Cost"
        if in_cost and line.startswith("| ") and not line.startswith("| step "):
            line = line.split(" | ")[0] + " | …"
        lines.append(line)
    return "\n".join(lines)


def test_two_studies_on_one_folder_build_every_artifact_once(world, tiny_study, tmp_path):
    config_path = write_config(world)
    root = tmp_path / "shared"
    command = [sys.executable, "-m", "clir_ot", "study", "--config", str(config_path), "--output", str(root)]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [start(command, log) for log in logs]
    for process, log in zip(processes, logs):
        finish(process, log, timeout=900)
    texts = [log.read_text(errors="replace") for log in logs]
    plan = plan_study(load_study_config(config_path), root)
    assert not plan.pending()
    built = [sid for text in texts for sid in re.findall(r"step (\S+): building ", text)]
    assert sorted(built) == sorted(s.id for s in plan.steps.values() if s.artifact is not None)  # each once
    assert set(built_by(root).values()) <= {p.pid for p in processes}
    assert len(built_by(root)) == 15
    # they ran at the same time: one found a step the other was building, and left it to it
    assert any("being built by pid" in text or "built by another worker" in text for text in texts)
    assert not list(root.glob("artifacts/*/*.lock")) and not (root / "report.lock").exists()
    assert not any("taking over a lock" in text for text in texts)
    # the report is a single process's: the uninterrupted study's, query by query and line by line
    shared, whole = results(root), results(tiny_study)
    assert shared.keys() == whole.keys() and all(abs(shared[k] - whole[k]) < 1e-9 for k in whole)
    report = (root / "report.md").read_text()
    assert costs_masked(report) == costs_masked((tiny_study / "report.md").read_text())
    from clir_ot.study.evaluate import write_study_report

    write_study_report(plan)  # one process writing the report of the same artifacts writes the same bytes
    assert (root / "report.md").read_text() == report


def test_submitit_local_jobs_build_the_same_artifacts(world, tiny_study, tmp_path):
    """Each step is a submitit job (its LocalExecutor: a process per job, as on Slurm): same keys,
    same folders and the same results as the study built in one process."""
    one = [{"name": "tiny", "base": str(world / "tiny")}]
    config = load_study_config(write_config(world, name="tiny-submitit", backbones=one, executor={
        "kind": "submitit-local", "max_jobs": 2, "poll_s": 0.2, "timeout_min": 30, "cpus_per_task": 1,
        "partition": "unused-here"}))
    root = tmp_path / "submitit"
    plan = run_study(config, root)
    assert not plan.pending()
    folders = {p.parent.relative_to(root) for p in root.glob("artifacts/*/*/artifact.json")}
    reference = {p.parent.relative_to(tiny_study) for p in tiny_study.glob("artifacts/*/*/artifact.json")}
    assert len(folders) == 7 and folders <= reference  # 2 teachers, 2 students, 3 reranked runs: same keys
    pids = built_by(root)
    assert os.getpid() not in pids.values() and len(set(pids.values())) == len(pids)  # one job (process) each
    assert len(list((root / "submitit").glob("*_result.pkl"))) == 7
    ours, whole = results(root), results(tiny_study)
    assert ours and all(abs(value - whole[key]) < 1e-9 for key, value in ours.items())
    assert {key[0] for key in ours} == {"tiny"}


def test_submitit_debug_runs_the_study_in_process_and_a_second_run_reuses_it(world, tmp_path):
    one = [{"name": "tiny", "base": str(world / "tiny")}]
    path = write_config(world, name="tiny-debug", backbones=one, methods=["none"], languages=["el"],
                        executor={"kind": "submitit-debug", "poll_s": 0.1})
    root = tmp_path / "debug"
    assert main(["study", "--config", str(path), "--output", str(root)]) == 0
    pids = built_by(root)
    assert len(pids) == 4 and set(pids.values()) == {os.getpid()}  # 2 teachers, 2 reranked runs
    before = finished(root)
    assert main(["study", "--config", str(path), "--output", str(root), "--executor", "local"]) == 0
    assert finished(root) == before


@pytest.mark.parametrize("change, flags, message", [
    ({"executor": {"kind": "slurm", "partitio": "gpu"}}, [], r"executor: unknown key\(s\) partitio; known: kind"),
    ({"executor": {"kind": "pbs"}}, [], "kind must be one of local, slurm, submitit-local, submitit-debug"),
    ({"executor": {"partition": "gpu"}}, [], "partition: only the submitit executors"),
    ({"executor": {"kind": "slurm", "max_jobs": 0}}, [], "max_jobs must be a positive integer"),
    ({"executor": {"kind": "slurm", "poll_s": "5s"}}, [], "poll_s must be a number of seconds above 0"),
    ({"executor": {"kind": "slurm", "poll_s": float("nan")}}, [], "poll_s must be a number of seconds above 0"),
    ({"executor": {"kind": "slurm", "poll_s": float("inf")}}, [], "at most 3600, got inf"),
    ({}, ["--slurm-partition", "gpu"], "--slurm-partition: partition: only the submitit executors"),
    ({}, ["--executor", "submitit-local", "--jobs", "2"], "--jobs 2 runs steps on this machine"),
])
def test_bad_executor_settings_fail_before_any_work(world, tmp_path, change, flags, message, caplog):
    path = write_config(world, name="bad-executor", **change)
    output = tmp_path / "bad"
    caplog.clear()
    assert main(["study", "--config", str(path), "--output", str(output), *flags]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    assert not output.exists()


def test_slurm_without_submitit_is_one_clear_error(world, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "submitit", None)  # what `import submitit` meets when it is not installed
    path = write_config(world, name="no-submitit")
    caplog.clear()
    assert main(["study", "--config", str(path), "--output", str(tmp_path / "x"), "--executor", "slurm"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["executor slurm needs submitit: pip install 'clir_ot[slurm]' (or pip install submitit)"]
    assert not (tmp_path / "x").exists()


def test_slurm_settings_reach_the_sbatch_script(tmp_path, monkeypatch):
    """The config's resources become #SBATCH lines of the job script submitit writes (no cluster needed:
    submitit only looks for an ``srun`` on PATH, which is never run here)."""
    from clir_ot.study.config import ExecutorSettings
    from clir_ot.study.schedule import Submitit

    settings = ExecutorSettings(kind="slurm", partition="gpu", account="clir", qos="high", timeout_min=90,
                                cpus_per_task=8, gpus_per_node=2, mem_gb=64, additional={"constraint": "a100"})
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(ConfigError, match='executor slurm: Could not detect "srun".*submitit-local tries'):
        Submitit(settings, tmp_path / "logs", "tiny")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    executor = Submitit(settings, tmp_path / "logs", "tiny")
    executor.executor.update_parameters(name="clir-ot.tiny.teacher.tiny.fold0")
    script = executor.executor._executor._make_submission_file_text("python -m x", "0")
    for line in ("--partition=gpu", "--account=clir", "--qos=high", "--time=90", "--cpus-per-task=8",
                 "--gpus-per-node=2", "--mem=64GB", "--constraint=a100", "--job-name=clir-ot.tiny.teacher.tiny.fold0"):
        assert f"#SBATCH {line}\n" in script, line
    # without timeout_min a job gets a day, not submitit's 5 minutes
    untimed = Submitit(ExecutorSettings(kind="slurm", partition="gpu"), tmp_path / "logs", "tiny")
    assert "#SBATCH --time=1440\n" in untimed.executor._executor._make_submission_file_text("python -m x", "0")


def test_dry_run_names_the_worker_building_a_step(world, tmp_path, capsys):
    from clir_ot.study.locks import ArtifactLock, lock_path

    config = load_study_config(write_config(world))
    plan = plan_study(config, tmp_path / "planned")
    step = plan.steps["teacher/tiny/fold0"]
    with ArtifactLock(lock_path(step.artifact.folder)):
        run_study(config, tmp_path / "planned", dry_run=True)
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("teacher/tiny/fold0 "))
    assert f"building (pid {os.getpid()}@" in line
    run_study(config, tmp_path / "planned", dry_run=True)
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("teacher/tiny/fold0 "))
    assert "to build" in line


def test_a_study_killed_inside_a_step_leaves_a_lock_that_the_next_takes_over(world, tiny_study, tmp_path, caplog):
    config_path = write_config(world)
    root = tmp_path / "orphan"
    command = [sys.executable, "-m", "clir_ot", "study", "--config", str(config_path), "--output", str(root)]
    log = tmp_path / "killed.log"
    process = start(command, log)
    deadline = time.time() + 300
    locks: list[Path] = []
    def held_by_the_study(path: Path) -> bool:  # the file exists before its owner record is written
        try:
            return json.loads(path.read_text()).get("pid") == process.pid
        except (OSError, ValueError):
            return False

    while time.time() < deadline and not locks and process.poll() is None:
        # a teacher trains for a second or so
        locks = [p for p in root.glob("artifacts/teacher/tiny-1l.fold0-*.lock") if held_by_the_study(p)]
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, log.read_text(errors="replace")[-3000:]
    assert locks and locks[0].exists(), "the study should have died holding the teacher's lock"
    assert json.loads(locks[0].read_text())["pid"] == process.pid
    before = finished(root)
    with caplog.at_level(logging.WARNING, logger="clir_ot.study.locks"):
        plan = run_study(load_study_config(config_path), root)
    assert any(f"taking over a lock left by pid {process.pid} " in r.getMessage() for r in caplog.records)
    assert not plan.pending() and not list(root.glob("artifacts/*/*.lock"))
    after = finished(root)
    assert all(after[name] == stamp for name, stamp in before.items()) and len(after) == 15
    resumed, whole = results(root), results(tiny_study)
    assert resumed.keys() == whole.keys() and all(abs(resumed[k] - whole[k]) < 1e-9 for k in whole)


# --------------------------------------------------------------------------------------------------
# issue 16: the in-domain query bitext, controls, seeds and the cost stated up front


def query_bitext_config(world: Path, name: str, **changes) -> Path:
    """One backbone, ot and its two controls, two seeds, students on the XQuAD query bitext with the rank term."""
    distill = {"max_steps": 2, "batch_size": 4, "max_length": 48, "save_every": 2, "dtype": "fp32", "lr": 1e-3,
               "mode": "query", "rank_weight": 0.5, "negatives": 3, "valid_fraction": 0.3}  # 2 of 8 paragraphs held out
    settings = {"backbones": [{"name": "tiny", "base": str(world / "tiny")}],
                "bitext": {"xquad": {"negatives": 1}}, "controls": ["shuffled", "no-bitext"], "seeds": [1, 2],
                "distill": distill, **changes}
    return write_config(world, name=name, **settings)


@pytest.fixture(scope="module")
def controlled_study(world, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("controlled") / "controlled"
    run_study(load_study_config(query_bitext_config(world, "controlled")), root)
    return root


def test_controls_expand_every_objective_and_add_the_rank_term_alone(world):
    methods = ["none", "ot", {"name": "ot-unbalanced", "method": "ot", "settings": {"marginal_penalty": 1.0}},
               {"name": "mse-sent", "languages": ["el"]}]
    config = load_study_config(query_bitext_config(world, "expanded", methods=methods))
    by_name = {m.name: m for m in config.methods}
    assert list(by_name) == ["none", "ot", "ot-unbalanced", "mse-sent", "ot-shuffled", "ot-unbalanced-shuffled",
                             "mse-sent-shuffled", "no-bitext"]
    variant = by_name["ot-unbalanced-shuffled"]
    assert variant.shuffled and variant.objective == "ot" and variant.settings == {"marginal_penalty": 1.0}
    assert by_name["mse-sent-shuffled"].languages == ("el",) and by_name["mse-sent-shuffled"].objective == "mse-sent"
    _, distill = config.distill_settings(variant, 1)
    assert distill.shuffle_bitext and distill.marginal_penalty == 1.0
    _, rank_only = config.distill_settings(by_name["no-bitext"], 1)
    assert rank_only.rank_only and rank_only.rank_weight == 0.5 and not rank_only.shuffle_bitext
    assert config.controls_of(by_name["ot-unbalanced"]) == {"shuffled": "ot-unbalanced-shuffled",
                                                            "no-bitext": "no-bitext"}
    assert config.controls_of(by_name["no-bitext"]) == {} and config.controls_of(by_name["none"]) == {}


@pytest.mark.parametrize("changes,key,message", [
    ({"controls": ["shuffled", "noise"]}, "controls", "unknown control"),
    ({"distill": {"max_steps": 2, "mode": "query"}}, "controls", r"no-bitext .*rank_weight > 0"),
    ({"distill": {"max_steps": 2, "rank_weight": 0.5}}, "bitext.xquad", r"'ot' \(ot, passage mode\).*mode: query"),
    ({"bitext": {"xquad": {"negatives": -1}}}, "bitext.xquad.negatives", "integer >= 0"),
    ({"bitext": {"xquad": {"negative": 1}}}, "bitext.xquad", "unknown key"),
    ({"backbones": [{"name": "dense", "kind": "bi-encoder"}], "controls": ["shuffled"],
      "distill": {"max_steps": 2, "mode": "passage"}}, "bitext.xquad", "cross-encoder students"),
])
def test_query_bitext_and_controls_are_checked_at_load(world, changes, key, message):
    path = query_bitext_config(world, "bad-controls", **changes)
    with pytest.raises(ConfigError, match=message) as caught:
        load_study_config(path)
    assert str(path) in str(caught.value) and key in str(caught.value)


def test_query_bitext_is_in_the_students_key_only(world, tmp_path):
    plans = {n: plan_study(load_study_config(query_bitext_config(world, f"neg{n}", bitext={"xquad": {"negatives": n}})),
                           tmp_path / f"neg{n}") for n in (1, 2)}
    one, two = plans[1].steps, plans[2].steps
    student = "student/tiny/ot/el/fold0/seed1"
    assert one[student].inputs["xquad_bitext"]["negatives"] == 1 and one[student].key != two[student].key
    assert one["teacher/tiny/fold0"].key == two["teacher/tiny/fold0"].key
    assert one["rerank/tiny/none/el"].key == two["rerank/tiny/none/el"].key
    # the work estimate counts the fold's training-side questions with their negatives: 8 x (1 + 1)
    assert one[student].work.train_steps == 2  # max_steps


def test_controlled_study_on_query_bitext(world, controlled_study):
    root = controlled_study
    config = load_study_config(query_bitext_config(world, "controlled"))
    plan = plan_study(config, root)
    assert not plan.pending()
    collection = world / "baseline" / "collection"
    folds = json.loads((collection / "folds.json").read_text())["folds"]
    from clir_ot.distill import split_bitext, xquad_query_bitext
    from clir_ot.distill.trainer import bitext_fingerprint
    for fold in (0, 1):
        for seed in (1, 2):
            manifest = json.loads((plan.steps[f"student/tiny/ot/el/fold{fold}/seed{seed}"].model / "training.json")
                                  .read_text())
            bitext = manifest["bitext"]
            # each fold's student read the questions of the other fold only, each with its paragraph and a negative
            pairs = xquad_query_bitext(collection / "topics.xquad.en.tsv", collection / "qrels.xquad.cross.en.txt",
                                       collection / "corpus" / "en", collection / "corpus" / "el",
                                       collection / "folds.json", fold, run=world / "baseline" / "run.xquad.e5-small.cross.en-el.txt",
                                       negatives=1)
            assert {p.qid for p in pairs} == set(folds[1 - fold]["qids"])
            train, valid = split_bitext(pairs, 0.3, seed)
            assert bitext["train_fingerprint"] == bitext_fingerprint(train)
            assert bitext["pairs_with_queries"] == bitext["train_pairs"] + bitext["valid_pairs"] == len(pairs) == 16
    # the no-bitext control: the same steps as ot, the rank term alone, no selection by a bitext loss
    ot_student = plan.steps["student/tiny/ot/el/fold0/seed1"].model
    control = plan.steps["student/tiny/no-bitext/el/fold0/seed1"].model
    read_log = lambda folder: [json.loads(l) for l in (folder / "log.jsonl").read_text().splitlines()]
    control_terms = [set(r["terms"]) for r in read_log(control) if "terms" in r]
    assert control_terms and all(t == {"rank", "rank_weighted", "total"} for t in control_terms)
    assert any("distill" in r.get("terms", {}) for r in read_log(ot_student))
    assert json.loads((control / "training.json").read_text())["steps"] == \
        json.loads((ot_student / "training.json").read_text())["steps"] == 2
    assert not (control / "best").exists()
    report = (root / "report.md").read_text()
    assert "## Does a gain count as alignment?" in report and "## Seed spread" in report
    # the control rule's row is the verdict recomputed from results.csv
    from clir_ot.study.report import ScoreKey, alignment_verdicts
    grouped: dict = {}
    for s in read_results_csv(root / "results.csv"):
        grouped.setdefault(ScoreKey(s.backbone, s.method, s.language, s.setting, s.metric), {})[s.qid] = s.value
    verdict, = alignment_verdicts(grouped, {"ot": config.controls_of(config.methods[1])}, n_resamples=config.n_resamples)
    row = next(l for l in report.splitlines() if l.startswith("| tiny | ot | el |"))
    assert row.endswith(f"| {verdict.reading()} |") and not verdict.alignment


def cost_rows(out: str) -> dict[tuple[str, str], str]:
    return {tuple(l.split()[:2]): l for l in out.splitlines() if l.startswith("  ") and not l.startswith("  kind")}


def test_dry_run_states_the_cost_up_front(world, controlled_study, tmp_path, capsys):
    from clir_ot.study.runner import estimate_costs

    # a fresh folder: every kind to build, priced by the documented defaults
    config = load_study_config(query_bitext_config(world, "controlled"))
    run_study(config, tmp_path / "fresh", dry_run=True)
    out = capsys.readouterr().out
    assert "ESTIMATE" in out and not (tmp_path / "fresh").exists()
    rows = cost_rows(out)
    assert rows[("teacher", "-")].split()[2] == "2" and "(default)" in rows[("teacher", "-")]
    assert rows[("student", "distill+rank")].split()[2] == "8"  # ot and ot-shuffled x 2 folds x 2 seeds
    assert rows[("student", "rank-only")].split()[2] == "4"     # the no-bitext control x 2 folds x 2 seeds
    assert rows[("rerank", "-")].split()[2] == "8"              # none (en, el) + 3 methods x 2 seeds
    assert "total" in out.split("ESTIMATE")[1]
    # the built study with a third seed: only its students and runs, priced by what the built ones measured
    config3 = load_study_config(query_bitext_config(world, "controlled", seeds=[1, 2, 3]))
    run_study(config3, controlled_study, dry_run=True)
    rows = cost_rows(capsys.readouterr().out)
    assert ("teacher", "-") not in rows
    assert rows[("student", "distill+rank")].split()[2] == "4" and "measured, mean of 8 artifact.json" in rows[("student", "distill+rank")]
    assert rows[("student", "rank-only")].split()[2] == "2" and "measured, mean of 4 artifact.json" in rows[("student", "rank-only")]
    records = [json.loads(p.read_text()) for p in controlled_study.glob("artifacts/student/*/artifact.json")]
    per_step = [r["train_s"] / r["steps"] for r in records if r["settings"]["distill"]["distill_weight"] == 0]
    line = next(l for l in estimate_costs(plan_study(config3, controlled_study)) if l.profile == "rank-only")
    assert line.rate.seconds == pytest.approx(sum(per_step) / len(per_step))
    assert line.seconds == pytest.approx(line.units * line.rate.seconds) and line.units == 2 * 2  # 2 steps each


def test_report_only_rewrites_the_same_report_under_the_report_lock(world, tiny_study):
    """`--report-only` builds nothing and writes what a study writes, through the same lock (the lock
    file is gone again once it is released)."""
    from clir_ot.study.runner import REPORT_LOCK

    before = (tiny_study / "report.md").read_text()
    built = sorted(p.name for p in (tiny_study / "artifacts").rglob("artifact.json"))
    assert main(["study", "--config", str(write_config(world)), "--output", str(tiny_study), "--report-only"]) == 0
    assert costs_masked((tiny_study / "report.md").read_text()) == costs_masked(before)
    assert sorted(p.name for p in (tiny_study / "artifacts").rglob("artifact.json")) == built
    assert not (tiny_study / REPORT_LOCK).exists()


def test_the_shipped_bm25_qt_study_is_the_offline_grid_but_for_what_it_reranks():
    """tools/studies/xquad-scaling-offline-bm25qt.yaml reuses the offline study's teachers and students,
    so every setting that keys them must be the offline study's (compared as data: loading the configs
    would need the teachers folder of `make teacher`)."""
    studies = Path(__file__).resolve().parent.parent / "tools" / "studies"
    dense = yaml.safe_load((studies / "xquad-scaling-offline.yaml").read_text())
    qt = yaml.safe_load((studies / "xquad-scaling-offline-bm25qt.yaml").read_text())
    assert qt["reranked_run"] == "bm25-qt" and "reranked_run" not in dense
    assert qt["backbones"] == dense["backbones"][-1:]  # the largest backbone
    assert "runs/xquad-scaling-offline" in qt["reuse"]  # the dense study's folder
    differ = {k for k in set(dense) | set(qt) if dense.get(k) != qt.get(k)}
    assert differ == {"name", "description", "reranked_run", "backbones", "reuse"}


def test_passage_windows_key_reranks_only_when_on(world, tmp_path):
    """``rerank: {windows: N}`` (MaxP) is part of a rerank step's key when on; ``windows: 1`` (the
    default, truncation) leaves every key as it was before windows existed."""
    base = {"batch_size": 16, "max_length": 48, "dtype": "fp32"}

    def rerank_keys(**rerank):
        plan = plan_study(load_study_config(write_config(world, "win", rerank={**base, **rerank})), tmp_path / "w")
        return {sid: s.key for sid, s in plan.steps.items() if s.kind == "rerank"}, plan

    default, plan = rerank_keys()
    assert rerank_keys(windows=1, window_overlap=8)[0] == default
    assert "windows" not in next(s for s in plan.steps.values() if s.kind == "rerank").settings
    on, _ = rerank_keys(windows=3)
    assert set(on) == set(default) and all(on[sid] != default[sid] for sid in on)
    with pytest.raises(ConfigError, match=r"rerank\.window_overlap must be a non-negative integer, got -1"):
        load_study_config(write_config(world, "win", rerank={**base, "windows": 3, "window_overlap": -1}))


def test_the_cost_estimate_prices_a_windowed_pair_above_a_truncated_one(world, tmp_path):
    """--dry-run's reranks with passage windows are their own cost profile (a pair is scored in up to
    WINDOWS_PER_PAIR windows on average), priced above the truncating reranks of the same pairs."""
    from clir_ot.study.runner import WINDOWS_PER_PAIR, estimate_costs

    def rerank_line(**rerank):
        config = load_study_config(write_config(world, "cost", rerank={"batch_size": 16, "max_length": 48, **rerank}))
        return next(l for l in estimate_costs(plan_study(config, tmp_path / "c")) if l.kind == "rerank")

    plain, windowed = rerank_line(), rerank_line(windows=3)
    assert (plain.profile, windowed.profile) == ("", "windows")
    assert windowed.units == plain.units > 0
    assert windowed.seconds == pytest.approx(plain.seconds * WINDOWS_PER_PAIR)


@pytest.fixture(scope="module")
def teachers_folder(world, tmp_path_factory) -> Path:
    """A ``clir-ot xquad-teacher`` output: one (untrained, tiny) teacher per fold and a cross-fitted
    run of el whose scores say where they came from (every hit scored 7)."""
    root = tmp_path_factory.mktemp("teachers")
    for fold in (0, 1):
        CrossEncoderModel.from_pretrained(str(world / "tiny")).save_pretrained(root / f"teacher.e5-small.en.fold{fold}")
    dense = dict(iter_run_by_query(world / "baseline" / "run.xquad.e5-small.cross.en-el.txt"))
    for lang, hits in (("el", dense),
                       ("en", dict(iter_run_by_query(world / "baseline" / "run.xquad.e5-small.cross.en-en.txt")))):
        path = root / f"run.xquad.e5-small+teacher.cross.en-{lang}.txt"
        write_run(path, {q: [Hit(q, h.docid, 7.0 - 1e-3 * i, i + 1) for i, h in enumerate(hs)] for q, hs in hits.items()})
        first = world / "baseline" / f"run.xquad.e5-small.cross.en-{lang}.txt"
        record_scoring_version(path, run_provenance(
            models=[hash_model_folder(root / f"teacher.e5-small.en.fold{k}") for k in (0, 1)],
            first_stage=cached_sha256(first), max_length=48, depth=5, batch_size=16, path="torch/fp32"))
    return root


@pytest.mark.parametrize("windows, max_length, batch_size, imported",
                         [(1, 48, 16, True), (3, 48, 16, False), (1, 40, 16, False), (1, 48, 8, False)])
def test_the_baseline_rerank_reuses_the_teacher_run_only_when_it_reads_what_the_students_read(
        world, teachers_folder, tmp_path, windows, max_length, batch_size, imported, caplog):
    """``none`` copies `clir-ot xquad-teacher`'s run when it was made as the study would make it (what
    the run records: its teachers, its first stage, 48 tokens, depth 5, batch 16, torch/fp32); with
    passage windows (which that command does not use), another max_length or batch size the study
    reranks the baseline itself and says why."""
    config = load_study_config(write_config(
        world, f"imp{windows}.{max_length}.{batch_size}",
        backbones=[{"name": "tiny", "base": str(world / "tiny"), "teachers": str(teachers_folder)}],
        methods=["none"], rerank={"batch_size": batch_size, "max_length": max_length, "dtype": "fp32",
                                  "windows": windows}))
    caplog.set_level("INFO", logger="clir_ot.study.runner")
    run_study(config, tmp_path / "imp")
    step = next(s for s in plan_study(config, tmp_path / "imp").steps.values()
                if s.kind == "rerank" and s.cell.language == "el")
    record = json.loads((step.artifact.folder / "artifact.json").read_text())
    assert ("imported_from" in record) == imported
    scores = {h.score for hits in dict(iter_run_by_query(step.run)).values() for h in hits[:5]}
    assert (max(scores) == pytest.approx(7.0)) == imported
    if not imported and windows == 1:
        changed = "max_length: 48 -> 40" if max_length != 48 else "batch_size: 16 -> 8"
        assert any("not reused" in r.getMessage() and changed in r.getMessage() for r in caplog.records)
