"""Dense first stage: faiss index in Pyserini's layout, searched by clir-ot and by Pyserini."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from clir_ot.errors import ConfigError
from clir_ot.formats import Document, load_run, write_corpus
from clir_ot.models import BiEncoderConfig, BiEncoderModel
from clir_ot.retrieval.dense import DenseSearcher, PyseriniQueryEncoder, dense_search_to_run, encode_corpus

DOCS = [Document(f"d{i}", f"passage number {i} about topic {i % 3} and more words {i * 7}") for i in range(12)]


@pytest.fixture
def bi_encoder(tiny_encoder):
    model, tokenizer = tiny_encoder
    config = BiEncoderConfig(pooling="mean", normalize=True, query_prefix="query: ", passage_prefix="passage: ")
    return BiEncoderModel(copy.deepcopy(model), tokenizer, config)


@pytest.fixture
def index(tmp_path, bi_encoder):
    write_corpus(tmp_path / "c.jsonl", DOCS)
    encode_corpus(tmp_path / "c.jsonl", tmp_path / "faiss", bi_encoder, batch_size=4, shard_size=5)
    return tmp_path / "faiss"


def test_search_equals_brute_force(index, bi_encoder, tmp_path):
    passages = bi_encoder.encode_passages([d.contents for d in DOCS])
    queries = {"q1": "topic 1 words", "q2": "passage number 5"}
    q = bi_encoder.encode_queries(list(queries.values()))
    searcher = DenseSearcher(index, bi_encoder)
    results = dict(searcher.batch_search(queries, k=5))
    for row, qid in enumerate(queries):
        scores = passages @ q[row]
        best = np.argsort(-scores, kind="stable")[:5]
        assert [h.docid for h in results[qid]] == [DOCS[i].docid for i in best]
        np.testing.assert_allclose([h.score for h in results[qid]], scores[best], rtol=1e-5, atol=1e-6)
    assert (index / "docid").read_text().split() == [d.docid for d in DOCS]
    assert not list(tmp_path.glob(".faiss*"))  # shards and work folders are gone
    dense_search_to_run(searcher, queries, tmp_path / "run.txt", k=3)
    assert {q: len(d) for q, d in load_run(tmp_path / "run.txt").items()} == {"q1": 3, "q2": 3}


def test_pyserini_faiss_searcher_reads_the_index(index, bi_encoder):
    from pyserini.search.faiss import FaissSearcher

    theirs = FaissSearcher(str(index), PyseriniQueryEncoder(bi_encoder)).search("topic 2 words", k=12)
    ours = DenseSearcher(index, bi_encoder).search("topic 2 words", k=12)
    # the same documents with the same scores (a random tiny model makes near-ties, ordered differently)
    theirs_scores = {r.docid: float(r.score) for r in theirs}
    assert set(theirs_scores) == {h.docid for h in ours}
    for hit in ours:
        assert theirs_scores[hit.docid] == pytest.approx(hit.score, rel=1e-5, abs=1e-6)


def test_encoding_resumes_from_finished_shards_after_a_failed_job(tmp_path, bi_encoder):
    """A job that fails (raises) on its second shard keeps the first; the rerun encodes only the others.
    (A real SIGKILL of ``clir-ot encode`` is tested in tests/test_kill.py.)"""
    write_corpus(tmp_path / "c.jsonl", DOCS)

    class Failing:  # the real model, failing on its second shard
        def __init__(self, model):
            self.model, self.calls = model, 0
            self.name_or_path, self.config = model.name_or_path, model.config
            self.parameters_digest = model.parameters_digest

        def encode_passages(self, texts, **kwargs):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("encoding failed")
            return self.model.encode_passages(texts, **kwargs)

    with pytest.raises(RuntimeError, match="encoding failed"):
        encode_corpus(tmp_path / "c.jsonl", tmp_path / "faiss", Failing(bi_encoder), shard_size=5)
    assert (tmp_path / ".faiss.encoding" / "shard-00000.npy").is_file() and not (tmp_path / "faiss").exists()
    counting = Failing(bi_encoder)
    counting.calls = 10  # no more failures
    encode_corpus(tmp_path / "c.jsonl", tmp_path / "faiss", counting, shard_size=5)
    assert counting.calls == 12  # shards 1 and 2 only: shard 0 was reused
    again = DenseSearcher(tmp_path / "faiss", bi_encoder).search("topic 1", k=12)
    assert len(again) == 12

    # the same folder name with other weights (retrained in place): nothing of the failed job is reused
    with pytest.raises(RuntimeError, match="encoding failed"):
        encode_corpus(tmp_path / "c.jsonl", tmp_path / "again", Failing(bi_encoder), shard_size=5)
    with torch.no_grad():
        next(bi_encoder.parameters()).add_(0.01)
    retrained = Failing(bi_encoder)
    retrained.calls = 10
    encode_corpus(tmp_path / "c.jsonl", tmp_path / "again", retrained, shard_size=5)
    assert retrained.calls == 13  # all three shards encoded anew


def test_hnsw_index_and_errors(tmp_path, bi_encoder):
    write_corpus(tmp_path / "c.jsonl", DOCS)
    encode_corpus(tmp_path / "c.jsonl", tmp_path / "hnsw", bi_encoder, index_type="hnsw", hnsw_m=8)
    flat_dir = tmp_path / "flat"
    encode_corpus(tmp_path / "c.jsonl", flat_dir, bi_encoder)
    exact = DenseSearcher(flat_dir, bi_encoder).search("topic 0", k=3)
    approx = DenseSearcher(tmp_path / "hnsw", bi_encoder).search("topic 0", k=3)
    # 12 vectors: HNSW finds the exact top 3 (compared by score: the tiny model makes near-ties)
    np.testing.assert_allclose([h.score for h in approx], [h.score for h in exact], rtol=1e-5)
    with pytest.raises(ConfigError, match="index type 'ivf'"):
        encode_corpus(tmp_path / "c.jsonl", tmp_path / "x", bi_encoder, index_type="ivf")
    with pytest.raises(ConfigError, match="no 'index' file"):
        DenseSearcher(tmp_path, bi_encoder)


def test_torchrun_with_two_processes_writes_the_single_process_index(tmp_path):
    """``torchrun --nproc-per-node 2 -m clir_ot encode`` (gloo, CPU) shares the shards and writes the
    index one ``clir-ot encode`` writes: the same faiss bytes and docids, no work folder left."""
    import subprocess
    import sys

    import torch

    from child_processes import child_env
    from clir_ot.models import tiny_random_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        model = BiEncoderModel(*tiny_random_model("bert", seed=4), BiEncoderConfig(pooling="mean", normalize=True))
    model.save_pretrained(tmp_path / "model")
    write_corpus(tmp_path / "c.jsonl", DOCS)

    def command(index):  # 12 passages in shards of 5: process 0 encodes shards 0 and 2, process 1 shard 1
        return ["-m", "clir_ot", "encode", "--corpus", str(tmp_path / "c.jsonl"), "--index", str(index),
                "--encoder", str(tmp_path / "model"), "--batch-size", "2", "--shard-size", "5", "--device", "cpu",
                "--dtype", "fp32"]

    single = subprocess.run([sys.executable, *command(tmp_path / "single" / "faiss")], capture_output=True,
                            text=True, env=child_env(), timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    sharded = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                              *command(tmp_path / "sharded" / "faiss")], capture_output=True, text=True,
                             env=child_env(), timeout=300)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert "with 2 processes" in sharded.stderr
    for name in ("index", "docid"):
        assert (tmp_path / "sharded" / "faiss" / name).read_bytes() == (tmp_path / "single" / "faiss" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == ["faiss"]


class _Stop(Exception):
    pass


def test_process_one_of_two_encodes_only_its_shards(tmp_path, bi_encoder):
    """Rank 1 of 2 with 12 passages in shards of 5 writes shard 1 alone (0 and 2 are rank 0's)."""
    write_corpus(tmp_path / "c.jsonl", DOCS)
    work = tmp_path / ".faiss.encoding"
    (work).mkdir()  # rank 0 would have made it (and stamped it) before the first barrier
    seen = []

    class RankOne:
        rank, world_size = 1, 2

        def barrier(self):
            seen.append(sorted(p.name for p in work.glob("shard-*")))
            if len(seen) == 2:  # every process's shards are written: what did this one write?
                raise _Stop

        def gather(self, obj):
            return [obj]

    with pytest.raises(_Stop):
        encode_corpus(tmp_path / "c.jsonl", tmp_path / "faiss", bi_encoder, batch_size=4, shard_size=5, group=RankOne())
    assert seen == [[], ["shard-00001.npy"]]


def test_an_unreadable_stamp_starts_the_encoding_afresh(tmp_path, bi_encoder):
    """A stamp cut short by a kill is not this job's: the work folder is rebuilt, not a crash."""
    write_corpus(tmp_path / "c.jsonl", DOCS)
    work = tmp_path / ".faiss.encoding"
    work.mkdir()
    (work / "stamp.json").write_text('{"corpus_sha')
    (work / "shard-00000.npy").write_bytes(b"not an array")  # would fail np.load if it were kept
    encode_corpus(tmp_path / "c.jsonl", tmp_path / "faiss", bi_encoder, batch_size=4, shard_size=5)
    assert (tmp_path / "faiss" / "index").is_file() and not work.exists()
