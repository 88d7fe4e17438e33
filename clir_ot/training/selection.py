"""Model selection: the checkpoint that validation chose, else the final model.

A training run (:class:`~clir_ot.training.Trainer`) that validates keeps its best model in
``<output>/best``; one without validation data has only the final model in ``<output>``. Every
consumer of a trained teacher or student (reranking, encoding, distillation from a teacher) loads
:func:`selected_model` of its folder, so the rule is written once.
"""
from __future__ import annotations

import os
from pathlib import Path

from clir_ot.training.trainer import BEST_DIR

__all__ = ["selected_model"]


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
