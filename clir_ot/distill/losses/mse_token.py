"""Token-level distillation with a hard alignment (the ``mse-token`` baseline)."""
from __future__ import annotations

import torch
from torch import nn

from clir_ot.distill.losses._checks import as_float, check_same_batch_and_dim, check_token_states
from clir_ot.errors import ConfigError

__all__ = ["TokenMSELoss"]

DISTANCES = ("mse", "cosine")


class TokenMSELoss(nn.Module):
    r"""Each student content token regresses its most similar teacher content token.

    For a pair (e, f), every student content token :math:`j` is aligned to the teacher content token
    of highest cosine similarity, :math:`a(j) = \arg\max_{i} \cos(h^T_i, h^S_j)` (a hard alignment,
    a constant for autograd), and

    .. math::

        \mathcal{L} = \frac{1}{N} \sum_{b} \sum_{j \in M^S_b} \delta\bigl(h^S_{b,j}, h^T_{b,a(j)}\bigr)

    averaged over all :math:`N` student content tokens of the batch, with
    :math:`\delta(x, y) = \frac{1}{d}\lVert x - y \rVert_2^2` (``distance="mse"``, the default: the
    mean squared error over the dimensions, as :class:`torch.nn.MSELoss`) or
    :math:`\delta(x, y) = 1 - \cos(x, y)` (``distance="cosine"``, on the scale of the OT term). This
    is the hard, one-sided counterpart of :class:`OTAlignmentLoss`: several student tokens may take
    the same teacher token and a teacher token may be left out. The teacher is the target: its
    states are detached.

    Args:
        distance: ``"mse"`` (default) or ``"cosine"``.

    Shapes:
        * ``teacher``: ``(batch, m, dim)``; ``teacher_mask``: ``(batch, m)`` bool, True on content tokens.
        * ``student``: ``(batch, n, dim)``; ``student_mask``: ``(batch, n)``.
        * output: a scalar.

    Example:
        >>> import torch
        >>> teacher = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
        >>> student = torch.tensor([[[2.0, 0.1], [0.1, 1.0]]])   # aligned to teacher tokens 0 and 1
        >>> ones = torch.ones(1, 2, dtype=torch.bool)
        >>> round(float(TokenMSELoss()(teacher, student, ones, ones)), 6)   # ((1 + .01) + (.01 + 1)) / 2 / 2
        0.505

    References:
        X. Jiao et al. "TinyBERT: Distilling BERT for Natural Language Understanding." Findings of
        EMNLP 2020 (MSE on token states).

        Z. Huang, P. Yu, J. Allan. "Improving Cross-lingual Information Retrieval on Low-Resource
        Languages via Optimal Transport Distillation." WSDM 2023 (the hard-alignment comparison).
    """

    def __init__(self, distance: str = "mse"):
        super().__init__()
        if distance not in DISTANCES:
            raise ConfigError(f"distance must be one of {DISTANCES}; got {distance!r}")
        self.distance = distance

    def alignment(
        self, teacher: torch.Tensor, student: torch.Tensor, teacher_mask: torch.Tensor, student_mask: torch.Tensor
    ) -> torch.Tensor:
        """``(batch, n)`` index of the teacher token each student token is aligned to (-1 where masked)."""
        name = type(self).__name__
        t_mask = check_token_states(teacher, teacher_mask, "teacher", name)
        s_mask = check_token_states(student, student_mask, "student", name)
        check_same_batch_and_dim(teacher, student, name)
        with torch.no_grad():
            t = torch.nn.functional.normalize(as_float(teacher), dim=-1)
            s = torch.nn.functional.normalize(as_float(student), dim=-1)
            sim = torch.bmm(s, t.transpose(1, 2))  # (B, n, m)
            sim = sim.masked_fill(~t_mask.unsqueeze(1), -torch.inf)
            index = sim.argmax(-1)
        return index.masked_fill(~s_mask, -1)

    def forward(
        self, teacher: torch.Tensor, student: torch.Tensor, teacher_mask: torch.Tensor, student_mask: torch.Tensor
    ) -> torch.Tensor:
        teacher = teacher.detach()
        index = self.alignment(teacher, student, teacher_mask, student_mask)
        s_mask = index >= 0
        d = teacher.shape[-1]
        target = torch.gather(as_float(teacher), 1, index.clamp_min(0).unsqueeze(-1).expand(-1, -1, d))
        s = as_float(student)
        target = target.to(s.dtype)
        if self.distance == "mse":
            per_token = (s - target).pow(2).mean(-1)
        else:
            per_token = 1.0 - torch.nn.functional.cosine_similarity(s, target, dim=-1, eps=1e-12)
        return per_token[s_mask].mean()

    def extra_repr(self) -> str:
        return f"distance={self.distance!r}"
