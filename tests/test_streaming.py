"""Streamed training data and on-disk stores (issue 13): readers on every format and their bad lines, store
round trips and rebuilds, memory-bounded iteration, exact resume after SIGKILL and 2 gloo processes = 1 on
streamed data, and reranking from a Lucene index equal to reranking from the JSONL corpus."""
from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from child_processes import finish, start, wait_until_stopped
from clir_ot.cli import main
from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.formats import Document, read_qrels, write_corpus
from clir_ot.models import CrossEncoderModel, tiny_random_model
from clir_ot.store import LineFile, LuceneTextStore, TextStore, passage_store
from clir_ot.training import DataSpec, TrainingGroup, build_groups, load_training_data, read_groups, write_groups
from clir_ot.training.streaming import StreamedGroups

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega").split()

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def store_dir(tmp_path, monkeypatch) -> Path:
    """Every test indexes into its own store folder (inherited by the subprocesses it starts)."""
    folder = tmp_path / "stores"
    monkeypatch.setenv("CLIR_OT_STORE_DIR", str(folder))
    return folder


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="module")
def msmarco(tmp_path_factory) -> Path:
    """MS MARCO's layout in small: collection.tsv (60 passages), queries.train.tsv (20), id triples (64 lines,
    qid<TAB>pid+<TAB>pid-), a held-out id-triples file, and a tiny cross-encoder."""
    root = tmp_path_factory.mktemp("msmarco")
    rng = random.Random(0)
    passages = {str(i): sentence(rng, 12) for i in range(60)}
    queries = {str(1000 + i): " ".join(passages[str(i)].split()[:4]) for i in range(20)}
    write(root / "collection.tsv", "".join(f"{p}\t{t}\n" for p, t in passages.items()))
    write(root / "queries.train.tsv", "".join(f"{q}\t{t}\n" for q, t in queries.items()))
    lines = [f"{q}\t{int(q) - 1000}\t{rng.choice([p for p in passages if p != str(int(q) - 1000)])}\n"
             for q in [rng.choice(list(queries)) for _ in range(64)]]
    write(root / "qidpidtriples.tsv", "".join(lines))
    write(root / "valid.tsv", "".join(f"{q}\t{int(q) - 1000}\t{(int(q) - 990) % 60}\t{(int(q) - 980) % 60}\n"
                                      for q in list(queries)[:6]))
    model, tokenizer = tiny_random_model("bert", list(passages.values()), seed=3)
    CrossEncoderModel(model, tokenizer).save_pretrained(root / "base")
    return root


# --------------------------------------------------------------------------------------------------
# Readers, every format, and their bad lines


def test_text_triples_one_group_a_line_and_bad_lines(tmp_path):
    path = write(tmp_path / "triples.tsv", "q one\tpos one\tneg one\n\nq two\tpos two\tneg two\n")
    groups = StreamedGroups(path, "text-triples")
    assert len(groups) == 2 and groups.negatives == 1
    assert groups[1] == TrainingGroup("q two", "pos two", ("neg two",))
    assert groups[-1] == groups[1] and groups[0:2] == [groups[0], groups[1]]
    with pytest.raises(IndexError):
        groups[2]
    bad = write(tmp_path / "bad.tsv", "q\tp\tn\nq\tp\n")
    with pytest.raises(InputFormatError, match=r"bad\.tsv:2: expected 3 tab-separated fields"):
        StreamedGroups(bad, "text-triples")
    empty = write(tmp_path / "empty.tsv", "q\tp\tn\n\nq\t \tn\n")
    with pytest.raises(InputFormatError, match=r"empty\.tsv:3: empty positive field"):
        StreamedGroups(empty, "text-triples")
    with pytest.raises(InputFormatError, match="decompress it once"):
        load_training_data(DataSpec(triples=tmp_path / "triples.tsv.gz", stream=True))


def test_id_triples_look_texts_up_and_name_unknown_ids(msmarco, tmp_path):
    queries = TextStore(msmarco / "queries.train.tsv", "query")
    passages = TextStore(msmarco / "collection.tsv", "passage")
    groups = StreamedGroups(msmarco / "qidpidtriples.tsv", "id-triples", queries=queries, passages=passages)
    first = (msmarco / "qidpidtriples.tsv").read_text().splitlines()[0].split("\t")
    texts = dict(line.split("\t") for line in (msmarco / "collection.tsv").read_text().splitlines())
    assert len(groups) == 64
    assert groups[0].qid == first[0] and groups[0].docids == (first[1], first[2])
    assert groups[0].positive == texts[first[1]] and groups[0].negatives == (texts[first[2]],)
    assert groups[0].query == queries[first[0]]

    unknown = write(tmp_path / "unknown.tsv", "1000\t1\t2\n1001\t1\t999\n")
    late = StreamedGroups(unknown, "id-triples", queries=queries, passages=passages)
    assert late[0].docids == ("1", "2")  # the first line is fine; the unknown id fails where it is read
    with pytest.raises(InputFormatError, match=r"unknown\.tsv:2: passage id '999' is not in the passages"):
        late[1]
    short = write(tmp_path / "short.tsv", "1000\t1\t2\n1000\t1\n")
    with pytest.raises(InputFormatError, match=r"short\.tsv:2: expected 'qid<TAB>positive pid<TAB>negative pid'"):
        StreamedGroups(short, "id-triples", queries=queries, passages=passages)
    spaced = write(tmp_path / "spaced.tsv", "1000\t1 2\t3\n")
    with pytest.raises(InputFormatError, match=r"spaced\.tsv:1: passage id '1 2' is empty or contains whitespace"):
        StreamedGroups(spaced, "id-triples", queries=queries, passages=passages)
    with pytest.raises(ConfigError, match="needs --queries"):
        DataSpec(id_triples=msmarco / "qidpidtriples.tsv", collection=msmarco / "collection.tsv")
    with pytest.raises(ConfigError, match="gives passage ids without their texts"):
        StreamedGroups(msmarco / "qidpidtriples.tsv", "id-triples", queries=queries)


def test_ir_datasets_exports(tmp_path):
    """What `ir_datasets export <id> docs|queries|docpairs [--format jsonl]` and `... qrels` write."""
    docs = write(tmp_path / "docs.jsonl", "".join(json.dumps({"doc_id": f"D{i}", "text": f"doc {i} text"}) + "\n"
                                                 for i in range(5)))
    docs_tsv = write(tmp_path / "docs.tsv", "".join(f"D{i}\ttitle {i}\tdoc {i} text\n" for i in range(5)))
    queries = write(tmp_path / "queries.jsonl", json.dumps({"query_id": "Q1", "text": "first query"}) + "\n")
    queries_tsv = write(tmp_path / "queries.tsv", "Q1\tfirst query\n")
    pairs = write(tmp_path / "docpairs.jsonl", json.dumps({"query_id": "Q1", "doc_id_a": "D0", "doc_id_b": "D3"}) + "\n")
    pairs_tsv = write(tmp_path / "docpairs.tsv", "Q1\tD0\tD3\n")
    qrels = write(tmp_path / "qrels.txt", "Q1 0 D0 1\nQ1 0 D4 0\n")
    assert dict(TextStore(docs)) == {f"D{i}": f"doc {i} text" for i in range(5)}
    assert TextStore(docs_tsv)["D2"] == "title 2 doc 2 text"  # further columns joined with a space
    assert dict(TextStore(queries, "query")) == dict(TextStore(queries_tsv, "query")) == {"Q1": "first query"}
    a = StreamedGroups(pairs, "jsonl", queries=TextStore(queries, "query"), passages=TextStore(docs))
    b = StreamedGroups(pairs_tsv, "id-triples", queries=TextStore(queries_tsv, "query"), passages=TextStore(docs))
    assert list(a) == list(b) == [TrainingGroup("first query", "doc 0 text", ("doc 3 text",), "Q1", ("D0", "D3"))]
    assert read_qrels(qrels) == {"Q1": {"D0": 1, "D4": 0}}
    data = load_training_data(DataSpec(id_triples=pairs, queries=queries, collection=docs))
    assert data.info["source"] == "id-triples" and data.info["streamed"]["format"] == "jsonl"
    assert list(data.train) == list(a)


def test_jsonl_groups_stream_as_read_groups_reads_them(tmp_path):
    records = [
        {"qid": "q1", "query": "who", "positive": "p1", "negatives": ["n1", "n2"], "positive_id": "d1",
         "negative_ids": ["d2", "d3"], "scores": [3.0, 1.0, 0.5]},
        {"query": "what", "positive": "p2", "negatives": ["n3", "n4", "n5"]},
    ]
    path = write(tmp_path / "groups.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ConsistencyError, match=r"between 2 \(line 1\) and 3 \(line 2\) negatives"):
        StreamedGroups(path, "jsonl")
    groups = StreamedGroups(path, "jsonl", negatives=2)
    assert list(groups) == [g if len(g.negatives) == 2 else TrainingGroup(g.query, g.positive, g.negatives[:2])
                            for g in read_groups(path)]
    assert groups[0].target_scores == (3.0, 1.0, 0.5) and not groups.scored
    with pytest.raises(ConsistencyError, match=r"groups\.jsonl:1: the group has 2 negatives, fewer than the 3"):
        StreamedGroups(path, "jsonl", negatives=3)
    # groups of ids only take their texts from the stores
    ids_only = write(tmp_path / "ids.jsonl", json.dumps({"qid": "Q1", "positive_id": "D1", "negative_ids": ["D2"]}) + "\n")
    store = TextStore(write(tmp_path / "c.tsv", "D1\tone\nD2\ttwo\n"))
    assert StreamedGroups(ids_only, "jsonl", queries={"Q1": "query one"}, passages=store)[0] == \
        TrainingGroup("query one", "one", ("two",), "Q1", ("D1", "D2"))
    for text, problem in [('{"query": "q", "positive": "p", "negatives": []}', r"bad\.jsonl:2: the group has no negatives"),
                          ('{"query": "q", "negatives": ["n"]}', r"bad\.jsonl:2: missing the 'positive' field"),
                          ('{"query": "q", "positive": "p", "negatives": ["n"]', r"bad\.jsonl:2: invalid JSON"),
                          ('{"query": "q", "positive": "p", "negatives": ["n"], "scores": [1]}', r"bad\.jsonl:2: 'scores' must list 2")]:
        bad = write(tmp_path / "bad.jsonl", json.dumps(records[1]) + "\n" + text + "\n")
        with pytest.raises(InputFormatError, match=problem):
            StreamedGroups(bad, "jsonl", negatives=1)


def test_collection_built_groups_stream_back_from_jsonl(tmp_path):
    """Today's collection-built groups (hard negatives from a run) written once as JSONL stream back unchanged."""
    corpus = {f"d{i}": f"passage {i}" for i in range(12)}
    run = {"q1": {f"d{i}": 10.0 - i for i in range(12)}, "q2": {f"d{i}": float(i) for i in range(12)}}
    built = build_groups({"q1": "query one", "q2": "query two"}, {"q1": {"d3": 1}, "q2": {"d0": 1, "d1": 2}},
                         corpus, run, num_negatives=3, seed=7)
    write_groups(tmp_path / "groups.jsonl", built)
    streamed = load_training_data(DataSpec(groups=tmp_path / "groups.jsonl", stream=True)).train
    assert isinstance(streamed, StreamedGroups) and list(streamed) == built


# --------------------------------------------------------------------------------------------------
# The on-disk store


def test_store_round_trips_tsv_jsonl_and_folders(tmp_path):
    texts = {f"doc-{i}": f"text of passage {i} é" for i in range(2000)}
    tsv = write(tmp_path / "collection.tsv", "\ufeff" + "".join(f"{k}\t{v}\n" for k, v in texts.items()))
    folder = tmp_path / "corpus"
    folder.mkdir()
    items = list(texts.items())
    write_corpus(folder / "a.jsonl", [Document(k, v) for k, v in items[:700]])
    write_corpus(folder / "b.jsonl", [Document(k, v) for k, v in items[700:]])
    for store in (TextStore(tsv), TextStore(folder), passage_store(corpus=folder)):
        assert len(store) == 2000 and dict(store) == texts
        assert all(store[k] == v for k, v in reversed(items))  # lookups by id, not by scanning
        assert "doc-2000" not in store and store.get("doc-2000") is None
        with pytest.raises(KeyError):
            store["nope"]
    lines = LineFile(tsv, "plain")
    assert len(lines) == 2000 and lines.line(0) == "doc-0\ttext of passage 0 é" and lines.line_number(1999) == 2000


def test_store_is_rebuilt_when_its_source_changes(tmp_path, store_dir, caplog):
    path = write(tmp_path / "collection.tsv", "1\tfirst\n2\tsecond\n")
    assert TextStore(path)["1"] == "first"
    index = sorted(store_dir.glob("collection.tsv.texts-passage.*.idx"))
    assert len(index) == 1
    built = index[0].stat().st_mtime_ns
    assert TextStore(path)["2"] == "second" and index[0].stat().st_mtime_ns == built  # reused while unchanged
    stat = path.stat()
    write(path, "1\tFIRST\n2\tsecond\n")  # same size; the mtime is put back: only the content hash tells
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with caplog.at_level(logging.WARNING, logger="clir_ot.store"):
        assert TextStore(path)["1"] == "FIRST"
    assert "rebuilding the texts-passage index" in caplog.text and "edges_sha256" in caplog.text
    write(path, "1\tfirst\n2\tsecond\n3\tthird\n")  # appended
    assert TextStore(path)["3"] == "third"
    index[0].write_bytes(index[0].read_bytes()[:-5])  # a truncated index file is rebuilt too
    assert TextStore(path)["3"] == "third"


@pytest.mark.parametrize("text, problem", [
    ("1\tone\n2\n", r"c\.tsv:2: expected 'id<TAB>text' in a passage TSV"),
    ("1\tone\n2\t \n", r"c\.tsv:2: passage '2' has empty text"),
    ("1\tone\n\n1\tagain\n", r"c\.tsv:3: passage '1' appears twice \(also at c\.tsv:1\)"),
    ("a b\tone\n", r"c\.tsv:1: passage id 'a b' is empty or contains whitespace"),
    ("1\tone\n\xff\n", None),
])
def test_store_bad_lines_name_file_and_line(tmp_path, text, problem):
    path = tmp_path / "c.tsv"
    if problem is None:
        path.write_bytes(b"1\tone\n\xff\tx\n")
        problem = r"c\.tsv:2: invalid UTF-8"
    else:
        write(path, text)
    with pytest.raises(InputFormatError, match=problem):
        TextStore(path)


def test_store_bad_jsonl_lines(tmp_path):
    cases = [('{"contents": "x"}', "missing the id field"), ('{"id": "d", "contents": ""}', "passage 'd' has empty text"),
             ('{"id": "d", "contents": 3}', "passage 'd': field 'contents' must be a string"), ('{"id": "d"}', "passage 'd' has no text field"),
             ('[1]', "expected a JSON object")]
    for record, problem in cases:
        path = write(tmp_path / "c.jsonl", '{"id": "a", "contents": "fine"}\n' + record + "\n")
        with pytest.raises(InputFormatError, match=r"c\.jsonl:2: " + problem):
            TextStore(path)


# --------------------------------------------------------------------------------------------------
# Memory: nothing held but what a step reads


def test_streamed_iteration_holds_no_list_of_the_data(tmp_path):
    rng = random.Random(1)
    filler = " ".join(WORDS * 2)  # ~340 bytes
    with open(tmp_path / "triples.tsv", "w", encoding="utf-8") as handle:
        for i in range(30_000):
            handle.write(f"query {i} {sentence(rng, 5)}\tpositive {i} {filler}\tnegative {i} {filler}\n")
    size = (tmp_path / "triples.tsv").stat().st_size
    assert size > 16_000_000
    tracemalloc.start()
    try:
        groups = StreamedGroups(tmp_path / "triples.tsv", "text-triples")  # builds the index: 8 bytes a line
        order = np.random.default_rng([42, 0]).permutation(len(groups)).astype(np.int32)
        seen = 0
        for i in order:
            group = groups[i]
            seen += len(group.positive) > 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 30_000
    # the data is ~17 MB of text, and a list of its groups would hold more than that; what may grow with the
    # lines is the index being built (8 bytes a line) and the permutation (4-8 bytes a line)
    assert peak < size / 10, f"iteration peaked at {peak} bytes of Python allocations for a {size}-byte file"


# --------------------------------------------------------------------------------------------------
# Training on streamed data: exact resume after SIGKILL, 2 gloo processes = 1 process

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


def streamed_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--base", str(data / "base"), "--out", str(out), "--id-triples", str(data / "qidpidtriples.tsv"),
            "--queries", str(data / "queries.train.tsv"), "--collection", str(data / "collection.tsv"),
            "--valid", str(data / "valid.tsv"), "--max-length", "32", "--lr", "1e-3", *extra]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in CrossEncoderModel.from_pretrained(folder).state_dict().items()}


def test_resume_after_sigkill_on_streamed_data_is_bit_identical(msmarco, tmp_path):
    script = write(tmp_path / "child.py", CHILD)
    settings = ["--batch-size", "2", "--max-steps", "12", "--save-every", "3", "--keep-last", "2", "--dtype", "fp32"]
    reference_out, out = tmp_path / "reference", tmp_path / "killed"
    # the index files are built once, before the runs start (a build under way is locked, not raced)
    load_training_data(DataSpec(id_triples=msmarco / "qidpidtriples.tsv", queries=msmarco / "queries.train.tsv",
                                collection=msmarco / "collection.tsv", valid=msmarco / "valid.tsv"))
    reference = start([sys.executable, str(script), "", *streamed_args(msmarco, reference_out, *settings)],
                      tmp_path / "reference.log")
    killed = start([sys.executable, str(script), ".step-000006.", *streamed_args(msmarco, out, *settings)],
                   tmp_path / "killed.log")
    try:
        wait_until_stopped(killed, tmp_path / "killed.log")
        assert [p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")] == ["step-000003"]
    finally:
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "training.json").exists()
    resumed = start([sys.executable, str(script), "", *streamed_args(msmarco, out, *settings, "--resume")],
                    tmp_path / "resumed.log")
    finish(reference, tmp_path / "reference.log")
    finish(resumed, tmp_path / "resumed.log")
    assert "at step 3 of 12" in (tmp_path / "resumed.log").read_text()
    a, b = weights(reference_out), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed weights are not bit-identical"
    manifest = json.loads((out / "training.json").read_text())
    assert manifest["time"]["resumed_from_step"] == 3 and manifest["data"]["source"] == "id-triples"
    assert manifest["resolved"]["train_groups"] == 64
    assert manifest["resolved"]["data_fingerprint"] == json.loads(
        (reference_out / "training.json").read_text())["resolved"]["data_fingerprint"]


def test_two_gloo_processes_on_streamed_data_match_one(msmarco, tmp_path):
    """2 CPU processes (torchrun, gloo) x 2 groups x 2 accumulation == 1 process x 4 groups x 2 accumulation on
    streamed id triples (dropout off, Adam's eps 1e-4: see test_training's DDP test for why)."""
    config = write(tmp_path / "config.json", json.dumps({"adam_eps": 1e-4, "dropout": 0.0, "dtype": "fp32"}))
    common = ["--epochs", "2", "--grad-accum", "2", "--save-every", "4", "--config", str(config)]
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    load_training_data(DataSpec(id_triples=msmarco / "qidpidtriples.tsv", queries=msmarco / "queries.train.tsv",
                                collection=msmarco / "collection.tsv", valid=msmarco / "valid.tsv"))
    ddp = start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "clir_ot",
                 "--", *streamed_args(msmarco, ddp_out, "--batch-size", "2", *common)], tmp_path / "ddp.log")
    try:
        assert main(streamed_args(msmarco, single_out, "--batch-size", "4", *common)) == 0
    finally:
        finish(ddp, tmp_path / "ddp.log")
    ddp_manifest = json.loads((ddp_out / "training.json").read_text())
    single_manifest = json.loads((single_out / "training.json").read_text())
    assert ddp_manifest["resolved"]["world_size"] == 2 and ddp_manifest["resolved"]["backend"] == "gloo"
    assert ddp_manifest["steps"] == single_manifest["steps"] == 16
    a, b = weights(ddp_out), weights(single_out)
    difference = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert difference <= 1e-5, f"DDP weights differ from single-process weights by {difference}"
    ddp_log = [json.loads(line) for line in (ddp_out / "log.jsonl").read_text().splitlines()]
    single_log = [json.loads(line) for line in (single_out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ddp_log] == [r["step"] for r in single_log]
    for x, y in zip(ddp_log, single_log):
        if "loss" in x:
            assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)


def test_streamed_data_refuses_what_needs_memory(msmarco):
    spec = DataSpec(id_triples=msmarco / "qidpidtriples.tsv", queries=msmarco / "queries.train.tsv",
                    collection=msmarco / "collection.tsv", valid_fraction=0.2)
    with pytest.raises(ConfigError, match="with streamed training data give a held-out file with --valid"):
        load_training_data(spec)
    with pytest.raises(ConfigError, match="--queries and --collection are the stores of streamed data"):
        DataSpec(triples=msmarco / "qidpidtriples.tsv", collection=msmarco / "collection.tsv")


# --------------------------------------------------------------------------------------------------
# Reranking from a Lucene index with stored raw documents


def test_rerank_from_a_lucene_index_equals_rerank_from_the_jsonl_corpus(msmarco, tmp_path):
    from clir_ot.retrieval import build_index

    rng = random.Random(5)
    docs = [Document(f"doc{i}", sentence(rng, 10)) for i in range(30)]
    write_corpus(tmp_path / "corpus.jsonl", docs)
    build_index(tmp_path / "corpus.jsonl", tmp_path / "index", "en")
    topics = write(tmp_path / "topics.tsv", "q1\talpha beta gamma\nq2\tomega psi\n")
    # rank column contradicting the score on purpose; the score decides
    run = write(tmp_path / "run.txt", "".join(f"{q} Q0 doc{i} {30 - i} {float(i % 7)} bm25\n"
                                              for q in ("q1", "q2") for i in range(30)))
    common = ["rerank", "--run", str(run), "--topics", str(topics), "--model", str(msmarco / "base"),
              "--depth", "20", "--max-length", "32", "--dtype", "fp32"]
    assert main([*common, "--corpus", str(tmp_path / "corpus.jsonl"), "--output", str(tmp_path / "a.txt")]) == 0
    assert main([*common, "--index", str(tmp_path / "index"), "--output", str(tmp_path / "b.txt")]) == 0
    a, b = (tmp_path / "a.txt").read_text(), (tmp_path / "b.txt").read_text()
    assert a == b and len(a.splitlines()) == 60
    store = LuceneTextStore(tmp_path / "index")
    assert len(store) == 30 and store["doc3"] == docs[3].contents and "doc99" not in store
    with pytest.raises(ConfigError, match="does not exist"):
        LuceneTextStore(tmp_path / "no-index")
