"""Distillation losses, one :class:`torch.nn.Module` per file.

* :class:`OTAlignmentLoss` -- OPTICAL's optimal-transport token alignment (``ot``);
* :class:`SentenceMSELoss` -- MSE of mean-pooled sentence embeddings (``mse-sent``);
* :class:`TokenMSELoss` -- each student token to its most similar teacher token (``mse-token``);
* :class:`ScoreDistillationLoss` -- student score on (q, f) regresses the teacher's on (q, e) (``score-kd``);
* :class:`CombinedLoss` -- explicit weights per term, each term's magnitude returned for the logs.

:func:`build_distill_loss` maps the exact names of :data:`DISTILL_LOSSES` to instances.
"""
from __future__ import annotations

from torch import nn

from clir_ot.distill.losses.combined import CombinedLoss
from clir_ot.distill.losses.mse_sentence import SentenceMSELoss, masked_mean
from clir_ot.distill.losses.mse_token import TokenMSELoss
from clir_ot.distill.losses.ot_alignment import OTAlignmentLoss
from clir_ot.distill.losses.score_kd import ScoreDistillationLoss
from clir_ot.errors import ConfigError

DISTILL_LOSSES: dict[str, type[nn.Module]] = {
    "ot": OTAlignmentLoss,
    "mse-sent": SentenceMSELoss,
    "mse-token": TokenMSELoss,
    "score-kd": ScoreDistillationLoss,
}


def build_distill_loss(name: str, **options) -> nn.Module:
    """The distillation loss called ``name`` (one of :data:`DISTILL_LOSSES`), built with ``options``."""
    if name not in DISTILL_LOSSES:
        raise ConfigError(f"unknown distillation loss {name!r}; valid: {', '.join(DISTILL_LOSSES)}")
    try:
        return DISTILL_LOSSES[name](**options)
    except TypeError as err:
        raise ConfigError(f"invalid options for distillation loss {name!r}: {err}") from None


__all__ = [
    "CombinedLoss",
    "DISTILL_LOSSES",
    "OTAlignmentLoss",
    "ScoreDistillationLoss",
    "SentenceMSELoss",
    "TokenMSELoss",
    "build_distill_loss",
    "masked_mean",
]
