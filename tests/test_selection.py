"""Model selection: best/ when validation chose it, and the final weights nobody reads."""
from __future__ import annotations

import pytest

from clir_ot.errors import ModelLoadError
from clir_ot.models.folder import check_model_dir
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


def test_loading_a_folder_whose_final_weights_were_dropped_names_best(tmp_path):
    validated = _model(tmp_path / "validated")
    _model(validated / "best")
    (validated / "tokenizer.json").write_text("{}")
    drop_unselected_weights(validated)
    with pytest.raises(ModelLoadError, match=r"validated lacks its final weights: validation selected .*validated/best"):
        check_model_dir(validated)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"plain lacks weights \(model.safetensors\); tokenizer files"):
        check_model_dir(tmp_path / "plain")
