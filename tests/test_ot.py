"""clir_ot.ot: batched Sinkhorn against POT, element by element; masks, marginals, gradients, alignment.

POT solves one problem at a time in float64; every batch element here is compared with POT on its own
(unpadded) problem, with tight tolerances on both sides so that both marginal_penalty the fixed point.

Unbalanced correspondence (POT >= 0.9.5, ``ot/unbalanced/_sinkhorn.py``): POT's
``sinkhorn_unbalanced(a, b, M, reg, reg_m, reg_type="kl")`` minimises
``<P, M> + reg KL(P | a b^T) + reg_m1 KL(P 1 | a) + reg_m2 KL(P^T 1 | b)`` with the generalised KL
``sum p log(p/q) - p + q``, by ``u = (a / K v)^(reg_m1 / (reg_m1 + reg))`` on ``K = exp(-M/reg) a b^T``.
That is ``sinkhorn(M, a, b, epsilon=reg, epsilon_mode="absolute", marginal_penalty=(reg_m1, reg_m2))`` here.
``reg_type="kl"`` is passed explicitly because POT 0.9.4 defaulted to ``"entropy"`` (reference 1 1^T).
"""
from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest
import torch

import clir_ot.ot as ot_module
from clir_ot.errors import ConfigError
from clir_ot.ot import OTResult, SinkhornConvergenceWarning, cosine_cost, ot_loss, sinkhorn, token_alignment

import ot as pot  # POT is an install requirement: a broken install fails here, never skips

TIGHT = dict(max_iter=20000, tol=1e-12)
POT_TIGHT = dict(numItermax=20000, stopThr=1e-12)
PLAN_ATOL = 1e-6


def random_problem(seed, B=4, m=6, n=9, *, uniform=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    cost = scale * torch.rand(B, m, n, generator=g, dtype=torch.float64)
    if uniform:
        return cost, None, None
    a = torch.rand(B, m, generator=g, dtype=torch.float64) + 0.2
    b = torch.rand(B, n, generator=g, dtype=torch.float64) + 0.2
    return cost, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


def pot_balanced(a, b, cost, reg):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # POT must converge too, or the comparison means nothing
        return pot.sinkhorn(a.numpy(), b.numpy(), cost.numpy(), float(reg), method="sinkhorn_log",
                            **POT_TIGHT)


def pot_unbalanced(a, b, cost, reg, reg_m):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return pot.unbalanced.sinkhorn_unbalanced(
            a.numpy(), b.numpy(), cost.numpy(), float(reg), reg_m, method="sinkhorn", reg_type="kl",
            numItermax=20000, stopThr=1e-13,
        )


# --------------------------------------------------------------------------------------------------
# Against POT


@pytest.mark.parametrize("method", ["log", "scaling", "auto"])
@pytest.mark.parametrize("epsilon_mode, epsilon", [("absolute", 0.1), ("relative", 0.25)])
def test_balanced_plan_matches_pot_for_every_batch_element(method, epsilon_mode, epsilon):
    cost, a, b = random_problem(0)
    res = sinkhorn(cost, a, b, epsilon=epsilon, epsilon_mode=epsilon_mode, method=method, **TIGHT)
    assert isinstance(res, OTResult)
    assert res.plan.shape == (4, 6, 9) and res.cost.shape == (4,) and res.epsilon.shape == (4,)
    assert bool(res.converged.all())
    if epsilon_mode == "relative":
        expected = epsilon * cost.abs().mean((1, 2))
        torch.testing.assert_close(res.epsilon, expected, rtol=1e-12, atol=0)
    for i in range(4):
        ref = pot_balanced(a[i], b[i], cost[i], res.epsilon[i])
        np.testing.assert_allclose(res.plan[i].numpy(), ref, rtol=0, atol=PLAN_ATOL)
        assert abs(float(res.cost[i]) - float((ref * cost[i].numpy()).sum())) < 1e-6


@pytest.mark.parametrize("method, pot_method", [("log", "sinkhorn_log"), ("scaling", "sinkhorn")])
def test_balanced_iterates_and_stopping_point_are_pot_s(method, pot_method):
    # With POT's default tol (1e-9) and check schedule, each element stops at the iteration POT stops
    # at, and the plans agree to rounding, converged or not.
    cost, a, b = random_problem(17, B=6, m=8, n=8)
    res = sinkhorn(cost, a, b, epsilon=0.04, epsilon_mode="absolute", method=method)
    iters = []
    for i in range(6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref, log = pot.sinkhorn(a[i].numpy(), b[i].numpy(), cost[i].numpy(), 0.04, method=pot_method,
                                    log=True)
        iters.append(log["niter"] + 1)
        np.testing.assert_allclose(res.plan[i].numpy(), ref, rtol=0, atol=1e-12)
    assert len(set(iters)) > 1  # the elements really stop at different iterations
    assert res.n_iter == max(iters)


@pytest.mark.parametrize("method", ["log", "scaling", "auto"])
@pytest.mark.parametrize("marginal_penalty", [0.5, (2.0, 0.3), (math.inf, 0.4)])
def test_unbalanced_plan_matches_pot_for_every_batch_element(method, marginal_penalty):
    cost, a, b = random_problem(1, B=3, m=5, n=7)
    a = a * torch.tensor([[1.0], [2.0], [0.5]], dtype=torch.float64)  # unequal masses are allowed
    res = sinkhorn(cost, a, b, epsilon=0.1, epsilon_mode="absolute", marginal_penalty=marginal_penalty, method=method,
                   max_iter=20000, tol=1e-13)
    assert bool(res.converged.all())
    for i in range(3):
        ref = pot_unbalanced(a[i], b[i], cost[i], 0.1, marginal_penalty)
        np.testing.assert_allclose(res.plan[i].numpy(), ref, rtol=0, atol=PLAN_ATOL)
    if marginal_penalty != (math.inf, 0.4):
        # relaxed marginals really are relaxed
        assert float((res.plan.sum(-1) - a).abs().max()) > 1e-3
    else:
        torch.testing.assert_close(res.plan.sum(-1), a, rtol=0, atol=1e-9)


def test_unbalanced_pot_example_from_its_docstring():
    cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    a = torch.tensor([0.5, 0.5], dtype=torch.float64)
    res = sinkhorn(cost, a, a, epsilon=1.0, epsilon_mode="absolute", marginal_penalty=1.0, **TIGHT)
    # numbers printed in POT's own docstring of ot.unbalanced.sinkhorn_unbalanced (reg_type="kl")
    expected = np.array([[0.3220536, 0.1184769], [0.1184769, 0.3220536]])
    np.testing.assert_allclose(res.plan.numpy(), expected, atol=1e-7)


@pytest.mark.parametrize("method", ["log", "scaling", "auto"])
@pytest.mark.parametrize("marginal_penalty", [None, 0.5])
def test_masked_batch_of_different_lengths_matches_pot_on_each_unpadded_problem(method, marginal_penalty):
    lengths = [(3, 8), (7, 4), (5, 5)]
    m, n = 7, 8
    g = torch.Generator().manual_seed(2)
    cost = torch.rand(3, m, n, generator=g, dtype=torch.float64)
    mask_a = torch.zeros(3, m, dtype=torch.bool)
    mask_b = torch.zeros(3, n, dtype=torch.bool)
    for i, (mi, ni) in enumerate(lengths):
        mask_a[i, :mi] = True
        mask_b[i, :ni] = True
    padded = cost.clone()
    padded[~(mask_a.unsqueeze(2) & mask_b.unsqueeze(1))] = math.inf  # garbage in the padding is ignored
    res = sinkhorn(padded, mask_a=mask_a, mask_b=mask_b, epsilon=0.1, epsilon_mode="absolute",
                   marginal_penalty=marginal_penalty, method=method, **TIGHT)
    assert bool(res.converged.all()) and bool(torch.isfinite(res.plan).all())
    assert bool(torch.isfinite(res.cost).all())
    for i, (mi, ni) in enumerate(lengths):
        a = torch.full((mi,), 1.0 / mi, dtype=torch.float64)
        b = torch.full((ni,), 1.0 / ni, dtype=torch.float64)
        sub = cost[i, :mi, :ni]
        ref = pot_balanced(a, b, sub, 0.1) if marginal_penalty is None else pot_unbalanced(a, b, sub, 0.1, marginal_penalty)
        np.testing.assert_allclose(res.plan[i, :mi, :ni].numpy(), ref, rtol=0, atol=PLAN_ATOL)
        # padding rows and columns get exactly zero mass
        assert torch.equal(res.plan[i, mi:, :], torch.zeros_like(res.plan[i, mi:, :]))
        assert torch.equal(res.plan[i, :, ni:], torch.zeros_like(res.plan[i, :, ni:]))
        assert bool(torch.isneginf(res.f[i, mi:]).all()) and bool(torch.isneginf(res.g[i, ni:]).all())


def test_relative_epsilon_uses_the_unmasked_costs_only():
    cost, _, _ = random_problem(3, B=2, m=4, n=4, uniform=True)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    padded = cost.clone()
    padded[0, 3, :] = 100.0
    padded[0, :, 3] = 100.0
    res = sinkhorn(padded, mask_a=mask, mask_b=mask, epsilon=0.5, **TIGHT)
    torch.testing.assert_close(res.epsilon[0], 0.5 * cost[0, :3, :3].mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(res.epsilon[1], 0.5 * cost[1].mean(), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------------
# Invariants


@pytest.mark.parametrize("method", ["log", "scaling"])
def test_marginals_are_satisfied(method):
    cost, a, b = random_problem(4, B=5, m=8, n=6, scale=2.0)
    res = sinkhorn(cost, a, b, epsilon=0.2, method=method, max_iter=20000, tol=1e-11)
    assert bool(res.converged.all())
    assert float((res.plan.sum(-1) - a).abs().max()) < 1e-10  # rows: exact after every iteration
    assert float((res.plan.sum(-2) - b).abs().max()) < 1e-10  # columns: within tol
    assert float(res.plan.min()) >= 0.0
    torch.testing.assert_close(res.cost, (res.plan * cost).sum((1, 2)), rtol=1e-12, atol=0)
    # the potentials reproduce the plan: P = exp((f_i + g_j - C_ij) / eps)
    rebuilt = torch.exp((res.f.unsqueeze(2) + res.g.unsqueeze(1) - cost) / res.epsilon.view(-1, 1, 1))
    torch.testing.assert_close(rebuilt, res.plan, rtol=1e-9, atol=1e-15)


def test_default_marginals_are_uniform_over_real_tokens():
    cost, _, _ = random_problem(5, B=2, m=5, n=6, uniform=True)
    mask_b = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    res = sinkhorn(cost, mask_b=mask_b, epsilon=0.3, **TIGHT)
    torch.testing.assert_close(res.plan.sum(-1), torch.full((2, 5), 0.2, dtype=torch.float64))
    torch.testing.assert_close(res.plan[1].sum(0)[:3], torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.testing.assert_close(res.plan[0].sum(0), torch.full((6,), 1 / 6, dtype=torch.float64))


def test_single_problem_without_batch_dimension():
    cost, a, b = random_problem(6, B=1)
    batched = sinkhorn(cost, a, b, epsilon=0.1, **TIGHT)
    single = sinkhorn(cost[0], a[0], b[0], epsilon=0.1, **TIGHT)
    assert single.plan.shape == (6, 9) and single.cost.shape == () and single.f.shape == (6,)
    torch.testing.assert_close(single.plan, batched.plan[0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("method", ["auto", "log"])
def test_small_epsilon_stays_finite_and_follows_pot_log_iterates(method):
    # eps = 1e-3 on costs in [0, 2]: exp(-C/eps) underflows to 0 (e^-2000), so the scaling domain
    # is unsafe; auto must go to the log domain. Convergence is slow here, so both sides run exactly
    # 200 iterations (tol=0 never stops either) and the iterates themselves must agree.
    cost, _, _ = random_problem(7, B=3, m=6, n=6, uniform=True, scale=2.0)
    assert float(torch.exp(-cost / 1e-3).min()) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SinkhornConvergenceWarning)
        res = sinkhorn(cost, epsilon=1e-3, epsilon_mode="absolute", method=method, max_iter=200, tol=0.0)
    assert bool(torch.isfinite(res.plan).all()) and bool(torch.isfinite(res.cost).all())
    assert res.n_iter == 200
    u = np.full(6, 1 / 6)
    for i in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = pot.sinkhorn(u, u, cost[i].numpy(), 1e-3, method="sinkhorn_log", numItermax=200,
                               stopThr=0.0)
        np.testing.assert_allclose(res.plan[i].numpy(), ref, rtol=0, atol=PLAN_ATOL)
        np.testing.assert_allclose(res.plan[i].sum(-1).numpy(), u, atol=1e-12)


def test_auto_mixes_domains_within_one_batch():
    # element 0 is easy (scaling domain), element 1 needs the log domain; both must match POT
    cost, _, _ = random_problem(8, B=2, m=5, n=5, uniform=True)
    # with eps=1 absolute, element 1's reduced cost spans ~300 eps, above the scaling-safe bound
    cost[1] += 300.0 * (1 - torch.eye(5, dtype=torch.float64))
    reduced = cost - cost.amin(2, keepdim=True)
    reduced = reduced - reduced.amin(1, keepdim=True)
    assert float(reduced[0].max()) < ot_module.SCALING_SAFE_RANGE[torch.float64] < float(reduced[1].max())
    res = sinkhorn(cost, epsilon=1.0, epsilon_mode="absolute", method="auto", **TIGHT)
    u = torch.full((5,), 0.2, dtype=torch.float64)
    for i in range(2):
        np.testing.assert_allclose(res.plan[i].numpy(), pot_balanced(u, u, cost[i], 1.0), atol=PLAN_ATOL)


@pytest.mark.parametrize("method", ["log", "scaling"])
@pytest.mark.parametrize("marginal_penalty", [None, 0.5])
def test_chunked_and_retired_elements_match_solving_each_alone(method, marginal_penalty, monkeypatch):
    # Elements leave the batch when they converge and the batch is cut into cache-sized chunks:
    # neither may change any element's result. A 1-byte budget forces one element per chunk.
    cost, a, b = random_problem(15, B=5, m=6, n=7)
    mask_b = torch.ones(5, 7, dtype=torch.bool)
    mask_b[1, 4:] = False
    b = b * mask_b
    b = b / b.sum(-1, keepdim=True)
    opts = dict(epsilon=0.1, epsilon_mode="absolute", marginal_penalty=marginal_penalty, method=method, mask_b=mask_b, **TIGHT)
    whole = sinkhorn(cost, a, b, **opts)
    monkeypatch.setattr(ot_module, "CPU_CHUNK_BYTES", 1)
    chunked = sinkhorn(cost, a, b, **opts)
    for i in range(5):
        alone = sinkhorn(cost[i:i + 1], a[i:i + 1], b[i:i + 1], **{**opts, "mask_b": mask_b[i:i + 1]})
        for res in (whole, chunked):
            torch.testing.assert_close(res.plan[i], alone.plan[0], rtol=0, atol=1e-13)
            torch.testing.assert_close(res.cost[i], alone.cost[0], rtol=1e-12, atol=0)
        torch.testing.assert_close(whole.f[i], chunked.f[i], rtol=1e-12, atol=0)


def test_an_elements_plan_is_bit_identical_alone_and_beside_a_wide_range_element():
    # The kernel (one-pass shifted or row/column reduced) is chosen per element: batching an element
    # with one whose cost range over epsilon needs the reduced kernel must not change a single bit of
    # its plan (nor may the chunk size, which follows the thread count).
    cost, a, b = random_problem(3, B=2, m=8, n=8)
    # row and column offsets: a span over epsilon in the tens of thousands (the reduced kernel), while the
    # reduced cost stays small enough for the scaling domain
    offsets = 100.0 * torch.arange(8, dtype=torch.float64)
    cost[1] = cost[1] + offsets[:, None] + offsets[None, :]
    opts = dict(epsilon=0.05, epsilon_mode="absolute", method="scaling", check_every=10, tol=1e-9)
    together = sinkhorn(cost, a, b, **opts)
    alone = sinkhorn(cost[:1], a[:1], b[:1], **opts)
    assert torch.equal(together.plan[0], alone.plan[0])
    assert torch.equal(together.cost[0], alone.cost[0])
    wide_alone = sinkhorn(cost[1:], a[1:], b[1:], **opts)
    assert bool(together.converged.all()) and torch.equal(together.plan[1], wide_alone.plan[0])


def token_like_cost(seed, B, length, hidden=64):
    """Cosine costs between token states and noisy reordered copies of them (as tools/bench_ot.py's "soft")."""
    g = torch.Generator().manual_seed(seed)
    f64 = dict(generator=g, dtype=torch.float64)
    shared, content = torch.randn(hidden, **f64), torch.randn(B, length, hidden, **f64)
    perm = torch.stack([torch.randperm(length, generator=g) for _ in range(B)])
    moved = torch.gather(content, 1, perm.unsqueeze(-1).expand(-1, -1, hidden))
    teacher = shared + 0.6 * content + torch.randn(B, length, hidden, **f64)
    student = shared + 0.6 * moved + torch.randn(B, length, hidden, **f64)
    return cosine_cost(teacher, student)


@pytest.mark.parametrize("chunk", [3, 8, 64])
def test_long_sequences_match_pot_element_by_element_in_place(chunk, monkeypatch):
    # m = n = 128 (the benchmark's long case) with POT's defaults (tol 1e-9, checks every 10): each
    # element converges at its own iteration, so converged elements are written out one by one or in
    # blocks and their slots refilled while the rest of the chunk iterates on; a chunk of 3 or 8
    # elements (or the whole batch) must not change any element's plan, cost or stopping point.
    B, length = 10, 128
    cost = token_like_cost(21, B, length)
    reg = 0.05 * float(cost.mean())
    monkeypatch.setattr(ot_module, "CPU_CHUNK_BYTES", chunk * length * length * 8 // torch.get_num_threads())
    res = sinkhorn(cost, epsilon=reg, epsilon_mode="absolute", method="auto")
    assert bool(res.converged.all())
    u = np.full(length, 1.0 / length)
    iters = []
    for i in range(B):
        ref, log = pot.sinkhorn(u, u, cost[i].numpy(), reg, log=True)
        iters.append(log["niter"] + 1)
        np.testing.assert_allclose(res.plan[i].numpy(), ref, rtol=0, atol=1e-12)
        assert abs(float(res.cost[i]) - float((ref * cost[i].numpy()).sum())) < 1e-12
        np.testing.assert_allclose(res.plan[i].sum(-1).numpy(), u, rtol=0, atol=1e-12)
    assert len(set(iters)) > 1 and res.n_iter == max(iters)
    f = res.f - res.f.mean(-1, keepdim=True)  # potentials up to a constant: against POT's log
    ref_f = [pot.sinkhorn(u, u, cost[i].numpy(), reg, method="sinkhorn_log", stopThr=1e-12, log=True)[1]["log_u"]
             for i in range(B)]
    for i in range(B):
        expected = reg * (ref_f[i] - ref_f[i].mean())
        np.testing.assert_allclose(f[i].numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("length", [64, 128])
def test_overrelaxation_reaches_pots_stopping_rule_in_fewer_iterations(length):
    # over-relaxed iterates differ from POT's, but the stopping rule is the same (rows exact, column
    # error <= tol at a check), so each plan is POT's to about tol, and far fewer iterations are needed
    B = 10
    cost = token_like_cost(22, B, length)
    reg = 0.05 * float(cost.mean())
    tol = 1e-9
    res = sinkhorn(cost, epsilon=reg, epsilon_mode="absolute", overrelaxation=True, tol=tol)
    plain = sinkhorn(cost, epsilon=reg, epsilon_mode="absolute", tol=tol)
    assert bool(res.converged.all()) and bool((res.error < tol).all())
    u = np.full(length, 1.0 / length)
    for i in range(B):
        ref = pot.sinkhorn(u, u, cost[i].numpy(), reg, stopThr=tol)
        np.testing.assert_allclose(res.plan[i].numpy(), ref, rtol=0, atol=PLAN_ATOL * 1e-2)
        np.testing.assert_allclose(res.plan[i].sum(-1).numpy(), u, rtol=0, atol=1e-15)  # rows exact
        assert float(np.linalg.norm(res.plan[i].sum(0).numpy() - u)) < tol  # POT's column error
        assert abs(float(res.cost[i]) - float((ref * cost[i].numpy()).sum())) < 1e-8
    torch.testing.assert_close(res.f - res.f.mean(-1, keepdim=True), plain.f - plain.f.mean(-1, keepdim=True),
                               rtol=0, atol=1e-6)
    assert res.n_iter < plain.n_iter


def test_overrelaxation_leaves_unbalanced_log_and_unrolled_solves_unchanged():
    cost, a, b = random_problem(23, B=3, m=6, n=7)
    for opts in (dict(marginal_penalty=0.5), dict(method="log"), dict(differentiate="unrolled")):
        c = cost.clone().requires_grad_("differentiate" in opts)
        plain = sinkhorn(c, a, b, epsilon=0.1, epsilon_mode="absolute", **opts)
        relaxed = sinkhorn(c, a, b, epsilon=0.1, epsilon_mode="absolute", overrelaxation=True, **opts)
        assert plain.n_iter == relaxed.n_iter
        torch.testing.assert_close(relaxed.plan, plain.plan, rtol=0, atol=0)


def test_relaxation_factor_is_one_without_a_usable_rate_and_below_two():
    first = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64).view(-1, 1, 1)
    second = torch.tensor([0.5, 1.0, 0.0, math.nan, 0.0], dtype=torch.float64).view(-1, 1, 1)
    omega = ot_module._relaxation_factor(first, second, 3).flatten().tolist()
    theta = 0.5 ** (1 / 6)
    assert omega[0] == pytest.approx(2 / (1 + math.sqrt(1 - theta)))
    assert 1.0 < omega[1] < 2.0  # rho clamped to 0.99
    assert omega[2] == 1.0 and omega[3] == 1.0 and omega[4] == 1.0


def test_auto_falls_back_to_the_log_domain_when_scaling_breaks_down(monkeypatch):
    # float32, eps = 1e-3 on costs in [0, 2]: the scaling domain overflows to nan for at least one
    # element. Lifting the safety bound makes auto try it anyway; it must redo those in the log domain.
    g = torch.Generator().manual_seed(16)
    cost = 2 * torch.rand(4, 6, 6, generator=g, dtype=torch.float32)
    opts = dict(epsilon=1e-3, epsilon_mode="absolute", max_iter=200, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SinkhornConvergenceWarning)
        scaling = sinkhorn(cost, method="scaling", **opts)
        log = sinkhorn(cost, method="log", **opts)
        monkeypatch.setattr(ot_module, "SCALING_SAFE_RANGE", {torch.float32: 1e9, torch.float64: 1e9})
        auto = sinkhorn(cost, method="auto", **opts)
    broken = ~torch.isfinite(scaling.plan).all(-1).all(-1)
    assert bool(broken.any())  # the premise: plain scaling does break here
    assert bool(torch.isfinite(auto.plan).all())
    torch.testing.assert_close(auto.plan[broken], log.plan[broken], rtol=0, atol=1e-7)


def test_float32_input_is_solved_in_float32_close_to_pot():
    cost, a, b = random_problem(9)
    res = sinkhorn(cost.float(), a.float(), b.float(), epsilon=0.1, epsilon_mode="absolute")
    assert res.plan.dtype == torch.float32 and bool(res.converged.all())
    for i in range(4):
        ref = pot_balanced(a[i], b[i], cost[i], 0.1)
        np.testing.assert_allclose(res.plan[i].double().numpy(), ref, rtol=0, atol=1e-5)


def test_non_convergence_warns_and_names_the_parameters_to_change():
    cost, _, _ = random_problem(10, uniform=True)
    with pytest.warns(SinkhornConvergenceWarning, match=r"max_iter.*epsilon"):
        res = sinkhorn(cost, epsilon=0.01, max_iter=3, check_every=1)
    assert not bool(res.converged.all())
    assert res.n_iter == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="sinkhorn_log"), "method"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(epsilon_mode="scaled"), "epsilon_mode"),
        (dict(differentiate="implicit"), "differentiate"),
        (dict(marginal_penalty=-1.0), "marginal_penalty"),
        (dict(mask_a=torch.ones(2, 5, dtype=torch.bool)), "mask_a"),
        (dict(mask_b=torch.zeros(2, 4, dtype=torch.bool)), "mask_b"),
        (dict(a=torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.2, 0.2]], dtype=torch.float64)), "balanced"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, match):
    cost = torch.rand(2, 3, 4, dtype=torch.float64)
    with pytest.raises(ConfigError, match=match):
        sinkhorn(cost, **kwargs)


# --------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("marginal_penalty", [None, 0.7])
def test_envelope_gradient_is_the_plan_and_that_of_the_regularised_value(marginal_penalty):
    cost, a, b = random_problem(11, B=2, m=3, n=4)
    eps = 0.5
    cost.requires_grad_(True)
    res = sinkhorn(cost, a, b, epsilon=eps, epsilon_mode="absolute", marginal_penalty=marginal_penalty, **TIGHT)
    (grad,) = torch.autograd.grad(res.cost.sum(), cost)
    assert not res.plan.requires_grad
    torch.testing.assert_close(grad, res.plan, rtol=0, atol=0)

    def regularised_value(c):
        r = sinkhorn(c, a, b, epsilon=eps, epsilon_mode="absolute", marginal_penalty=marginal_penalty, **TIGHT)
        p = r.plan
        value = r.cost + eps * _kl(p, a.unsqueeze(2) * b.unsqueeze(1), dims=(1, 2))
        if marginal_penalty is not None:
            value = value + marginal_penalty * (_kl(p.sum(2), a, dims=1) + _kl(p.sum(1), b, dims=1))
        return value

    # numerically d(value)/dC = P*: the envelope theorem, which the analytical gradient (P*) claims
    assert torch.autograd.gradcheck(regularised_value, (cost,), eps=1e-6, atol=1e-7, rtol=1e-5)


def _kl(p, q, dims):
    return (p * torch.log(p / q) - p + q).sum(dims)


@pytest.mark.parametrize("method", ["log", "scaling"])
@pytest.mark.parametrize("marginal_penalty", [None, 0.7])
def test_unrolled_gradient_passes_gradcheck(method, marginal_penalty):
    cost, a, b = random_problem(12, B=2, m=3, n=4)
    cost.requires_grad_(True)

    def transport_cost(c):
        return sinkhorn(c, a, b, epsilon=0.5, epsilon_mode="absolute", marginal_penalty=marginal_penalty, method=method,
                        differentiate="unrolled", max_iter=2000, tol=1e-14, check_every=5).cost

    assert torch.autograd.gradcheck(transport_cost, (cost,), eps=1e-6, atol=1e-6, rtol=1e-4)
    # unrolled differentiates the plan too, so its gradient is not the envelope one
    (unrolled,) = torch.autograd.grad(transport_cost(cost).sum(), cost)
    plan = sinkhorn(cost, a, b, epsilon=0.5, epsilon_mode="absolute", marginal_penalty=marginal_penalty, **TIGHT).plan
    assert float((unrolled - plan).abs().max()) > 1e-3


@pytest.mark.parametrize("method", ["log", "scaling"])
def test_unrolled_gradient_with_padding_passes_gradcheck_and_leaves_padding_at_zero(method):
    cost = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(18), dtype=torch.float64)
    mask_a = torch.tensor([[True] * 4, [True, True, True, False]])
    mask_b = torch.tensor([[True] * 5, [True, True, True, False, False]])

    def transport_cost(c):
        return sinkhorn(c, mask_a=mask_a, mask_b=mask_b, epsilon=0.5, epsilon_mode="absolute", method=method,
                        differentiate="unrolled", max_iter=2000, tol=1e-14, check_every=5).cost

    cost.requires_grad_(True)
    assert torch.autograd.gradcheck(transport_cost, (cost,), eps=1e-6, atol=1e-6, rtol=1e-4)
    (grad,) = torch.autograd.grad(transport_cost(cost).sum(), cost)
    assert float(grad[1, 3].abs().sum() + grad[1, :, 3:].abs().sum()) == 0.0


def test_unrolled_plan_carries_gradients():
    cost, a, b = random_problem(13, B=1, m=3, n=3)
    cost.requires_grad_(True)
    res = sinkhorn(cost, a, b, epsilon=0.5, differentiate="unrolled", **TIGHT)
    assert res.plan.requires_grad
    res.plan[0, 0, 0].backward()
    assert cost.grad is not None and bool(torch.isfinite(cost.grad).all())


# --------------------------------------------------------------------------------------------------
# Token alignment


@pytest.mark.parametrize("centre", [False, True])
def test_plan_recovers_a_noisy_permutation_of_teacher_tokens(centre):
    g = torch.Generator().manual_seed(14)
    B, m, d = 3, 10, 32
    lengths = [10, 7, 9]
    shared = 3.0 * torch.randn(d, generator=g, dtype=torch.float64)  # common direction, as in real states
    teacher = shared + torch.randn(B, m, d, generator=g, dtype=torch.float64)
    perms = [torch.randperm(L, generator=g) for L in lengths]
    student = torch.zeros(B, m, d, dtype=torch.float64)
    mask = torch.zeros(B, m, dtype=torch.bool)
    for i, (L, perm) in enumerate(zip(lengths, perms)):
        # student token j is teacher token perm[j], plus noise
        student[i, :L] = teacher[i, perm] + 0.6 * torch.randn(L, d, generator=g, dtype=torch.float64)
        mask[i, :L] = True
    # the teacher side is padded like the student side
    res = token_alignment(teacher, student, mask, mask, centre=centre, epsilon=0.2)
    assert bool(res.converged.all())
    for i, (L, perm) in enumerate(zip(lengths, perms)):
        aligned = res.plan[i, :L, :L].argmax(-1)  # teacher token -> student token
        assert torch.equal(perm[aligned], torch.arange(L))
        assert float(res.plan[i, :L, :L].amax(-1).sum()) > 0.8  # most of the mass on the right pair
        assert float(res.plan[i, L:].abs().sum() + res.plan[i, :, L:].abs().sum()) == 0.0


def test_cosine_cost_and_ot_loss():
    g = torch.Generator().manual_seed(15)
    t = torch.randn(2, 4, 8, generator=g, dtype=torch.float64)
    s = torch.randn(2, 5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    cost = cosine_cost(t, s)
    expected = 1 - torch.nn.functional.cosine_similarity(t.unsqueeze(2), s.unsqueeze(1), dim=-1)
    torch.testing.assert_close(cost, expected)
    loss = ot_loss(t, s, epsilon=0.1)
    assert loss.shape == ()
    torch.testing.assert_close(loss, token_alignment(t, s, epsilon=0.1).cost.mean())
    loss.backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all()) and float(s.grad.abs().sum()) > 0
    with pytest.raises(ConfigError, match="h_student"):
        cosine_cost(t, s[:, :, :4])


def test_docstring_examples_run():
    result = doctest.testmod(ot_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
