r"""Batched entropic optimal transport in torch: Sinkhorn with padding masks, balanced or unbalanced.

A batch of ``B`` transport problems between token sequences of different lengths is solved at once,
on CPU or GPU. For each batch element, with a cost matrix :math:`\mathbf{C} \in \mathbb{R}^{m \times n}`
and marginals :math:`\mathbf{a} \in \mathbb{R}_+^m`, :math:`\mathbf{b} \in \mathbb{R}_+^n`, the
**balanced** problem is

.. math::
    \mathbf{P}^\star = \mathop{\arg\min}_{\mathbf{P} \geq 0}
        \langle \mathbf{P}, \mathbf{C} \rangle_F - \varepsilon \mathrm{H}(\mathbf{P})
    \quad \text{s.t.} \quad \mathbf{P} \mathbf{1}_n = \mathbf{a}, \quad
        \mathbf{P}^\top \mathbf{1}_m = \mathbf{b}

with the entropy :math:`\mathrm{H}(\mathbf{P}) = -\sum_{ij} P_{ij} (\log P_{ij} - 1)` (Cuturi, 2013).
The **unbalanced** problem (Chizat et al., 2018) replaces the hard marginal constraints by
Kullback--Leibler penalties of weight :math:`\rho` (``marginal_penalty``), so that tokens without a counterpart
need not send or receive their full mass:

.. math::
    \mathbf{P}^\star = \mathop{\arg\min}_{\mathbf{P} \geq 0}
        \langle \mathbf{P}, \mathbf{C} \rangle_F
        + \varepsilon \mathrm{KL}(\mathbf{P} \,\|\, \mathbf{a} \mathbf{b}^\top)
        + \rho_a \mathrm{KL}(\mathbf{P} \mathbf{1}_n \,\|\, \mathbf{a})
        + \rho_b \mathrm{KL}(\mathbf{P}^\top \mathbf{1}_m \,\|\, \mathbf{b})

with the generalised divergence :math:`\mathrm{KL}(\mathbf{p} \| \mathbf{q}) = \sum_i p_i \log(p_i/q_i)
- p_i + q_i`. This is exactly the problem of POT's
``ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg=ε, reg_m=(ρ_a, ρ_b), reg_type="kl")`` (POT's default
since 0.9.5). In the balanced case the reference :math:`\mathbf{a}\mathbf{b}^\top` only adds a constant,
so both formulations have the same minimiser, that of ``ot.sinkhorn(a, b, C, reg=ε)``.

**Marginals.** By default :math:`\mathbf{a}` and :math:`\mathbf{b}` are uniform over the real
(unmasked) tokens: :math:`a_i = 1/m'` for the :math:`m'` unmasked rows, 0 on padding. Padding rows
and columns (``mask_a``/``mask_b`` False, or zero marginal mass) get exactly zero mass in the plan.

**Epsilon.** ``epsilon_mode="absolute"`` uses :math:`\varepsilon` as given, in cost units.
``epsilon_mode="relative"`` (the default) uses, per batch element,
:math:`\varepsilon_b = \texttt{epsilon} \cdot \operatorname{mean}_{ij \text{ unmasked}} |C_{ij}|`,
so that ``epsilon=0.05`` means "5% of the typical cost" whatever the cost's scale. The absolute
values used are returned in :attr:`OTResult.epsilon`; pass them as ``reg`` to reproduce a result
with POT.

**Solvers.** Sinkhorn's fixed point is computed either in the scaling domain
(:math:`\mathbf{P} = \operatorname{diag}(\mathbf{u}) \mathbf{K} \operatorname{diag}(\mathbf{v})`,
:math:`\mathbf{K} = e^{-\mathbf{C}/\varepsilon}`, two batched mat-vec products per iteration; fast
but it under/overflows when :math:`\max \mathbf{C}/\varepsilon` is large) or in the log domain
(dual potentials updated with log-sum-exp; stable for any :math:`\varepsilon`, slower).
``method="auto"`` picks, per batch element, the scaling domain when the row- and column-reduced
kernel cannot underflow (Schmitzer, 2019, absorbs the same reductions into the potentials), and the
log domain otherwise; an element whose scaling iterations still hit a non-finite value is solved
again in the log domain. Convergence is checked every ``check_every`` iterations on the marginal
error, and an element leaves the batch as soon as it has converged: in the balanced case each
element then starts, iterates and stops exactly as POT's ``ot.sinkhorn`` does on it alone. On CPU
the batch is solved in chunks that fit the last-level cache. Where the whole range of an element's cost over
epsilon is within the safe range, its kernel is :math:`e^{-(\mathbf{C} - \min \mathbf{C})/\varepsilon}`
(one pass) instead of the row- and column-reduced one. ``overrelaxation=True`` over-relaxes the
balanced scaling-domain iterations (Thibault et al., 2021; Lehmann et al., 2022): same fixed point
and stopping rule, fewer iterations, plans equal to POT's to about the tolerance.

**What is returned.** An :class:`OTResult`: the plan :math:`\mathbf{P}^\star` (B, m, n), the
transport cost :math:`\langle \mathbf{P}^\star, \mathbf{C} \rangle_F` (B,) (without the entropy
term), the dual potentials, the :math:`\varepsilon` used, the iteration count and convergence flags.
By default (``differentiate="envelope"``) the plan is a constant for autograd and
:math:`\partial \langle \mathbf{P}^\star, \mathbf{C}\rangle_F / \partial \mathbf{C} = \mathbf{P}^\star`,
which is the exact gradient of the regularised OT value (envelope theorem) and costs nothing;
``differentiate="unrolled"`` back-propagates through the iterations instead.

Example
-------
>>> import torch
>>> from clir_ot.ot import sinkhorn
>>> cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
>>> result = sinkhorn(cost, epsilon=0.1, epsilon_mode="absolute")
>>> result.plan.sum(-1).tolist(), result.plan.sum(-2).tolist()
([0.5, 0.5], [0.5, 0.5])
>>> round(float(result.plan[0, 0]), 6), round(float(result.cost), 6)
(0.499977, 4.5e-05)

References
----------
.. [1] M. Cuturi. Sinkhorn Distances: Lightspeed Computation of Optimal Transport. NeurIPS 2013.
.. [2] B. Schmitzer. Stabilized Sparse Scaling Algorithms for Entropy Regularized Transport
   Problems. SIAM J. Sci. Comput. 41(3), 2019.
.. [3] L. Chizat, G. Peyré, B. Schmitzer, F.-X. Vialard. Scaling Algorithms for Unbalanced Optimal
   Transport Problems. Math. Comp. 87, 2018.
.. [4] Z. Huang, P. Yu, J. Allan. Improving Cross-lingual Information Retrieval on Low-Resource
   Languages via Optimal Transport Distillation (OPTICAL). WSDM 2023.
.. [5] A. Thibault, L. Chizat, C. Dossal, N. Papadakis. Overrelaxed Sinkhorn--Knopp Algorithm for
   Regularized Optimal Transport. Algorithms 14(5), 2021.
.. [6] T. Lehmann, M.-K. von Renesse, A. Sambale, A. Uschmajew. A note on overrelaxation in the
   Sinkhorn algorithm. Optimization Letters 16, 2022.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from clir_ot.errors import ConfigError

__all__ = [
    "OTResult",
    "SinkhornConvergenceWarning",
    "cosine_cost",
    "ot_loss",
    "sinkhorn",
    "token_alignment",
]

EPSILON_MODES = ("relative", "absolute")
METHODS = ("auto", "log", "scaling")
DIFFERENTIATE = ("envelope", "unrolled")

#: ``method="auto"`` uses the scaling domain for a batch element when the largest entry of its
#: row- and column-reduced cost, divided by epsilon, is at most this (the kernel then stays far
#: above the smallest normal number, and the scalings far below the largest).
SCALING_SAFE_RANGE = {torch.float64: 200.0, torch.float32: 30.0}

#: Default convergence tolerance by compute dtype (``tol=None``); float32 cannot reach 1e-9.
DEFAULT_TOL = {torch.float64: 1e-9, torch.float32: 1e-5}


class SinkhornConvergenceWarning(UserWarning):
    """Sinkhorn stopped at ``max_iter`` (or on a numerical error) before reaching ``tol``."""


@dataclass(frozen=True, eq=False)  # tensors do not compare to one bool
class OTResult:
    """The solution of a batch of entropic OT problems, as returned by :func:`sinkhorn`.

    Shapes are given for a batched call; for a single (m, n) problem the leading ``B`` is dropped.

    Attributes
    ----------
    plan : Tensor, shape (B, m, n)
        The optimal plan :math:`\\mathbf{P}^\\star`; exactly zero on masked rows and columns. Detached
        from autograd unless ``differentiate="unrolled"``.
    cost : Tensor, shape (B,)
        :math:`\\langle \\mathbf{P}^\\star, \\mathbf{C} \\rangle_F` per element, differentiable in the cost
        (gradient :math:`\\mathbf{P}^\\star` with ``differentiate="envelope"``).
    f, g : Tensor, shapes (B, m) and (B, n)
        Dual potentials in cost units, with
        :math:`P_{ij} = \\exp((f_i + g_j - C_{ij}) / \\varepsilon)`; ``-inf`` on masked entries.
    epsilon : Tensor, shape (B,)
        The absolute :math:`\\varepsilon` used for each element (``reg`` in POT's terms).
    n_iter : int
        Iterations run (the largest over the batch).
    converged : Tensor of bool, shape (B,)
        Whether each element reached ``tol``.
    error : Tensor, shape (B,)
        The last convergence measure per element (see ``tol`` in :func:`sinkhorn`).
    """

    plan: torch.Tensor
    cost: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    epsilon: torch.Tensor
    n_iter: int
    converged: torch.Tensor
    error: torch.Tensor


# --------------------------------------------------------------------------------------------------
# Argument handling


def _penalty_pair(marginal_penalty) -> tuple[float, float] | None:
    if marginal_penalty is None:
        return None
    if isinstance(marginal_penalty, (tuple, list)):
        if len(marginal_penalty) != 2:
            raise ConfigError(f"marginal_penalty must be None, a float or a pair (rho_a, rho_b); got {marginal_penalty!r}")
        pair = (float(marginal_penalty[0]), float(marginal_penalty[1]))
    else:
        pair = (float(marginal_penalty), float(marginal_penalty))
    if not all(r > 0 for r in pair) or any(math.isnan(r) for r in pair):
        raise ConfigError(f"marginal_penalty must be positive (float('inf') for a hard marginal); got {marginal_penalty!r}")
    if pair == (math.inf, math.inf):
        return None
    return pair


def _marginal(weights, mask, shape, name, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(weights, mask)`` of ``shape`` (B, k): weights zero wherever the mask is False."""
    B, k = shape
    if mask is None:
        mask_t = torch.ones(B, k, dtype=torch.bool, device=device)
    else:
        if not isinstance(mask, torch.Tensor) or mask.shape != (B, k):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ConfigError(f"mask_{name} must be a bool tensor of shape {(B, k)}; got {got}")
        mask_t = mask.to(device=device, dtype=torch.bool)
    if weights is None:
        w = mask_t.to(dtype)
        count = w.sum(-1, keepdim=True)
        if bool((count == 0).any()):
            raise ConfigError(f"mask_{name} leaves a batch element with no unmasked entry")
        return w / count, mask_t
    w = torch.as_tensor(weights, dtype=dtype, device=device)
    if w.shape != (B, k):
        raise ConfigError(f"{name} must have shape {(B, k)} (batch, length); got {tuple(w.shape)}")
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ConfigError(f"{name} must be finite and non-negative")
    w = torch.where(mask_t, w, torch.zeros((), dtype=dtype, device=device))
    mask_t = mask_t & (w > 0)  # zero-mass entries are treated as padding
    if bool((~mask_t.any(-1)).any()):
        raise ConfigError(f"{name} has a batch element with no positive mass")
    return w, mask_t


# --------------------------------------------------------------------------------------------------
# The two iteration schemes. Both update g (columns) then f (rows), as POT does, and check every
# `check_every` iterations, using quantities the next half-iteration needs anyway.


def _retire(done, active, outputs, values):
    """Store the finished elements' ``values`` into the full-batch ``outputs``; return the indices
    (into the current working batch) of those that go on, and the new map to the full batch."""
    rows = done.nonzero().squeeze(1)
    dest = rows if active is None else active.index_select(0, rows)
    for out, value in zip(outputs, values):
        out.index_copy_(0, dest, value.index_select(0, rows))
    keep = (~done).nonzero().squeeze(1)
    return keep, (keep if active is None else active.index_select(0, keep))


def _lse(log_k, pot, dim, buf):
    """``logsumexp(log_k + pot, dim)`` computed in the workspace ``buf`` (no (B, m, n) allocations)."""
    torch.add(log_k, pot, out=buf)
    top = buf.amax(dim, keepdim=True)
    buf.sub_(top).exp_()
    return buf.sum(dim).log_().add_(top.squeeze(dim))


def _log_loop(log_k, log_a, log_b, fi_a, fi_b, balanced, b, max_iter, tol, check_every, inplace):
    """Log-domain Sinkhorn. ``log_k`` (B, m, n) = -C/eps (0 on masked pairs); returns f, g in eps units.

    With ``inplace`` (no autograd) the log-sum-exps run in one workspace and every element leaves the
    batch as soon as it has converged, as it would in its own POT call.
    """
    B = log_k.shape[0]
    # f = 0 on real rows, -inf on masked ones (as POT's sinkhorn_log starts)
    f = torch.where(torch.isfinite(log_a), torch.zeros_like(log_a), log_a)
    if inplace:
        buf = torch.empty_like(log_k)
        lse_col = _lse(log_k, f.unsqueeze(2), 1, buf)
        out_f, out_g = torch.empty_like(log_a), torch.empty_like(log_b)
        out_err = torch.empty(B, dtype=log_k.dtype, device=log_k.device)
        active = None
    else:
        lse_col = torch.logsumexp(log_k + f.unsqueeze(2), dim=1)  # (B, n)
    err = torch.full((B,), math.inf, dtype=log_k.dtype, device=log_k.device)
    it = 0
    while it < max_iter:
        it += 1
        g = log_b - lse_col if balanced else log_b - fi_b * lse_col
        if inplace:
            lse_row = _lse(log_k, g.unsqueeze(1), 2, buf)
            f = log_a - lse_row if balanced else log_a - fi_a * lse_row
            lse_col = _lse(log_k, f.unsqueeze(2), 1, buf)
        else:
            lse_row = torch.logsumexp(log_k + g.unsqueeze(1), dim=2)  # (B, m)
            f = log_a - lse_row if balanced else log_a - fi_a * lse_row
            lse_col = torch.logsumexp(log_k + f.unsqueeze(2), dim=1)
        if (it - 1) % check_every and it != max_iter:  # after iterations 1, 1 + k, ... as POT
            continue
        with torch.no_grad():
            err = _error(g, lse_col, log_b, fi_b, balanced, b)
            done = (err < tol) | ~torch.isfinite(err)
            all_done = bool(done.all())
        if not inplace:
            if all_done:
                break
            continue
        if all_done or it == max_iter:
            done = torch.ones_like(done)
        elif not bool(done.any()):
            continue
        keep, active = _retire(done, active, (out_f, out_g, out_err), (f, g, err))
        if all_done or it == max_iter:
            break
        log_k, log_a, log_b, b = (x.index_select(0, keep) for x in (log_k, log_a, log_b, b))
        fi_a, fi_b, lse_col = (x.index_select(0, keep) for x in (fi_a, fi_b, lse_col))
        buf = torch.empty_like(log_k)
    if inplace:
        return out_f, out_g, it, out_err
    return f, g, it, err


def _error(g, lse_col, log_b, fi_b, balanced, b):
    """Balanced: ||P^T 1 - b||_2 (as POT). Unbalanced: max_j |g_next - g_j| / max(1, max_j |g_j|)."""
    if balanced:
        col = torch.exp(g + lse_col)
        return torch.linalg.vector_norm(col - b, dim=-1)
    g_next = log_b - fi_b * lse_col
    live = torch.isfinite(log_b)
    zero = torch.zeros((), dtype=g.dtype, device=g.device)
    diff = torch.where(live, (g_next - g).abs(), zero).amax(-1)
    scale = torch.where(live, g.abs(), zero).amax(-1).clamp_min(1.0)
    return diff / scale


# --------------------------------------------------------------------------------------------------
# The solver


def sinkhorn(
    cost: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    epsilon: float = 0.05,
    epsilon_mode: str = "relative",
    marginal_penalty: float | tuple[float, float] | None = None,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
    max_iter: int = 1000,
    tol: float | None = None,
    check_every: int = 10,
    method: str = "auto",
    differentiate: str = "envelope",
    overrelaxation: bool = False,
) -> OTResult:
    r"""Solve a batch of entropic OT problems with Sinkhorn iterations (balanced or unbalanced).

    For each batch element solves

    .. math::
        \mathbf{P}^\star = \mathop{\arg\min}_{\mathbf{P} \geq 0} \langle \mathbf{P}, \mathbf{C} \rangle_F
            + \varepsilon \mathrm{KL}(\mathbf{P} \| \mathbf{a}\mathbf{b}^\top)
            + \rho_a \mathrm{KL}(\mathbf{P}\mathbf{1} \| \mathbf{a})
            + \rho_b \mathrm{KL}(\mathbf{P}^\top\mathbf{1} \| \mathbf{b})

    where :math:`\rho = \infty` (``marginal_penalty=None``, the default) turns the penalties into the hard
    constraints :math:`\mathbf{P}\mathbf{1} = \mathbf{a}`, :math:`\mathbf{P}^\top\mathbf{1} = \mathbf{b}`
    (the balanced problem, whose minimiser is that of :math:`\langle\mathbf{P},\mathbf{C}\rangle_F -
    \varepsilon \mathrm{H}(\mathbf{P})`). The iterations, with :math:`f, g` in units of
    :math:`\varepsilon` and :math:`\phi = \rho / (\rho + \varepsilon)` (1 when balanced), are

    .. math::
        g_j \leftarrow \log b_j - \phi_b \log \sum_i e^{f_i - C_{ij}/\varepsilon}, \qquad
        f_i \leftarrow \log a_i - \phi_a \log \sum_j e^{g_j - C_{ij}/\varepsilon}, \qquad
        P_{ij} = e^{f_i + g_j - C_{ij}/\varepsilon}

    (Cuturi 2013; Chizat et al. 2018), run in the log domain or, where it is safe, in the scaling
    domain :math:`u = e^{f}`, :math:`v = e^{g}` with two batched mat-vec products per iteration.

    Parameters
    ----------
    cost : Tensor, shape (B, m, n) or (m, n)
        Cost matrices :math:`\mathbf{C}`. Entries on masked rows/columns are ignored (may be anything,
        even inf). float64 is computed in float64; other float dtypes in float32.
    a : Tensor, shape (B, m), optional
        Source marginals; default uniform over the unmasked rows. Entries with zero mass are padding.
    b : Tensor, shape (B, n), optional
        Target marginals; default uniform over the unmasked columns. In the balanced case
        ``a.sum(-1)`` must equal ``b.sum(-1)``.
    epsilon : float
        Entropic regularisation :math:`\varepsilon > 0` (smaller: sharper plan, more iterations).
    epsilon_mode : {"relative", "absolute"}
        ``"absolute"``: :math:`\varepsilon` in cost units. ``"relative"``: per element,
        ``epsilon * mean(|C|)`` over the unmasked pairs (``epsilon`` itself if that mean is 0). The
        scale is treated as a constant by autograd. The values used are in ``OTResult.epsilon``.
    marginal_penalty : float or (float, float), optional
        ``None`` for balanced OT; otherwise the marginal penalties :math:`\rho` (cost units, as POT's
        ``reg_m``), one for both sides or ``(rho_a, rho_b)``; ``float("inf")`` keeps that side hard.
    mask_a : Tensor of bool, shape (B, m), optional
        True on real rows, False on padding (which gets exactly zero mass).
    mask_b : Tensor of bool, shape (B, n), optional
        Same for the columns.
    max_iter : int
        Iteration cap; on reaching it without convergence a :class:`SinkhornConvergenceWarning` is
        issued.
    tol : float, optional
        Stop when every element's error is below ``tol``. Balanced: the marginal violation
        :math:`\|\mathbf{P}^\top\mathbf{1} - \mathbf{b}\|_2` (the rows are exact after each
        iteration), as POT's ``stopThr``. Unbalanced: the relative change of the column potential over
        one iteration, :math:`\max_j |\Delta g_j| / \max(1, \max_j |g_j|)`. Default 1e-9 in float64,
        1e-5 in float32.
    check_every : int
        Check convergence after iterations 1, 1 + k, 1 + 2k, ... for k = ``check_every``, as POT does
        for k = 10 (each check synchronises with the device).
    method : {"auto", "log", "scaling"}
        ``"log"``: log-domain iterations (stable for any epsilon). ``"scaling"``: scaling-domain
        iterations on the row/column-reduced kernel (fast; may fail for small epsilon). ``"auto"``:
        scaling where the reduced cost over epsilon is at most ``SCALING_SAFE_RANGE`` (200 in
        float64, 30 in float32), log elsewhere, and log again for any element that still fails.
    differentiate : {"envelope", "unrolled"}
        ``"envelope"``: the plan is a constant and :math:`\partial\,\mathrm{cost}/\partial\mathbf{C}
        = \mathbf{P}^\star` (exact for the regularised OT value; no memory for the iterations).
        ``"unrolled"``: autograd through every iteration (memory grows with ``max_iter``).
    overrelaxation : bool
        Over-relaxed Sinkhorn (Thibault et al. 2021; Lehmann et al. 2022) for the balanced elements
        solved in the scaling domain without autograd (everywhere else the plain iterations run):
        after the plain iterations 1 to 6, :math:`v \leftarrow v^{1-\omega} (b / K^\top u)^\omega`
        and :math:`u \leftarrow u^{1-\omega} (a / K v)^\omega`, with one :math:`\omega \in [1, 1.87]`
        per element set from the contraction of its error over iterations 3 to 6, and reset to 1 if
        its error grows from one check to the next. Same fixed point and same stopping rule as the
        plain iterations (at each check the u-update is the plain one, so the rows are exact and the
        error is POT's column error); the iterates differ, so the plan equals POT's to about ``tol``
        rather than to rounding. Default False (POT's iterates).

    Returns
    -------
    OTResult
        ``plan`` (B, m, n), ``cost`` (B,) :math:`= \langle\mathbf{P}^\star, \mathbf{C}\rangle_F`, dual
        potentials ``f`` (B, m) and ``g`` (B, n) in cost units, ``epsilon`` (B,), ``n_iter``,
        ``converged`` (B,) and ``error`` (B,). Without a batch dimension in ``cost`` the leading B is
        dropped everywhere.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> cost = torch.rand(4, 5, 7, dtype=torch.float64)
    >>> mask_b = torch.ones(4, 7, dtype=torch.bool); mask_b[0, 5:] = False
    >>> res = sinkhorn(cost, mask_b=mask_b, epsilon=0.2)
    >>> res.plan.shape, res.cost.shape, bool(res.converged.all())
    (torch.Size([4, 5, 7]), torch.Size([4]), True)
    >>> float(res.plan[0, :, 5:].abs().max()), round(float(res.plan[0].sum(0)[0]), 6)
    (0.0, 0.2)

    References
    ----------
    .. [1] M. Cuturi. Sinkhorn Distances: Lightspeed Computation of Optimal Transport. NeurIPS 2013.
    .. [2] B. Schmitzer. Stabilized Sparse Scaling Algorithms for Entropy Regularized Transport
       Problems. SIAM J. Sci. Comput. 41(3), 2019.
    .. [3] L. Chizat, G. Peyré, B. Schmitzer, F.-X. Vialard. Scaling Algorithms for Unbalanced
       Optimal Transport Problems. Math. Comp. 87, 2018.
    .. [4] A. Thibault, L. Chizat, C. Dossal, N. Papadakis. Overrelaxed Sinkhorn--Knopp Algorithm for
       Regularized Optimal Transport. Algorithms 14(5), 2021.
    .. [5] T. Lehmann, M.-K. von Renesse, A. Sambale, A. Uschmajew. A note on overrelaxation in the
       Sinkhorn algorithm. Optimization Letters 16, 2022.

    See Also
    --------
    ot.sinkhorn, ot.unbalanced.sinkhorn_unbalanced : POT's single-problem solvers, matched to 1e-6.
    """
    pair = _check_options(cost, epsilon, epsilon_mode, method, differentiate, max_iter, check_every,
                          marginal_penalty)
    single = cost.dim() == 2
    if single:
        cost, a, b, mask_a, mask_b = _with_batch_dim(cost, a, b, mask_a, mask_b)
    problem, c_clean, track, tol = _prepare(cost, a, b, mask_a, mask_b, epsilon=epsilon,
                                            epsilon_mode=epsilon_mode, pair=pair,
                                            differentiate=differentiate, tol=tol)
    use_scaling = _choose_domains(problem, method)
    with torch.set_grad_enabled(track):
        plan, total, f, g, n_iter, err = _solve_split(
            problem, use_scaling, fallback=method == "auto", balanced=pair is None, max_iter=int(max_iter),
            tol=tol, check_every=int(check_every), track=track, overrelaxation=bool(overrelaxation),
        )
    converged = err < tol
    _warn_unconverged(err, converged, tol=tol, max_iter=max_iter, method=method)
    return _result(cost, c_clean, problem.eps, plan, total, f, g, n_iter, converged, err, track=track,
                   single=single)


# --------------------------------------------------------------------------------------------------
# The dispatcher's parts: options, the batch as the solvers see it, the domain of each element,
# the warning and the result


def _check_options(cost, epsilon, epsilon_mode, method, differentiate, max_iter, check_every,
                   marginal_penalty) -> tuple[float, float] | None:
    """Validate the scalar options of :func:`sinkhorn`; return the marginal penalties (None: balanced)."""
    if not isinstance(cost, torch.Tensor) or not cost.is_floating_point() or cost.dim() not in (2, 3):
        got = f"{cost.dtype} {tuple(cost.shape)}" if isinstance(cost, torch.Tensor) else type(cost).__name__
        raise ConfigError(f"cost must be a float tensor of shape (B, m, n) or (m, n); got {got}")
    if epsilon_mode not in EPSILON_MODES:
        raise ConfigError(f"epsilon_mode must be one of {EPSILON_MODES}; got {epsilon_mode!r}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}; got {method!r}")
    if differentiate not in DIFFERENTIATE:
        raise ConfigError(f"differentiate must be one of {DIFFERENTIATE}; got {differentiate!r}")
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"epsilon must be a positive finite number; got {epsilon!r}")
    if int(max_iter) < 1 or int(check_every) < 1:
        raise ConfigError(f"max_iter and check_every must be >= 1; got {max_iter}, {check_every}")
    return _penalty_pair(marginal_penalty)


def _with_batch_dim(cost, a, b, mask_a, mask_b):
    """A single (m, n) problem as a batch of one."""
    return (
        cost.unsqueeze(0),
        None if a is None else torch.as_tensor(a).unsqueeze(0),
        None if b is None else torch.as_tensor(b).unsqueeze(0),
        None if mask_a is None else mask_a.unsqueeze(0),
        None if mask_b is None else mask_b.unsqueeze(0),
    )


def _prepare(cost, a, b, mask_a, mask_b, *, epsilon, epsilon_mode, pair, differentiate, tol):
    """Marginals, masks, the cleaned cost and epsilon: return ``(problem, c_clean, track, tol)``.

    ``c_clean`` is the cost in the compute dtype with padding pairs set to 0 (padding may hold inf or
    nan), still attached to autograd; ``problem.c`` is the same, detached unless ``track`` (unrolled
    differentiation of a cost that requires grad).
    """
    B, m, n = cost.shape
    dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32
    device = cost.device
    tol = DEFAULT_TOL[dtype] if tol is None else float(tol)
    a, mask_a = _marginal(a, mask_a, (B, m), "a", dtype, device)
    b, mask_b = _marginal(b, mask_b, (B, n), "b", dtype, device)
    balanced = pair is None
    if balanced:
        sa, sb = a.sum(-1), b.sum(-1)
        if bool(((sa - sb).abs() > 1e-6 * torch.maximum(sa, sb)).any()):
            raise ConfigError(
                "balanced OT needs a.sum(-1) == b.sum(-1) for every batch element; normalise the "
                "marginals or pass marginal_penalty=... for unbalanced OT"
            )

    c = cost.to(dtype)  # differentiable; a no-op for float32/float64 input
    masked = not (bool(mask_a.all()) and bool(mask_b.all()))
    pair_mask = mask_a.unsqueeze(2) & mask_b.unsqueeze(1) if masked else None
    c_clean = c.masked_fill(~pair_mask, 0.0) if masked else c
    track = differentiate == "unrolled" and torch.is_grad_enabled() and cost.requires_grad
    c_iter = c_clean if track else c_clean.detach()

    with torch.no_grad():
        # row ranges (with masks: widened by the zeros on padding), max over rows: an upper bound on
        # the reduced cost, as C_ij - r_i - s_j <= max_j C_ij - r_i; and nan/inf show up in them
        low, high = c_iter.detach().amin(2), c_iter.detach().amax(2)
        if not (bool(torch.isfinite(low).all()) and bool(torch.isfinite(high).all())):
            raise ConfigError("cost has non-finite entries on unmasked pairs")
        spread = (high - low).amax(1)
        floor = low.amin(1)
        span = high.amax(1) - floor
        eps = _epsilon(c_iter.detach(), pair_mask, epsilon, epsilon_mode)
    if balanced:
        fi_a = fi_b = torch.ones(B, dtype=dtype, device=device)
    else:
        fi_a = torch.ones_like(eps) if math.isinf(pair[0]) else pair[0] / (pair[0] + eps)
        fi_b = torch.ones_like(eps) if math.isinf(pair[1]) else pair[1] / (pair[1] + eps)
    problem = _Problem(c_iter, pair_mask, a, b, mask_a, mask_b, eps, fi_a, fi_b, spread, floor, span)
    return problem, c_clean, track, tol


def _epsilon(c, pair_mask, epsilon, epsilon_mode) -> torch.Tensor:
    """The absolute epsilon of each element (B,): as given, or ``epsilon`` x the mean unmasked |C|."""
    B, m, n = c.shape
    if epsilon_mode == "absolute":
        return torch.full((B,), float(epsilon), dtype=c.dtype, device=c.device)
    count = pair_mask.sum((1, 2)) if pair_mask is not None else m * n
    scale = torch.linalg.vector_norm(c, ord=1, dim=(1, 2)) / count
    return float(epsilon) * torch.where(scale > 0, scale, torch.ones_like(scale))


def _choose_domains(problem, method) -> torch.Tensor:
    """Which elements run in the scaling domain (B,) bool; the others run in the log domain.

    For ``"auto"`` the largest entry of the row/column-reduced cost over epsilon decides;
    ``problem.spread`` bounds it from above at no extra cost, and the exact value is only computed
    where the bound is inconclusive.
    """
    B = problem.c.shape[0]
    device = problem.c.device
    if method == "log":
        return torch.zeros(B, dtype=torch.bool, device=device)
    if method == "scaling":
        return torch.ones(B, dtype=torch.bool, device=device)
    with torch.no_grad():
        limit = SCALING_SAFE_RANGE[problem.c.dtype]
        eps = problem.eps
        use_scaling = problem.spread / eps <= limit
        unsure = (~use_scaling).nonzero().squeeze(1)
        if unsure.numel():
            sub = problem.c.detach().index_select(0, unsure)
            sub_mask = None if problem.pair_mask is None else problem.pair_mask.index_select(0, unsure)
            reduced, _, _ = _reduce(sub, sub_mask)
            exact = reduced.amax((1, 2)) / eps.index_select(0, unsure)
            use_scaling = use_scaling.index_copy(0, unsure, exact <= limit)
    return use_scaling


def _warn_unconverged(err, converged, *, tol, max_iter, method) -> None:
    """Warn (naming the parameters to change) when some element did not reach ``tol``."""
    if bool(converged.all()):
        return
    bad = int((~converged).sum())
    worst = float(torch.nan_to_num(err, nan=math.inf).max())
    warnings.warn(
        f"Sinkhorn did not converge for {bad} of {err.shape[0]} problem(s) within max_iter={max_iter} "
        f"(largest error {worst:.3g} > tol={tol:.3g}); increase `max_iter`, or use a larger "
        f"`epsilon`" + (", or method='log'" if method == "scaling" else ""),
        SinkhornConvergenceWarning,
        stacklevel=3,
    )


def _result(cost, c_clean, eps, plan, total, f, g, n_iter, converged, err, *, track, single) -> OTResult:
    """Assemble the :class:`OTResult`: the cost's gradient (unrolled or envelope), units, dtypes."""
    B = cost.shape[0]
    if track:
        total = (plan * c_clean).sum((1, 2))
    else:
        plan = plan.detach()
        if c_clean.requires_grad:  # envelope: d <P*, C> / dC = P*
            total = _EnvelopeCost.apply(c_clean, plan, total.detach())
    eps_col = eps.view(B, 1)
    fields = dict(
        plan=plan.to(cost.dtype),
        cost=total.to(cost.dtype),
        f=(f * eps_col).detach(),
        g=(g * eps_col).detach(),
        epsilon=eps,
        n_iter=n_iter,
        converged=converged,
        error=err,
    )
    if single:
        fields = {k: (v[0] if isinstance(v, torch.Tensor) else v) for k, v in fields.items()}
    return OTResult(**fields)


class _EnvelopeCost(torch.autograd.Function):
    """``<P, C>_F`` (already computed) with the plan held fixed: the gradient in C is P."""

    @staticmethod
    def forward(ctx, cost, plan, total):
        ctx.save_for_backward(plan)
        return total.clone()

    @staticmethod
    def backward(ctx, grad_total):
        (plan,) = ctx.saved_tensors
        return grad_total.view(-1, 1, 1) * plan, None, None


def _reduce(c, pair_mask):
    """Row/column reduction: ``(c - r - s, r, s)`` with r (B, m, 1), s (B, 1, n) the minima, 0 where masked.

    Each row and column of the reduced cost holds a 0, so its kernel holds a 1 (Schmitzer 2019
    absorbs the same shifts into the kernel) and cannot underflow to an all-zero row or column.
    """
    if pair_mask is None:
        row_min = c.amin(2, keepdim=True)
        reduced = c - row_min
        col_min = reduced.amin(1, keepdim=True)
        return reduced.sub_(col_min), row_min, col_min
    row_min = c.masked_fill(~pair_mask, math.inf).amin(2, keepdim=True)
    row_min.masked_fill_(torch.isinf(row_min), 0.0)
    reduced = (c - row_min).masked_fill_(~pair_mask, math.inf)
    col_min = reduced.amin(1, keepdim=True)
    col_min.masked_fill_(torch.isinf(col_min), 0.0)
    return reduced.sub_(col_min).masked_fill_(~pair_mask, 0.0), row_min, col_min


@dataclass
class _Problem:
    """The batch as the runners see it (internal)."""

    c: torch.Tensor  # (B, m, n), 0 on masked pairs
    pair_mask: torch.Tensor | None  # (B, m, n) bool, None when nothing is masked
    a: torch.Tensor  # (B, m)
    b: torch.Tensor  # (B, n)
    mask_a: torch.Tensor  # (B, m) bool
    mask_b: torch.Tensor  # (B, n) bool
    eps: torch.Tensor  # (B,)
    fi_a: torch.Tensor  # (B,)  rho_a / (rho_a + eps), 1 when balanced
    fi_b: torch.Tensor  # (B,)
    spread: torch.Tensor  # (B,) an upper bound on the largest entry of the row/column-reduced cost
    floor: torch.Tensor  # (B,) the smallest entry of the cost (0 counts on masked pairs)
    span: torch.Tensor  # (B,) the largest entry of the cost minus ``floor``

    def _map(self, fn) -> "_Problem":
        fields = (getattr(self, k) for k in self.__dataclass_fields__)
        return _Problem(*(None if x is None else fn(x) for x in fields))

    def take(self, idx: torch.Tensor) -> "_Problem":
        return self._map(lambda x: x.index_select(0, idx))

    def narrow(self, start: int, length: int) -> "_Problem":
        return self._map(lambda x: x.narrow(0, start, length))


def _solve_split(problem, use_scaling, *, fallback, balanced, max_iter, tol, check_every, track, overrelaxation):
    """Run each element in its domain; return plan (B, m, n), cost (B,), f, g (eps units), n_iter, err."""
    B = problem.c.shape[0]
    n_scaling = int(use_scaling.sum())
    if n_scaling in (0, B):
        parts = [(None, n_scaling == B)]
    else:
        parts = [(use_scaling.nonzero().squeeze(1), True), ((~use_scaling).nonzero().squeeze(1), False)]
    opts = dict(balanced=balanced, max_iter=max_iter, tol=tol, check_every=check_every)
    results = []
    n_iter = 0
    for idx, scaling in parts:
        sub = problem if idx is None else problem.take(idx)
        if scaling:
            out = _sinkhorn_scaling(sub, track=track, overrelaxation=overrelaxation, **opts)
            err, total = out[-1], out[1]
            failed = ~torch.isfinite(err) | ~torch.isfinite(total)
            if fallback and bool(failed.any()):
                bad = failed.nonzero().squeeze(1)
                redo = _sinkhorn_log(sub.take(bad), track=track, **opts)
                out = tuple(x.index_copy(0, bad, y) if isinstance(x, torch.Tensor) else max(x, y)
                            for x, y in zip(out, redo))
        else:
            out = _sinkhorn_log(sub, track=track, **opts)
        n_iter = max(n_iter, out[4])
        results.append((idx, out))
    if len(results) == 1:
        plan, total, f, g, _, err = results[0][1]
        return plan, total, f, g, n_iter, err
    merged = []
    for k in (0, 1, 2, 3, 5):
        x = results[0][1][k]
        full = torch.zeros((B,) + x.shape[1:], dtype=x.dtype, device=x.device)
        for idx, out in results:
            full = full.index_copy(0, idx, out[k])
        merged.append(full)
    plan, total, f, g, err = merged
    return plan, total, f, g, n_iter, err


def _chunked(runner, p: _Problem, *, track, **opts):
    """Apply ``runner`` to consecutive chunks of the batch and join the results."""
    B = p.c.shape[0]
    chunk = B if track else _chunk_size(p.c, arrays=2)
    if chunk >= B:
        return runner(p, track=track, **opts)
    plan = torch.empty_like(p.c)
    parts = []
    for start in range(0, B, chunk):
        size = min(chunk, B - start)
        parts.append(runner(p.narrow(start, size), track=track, plan_out=plan.narrow(0, start, size), **opts))
    total, f, g, err = (torch.cat([part[k] for part in parts]) for k in (1, 2, 3, 5))
    return plan, total, f, g, max(part[4] for part in parts), err


def _sinkhorn_log(p: _Problem, *, balanced, max_iter, tol, check_every, track):
    """The log-domain solver: dual potentials updated by log-sum-exp (stable for any epsilon).

    Returns ``(plan, cost, f, g, n_iter, err)`` with f, g in units of epsilon.
    """
    return _chunked(_run_log_chunk, p, balanced=balanced, max_iter=max_iter, tol=tol, check_every=check_every,
                    track=track)


def _run_log_chunk(p: _Problem, *, balanced, max_iter, tol, check_every, track, plan_out=None):
    B = p.c.shape[0]
    log_k = p.c / -p.eps.view(B, 1, 1)  # masked pairs: 0, but their rows/columns have f or g = -inf
    log_a = torch.log(p.a).masked_fill_(~p.mask_a, -math.inf)
    log_b = torch.log(p.b).masked_fill_(~p.mask_b, -math.inf)
    f, g, it, err = _log_loop(log_k, log_a, log_b, p.fi_a.view(B, 1), p.fi_b.view(B, 1), balanced, p.b,
                              max_iter, tol, check_every, inplace=not track)
    if plan_out is None:
        plan = torch.exp(f.unsqueeze(2) + g.unsqueeze(1) + log_k)
    else:
        plan = torch.add(log_k, f.unsqueeze(2), out=plan_out).add_(g.unsqueeze(1)).exp_()
    total = (plan * p.c).sum((1, 2))
    return plan, total, f, g, it, err


def _sinkhorn_scaling(p: _Problem, *, balanced, max_iter, tol, check_every, track, overrelaxation=False):
    """The scaling-domain solver: two batched mat-vec products per iteration on the reduced kernel.

    Scaling domain on the reduced cost :math:`C' = C - r - s` (r, s the row and column minima,
    Schmitzer 2019): :math:`P = \\operatorname{diag}(u') K' \\operatorname{diag}(v')` with
    :math:`K' = e^{-C'/\\varepsilon}`, :math:`u' = u e^{-r/\\varepsilon}`, :math:`v' = v e^{-s/\\varepsilon}`;
    every row and column of :math:`K'` holds a 1, so none underflows to zero. For unbalanced OT the
    marginals become :math:`a e^{(\\phi_a - 1) r/\\varepsilon}` and :math:`b e^{(\\phi_b - 1) s/\\varepsilon}`
    (the update is not shift-free). Only safe where :math:`\\max C'/\\varepsilon` is bounded (see
    :func:`_choose_domains`). Returns ``(plan, cost, f, g, n_iter, err)`` with f, g in units of epsilon.
    """
    if track:
        return _scaling_unrolled(p, balanced=balanced, max_iter=max_iter, tol=tol, check_every=check_every)
    return _scaling_inplace(p, balanced=balanced, max_iter=max_iter, tol=tol, check_every=check_every,
                            overrelaxation=overrelaxation and balanced)


def _scaling_start(p: _Problem, row_min, col_min, balanced):
    """The marginals as rows ``a`` (B, 1, m), ``b`` (B, 1, n) (shifted when unbalanced) and the start u.

    Starts where POT starts (u = 1 before the reduction), so that both follow the same iterates:
    u' = exp(-r/eps) up to a constant factor, clamped far above underflow; 0 on masked rows.
    """
    B = p.c.shape[0]
    e3 = p.eps.view(B, 1, 1)
    r_row = row_min.transpose(1, 2)  # (B, 1, m)
    a3, b3 = p.a.unsqueeze(1), p.b.unsqueeze(1)
    if not balanced:
        a3 = a3 * torch.exp((p.fi_a.view(B, 1, 1) - 1) * r_row / e3)
        b3 = b3 * torch.exp((p.fi_b.view(B, 1, 1) - 1) * col_min / e3)
    if p.pair_mask is None:
        start = r_row.amin(2, keepdim=True).sub(r_row).div_(e3)
    else:
        live = p.mask_a.unsqueeze(1)
        start = r_row.masked_fill(~live, math.inf).amin(2, keepdim=True).sub(r_row).div_(e3)
    u0 = start.clamp_min_(-0.5 * SCALING_SAFE_RANGE.get(p.c.dtype, 30.0)).exp_()
    if p.pair_mask is not None:
        u0.masked_fill_(~live, 0.0)
    return a3, b3, u0


def _scaling_error(v, ktu, b, log_b, fi_b, balanced):
    """Balanced: ||v * K^T u - b||_2, the column marginal's violation (as POT); unbalanced: see _error."""
    if balanced:
        return torch.linalg.vector_norm(torch.addcmul(b, v, ktu, value=-1).squeeze(1), dim=-1)
    return _error(torch.log(v.squeeze(1)), torch.log(ktu.squeeze(1)), log_b, fi_b, False, None)


def _potentials(p: _Problem, u, v, row_min, col_min):
    """Dual potentials in eps units from the reduced scalings: f = log u' + r / eps, -inf on padding."""
    eps = p.eps.view(-1, 1)
    f = (torch.log(u.squeeze(1)) + row_min.squeeze(2) / eps).masked_fill(~p.mask_a, -math.inf)
    g = (torch.log(v.squeeze(1)) + col_min.squeeze(1) / eps).masked_fill(~p.mask_b, -math.inf)
    return f, g


def _scaling_unrolled(p: _Problem, *, balanced, max_iter, tol, check_every):
    """Scaling domain with autograd through every iteration (``differentiate="unrolled"``)."""
    B = p.c.shape[0]
    with torch.no_grad():
        _, row_min, col_min = _reduce(p.c, p.pair_mask)
    # the plan does not depend on the shifts: constants for autograd
    kernel = torch.exp((p.c - row_min - col_min) / -p.eps.view(B, 1, 1))
    if p.pair_mask is not None:
        kernel = kernel.masked_fill(~p.pair_mask, 1.0)  # their scalings are 0
    kernel_t = kernel.transpose(1, 2)
    a, b, u = _scaling_start(p, row_min, col_min, balanced)
    fi_a, fi_b = p.fi_a.view(B, 1, 1), p.fi_b.view(B, 1, 1)
    log_b = None if balanced else torch.log(b.squeeze(1))
    ktu = torch.bmm(u, kernel)
    err = torch.full((B,), math.inf, dtype=kernel.dtype, device=kernel.device)
    it = 0
    while it < max_iter:
        it += 1
        v = b / ktu if balanced else b * ktu.pow(-fi_b)
        kv = torch.bmm(v, kernel_t)
        u = a / kv if balanced else a * kv.pow(-fi_a)
        ktu = torch.bmm(u, kernel)
        if (it - 1) % check_every and it != max_iter:  # after iterations 1, 1 + k, ... as POT
            continue
        with torch.no_grad():
            err = _scaling_error(v, ktu, b, log_b, fi_b.view(B, 1), balanced)
            if bool(((err < tol) | ~torch.isfinite(err)).all()):
                break
    plan = kernel * u.transpose(1, 2) * v  # exactly 0 on masked rows (u = 0) and columns (v = 0)
    total = (plan * p.c).sum((1, 2))
    f, g = _potentials(p, u, v, row_min, col_min)
    return plan, total, f, g, it, err


#: On CPU the iterations are memory-bound: solve the batch in chunks whose (B, m, n) work arrays
#: (the kernel K in the scaling domain; -C/eps and a workspace in the log domain) fit in about this
#: many bytes per thread, so that they stay in the last-level cache. Each chunk runs its own loop of
#: small ops, so fewer, larger chunks also pay less per-op overhead: on a 2-core EPYC (512 KiB L2 per
#: core, 32 MiB L3), 4 MiB rather than 1 MiB (L2-sized) took batch 32 at m = n = 128 from two chunks to
#: one and the over-relaxed solver from 4.3-4.5x to 4.8-5.1x the POT loop (tools/bench_ot.py).
CPU_CHUNK_BYTES = 1 << 22


def _chunk_size(c: torch.Tensor, arrays: int) -> int:
    """Batch elements per chunk: all of them off CPU, else as many as let ``arrays`` (m, n) work
    arrays per element fit in ``CPU_CHUNK_BYTES`` per thread."""
    B, m, n = c.shape
    if c.device.type != "cpu":
        return B
    return max(1, min(B, (CPU_CHUNK_BYTES * torch.get_num_threads()) // (arrays * m * n * c.element_size())))


def _scaling_inplace(p: _Problem, *, balanced, max_iter, tol, check_every, overrelaxation=False):
    """Scaling domain without autograd: chunk by chunk, in two reused (chunk, m, n) workspaces.

    Each chunk's reduced kernel and its transpose are built in the workspaces (one fused pass for
    the exponent), iterated on with every product written into preallocated buffers, and each element's
    plan and cost are written out the moment it converges, while its kernel is in cache (see
    :func:`_scaling_loop_inplace`).
    """
    B, m, n = p.c.shape
    chunk = _chunk_size(p.c, arrays=1)
    out = _ScalingOut(
        plan=torch.empty_like(p.c), total=p.c.new_empty(B), u=p.c.new_empty(B, 1, m), v=p.c.new_empty(B, 1, n),
        err=p.c.new_empty(B),
    )
    kernel_buf = p.c.new_empty(chunk, m, n)
    limit = SCALING_SAFE_RANGE.get(p.c.dtype, 30.0)
    f, g = p.c.new_empty(B, m), p.c.new_empty(B, n)
    n_iter = 0
    for start in range(0, B, chunk):
        size = min(chunk, B - start)
        q = p.narrow(start, size)
        kernel = kernel_buf[:size]
        row_min, col_min = _kernel_into(kernel, q, limit)
        a, b, u = _scaling_start(q, row_min, col_min, balanced)
        chunk_out = out.narrow(start, size)
        n_iter = max(n_iter, _scaling_loop_inplace(
            kernel, u, a.clone(), b.clone(), q.fi_a.view(size, 1, 1), q.fi_b.view(size, 1, 1), q.c,
            chunk_out, balanced=balanced, max_iter=max_iter, tol=tol, check_every=check_every,
            overrelaxation=overrelaxation,
        ))
        f_q, g_q = _potentials(q, chunk_out.u, chunk_out.v, row_min, col_min)
        f.narrow(0, start, size).copy_(f_q)
        g.narrow(0, start, size).copy_(g_q)
    return out.plan, out.total, f, g, n_iter, out.err


def _kernel_into(kernel, q: _Problem, limit: float):
    """Write each element's kernel into ``kernel``; return its row and column shifts r, s.

    The choice is made **per element**, never per chunk, so that an element's plan does not depend on
    the other elements it is batched with (nor on the thread count, which sets the chunk size): the
    one-pass shifted kernel where the element's cost range over epsilon is within ``limit`` (and there
    is no padding), the row/column-reduced kernel otherwise.
    """
    if q.pair_mask is not None:
        return _reduced_kernel_into(kernel, q.c, q.pair_mask, q.eps)
    shifted = q.span / q.eps <= limit
    if bool(shifted.all()):
        return _shifted_kernel_into(kernel, q.c, q.floor, q.eps)
    row_min, col_min = _reduced_kernel_into(kernel, q.c, None, q.eps)
    if bool(shifted.any()):
        idx = shifted.nonzero().squeeze(1)
        sub = kernel.new_empty(len(idx), *kernel.shape[1:])
        sub_row, sub_col = _shifted_kernel_into(sub, q.c[idx], q.floor[idx], q.eps[idx])
        kernel[idx] = sub
        row_min, col_min = row_min.clone(), col_min.clone()
        row_min[idx], col_min[idx] = sub_row, sub_col
    return row_min, col_min


def _shifted_kernel_into(out, c, floor, eps):
    """Write ``exp(-(C - c_min) / eps)`` into ``out`` (B, m, n); return r (B, m, 1) = c_min and s = 0.

    The shift by each element's smallest cost ``floor`` (B,) is the row/column reduction of
    :func:`_reduced_kernel_into` with r_i = c_min and s = 0: one pass instead of four, used where
    the whole range of the cost over epsilon is within ``SCALING_SAFE_RANGE`` (so that no entry of
    the kernel, nor of the scalings, can leave the normal range). Without padding only.
    """
    B, m, n = c.shape
    inv = eps.reciprocal().view(B, 1, 1)
    shift = floor.view(B, 1, 1)
    torch.addcmul(shift * inv, c, -inv, out=out).exp_()  # (c_min - C) / eps in one pass
    return shift.expand(B, m, 1), c.new_zeros(B, 1, n)


def _reduced_kernel_into(out, c, pair_mask, eps):
    """Write ``exp(-(C - r - s) / eps)`` into ``out`` (B, m, n); return r (B, m, 1) and s (B, 1, n).

    r and s are the row and column minima of the cost (over the unmasked pairs; 0 on padding);
    masked pairs of the kernel are 1 (their scalings are 0).
    """
    B = c.shape[0]
    if pair_mask is None:
        row_min = c.amin(2, keepdim=True)
        torch.sub(c, row_min, out=out)
        col_min = out.amin(1, keepdim=True)
    else:
        outside = ~pair_mask
        row_min = c.masked_fill(outside, math.inf).amin(2, keepdim=True)
        row_min.masked_fill_(torch.isinf(row_min), 0.0)
        torch.sub(c, row_min, out=out).masked_fill_(outside, math.inf)
        col_min = out.amin(1, keepdim=True)
        col_min.masked_fill_(torch.isinf(col_min), 0.0)
    inv = eps.reciprocal().view(B, 1, 1)
    torch.addcmul(col_min * inv, out, -inv, out=out)  # (s - (C - r)) / eps in one pass
    if pair_mask is not None:
        out.masked_fill_(outside, 0.0)
    out.exp_()
    return row_min, col_min


@dataclass
class _ScalingOut:
    """Where :func:`_scaling_loop_inplace` writes each element as it converges (internal)."""

    plan: torch.Tensor  # (B, m, n)
    total: torch.Tensor  # (B,)  <P, C>_F
    u: torch.Tensor  # (B, 1, m) reduced scalings
    v: torch.Tensor  # (B, 1, n)
    err: torch.Tensor  # (B,)

    def narrow(self, start: int, length: int) -> "_ScalingOut":
        return _ScalingOut(*(getattr(self, k).narrow(0, start, length) for k in self.__dataclass_fields__))


def _scaling_loop_inplace(kernel, u, a, b, fi_a, fi_b, c, out: _ScalingOut, *, balanced, max_iter, tol,
                          check_every, overrelaxation=False) -> int:
    r"""Scaling-domain Sinkhorn iterations in place; returns the iteration count.

    All vectors are rows: u, a (B, 1, m); b (B, 1, n); fi (B, 1, 1). Both products are batched
    row-vector x matrix products, ``u K`` and ``v K^T`` (K^T a transposed view, not a copy): on CPU
    they run several times faster than matrix x column-vector, and only K has to stay in cache. The
    live elements occupy the first ``live`` slots of every buffer; at each check the converged ones are written to ``out``
    (plan, ``<P, C>``, scalings, error: by their index in the chunk) and their slots are refilled by
    the last live elements, so that no buffer is reallocated and the others iterate on, each exactly
    as it would alone (as in its own POT call). ``kernel``, ``u``, ``a`` and ``b`` are overwritten.

    With ``overrelaxation`` (balanced only) the iterations after :data:`RELAXATION_PROBE` are
    over-relaxed, :math:`v \leftarrow v^{1-\omega} (b / K^\top u)^\omega` and the same for u, with
    one :math:`\omega` per element from :func:`_relaxation_factor`; at every check the u-update is
    the plain one, so the checked plan has exact rows and the stopping rule is POT's.
    """
    B, m, n = kernel.shape
    ktu = torch.bmm(u, kernel)  # (B, 1, n)
    v, kv = torch.empty_like(b), torch.empty_like(a)
    if balanced:
        state = [kernel, u, ktu, a, b]
        if overrelaxation:  # v carries over between iterations; omega, the probe and last errors per slot
            omega = torch.ones_like(b[:, :, :1])
            state += [v, omega, torch.full_like(omega, math.inf), torch.full_like(omega, math.inf)]
            scratch_u, scratch_v = torch.empty_like(a), torch.empty_like(b)
    else:
        state = [kernel, u, ktu, a, b, -fi_a, -fi_b, fi_b.reshape(B, 1).clone(),
                 torch.log(b.squeeze(1))]
    slots = list(range(B))  # the chunk element each slot holds
    live = B
    it = 0
    compacted = True
    while it < max_iter:
        if compacted:
            K, U, KTU, A, Bv, *rest = (x[:live] for x in state)
            KT = K.transpose(1, 2)
            V, KV = v[:live], kv[:live]
            if overrelaxation:
                V, OM, PROBE, LAST = rest
                XU, XV = scratch_u[:live], scratch_v[:live]
                neg_fa = neg_fb = fi_rows = log_b = None
            else:
                neg_fa, neg_fb, fi_rows, log_b = rest if rest else (None,) * 4
            compacted = False
        it += 1
        checking = not (it - 1) % check_every or it == max_iter  # after iterations 1, 1 + k, ... as POT
        if overrelaxation and it > RELAXATION_PROBE[1]:
            torch.div(Bv, KTU, out=XV).div_(V).log_().mul_(OM).exp_()
            V.mul_(XV)  # v (b / K^T u / v)^omega
            torch.bmm(V, KT, out=KV)
            if checking:
                torch.div(A, KV, out=U)
            else:
                torch.div(A, KV, out=XU).div_(U).log_().mul_(OM).exp_()
                U.mul_(XU)
        elif balanced:
            torch.div(Bv, KTU, out=V)
            torch.bmm(V, KT, out=KV)
            torch.div(A, KV, out=U)
        else:
            torch.pow(KTU, neg_fb, out=V).mul_(Bv)
            torch.bmm(V, KT, out=KV)
            torch.pow(KV, neg_fa, out=U).mul_(A)
        torch.bmm(U, K, out=KTU)
        if overrelaxation and it in RELAXATION_PROBE:  # plain iterations: their rate sets omega
            probe = _scaling_error(V, KTU, Bv, None, None, True).view(-1, 1, 1)
            if it == RELAXATION_PROBE[0]:
                PROBE.copy_(probe)
            else:
                OM.copy_(_relaxation_factor(PROBE, probe, RELAXATION_PROBE[1] - RELAXATION_PROBE[0]))
        if not checking:
            continue
        err = _scaling_error(V, KTU, Bv, log_b, fi_rows, balanced)
        if overrelaxation:  # an element whose error grew goes back to plain iterations
            grew = err.view(-1, 1, 1) > LAST
            OM.masked_fill_(grew, 1.0)
            LAST.copy_(err.view(-1, 1, 1))
        if it == max_iter:
            finished = list(range(live))
        else:  # done: below tol, or not finite (nan fails both comparisons)
            going = ((err >= tol) & (err < math.inf)).tolist()
            finished = [j for j, on in enumerate(going) if not on]
        if not finished:
            continue
        _write_out(finished, slots, K, U, V, err, c, out)
        if len(finished) == live:
            break
        live = _compact(finished, live, slots, state)
        compacted = True
    return it


#: With ``overrelaxation``, plain iterations run up to the second of these and the contraction of
#: the column error between the two sets each element's relaxation factor.
RELAXATION_PROBE = (3, 6)


def _relaxation_factor(err_first, err_second, gap):
    r"""The over-relaxation factor from two errors of plain iterations ``gap`` apart (tensors (B, 1, 1)).

    The column error of the plain iterations contracts by :math:`\rho = (e_2 / e_1)^{1/\text{gap}}`
    per iteration. The factor is :math:`\omega = 2 / (1 + \sqrt{1 - \sqrt{\rho}})`: Young's optimal
    factor for successive over-relaxation, :math:`2 / (1 + \sqrt{1 - \lambda})` for an unrelaxed rate
    :math:`\lambda`, taken at :math:`\lambda = \sqrt{\rho}` rather than :math:`\rho` -- an empirical
    choice: on tools/bench_ot.py's problems it lands near the best fixed factor (about 1.4 at
    m = n = 128, half the iterations), where :math:`\lambda = \rho` gives 1.15--1.3 and a quarter fewer
    (Lehmann et al. 2022 derive an a-priori optimal factor for Sinkhorn). :math:`\rho` is clamped to
    [0, 0.99], so :math:`\omega \in [1, 1.87]`; 1 where the errors are not finite and positive.
    """
    rho = (err_second / err_first).pow(1.0 / gap)
    ok = torch.isfinite(rho) & (err_first > 0)
    rho = torch.where(ok, rho, torch.zeros_like(rho)).clamp_(0.0, 0.99)
    omega = 2.0 / (1.0 + torch.sqrt(1.0 - torch.sqrt(rho)))
    return torch.where(ok, omega, torch.ones_like(omega))


def _write_out(finished, slots, kernel, u, v, err, c, out: _ScalingOut) -> None:
    """Write the plan, ``<P, C>``, scalings and error of the slots ``finished`` to their elements.

    The finished slots' kernels serve as scratch space afterwards (their slots are refilled or dropped).
    """
    elements = [slots[j] for j in finished]
    k, first = len(finished), elements[0]
    if finished == list(range(k)) and elements == list(range(first, first + k)):  # one block: batched
        plan = torch.mul(kernel[:k], u[:k].transpose(1, 2), out=out.plan.narrow(0, first, k)).mul_(v[:k])
        torch.linalg.vecdot(plan.reshape(k, -1), c.narrow(0, first, k).reshape(k, -1), out=out.total.narrow(0, first, k))
        for dest, src in ((out.u, u), (out.v, v), (out.err, err)):
            dest.narrow(0, first, k).copy_(src[:k])
        return
    for j, e in zip(finished, elements):  # (index_select / index_copy_ of whole matrices are slower)
        plan = torch.mul(kernel[j], u[j].view(-1, 1), out=out.plan[e]).mul_(v[j])
        out.total[e] = torch.dot(plan.reshape(-1), c[e].reshape(-1))
    rows = torch.tensor(finished, device=kernel.device)
    dest = torch.tensor(elements, device=kernel.device)
    for target, src in ((out.u, u), (out.v, v), (out.err, err)):
        target.index_copy_(0, dest, src.index_select(0, rows))


def _compact(finished, live, slots, state) -> int:
    """Refill the finished slots below the new live count with the last live elements; return that count."""
    new_live = live - len(finished)
    gone = set(finished)
    holes = [j for j in finished if j < new_live]
    movers = [j for j in range(new_live, live) if j not in gone]
    for hole, mover in zip(holes, movers):
        for x in state:
            x[hole].copy_(x[mover])
        slots[hole] = slots[mover]
    return new_live


# --------------------------------------------------------------------------------------------------
# Token alignment: cosine cost between teacher and student token states


def cosine_cost(
    h_teacher: torch.Tensor,
    h_student: torch.Tensor,
    mask_t: torch.Tensor | None = None,
    mask_s: torch.Tensor | None = None,
    *,
    centre: bool = False,
) -> torch.Tensor:
    r"""Cosine cost between two batches of token states: :math:`C_{ij} = 1 - \cos(h^T_i, h^S_j)`.

    Parameters
    ----------
    h_teacher : Tensor, shape (B, m, d)
    h_student : Tensor, shape (B, n, d)
    mask_t, mask_s : Tensor of bool, shapes (B, m) and (B, n), optional
        True on the real tokens. Only used for ``centre``.
    centre : bool
        Subtract from each side the mean state of its real tokens over the whole batch before the
        cosine (removes the common direction that makes all cosines of a model's states high).
        The batch mean is a better estimate of that direction than one sentence's, but it makes a
        pair's cost depend on the pairs batched with it (slightly, for batches of 16 or more).

    Returns
    -------
    Tensor, shape (B, m, n)
        Costs in [0, 2] (padding entries are computed too; :func:`sinkhorn` ignores them).
    """
    if h_teacher.dim() != 3 or h_student.dim() != 3 or h_teacher.shape[0] != h_student.shape[0] \
            or h_teacher.shape[2] != h_student.shape[2]:
        raise ConfigError(
            "expected h_teacher (B, m, d) and h_student (B, n, d) with the same B and d; got "
            f"{tuple(h_teacher.shape)} and {tuple(h_student.shape)}"
        )
    if centre:
        h_teacher = h_teacher - _masked_mean(h_teacher, mask_t)
        h_student = h_student - _masked_mean(h_student, mask_s)
    t = torch.nn.functional.normalize(h_teacher, dim=-1, eps=1e-12)
    s = torch.nn.functional.normalize(h_student, dim=-1, eps=1e-12)
    return 1.0 - torch.bmm(t, s.transpose(1, 2))


def _masked_mean(h, mask):
    if mask is None:
        return h.mean((0, 1), keepdim=True)
    w = mask.to(h.dtype).unsqueeze(-1)
    return (h * w).sum((0, 1), keepdim=True) / w.sum().clamp_min(1.0)


def token_alignment(
    h_teacher: torch.Tensor,
    h_student: torch.Tensor,
    mask_t: torch.Tensor | None = None,
    mask_s: torch.Tensor | None = None,
    *,
    centre: bool = False,
    **sinkhorn_kwargs,
) -> OTResult:
    r"""Entropic OT between teacher and student tokens under the cosine cost, uniform marginals.

    :math:`C_{ij} = 1 - \cos(h^T_i, h^S_j)` (:func:`cosine_cost`), :math:`\mathbf{a}`,
    :math:`\mathbf{b}` uniform over the real tokens of each sequence, solved by :func:`sinkhorn`
    (``sinkhorn_kwargs``: ``epsilon``, ``epsilon_mode``, ``marginal_penalty``, ``method``, ...). The plan's
    rows are a soft alignment of each teacher token to the student's tokens.

    Returns
    -------
    OTResult
        ``plan`` (B, m, n) and ``cost`` (B,) :math:`\langle \mathbf{P}^\star, \mathbf{C} \rangle_F`.
    """
    cost = cosine_cost(h_teacher, h_student, mask_t, mask_s, centre=centre)
    return sinkhorn(cost, mask_a=mask_t, mask_b=mask_s, **sinkhorn_kwargs)


def ot_loss(
    h_teacher: torch.Tensor,
    h_student: torch.Tensor,
    mask_t: torch.Tensor | None = None,
    mask_s: torch.Tensor | None = None,
    *,
    centre: bool = False,
    **sinkhorn_kwargs,
) -> torch.Tensor:
    r"""The OPTICAL token-alignment loss: the batch mean of the transport costs.

    .. math::
        \mathcal{L}_{OT} = \frac{1}{B} \sum_b \langle \mathbf{P}^\star_b, \mathbf{C}_b \rangle_F,
        \qquad C_{b,ij} = 1 - \cos(h^T_{b,i}, h^S_{b,j})

    With the default ``differentiate="envelope"`` the plan is held fixed, so the gradient reaching
    the token states is that of :math:`\sum_{ij} P^\star_{ij} (1 - \cos(h^T_i, h^S_j))`
    (Huang, Yu & Allan, 2023). Arguments as :func:`token_alignment`; use that function for the plan.

    Parameters
    ----------
    h_teacher : Tensor, shape (B, m, d)
    h_student : Tensor, shape (B, n, d)
    mask_t, mask_s : Tensor of bool, shapes (B, m) and (B, n), optional
        True on the real (content) tokens; the others get no mass.

    Returns
    -------
    Tensor, shape ()
        The mean over the batch of the transport cost.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> h = torch.randn(2, 6, 16)
    >>> loss = ot_loss(h, h + 0.01 * torch.randn(2, 6, 16), epsilon=0.05)
    >>> loss.shape, bool(loss < 0.1)
    (torch.Size([]), True)
    """
    return token_alignment(h_teacher, h_student, mask_t, mask_s, centre=centre, **sinkhorn_kwargs).cost.mean()
