"""Listwise softmax cross-entropy over a group: localised contrastive estimation (LCE)."""
from __future__ import annotations

import torch
from torch import nn

from clir_ot.errors import ConfigError
from clir_ot.training.losses._checks import check_group_scores

__all__ = ["ListwiseSoftmaxLoss"]


class ListwiseSoftmaxLoss(nn.Module):
    r"""Softmax cross-entropy of the positive against its group's hard negatives.

    For a group of scores :math:`s_0, \dots, s_k` with the positive at index 0 and :math:`k` hard
    negatives taken from a first-stage ranking (the *localised* part), the loss is

    .. math::

        \ell = -\log \frac{\exp(s_0 / \tau)}{\sum_{j=0}^{k} \exp(s_j / \tau)}

    averaged over the groups of the batch. With ``temperature`` :math:`\tau = 1` this is the LCE loss
    of Gao, Dai & Callan; with :math:`k = 1` it is RankNet's pairwise logistic loss.

    Args:
        temperature: divides the scores before the softmax (default 1).

    Shapes:
        * ``scores``: ``(batch, 1 + k)`` float logits, column 0 the positive, ``k >= 1``.
        * output: a scalar (mean over the batch).

    Example:
        >>> import torch
        >>> loss = ListwiseSoftmaxLoss()
        >>> round(float(loss(torch.tensor([[2.0, 0.0, 0.0]]))), 4)  # -log(e^2 / (e^2 + 2))
        0.2395

    References:
        L. Gao, Z. Dai, J. Callan. "Rethink Training of BERT Rerankers in Multi-Stage Retrieval
        Pipeline." ECIR 2021. https://arxiv.org/abs/2101.08751

        C. Burges et al. "Learning to Rank using Gradient Descent." ICML 2005 (RankNet).
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        check_group_scores(scores, type(self).__name__)
        logits = scores.float() / self.temperature
        return -torch.log_softmax(logits, dim=1)[:, 0].mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
