"""Reranking sharded over processes: parts by chunk, merged by process 0 into one process's run file."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from clir_ot.errors import ConfigError, ConsistencyError
from clir_ot.formats import Document, Hit, write_corpus, write_run, write_topics
from clir_ot.models import CrossEncoderModel, tiny_random_model
from clir_ot.models.derive import DEFAULT_TINY_TEXTS
from clir_ot.rerank import CrossEncoderReranker, RerankPlan, Shard, rerank_run
from clir_ot.rerank.sharded import merge_parts, part_path, rerank_run_sharded
from clir_ot.training.distributed import DistInfo
from child_processes import child_env

WORDS = " ".join(DEFAULT_TINY_TEXTS).split()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """10 queries x 15 passages, first-stage runs of 6 to 15 hits, and a tiny cross-encoder folder."""
    root = tmp_path_factory.mktemp("sharded")
    rng = random.Random(3)
    docs = {f"d{i:02d}": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))) for i in range(15)}
    write_corpus(root / "corpus.jsonl", [Document(d, t) for d, t in docs.items()])
    topics = {f"q{i:02d}": " ".join(rng.choice(WORDS) for _ in range(3)) for i in range(10)}
    write_topics(root / "topics.tsv", topics)
    run = {q: [Hit(q, d, rng.random()) for d in rng.sample(sorted(docs), rng.randint(6, 15))] for q in topics}
    write_run(root / "run.txt", run, tag="first")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = CrossEncoderModel(*tiny_random_model("bert", seed=5))
    model.save_pretrained(root / "model")
    return root, topics, docs, model


def test_parts_by_chunk_merge_into_the_single_process_file(inputs, tmp_path):
    """bf16 scores depend on the batch a pair is padded in, so a sharded job matches one process's
    bytes only because each process scores the very chunks one process would."""
    root, topics, docs, model = inputs
    reranker = CrossEncoderReranker(model, batch_size=4, max_length=64, dtype="bf16")
    args = dict(depth=8, chunk_pairs=20, tag="ce")
    rerank_run(reranker, root / "run.txt", topics, docs, tmp_path / "single.txt", **args)
    parts = []
    for index in range(3):
        shard = Shard(index, 3)
        parts.append(part_path(tmp_path / "merged.txt", shard))
        report = rerank_run(reranker, root / "run.txt", topics, docs, parts[-1], shard=shard, **args)
        assert 0 < report.queries < len(topics)
    queries = merge_parts(parts, tmp_path / "merged.txt", RerankPlan(root / "run.txt", topics, docs, 8, 20))
    assert queries == len(topics)
    assert (tmp_path / "merged.txt").read_bytes() == (tmp_path / "single.txt").read_bytes()


def test_merging_parts_of_other_settings_is_refused(inputs, tmp_path):
    root, topics, docs, model = inputs
    reranker = CrossEncoderReranker(model, batch_size=4, max_length=64, dtype="fp32")
    parts = [part_path(tmp_path / "out.txt", Shard(i, 2)) for i in range(2)]
    for index, part in enumerate(parts):
        rerank_run(reranker, root / "run.txt", topics, docs, part, depth=8, chunk_pairs=20, shard=Shard(index, 2))
    with pytest.raises(ConsistencyError, match=r"rank1-of-2: expected query 'q\d\d' \(chunk 0\), found query"):
        merge_parts(parts[::-1], tmp_path / "out.txt", RerankPlan(root / "run.txt", topics, docs, 8, 20))
    with pytest.raises(ConsistencyError, match="the part was written for another run or settings"):
        merge_parts(parts, tmp_path / "out.txt", RerankPlan(root / "run.txt", topics, docs, 8, 40))  # other chunks
    assert not (tmp_path / "out.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in parts)  # no temporary file left


@pytest.mark.parametrize("index, count", [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_that_does_not_exist_is_a_config_error(index, count):
    with pytest.raises(ConfigError, match=f"shard {index} of {count} does not exist"):
        Shard(index, count)


def test_torchrun_with_two_processes_writes_the_single_process_run(inputs, tmp_path):
    """``torchrun --nproc-per-node 2 -m clir_ot rerank`` (gloo, CPU) against one ``clir-ot rerank``:
    the same bytes, one report (process 0's, summing both), no part left beside the output."""
    root, _, _, _ = inputs

    def command(out):
        return ["rerank", "--run-file", str(root / "run.txt"), "--topics", str(root / "topics.tsv"),
                "--corpus", str(root / "corpus.jsonl"), "--output", str(out), "--model", str(root / "model"),
                "--depth", "8", "--batch-size", "4", "--max-length", "64", "--dtype", "bf16",
                "--chunk-pairs", "20", "--device", "cpu", "--run-tag", "ce"]

    single = subprocess.run([sys.executable, "-m", "clir_ot", *command(tmp_path / "single" / "run.txt")],
                            capture_output=True, text=True, env=child_env(), timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    sharded = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                              "-m", "clir_ot", *command(tmp_path / "sharded" / "run.txt")],
                             capture_output=True, text=True, env=child_env(), timeout=300)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert (tmp_path / "sharded" / "run.txt").read_bytes() == (tmp_path / "single" / "run.txt").read_bytes()
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == ["run.txt"]
    reports = [json.loads(line) for line in sharded.stderr.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and reports[0]["processes"] == 2
    assert reports[0]["queries"] == 10 and [r["queries"] > 0 for r in reports[0]["ranks"]] == [True, True]


def test_a_finished_output_removes_parts_that_jobs_of_another_process_count_left(inputs, tmp_path):
    """Parts of a 3-process job that never merged are useless once a 1-process job wrote the output."""
    root, topics, docs, model = inputs
    reranker = CrossEncoderReranker(model, batch_size=4, max_length=64, dtype="fp32")
    output = tmp_path / "out.txt"
    stale = part_path(output, Shard(1, 3))
    rerank_run(reranker, root / "run.txt", topics, docs, stale, depth=8, chunk_pairs=20, shard=Shard(1, 3))
    stale.with_name(stale.name + ".signature").write_text("x\n")
    rerank_run_sharded(reranker, root / "run.txt", topics, docs, output, DistInfo(), depth=8, chunk_pairs=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_the_chunk_size_is_part_of_what_an_unfinished_output_resumes_with(inputs):
    root, topics, docs, model = inputs
    reranker = CrossEncoderReranker(model, batch_size=4, max_length=64, dtype="fp32")
    one = RerankPlan(root / "run.txt", topics, docs, 8, 20).signature(reranker)
    assert one != RerankPlan(root / "run.txt", topics, docs, 8, 40).signature(reranker)
    assert one == RerankPlan(root / "run.txt", topics, docs, 8, 20).signature(reranker)


class OneOfTwo:
    """Process ``rank`` of a two-process group whose other process is not running: gather returns
    this process's object only (enough for rank 1, which merges nothing)."""

    def __init__(self, rank: int):
        self.rank, self.world_size = rank, 2

    def barrier(self) -> None:
        pass

    def gather(self, obj):
        return [obj]


def test_a_kept_part_reports_the_queries_and_pairs_its_earlier_job_scored(inputs, tmp_path):
    """A restarted process whose part an earlier job finished scores nothing, yet its report counts
    what the part holds, so the summed report still covers every query."""
    root, topics, docs, model = inputs
    reranker = CrossEncoderReranker(model, batch_size=4, max_length=64, dtype="fp32")
    args = dict(depth=8, chunk_pairs=20)
    first = rerank_run_sharded(reranker, root / "run.txt", topics, docs, tmp_path / "out.txt", OneOfTwo(1), **args)
    again = rerank_run_sharded(reranker, root / "run.txt", topics, docs, tmp_path / "out.txt", OneOfTwo(1), **args)
    assert not first.ranks[0].kept and again.ranks[0].kept
    assert (again.queries, again.pairs) == (first.queries, first.pairs) and first.queries > 0
