"""The training record, :class:`TrainingGroup` (a query, one positive, k negatives), what loading
returns (:class:`TrainingData`), and the checks of a JSONL group's fields: the layer that the
in-memory readers (:mod:`clir_ot.training.data`) and the streamed ones
(:mod:`clir_ot.training.streaming`) share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from clir_ot.errors import ConsistencyError, InputFormatError

__all__ = ["TrainingData", "TrainingGroup", "string_list", "target_scores_field", "text_field"]


@dataclass(frozen=True, slots=True)
class TrainingGroup:
    """One training example: ``query``, its ``positive`` passage and ``negatives`` (at least one).

    ``qid`` and ``docids`` (positive first, then the negatives' ids) are known when the group comes
    from a collection or from JSONL that names them; the fold-leakage guard needs them.
    ``target_scores`` (positive first, then the negatives) are another model's scores of the same
    passages -- e.g. the dense first stage's similarities -- that a soft-target loss distils (see
    :class:`~clir_ot.training.losses.ListwiseKLLoss`).
    """

    query: str
    positive: str
    negatives: tuple[str, ...]
    qid: str | None = None
    docids: tuple[str, ...] | None = None
    target_scores: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.negatives:
            raise ConsistencyError(f"training group of query {self.qid or self.query!r} has no negatives")
        if self.docids is not None and len(self.docids) != 1 + len(self.negatives):
            raise ConsistencyError(
                f"training group of query {self.qid or self.query!r}: {len(self.docids)} docids for "
                f"1 positive and {len(self.negatives)} negatives"
            )
        if self.target_scores is not None and len(self.target_scores) != 1 + len(self.negatives):
            raise ConsistencyError(
                f"training group of query {self.qid or self.query!r}: {len(self.target_scores)} target scores for "
                f"1 positive and {len(self.negatives)} negatives"
            )

    @property
    def passages(self) -> tuple[str, ...]:
        """The positive, then the negatives: the order the losses expect (positive in column 0)."""
        return (self.positive, *self.negatives)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {}
        if self.qid is not None:
            record["qid"] = self.qid
        record.update(query=self.query, positive=self.positive, negatives=list(self.negatives))
        if self.docids is not None:
            record.update(positive_id=self.docids[0], negative_ids=list(self.docids[1:]))
        if self.target_scores is not None:
            record["scores"] = list(self.target_scores)
        return record


def text_field(record: dict, key: str, path: Path, number: int) -> str:
    """The non-empty string field ``key`` of a JSON record (stripped), or an error at ``path:number``."""
    value = record.get(key)
    if value is None:
        raise InputFormatError(path, number, f"missing the {key!r} field")
    if not isinstance(value, str):
        raise InputFormatError(path, number, f"field {key!r} must be a string, found {type(value).__name__}")
    if not value.strip():
        raise InputFormatError(path, number, f"empty {key!r} field")
    return value.strip()


def string_list(record: dict, key: str, path: Path, number: int, required: bool) -> list[str] | None:
    """The list of non-empty strings ``key`` (``None`` if absent and not ``required``), or an error."""
    value = record.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list):
        raise InputFormatError(path, number, f"field {key!r} must be a list of strings"
                               + (", found nothing" if value is None else f", found {type(value).__name__}"))
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise InputFormatError(path, number, f"{key}[{i}] is empty or not a string")
    return [item.strip() for item in value]


def target_scores_field(record: dict, path: Path, number: int, size: int) -> tuple[float, ...] | None:
    """The optional ``scores`` of a group of ``size`` passages (soft targets), or an error."""
    scores = record.get("scores")
    if scores is None:
        return None
    if (not isinstance(scores, list) or len(scores) != size
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in scores)):
        raise InputFormatError(path, number, f"'scores' must list {size} finite numbers (the positive's, then one per "
                                             "negative)")
    return tuple(float(x) for x in scores)


@dataclass
class TrainingData:
    """What :func:`load_training_data` returns: the groups, and a description for the manifest."""

    train: Sequence[TrainingGroup]  # a list, or a lazy StreamedGroups
    valid: list[TrainingGroup]
    info: dict[str, Any]
