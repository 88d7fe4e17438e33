"""Validation during training: rerank held-out groups with the model, MRR@10 of the positive."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from clir_ot.errors import ConsistencyError
from clir_ot.training.data import TrainingGroup

__all__ = ["MrrValidator", "reciprocal_ranks"]


def reciprocal_ranks(scores: Sequence[np.ndarray], cutoff: int = 10) -> np.ndarray:
    """Reciprocal rank of the positive (index 0 of each score array) within its group, 0 beyond ``cutoff``.

    Ties are broken *against* the positive (a negative scoring the same ranks above it), so a model
    that scores everything alike gets the worst rank, not the best.
    """
    out = np.zeros(len(scores), dtype=np.float64)
    for i, group in enumerate(scores):
        group = np.asarray(group)
        rank = 1 + int(np.sum(group[1:] >= group[0]))
        out[i] = 1.0 / rank if rank <= cutoff else 0.0
    return out


class MrrValidator:
    """A validation callback: ``validator(model) -> {"MRR@10": ...}`` over held-out groups.

    Each group (the positive and its negatives, e.g. a first stage's top documents) is reranked
    by the cross-encoder; the metric is the mean reciprocal rank of the positive, cut at ``cutoff``.

    Args:
        groups: held-out groups (any number of negatives each).
        batch_size: pairs per forward pass.
        max_length: tokens per pair.
        dtype: compute precision (``fp32``, ``bf16``, ...).
        cutoff: rank cut-off (10).
    """

    def __init__(self, groups: Sequence[TrainingGroup], *, batch_size: int = 64, max_length: int | None = None,
                 dtype: str | None = None, cutoff: int = 10):
        if not groups:
            raise ConsistencyError("MrrValidator needs at least one group: the validation data has none")
        self.groups = list(groups)
        self.batch_size = batch_size
        self.max_length = max_length
        self.dtype = dtype
        self.cutoff = cutoff
        self.metric = f"MRR@{cutoff}"

    def __call__(self, model) -> dict[str, float]:
        pairs = [(g.query, p) for g in self.groups for p in g.passages]
        flat = model.predict(pairs, batch_size=self.batch_size, max_length=self.max_length, dtype=self.dtype,
                             show_progress=False)
        bounds = np.cumsum([0] + [len(g.passages) for g in self.groups])
        scores = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        rr = reciprocal_ranks(scores, self.cutoff)
        return {self.metric: float(rr.mean()), "Success@1": float(np.mean(rr == 1.0))}
