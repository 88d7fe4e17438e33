"""Passage windows (MaxP): score a passage longer than the model's input in overlapping windows and
keep the best window's score, instead of cutting it at ``max_length``.

A cross-encoder reads ``[CLS] query [SEP] passage [SEP]`` of at most ``max_length`` tokens, so a
passage longer than what is left after the query loses its end: at 256 tokens that is 21% of
XQuAD's (English question, English paragraph) pairs but 30–50% of its Thai, Hindi and Greek ones
(``docs/languages.md``), which makes a cross-lingual gap partly a truncation gap. MaxP (Dai & Callan, SIGIR 2019) splits the
passage into windows that each fit beside the query and scores the passage by its best window:

.. math:: s(q, d) = \\max_{w \\in W(d)} s(q, w)

:func:`passage_windows` cuts by the tokenizer's own tokens (so it works for scripts without spaces,
e.g. Thai) and returns substrings of the original text (through the fast tokenizer's character
offsets, never a decode). A passage of at most ``budget`` tokens is its own single window, so with
windows on it is scored exactly as without them (in the same batch). A longer one is cut into
windows of ``size = budget - 1`` tokens (one token of slack: a window that starts inside a word is
tokenized afresh and can gain a token there), window ``j`` starting at token ``j * (size - overlap)``,
until the passage's end is covered or ``max_windows`` windows are made (then the rest is cut, and
counted as truncated). Where the query leaves little room, the overlap shrinks to half a window.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

from clir_ot.errors import ConfigError

__all__ = ["PassageWindows", "WindowedPairs", "check_windows", "passage_windows", "prefix_tokens"]

#: The default overlap of consecutive windows, in tokens.
DEFAULT_OVERLAP = 32


def check_windows(max_windows: int, overlap: int) -> None:
    """Raise :class:`~clir_ot.errors.ConfigError` unless ``max_windows >= 1`` and ``overlap >= 0`` are integers."""
    for name, value, least in (("windows", max_windows, 1), ("window overlap", overlap, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ConfigError(f"{name} must be an integer of at least {least}, got {value!r}")


@dataclass(frozen=True)
class PassageWindows:
    """How passages are windowed: up to ``max_windows`` windows of one passage, consecutive windows
    sharing ``overlap`` tokens (``max_windows == 1``: no windows, the passage is truncated)."""

    max_windows: int = 1
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        check_windows(self.max_windows, self.overlap)

    @property
    def enabled(self) -> bool:
        return self.max_windows > 1


def passage_windows(text: str, offsets: Sequence[tuple[int, int]], budget: int, windows: PassageWindows) -> tuple[list[str], bool]:
    """The windows of one passage and whether its end was still cut.

    ``offsets`` are the character spans of the passage's tokens (a fast tokenizer's
    ``offset_mapping``, special tokens excluded); ``budget`` is how many passage tokens fit beside the
    query. Returns the windows' texts (substrings of ``text``, in order) and ``True`` when tokens
    beyond the last window remain.

    >>> passage_windows("a b c d e", [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)], 4, PassageWindows(4, 1))
    (['a b c', 'c d e'], False)
    """
    n = len(offsets)
    size = budget - 1
    if n <= budget or not windows.enabled or size < 2:
        return [text], n > budget
    step = size - min(windows.overlap, size // 2)
    count = min(windows.max_windows, 1 + math.ceil((n - size) / step))
    spans = []
    for j in range(count):
        first, last = j * step, min(j * step + size, n) - 1
        spans.append(text[offsets[first][0]:offsets[last][1]])
    return spans, (count - 1) * step + size < n


def prefix_tokens(tokenizer, prefix: str) -> int:
    """How many tokens ``prefix`` adds in front of a text (not its length alone: ``"passage: "`` is three
    SentencePiece tokens by itself but two in front of a word, whose own leading piece absorbs the space)."""
    if not prefix:
        return 0
    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return length(prefix + "x") - length("x")


@dataclass(frozen=True)
class WindowedPairs:
    """Pairs expanded into windows: ``queries[i]``, ``passages[i]`` is window ``i``; ``owner[i]`` is the
    input pair it belongs to; ``cut`` counts input pairs whose passage still lost its end."""

    queries: list[str]
    passages: list[str]
    owner: list[int]
    cut: int
