"""Listwise distillation of another model's score distribution over a group (soft targets)."""
from __future__ import annotations

import torch
from torch import nn

from clir_ot.errors import ConfigError
from clir_ot.training.losses._checks import check_group_scores

__all__ = ["ListwiseKLLoss"]


class ListwiseKLLoss(nn.Module):
    r"""KL divergence from a target model's softmax over a group to the student's.

    For a group of student logits :math:`s_0, \dots, s_k` and target scores :math:`t_0, \dots, t_k`
    of the same passages (e.g. a bi-encoder's cosine similarities: the dense first stage, which was
    trained on far more data than the reranker's training questions),

    .. math::

        p_j = \frac{\exp(t_j / \tau_t)}{\sum_i \exp(t_i / \tau_t)}, \qquad
        q_j = \frac{\exp(s_j / \tau_s)}{\sum_i \exp(s_i / \tau_s)}, \qquad
        \ell = \mathrm{KL}(p \,\|\, q) = \sum_{j=0}^{k} p_j \left(\log p_j - \log q_j\right),

    averaged over the groups of the batch. Every passage of the group gets a target, not only the
    positive, so each question teaches how its candidates compare (RocketQA-v2's and
    Hofstätter et al.'s listwise / margin distillation do the same with a cross-encoder teacher).

    Args:
        target_temperature: :math:`\tau_t`, which sharpens the target scores (bi-encoder cosines
            differ by a few hundredths: multilingual-e5 was trained with :math:`\tau = 0.01`).
        temperature: :math:`\tau_s`, for the student's logits (default 1).

    Shapes:
        * ``scores``: ``(batch, 1 + k)`` student logits; ``targets``: the same shape.
        * output: a scalar (mean over the batch), zero when the distributions agree.

    Example:
        >>> import torch
        >>> loss = ListwiseKLLoss(target_temperature=1.0)
        >>> float(loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])))
        0.0

    References:
        R. Ren et al. "RocketQAv2: A Joint Training Method for Dense Passage Retrieval and Passage
        Re-ranking." EMNLP 2021. https://arxiv.org/abs/2110.07367

        S. Hofstätter et al. "Improving Efficient Neural Ranking Models with Cross-Architecture
        Knowledge Distillation." 2020. https://arxiv.org/abs/2010.02666
    """

    def __init__(self, target_temperature: float = 0.05, temperature: float = 1.0):
        super().__init__()
        if not target_temperature > 0 or not temperature > 0:
            raise ConfigError(f"temperatures must be positive, got target {target_temperature} and student {temperature}")
        self.target_temperature = float(target_temperature)
        self.temperature = float(temperature)

    def forward(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_group_scores(scores, type(self).__name__)
        if targets.shape != scores.shape:
            raise ConfigError(f"{type(self).__name__}: targets of shape {tuple(targets.shape)} for scores of shape "
                              f"{tuple(scores.shape)}; give one target score per passage of each group")
        log_p = torch.log_softmax(targets.float() / self.target_temperature, dim=1)
        log_q = torch.log_softmax(scores.float() / self.temperature, dim=1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"target_temperature={self.target_temperature}, temperature={self.temperature}"
