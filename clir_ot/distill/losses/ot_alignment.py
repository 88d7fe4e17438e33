"""OPTICAL's token-alignment loss: entropic optimal transport between teacher and student tokens."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from clir_ot.distill.losses._checks import as_float, as_layers, check_same_batch_and_dim, check_token_states
from clir_ot.errors import ConfigError
from clir_ot.ot import DIFFERENTIATE, EPSILON_MODES, METHODS, OTResult, token_alignment
from clir_ot.settings import check_choice

__all__ = ["OTAlignmentLoss"]

States = torch.Tensor | Sequence[torch.Tensor]


class OTAlignmentLoss(nn.Module):
    r"""Transport cost between the teacher's English tokens and the student's foreign tokens.

    For a pair (e, f) with teacher states :math:`h^T_1..h^T_m` of e and student states
    :math:`h^S_1..h^S_n` of f (content tokens only), the cost is
    :math:`C_{ij} = 1 - \cos(h^T_i, h^S_j)`, the marginals are uniform over the content tokens,
    :math:`\mathbf{P}^\star` is the entropic OT plan (:func:`clir_ot.ot.sinkhorn`) and

    .. math::

        \mathcal{L}_{OT} = \frac{1}{B} \sum_{b=1}^{B} \langle \mathbf{P}^\star_b, \mathbf{C}_b \rangle_F

    summed over the layers when lists of per-layer states are given. By default the plan is held
    fixed (envelope theorem: :math:`\partial \mathcal{L} / \partial \mathbf{C} = \mathbf{P}^\star / B`),
    so the student is pulled toward the teacher tokens the plan aligns it with. The teacher is the
    target: its states are detached. With balanced OT the loss lies in [0, 2] per layer (a
    cosine cost under a plan of total mass 1); it is 0 when every aligned pair points the same way.

    Args:
        epsilon: entropic regularisation (sharper plan when smaller); with ``epsilon_mode="relative"``
            a fraction of each pair's mean cost.
        epsilon_mode: ``"relative"`` (default) or ``"absolute"`` (in cost units), see :func:`~clir_ot.ot.sinkhorn`.
        marginal_penalty: ``None`` for balanced OT (every content token sends and receives its full
            mass); a float :math:`\rho` for unbalanced OT (KL-relaxed marginals, for tokens without a
            counterpart).
        max_iter, tol, method: passed to :func:`~clir_ot.ot.sinkhorn`.
        centre: subtract the batch mean of each side's content-token states before the cosine.
        differentiate: ``"envelope"`` (default) or ``"unrolled"`` (autograd through the iterations).

    Shapes:
        * ``teacher``: ``(batch, m, dim)`` or a list of such tensors, one per layer.
        * ``student``: ``(batch, n, dim)``, or a list of the same length.
        * ``teacher_mask``: ``(batch, m)`` bool, True on content tokens (not special, padding or
          prefix: see :func:`clir_ot.distill.content_token_mask`); ``student_mask``: ``(batch, n)``.
          At least one content token per row. Masked tokens get exactly zero mass.
        * output: a scalar.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> teacher = torch.randn(2, 5, 8)
        >>> student = teacher[:, [3, 0, 4, 1, 2]] + 0.01 * torch.randn(2, 5, 8)   # permuted copy
        >>> mask = torch.ones(2, 5, dtype=torch.bool)
        >>> loss = OTAlignmentLoss(epsilon=0.05)
        >>> bool(loss(teacher, student, mask, mask) < 0.01)
        True
        >>> loss.plan(teacher, student, mask, mask).plan[0].argmax(1).tolist()  # teacher i -> student j
        [1, 3, 4, 0, 2]

    References:
        Z. Huang, P. Yu, J. Allan. "Improving Cross-lingual Information Retrieval on Low-Resource
        Languages via Optimal Transport Distillation." WSDM 2023.

        M. Cuturi. "Sinkhorn Distances: Lightspeed Computation of Optimal Transport." NeurIPS 2013.

        L. Chizat, G. Peyré, B. Schmitzer, F.-X. Vialard. "Scaling Algorithms for Unbalanced
        Optimal Transport Problems." Math. Comp. 87, 2018.
    """

    def __init__(
        self,
        epsilon: float = 0.05,
        epsilon_mode: str = "relative",
        marginal_penalty: float | tuple[float, float] | None = None,
        max_iter: int = 1000,
        tol: float | None = None,
        centre: bool = False,
        method: str = "auto",
        differentiate: str = "envelope",
    ):
        super().__init__()
        check_choice("epsilon_mode", epsilon_mode, EPSILON_MODES)
        check_choice("method", method, METHODS)
        check_choice("differentiate", differentiate, DIFFERENTIATE)
        if not epsilon > 0:
            raise ConfigError(f"epsilon must be positive; got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.epsilon_mode = epsilon_mode
        self.marginal_penalty = marginal_penalty
        self.max_iter = int(max_iter)
        self.tol = tol
        self.centre = bool(centre)
        self.method = method
        self.differentiate = differentiate

    def _solve(self, teacher: States, student: States, teacher_mask, student_mask) -> list[OTResult]:
        name = type(self).__name__
        t_layers, s_layers = as_layers(teacher, "teacher", name), as_layers(student, "student", name)
        if len(t_layers) != len(s_layers):
            raise ValueError(
                f"{name}: got {len(t_layers)} teacher layer(s) but {len(s_layers)} student layer(s); "
                "fix: pass the same list of layers for both"
            )
        results = []
        for t, s in zip(t_layers, s_layers):
            t_mask = check_token_states(t, teacher_mask, "teacher", name)
            s_mask = check_token_states(s, student_mask, "student", name)
            check_same_batch_and_dim(t, s, name)
            results.append(token_alignment(
                as_float(t.detach()), as_float(s), t_mask, s_mask, centre=self.centre,
                epsilon=self.epsilon, epsilon_mode=self.epsilon_mode, marginal_penalty=self.marginal_penalty,
                max_iter=self.max_iter, tol=self.tol, method=self.method, differentiate=self.differentiate,
            ))
        return results

    def forward(
        self, teacher: States, student: States, teacher_mask: torch.Tensor, student_mask: torch.Tensor
    ) -> torch.Tensor:
        results = self._solve(teacher, student, teacher_mask, student_mask)
        return torch.stack([r.cost.mean() for r in results]).sum()

    def plan(
        self, teacher: States, student: States, teacher_mask: torch.Tensor, student_mask: torch.Tensor
    ) -> OTResult | list[OTResult]:
        """The solved problems, for inspection: an :class:`~clir_ot.ot.OTResult` (``plan`` (B, m, n),
        rows teacher tokens, columns student tokens; ``cost`` (B,)), or a list of them, one per layer,
        when lists of layers are given. Computed without autograd."""
        with torch.no_grad():
            results = self._solve(teacher, student, teacher_mask, student_mask)
        return results if isinstance(teacher, (list, tuple)) else results[0]

    def extra_repr(self) -> str:
        rho = "" if self.marginal_penalty is None else f", marginal_penalty={self.marginal_penalty}"
        return f"epsilon={self.epsilon}, epsilon_mode={self.epsilon_mode!r}{rho}, centre={self.centre}"
