"""Model selection: the checkpoint that validation chose, else the final model.

A training run (:class:`~clir_ot.training.Trainer`) that validates keeps its best model in
``<output>/best``; one without validation data has only the final model in ``<output>``. Every
consumer of a trained teacher or student (reranking, encoding, distillation from a teacher) loads
:func:`selected_model` of its folder, so the rule is written once.
"""
from __future__ import annotations

import os
from pathlib import Path

from clir_ot.models.folder import BEST_DIR

__all__ = ["drop_unselected_weights", "selected_model"]

#: the weight files of a saved model (safetensors shards and their index, or PyTorch's .bin)
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin")


def selected_model(folder: str | os.PathLike) -> Path:
    """``<folder>/best`` when validation selected a checkpoint there, else ``folder`` itself.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     before = selected_model(tmp) == Path(tmp)
    ...     (Path(tmp) / "best").mkdir()
    ...     after = selected_model(tmp) == Path(tmp) / "best"
    >>> before, after
    (True, True)
    """
    folder = Path(folder)
    best = folder / BEST_DIR
    return best if best.is_dir() else folder


def drop_unselected_weights(folder: str | os.PathLike) -> int:
    """Delete the final model's weights in ``folder`` when validation selected ``best/`` instead.

    No consumer reads them (:func:`selected_model` returns ``best/``), and each costs the model's size
    on disk (≈ 470 MB for multilingual-e5-small), which a study of many students cannot afford. The
    folder's record (``training.json``, ``log.jsonl``, its config and tokenizer) stays. Nothing is
    deleted when there is no ``best/``: then the final model *is* the selected one. Returns the bytes freed.
    """
    folder = Path(folder)
    if not (folder / BEST_DIR).is_dir():
        return 0
    freed = 0
    for pattern in WEIGHT_PATTERNS:
        for path in folder.glob(pattern):
            if path.is_file():
                freed += path.stat().st_size
                path.unlink()
    return freed
