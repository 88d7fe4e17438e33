"""Input checks shared by the ranking losses."""
from __future__ import annotations

import torch


def check_group_scores(scores: torch.Tensor, loss: str) -> None:
    """Raise ``ValueError`` unless ``scores`` is a float ``(batch, 1 + k)`` tensor with ``k >= 1``."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{loss}: expected a torch.Tensor of scores, got {type(scores).__name__}")
    if scores.dim() != 2:
        raise ValueError(
            f"{loss}: expected scores of shape (batch, 1 + negatives), got shape {tuple(scores.shape)}; "
            "fix: reshape the flat model output with scores.view(batch, 1 + negatives), positive first"
        )
    if scores.shape[1] < 2:
        raise ValueError(
            f"{loss}: expected at least 2 scores per group (the positive and >= 1 negative), got shape "
            f"{tuple(scores.shape)}; fix: give every group at least one negative"
        )
    if scores.shape[0] < 1:
        raise ValueError(f"{loss}: expected at least one group, got shape {tuple(scores.shape)}; fix: pass a non-empty batch")
    if not scores.is_floating_point():
        raise ValueError(f"{loss}: expected floating-point scores, got {scores.dtype}; fix: pass the model's logits")
