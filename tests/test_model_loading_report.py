"""Reading a model says in one line what was left out by design, and warns only about real mismatches.

transformers 5 logs a LOAD REPORT table (MISSING / UNEXPECTED keys) whenever a checkpoint's weights and
the model differ, also in the expected case of an encoder read out of a ``*ForSequenceClassification``
folder (its classifier and pooler have no place in the encoder). :func:`clir_ot.models.loading.load_encoder`
keeps that table off the log, names the left-out parts in its one ``loaded ...`` line, and warns when
encoder weights are missing, unknown or of another shape. Tiny models are built in the test.
"""
from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from clir_ot.models.loading import load_encoder


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def transformers_log():
    """Records that reach transformers' own handlers (its loggers do not propagate to the root logger)."""
    handler = _Records()
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    yield handler.records
    library.removeHandler(handler)


@pytest.fixture
def classification_folder(tiny_encoder, tmp_path):
    """A tiny ``*ForSequenceClassification`` checkpoint (encoder + pooler + classifier) with its tokenizer."""
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = tiny_encoder
    config = model.config
    config.num_labels = 1
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "clf")
    tokenizer.save_pretrained(tmp_path / "clf")
    return tmp_path / "clf"


def _reports(records) -> list[str]:
    return [r.getMessage() for r in records if "LOAD REPORT" in r.getMessage()]


def test_encoder_out_of_a_classification_folder_is_one_line(classification_folder, transformers_log, caplog):
    from transformers import AutoModel

    AutoModel.from_pretrained(classification_folder, add_pooling_layer=False)  # transformers alone: the table
    assert _reports(transformers_log), "the handler must see transformers' LOAD REPORT (else this test proves nothing)"
    transformers_log.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clir_ot.models.loading"):
        load_encoder(classification_folder)
    assert _reports(transformers_log) == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    lines = [r.getMessage() for r in caplog.records if r.name == "clir_ot.models.loading"]
    assert len(lines) == 1 and lines[0].startswith(f"loaded {classification_folder} ")
    # BERT's classification checkpoint has a pooler and a linear classifier; XLM-R's a two-layer classifier
    parts = "classifier and pooler" if "pooler" in str(load_file(str(classification_folder / "model.safetensors")).keys()) \
        else "classifier"
    assert f"left out: its {parts} weights (4)" in lines[0]


def test_weights_that_do_not_fit_the_encoder_still_warn(classification_folder, transformers_log, caplog):
    weights = classification_folder / "model.safetensors"
    state = load_file(str(weights))
    prefix = next(k for k in state if k.endswith("encoder.layer.0.attention.self.query.weight")).split("encoder.")[0]
    state.pop(f"{prefix}encoder.layer.0.attention.self.query.weight")
    state[f"{prefix}encoder.extra.weight"] = torch.zeros(3)
    save_file(state, str(weights), metadata={"format": "pt"})
    with caplog.at_level(logging.INFO, logger="clir_ot.models.loading"):
        load_encoder(classification_folder)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "freshly initialised: encoder.layer.0.attention.self.query.weight" in warnings[0]
    assert f"ignored: {prefix}encoder.extra.weight" in warnings[0]
    assert "classifier" not in warnings[0]  # the expected part stays out of the warning
    assert _reports(transformers_log) == []


def test_a_plain_encoder_folder_loads_without_any_note(tiny_encoder, tmp_path, caplog):
    model, tokenizer = tiny_encoder
    model.save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")
    with caplog.at_level(logging.INFO, logger="clir_ot.models.loading"):
        load_encoder(tmp_path / "enc")
    lines = [r.getMessage() for r in caplog.records if r.name == "clir_ot.models.loading"]
    assert len(lines) == 1 and "left out" not in lines[0]
