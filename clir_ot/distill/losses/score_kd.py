"""Relevance-score distillation across languages (the ``score-kd`` baseline)."""
from __future__ import annotations

import torch
from torch import nn

from clir_ot.errors import ConfigError

__all__ = ["ScoreDistillationLoss"]

MODES = ("mse", "kl")


class ScoreDistillationLoss(nn.Module):
    r"""The student's score on (q, f) regresses the teacher's score on (q, e).

    The teacher cross-encoder scores the English query q with the English passage e; the student
    scores q with the translation f. With ``mode="mse"`` (default) the student's logits regress the
    teacher's:

    .. math::

        \mathcal{L} = \frac{1}{N} \sum_{k} \bigl(s^S(q_k, f_k) - s^T(q_k, e_k)\bigr)^2

    over all :math:`N` scores of the batch. With ``mode="kl"`` the scores of a group
    (one query, several passages: shape ``(batch, k)``) become distributions
    :math:`p = \mathrm{softmax}(s / \tau)` and the loss is
    :math:`\frac{1}{B}\sum_b \mathrm{KL}(p^T_b \,\|\, p^S_b)`, as Translate-Distill trains its
    students. The teacher is the target: its scores are detached.

    Args:
        mode: ``"mse"`` (default) or ``"kl"``.
        temperature: :math:`\tau` of ``"kl"`` (ignored by ``"mse"``).

    Shapes:
        * ``student_scores``: ``(batch,)`` or ``(batch, k)`` logits on the foreign passages.
        * ``teacher_scores``: the same shape, logits on their English originals.
        * output: a scalar.

    Example:
        >>> import torch
        >>> loss = ScoreDistillationLoss()
        >>> float(loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])))   # (1 + 4) / 2
        2.5

    References:
        E. Yang, D. Lawrie, J. Mayfield, D. W. Oard, S. Miller. "Translate-Distill: Learning
        Cross-Language Dense Retrieval by Translation and Distillation." ECIR 2024.

        S. Hofstätter, S. Althammer, M. Schröder, M. Sertkan, A. Hanbury. "Improving Efficient
        Neural Ranking Models with Cross-Architecture Knowledge Distillation." arXiv:2010.02666, 2020
        (MSE on scores).
    """

    def __init__(self, mode: str = "mse", temperature: float = 1.0):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}; got {mode!r}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive; got {temperature!r}")
        self.mode = mode
        self.temperature = float(temperature)

    def forward(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        for side, scores in (("student", student_scores), ("teacher", teacher_scores)):
            if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
                got = scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise ValueError(f"{name}: expected floating-point {side} scores (logits), got {got}")
        if student_scores.shape != teacher_scores.shape or student_scores.dim() not in (1, 2) \
                or student_scores.numel() == 0:
            raise ValueError(
                f"{name}: expected student and teacher scores of the same shape (batch,) or (batch, k), got "
                f"{tuple(student_scores.shape)} and {tuple(teacher_scores.shape)}; fix: score each (q, f) "
                "and its (q, e) in the same position (flatten the model outputs with .view(batch, k))"
            )
        student = student_scores.float() if student_scores.dtype != torch.float64 else student_scores
        teacher = teacher_scores.detach().to(student.dtype)
        if self.mode == "mse":
            return torch.nn.functional.mse_loss(student, teacher)
        if student.dim() != 2 or student.shape[1] < 2:
            raise ValueError(
                f"{name}: mode='kl' compares score distributions over a group and needs shape (batch, k) "
                f"with k >= 2, got {tuple(student.shape)}; fix: group the passages of each query, or use mode='mse'"
            )
        log_p_student = torch.log_softmax(student / self.temperature, dim=1)
        log_p_teacher = torch.log_softmax(teacher / self.temperature, dim=1)
        return torch.nn.functional.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}" + (f", temperature={self.temperature}" if self.mode == "kl" else "")
