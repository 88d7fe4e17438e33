"""Distillation training (clir-ot distill): the student learns from bitext; every method and mode runs;
settings are checked; the shuffled control, early stopping and the bi-encoder path work. Tiny models."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from clir_ot.cli import main
from clir_ot.distill import BitextPair, write_bitext
from clir_ot.distill.pipeline import distill_student
from clir_ot.distill.trainer import DistillationConfig, split_settings
from clir_ot.errors import ConfigError
from clir_ot.formats import Document, Hit, write_corpus, write_qrels, write_run, write_topics
from clir_ot.models import BiEncoderModel, CrossEncoderModel, tiny_random_model
from clir_ot.training import DataSpec, TrainingConfig

EN = "the a cat dog house tree river city book water red green big small runs sees eats old new".split()
# a word-for-word "foreign language": every English word has its own foreign word
FOREIGN = {w: f"x{w[::-1]}" for w in EN}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distill-data")
    rng = random.Random(0)
    sentences = sorted({" ".join(rng.choice(EN) for _ in range(rng.randint(3, 7))) for _ in range(120)})
    pairs = [BitextPair(s, " ".join(FOREIGN[w] for w in s.split()), "made", i + 1) for i, s in enumerate(sentences)]
    write_bitext(root / "bitext.tsv", pairs)
    docs = {f"d{i:02d}": " ".join(rng.choice(EN) for _ in range(10)) for i in range(24)}
    topics = {f"q{i:02d}": " ".join(docs[f"d{i:02d}"].split()[:3]) for i in range(16)}
    write_corpus(root / "corpus.jsonl", [Document(d, t) for d, t in docs.items()])
    write_topics(root / "topics.tsv", topics)
    write_qrels(root / "qrels.txt", {q: {f"d{q[1:]}": 1} for q in topics})
    write_run(root / "run.txt", {q: [Hit(q, d, float(-abs(int(d[1:]) - int(q[1:]))), 0) for d in docs] for q in topics})
    texts = sentences + [p.foreign for p in pairs] + list(docs.values())
    model, tokenizer = tiny_random_model("xlm-roberta", texts, seed=5)
    CrossEncoderModel(model, tokenizer).save_pretrained(root / "teacher")
    model, tokenizer = tiny_random_model("bert", texts, seed=6)
    BiEncoderModel(model, tokenizer).save_pretrained(root / "dense")
    return root


def pairs_of(data: Path) -> list[BitextPair]:
    from clir_ot.distill import read_bitext

    return read_bitext(data / "bitext.tsv")


def rank_data(data: Path) -> DataSpec:
    return DataSpec(topics=data / "topics.tsv", qrels=data / "qrels.txt", corpus=data / "corpus.jsonl", run=data / "run.txt")


CONFIG = TrainingConfig(max_steps=12, batch_size=8, lr=3e-3, save_every=4, max_length=48, dtype="fp32", negatives=3,
                        warmup_steps=0, dropout=0.0)


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["ot", "mse-sent", "mse-token"])
def test_validation_loss_falls_for_each_token_method(data, tmp_path, method):
    distill = DistillationConfig(method=method, freeze_embeddings=False)
    result = distill_student(data / "teacher", tmp_path / method, pairs_of(data), CONFIG, distill, progress=False)
    valid = [r["valid"]["valid_loss"] for r in log_records(tmp_path / method) if "valid" in r]
    assert len(valid) == 3 and valid[-1] < valid[0], valid
    manifest = json.loads((tmp_path / method / "training.json").read_text())
    assert manifest["kind"] == "distillation" and manifest["distillation"]["method"] == method
    assert manifest["bitext"]["train_pairs"] + manifest["bitext"]["valid_pairs"] == len(pairs_of(data))
    assert result.best is not None and (result.best / "clir_ot.json").is_file()
    CrossEncoderModel.from_pretrained(result.best)  # the reranker loads the student


def test_student_starts_as_the_teacher_and_the_teacher_stays_frozen(data, tmp_path):
    teacher_before = CrossEncoderModel.from_pretrained(data / "teacher").state_dict()
    out = tmp_path / "ot"
    config = TrainingConfig(**{**CONFIG.to_dict(), "max_steps": 4})
    distill_student(data / "teacher", out, pairs_of(data), config, DistillationConfig(), progress=False)
    after = CrossEncoderModel.from_pretrained(data / "teacher").state_dict()
    assert all(torch.equal(teacher_before[k], after[k]) for k in after)
    student = CrossEncoderModel.from_pretrained(out).state_dict()
    embeddings = [k for k in student if "word_embeddings" in k]
    assert embeddings and all(torch.equal(student[k], after[k]) for k in embeddings)  # frozen by default
    assert any(not torch.equal(student[k], after[k]) for k in student)
    valid = [r for r in log_records(out) if "valid" in r]
    assert valid and valid[0]["valid"]["valid_loss"] > 0


def test_query_mode_score_kd_and_rank_term_run_and_log_every_term(data, tmp_path):
    distill = DistillationConfig(method="score-kd", rank_weight=0.5, rank_batch_size=2)
    config = TrainingConfig(**{**CONFIG.to_dict(), "max_steps": 4, "log_every": 2})
    distill_student(data / "teacher", tmp_path / "kd", pairs_of(data), config, distill, rank_data=rank_data(data),
                    progress=False)
    terms = [r["terms"] for r in log_records(tmp_path / "kd") if "terms" in r]
    assert terms and {"distill", "rank", "distill_weighted", "rank_weighted", "total"} <= set(terms[0])
    assert terms[0]["rank_weighted"] == pytest.approx(0.5 * terms[0]["rank"])
    assert len(terms) == 2  # log_every 2 over 4 steps: every logged step has its terms
    distill = DistillationConfig(method="ot", mode="query")
    distill_student(data / "teacher", tmp_path / "q", pairs_of(data), config, distill, rank_data=rank_data(data),
                    progress=False)
    manifest = json.loads((tmp_path / "q" / "training.json").read_text())
    assert manifest["distillation"]["mode"] == "query" and manifest["distillation"]["method"] == "ot"
    terms = [r["terms"] for r in log_records(tmp_path / "q") if "terms" in r]
    assert len(terms) == 2
    for logged in terms:  # the OT term only (no rank weight), weighted by 1, and the total is that
        assert {k for k in logged if not k.endswith("_s")} == {"distill", "distill_weighted", "total"}
        assert logged["distill"] > 0 and logged["total"] == pytest.approx(logged["distill_weighted"])
    distill_student(data / "teacher", tmp_path / "p", pairs_of(data), config, DistillationConfig(method="ot"),
                    rank_data=rank_data(data), progress=False)
    passage = [r["terms"]["distill"] for r in log_records(tmp_path / "p") if "terms" in r]
    assert [t["distill"] for t in terms] != passage  # the query before each side changes what is aligned



def test_query_mode_reads_pairs_with_the_cross_encoders_saved_prefixes(data, tmp_path):
    """A teacher saved with E5's ``query: `` / ``passage: `` reads (q, e) in distillation as it does when
    it reranks, and only the passage text's own tokens take part (not the query, not the prefix, which
    the tiny tokenizer does not know: unknown tokens must not shift the mask)."""
    import dataclasses

    from clir_ot.distill.trainer import DistillationTrainer, encode_states

    plain = CrossEncoderModel.from_pretrained(data / "teacher")
    prefixed = dataclasses.replace(plain.config, query_prefix="query: ", passage_prefix="passage: ")
    CrossEncoderModel(plain.encoder, plain.tokenizer, prefixed, head=plain.head).save_pretrained(tmp_path / "e5ish")
    teacher = CrossEncoderModel.from_pretrained(tmp_path / "e5ish")
    student = CrossEncoderModel.from_pretrained(tmp_path / "e5ish")
    assert teacher.config.query_prefix == "query: "
    pairs = pairs_of(data)[:4]
    queries = ["cat sees zzz", "the river", "big old house", "red book"]  # zzz: an unknown word
    trainer = DistillationTrainer(student, teacher, pairs_of(data), CONFIG, DistillationConfig(mode="query"),
                                  tmp_path / "out", queries=queries, progress=False)
    texts = [p.english for p in pairs]
    inputs, mask = trainer._tokenize(texts, queries)
    reranker = teacher.tokenize(queries, texts, max_length=CONFIG.max_length)
    assert torch.equal(inputs["input_ids"], reranker["input_ids"])
    tok = teacher.tokenizer
    for row, text in enumerate(texts):
        assert inputs["input_ids"][row][mask[row]].tolist() == tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        _, scores = encode_states(teacher, (-1,), **inputs)
    expected = teacher.predict(list(zip(queries, texts)), show_progress=False)
    assert scores.numpy() == pytest.approx(expected, abs=1e-5)



def mini_query_bitext(root: Path, negatives: int = 0) -> list[BitextPair]:
    from clir_ot.distill import xquad_query_bitext

    c = root / "collection"
    return xquad_query_bitext(c / "topics.xquad.en.tsv", c / "qrels.xquad.cross.en.txt", c / "corpus" / "en",
                              c / "corpus" / "el", c / "folds.json", 0, negatives=negatives,
                              run=root / "run.xquad.e5-small.cross.en-el.txt")


def test_query_bitext_is_read_with_each_pairs_own_question(data, mini_xquad, tmp_path):
    """XQuAD query bitext: T reads (q, e) and S (q, f) with q the pair's own question; out-of-domain pairs
    mixed in get a drawn training question; score-kd trains on it without any other query source."""
    import numpy as np

    from clir_ot.distill.trainer import DistillationTrainer

    in_domain = mini_query_bitext(mini_xquad, negatives=1)
    tatoeba = pairs_of(data)[:12]
    teacher = CrossEncoderModel.from_pretrained(data / "teacher")
    trainer = DistillationTrainer(CrossEncoderModel.from_pretrained(data / "teacher"), teacher, in_domain + tatoeba,
                                  CONFIG, DistillationConfig(mode="query"), tmp_path / "mixed",
                                  queries=["pool one", "pool two"], progress=False)
    queries = trainer._queries_for(np.arange(len(trainer.groups)), valid=False)
    assert queries[:len(in_domain)] == [p.query for p in in_domain]
    assert set(queries[len(in_domain):]) <= {"pool one", "pool two"}
    with pytest.raises(ConfigError, match="needs English training queries"):  # the Tatoeba pairs have none
        DistillationTrainer(CrossEncoderModel.from_pretrained(data / "teacher"), teacher, in_domain + tatoeba,
                            CONFIG, DistillationConfig(mode="query"), tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="carry their own English questions"):  # passage mode would drop them
        DistillationTrainer(CrossEncoderModel.from_pretrained(data / "teacher"), teacher, in_domain, CONFIG,
                            DistillationConfig(mode="passage"), tmp_path / "y", progress=False)
    config = TrainingConfig(**{**CONFIG.to_dict(), "max_steps": 2, "save_every": 2})
    distill_student(data / "teacher", tmp_path / "kd", in_domain, config, DistillationConfig(method="score-kd"),
                    progress=False)
    manifest = json.loads((tmp_path / "kd" / "training.json").read_text())
    assert manifest["bitext"]["pairs_with_queries"] == len(in_domain) == 32
    assert manifest["bitext"]["train_pairs"] + manifest["bitext"]["valid_pairs"] == 32


def test_distill_cli_xquad_bitext(data, mini_xquad, tmp_path, caplog):
    out = tmp_path / "cli"
    args = ["distill", "--teacher", str(data / "teacher"), "--out", str(out), "--xquad-bitext", str(mini_xquad),
            "--language", "el", "--method", "score-kd", "--max-steps", "2", "--batch-size", "8",
            "--max-length", "48", "--save-every", "2", "--dtype", "fp32"]
    assert main(args + ["--xquad-negatives", "1"]) != 0 and "needs --exclude-fold" in caplog.text
    # refused before any model is loaded: a run without negatives to take from it, a mode that ignores questions
    run = str(mini_xquad / "run.xquad.e5-small.cross.en-el.txt")
    assert main(args + ["--exclude-fold", "0", "--xquad-negatives-run", run]) != 0
    assert "--xquad-negatives-run is read only for --xquad-negatives N > 0" in caplog.text
    passage = [a if a != "score-kd" else "ot" for a in args] + ["--mode", "passage", "--exclude-fold", "0"]
    assert main(passage) != 0 and "which ot in passage mode would ignore" in caplog.text
    assert not out.exists()
    assert main(args + ["--exclude-fold", "0", "--xquad-negatives", "1"]) == 0
    manifest = json.loads((out / "training.json").read_text())
    assert manifest["bitext"]["pairs_with_queries"] == 32
    files = manifest["bitext"]["files"]
    assert any(f.endswith("folds.json") for f in files) and any(f.endswith("run.xquad.e5-small.cross.en-el.txt") for f in files)
    # out-of-domain bitext added, in query mode: its pairs take the English training questions of the
    # rank data, cross-fitted by the same folds (XQUAD_DIR's folds.json, as --folds is not given)
    c = mini_xquad / "collection"
    assert main(args[:4] + [str(tmp_path / "mixed")] + args[5:] + [
        "--exclude-fold", "0", "--bitext", str(data / "bitext.tsv"), "--mode", "query", "--method", "ot",
        "--topics", str(c / "topics.xquad.en.tsv"), "--qrels", str(c / "qrels.xquad.cross.en.txt"),
        "--corpus", str(c / "corpus" / "en"), "--run", str(mini_xquad / "run.xquad.e5-small.cross.en-en.txt")]) == 0
    manifest = json.loads((tmp_path / "mixed" / "training.json").read_text())
    assert manifest["bitext"]["pairs_with_queries"] == 16
    assert manifest["bitext"]["train_pairs"] + manifest["bitext"]["valid_pairs"] == 16 + len(pairs_of(data))
    assert manifest["rank_data"]["xquad"]["test_fold"] == 0


def test_queries_are_required_where_a_method_needs_them(data, tmp_path):
    with pytest.raises(ConfigError, match="queries"):
        distill_student(data / "teacher", tmp_path / "x", pairs_of(data), CONFIG,
                        DistillationConfig(method="score-kd"), progress=False)


def test_shuffled_control_trains_on_misaligned_pairs(data, tmp_path):
    """The control misaligns every pair (no foreign side is its English side's word-for-word translation;
    the same foreign sentences), and the shuffled run trains on exactly those pairs: it ends with the
    weights of a plain run given the misaligned pairs as its bitext."""
    from clir_ot.distill import shuffled_control, split_bitext
    from clir_ot.distill.trainer import bitext_fingerprint

    config = TrainingConfig(**{**CONFIG.to_dict(), "max_steps": 4})
    distill_student(data / "teacher", tmp_path / "shuffled", pairs_of(data), config,
                    DistillationConfig(shuffle_bitext=True), progress=False)
    train, valid = split_bitext(pairs_of(data), 0.1, config.seed)
    control_train, control_valid = shuffled_control(train, config.seed), shuffled_control(valid, config.seed + 1)
    for original, control in ((train, control_train), (valid, control_valid)):
        assert [p.english for p in control] == [p.english for p in original]
        assert sorted(p.foreign for p in control) == sorted(p.foreign for p in original)
        assert not any(p.foreign == " ".join(FOREIGN[w] for w in p.english.split()) for p in control)
    manifest = json.loads((tmp_path / "shuffled" / "training.json").read_text())
    assert manifest["bitext"]["shuffled_control"] is True
    assert manifest["bitext"]["train_fingerprint"] == bitext_fingerprint(control_train)
    distill_student(data / "teacher", tmp_path / "given", control_train, config, DistillationConfig(),
                    valid_pairs=control_valid, progress=False)
    shuffled = CrossEncoderModel.from_pretrained(tmp_path / "shuffled").state_dict()
    given = CrossEncoderModel.from_pretrained(tmp_path / "given").state_dict()
    assert all(torch.equal(shuffled[k], given[k]) for k in given)
    aligned = distill_student(data / "teacher", tmp_path / "aligned", pairs_of(data), config, DistillationConfig(),
                              progress=False)
    aligned_weights = CrossEncoderModel.from_pretrained(aligned.output).state_dict()
    assert any(not torch.equal(shuffled[k], aligned_weights[k]) for k in given)  # the control changes training


def test_early_stopping_stops_when_validation_stops_improving(data, tmp_path):
    config = TrainingConfig(**{**CONFIG.to_dict(), "max_steps": 40, "save_every": 1, "lr": 0.5})  # diverges
    result = distill_student(data / "teacher", tmp_path / "es", pairs_of(data), config,
                             DistillationConfig(patience=2, freeze_embeddings=False), progress=False)
    manifest = json.loads((tmp_path / "es" / "training.json").read_text())
    assert manifest["stopped_early"] is not None and result.steps < 40
    assert result.steps - manifest["metrics"]["best"]["step"] == 2


def test_dense_student_distils_the_bi_encoder(data, tmp_path):
    distill = DistillationConfig(method="ot", model_type="bi-encoder", freeze_embeddings=False)
    result = distill_student(data / "dense", tmp_path / "dense", pairs_of(data), CONFIG, distill, progress=False)
    valid = [r["valid"]["valid_loss"] for r in log_records(tmp_path / "dense") if "valid" in r]
    assert valid[-1] < valid[0]
    student = BiEncoderModel.from_pretrained(result.best)
    assert student.encode(["xeht xtac"]).shape == (1, student.dim)


def test_settings_are_checked_and_unknown_keys_rejected():
    with pytest.raises(ConfigError, match="unknown setting"):
        split_settings({"method": "ot", "epsilonn": 0.1}, "x.json")
    training, distill = split_settings({"method": "mse-sent", "lr": 1e-4, "layers": [4, -1]}, "x.json")
    assert training.lr == 1e-4 and distill.layers == (4, -1)
    for bad, message in (({"method": "none"}, "unknown distillation method 'none'.*the teacher itself"),
                         ({"method": "kl"}, "unknown distillation method 'kl'; valid: ot, mse-sent"),
                         ({"model_type": "bi-encoder", "mode": "query"}, "query mode applies to cross-encoders"),
                         ({"model_type": "bi-encoder", "rank_weight": 1.0}, "rank_weight applies to cross-encoder"),
                         ({"distill_weight": 0.0}, "all loss weights are 0"),
                         ({"layers": []}, "layers must be a non-empty list"), ({"epsilon": 0}, "epsilon must be positive")):
        with pytest.raises(ConfigError, match=message):
            DistillationConfig(**bad)
    assert DistillationConfig(shuffle_bitext=True).name == "ot-shuffled"


def test_distill_cli(data, tmp_path, caplog):
    out = tmp_path / "cli"
    code = main(["distill", "--teacher", str(data / "teacher"), "--out", str(out), "--bitext", str(data / "bitext.tsv"),
                 "--method", "mse-sent", "--max-steps", "2", "--batch-size", "8", "--max-length", "48",
                 "--save-every", "2", "--dtype", "fp32"])
    assert code == 0 and (out / "training.json").is_file() and (out / "best").is_dir()
    assert main(["distill", "--teacher", str(data / "teacher"), "--out", str(tmp_path / "bad"),
                 "--bitext", str(data / "bitext.tsv"), "--tatoeba", str(data)]) != 0
    assert "exactly one bitext source" in caplog.text


def test_distill_cli_flags_switch_settings_both_ways(data, tmp_path):
    from clir_ot.cli import build_parser
    from clir_ot.cli.distill import build_settings

    config = tmp_path / "on.json"
    config.write_text(json.dumps({"shuffle_bitext": True, "centre": True}))
    base = ["distill", "--teacher", "t", "--out", "o", "--config", str(config)]
    _, distill = build_settings(build_parser().parse_args(base))
    assert distill.shuffle_bitext and distill.centre and distill.freeze_embeddings
    _, distill = build_settings(build_parser().parse_args(base + ["--no-shuffled", "--no-centre", "--no-freeze-embeddings",
                                                                  "--epsilon-mode", "absolute"]))
    assert not distill.shuffle_bitext and not distill.centre and not distill.freeze_embeddings
    assert distill.epsilon_mode == "absolute"


def test_xquad_paragraphs_must_hold_out_the_teachers_fold(data, tmp_path, caplog):
    teacher = tmp_path / "teacher"
    shutil.copytree(data / "teacher", teacher)
    (teacher / "training.json").write_text(json.dumps({"data": {"xquad": {"test_fold": 0}}}))
    (tmp_path / "collection").mkdir()  # exists (the parser checks input paths); the fold check comes first
    args = ["distill", "--teacher", str(teacher), "--out", str(tmp_path / "s"), "--tatoeba", str(tmp_path),
            "--language", "el", "--add-xquad-paragraphs", str(tmp_path / "collection")]
    assert main(args + ["--exclude-fold", "1"]) != 0
    assert "trained without fold 0" in caplog.text
    assert main(args + ["--exclude-fold", "0", "--model-type", "bi-encoder"]) != 0
    assert "for cross-encoder students" in caplog.text


@pytest.mark.slow
def test_ot_plan_is_a_sensible_soft_alignment_on_real_en_el_pairs(default_model, tmp_path):
    """On the real multilingual-e5-small, numbers and names send their mass to their Greek counterparts."""
    from clir_ot.distill.alignment import align_pair, plot_plan

    model = BiEncoderModel.from_pretrained(default_model)
    a = align_pair(model, model, "In 1851 Herman Melville published Moby-Dick in London.",
                   "Το 1851 ο Χέρμαν Μέλβιλ δημοσίευσε το Μόμπι Ντικ στο Λονδίνο.")
    assert a.plan.sum() == pytest.approx(1.0, abs=1e-4)
    assert a.plan.shape == (len(a.english_tokens), len(a.foreign_tokens))
    assert a.best_match("▁18") == "▁18" and a.best_match("51") == "51"
    assert a.best_match("▁London") == "▁Λονδίνο" and a.best_match("▁published").startswith("δημοσ")
    b = align_pair(model, model, "Nikola Tesla was born in 1856.", "Ο Νίκολα Τέσλα γεννήθηκε το 1856.")
    assert b.best_match("56") == "56" and b.best_match("▁Nikola").startswith("▁Νίκο")
    assert b.best_match("▁born") == "▁γεννήθηκε"
    png = plot_plan(a, tmp_path / "plan.png")
    assert png.stat().st_size > 1000


def test_distillation_resumes_exactly_after_a_failed_job(data, tmp_path):
    """A run that fails (raises) after its step-2 checkpoint and resumes ends with the uninterrupted run's
    weights; a resume with other settings or another teacher is refused. (A real SIGKILL of
    ``clir-ot distill`` is tested in tests/test_kill.py.)"""
    from clir_ot.distill.trainer import DistillationTrainer

    config = TrainingConfig(**{**CONFIG.to_dict(), "max_steps": 4, "save_every": 2})
    distill = DistillationConfig(method="ot", freeze_embeddings=False)
    pairs = pairs_of(data)

    def trainer(out, callbacks=(), distill=distill, teacher_seed=None):
        torch.manual_seed(0)
        teacher = CrossEncoderModel.from_pretrained(data / "teacher")
        if teacher_seed is not None:  # another teacher: same architecture, other weights
            torch.manual_seed(teacher_seed)
            for param in teacher.head.parameters():
                torch.nn.init.normal_(param)
        student = CrossEncoderModel.from_pretrained(data / "teacher")
        return DistillationTrainer(student, teacher, pairs[:100], config, distill, out, valid_pairs=pairs[100:],
                                   callbacks=callbacks, progress=False)

    trainer(tmp_path / "whole").train()

    class Failure(RuntimeError):
        pass

    def fail(state):
        if state.step == 3:
            raise Failure

    with pytest.raises(Failure):
        trainer(tmp_path / "failed", [fail]).train()
    # resuming with another method setting or another teacher is refused, naming what changed
    with pytest.raises(ConfigError, match=r"epsilon: 0\.1 -> 0\.05"):
        trainer(tmp_path / "failed", distill=DistillationConfig(method="ot", freeze_embeddings=False,
                                                                epsilon=0.05)).train(resume=True)
    with pytest.raises(ConfigError, match="teacher"):
        trainer(tmp_path / "failed", teacher_seed=1).train(resume=True)
    trainer(tmp_path / "failed").train(resume=True)
    a = CrossEncoderModel.from_pretrained(tmp_path / "whole").state_dict()
    b = CrossEncoderModel.from_pretrained(tmp_path / "failed").state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0


def test_resume_without_a_checkpoint_starts_over_and_drops_a_torn_log(data, tmp_path):
    """What a run killed before its first checkpoint leaves (a log with a torn last line, written here by
    hand): ``resume`` starts over and the old records are gone."""
    out = tmp_path / "early"
    out.mkdir()
    (out / "log.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "lo')  # a torn last line
    config = TrainingConfig(**{**CONFIG.to_dict(), "max_steps": 2, "save_every": 2})
    result = distill_student(data / "teacher", out, pairs_of(data), config, DistillationConfig(), resume=True,
                             progress=False)
    assert result.steps == 2 and (out / "training.json").is_file()
    assert all(r.get("loss") != 9.0 for r in log_records(out))


def test_distillation_scores_use_the_float32_head_under_bf16(data):
    """Score distillation and the rank term regress the cross-encoder's logits, which differ by less
    than bf16's resolution for one query's candidates: they must come from the float32 head."""
    from clir_ot.distill.trainer import encode_states

    model = CrossEncoderModel.from_pretrained(data / "teacher")
    batch = model.tokenize([f"query {i}" for i in range(16)], [f"passage {i} {'word ' * i}" for i in range(16)])
    linears = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    encoder_dtypes, head_calls = [], []
    hooks = [m.register_forward_hook(lambda module, args, out: encoder_dtypes.append(out.dtype)) for m in linears]
    hooks.append(model.head.register_forward_hook(lambda module, args, out: head_calls.append((args[0], out))))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            states, scores = encode_states(model, (-1,), batch["input_ids"], batch["attention_mask"])
    finally:
        for hook in hooks:
            hook.remove()
    assert linears and encoder_dtypes == [torch.bfloat16] * len(linears)  # the encoder really ran in bf16
    (features, logits), = head_calls
    assert features.dtype == logits.dtype == scores.dtype == torch.float32
    assert torch.equal(scores, logits.squeeze(-1))  # the scores are the float32 head's output
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = model.head(features).squeeze(-1)
    assert in_bf16.dtype == torch.bfloat16 and (in_bf16.float() != scores.detach()).any()  # a bf16 head differs
    assert (scores.detach().bfloat16().float() != scores.detach()).any()  # not rounded to bf16's ~3 digits
    assert len(set(scores.tolist())) == len(scores)
