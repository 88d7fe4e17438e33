"""The toolkit's one exception hierarchy.

Every error that ``clir_ot`` raises on purpose derives from :class:`ClirOtError`, so a caller can
catch the toolkit's failures with one ``except`` and the CLI can print them as one clear line
instead of a traceback.
"""
from __future__ import annotations

from pathlib import Path


class ClirOtError(Exception):
    """Base class of all errors raised by clir_ot."""


class InputFormatError(ClirOtError, ValueError):
    """A file the toolkit reads is malformed; the message names the file, the line and the problem."""

    def __init__(self, path: str | Path | None, line: int | None, problem: str):
        self.path = str(path) if path is not None else "<stream>"
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")


class ConsistencyError(ClirOtError, ValueError):
    """Files disagree with each other (e.g. a run names a query that the topics do not have)."""


class ConfigError(ClirOtError, ValueError):
    """A setting or a combination of settings is invalid (unknown key, unsupported language, ...)."""


class ExactOrderError(ConfigError):
    """Exact-order reranking was asked for with an invalid margin, top k, or reranker."""


class JavaError(ClirOtError, RuntimeError):
    """No usable Java runtime, or the JVM was already started with other settings."""


class ModelLoadError(ClirOtError, OSError):
    """A model could not be loaded (offline hub name, folder without tokenizer, ...)."""


class LeakageError(ConsistencyError):
    """Training data names something of the held-out test split (cross-fitting would be void)."""


class BackendError(ClirOtError, RuntimeError):
    """An inference backend is unknown, not installed (its extra is missing), or cannot run the asked
    precision or device."""
