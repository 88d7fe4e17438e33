"""Sentence-embedding MSE distillation (the ``mse-sent`` baseline)."""
from __future__ import annotations

import torch
from torch import nn

from clir_ot.distill.losses._checks import as_float, check_same_batch_and_dim, check_token_states

__all__ = ["SentenceMSELoss", "masked_mean"]


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``states`` (B, L, d) over the positions where ``mask`` (B, L) is True: (B, d)."""
    w = mask.to(states.dtype).unsqueeze(-1)
    return (states * w).sum(1) / w.sum(1).clamp_min(1.0)


class SentenceMSELoss(nn.Module):
    r"""MSE between the teacher's embedding of the English text and the student's of its translation.

    The sentence embeddings are the masked means of the token states,
    :math:`\bar h^T = \frac{1}{|M^T|}\sum_{i \in M^T} h^T_i` and likewise :math:`\bar h^S`, and

    .. math::

        \mathcal{L} = \frac{1}{B\,d} \sum_{b=1}^{B} \lVert \bar h^T_b - \bar h^S_b \rVert_2^2

    (mean over the batch *and the dimensions*, as :class:`torch.nn.MSELoss` and sentence-transformers'
    ``MSELoss``). Averaging over :math:`d` makes this term much smaller than the OT term (about 400x
    in the issue's measurements), so combine them with explicit weights (:class:`CombinedLoss`).
    The teacher is the target: its states are detached.

    Shapes:
        * ``teacher``: ``(batch, m, dim)`` token states with ``teacher_mask`` ``(batch, m)`` (True on
          the tokens to pool), or an already pooled ``(batch, dim)`` embedding with ``teacher_mask=None``.
        * ``student``: ``(batch, n, dim)`` with ``student_mask`` ``(batch, n)``, or ``(batch, dim)``.
        * output: a scalar.

    Example:
        >>> import torch
        >>> teacher = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])   # mean of the first two: [2, 3]
        >>> student = torch.tensor([[[0.0, 0.0], [2.0, 2.0]]])               # mean: [1, 1]
        >>> loss = SentenceMSELoss()
        >>> float(loss(teacher, student, torch.tensor([[True, True, False]]), torch.tensor([[True, True]])))
        2.5

    References:
        N. Reimers, I. Gurevych. "Making Monolingual Sentence Embeddings Multilingual using Knowledge
        Distillation." EMNLP 2020. https://arxiv.org/abs/2004.09813
    """

    def _pool(self, states, mask, side):
        name = type(self).__name__
        if not isinstance(states, torch.Tensor):
            raise TypeError(f"{name}: expected the {side} states as a tensor, got {type(states).__name__}")
        if states.dim() == 2 and mask is None:
            if not states.is_floating_point():
                raise ValueError(f"{name}: expected floating-point {side} embeddings, got {states.dtype}")
            return as_float(states)
        if mask is None:
            raise ValueError(
                f"{name}: got {side} states of shape {tuple(states.shape)} without a mask; fix: pass "
                f"{side}_mask (batch, length) for token states, or pooled (batch, dim) embeddings"
            )
        mask = check_token_states(states, mask, side, name)
        return masked_mean(as_float(states), mask)

    def forward(
        self,
        teacher: torch.Tensor,
        student: torch.Tensor,
        teacher_mask: torch.Tensor | None = None,
        student_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        target = self._pool(teacher.detach(), teacher_mask, "teacher")
        pooled = self._pool(student, student_mask, "student")
        check_same_batch_and_dim(target, pooled, type(self).__name__)
        return torch.nn.functional.mse_loss(pooled, target.to(pooled.dtype))
