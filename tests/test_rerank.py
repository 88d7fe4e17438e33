"""Reranking: the Reranker contract, cross-encoder scoring, depth tails, truncation, run files, resume."""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest

from clir_ot.errors import InputFormatError, ModelLoadError
from clir_ot.formats import Document, Hit, iter_run_by_query, load_run, write_corpus, write_run
from clir_ot.models import CrossEncoderModel
from clir_ot.rerank import CrossEncoderReranker, Reranker, RerankReport, hits_from_pyserini, rerank_run

PASSAGES = {
    "d1": "optimal transport aligns tokens",
    "d2": "the panthers won the super bowl 50",
    "d3": "sinkhorn iterations converge fast",
    "d4": "a long passage " + "about many things " * 40,
    "d5": "short",
}


class TextLengthReranker(Reranker):
    """A real reranker whose scores are easy to predict: longer texts score higher."""

    def score(self, query, texts):
        return np.array([len(t) for t in texts], dtype=float)


def hits(qid, docids, text=True):
    return [Hit(qid, d, float(10 - i), i + 1, text=PASSAGES[d] if text else None) for i, d in enumerate(docids)]


@pytest.fixture
def cross_encoder(tiny_encoder):
    model, tokenizer = tiny_encoder
    return CrossEncoderModel(copy.deepcopy(model), tokenizer)


def test_reranker_is_an_abstract_base_class():
    with pytest.raises(TypeError, match="abstract method '?score"):
        Reranker()  # score() is abstract


def test_rerank_orders_by_score_and_renumbers():
    original = hits("q", ["d5", "d1", "d2"])
    reranked = TextLengthReranker().rerank("q", original)
    assert [h.docid for h in reranked] == ["d2", "d1", "d5"]  # by text length
    assert [h.rank for h in reranked] == [1, 2, 3]
    assert all(a.score > b.score for a, b in zip(reranked, reranked[1:]))
    assert [h.docid for h in original] == ["d5", "d1", "d2"] and original[0].score == 10.0  # inputs untouched


def test_depth_keeps_the_tail_in_first_stage_order_below_the_head():
    original = hits("q", ["d5", "d1", "d4", "d2", "d3"])
    reranked = TextLengthReranker().rerank("q", original, depth=2)
    assert [h.docid for h in reranked] == ["d1", "d5", "d4", "d2", "d3"]
    assert reranked[2].score < reranked[1].score
    assert all(a.score > b.score for a, b in zip(reranked, reranked[1:]))
    assert [h.docid for h in TextLengthReranker().rerank("q", original, depth=0)] == ["d5", "d1", "d4", "d2", "d3"]


def test_missing_text_is_a_clear_error():
    with pytest.raises(InputFormatError, match="no passage text for document"):
        TextLengthReranker().rerank("q", hits("q", ["d1"], text=False))


def test_cross_encoder_scores_do_not_depend_on_batching(cross_encoder):
    import torch

    reranker = CrossEncoderReranker(cross_encoder, batch_size=2, max_length=64, dtype="fp32")
    texts = [PASSAGES[d] for d in ("d1", "d2", "d3", "d4", "d5")]
    batched = reranker.score("what converges", texts)
    single = []
    with torch.inference_mode():
        for text in texts:  # one pair at a time: no padding at all
            inputs = cross_encoder.tokenizer("what converges", text, truncation="longest_first", max_length=64,
                                             return_tensors="pt")
            inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            single.append(float(cross_encoder(**inputs)))
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_truncation_is_counted(cross_encoder):
    reranker = CrossEncoderReranker(cross_encoder, batch_size=4, max_length=16, dtype="fp32")
    texts = [PASSAGES["d5"], PASSAGES["d4"], PASSAGES["d1"]]
    reranker.score("a query", texts)
    tok = cross_encoder.tokenizer
    q = len(tok("a query", add_special_tokens=False)["input_ids"])
    specials = tok.num_special_tokens_to_add(pair=True)
    expected = sum(q + len(tok(t, add_special_tokens=False)["input_ids"]) + specials > 16 for t in texts)
    assert reranker.truncation.pairs == 3 and reranker.truncation.truncated == expected >= 1
    assert "truncated" in reranker.truncation.summary()


def test_pyserini_hits_are_accepted(tmp_path, cross_encoder):
    from clir_ot.retrieval import build_index
    from pyserini.search.lucene import LuceneSearcher

    write_corpus(tmp_path / "c.jsonl", [Document(d, t) for d, t in PASSAGES.items()])
    build_index(tmp_path / "c.jsonl", tmp_path / "idx", "en")
    results = LuceneSearcher(str(tmp_path / "idx")).search("transport tokens super bowl", k=10)
    reranker = CrossEncoderReranker(cross_encoder, max_length=64, dtype="fp32")
    reranked = reranker.rerank("transport tokens super bowl", results)
    assert {h.docid for h in reranked} == {r.docid for r in results}
    expected = reranker.score("transport tokens super bowl", [PASSAGES[r.docid] for r in results])
    by_doc = dict(zip([r.docid for r in results], expected))
    assert [h.docid for h in reranked] == sorted(by_doc, key=lambda d: (-np.float32(by_doc[d]), d))
    assert hits_from_pyserini(results)[0].text == PASSAGES[results[0].docid]


def test_model_folder_without_tokenizer(tmp_path, cross_encoder):
    cross_encoder.save_pretrained(tmp_path / "m")
    for f in (tmp_path / "m").iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "sentencepiece")):
            f.unlink()
    with pytest.raises(ModelLoadError, match="tokenizer"):
        CrossEncoderReranker(str(tmp_path / "m"))


# --------------------------------------------------------------------------------------------------
# Run files


@pytest.fixture
def run_files(tmp_path):
    write_corpus(tmp_path / "corpus.jsonl", [Document(d, t) for d, t in PASSAGES.items()])
    run = {f"q{i}": hits(f"q{i}", ["d5", "d1", "d4", "d2", "d3"]) for i in range(6)}
    write_run(tmp_path / "run.txt", run, tag="bm25")
    topics = {f"q{i}": f"query number {i}" for i in range(6)}
    corpus = dict(PASSAGES)
    return tmp_path, topics, corpus


def test_rerank_run_file(run_files):
    root, topics, corpus = run_files
    report = rerank_run(TextLengthReranker(), root / "run.txt", topics, corpus, root / "out.txt", depth=3)
    assert report.queries == 6 and report.pairs == 18
    for qid, ranked in iter_run_by_query(root / "out.txt"):
        assert [h.docid for h in ranked] == ["d4", "d1", "d5", "d2", "d3"]
    assert sorted(p.name for p in root.iterdir()) == ["corpus.jsonl", "out.txt", "run.txt"]


class FailingReranker(TextLengthReranker):
    """The same scores as :class:`TextLengthReranker` until its scoring raises (a failed job, not a kill:
    the SIGKILL of a real ``clir-ot rerank`` process is tested in tests/test_kill.py)."""

    def __init__(self, calls_before_failing):
        self.calls = calls_before_failing

    def signature(self):
        return TextLengthReranker().signature()

    def score_pairs(self, queries, passages):
        if self.calls == 0:
            raise RuntimeError("scoring failed")
        self.calls -= 1
        return super().score_pairs(queries, passages)


def test_rerank_run_resumes_after_a_failed_job(run_files):
    root, topics, corpus = run_files
    rerank_run(TextLengthReranker(), root / "run.txt", topics, corpus, root / "whole.txt", depth=3, chunk_pairs=6)
    with pytest.raises(RuntimeError, match="scoring failed"):
        rerank_run(FailingReranker(1), root / "run.txt", topics, corpus, root / "out.txt", depth=3, chunk_pairs=6)
    assert not (root / "out.txt").exists()
    report = rerank_run(TextLengthReranker(), root / "run.txt", topics, corpus, root / "out.txt", depth=3,
                        chunk_pairs=6)
    assert report.queries == 4  # the first chunk (2 queries) was kept from the failed job
    assert (root / "out.txt").read_text() == (root / "whole.txt").read_text()


def test_rerank_run_starts_over_when_resumed_with_other_settings(run_files):
    root, topics, corpus = run_files
    fresh = rerank_run(TextLengthReranker(), root / "run.txt", topics, corpus, root / "depth2.txt", depth=2,
                       chunk_pairs=6)
    with pytest.raises(RuntimeError, match="scoring failed"):
        rerank_run(FailingReranker(1), root / "run.txt", topics, corpus, root / "out.txt", depth=3, chunk_pairs=6)
    report = rerank_run(TextLengthReranker(), root / "run.txt", topics, corpus, root / "out.txt", depth=2,
                        chunk_pairs=6)
    assert (report.queries, report.pairs) == (fresh.queries, fresh.pairs)  # nothing kept from the depth-3 job
    assert (root / "out.txt").read_text() == (root / "depth2.txt").read_text()


def test_rerank_run_starts_over_when_resumed_with_other_query_or_passage_texts(run_files):
    """Same run, same qids, other texts (XQuAD's qids are the same in every language): nothing is kept."""
    root, topics, corpus = run_files
    other_topics = {qid: text + " in Thai" for qid, text in topics.items()}
    other_corpus = {**corpus, "d1": corpus["d1"] + " (another translation)"}
    for resumed_topics, resumed_corpus in ((other_topics, corpus), (topics, other_corpus)):
        out = root / "out.txt"
        with pytest.raises(RuntimeError, match="scoring failed"):
            rerank_run(FailingReranker(1), root / "run.txt", topics, corpus, out, depth=3, chunk_pairs=6)
        report = rerank_run(TextLengthReranker(), root / "run.txt", resumed_topics, resumed_corpus, out, depth=3,
                            chunk_pairs=6)
        assert report.queries == 6  # the failed job's first chunk was not continued
        out.unlink()


def test_model_rerankers_sign_with_their_weights(cross_encoder):
    import torch

    from clir_ot.rerank.base import SCORING_VERSION

    reranker = CrossEncoderReranker(cross_encoder, max_length=32, dtype="fp32")
    signature = reranker.signature()
    assert signature["scoring"] == SCORING_VERSION and signature["max_length"] == 32
    with torch.no_grad():
        next(cross_encoder.head.parameters()).add_(1.0)
    assert CrossEncoderReranker(cross_encoder, max_length=32, dtype="fp32").signature()["weights"] != signature["weights"]


def test_run_docid_missing_from_corpus(run_files):
    root, topics, corpus = run_files
    del corpus["d4"]
    with pytest.raises(InputFormatError, match="document 'd4' is not in the corpus") as err:
        rerank_run(TextLengthReranker(), root / "run.txt", topics, corpus, root / "out.txt")
    assert err.value.line == 3
    assert not (root / "out.txt").exists()


def test_unknown_query_in_run(run_files):
    root, topics, corpus = run_files
    del topics["q3"]
    with pytest.raises(InputFormatError, match="query 'q3' is not in the topics"):
        rerank_run(TextLengthReranker(), root / "run.txt", topics, corpus, root / "out.txt")


def test_rerank_run_restricted_to_some_queries(run_files):
    root, topics, corpus = run_files
    report = rerank_run(TextLengthReranker(), root / "run.txt", topics, corpus, root / "out.txt", depth=3,
                        qids={"q1", "q4"})
    assert report.queries == 2
    assert set(load_run(root / "out.txt")) == {"q1", "q4"}


def test_equal_reranker_scores_keep_the_first_stage_order_not_the_docid_order():
    from clir_ot.rerank.base import assemble_ranking

    first_stage = [Hit("q", d, 10.0 - i, i + 1) for i, d in enumerate(["d9", "d1", "d5", "d2"])]
    reranked = assemble_ranking(first_stage, np.array([1.0, 1.0, 2.0]))  # d9 and d1 tie; d2 is below the depth
    assert [h.docid for h in reranked] == ["d5", "d9", "d1", "d2"]
    assert all(a.score > b.score for a, b in zip(reranked, reranked[1:]))  # nothing left for trec_eval to break


def test_bf16_scoring_keeps_float32_resolution_in_the_head(cross_encoder):
    """Under ``dtype="bf16"`` the encoder really computes in bf16 (every linear layer of it returns bf16
    activations), while the head reads float32 features and returns float32 logits that differ from
    what the same head gives in bf16."""
    import torch

    linears = [m for m in cross_encoder.encoder.modules() if isinstance(m, torch.nn.Linear)]
    encoder_dtypes, head_calls = [], []
    hooks = [m.register_forward_hook(lambda module, args, out: encoder_dtypes.append(out.dtype)) for m in linears]
    hooks.append(cross_encoder.head.register_forward_hook(lambda module, args, out: head_calls.append((args[0], out))))
    try:
        pairs = [(f"query {i}", f"passage {i} {'word ' * i}") for i in range(16)]
        scores = cross_encoder.predict(pairs, dtype="bf16", batch_size=8)
    finally:
        for hook in hooks:
            hook.remove()
    assert linears and encoder_dtypes == [torch.bfloat16] * (2 * len(linears))  # two batches, all in bf16
    assert [(features.dtype, out.dtype) for features, out in head_calls] == [(torch.float32, torch.float32)] * 2
    logits = torch.cat([out.squeeze(-1) for _, out in head_calls])
    np.testing.assert_array_equal(np.sort(scores), np.sort(logits.numpy()))  # the scores are the head's output
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = torch.cat([cross_encoder.head(features).squeeze(-1) for features, _ in head_calls])
    assert in_bf16.dtype == torch.bfloat16 and (in_bf16.float() != logits).any()  # a bf16 head would differ
    as_bf16 = torch.from_numpy(scores).bfloat16().float().numpy()
    assert (as_bf16 != scores).any()  # logits are not rounded to bf16's ~3 digits
    assert len(set(scores.tolist())) == len(pairs)


def test_rerank_report_is_a_record_whose_flat_json_reads_back():
    """The stderr line of ``clir-ot rerank`` is the report's flat JSON: the reranker's entries beside the
    counts, and a sharded job's processes; reading it back gives the same record."""
    rank = RerankReport(output="a", queries=2, pairs=6, depth=3, seconds=0.5, pairs_per_second=12.0,
                        reranker={"truncation": "6 pairs"}, kept=True)
    merged = RerankReport(output="run.txt", queries=4, pairs=12, depth=3, seconds=0.5, pairs_per_second=24.0,
                          ranks=(rank, dataclasses.replace(rank, kept=False)))
    flat = merged.to_json()
    assert flat["processes"] == 2 and flat["ranks"][0] == {**rank.to_json(), "kept": True}
    assert "kept" not in flat["ranks"][1] and flat["ranks"][0]["truncation"] == "6 pairs"
    assert RerankReport.from_json(json.loads(json.dumps(flat))) == merged
    assert RerankReport.from_json(rank.to_json()) == rank and rank.processes == 1
