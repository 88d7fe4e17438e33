"""What sharded work needs of a process group, for the stages that split a job over ``torchrun`` processes.

:class:`ProcessGroup` is a protocol: :class:`clir_ot.training.distributed.DistInfo` (the process
group ``torchrun`` starts) is one, and so is any object with the four members below, such as a test's
stand-in. Reranking (:func:`clir_ot.rerank.rerank_run_sharded`) and encoding
(:func:`clir_ot.retrieval.dense.encode_corpus`) take one.
"""
from __future__ import annotations

from typing import Any, Protocol

__all__ = ["ProcessGroup"]


class ProcessGroup(Protocol):
    """This process's rank, the number of processes, a barrier and an all-gather."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def barrier(self) -> None: ...

    def gather(self, obj: Any) -> list[Any]: ...
