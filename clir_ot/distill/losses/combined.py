"""A weighted sum of named loss terms that reports every term's magnitude for the logs."""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from clir_ot.errors import ConfigError

__all__ = ["CombinedLoss"]


class CombinedLoss(nn.Module):
    r"""Total loss :math:`\mathcal{L} = \sum_k \lambda_k \mathcal{L}_k` with explicit, named weights.

    Distillation adds terms of very different scales -- a sentence MSE averaged over the hidden
    dimensions is about 400x smaller than the OT term -- so an unweighted sum silently trains on the
    largest term only. Every weight must therefore be given (there are no defaults), every term the
    weights name must be passed (and no other), and each call returns, besides the total, each term's
    raw and weighted magnitude as plain floats for the logs.

    Args:
        weights: ``{name: λ}`` with every λ finite and >= 0, e.g. ``{"ot": 1.0, "rank": 0.5}``.
            A weight of 0 keeps the term in the logs without training on it.

    Call:
        ``total, parts = combined(ot=l_ot, rank=l_rank)`` with scalar tensors. ``total`` is the
        differentiable weighted sum; ``parts`` is ``{"ot": ..., "rank": ..., "ot_weighted": ...,
        "rank_weighted": ..., "total": ...}`` (detached floats).

    Example:
        >>> import torch
        >>> combined = CombinedLoss({"ot": 1.0, "rank": 0.5})
        >>> total, parts = combined(ot=torch.tensor(0.25), rank=torch.tensor(2.0))
        >>> float(total), parts
        (1.25, {'ot': 0.25, 'rank': 2.0, 'ot_weighted': 0.25, 'rank_weighted': 1.0, 'total': 1.25})

    References:
        Z. Huang, P. Yu, J. Allan. "Improving Cross-lingual Information Retrieval on Low-Resource
        Languages via Optimal Transport Distillation." WSDM 2023 (:math:`\mathcal{L} = \mathcal{L}_{OT}
        + \lambda\,\mathcal{L}_{rank}`).
    """

    def __init__(self, weights: Mapping[str, float]):
        super().__init__()
        if not isinstance(weights, Mapping) or not weights:
            raise ConfigError(
                "CombinedLoss needs explicit weights, e.g. {'ot': 1.0, 'rank': 0.5}; the terms' scales differ "
                "by orders of magnitude, so there is no safe default"
            )
        clean: dict[str, float] = {}
        for name, weight in weights.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"loss term names must be identifiers (they are keyword arguments); got {name!r}")
            try:
                value = float(weight)
            except (TypeError, ValueError):
                raise ConfigError(f"the weight of {name!r} must be a number; got {weight!r}") from None
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"the weight of {name!r} must be finite and >= 0; got {weight!r}")
            clean[name] = value
        self.weights = clean

    def forward(self, **terms: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        missing = [k for k in self.weights if k not in terms]
        unknown = [k for k in terms if k not in self.weights]
        if missing or unknown:
            raise ConfigError(
                f"CombinedLoss has weights for {', '.join(self.weights)}; "
                + (f"missing term(s): {', '.join(missing)}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"term(s) without a weight: {', '.join(unknown)}" if unknown else "")
            )
        for name, value in terms.items():
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(
                    f"CombinedLoss: term {name!r} must be a scalar tensor, got {got}; fix: reduce it with .mean()"
                )
        total = sum(self.weights[name] * terms[name] for name in self.weights)
        parts = {name: float(terms[name].detach()) for name in self.weights}
        parts.update({f"{name}_weighted": self.weights[name] * parts[name] for name in self.weights})
        parts["total"] = float(total.detach())
        return total, parts

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.weights.items())
