"""Kill -9 anywhere, for real: every resumable verb is SIGKILLed in a real subprocess mid-work, dies of
the signal, resumes, and ends with exactly the output of an uninterrupted run; while it lies killed,
no partial file is visible under a final name.

Covered here: ``index``, ``encode``, ``rerank``, ``distill`` and the resumable run writer under them.
``train`` is killed the same way in tests/test_training.py
(``test_resume_after_sigkill_ends_with_the_same_weights``), ``study`` in tests/test_study.py.

How a kill lands mid-work, deterministically: the child (:data:`CHILD`) runs ``clir_ot.cli.main`` and
freezes itself with SIGSTOP at one named call that leaves the job's own progress on disk (a finished
encoding shard, a journalled rerank chunk, half a training checkpoint, a Lucene index not yet renamed
into place). The test waits until the child is stopped, looks at the disk, and sends SIGKILL, which
ends the frozen process with its files open and its buffers unflushed, without any cleanup — as at
any other moment. The freeze point is in the test's child script; the library is not changed for it.
Tiny random models and small generated collections throughout; every child runs one torch thread.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clir_ot.formats import Document, Hit, write_corpus, write_run, write_topics
from clir_ot.models import BiEncoderModel, CrossEncoderModel, tiny_random_model

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega").split()

CHILD = r'''
"""Run one clir-ot command; with a freeze spec, stop this process (SIGSTOP) at the n-th matching call.

argv[1]: JSON, {} or {"call": "module:attr[.attr]", "arg": i, "match": glob, "nth": n, "when": "before"|"after"}:
freeze before/after the n-th call of that function whose i-th positional argument (its str, or its
.name for a file object) matches the glob. argv[2:]: the clir-ot command line.
"""
import fnmatch, importlib, json, os, signal, sys

import torch

torch.set_num_threads(1)
spec = json.loads(sys.argv[1])
if spec:
    module_name, _, attr_path = spec["call"].partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = attr_path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)
    seen = [0]

    def freezing(*args, **kwargs):
        value = args[spec["arg"]] if len(args) > spec["arg"] else None
        freeze = False
        if value is not None and not isinstance(value, (str, os.PathLike)):
            value = getattr(value, "name", value)  # an open file: its path
        if value is not None and fnmatch.fnmatch(str(value), spec["match"]):
            seen[0] += 1
            freeze = seen[0] == spec["nth"]
        if freeze and spec["when"] == "before":
            os.kill(os.getpid(), signal.SIGSTOP)
        result = original(*args, **kwargs)
        if freeze and spec["when"] == "after":
            os.kill(os.getpid(), signal.SIGSTOP)
        return result

    setattr(owner, name, freezing)
from clir_ot.cli import main

sys.exit(main(sys.argv[2:]))
'''


# --------------------------------------------------------------------------------------------------
# Child processes


def without_clock(manifest: dict) -> dict:
    """A manifest less its wall-clock entry (the one field two equal runs need not share)."""
    return {k: v for k, v in manifest.items() if k != "seconds"}


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class Child:
    """One ``clir-ot`` command in a subprocess, its output in ``<name>.log``."""

    def __init__(self, tmp_path: Path, name: str, args: list[str], freeze: dict | None = None):
        script = tmp_path / "child.py"
        if not script.is_file():
            script.write_text(CHILD)
        self.log = tmp_path / f"{name}.log"
        self.freeze = freeze
        with open(self.log, "wb") as handle:
            self.process = subprocess.Popen([sys.executable, str(script), json.dumps(freeze or {}), *args],
                                            stdout=handle, stderr=subprocess.STDOUT, env=child_env())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_frozen(self, timeout: float = 300) -> None:
        """Block until the child stopped itself at its freeze point; fail if it ended or never got there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.process.pid, os.WUNTRACED | os.WNOHANG)
            if pid and os.WIFSTOPPED(status):
                return
            if pid:
                self.process.returncode = os.waitstatus_to_exitcode(status)
                raise AssertionError(f"the child ended (exit {self.process.returncode}) before its freeze point "
                                     f"{self.freeze}:\n{self.output()[-4000:]}")
            time.sleep(0.02)
        self.process.kill()
        raise AssertionError(f"the child never reached its freeze point {self.freeze}")

    def sigkill(self) -> None:
        """SIGKILL the (frozen) child and check that the signal is what ended it (a child that already
        ended, reported by :meth:`wait_until_frozen`, is left alone so that its report is the error)."""
        if self.process.returncode is not None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=60) == -signal.SIGKILL

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def finish(self, timeout: float = 300) -> str:
        code = self.process.wait(timeout=timeout)
        assert code == 0, f"exit {code}:\n{self.output()[-4000:]}"
        return self.output()


def visible(folder: Path) -> list[str]:
    """The names a reader sees in ``folder``: everything but hidden (dot) entries."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.rglob(pattern) if any(part.startswith(".") for part in p.relative_to(folder).parts))


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


# --------------------------------------------------------------------------------------------------
# index


def test_index_killed_before_it_is_renamed_into_place_is_rebuilt_the_same(tmp_path):
    """``clir-ot index`` builds in a hidden folder; killed once Lucene has written it there, the index
    name does not exist; the rerun removes that folder and builds an index that answers every query as
    the uninterrupted one."""
    from clir_ot.retrieval.lucene import BM25Searcher, read_index_info, search_to_run

    rng = random.Random(0)
    write_corpus(tmp_path / "corpus.jsonl", [Document(f"d{i:03d}", sentence(rng, 12)) for i in range(300)])
    topics = {f"q{i:02d}": sentence(rng, 3) for i in range(20)}
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    killed_dir.mkdir()
    reference_dir.mkdir()

    def command(index: Path) -> list[str]:
        return ["index", "--input", str(tmp_path / "corpus.jsonl"), "--index", str(index), "--language", "en"]

    reference = Child(tmp_path, "reference", command(reference_dir / "idx"))
    # frozen just before the finished index (manifest written) is renamed to its name
    killed = Child(tmp_path, "killed", command(killed_dir / "idx"),
                   freeze={"call": "os:replace", "arg": 1, "match": str(killed_dir / "idx"), "nth": 1, "when": "before"})
    try:
        killed.wait_until_frozen()
        assert visible(killed_dir) == []
        assert hidden(killed_dir, "segments_*"), "Lucene should have written the index into the hidden folder"
    finally:
        killed.sigkill()
    assert visible(killed_dir) == []  # nothing under the index's name after the kill either

    Child(tmp_path, "rerun", command(killed_dir / "idx")).finish()
    reference.finish()
    assert visible(killed_dir) == ["idx"]
    assert not hidden(killed_dir, "*"), "the rerun removes the killed run's work folder"
    ours, theirs = read_index_info(killed_dir / "idx"), read_index_info(reference_dir / "idx")
    assert without_clock(ours.to_json()) == without_clock(theirs.to_json())
    search_to_run(BM25Searcher(killed_dir / "idx"), topics, tmp_path / "killed.txt", k=50)
    search_to_run(BM25Searcher(reference_dir / "idx"), topics, tmp_path / "reference.txt", k=50)
    run = (tmp_path / "killed.txt").read_bytes()
    assert run == (tmp_path / "reference.txt").read_bytes() and len(run.splitlines()) > 200


# --------------------------------------------------------------------------------------------------
# encode


def test_encode_killed_after_a_shard_resumes_from_it_to_the_same_vectors(tmp_path):
    """``clir-ot encode`` of 3 shards (10,000 passages each) killed after its first shard: the rerun
    keeps that shard (same file, untouched), encodes the other two and writes the same faiss vectors,
    docids and manifest as an uninterrupted run."""
    import faiss

    rng = random.Random(1)
    write_corpus(tmp_path / "corpus.jsonl", [Document(f"p{i:05d}", sentence(rng, 6)) for i in range(20_500)])
    BiEncoderModel(*tiny_random_model("bert", WORDS, seed=3)).save_pretrained(tmp_path / "encoder")

    def command(index: Path) -> list[str]:
        return ["encode", "--corpus", str(tmp_path / "corpus.jsonl"), "--index", str(index),
                "--encoder", str(tmp_path / "encoder"), "--batch-size", "256", "--max-length", "16",
                "--dtype", "fp32", "--device", "cpu"]

    (tmp_path / "killed").mkdir()
    (tmp_path / "reference").mkdir()
    out, reference_out = tmp_path / "killed" / "faiss", tmp_path / "reference" / "faiss"
    reference = Child(tmp_path, "reference", command(reference_out))

    def after_shard(n: int, when: str = "after") -> dict:
        return {"call": "os:replace", "arg": 1, "match": f"*shard-{n:05d}.npy", "nth": 1, "when": when}

    killed = Child(tmp_path, "killed", command(out), freeze=after_shard(0))
    try:
        killed.wait_until_frozen()
        assert visible(out.parent) == []
        shards = hidden(out.parent, "shard-*.npy")
        assert [p.name for p in shards] == ["shard-00000.npy"]
    finally:
        killed.sigkill()
    assert visible(out.parent) == []
    first = shards[0].stat()

    # the rerun, frozen before its last shard: shard 0 is the killed job's file, shard 1 is new
    rerun = Child(tmp_path, "rerun", command(out), freeze=after_shard(2, "before"))
    rerun.wait_until_frozen()
    try:
        again = shards[0].stat()
        assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
        assert shards[0].with_name("shard-00001.npy").is_file() and visible(out.parent) == []
    finally:
        rerun.resume()
    rerun.finish()
    reference.finish()

    assert visible(out.parent) == ["faiss"] and not hidden(out.parent, "*")  # the work folder is gone
    ours, theirs = faiss.read_index(str(out / "index")), faiss.read_index(str(reference_out / "index"))
    assert ours.ntotal == theirs.ntotal == 20_500
    assert np.array_equal(ours.reconstruct_n(0, ours.ntotal), theirs.reconstruct_n(0, theirs.ntotal))
    assert (out / "docid").read_bytes() == (reference_out / "docid").read_bytes()
    manifest, reference_manifest = (json.loads((d / "clir_ot.json").read_text()) for d in (out, reference_out))
    assert without_clock(manifest) == without_clock(reference_manifest)


# --------------------------------------------------------------------------------------------------
# rerank


@pytest.fixture(scope="module")
def rerank_inputs(tmp_path_factory) -> Path:
    """100 passages, 60 topics and a first-stage run of all 100 passages per topic (6,000 pairs: three
    of the reranker's 2,048-pair chunks), and a tiny cross-encoder folder."""
    root = tmp_path_factory.mktemp("rerank-kill")
    rng = random.Random(2)
    docs = {f"d{i:03d}": sentence(rng, 10) for i in range(100)}
    write_corpus(root / "corpus.jsonl", [Document(d, t) for d, t in docs.items()])
    topics = {f"q{i:02d}": sentence(rng, 3) for i in range(60)}
    write_topics(root / "topics.tsv", topics)
    write_run(root / "run.txt", {q: [Hit(q, d, rng.random()) for d in docs] for q in topics}, tag="first")
    CrossEncoderModel(*tiny_random_model("bert", WORDS, seed=4)).save_pretrained(root / "model")
    return root


def rerank_command(inputs: Path, output: Path, *extra: str) -> list[str]:
    return ["rerank", "--run", str(inputs / "run.txt"), "--topics", str(inputs / "topics.tsv"),
            "--corpus", str(inputs / "corpus.jsonl"), "--output", str(output), "--model", str(inputs / "model"),
            "--depth", "100", "--batch-size", "128", "--max-length", "32", "--dtype", "fp32", "--device", "cpu",
            *extra]


def journal_offset(journal: Path) -> int:
    """The partial file's length at the journal's last finished checkpoint."""
    entries = [line.split("\t") for line in journal.read_text().splitlines() if not line.startswith("#")]
    return int(entries[-1][1])


def test_rerank_killed_mid_chunk_resumes_to_the_same_run_file(rerank_inputs, tmp_path):
    """Killed while its second chunk is written but not yet checkpointed (the partial file holds a torn,
    unjournalled tail), ``clir-ot rerank`` reruns only the unfinished queries, and its run file is
    byte-identical to an uninterrupted run's."""
    out = tmp_path / "out" / "reranked.txt"
    reference = Child(tmp_path, "reference", rerank_command(rerank_inputs, tmp_path / "reference.txt"))
    killed = Child(tmp_path, "killed", rerank_command(rerank_inputs, out),
                   freeze={"call": "clir_ot.formats:RunWriter.checkpoint", "arg": 0, "match": "*", "nth": 2,
                           "when": "before"})
    try:
        killed.wait_until_frozen()
        partial, journal = out.with_name(".reranked.txt.partial"), out.with_name(".reranked.txt.partial.done")
        assert visible(out.parent) == [] and partial.is_file() and journal.is_file()
        finished = journal_offset(journal)
        assert 0 < finished < partial.stat().st_size  # chunk 1 journalled, part of chunk 2 on disk beyond it
    finally:
        killed.sigkill()
    assert visible(out.parent) == []

    log = Child(tmp_path, "resumed", rerank_command(rerank_inputs, out)).finish()
    reference.finish()
    report = json.loads([line for line in log.splitlines() if line.startswith("{")][-1])
    assert "21 queries already reranked" in log and report["queries"] == 60 - 21
    assert out.read_bytes() == (tmp_path / "reference.txt").read_bytes()
    assert visible(out.parent) == ["reranked.txt"] and not hidden(out.parent, "*")


# --------------------------------------------------------------------------------------------------
# The resumable run writer on its own (what `rerank` streams into)

WRITER = r'''
import os, signal, sys
from clir_ot.formats import Hit, RunWriter

target, signature = sys.argv[1], sys.argv[2] or None
writer = RunWriter(target, tag="t", resumable=True, signature=signature).__enter__()
writer.write("q1", [Hit("q1", "a", 2.0), Hit("q1", "b", 1.0)])
writer.write("q2", [Hit("q2", "b", 3.0)])
writer.checkpoint()
writer.write("q3", [Hit("q3", "c", 1.0)])  # written, flushed, never checkpointed: lost with the process
writer._handle.flush()
os.kill(os.getpid(), signal.SIGKILL)
'''

RUN = {"q1": [Hit("q1", "a", 2.0), Hit("q1", "b", 1.0)], "q2": [Hit("q2", "b", 3.0)], "q3": [Hit("q3", "c", 0.5)],
       "q4": [Hit("q4", "d", 1.0)]}


def killed_writer(tmp_path: Path, target: Path, signature: str) -> None:
    """A process that writes q1, q2, checkpoints, writes q3 and is SIGKILLed."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    done = subprocess.run([sys.executable, str(script), str(target), signature], capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def test_resumable_run_writer_killed_keeps_only_checkpointed_queries(tmp_path):
    """After a SIGKILL the target does not exist; a writer with the same signature continues after the
    last checkpoint (q3's flushed lines are cut away) and the file equals a one-go write; a writer with
    another signature discards the unfinished run."""
    target = tmp_path / "out" / "run.txt"
    write_run(tmp_path / "whole.txt", RUN, tag="t")
    killed_writer(tmp_path, target, "model A")
    assert visible(target.parent) == [] and target.with_name(".run.txt.partial").stat().st_size > 0
    from clir_ot.formats import RunWriter

    with RunWriter(target, tag="t", resumable=True, signature="model A") as writer:
        assert writer.done == {"q1", "q2"}
        for qid in ("q3", "q4"):
            writer.write(qid, RUN[qid])
    assert target.read_bytes() == (tmp_path / "whole.txt").read_bytes()
    assert visible(target.parent) == ["run.txt"] and not hidden(target.parent, "*")

    target.unlink()
    killed_writer(tmp_path, target, "model A")
    with RunWriter(target, tag="t", resumable=True, signature="model B") as other:
        assert other.done == set()  # model A's scores are not continued by model B
        for qid, hits in RUN.items():
            other.write(qid, hits)
    assert target.read_bytes() == (tmp_path / "whole.txt").read_bytes()


ATOMIC = r'''
import os, signal, sys
from clir_ot.formats import Hit, RunWriter

writer = RunWriter(sys.argv[1], tag="t").__enter__()
writer.write("q1", [Hit("q1", "new", 1.0)])
writer._handle.flush()
os.kill(os.getpid(), signal.SIGKILL)
'''


def test_run_writer_killed_leaves_the_old_file_untouched(tmp_path):
    """A plain (non-resumable) run writer killed mid-write leaves the previous run as it was and only a
    hidden temporary file beside it."""
    target = tmp_path / "run.txt"
    target.write_text("q1 Q0 old 1 1.0 t\n")
    script = tmp_path / "atomic.py"
    script.write_text(ATOMIC)
    done = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert target.read_text() == "q1 Q0 old 1 1.0 t\n" and visible(tmp_path) == ["atomic.py", "run.txt"]


# --------------------------------------------------------------------------------------------------
# distill

EN = "the a cat dog house tree river city book water red green big small runs sees eats old new".split()
FOREIGN = {w: f"x{w[::-1]}" for w in EN}


@pytest.fixture(scope="module")
def distill_inputs(tmp_path_factory) -> Path:
    """120 word-for-word bitext pairs and a tiny cross-encoder teacher (as in tests/test_distill.py)."""
    from clir_ot.distill import BitextPair, write_bitext

    root = tmp_path_factory.mktemp("distill-kill")
    rng = random.Random(0)
    sentences = sorted({" ".join(rng.choice(EN) for _ in range(rng.randint(3, 7))) for _ in range(120)})
    pairs = [BitextPair(s, " ".join(FOREIGN[w] for w in s.split()), "made", i + 1) for i, s in enumerate(sentences)]
    write_bitext(root / "bitext.tsv", pairs)
    texts = sentences + [p.foreign for p in pairs]
    CrossEncoderModel(*tiny_random_model("xlm-roberta", texts, seed=5)).save_pretrained(root / "teacher")
    return root


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return dict(CrossEncoderModel.from_pretrained(folder).state_dict())


def untimed_log(out: Path) -> list[dict]:
    """The log's records without timings (keys ending in ``_s``, also among the loss ``terms``)."""
    def untimed(record):
        return {k: untimed(v) if isinstance(v, dict) else v for k, v in record.items() if not k.endswith("_s")}

    return [untimed(json.loads(line)) for line in (out / "log.jsonl").read_text().splitlines()]


def test_distill_killed_inside_a_checkpoint_resumes_to_the_same_weights(distill_inputs, tmp_path):
    """``clir-ot distill`` killed while it writes its step-4 checkpoint (model written, optimizer not):
    only step 2 is a checkpoint, the half-written one is hidden, no student is visible; ``--resume``
    continues from step 2 and ends with exactly the uninterrupted run's weights and log."""
    def command(out: Path, *extra: str) -> list[str]:
        return ["distill", "--teacher", str(distill_inputs / "teacher"), "--out", str(out),
                "--bitext", str(distill_inputs / "bitext.tsv"), "--method", "ot", "--no-freeze-embeddings",
                "--max-steps", "6", "--save-every", "2", "--batch-size", "8", "--max-length", "48",
                "--lr", "3e-3", "--dtype", "fp32", "--device", "cpu", *extra]

    out, reference_out = tmp_path / "killed", tmp_path / "reference"
    reference = Child(tmp_path, "reference", command(reference_out))
    killed = Child(tmp_path, "killed", command(out),
                   freeze={"call": "torch:save", "arg": 1, "match": "*/.step-000004.*", "nth": 1, "when": "before"})
    try:
        killed.wait_until_frozen()
        checkpoints = out / "checkpoints"
        assert visible(checkpoints) == ["step-000002"]
        partial = hidden(checkpoints, "model.safetensors")
        assert len(partial) == 1 and ".step-000004." in str(partial[0])
        assert "model.safetensors" not in visible(out) and not (out / "training.json").exists()
    finally:
        killed.sigkill()
    assert visible(out / "checkpoints") == ["step-000002"] and not (out / "training.json").exists()

    log = Child(tmp_path, "resumed", command(out, "--resume")).finish()
    reference.finish()
    assert "at step 2 of 6" in log
    ours, theirs = weights(out), weights(reference_out)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert untimed_log(out) == untimed_log(reference_out)
    manifest = json.loads((out / "training.json").read_text())
    assert manifest["time"]["resumed_from_step"] == 2 and manifest["steps"] == 6
    assert not hidden(out / "checkpoints", "*")
    best, reference_best = weights(out / "best"), weights(reference_out / "best")
    assert all(torch.equal(best[k], reference_best[k]) for k in best)
