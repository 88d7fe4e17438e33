"""Training: groups with hard negatives, fold-leakage guard, losses, the trainer's checkpoints, exact resume
after SIGKILL, DDP-vs-single equality, manifest, bad input. Tiny random models throughout."""
from __future__ import annotations

import json
import logging
import math
import random
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import clir_ot
from child_processes import finish, start, wait_until_stopped
from clir_ot.cli import main
from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError, LeakageError
from clir_ot.formats import Document, Hit, sha256_of, write_corpus, write_qrels, write_run, write_topics
from clir_ot.models import CrossEncoderModel, tiny_random_model
from clir_ot.models.loading import hardware_id, resolve_precision
from clir_ot.training import (
    DataSpec,
    ListwiseSoftmaxLoss,
    PairwiseMarginLoss,
    Trainer,
    TrainingConfig,
    TrainingGroup,
    assert_no_leakage,
    build_groups,
    cut_negatives,
    groups_from_files,
    load_training_data,
    read_groups,
    read_triples,
    xquad_fold_split,
)
from clir_ot.training import checkpoints as ckpt
from clir_ot.training.distributed import DistInfo
from clir_ot.training.validation import reciprocal_ranks

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega").split()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A small collection (40 passages, 32 queries), a first-stage run and a tiny cross-encoder folder.

    q00..q04 have a second relevant passage (grade 2) and a judged non-relevant one (grade 0).
    """
    root = tmp_path_factory.mktemp("train-data")
    rng = random.Random(0)
    docs = {f"d{i:02d}": " ".join(rng.choice(WORDS) for _ in range(12)) for i in range(40)}
    topics = {f"q{i:02d}": " ".join(docs[f"d{i:02d}"].split()[:4]) for i in range(32)}
    qrels = {q: {f"d{q[1:]}": 1} for q in topics}
    for i in range(5):
        qrels[f"q{i:02d}"].update({f"d{i + 20:02d}": 2, f"d{i + 30:02d}": 0})
    # rank column contradicts the score on purpose; the score decides
    run = {q: [Hit(q, d, float(-abs(int(d[1:]) - int(q[1:]))), 99) for d in docs] for q in topics}
    write_corpus(root / "corpus.jsonl", [Document(d, t) for d, t in docs.items()])
    write_topics(root / "topics.tsv", topics)
    write_qrels(root / "qrels.txt", qrels)
    write_run(root / "run.txt", run)
    model, tokenizer = tiny_random_model("bert", list(docs.values()), seed=3)
    CrossEncoderModel(model, tokenizer).save_pretrained(root / "base")
    return root


def collection_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--base", str(data / "base"), "--out", str(out), "--topics", str(data / "topics.tsv"),
            "--qrels", str(data / "qrels.txt"), "--corpus", str(data / "corpus.jsonl"), "--run", str(data / "run.txt"),
            "--valid-fraction", "0.2", "--negatives", "3", "--valid-negatives", "5", "--max-length", "32",
            "--lr", "1e-3", *extra]


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in CrossEncoderModel.from_pretrained(folder).state_dict().items()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------------
# Groups


TOPICS = {"q1": "who wrote moby dick", "q2": "capital of france", "q3": "no judgement", "q4": "only relevant in run"}
CORPUS = {f"d{i}": f"passage number {i}" for i in range(1, 13)}
QRELS = {"q1": {"d1": 1, "d2": 2, "d3": 0}, "q2": {"d5": 1}, "q4": {"d9": 1, "d10": 1}}
RUN = {
    "q1": {"d3": 9.0, "d2": 8.0, "d4": 7.0, "d1": 6.0, "d6": 5.0, "d7": 4.0, "d8": 3.0},
    "q2": {"d5": 3.0, "d1": 2.0, "d2": 1.0, "d6": 0.5},
    "q4": {"d9": 2.0, "d10": 1.0},
}


def test_negatives_exclude_every_relevant_document():
    groups = build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=3, seed=1)
    by_positive = {(g.qid, g.docids[0]): g for g in groups}
    # one group per relevant document, best judged first; q3 has no qrels, q4 no non-relevant candidate
    assert [(g.qid, g.docids[0]) for g in groups] == [("q1", "d2"), ("q1", "d1"), ("q2", "d5")]
    for (qid, positive), group in by_positive.items():
        relevant = {d for d, r in QRELS[qid].items() if r > 0}
        assert positive in relevant and group.positive == CORPUS[positive]
        assert not relevant & set(group.docids[1:]), f"a relevant document is a negative of {qid}"
        assert group.negatives == tuple(CORPUS[d] for d in group.docids[1:]) and len(group.negatives) == 3
        assert group.passages[0] == group.positive
    # a judged non-relevant document (grade 0) is a fine hard negative; the run's order is kept
    candidates = ["d3", "d4", "d6", "d7", "d8"]
    for group in groups[:2]:
        assert set(group.docids[1:]) <= set(candidates)
        assert list(group.docids[1:]) == sorted(group.docids[1:], key=candidates.index)
    # no sampling: the top candidates in ranking order
    top = build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=3, seed=1, sample=False)
    assert top[0].docids[1:] == ("d3", "d4", "d6") and top[2].docids[1:] == ("d1", "d2", "d6")
    # too few candidates (q2 has 3): filled from the corpus, never with a relevant document, or left short
    filled = build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=4, seed=1)[2]
    assert filled.docids[1:4] == ("d1", "d2", "d6") and filled.docids[4] not in {"d5", "d1", "d2", "d6"}
    short = build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=4, seed=1, fill_random=False)[2]
    assert short.docids[1:] == ("d1", "d2", "d6")
    # seeded; only the run's top `depth` documents are candidates
    assert build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=3, seed=1) == groups
    for seed in range(5):
        shallow = build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=2, seed=seed, depth=3, fill_random=False)
        assert shallow[0].docids[1:] == ("d3", "d4")  # the top 3 are d3, d2 (relevant), d4
    allowed = set(CORPUS) - {"d2", "d4"}
    restricted = build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=3, seed=1, allowed_docids=allowed)
    assert [g.docids[0] for g in restricted] == ["d1", "d5"]
    assert all(set(g.docids) <= allowed for g in restricted)


def test_skipped_queries_are_counted_and_none_left_is_an_error(caplog):
    with caplog.at_level(logging.WARNING, logger="clir_ot.training.data"):
        build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=2, seed=0, exclude_qids={"q2"})
    assert "skipped 1 of 2 queries" in caplog.text and "1 without a candidate negative" in caplog.text
    assert "q4" in caplog.text
    with pytest.raises(ConsistencyError, match="no training group could be built from 1 queries"):
        build_groups(TOPICS, QRELS, CORPUS, RUN, num_negatives=2, seed=0, exclude_qids={"q1", "q2"})
    with pytest.raises(ConsistencyError, match="has no negatives"):
        TrainingGroup("a query", "a positive", ())


def test_qrels_naming_unknown_documents_are_a_clear_error(tmp_path):
    qrels = {**QRELS, "q2": {"d5": 1, "nope": 1}}
    with pytest.raises(ConsistencyError, match=r"qrels name 1 documents that are not in the corpus: nope"):
        build_groups(TOPICS, qrels, CORPUS, RUN, num_negatives=2, seed=0)
    write_topics(tmp_path / "topics.tsv", TOPICS)
    write_corpus(tmp_path / "corpus.jsonl", [Document(d, t) for d, t in CORPUS.items()])
    write_qrels(tmp_path / "qrels.txt", qrels)
    write_run(tmp_path / "run.txt", {q: [Hit(q, d, s) for d, s in hits.items()] for q, hits in RUN.items()})
    with pytest.raises(InputFormatError, match=r"qrels\.txt:5: document 'nope' is not in the corpus"):
        groups_from_files(tmp_path / "topics.tsv", tmp_path / "qrels.txt", tmp_path / "corpus.jsonl", tmp_path / "run.txt")


def test_triples_reader_groups_lines_and_rejects_empty_fields(tmp_path):
    path = tmp_path / "triples.tsv"
    path.write_text("q one\tp one\tn1\nq one\tp one\tn2\nq two\tp two\tn3\nq one\tp one\tn4\n")
    groups = read_triples(path)
    assert [(g.query, g.positive, g.negatives) for g in groups] == [
        ("q one", "p one", ("n1", "n2")), ("q two", "p two", ("n3",)), ("q one", "p one", ("n4",))]
    assert [len(g.negatives) for g in cut_negatives(groups, 1)] == [1, 1, 1]
    with pytest.raises(ConsistencyError, match="between 1 and 2 negatives.*--negatives"):
        cut_negatives(groups, None)
    with pytest.raises(ConsistencyError, match="group 2 .*has 1 negatives, fewer than the 2 asked"):
        cut_negatives(groups, 2)
    path.write_text("q\tp\tn\nq\t \tn\n")
    with pytest.raises(InputFormatError, match=r"triples\.tsv:2: empty positive field"):
        read_triples(path)
    path.write_text("q\tp\tn\n\tp\tn\n")
    with pytest.raises(InputFormatError, match=r"triples\.tsv:2: empty query field"):
        read_triples(path)
    path.write_text("q\tp\n")
    with pytest.raises(InputFormatError, match=r"triples\.tsv:1: expected 3 tab-separated fields.*found 2"):
        read_triples(path)


def test_jsonl_groups_reader_and_a_group_without_negatives(tmp_path):
    path = tmp_path / "groups.jsonl"
    good = {"qid": "q1", "query": "q", "positive": "p", "negatives": ["n1", "n2"], "positive_id": "d1",
            "negative_ids": ["d2", "d3"]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"query": "q2", "positive": "p2", "negatives": ["n"]}) + "\n")
    groups = read_groups(path)
    assert groups[0].qid == "q1" and groups[0].docids == ("d1", "d2", "d3") and groups[1].docids is None
    path.write_text(json.dumps(good) + "\n" + json.dumps({"query": "q", "positive": "p", "negatives": []}) + "\n")
    with pytest.raises(InputFormatError, match=r"groups\.jsonl:2: the group has no negatives"):
        read_groups(path)
    path.write_text(json.dumps({"query": "q", "negatives": ["n"]}) + "\n")
    with pytest.raises(InputFormatError, match=r"groups\.jsonl:1: missing the 'positive' field"):
        read_groups(path)
    path.write_text(json.dumps({**good, "negative_ids": ["d2"]}) + "\n")
    with pytest.raises(InputFormatError, match=r"groups\.jsonl:1: 'negative_ids' must list one id per negative"):
        read_groups(path)


# --------------------------------------------------------------------------------------------------
# XQuAD cross-fitting


def test_fold_split_and_leakage_guard_on_real_xquad(xquad_collection):
    folds = xquad_collection / "folds.json"
    split = xquad_fold_split(folds, 0)
    other = xquad_fold_split(folds, 1)
    assert split.train_qids == other.test_qids and split.test_qids == other.train_qids
    assert not split.train_qids & split.test_qids and not split.train_paragraphs & split.test_paragraphs
    assert len(split.train_qids | split.test_qids) == 1190 and len(split.train_paragraphs | split.test_paragraphs) == 240
    assert len(split.languages) == 11 and len(split.test_docids) == 11 * len(split.test_paragraphs)
    with pytest.raises(ConfigError, match="no fold 5.*folds 0, 1"):
        xquad_fold_split(folds, 5)

    # the pool qrels judge a question's paragraph relevant in every language: all must stay out of the negatives
    from clir_ot.formats import load_corpus, read_qrels, read_topics

    topics = read_topics(xquad_collection / "topics.xquad.en.tsv")
    qrels = read_qrels(xquad_collection / "qrels.xquad.pool.txt")
    corpus = {}
    for lang in split.languages:
        corpus.update(load_corpus(xquad_collection / "corpus" / lang))
    rng = np.random.default_rng(0)
    docids = sorted(corpus)
    run = {}
    for qid in topics:  # a stand-in first stage: the question's own paragraph in 3 languages first, then random ones
        own = sorted(qrels[qid])[:3]
        rest = [docids[i] for i in rng.choice(len(docids), size=40, replace=False)]
        run[qid] = {d: 100.0 - r for r, d in enumerate(dict.fromkeys(own + rest))}
    groups = build_groups(topics, qrels, corpus, run, num_negatives=7, seed=0, exclude_qids=split.test_qids,
                          allowed_docids=split.train_docids, depth=30)
    assert {g.qid for g in groups} <= split.train_qids
    for group in groups:
        paragraph = group.docids[0].split("-")[1]
        assert not [d for d in group.docids[1:] if d.split("-")[1] == paragraph], "another language's positive leaked in"
    checked = assert_no_leakage(groups, folds, 0)
    assert checked["qids_checked"] == len({g.qid for g in groups}) > 500

    test_qid = sorted(split.test_qids)[0]
    test_paragraph = sorted(split.test_paragraphs)[0]
    g = groups[0]
    planted = {
        "question": TrainingGroup(g.query, g.positive, g.negatives, test_qid, g.docids),
        "paragraph in German": TrainingGroup(g.query, g.positive, g.negatives, g.qid,
                                             g.docids[:-1] + (f"de-{test_paragraph:03d}",)),
        "paragraph in a language the folds lack": TrainingGroup(g.query, g.positive, g.negatives, g.qid,
                                                                (f"ro-{test_paragraph:03d}",) + g.docids[1:]),
    }
    for what, leak in planted.items():
        with pytest.raises(LeakageError, match="of test fold 0"):
            assert_no_leakage(groups[1:] + [leak], folds, 0)
    with pytest.raises(LeakageError, match="test paragraphs"):
        assert_no_leakage([f"th-{test_paragraph:03d}"], split)
    with pytest.raises(LeakageError, match="cannot be checked"):
        assert_no_leakage([TrainingGroup("q", "p", ("n",))], split)


def test_cross_fitting_data_spec_passes_the_guard(xquad_collection, tmp_path):
    split = xquad_fold_split(xquad_collection / "folds.json", 1)
    docids = [f"en-{p:03d}" for p in range(240)]
    from clir_ot.formats import read_topics

    topics = read_topics(xquad_collection / "topics.xquad.en.tsv")
    run = {q: [Hit(q, d, float(-((i * 7 + j) % 240))) for j, d in enumerate(docids)][:60] for i, q in enumerate(topics)}
    write_run(tmp_path / "run.txt", run)
    spec = DataSpec(topics=xquad_collection / "topics.xquad.en.tsv", qrels=xquad_collection / "qrels.xquad.cross.en.txt",
                    corpus=xquad_collection / "corpus" / "en", run=tmp_path / "run.txt",
                    folds=xquad_collection / "folds.json", exclude_fold=1, valid_fraction=0.1)
    prepared = load_training_data(spec, negatives=3, valid_negatives=9, depth=60)
    leak_check = prepared.info["xquad"]["leakage_check"]
    assert leak_check["train"]["test_fold"] == 1 and "valid" in leak_check
    train_qids = {g.qid for g in prepared.train}
    valid_qids = {g.qid for g in prepared.valid}
    assert train_qids <= split.train_qids and valid_qids <= split.train_qids and not train_qids & valid_qids
    held_paragraphs = {g.docids[0] for g in prepared.valid}
    assert not held_paragraphs & {g.docids[0] for g in prepared.train}  # held out whole paragraphs at a time
    assert 0.05 < len(prepared.valid) / (len(prepared.train) + len(prepared.valid)) < 0.2


# --------------------------------------------------------------------------------------------------
# Losses


def test_listwise_loss_matches_hand_computed_values():
    e = math.e
    # -log(e^2 / (e^2 + 2)) = 0.2395447...; -log(1 / (1 + e + 1/e)) = 1.4076059...
    first, second = -math.log(e ** 2 / (e ** 2 + 2)), -math.log(1 / (1 + e + 1 / e))
    assert first == pytest.approx(0.23954473, abs=1e-7) and second == pytest.approx(1.40760596, abs=1e-7)
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    assert float(ListwiseSoftmaxLoss()(scores)) == pytest.approx((first + second) / 2, abs=1e-6)
    # temperature 0.5 doubles the scores: -log(e^4 / (e^4 + 2))
    assert float(ListwiseSoftmaxLoss(temperature=0.5)(scores[:1])) == pytest.approx(-math.log(e ** 4 / (e ** 4 + 2)), abs=1e-6)
    # one negative: RankNet's logistic loss log(1 + e^(s_neg - s_pos))
    assert float(ListwiseSoftmaxLoss()(torch.tensor([[0.5, 1.5]]))) == pytest.approx(math.log(1 + e), abs=1e-6)


def test_pairwise_loss_matches_hand_computed_values():
    scores = torch.tensor([[2.0, 1.5, 0.0], [0.0, 1.0, -1.0]])
    # group 1: (max(0, 1 - 0.5) + max(0, 1 - 2)) / 2 = 0.25; group 2: (max(0, 1 + 1) + max(0, 1 - 1)) / 2 = 1
    assert float(PairwiseMarginLoss(margin=1.0)(scores)) == pytest.approx((0.25 + 1.0) / 2, abs=1e-7)
    assert float(PairwiseMarginLoss(margin=0.0)(scores)) == pytest.approx((0 + 0 + 1 + 0) / 4, abs=1e-7)
    reference = torch.nn.MarginRankingLoss(margin=1.0)(scores[:, :1].expand(-1, 2).reshape(-1), scores[:, 1:].reshape(-1),
                                                      torch.ones(4))
    assert float(PairwiseMarginLoss(margin=1.0)(scores)) == pytest.approx(float(reference), abs=1e-7)


@pytest.mark.parametrize("loss", [ListwiseSoftmaxLoss(), PairwiseMarginLoss()])
def test_losses_check_shapes_with_a_fix(loss):
    with pytest.raises(ValueError, match=r"expected scores of shape \(batch, 1 \+ negatives\), got shape \(6,\); fix"):
        loss(torch.zeros(6))
    with pytest.raises(ValueError, match=r"at least 2 scores per group.*got shape \(3, 1\); fix"):
        loss(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="floating-point"):
        loss(torch.zeros(2, 3, dtype=torch.long))


def test_reciprocal_rank_breaks_ties_against_the_positive():
    rr = reciprocal_ranks([np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0]), np.array([0.0] + [1.0] * 10)])
    assert rr.tolist() == [1.0, 0.5, 0.0]


# --------------------------------------------------------------------------------------------------
# Trainer: configuration, data order, checkpoints


def test_config_rejects_unknown_keys_readably(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) epoch, learning_rate; known: .*epochs.*lr"):
        TrainingConfig.from_dict({"epoch": 2, "learning_rate": 1e-3})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"lr": 1e-4, "batchsize": 4}))
    with pytest.raises(ConfigError, match=r"config\.json: unknown setting\(s\) batchsize"):
        TrainingConfig.from_json(path)
    path.write_text(json.dumps({"lr": 1e-4, "batch_size": 4}))
    assert TrainingConfig.from_json(path, {"batch_size": 2}) == TrainingConfig(lr=1e-4, batch_size=2)
    with pytest.raises(ConfigError, match="fp16 training needs loss scaling"):
        TrainingConfig(dtype="fp16")
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        TrainingConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"setting lr must be a number, got 'fast' \(str\)"):
        TrainingConfig.from_dict({"lr": "fast"})
    with pytest.raises(ConfigError, match=r"setting max_steps must be an integer or null, got 2.5"):
        TrainingConfig.from_dict({"max_steps": 2.5})


def test_data_order_is_seeded_and_shards_are_disjoint(data, tmp_path):
    model = CrossEncoderModel.from_pretrained(data / "base")
    groups = [TrainingGroup(f"q{i}", f"p{i}", (f"n{i}",)) for i in range(21)]
    config = TrainingConfig(batch_size=2, grad_accum=2, seed=5)

    def trainer(rank: int, world: int) -> Trainer:
        return Trainer(model, groups, config, tmp_path, dist=DistInfo(rank=rank, world_size=world))

    single = Trainer(model, groups, TrainingConfig(batch_size=4, grad_accum=2, seed=5), tmp_path)
    ranks = [trainer(0, 2), trainer(1, 2)]
    assert single.steps_per_epoch == ranks[0].steps_per_epoch == 2  # 21 groups, global batch 8
    for step in range(4):
        shards = [t.micro_batches(step) for t in ranks]
        for a, micro in enumerate(single.micro_batches(step)):
            assert not set(shards[0][a]) & set(shards[1][a])
            assert sorted(micro) == sorted([*shards[0][a], *shards[1][a]])  # same groups in every micro-batch
    epoch0, epoch1 = single.epoch_order(0), single.epoch_order(1)
    assert sorted(epoch0) == list(range(21)) and not np.array_equal(epoch0, epoch1)
    assert np.array_equal(epoch0, Trainer(model, groups, single.config, tmp_path).epoch_order(0))


def test_checkpoint_is_never_visible_half_written(tmp_path):
    root = tmp_path / "checkpoints"

    def complete(folder: Path) -> None:
        (folder / "model.bin").write_bytes(b"w" * 100)
        (folder / ckpt.STATE_FILE).write_text("{}")

    def failing(folder: Path) -> None:
        (folder / "model.bin").write_bytes(b"w" * 100)
        raise OSError("disk full")

    ckpt.write_checkpoint(root, 3, complete)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_checkpoint(root, 6, failing)
    assert sorted(p.name for p in root.iterdir()) == ["step-000003"]
    for step in (6, 9, 12):
        ckpt.write_checkpoint(root, step, complete)
    assert ckpt.prune_checkpoints(root, 2) and [s for s, _ in ckpt.list_checkpoints(root)] == [9, 12]
    (root / "step-000015").mkdir()  # a folder without its state file is not a checkpoint
    assert ckpt.latest_checkpoint(root) == root / "step-000012"


# --------------------------------------------------------------------------------------------------
# Trainer end to end through the CLI: manifest, model folder, best checkpoint


def test_train_cli_writes_a_loadable_model_and_a_manifest(data, tmp_path):
    out = tmp_path / "teacher"
    args = collection_args(data, out, "--batch-size", "4", "--epochs", "2", "--save-every", "3", "--keep-last", "2",
                           "--warmup", "2", "--seed", "7")
    assert main(args) == 0
    manifest = json.loads((out / "training.json").read_text())
    assert manifest["base_model"]["location"] == str(data / "base")
    assert manifest["base_model"]["sha256"]["model.safetensors"] == sha256_of(data / "base" / "model.safetensors")
    files = manifest["data"]["files"]
    assert set(files) == {"topics", "qrels", "corpus", "run"}
    assert all(files[k]["sha256"] == sha256_of(data / Path(files[k]["path"]).name) for k in files)
    config = manifest["config"]
    assert config == {**TrainingConfig().to_dict(), "batch_size": 4, "epochs": 2, "save_every": 3, "keep_last": 2,
                      "warmup_steps": 2, "seed": 7, "negatives": 3, "valid_negatives": 5, "max_length": 32, "lr": 1e-3}
    resolved = manifest["resolved"]
    train_groups = manifest["data"]["train_groups"]
    assert resolved["steps_per_epoch"] == train_groups // 4 and manifest["steps"] == 2 * (train_groups // 4)
    assert resolved["precision"] == resolve_precision("auto") and resolved["world_size"] == 1
    assert resolved["fused_adamw"] is True and resolved["passages_per_group"] == 4
    assert resolved["hardware"] == hardware_id() and resolved["threads"] == torch.get_num_threads()
    assert manifest["code"]["clir_ot"] == clir_ot.__version__ and "torch" in manifest["code"]
    if (Path(clir_ot.__file__).parents[1] / ".git").exists():
        assert len(manifest["code"]["git_commit"]) == 40
    metrics = manifest["metrics"]
    assert metrics["final"]["step"] == manifest["steps"] and 0 <= metrics["final"]["MRR@10"] <= 1
    assert metrics["best"]["metric"] == "MRR@10" and metrics["best"]["value"] >= metrics["final"]["MRR@10"]
    assert math.isfinite(metrics["train_loss"])
    assert manifest["time"]["wall_s"] > 0 and manifest["time"]["examples_per_s"] > 0
    assert manifest["time"]["examples"] == manifest["steps"] * 4

    # the output folder is a model the reranker loads; best/ too, with its step
    from clir_ot.rerank import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(out), max_length=32, dtype="fp32")
    assert reranker.model.config.max_length == 32 and len(reranker.score("alpha beta", ["gamma", "delta"])) == 2
    assert json.loads((out / "best" / "best.json").read_text())["step"] == metrics["best"]["step"]
    CrossEncoderModel.from_pretrained(out / "best")
    # the log: loss, learning rate, speed, and the validations
    records = log_records(out)
    losses = [r for r in records if "loss" in r]
    valid = [r for r in records if "valid" in r]
    assert losses and all({"lr", "examples_per_s", "pairs_per_s", "epoch"} <= r.keys() for r in losses)
    assert [r["step"] for r in valid] == sorted({*range(3, manifest["steps"] + 1, 3), manifest["steps"]})
    assert len(ckpt.list_checkpoints(out / "checkpoints")) == 2
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]

    # a second run into the same folder must resume or go elsewhere; resuming a finished run changes nothing
    assert main(args) == 2
    before = (out / "training.json").read_text()
    assert main(args + ["--resume"]) == 0 and (out / "training.json").read_text() == before


def test_train_cli_bad_inputs_are_clear_errors(data, tmp_path, caplog):
    triples = tmp_path / "triples.tsv"
    triples.write_text("a query\ta positive\ta negative\nanother query\t\ta negative\n")
    with caplog.at_level(logging.ERROR):
        assert main(["train", "--base", str(data / "base"), "--out", str(tmp_path / "o1"), "--train", str(triples)]) == 2
    assert "triples.tsv:2: empty positive field" in caplog.text
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"warmup": 0.1}))
    assert main(collection_args(data, tmp_path / "o2", "--config", str(config))) == 2
    assert "unknown setting(s) warmup" in caplog.text
    assert main(["train", "--out", str(tmp_path / "o3"), "--topics", str(data / "topics.tsv")]) == 2
    assert "needs --qrels, --corpus, --run too" in caplog.text


def test_library_trainer_with_triples_and_the_pairwise_loss(data, tmp_path):
    """The Trainer without the CLI: groups from a triples file, pairwise loss, no validation (so no best/)."""
    from clir_ot.formats import load_corpus

    corpus = list(load_corpus(data / "corpus.jsonl").values())
    triples = tmp_path / "triples.tsv"
    triples.write_text("".join(f"{' '.join(corpus[i].split()[:3])}\t{corpus[i]}\t{corpus[(i + 7) % 40]}\n"
                               for i in range(24)))
    groups = read_triples(triples)
    model = CrossEncoderModel.from_pretrained(data / "base")
    config = TrainingConfig(loss="pairwise", margin=0.5, batch_size=4, epochs=2, lr=1e-3, save_every=4, dtype="fp32",
                            max_length=32)
    result = Trainer(model, groups, config, tmp_path / "out", manifest={"note": "library"}).train()
    assert result.steps == 12 and result.best is None and not (tmp_path / "out" / "best").exists()
    manifest = json.loads((tmp_path / "out" / "training.json").read_text())
    assert manifest["note"] == "library" and manifest["config"]["loss"] == "pairwise"
    assert manifest["metrics"]["best"] is None and math.isfinite(manifest["metrics"]["train_loss"])
    assert max_difference(final_weights(tmp_path / "out"), final_weights(data / "base")) > 0  # it trained


# --------------------------------------------------------------------------------------------------
# Subprocesses: exact resume after SIGKILL, DDP with 2 processes

CHILD = '''
import os, signal, sys
import torch
torch.set_num_threads(1)
stop_in = sys.argv[1]
if stop_in:  # fault injection: freeze this process while it writes the checkpoint folder named stop_in
    original_save = torch.save
    def save(obj, f, *args, **kwargs):
        if stop_in in str(getattr(f, "name", f)):
            os.kill(os.getpid(), signal.SIGSTOP)
        return original_save(obj, f, *args, **kwargs)
    torch.save = save
from clir_ot.cli import main
sys.exit(main(sys.argv[2:]))
'''


def test_resume_after_sigkill_ends_with_the_same_weights(data, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    settings = ["--batch-size", "2", "--max-steps", "12", "--save-every", "3", "--keep-last", "2", "--dtype", "fp32"]
    reference_out, out = tmp_path / "reference", tmp_path / "killed"
    reference = start([sys.executable, str(script), "", *collection_args(data, reference_out, *settings)],
                      tmp_path / "reference.log")
    # the second run freezes itself inside the checkpoint of step 6, after the one of step 3 appeared
    killed = start([sys.executable, str(script), ".step-000006.", *collection_args(data, out, *settings)],
                   tmp_path / "killed.log")
    try:
        wait_until_stopped(killed, tmp_path / "killed.log")
        checkpoints = out / "checkpoints"
        visible = [p.name for p in checkpoints.iterdir() if not p.name.startswith(".")]
        hidden = [p for p in checkpoints.iterdir() if p.name.startswith(".step-000006.")]
        # atomicity: the half-written checkpoint (model written, optimizer not yet) is invisible
        assert visible == ["step-000003"] and len(hidden) == 1
        assert (hidden[0] / "model" / "model.safetensors").is_file() and not (hidden[0] / ckpt.STATE_FILE).exists()
        assert ckpt.latest_checkpoint(checkpoints) == checkpoints / "step-000003"
    finally:
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "training.json").exists()

    resumed = start([sys.executable, str(script), "", *collection_args(data, out, *settings, "--resume")],
                    tmp_path / "resumed.log")
    finish(reference, tmp_path / "reference.log")
    finish(resumed, tmp_path / "resumed.log")
    assert "resumed from" in (tmp_path / "resumed.log").read_text() and "at step 3 of 12" in (tmp_path / "resumed.log").read_text()
    difference = max_difference(final_weights(reference_out), final_weights(out))
    assert difference <= 1e-6, f"resumed weights differ from the uninterrupted run's by {difference}"
    def untimed(records):  # the same losses, learning rates and validations; only the timings differ
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in records]

    assert untimed(log_records(out)) == untimed(log_records(reference_out))
    manifest = json.loads((out / "training.json").read_text())
    assert manifest["time"]["resumed_from_step"] == 3 and manifest["steps"] == 12
    assert manifest["metrics"]["best"] == json.loads((reference_out / "training.json").read_text())["metrics"]["best"]
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


def test_two_process_ddp_matches_single_process_training(data, tmp_path):
    """2 CPU processes (torchrun, gloo) x 2 groups x 2 accumulation == 1 process x 4 groups x 2 accumulation.

    Tolerance 1e-5 on every weight (the gradients are the same sums taken in another order; measured
    differences are about 1e-6), with dropout off and Adam's eps raised to 1e-4. Why eps: the listwise
    loss does not change when all scores of a group shift together, so the true gradient of the head's
    output bias is exactly zero and the computed one is rounding noise that differs between the runs.
    Adam divides by sqrt(v) + eps, so with the default eps = 1e-8 that noise moves the bias by about the
    learning rate per step (6e-4 apart after 9 steps here, while every loss and MRR matched); eps = 1e-4
    damps noise-sized gradients only.
    """
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"adam_eps": 1e-4, "dropout": 0.0, "dtype": "fp32"}))
    common = ["--epochs", "3", "--grad-accum", "2", "--save-every", "3", "--config", str(config)]
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    ddp = start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "clir_ot", "--",
                 *collection_args(data, ddp_out, "--batch-size", "2", *common)], tmp_path / "ddp.log")
    try:
        assert main(collection_args(data, single_out, "--batch-size", "4", *common)) == 0
    finally:
        finish(ddp, tmp_path / "ddp.log")
    ddp_manifest = json.loads((ddp_out / "training.json").read_text())
    single_manifest = json.loads((single_out / "training.json").read_text())
    assert ddp_manifest["resolved"]["world_size"] == 2 and ddp_manifest["resolved"]["backend"] == "gloo"
    assert ddp_manifest["resolved"]["global_batch"] == single_manifest["resolved"]["global_batch"] == 8
    assert ddp_manifest["steps"] == single_manifest["steps"] > 3
    difference = max_difference(final_weights(ddp_out), final_weights(single_out))
    assert difference <= 1e-5, f"DDP weights differ from single-process weights by {difference}"
    ddp_log, single_log = log_records(ddp_out), log_records(single_out)
    assert len(ddp_log) == len(single_log)  # only rank 0 writes
    for a, b in zip(ddp_log, single_log):
        assert a["step"] == b["step"]
        if "loss" in a:
            assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        else:
            assert a["valid"]["MRR@10"] == pytest.approx(b["valid"]["MRR@10"], abs=1e-6)


def test_a_finished_run_is_reused_only_for_its_own_recipe(tmp_path):
    """A finished training (its manifest) is never retrained; reusing it for another recipe is refused."""
    import dataclasses
    import json

    from clir_ot.errors import ConfigError
    from clir_ot.training import TrainingConfig
    from clir_ot.training import check_finished_recipe
    from clir_ot.training.trainer import MANIFEST

    config = TrainingConfig(epochs=3, lr=1e-4, negatives=7)
    saved = config.to_dict()
    del saved["max_grad_norm"]  # a setting the run's manifest lacks counts as its default
    (tmp_path / MANIFEST).write_text(json.dumps({"config": saved}), encoding="utf-8")
    check_finished_recipe(tmp_path, config)
    check_finished_recipe(tmp_path, dataclasses.replace(config, save_every=7, log_every=3))  # model unchanged
    check_finished_recipe(tmp_path / "not-trained", dataclasses.replace(config, epochs=1))  # nothing to check
    with pytest.raises(ConfigError, match=r"already holds a finished training with other settings \(epochs: 3 -> 1\)"):
        check_finished_recipe(tmp_path, dataclasses.replace(config, epochs=1))
    with pytest.raises(ConfigError, match=r"soft_weight: None -> 1.0"):  # recipe settings at default are not written
        check_finished_recipe(tmp_path, dataclasses.replace(config, soft_weight=1.0))
