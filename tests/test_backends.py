"""Inference paths (clir_ot.models.backends): every backend scores as torch fp32 does, within its
precision's error, on tiny random models of both architectures; requests that cannot run fail with one
BackendError line before any model loads. The onnx and openvino paths skip, with the reason, where their
extras are not installed."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from clir_ot import BackendError, ConfigError
from clir_ot.models import CrossEncoderModel, tiny_random_model
from clir_ot.models.backends import (
    BACKEND_PRECISIONS,
    InferencePath,
    backend_available,
    check_request,
    resolve_path,
)
from clir_ot.models.loading import cpu_has_native_bf16
from clir_ot.rerank import CrossEncoderReranker, ExactOrderReranker

QUERIES = ["who won the game"] * 6 + ["what is optimal transport"] * 6
PASSAGES = ["the panthers won the game", "optimal transport moves mass", "a b c", "the game was won",
            "panthers", "a long passage about nothing in particular " * 12,
            "transport of mass optimal", "who", "what is it", "optimal transport is a distance", "x",
            "mass moves from one place to another " * 8]
#: the largest |score - fp32 score| a path may show on the tiny models (fp32 paths: reassociation only)
TOLERANCE = {"fp32": 1e-5, "bf16": 5e-3, "fp16": 5e-3}
PATHS = [(b, d) for b, precisions in BACKEND_PRECISIONS.items() for d in precisions if (b, d) != ("torch", "fp32")]


def skip_unless_installed(backend: str) -> None:
    ok, why = backend_available(backend)
    if not ok:
        pytest.skip(why)


@pytest.fixture(scope="module", params=["bert", "xlm-roberta"])
def tiny(request):
    """A tiny random cross-encoder (head seeded too) and its torch fp32 scores of the pairs."""
    torch.manual_seed(4)
    model = CrossEncoderModel(*tiny_random_model(request.param, seed=4))
    model.eval()
    reference = CrossEncoderReranker(model, dtype="fp32").score_pairs(QUERIES, PASSAGES)
    return model, reference


@pytest.mark.parametrize(("backend", "dtype"), PATHS, ids=[f"{b}/{d}" for b, d in PATHS])
def test_every_path_scores_as_fp32_within_its_precision(tiny, backend, dtype):
    skip_unless_installed(backend)
    model, reference = tiny
    reranker = CrossEncoderReranker(model, dtype=dtype, backend=backend)
    assert reranker.path == InferencePath(backend, dtype)
    scores = reranker.score_pairs(QUERIES, PASSAGES)
    assert scores.dtype == np.float32 and scores.shape == reference.shape
    error = float(np.max(np.abs(scores - reference)))
    assert error <= TOLERANCE[dtype], f"{backend}/{dtype}: largest error {error:.2e}"
    if dtype != "fp32":
        assert error > 0, f"{backend}/{dtype} gave fp32's exact scores: the precision was not applied"
    # the same pairs in another order and batch size get the same scores (dynamic shapes, no state kept)
    again = CrossEncoderReranker(model, dtype=dtype, backend=backend, batch_size=5)
    order = np.arange(len(QUERIES))[::-1]
    shuffled = again.score_pairs([QUERIES[i] for i in order], [PASSAGES[i] for i in order])
    assert np.max(np.abs(shuffled[np.argsort(order)] - reference)) <= TOLERANCE[dtype]


def test_the_signature_names_a_backend_other_than_torch_only(tiny):
    """Runs reranked before backends existed resume: torch's signature is unchanged."""
    model, _ = tiny
    torch_signature = CrossEncoderReranker(model, dtype="fp32").signature()
    assert "backend" not in torch_signature
    skip_unless_installed("onnx")
    onnx_signature = CrossEncoderReranker(model, dtype="fp32", backend="onnx").signature()
    assert onnx_signature["backend"] == "onnx"
    assert {k: v for k, v in onnx_signature.items() if k != "backend"} == torch_signature


def test_exact_order_rescores_a_non_torch_fp32_path(tiny):
    """openvino fp32 is not torch fp32: exact order must still re-score the pairs in doubt."""
    skip_unless_installed("openvino")
    model, reference = tiny
    fast = CrossEncoderReranker(model, dtype="fp32", backend="openvino")
    exact = ExactOrderReranker.around(fast, margin=1.0, top_k=3)
    assert not exact.same_precision
    assert exact.exact.path == InferencePath("torch", "fp32")
    scores = np.concatenate(exact.score_groups([(QUERIES[0], PASSAGES[:6]), (QUERIES[6], PASSAGES[6:])]))
    assert exact.stats.rescored > 0
    assert np.max(np.abs(scores - reference)) <= TOLERANCE["fp32"]


@pytest.mark.parametrize(("backend", "dtype", "message"), [
    ("tensorrt", "auto", "unknown backend 'tensorrt'"),
    ("onnx", "bf16", "backend 'onnx' computes in fp32, not 'bf16'"),
    ("openvino", "fp16", "backend 'openvino' computes in fp32, bf16, not 'fp16'"),
    ("torch-compile", "fp16", "backend 'torch-compile' computes in fp32, bf16, not 'fp16'"),
])
def test_impossible_requests_fail_before_a_model_loads(backend, dtype, message):
    if backend in ("onnx", "openvino"):
        skip_unless_installed(backend)
    with pytest.raises(BackendError, match=message):
        check_request(backend, dtype)
    with pytest.raises(BackendError, match=message):
        CrossEncoderReranker("/nonexistent/model/folder", dtype=dtype, backend=backend)


@pytest.mark.parametrize(("backend", "module", "extra"), [("openvino", "openvino", "openvino"),
                                                          ("onnx", "onnxruntime", "onnx")])
def test_a_missing_extra_is_one_error_with_the_install_line(monkeypatch, backend, module, extra):
    """Where the runtime cannot be imported, the error names it and the extra that installs it."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    ok, why = backend_available(backend)
    assert not ok
    with pytest.raises(BackendError) as raised:
        check_request(backend, "auto")
    text = str(raised.value)
    assert "\n" not in text and module in text and f"pip install 'clir_ot[{extra}]'" in text


def test_onnx_and_openvino_refuse_a_gpu():
    for backend in ("onnx", "openvino"):
        skip_unless_installed(backend)
        with pytest.raises(BackendError, match="runs on the CPU only, not on cuda"):
            check_request(backend, "auto", "cuda")


def test_dtype_auto_is_the_backends_best_precision():
    native = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_path("torch", "auto") == InferencePath("torch", native)
    skip_unless_installed("onnx")
    assert resolve_path("onnx", "auto") == InferencePath("onnx", "fp32")  # onnx has no bf16 path


def test_paths_parse_from_their_names():
    assert InferencePath.parse("openvino/bf16") == InferencePath("openvino", "bf16")
    assert str(InferencePath("torch-compile", "bf16")) == "torch-compile/bf16"
    for bad in ("openvino", "onnx/bf16", "jax/fp32"):
        with pytest.raises(BackendError):
            InferencePath.parse(bad)


# --------------------------------------------------------------------------------------------------
# the bi-encoder (clir-ot encode) on the same paths

ENCODER_PATHS = [(b, d) for b, d in PATHS if b != "torch" or d == "bf16"]


@pytest.fixture(scope="module")
def tiny_bi():
    from clir_ot.models import BiEncoderConfig, BiEncoderModel

    model, tokenizer = tiny_random_model("xlm-roberta", seed=5)
    config = BiEncoderConfig(pooling="mean", normalize=True, query_prefix="query: ", passage_prefix="passage: ")
    bi = BiEncoderModel(model, tokenizer, config)
    return bi, bi.encode_passages(PASSAGES, batch_size=4, dtype="fp32")


@pytest.mark.parametrize(("backend", "dtype"), ENCODER_PATHS, ids=[f"{b}/{d}" for b, d in ENCODER_PATHS])
def test_every_path_embeds_as_fp32_within_its_precision(tiny_bi, backend, dtype):
    skip_unless_installed(backend)
    bi, reference = tiny_bi
    runner = bi.runner(InferencePath(backend, dtype))
    vectors = bi.encode_passages(PASSAGES, batch_size=4, runner=runner)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # normalised in float32
    assert float(np.max(np.abs(vectors - reference))) <= TOLERANCE[dtype]
    with pytest.raises(ConfigError, match="leave dtype unset"):
        bi.encode_passages(PASSAGES[:2], dtype="fp32", runner=runner)


def test_encode_corpus_on_a_backend_stamps_it_and_matches_torch(tiny_bi, tmp_path):
    skip_unless_installed("openvino")
    from clir_ot.formats import Document, write_corpus
    from clir_ot.retrieval.dense import encode_corpus

    bi, _ = tiny_bi
    write_corpus(tmp_path / "c.jsonl", [Document(f"d{i}", text) for i, text in enumerate(PASSAGES)])
    on_torch = encode_corpus(tmp_path / "c.jsonl", tmp_path / "torch", bi, batch_size=4)
    runner = bi.runner(InferencePath("openvino", "fp32"))
    on_openvino = encode_corpus(tmp_path / "c.jsonl", tmp_path / "ov", bi, batch_size=4, runner=runner)
    assert "backend" not in on_torch and on_openvino["backend"] == "openvino"
    import faiss

    a, b = (faiss.read_index(str(tmp_path / name / "index")) for name in ("torch", "ov"))
    assert np.max(np.abs(a.reconstruct_n(0, a.ntotal) - b.reconstruct_n(0, b.ntotal))) <= TOLERANCE["fp32"]
    with pytest.raises(ConfigError, match="the runner computes in fp32"):
        encode_corpus(tmp_path / "c.jsonl", tmp_path / "bad", bi, dtype="bf16", runner=runner)
