"""Neural rerankers: a cross-encoder (the OPTICAL teacher and students), and a bi-encoder's similarity.

Both score with length-sorted batches and dynamic padding (by token length), tokenisation outside
the model loop, ``torch.inference_mode`` and the compute precision ``dtype`` (``auto`` = bf16 where
the hardware computes it natively, fp32 elsewhere; see
:func:`clir_ot.models.loading.resolve_precision`).

Truncation is explicit: pairs are cut to ``max_length`` tokens (special tokens included) with
longest-first truncation, and :attr:`CrossEncoderReranker.truncation` counts how many pairs were cut
and the query and passage lengths seen, so a run's log says what the model did not read. With
``windows`` (:class:`~clir_ot.rerank.windows.PassageWindows`, MaxP) a passage that does not fit is
scored in overlapping windows instead, and its score is its best window's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from clir_ot.errors import ConfigError
from clir_ot.io import PathLike
from clir_ot.models.backends import check_request, resolve_path
from clir_ot.models.bi_encoder import BiEncoderModel
from clir_ot.models.cross_encoder import CrossEncoderModel
from clir_ot.models.loading import max_sequence_length, parameters_digest, resolve_precision
from clir_ot.rerank.base import Reranker
from clir_ot.rerank.guard import choose_path
from clir_ot.rerank.windows import PassageWindows, WindowedPairs, passage_windows, prefix_tokens

logger = logging.getLogger(__name__)

__all__ = ["BiEncoderReranker", "CrossEncoderReranker", "TruncationStats"]


@dataclass
class TruncationStats:
    """Token lengths seen by a reranker (before truncation) and how many pairs were cut."""

    max_length: int
    pairs: int = 0
    truncated: int = 0
    #: pairs scored in more than one window (MaxP), and the windows scored for them
    windowed: int = 0
    windows: int = 0
    query_tokens: list[int] = field(default_factory=list, repr=False)
    passage_tokens: list[int] = field(default_factory=list, repr=False)

    def add(self, query_lengths: np.ndarray, passage_lengths: np.ndarray, specials: int,
            each_query: np.ndarray | None = None, truncated: int | None = None) -> None:
        """Count pairs (``query_lengths[i]``, ``passage_lengths[i]``); ``each_query``: the lengths of the
        distinct queries among them, for the query-length statistics (default: every pair's);
        ``truncated``: how many lost text (default: those longer than :attr:`max_length`)."""
        self.pairs += len(passage_lengths)
        if truncated is None:
            truncated = int(np.sum(query_lengths + passage_lengths + specials > self.max_length))
        self.truncated += truncated
        self.query_tokens.extend((query_lengths if each_query is None else each_query).tolist())
        self.passage_tokens.extend(passage_lengths.tolist())

    def reset(self) -> None:
        self.pairs = self.truncated = self.windowed = self.windows = 0
        self.query_tokens.clear()
        self.passage_tokens.clear()

    def summary(self) -> str:
        if not self.pairs:
            return "no pairs scored"
        q = np.asarray(self.query_tokens or [0])
        p = np.asarray(self.passage_tokens)
        return (f"{self.pairs} pairs at max length {self.max_length}: {self.truncated} truncated "
                f"({100.0 * self.truncated / self.pairs:.1f}%); query tokens mean {q.mean():.1f} max {q.max()}, "
                f"passage tokens mean {p.mean():.1f} max {p.max()}"
                + (f"; {self.windowed} passages scored in {self.windows} windows (MaxP)" if self.windowed else ""))


class _ModelReranker(Reranker):
    """A reranker whose scores come from one clir_ot model (``model``) at ``max_length`` and ``dtype``."""

    model: CrossEncoderModel | BiEncoderModel
    max_length: int
    dtype: object
    _digest: str | None = None

    @property
    def weights_digest(self) -> str:
        """SHA-256 of the model's parameters (computed once)."""
        if self._digest is None:
            self._digest = parameters_digest(self.model)
        return self._digest

    def begin_run(self) -> None:
        """Forget the token lengths of earlier runs."""
        truncation = getattr(self, "truncation", None)
        if truncation is not None:
            truncation.reset()

    def run_report(self) -> dict[str, Any]:
        """``truncation``: how many of the run's pairs were cut at :attr:`max_length`; and, for a
        reranker on an inference path, ``inference_path`` and why it was taken (``auto`` reads a guard
        record from a cache, so the report says which path that record gave)."""
        report: dict[str, Any] = {}
        truncation = getattr(self, "truncation", None)
        if truncation is not None:
            logger.info("truncation: %s", truncation.summary())
            report["truncation"] = truncation.summary()
        path = getattr(self, "path", None)
        if path is not None:
            report["inference_path"] = {"path": str(path), "why": getattr(self, "path_reason", None)}
        return report

    def signature(self) -> dict[str, Any]:
        """The base signature plus the model's location, its weights' SHA-256, max length and precision
        (and the backend, when it is not ``torch``)."""
        backend = getattr(getattr(self, "path", None), "backend", "torch")
        return {**super().signature(), "model": self.model.name_or_path, "weights": self.weights_digest,
                "max_length": self.max_length, "dtype": str(self.dtype),
                **({"backend": backend} if backend != "torch" else {})}


class CrossEncoderReranker(_ModelReranker):
    """Rerank with a :class:`~clir_ot.models.CrossEncoderModel` (its one logit is the score).

    ``model`` is a loaded model, or a hub name / folder (``None``: the offline default backbone,
    whose head is untrained until the teacher is trained).

    ``backend`` is the inference path's runtime (:data:`~clir_ot.models.backends.BACKEND_CHOICES`):
    ``torch`` (default), ``torch-compile``, ``onnx``, ``openvino``, or ``auto``, the fastest path that
    passed the quality guard for these weights on this hardware (:func:`clir_ot.rerank.guard.choose_path`,
    reading ``guard_dir``), logged with the reason. ``dtype`` is its precision (``auto``: bf16 where
    the hardware has it natively and the backend computes in it, else fp32). :attr:`path` is the result.
    """

    def __init__(
        self,
        model: CrossEncoderModel | str | None = None,
        batch_size: int = 32,
        max_length: int = 256,
        dtype: str = "auto",
        device: str | None = None,
        backend: str = "torch",
        guard_dir: PathLike | None = None,
        windows: PassageWindows = PassageWindows(),
    ):
        check_request(backend, dtype, device)  # before the model loads
        if not isinstance(model, CrossEncoderModel):
            model = CrossEncoderModel.from_pretrained(model, device=device)
        self.model = model
        self.batch_size = batch_size
        self.max_length = min(max_length, max_sequence_length(model.encoder, model.tokenizer))
        if backend == "auto":
            self.path, why = choose_path(self.weights_digest, self.max_length, dtype, model.device, guard_dir)
            logger.info("backend auto: %s -- %s", self.path, why)
        else:
            self.path, why = resolve_path(backend, dtype, model.device), f"--backend {backend} --dtype {dtype}"
        #: why :attr:`path` was taken (``auto``: the guard record it read, or the rule without one)
        self.path_reason = why
        self.dtype = self.path.dtype
        self._runner = model.runner(self.path) if self.path.backend != "torch" else None
        self.truncation = TruncationStats(self.max_length)
        tokenizer = model.tokenizer
        self._specials = tokenizer.num_special_tokens_to_add(pair=True)
        if self.max_length < self._specials + 2:
            raise ConfigError(f"max_length {self.max_length} leaves no room for one query and one passage token "
                              f"beside the {self._specials} special tokens of {type(tokenizer).__name__}'s pairs")
        self.windows = windows
        widest = self.max_length - self._specials - 2  # the largest window (a one-token query; see passage_windows)
        if windows.enabled and windows.overlap > widest // 2:
            logger.warning("window overlap %d is more than half of the widest window (%d passage tokens at max "
                           "length %d): each window's overlap is cut to half of it", windows.overlap, widest,
                           self.max_length)
        if windows.enabled and not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"passage windows cut by the tokenizer's character offsets, which "
                              f"{type(tokenizer).__name__} (a slow tokenizer) does not give")
        self._prefix_tokens = prefix_tokens(tokenizer, model.config.passage_prefix)
        logger.info("cross-encoder %s: max length %d, batch %d, %s", getattr(model, "name_or_path", ""),
                    self.max_length, batch_size, self.path)

    def _lengths(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self.model.tokenizer(list(texts), add_special_tokens=False, truncation=False,
                                       verbose=False)["input_ids"]
        return np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(texts))

    def record_lengths(self, queries: Sequence[str], passages: Sequence[str]) -> None:
        """Add the pairs' token lengths to :attr:`truncation` (done by :meth:`score_pairs`)."""
        unique = list(dict.fromkeys(queries))
        unique_lengths = self._lengths(unique)
        query_len = dict(zip(unique, unique_lengths))
        self.truncation.add(np.fromiter((query_len[q] for q in queries), dtype=np.int64, count=len(queries)),
                            self._lengths(passages), self._specials, each_query=unique_lengths)

    def signature(self) -> dict[str, Any]:
        """:class:`_ModelReranker`'s, plus the passage windows when they are on."""
        windows = {"windows": self.windows.max_windows, "window_overlap": self.windows.overlap}
        return {**super().signature(), **(windows if self.windows.enabled else {})}

    def windowed_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> WindowedPairs:
        """``(query, passage)`` pairs expanded into their windows (:func:`~clir_ot.rerank.windows.passage_windows`):
        each passage's token budget is :attr:`max_length` less the special tokens, the query's
        (prefixed) tokens and the passage prefix's; lengths are recorded in :attr:`truncation`."""
        prefixed_queries, _ = self.model.pair_texts(queries, [""] * len(queries))
        unique = list(dict.fromkeys(prefixed_queries))
        unique_lengths = self._lengths(unique)
        query_len = dict(zip(unique, unique_lengths.tolist()))
        encoded = self.model.tokenizer(list(passages), add_special_tokens=False, return_offsets_mapping=True,
                                       truncation=False, verbose=False)["offset_mapping"]
        windowed_queries: list[str] = []
        windows: list[str] = []
        owner: list[int] = []
        cut = 0
        for i, (query, passage, offsets) in enumerate(zip(queries, passages, encoded)):
            budget = self.max_length - self._specials - query_len[prefixed_queries[i]] - self._prefix_tokens
            texts, lost = passage_windows(passage, offsets, budget, self.windows)
            windowed_queries.extend([query] * len(texts))
            windows.extend(texts)
            owner.extend([i] * len(texts))
            cut += lost
            if len(texts) > 1:
                self.truncation.windowed += 1
                self.truncation.windows += len(texts)
        lengths = np.fromiter((len(o) + self._prefix_tokens for o in encoded), dtype=np.int64, count=len(passages))
        self.truncation.add(np.fromiter((query_len[q] for q in prefixed_queries), dtype=np.int64, count=len(queries)),
                            lengths, self._specials, each_query=unique_lengths, truncated=cut)
        return WindowedPairs(windowed_queries, windows, owner, cut)

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Scores of ``(queries[i], passages[i])``; lengths are recorded in :attr:`truncation`. With
        :attr:`windows` on, a passage's score is the best of its windows' (MaxP)."""
        if not self.windows.enabled:
            self.record_lengths(*self.model.pair_texts(queries, passages))
            return self._predict(queries, passages)
        pairs = self.windowed_pairs(queries, passages)
        scores = np.full(len(passages), -np.inf)
        np.maximum.at(scores, np.asarray(pairs.owner, dtype=np.int64), self._predict(pairs.queries, pairs.passages))
        return scores.astype(np.float32)

    def _predict(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        return self.model.predict(list(zip(queries, passages)), batch_size=self.batch_size,
                                  max_length=self.max_length, show_progress=False,
                                  dtype=self.dtype if self._runner is None else None, runner=self._runner)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self.score_pairs([query] * len(texts), texts)


class BiEncoderReranker(_ModelReranker):
    """Rerank by a bi-encoder's similarity (inner product of query and passage embeddings)."""

    def __init__(self, model: BiEncoderModel | str | None = None, batch_size: int = 32, max_length: int = 256,
                 dtype: str = "auto", device: str | None = None):
        if not isinstance(model, BiEncoderModel):
            model = BiEncoderModel.from_pretrained(model, device=device)
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.dtype = resolve_precision(dtype, model.device)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        q = self.model.encode_queries([query], max_length=self.max_length, dtype=self.dtype, show_progress=False)
        p = self.model.encode_passages(list(texts), batch_size=self.batch_size, max_length=self.max_length,
                                       dtype=self.dtype, show_progress=False)
        return (p @ q[0]).astype(np.float64)
