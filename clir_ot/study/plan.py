"""The typed records of a study's plan: :class:`Cell` (where a step sits in the grid), :class:`Work`
(what is left to do), :class:`Step` and :class:`StudyPlan`. :mod:`clir_ot.study.runner` builds them;
:mod:`clir_ot.study.evaluate` reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from clir_ot.datasets.layout import XQuADLayout
from clir_ot.datasets.tatoeba import ProbeLayout
from clir_ot.study.artifacts import Artifact, ArtifactStore
from clir_ot.study.config import BackboneSpec, MethodSpec, StudyConfig

__all__ = ["Cell", "Step", "StudyPlan", "Work"]


@dataclass(frozen=True)
class Cell:
    """Where a step sits in the study's grid (``None`` where a coordinate does not apply)."""

    backbone: BackboneSpec
    method: MethodSpec | None = None
    language: str | None = None
    seed: int | None = None
    fold: int | None = None


@dataclass(frozen=True)
class Work:
    """The work a step still needs, for estimates (``None``: not that kind of work)."""

    train_steps: int | None = None
    pairs: int | None = None
    passages: int | None = None

    def describe(self) -> str:
        parts = [(self.train_steps, "train steps"), (self.pairs, "pairs"), (self.passages, "passages")]
        return " ".join(f"{int(n)} {what}" for n, what in parts if n is not None)


@dataclass(frozen=True)
class Step:
    """One step of the plan.

    ``artifact`` is ``None`` for an external input (a reused teacher, the baseline's dense run), whose
    ``key`` is then the hash of that input. ``sources`` are the steps whose models this step reads (a
    rerank step's in fold order); ``deps`` those of them that are built here (waited on).
    """

    id: str
    kind: str
    key: str
    artifact: Artifact | None
    cell: Cell
    settings: dict[str, Any]
    inputs: dict[str, Any]
    deps: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    action: Callable[["Step", "StudyPlan"], dict[str, Any]] | None = None
    work: Work = Work()
    model: Path | None = None          # for model steps: the folder downstream steps load
    run: Path | None = None            # for rerank and search steps: the run evaluated

    @property
    def done(self) -> bool:
        return self.artifact is None or self.artifact.done


@dataclass
class StudyPlan:
    config: StudyConfig
    root: Path
    store: ArtifactStore
    steps: dict[str, Step]
    folds: list[dict]
    layout: XQuADLayout | ProbeLayout

    def order(self) -> list[Step]:
        return list(self.steps.values())  # built in dependency order

    def pending(self) -> list[Step]:
        return [s for s in self.order() if not s.done]
