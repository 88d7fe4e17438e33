"""The teacher recipe's settings on tiny models: E5 prefixes in pair encoding, a mean-pooled head,
soft targets from a first-stage run (listwise KL), and interpolation with the first-stage score."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.formats import Document, Hit, write_corpus, write_qrels, write_run, write_topics
from clir_ot.models import CrossEncoderConfig, CrossEncoderModel, tiny_random_model
from clir_ot.rerank.interpolation import choose_weight, interpolate_hits, interpolate_run
from clir_ot.training import (
    DataSpec,
    Trainer,
    TrainingConfig,
    TrainingGroup,
    load_training_data,
    read_groups,
    write_groups,
)
from clir_ot.training.data import attach_target_scores
from clir_ot.training.losses import ListwiseKLLoss

pytestmark = pytest.mark.usefixtures("one_thread")

QUERIES = ["who wrote moby dick", "capital of france"]
PASSAGES = ["herman melville wrote moby dick", "paris is the capital of france", "a passage about whales"]


def test_prefixes_are_part_of_the_pair_the_encoder_reads(tiny_encoder, tmp_path):
    model, tokenizer = tiny_encoder
    plain = CrossEncoderModel(model, tokenizer, CrossEncoderConfig(max_length=64)).eval()
    e5 = CrossEncoderModel(model, tokenizer, CrossEncoderConfig(max_length=64, query_prefix="query: ",
                                                                passage_prefix="passage: ")).eval()
    ids = e5.tokenize(QUERIES[:1], PASSAGES[:1])["input_ids"][0].tolist()
    expected = tokenizer("query: " + QUERIES[0], "passage: " + PASSAGES[0])["input_ids"]
    assert ids == expected
    assert ids != plain.tokenize(QUERIES[:1], PASSAGES[:1])["input_ids"][0].tolist()
    # predict (the reranking path) reads the same prefixed pair as tokenize (the training path)
    pairs = [(q, p) for q in QUERIES for p in PASSAGES]
    with torch.no_grad():
        direct = e5(**e5.tokenize([q for q, _ in pairs], [p for _, p in pairs])).numpy()
    np.testing.assert_allclose(e5.predict(pairs, batch_size=2), direct, rtol=0, atol=1e-5)
    assert not np.allclose(plain.predict(pairs), direct, atol=1e-4), "the prefixes changed nothing"
    # the prefixes are saved with the model, so reranking uses what training used
    e5.save_pretrained(tmp_path / "e5")
    again = CrossEncoderModel.from_pretrained(tmp_path / "e5")
    assert again.config.query_prefix == "query: " and again.config.passage_prefix == "passage: "
    np.testing.assert_allclose(again.predict(pairs), e5.predict(pairs), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="was trained with query_prefix='query: '"):
        CrossEncoderModel.from_pretrained(tmp_path / "e5", query_prefix="")


def test_mean_pooled_head_reads_the_mean_of_the_pair_tokens(tiny_encoder, tmp_path):
    model, tokenizer = tiny_encoder
    ce = CrossEncoderModel(model, tokenizer, CrossEncoderConfig(pooling="mean", max_length=64)).eval()
    batch = ce.tokenize(QUERIES + QUERIES[:1], PASSAGES)
    assert bool((batch["attention_mask"] == 0).any()), "the test needs padding to check it is left out"
    with torch.no_grad():
        logits = ce(**batch)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = ce.head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)
        first = ce.head(hidden[:, 0]).squeeze(-1)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(logits, first, atol=1e-4), "mean pooling gave the first token's score"
    with pytest.raises(ConfigError, match="mean pooling needs the attention mask"):
        ce.score_states(hidden)
    ce.save_pretrained(tmp_path / "mean")
    assert json.loads((tmp_path / "mean" / "clir_ot.json").read_text())["pooling"] == "mean"
    again = CrossEncoderModel.from_pretrained(tmp_path / "mean")
    pairs = [(q, p) for q in QUERIES for p in PASSAGES]
    np.testing.assert_allclose(again.predict(pairs), ce.predict(pairs), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="pooling='mean'"):
        CrossEncoderModel.from_pretrained(tmp_path / "mean", pooling="first")


def test_a_base_without_head_takes_the_recipe_input_settings(tiny_encoder, tmp_path):
    from transformers import AutoModel

    model, tokenizer = tiny_encoder
    model.save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")
    ce = CrossEncoderModel.from_pretrained(tmp_path / "enc", pooling="mean", query_prefix="query: ",
                                           passage_prefix="passage: ")
    assert (ce.config.pooling, ce.config.query_prefix, ce.config.passage_prefix) == ("mean", "query: ", "passage: ")
    assert isinstance(AutoModel.from_pretrained(tmp_path / "enc"), type(model))
    with pytest.raises(ConfigError, match="pooling"):
        CrossEncoderConfig(pooling="max")


def test_listwise_kl_loss_is_the_kl_divergence_of_the_two_softmaxes():
    scores = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[0.90, 0.85, 0.70], [0.80, 0.81, 0.79]])
    loss = ListwiseKLLoss(target_temperature=0.05)(scores, targets)
    p = torch.softmax(targets / 0.05, dim=1)
    q = torch.softmax(scores.detach(), dim=1)
    expected = (p * (p.log() - q.log())).sum(1).mean()
    assert math.isclose(float(loss.detach()), float(expected), rel_tol=1e-6)
    loss.backward()
    # d KL / d s = q - p (per group, divided by the batch): the gradient pulls towards the target
    torch.testing.assert_close(scores.grad, (q - p) / 2, rtol=1e-5, atol=1e-6)
    assert float(ListwiseKLLoss(target_temperature=1.0)(targets, targets)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ConfigError, match="one target score per passage"):
        ListwiseKLLoss()(scores, targets[:, :2])
    with pytest.raises(ConfigError, match="temperatures must be positive"):
        ListwiseKLLoss(target_temperature=0)


@pytest.fixture
def collection(tmp_path):
    docs = {f"d{i}": f"passage {i} about topic {i % 4} with words {' '.join(['w'] * i)}" for i in range(12)}
    topics = {f"q{i}": f"question on topic {i % 4} number {i}" for i in range(8)}
    qrels = {q: {f"d{q[1:]}": 1} for q in topics}
    run = {q: [Hit(q, d, float(12 - abs(int(d[1:]) - int(q[1:]))), 1) for d in docs] for q in topics}
    # the soft-target run lists only the top 6 of each query, with its own scores
    soft = {q: [Hit(q, d, 0.9 - 0.01 * abs(int(d[1:]) - int(q[1:])), 1) for d in docs
                if abs(int(d[1:]) - int(q[1:])) < 3] for q in topics}
    write_corpus(tmp_path / "corpus.jsonl", [Document(d, t) for d, t in docs.items()])
    write_topics(tmp_path / "topics.tsv", topics)
    write_qrels(tmp_path / "qrels.txt", qrels)
    write_run(tmp_path / "run.txt", run)
    write_run(tmp_path / "soft.txt", soft)
    return tmp_path


def test_soft_targets_come_from_the_run_and_missing_documents_get_its_floor(collection):
    spec = DataSpec(topics=collection / "topics.tsv", qrels=collection / "qrels.txt",
                    corpus=collection / "corpus.jsonl", run=collection / "run.txt", soft_run=collection / "soft.txt")
    data = load_training_data(spec, negatives=5, seed=3)
    from clir_ot.formats import load_run

    soft = load_run(collection / "soft.txt")
    for group in data.train:
        scores = soft[group.qid]
        floor = min(scores.values())
        assert group.target_scores == tuple(pytest.approx(scores.get(d, floor)) for d in group.docids)
    assert any(d not in soft[g.qid] for g in data.train for d in g.docids), "the floor case was not exercised"
    # JSONL groups carry their scores through a round trip
    write_groups(collection / "groups.jsonl", data.train)
    assert [g.target_scores for g in read_groups(collection / "groups.jsonl")] == [g.target_scores for g in data.train]
    bad = collection / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "positive": "p", "negatives": ["n"], "scores": [1.0]}) + "\n")
    with pytest.raises(InputFormatError, match=r"bad.jsonl:1: 'scores' must list 2 finite numbers"):
        read_groups(bad)
    with pytest.raises(ConsistencyError, match="need groups with query and document ids"):
        attach_target_scores([TrainingGroup("q", "p", ("n",))], {"q": {"d": 1.0}})
    with pytest.raises(ConfigError, match="--soft-run"):
        DataSpec(triples=collection / "t.tsv", soft_run=collection / "soft.txt")


def test_soft_weight_trains_on_both_terms_and_logs_them(collection, tmp_path):
    spec = DataSpec(topics=collection / "topics.tsv", qrels=collection / "qrels.txt",
                    corpus=collection / "corpus.jsonl", run=collection / "run.txt", soft_run=collection / "soft.txt")
    data = load_training_data(spec, negatives=3, seed=3)
    model, tokenizer = tiny_random_model("bert", [g.positive for g in data.train], seed=5)

    def train(weight: float, out: str) -> list[dict]:
        config = TrainingConfig(max_steps=4, batch_size=2, lr=1e-3, max_length=32, log_every=1, save_every=4,
                                soft_weight=weight, soft_temperature=0.02)
        torch.manual_seed(0)  # the same fresh head in both runs
        ce = CrossEncoderModel(*tiny_random_model("bert", [g.positive for g in data.train], seed=5))
        Trainer(ce, data.train, config, tmp_path / out, progress=False).train()
        return [json.loads(line) for line in (tmp_path / out / "log.jsonl").read_text().splitlines()]

    with_soft = [r for r in train(0.5, "soft") if "loss" in r]
    without = [r for r in train(0.0, "plain") if "loss" in r]
    for record in with_soft:
        terms = record["terms"]
        assert record["loss"] == pytest.approx(terms["relevance"] + 0.5 * terms["soft"], rel=1e-5)
        assert terms["soft"] > 0
    assert all("terms" not in r for r in without)
    # the first step has the same relevance term (same seed, same inputs, same weights before it)
    assert with_soft[0]["terms"]["relevance"] == pytest.approx(without[0]["loss"], rel=1e-5)
    plain = [TrainingGroup(g.query, g.positive, g.negatives, g.qid, g.docids) for g in data.train]
    with pytest.raises(ConfigError, match="soft_weight > 0 needs target scores"):
        Trainer(CrossEncoderModel(model, tokenizer), plain, TrainingConfig(soft_weight=1.0, batch_size=2),
                tmp_path / "none", progress=False)


def _hits(qid: str, scored: list[tuple[str, float]]) -> list[Hit]:
    return [Hit(qid, d, s, i) for i, (d, s) in enumerate(scored, start=1)]


def test_interpolation_mixes_min_max_normalised_scores_and_keeps_the_tail():
    first = _hits("q", [("a", 10.0), ("b", 9.0), ("c", 5.0), ("d", 1.0)])
    reranker = {"a": 0.0, "b": 2.0, "c": 1.0}
    pure = interpolate_hits(first, reranker, 1.0, depth=3)
    assert [h.docid for h in pure] == ["b", "c", "a", "d"]
    kept = interpolate_hits(first, reranker, 0.0, depth=3)
    assert [h.docid for h in kept] == ["a", "b", "c", "d"]
    # w = 0.5: a = .5*0 + .5*1 = .5, b = .5*1 + .5*.8 = .9, c = .5*.5 + 0 = .25
    half = interpolate_hits(first, reranker, 0.5, depth=3)
    assert [h.docid for h in half] == ["b", "a", "c", "d"]
    assert [h.score for h in half[:3]] == pytest.approx([0.9, 0.5, 0.25], abs=1e-6)
    assert all(x.score > y.score for x, y in zip(half, half[1:]))
    with pytest.raises(ConsistencyError, match="lacks 1 of the first stage's top 4"):
        interpolate_hits(first, reranker, 0.5, depth=4)
    with pytest.raises(ConfigError, match=r"weight must be in \[0, 1\]"):
        interpolate_hits(first, reranker, 1.5, depth=3)


def test_choose_weight_picks_the_best_weight_on_the_tuning_queries():
    # q1: the reranker is right (relevant b); q2: the first stage is right (relevant x) and the reranker
    # only slightly prefers y. Normalised: q1 b beats a for w > .25, q2 x beats y for w < .625, so only
    # a mid weight gets both right, and either end loses one of them.
    first = {"q1": _hits("q1", [("a", 3.0), ("b", 2.0), ("c", 0.0)]),
             "q2": _hits("q2", [("x", 3.0), ("y", 2.5), ("z", 0.0)])}
    reranked = {"q1": {"a": 0.0, "b": 1.0, "c": 0.5}, "q2": {"x": 0.9, "y": 1.0, "z": 0.0}}
    qrels = {"q1": {"b": 1}, "q2": {"x": 1}}
    choice = choose_weight(first, reranked, qrels, depth=3, weights=(0.0, 0.5, 1.0))
    assert dict(choice.curve) == pytest.approx({0.0: 0.75, 0.5: 1.0, 1.0: 0.75})
    assert (choice.weight, choice.value, choice.measure, choice.queries) == (0.5, pytest.approx(1.0), "RR@10", 2)
    # ties go to the larger reranker weight
    tied = choose_weight(first, reranked, qrels, depth=3, weights=(0.0, 1.0))
    assert tied.weight == 1.0
    run = interpolate_run(first, reranked, choice.weight, depth=3)
    assert [h.docid for h in run["q1"]][0] == "b" and [h.docid for h in run["q2"]][0] == "x"
    with pytest.raises(ConsistencyError, match="none of the tuning queries has qrels"):
        choose_weight(first, reranked, {"q9": {"a": 1}}, depth=3)


def test_interpolate_cli_with_a_given_and_a_tuned_weight(tmp_path, capsys, caplog):
    from clir_ot.cli import main
    from clir_ot.formats import load_run

    first = {"q1": _hits("q1", [("a", 3.0), ("b", 2.0), ("c", 0.0)]),
             "q2": _hits("q2", [("x", 3.0), ("y", 2.5), ("z", 0.0)])}
    reranked = {"q1": _hits("q1", [("b", 1.0), ("c", 0.5), ("a", 0.0)]),
                "q2": _hits("q2", [("y", 1.0), ("x", 0.9), ("z", 0.0)])}
    write_run(tmp_path / "first.txt", first)
    write_run(tmp_path / "reranked.txt", reranked)
    write_qrels(tmp_path / "qrels.txt", {"q1": {"b": 1}, "q2": {"x": 1}})
    args = ["interpolate", "--run", str(tmp_path / "reranked.txt"), "--first-stage", str(tmp_path / "first.txt"),
            "--depth", "3"]
    assert main([*args, "--weight", "0", "--output", str(tmp_path / "w0.txt")]) == 0
    w0 = load_run(tmp_path / "w0.txt")
    assert max(w0["q1"], key=w0["q1"].get) == "a" and max(w0["q2"], key=w0["q2"].get) == "x"
    # the weight is chosen on other queries (t1, t2: the same lists as q1, q2)
    renamed = lambda run: {f"t{q[1:]}": [Hit(f"t{q[1:]}", h.docid, h.score, h.rank) for h in hits] for q, hits in run.items()}
    write_run(tmp_path / "tune-first.txt", renamed(first))
    write_run(tmp_path / "tune-reranked.txt", renamed(reranked))
    write_qrels(tmp_path / "tune-qrels.txt", {"t1": {"b": 1}, "t2": {"x": 1}})
    tune = ["--tune-run", str(tmp_path / "tune-reranked.txt"), "--tune-first-stage", str(tmp_path / "tune-first.txt"),
            "--tune-qrels", str(tmp_path / "tune-qrels.txt")]
    assert main([*args, *tune, "--output", str(tmp_path / "tuned.txt")]) == 0
    tuned = load_run(tmp_path / "tuned.txt")
    assert max(tuned["q1"], key=tuned["q1"].get) == "b" and max(tuned["q2"], key=tuned["q2"].get) == "x"
    # tuning on the queries it is applied to, and a reranked query the first stage lacks: refused
    same = ["--tune-run", str(tmp_path / "reranked.txt"), "--tune-first-stage", str(tmp_path / "first.txt"),
            "--tune-qrels", str(tmp_path / "qrels.txt")]
    assert main([*args, *same, "--output", str(tmp_path / "same.txt")]) == 2
    assert "shares 2 of its queries" in caplog.text
    write_run(tmp_path / "reranked-extra.txt", {**reranked, "q3": _hits("q3", [("a", 1.0)])})
    extra = ["interpolate", "--run", str(tmp_path / "reranked-extra.txt"), "--first-stage", str(tmp_path / "first.txt"),
             "--depth", "3", "--weight", "0.5", "--output", str(tmp_path / "extra.txt")]
    assert main(extra) == 2
    assert "has 1 queries that" in caplog.text
    assert not (tmp_path / "same.txt").exists() and not (tmp_path / "extra.txt").exists()
    # neither or both ways of giving the weight: one clear error, nothing written
    assert main([*args, "--output", str(tmp_path / "none.txt")]) == 2
    assert main([*args, "--weight", "0.5", *tune, "--output", str(tmp_path / "both.txt")]) == 2
    assert not (tmp_path / "none.txt").exists() and not (tmp_path / "both.txt").exists()
    assert main([*args, "--weight", "1.5", "--output", str(tmp_path / "bad.txt")]) == 2
    assert "must be a number in [0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_teacher_pipeline_with_the_recipe_data_and_interpolation(xquad_collection, tmp_path, tiny_models):
    """Dense negatives, dense soft targets, first-stage validation and interpolation, on real XQuAD."""
    import copy
    import shutil

    from clir_ot.datasets import XQuADLayout
    from clir_ot.datasets.xquad import read_folds
    from clir_ot.formats import load_run, read_qrels, read_topics
    from clir_ot.pipelines.xquad_teacher import INTERPOLATED, TeacherData, run_xquad_teacher

    model, tokenizer = tiny_models["xlm-roberta"]
    base = tmp_path / "tiny"  # a bare encoder: the recipe gives it a new mean-pooled head and prefixes
    copy.deepcopy(model).save_pretrained(base)
    tokenizer.save_pretrained(base)
    out = tmp_path / "xquad"
    shutil.copytree(xquad_collection, out / "collection")
    topics = read_topics(out / "collection" / "topics.xquad.en.tsv")
    for lang in ("en", "th"):
        # a stand-in first stage: the relevant paragraph among 19 others, its rank and scores varying by question
        qrels = read_qrels(out / "collection" / f"qrels.xquad.cross.{lang}.txt")
        docids = sorted({d for judged in qrels.values() for d in judged})
        run = {}
        for i, qid in enumerate(topics):
            positive = next(iter(qrels[qid]))
            others = [d for d in docids[i % 200: i % 200 + 20] if d != positive][:19]
            ranked = others[: i % 5] + [positive] + others[i % 5:]
            run[qid] = [Hit(qid, d, 0.9 - 0.01 * r - 0.001 * (i % 7), r + 1) for r, d in enumerate(ranked)]
        write_run(out / f"run.xquad.t.cross.en-{lang}.txt", run)
    # the fused run is absent on purpose: with dense negatives the teacher must not need it
    config = TrainingConfig.from_dict({"max_steps": 2, "batch_size": 2, "max_length": 32, "save_every": 1,
                                       "negatives": 3, "valid_negatives": 3, "dtype": "fp32", "soft_weight": 1.0,
                                       "pooling": "mean", "query_prefix": "query: ", "passage_prefix": "passage: "})
    data = TeacherData(negatives="dense", soft_targets=True, validate_on="first-stage", interpolate=True)
    result = run_xquad_teacher(out, config, ["en", "th"], depth=3, base=str(base), first_stage="t", max_length=32,
                               dtype="fp32", data=data)
    layout = XQuADLayout(out, first_stage="t")
    folds = read_folds(out / "collection" / "folds.json")
    for k in range(len(folds)):
        manifest = json.loads((layout.teacher(k) / "training.json").read_text())
        assert manifest["data"]["files"]["run"]["path"].endswith("run.xquad.t.cross.en-en.txt")
        assert manifest["data"]["files"]["soft_run"]["path"].endswith("run.xquad.t.cross.en-en.txt")
        assert manifest["config"]["soft_weight"] == 1.0
        terms = [r["terms"] for r in map(json.loads, (layout.teacher(k) / "log.jsonl").read_text().splitlines())
                 if "terms" in r]
        assert terms and all(t["soft"] > 0 for t in terms)
        saved = CrossEncoderModel.from_pretrained(layout.teacher(k))
        assert (saved.config.pooling, saved.config.query_prefix) == ("mean", "query: ")
        valid = load_run(layout.teacher_validation_run(k, "teacher"))
        assert valid and not set(valid) & {str(q) for q in folds[k]["qids"]}, "weights chosen on test questions"
    for lang in ("en", "th"):
        first = load_run(out / f"run.xquad.t.cross.en-{lang}.txt")
        mixed = load_run(layout.teacher_interpolated_run(lang))
        assert set(mixed) == set(first) and all(set(mixed[q]) == set(first[q]) for q in first)
        assert set(result.table[lang]) == {"first stage", "teacher", INTERPOLATED}
    assert INTERPOLATED in (out / "table.teacher.md").read_text()


def test_recipe_settings_at_their_defaults_leave_the_config_dictionary_as_before():
    """Study keys and resume checks hash TrainingConfig.to_dict(): the new settings must not change it."""
    from clir_ot.training.trainer import RECIPE_SETTINGS

    plain = TrainingConfig(lr=1e-4, batch_size=4).to_dict()
    assert not set(RECIPE_SETTINGS) & set(plain)
    assert TrainingConfig.from_dict(plain) == TrainingConfig(lr=1e-4, batch_size=4)
    recipe = TrainingConfig(soft_weight=1.0, pooling="mean", query_prefix="query: ").to_dict()
    assert (recipe["soft_weight"], recipe["pooling"], recipe["query_prefix"]) == (1.0, "mean", "query: ")
    assert "passage_prefix" not in recipe and "soft_temperature" not in recipe
    assert TrainingConfig.from_dict(recipe) == TrainingConfig(soft_weight=1.0, pooling="mean", query_prefix="query: ")


def test_freeze_embeddings_keeps_the_word_embedding_matrix_and_trains_the_rest(collection, tmp_path):
    spec = DataSpec(topics=collection / "topics.tsv", qrels=collection / "qrels.txt",
                    corpus=collection / "corpus.jsonl", run=collection / "run.txt")
    data = load_training_data(spec, negatives=3, seed=3)

    def train(freeze: bool, out: str) -> tuple[CrossEncoderModel, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        ce = CrossEncoderModel(*tiny_random_model("bert", [g.positive for g in data.train], seed=5))
        before = {n: p.detach().clone() for n, p in ce.named_parameters()}
        config = TrainingConfig(max_steps=3, batch_size=2, lr=1e-2, max_length=32, save_every=3, freeze_embeddings=freeze)
        Trainer(ce, data.train, config, tmp_path / out, progress=False).train()
        return ce, before

    frozen, before = train(True, "frozen")
    words = "encoder.embeddings.word_embeddings.weight"
    assert words in before
    changed = {n for n, p in frozen.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert words not in changed
    assert "encoder.embeddings.position_embeddings.weight" in changed and any(n.startswith("head.") for n in changed)
    trained, before = train(False, "trained")
    assert not torch.equal(trained.get_parameter(words).detach(), before[words]), "the matrix trains without the setting"
    saved = json.loads((tmp_path / "frozen" / "training.json").read_text())["config"]
    assert saved["freeze_embeddings"] is True
    assert "freeze_embeddings" not in json.loads((tmp_path / "trained" / "training.json").read_text())["config"]
    with pytest.raises(ConfigError, match="freeze_embeddings"):
        Trainer(torch.nn.Linear(2, 1), data.train, TrainingConfig(freeze_embeddings=True, batch_size=2),
                tmp_path / "linear", progress=False)


def test_freeze_embeddings_in_a_distillation_config_is_the_distillations():
    """Both configs know the name; in a student's flat settings it belongs to DistillationConfig (whose
    default is to freeze), so a student's TrainingConfig -- and its study key -- stays as it was."""
    from clir_ot.distill.trainer import split_settings

    training, distill = split_settings({"freeze_embeddings": False, "lr": 1e-4}, "test")
    assert distill.freeze_embeddings is False and training.freeze_embeddings is False
    assert "freeze_embeddings" not in training.to_dict()


def test_interpolation_reads_the_reranked_depth_and_refuses_a_deeper_one():
    """A run reranked to depth 2 carries first-stage ranks below its head (``head_min - 1 - i``): those are
    not reranker scores, so a larger depth is refused and ``depth=None`` reads 2 from the run."""
    from clir_ot.rerank.base import assemble_ranking, reranked_depth

    first = _hits("q", [("a", 4.0), ("b", 3.0), ("c", 2.0), ("d", 1.0)])
    written = assemble_ranking(first, np.array([0.5, 0.502]))  # what `clir-ot rerank --depth 2` writes
    scores = {h.docid: h.score for h in written}
    assert [h.docid for h in written] == ["b", "a", "c", "d"]
    assert reranked_depth(first, scores) == 2
    assert reranked_depth(first, {"a": 0.1, "b": 0.7, "c": 0.3, "d": 0.2}) == 4  # all reranked: no tail
    assert reranked_depth(first, {h.docid: h.score for h in assemble_ranking(first, np.array([0.3]))}) == 1
    with pytest.raises(ConsistencyError, match=r"top 2 documents only .*--depth 2"):
        interpolate_hits(first, scores, 0.9, depth=4)
    read = interpolate_hits(first, scores, 0.9, depth=None)
    assert [h.docid for h in read] == ["b", "a", "c", "d"]  # the reranker's order of its head, then the tail
    assert [h.docid for h in read] == [h.docid for h in interpolate_hits(first, scores, 0.9, depth=2)]
