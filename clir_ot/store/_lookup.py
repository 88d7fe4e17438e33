"""The read-only mapping every text store is: ids to texts, each looked up on demand."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping


class TextLookup(Mapping):
    """A :class:`~collections.abc.Mapping` from ids to texts whose subclasses say how one id is found
    (:meth:`_lookup`, ``None`` when absent), how many there are and how to iterate them."""

    @abstractmethod
    def _lookup(self, key: str) -> str | None:
        """The text of ``key``, or ``None`` when the store has no such id."""

    def __getitem__(self, key: str) -> str:
        text = self._lookup(key) if isinstance(key, str) else None
        if text is None:
            raise KeyError(key)
        return text

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key) is not None
