"""clir_ot.distill losses and masks: hand-computed values, masks respected, OT equals clir_ot.ot on the
unmasked sub-problem, a real optimisation, and OT recovering a constructed alignment."""
from __future__ import annotations

import doctest
import math
import warnings

import pytest
import torch

import clir_ot.distill.losses.combined
import clir_ot.distill.losses.mse_sentence
import clir_ot.distill.losses.mse_token
import clir_ot.distill.losses.ot_alignment
import clir_ot.distill.losses.score_kd
import clir_ot.distill.masks
from clir_ot.distill import (
    CombinedLoss,
    OTAlignmentLoss,
    ScoreDistillationLoss,
    SentenceMSELoss,
    TokenMSELoss,
    build_distill_loss,
    content_token_mask,
)
from clir_ot.errors import ConfigError
from clir_ot.ot import SinkhornConvergenceWarning, cosine_cost, sinkhorn

torch.set_num_threads(1)

# every Sinkhorn solve in these tests must converge, or the comparisons mean nothing
pytestmark = pytest.mark.filterwarnings("error::clir_ot.ot.SinkhornConvergenceWarning")

TIGHT = dict(max_iter=20000, tol=1e-12)
# tests that are not about epsilon use a larger one: tiny random problems at epsilon=0.05 (relative)
# can need more than 20000 iterations to reach tol=1e-12
EASY = dict(epsilon=0.2, **TIGHT)
CLS, SEP, PAD = 101, 102, 0
SPECIAL = [PAD, CLS, SEP]


# --------------------------------------------------------------------------------------------------
# content_token_mask


def test_content_mask_excludes_special_padding_and_prefix():
    ids = torch.tensor([
        [CLS, 7, 8, 9, 10, SEP, PAD, PAD],   # prefix (1 token) then 3 content tokens
        [CLS, 7, 11, SEP, PAD, PAD, PAD, PAD],
    ])
    mask = content_token_mask(ids, ids != PAD, SPECIAL, prefix_length=1)
    assert mask.tolist() == [
        [False, False, True, True, True, False, False, False],
        [False, False, True, False, False, False, False, False],
    ]
    no_prefix = content_token_mask(ids, ids != PAD, SPECIAL)
    assert no_prefix.tolist()[1] == [False, True, True, False, False, False, False, False]


def test_content_mask_per_row_prefix_query_mode_and_left_padding():
    # query mode: [CLS] q q [SEP] p p [SEP] -- the query (2 and 1 tokens) is the prefix; row 1 left-padded
    ids = torch.tensor([
        [CLS, 5, 6, SEP, 20, 21, SEP],
        [PAD, CLS, 5, SEP, 20, 21, SEP],
    ])
    attention = torch.tensor([[1] * 7, [0] + [1] * 6])
    mask = content_token_mask(ids, attention, torch.tensor(SPECIAL), prefix_length=torch.tensor([2, 1]))
    assert mask.tolist() == [
        [False, False, False, False, True, True, False],
        [False, False, False, False, True, True, False],
    ]
    # a prefix longer than the text leaves an all-False row (the losses refuse it, see below)
    assert not content_token_mask(ids, attention, SPECIAL, prefix_length=10).any()


def test_content_mask_attention_mask_wins_over_ids():
    ids = torch.tensor([[CLS, 7, 8, SEP]])
    assert content_token_mask(ids, torch.tensor([[1, 1, 0, 0]]), SPECIAL).tolist() == [[False, True, False, False]]


@pytest.mark.parametrize("kwargs", [
    dict(attention_mask=torch.ones(2, 3)),
    dict(prefix_length=torch.tensor([1, 2, 3])),
    dict(prefix_length=-1),
])
def test_content_mask_rejects_bad_shapes(kwargs):
    args = dict(input_ids=torch.ones(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 4), special_ids=[0])
    args.update(kwargs)
    with pytest.raises(ValueError, match="content_token_mask"):
        content_token_mask(**args)


# --------------------------------------------------------------------------------------------------
# Baselines on hand-made tensors


def test_sentence_mse_hand_computed():
    teacher = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # mean of the unmasked: [2, 3]
    student = torch.tensor([[[0.0, 0.0], [2.0, 2.0]]])                  # mean: [1, 1]
    loss = SentenceMSELoss()(teacher, student, torch.tensor([[True, True, False]]), torch.tensor([[True, True]]))
    assert loss.item() == pytest.approx(((2 - 1) ** 2 + (3 - 1) ** 2) / 2)


def test_sentence_mse_batch_mean_and_pooled_inputs():
    # batch of 2, already pooled: errors [1, 0] and [0, 3] -> (1 + 0 + 0 + 9) / 4
    teacher = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    student = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    assert SentenceMSELoss()(teacher, student).item() == pytest.approx(10 / 4)


def test_sentence_mse_gradient_reaches_student_only():
    teacher = torch.randn(2, 3, 4, requires_grad=True)
    student = torch.randn(2, 5, 4, requires_grad=True)
    mask_t, mask_s = torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool)
    SentenceMSELoss()(teacher, student, mask_t, mask_s).backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0


def test_sentence_mse_needs_masks_for_token_states():
    with pytest.raises(ValueError, match="without a mask"):
        SentenceMSELoss()(torch.randn(1, 3, 2), torch.randn(1, 3, 2))


def token_mse_inputs(dtype=torch.float32):
    # teacher token 2 is masked and equal to student token 0: it must not be chosen
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [2.0, 0.1]]], dtype=dtype)
    student = torch.tensor([[[2.0, 0.1], [0.1, 1.0], [5.0, 5.0]]], dtype=dtype)  # student token 2 masked
    return teacher, student, torch.tensor([[True, True, False]]), torch.tensor([[True, True, False]])


def test_token_mse_hand_computed():
    teacher, student, mask_t, mask_s = token_mse_inputs()
    loss = TokenMSELoss()
    assert loss.alignment(teacher, student, mask_t, mask_s).tolist() == [[0, 1, -1]]
    # (2,0.1)-(1,0) = (1, .1); (0.1,1)-(0,2) = (.1, -1): each 1.01 / 2 dims; mean over the 2 tokens
    assert loss(teacher, student, mask_t, mask_s).item() == pytest.approx(0.505)


def test_token_cosine_hand_computed():
    teacher, student, mask_t, mask_s = token_mse_inputs(torch.float64)  # 1 - cos cancels in float32
    cos0 = 2.0 / math.sqrt(4.01)        # (2, .1) . (1, 0) / (|(2, .1)| |(1, 0)|)
    cos1 = 2.0 / (math.sqrt(1.01) * 2)  # (.1, 1) . (0, 2)
    value = TokenMSELoss(distance="cosine")(teacher, student, mask_t, mask_s).item()
    assert value == pytest.approx(((1 - cos0) + (1 - cos1)) / 2, rel=1e-9)


def test_token_mse_averages_over_all_student_content_tokens_of_the_batch():
    # row 0: one content token with error 4 per dim; row 1: three tokens with error 0 -> 4 / 4 tokens
    teacher = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    student = torch.tensor([[[3.0, 2.0], [9.0, 9.0], [9.0, 9.0]], [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]])
    mask_t = torch.ones(2, 1, dtype=torch.bool)
    mask_s = torch.tensor([[True, False, False], [True, True, True]])
    assert TokenMSELoss()(teacher, student, mask_t, mask_s).item() == pytest.approx(4 / 4)


def test_score_kd_mse_hand_computed():
    assert ScoreDistillationLoss()(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item() == pytest.approx(2.5)
    groups = ScoreDistillationLoss()(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 2.0]]))
    assert groups.item() == pytest.approx((1 + 4) / 4)


def test_score_kd_kl_hand_computed():
    # teacher softmax([log 3, 0]) = [3/4, 1/4]; student softmax([0, 0]) = [1/2, 1/2]
    loss = ScoreDistillationLoss(mode="kl")(torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]))
    assert loss.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)


def test_score_kd_gradient_and_errors():
    student = torch.tensor([1.0, 2.0], requires_grad=True)
    teacher = torch.tensor([0.0, 4.0], requires_grad=True)
    ScoreDistillationLoss()(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad.tolist() == pytest.approx([2 * 1 / 2, 2 * -2 / 2])
    with pytest.raises(ValueError, match="same shape"):
        ScoreDistillationLoss()(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="mode='kl'"):
        ScoreDistillationLoss(mode="kl")(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ConfigError, match="mode"):
        ScoreDistillationLoss(mode="l1")


def test_combined_loss_weights_and_logged_magnitudes():
    ot = torch.tensor(0.75, requires_grad=True)
    rank = torch.tensor(2.0, requires_grad=True)
    total, parts = CombinedLoss({"ot": 1.0, "rank": 0.25})(ot=ot, rank=rank)
    assert total.item() == pytest.approx(1.25)
    assert parts == {"ot": 0.75, "rank": 2.0, "ot_weighted": 0.75, "rank_weighted": 0.5, "total": 1.25}
    assert all(type(v) is float for v in parts.values())
    total.backward()
    assert (ot.grad.item(), rank.grad.item()) == (1.0, 0.25)


def test_combined_loss_zero_weight_is_logged_not_trained():
    total, parts = CombinedLoss({"ot": 1.0, "mse": 0.0})(ot=torch.tensor(0.5), mse=torch.tensor(0.001))
    assert total.item() == 0.5 and parts["mse"] == pytest.approx(0.001) and parts["mse_weighted"] == 0.0


@pytest.mark.parametrize("weights, match", [
    ({}, "explicit weights"),
    (None, "explicit weights"),
    ({"ot": -1.0}, ">= 0"),
    ({"ot": float("nan")}, ">= 0"),
    ({"ot": "big"}, "number"),
    ({"not a name": 1.0}, "identifiers"),
])
def test_combined_loss_rejects_bad_weights(weights, match):
    with pytest.raises(ConfigError, match=match):
        CombinedLoss(weights)


def test_combined_loss_rejects_missing_unknown_and_non_scalar_terms():
    combined = CombinedLoss({"ot": 1.0, "rank": 0.5})
    with pytest.raises(ConfigError, match="missing term\\(s\\): rank"):
        combined(ot=torch.tensor(1.0))
    with pytest.raises(ConfigError, match="without a weight: mse"):
        combined(ot=torch.tensor(1.0), rank=torch.tensor(1.0), mse=torch.tensor(1.0))
    with pytest.raises(ValueError, match="scalar"):
        combined(ot=torch.ones(2), rank=torch.tensor(1.0))


def test_build_distill_loss():
    assert isinstance(build_distill_loss("ot", epsilon=0.1), OTAlignmentLoss)
    assert build_distill_loss("mse-token", distance="cosine").distance == "cosine"
    with pytest.raises(ConfigError, match="valid: ot, mse-sent, mse-token, score-kd"):
        build_distill_loss("optical")
    with pytest.raises(ConfigError, match="invalid options"):
        build_distill_loss("mse-sent", epsilon=0.1)


# --------------------------------------------------------------------------------------------------
# OT alignment loss


def masked_batch(seed=0, dtype=torch.float64):
    """Two pairs whose content tokens are not contiguous: [CLS] w w [SEP] w w [SEP] [PAD] ..."""
    g = torch.Generator().manual_seed(seed)
    t_ids = torch.tensor([[CLS, 5, 6, SEP, 7, 8, SEP, PAD], [CLS, 5, 6, 7, SEP, PAD, PAD, PAD]])
    s_ids = torch.tensor([[CLS, 9, 9, 9, SEP, PAD], [CLS, 9, SEP, 9, 9, SEP]])
    teacher = torch.randn(2, t_ids.shape[1], 6, generator=g, dtype=dtype)
    student = torch.randn(2, s_ids.shape[1], 6, generator=g, dtype=dtype)
    t_mask = content_token_mask(t_ids, t_ids != PAD, SPECIAL)
    s_mask = content_token_mask(s_ids, s_ids != PAD, SPECIAL)
    return teacher, student, t_mask, s_mask


def test_ot_masked_tokens_get_exactly_zero_mass():
    teacher, student, t_mask, s_mask = masked_batch()
    result = OTAlignmentLoss(**EASY).plan(teacher, student, t_mask, s_mask)
    outside = ~(t_mask.unsqueeze(2) & s_mask.unsqueeze(1))
    assert bool((result.plan[outside] == 0).all())
    # uniform marginals over the content tokens only
    for b in range(2):
        rows = result.plan[b].sum(1)[t_mask[b]]
        cols = result.plan[b].sum(0)[s_mask[b]]
        assert torch.allclose(rows, torch.full_like(rows, 1 / int(t_mask[b].sum())), atol=1e-9)
        assert torch.allclose(cols, torch.full_like(cols, 1 / int(s_mask[b].sum())), atol=1e-9)


def test_ot_masked_states_do_not_change_the_loss():
    teacher, student, t_mask, s_mask = masked_batch()
    loss = OTAlignmentLoss(**EASY)
    before = loss(teacher, student, t_mask, s_mask)
    teacher2, student2 = teacher.clone(), student.clone()
    teacher2[~t_mask] = 1e3 * torch.randn(int((~t_mask).sum()), 6, dtype=teacher.dtype)
    student2[~s_mask] = -7.0
    assert loss(teacher2, student2, t_mask, s_mask).item() == pytest.approx(before.item(), abs=1e-12)


@pytest.mark.parametrize("options", [dict(), dict(epsilon=0.1, epsilon_mode="absolute"), dict(marginal_penalty=0.5)])
def test_ot_equals_clir_ot_on_the_unmasked_subproblem(options):
    teacher, student, t_mask, s_mask = masked_batch(seed=3)
    loss_fn = OTAlignmentLoss(**TIGHT, **options)
    result = loss_fn.plan(teacher, student, t_mask, s_mask)
    costs = []
    for b in range(2):
        sub_t, sub_s = teacher[b][t_mask[b]], student[b][s_mask[b]]
        direct = sinkhorn(cosine_cost(sub_t[None], sub_s[None]), **TIGHT, **options)
        block = result.plan[b][t_mask[b]][:, s_mask[b]]
        assert torch.allclose(block, direct.plan[0], atol=1e-10, rtol=0)
        assert result.cost[b].item() == pytest.approx(direct.cost[0].item(), abs=1e-10)
        costs.append(direct.cost[0].item())
    assert loss_fn(teacher, student, t_mask, s_mask).item() == pytest.approx(sum(costs) / 2, abs=1e-10)


def test_ot_gradient_is_the_plan_weighted_cosine_gradient():
    # envelope: d L / d h_S = d/dh_S [ mean_b sum_ij P*_ij (1 - cos(h_T_i, h_S_j)) ] with P* fixed
    teacher, student, t_mask, s_mask = masked_batch(seed=5)
    loss_fn = OTAlignmentLoss(**EASY)
    plan = loss_fn.plan(teacher, student, t_mask, s_mask).plan
    s1 = student.clone().requires_grad_(True)
    loss_fn(teacher, s1, t_mask, s_mask).backward()
    s2 = student.clone().requires_grad_(True)
    pair = t_mask.unsqueeze(2) & s_mask.unsqueeze(1)
    ((plan * cosine_cost(teacher, s2)).masked_fill(~pair, 0).sum((1, 2)).mean()).backward()
    assert torch.allclose(s1.grad, s2.grad, atol=1e-12)
    assert bool((s1.grad[~s_mask] == 0).all())


def test_ot_teacher_is_detached_and_student_gets_gradient():
    teacher, student, t_mask, s_mask = masked_batch(dtype=torch.float32)
    teacher.requires_grad_(True)
    student.requires_grad_(True)
    OTAlignmentLoss()(teacher, student, t_mask, s_mask).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad[s_mask].abs().sum() > 0


def test_ot_layers_sum_and_plan_per_layer():
    teacher, student, t_mask, s_mask = masked_batch()
    teacher2, student2, _, _ = masked_batch(seed=9)
    loss = OTAlignmentLoss(**EASY)
    total = loss([teacher, teacher2], [student, student2], t_mask, s_mask)
    parts = loss(teacher, student, t_mask, s_mask) + loss(teacher2, student2, t_mask, s_mask)
    assert total.item() == pytest.approx(parts.item(), abs=1e-12)
    plans = loss.plan([teacher, teacher2], [student, student2], t_mask, s_mask)
    assert isinstance(plans, list) and len(plans) == 2
    with pytest.raises(ValueError, match="2 teacher layer\\(s\\) but 1 student"):
        loss([teacher, teacher2], [student], t_mask, s_mask)


def test_ot_centring_ignores_a_common_offset():
    teacher, student, t_mask, s_mask = masked_batch(seed=2)
    offset = torch.randn(6, dtype=teacher.dtype) * 3
    centred = OTAlignmentLoss(centre=True, **EASY)
    plain = OTAlignmentLoss(**EASY)
    assert centred(teacher + offset, student, t_mask, s_mask).item() == pytest.approx(
        centred(teacher, student, t_mask, s_mask).item(), abs=1e-9)
    assert plain(teacher + offset, student, t_mask, s_mask).item() != pytest.approx(
        plain(teacher, student, t_mask, s_mask).item(), abs=1e-3)


def test_ot_loss_decreases_when_training_a_student_projection():
    """A real optimisation: a learnable linear student, SGD toward fixed teacher tokens."""
    g = torch.Generator().manual_seed(0)
    B, m, n, d = 3, 5, 6, 8
    teacher = torch.randn(B, m, d, generator=g)
    inputs = torch.randn(B, n, d, generator=g)
    t_mask = torch.ones(B, m, dtype=torch.bool)
    t_mask[0, 4:] = False
    s_mask = torch.ones(B, n, dtype=torch.bool)
    s_mask[1, 5:] = False
    torch.manual_seed(0)
    student = torch.nn.Linear(d, d)
    loss_fn = OTAlignmentLoss(epsilon=0.1, epsilon_mode="absolute")
    optimiser = torch.optim.SGD(student.parameters(), lr=0.5)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        for _ in range(12):
            optimiser.zero_grad()
            loss = loss_fn(teacher, student(inputs), t_mask, s_mask)
            loss.backward()
            optimiser.step()
            values.append(loss.item())
    assert all(later < earlier for earlier, later in zip(values, values[1:])), values
    assert values[-1] < 0.6 * values[0], values


def test_ot_plan_recovers_a_permuted_noisy_copy():
    """Student tokens = the teacher's, permuted, with noise, behind a [CLS] and padding: the plan's
    row argmax maps each teacher token to its copy, with almost all the mass on those pairs."""
    g = torch.Generator().manual_seed(1)
    lengths, d, width = (6, 9), 16, 11
    teacher = torch.randn(2, width, d, generator=g)
    student = torch.randn(2, width, d, generator=g)  # [CLS] and padding hold random states
    t_mask = torch.zeros(2, width, dtype=torch.bool)
    s_mask = torch.zeros(2, width, dtype=torch.bool)
    expected = []
    for b, length in enumerate(lengths):
        perm = torch.randperm(length, generator=g)            # student token j copies teacher token perm[j]
        student[b, 1:1 + length] = teacher[b, perm] + 0.1 * torch.randn(length, d, generator=g)
        t_mask[b, :length] = True
        s_mask[b, 1:1 + length] = True
        expected.append((torch.argsort(perm) + 1).tolist())  # teacher token i -> student position
    result = OTAlignmentLoss().plan(teacher, student, t_mask, s_mask)
    for b, length in enumerate(lengths):
        plan = result.plan[b, :length]
        assert plan.argmax(1).tolist() == expected[b]
        on_copies = plan[torch.arange(length), torch.tensor(expected[b])].sum().item()
        assert on_copies > 0.95
    assert bool(result.converged.all())


def test_ot_unbalanced_lets_a_token_without_counterpart_keep_little_mass():
    g = torch.Generator().manual_seed(4)
    teacher = torch.randn(1, 4, 16, generator=g, dtype=torch.float64)
    orphan = torch.randn(1, 1, 16, generator=g, dtype=torch.float64)
    student = torch.cat([teacher[:, [2, 0, 3, 1]] + 0.05 * torch.randn(1, 4, 16, generator=g, dtype=torch.float64),
                         orphan], 1)
    t_mask, s_mask = torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool)
    balanced = OTAlignmentLoss(**EASY).plan(teacher, student, t_mask, s_mask).plan[0]
    relaxed_loss = OTAlignmentLoss(epsilon=0.05, marginal_penalty=0.1, **TIGHT)
    relaxed = relaxed_loss.plan(teacher, student, t_mask, s_mask).plan[0]
    assert balanced.sum(0)[4].item() == pytest.approx(1 / 5, abs=1e-9)
    assert relaxed.sum(0)[4].item() < 0.1 * (1 / 5)
    assert relaxed.sum(0)[:4].min().item() > 0.5 * (1 / 5)
    assert relaxed.argmax(1).tolist() == [1, 3, 0, 2]


@pytest.mark.parametrize("make, match", [
    (lambda t, s, tm, sm: (t[0], s, tm, sm), "expected teacher token states of shape"),
    (lambda t, s, tm, sm: (t, s, tm[:, :3], sm), "expected a teacher mask of shape"),
    (lambda t, s, tm, sm: (t, s[..., :4], tm, sm), "share batch size and hidden size"),
    (lambda t, s, tm, sm: (t, s[:1], tm, sm[:1]), "share batch size and hidden size"),
    (lambda t, s, tm, sm: (t, s, tm, torch.zeros_like(sm)), "no content token in batch row\\(s\\) \\[0, 1\\]"),
])
def test_ot_shape_checks_say_expected_got_and_fix(make, match):
    with pytest.raises(ValueError, match=match) as info:
        OTAlignmentLoss()(*make(*masked_batch()))
    assert "fix:" in str(info.value)


def test_ot_rejects_bad_options():
    with pytest.raises(ConfigError, match="epsilon_mode"):
        OTAlignmentLoss(epsilon_mode="scaled")
    with pytest.raises(ConfigError, match="epsilon"):
        OTAlignmentLoss(epsilon=0.0)
    with pytest.raises(TypeError, match="non-empty list"):
        OTAlignmentLoss()([], [], None, None)


@pytest.mark.parametrize("module", [
    clir_ot.distill.masks,
    clir_ot.distill.losses.ot_alignment,
    clir_ot.distill.losses.mse_sentence,
    clir_ot.distill.losses.mse_token,
    clir_ot.distill.losses.score_kd,
    clir_ot.distill.losses.combined,
])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
