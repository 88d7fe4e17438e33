"""Ranking losses over groups of scores ``(batch, 1 + k)`` with the positive in column 0.

* :class:`ListwiseSoftmaxLoss` -- softmax cross-entropy over the group (LCE), the default;
* :class:`PairwiseMarginLoss` -- hinge on positive-minus-negative differences;
* :class:`ListwiseKLLoss` -- soft targets: KL from another model's score distribution over the group
  (added to the relevance loss with ``soft_weight``, not a relevance loss itself).

:func:`build_loss` maps the exact names of :data:`LOSSES` to instances.
"""
from __future__ import annotations

from torch import nn

from clir_ot.errors import ConfigError
from clir_ot.training.losses.listwise import ListwiseSoftmaxLoss
from clir_ot.training.losses.listwise_kl import ListwiseKLLoss
from clir_ot.training.losses.pairwise import PairwiseMarginLoss

LOSSES: dict[str, type[nn.Module]] = {"listwise": ListwiseSoftmaxLoss, "pairwise": PairwiseMarginLoss}


def build_loss(name: str, *, temperature: float = 1.0, margin: float = 1.0) -> nn.Module:
    """The loss called ``name`` (``listwise`` uses ``temperature``, ``pairwise`` uses ``margin``)."""
    if name == "listwise":
        return ListwiseSoftmaxLoss(temperature=temperature)
    if name == "pairwise":
        return PairwiseMarginLoss(margin=margin)
    raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


__all__ = ["LOSSES", "ListwiseKLLoss", "ListwiseSoftmaxLoss", "PairwiseMarginLoss", "build_loss"]
