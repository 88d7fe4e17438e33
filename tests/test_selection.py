"""Model selection: best/ when validation chose it, and the final weights nobody reads."""
from __future__ import annotations

from clir_ot.training import drop_unselected_weights, selected_model


def _model(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    return folder


def test_final_weights_are_dropped_only_when_best_was_selected(tmp_path):
    alone = _model(tmp_path / "no-validation")
    assert drop_unselected_weights(alone) == 0 and (alone / "model.safetensors").is_file()
    assert selected_model(alone) == alone

    validated = _model(tmp_path / "validated")
    _model(validated / "best")
    (validated / "training.json").write_text("{}")
    assert drop_unselected_weights(validated) == 100
    assert not (validated / "model.safetensors").exists()
    # the record and the selected model stay
    assert (validated / "training.json").is_file() and (validated / "config.json").is_file()
    assert selected_model(validated) == validated / "best" and (validated / "best" / "model.safetensors").is_file()
    assert drop_unselected_weights(validated) == 0
