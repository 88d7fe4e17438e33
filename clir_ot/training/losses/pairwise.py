"""Pairwise margin ranking (hinge) loss between the positive and each negative of its group."""
from __future__ import annotations

import torch
from torch import nn

from clir_ot.errors import ConfigError
from clir_ot.training.losses._checks import check_group_scores

__all__ = ["PairwiseMarginLoss"]


class PairwiseMarginLoss(nn.Module):
    r"""Hinge loss on the score difference of the positive and each negative.

    For a group of scores :math:`s_0, \dots, s_k` with the positive at index 0,

    .. math::

        \ell = \frac{1}{k} \sum_{j=1}^{k} \max\bigl(0,\; m - (s_0 - s_j)\bigr)

    averaged over the groups of the batch: each negative must score at least the margin :math:`m`
    below the positive. This equals :class:`torch.nn.MarginRankingLoss` applied to every
    (positive, negative) pair with target 1.

    Args:
        margin: the required gap :math:`m` (default 1).

    Shapes:
        * ``scores``: ``(batch, 1 + k)`` float logits, column 0 the positive, ``k >= 1``.
        * output: a scalar (mean over groups and negatives).

    Example:
        >>> import torch
        >>> loss = PairwiseMarginLoss(margin=1.0)
        >>> float(loss(torch.tensor([[2.0, 1.5, 0.0]])))  # (max(0, 1-0.5) + max(0, 1-2)) / 2
        0.25

    References:
        R. Herbrich, T. Graepel, K. Obermayer. "Large Margin Rank Boundaries for Ordinal Regression."
        Advances in Large Margin Classifiers, MIT Press, 2000.

        T. Joachims. "Optimizing Search Engines using Clickthrough Data." KDD 2002 (Ranking SVM).
    """

    def __init__(self, margin: float = 1.0):
        super().__init__()
        if not margin >= 0:
            raise ConfigError(f"margin must be non-negative, got {margin}")
        self.margin = float(margin)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        check_group_scores(scores, type(self).__name__)
        scores = scores.float()
        differences = scores[:, :1] - scores[:, 1:]
        return torch.clamp(self.margin - differences, min=0).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
