"""The quality guard: which inference paths keep a reranker's ranking, and which of those is fastest.

A fast path (bf16, another runtime) changes a cross-encoder's scores by a small error, and that can
reorder candidates whose scores are close. The guard compares every path with ``torch/fp32`` on
real questions and their candidates, and a path **passes** when (:func:`judge_path`):

* its top 10 is fp32's top 10, in the same order, on at least 95% of the questions
  (:data:`MIN_ORDER_SHARE`), and
* its P@5 and its RR@10 equal fp32's within the paired test's noise: the two-sided paired
  randomization test of the per-question differences gives ``p >= 0.05`` (:data:`ALPHA`) for each.

The measurement (scores of every path, the ranking measures and the test) is
``tools/bench_rerank.py --guard``. It writes one :class:`GuardRecord` per model weights, hardware
and max length into the guard folder (:func:`guard_dir`: ``$CLIR_OT_GUARD_DIR``, default
``~/.cache/clir_ot/guard``), with each path's measured pairs/s. ``backend="auto"``
(:func:`choose_path`) reads the record of the model's weights (by SHA-256 of its parameters) on this
hardware (:func:`hardware_id`) and takes the fastest installed path that passed. Without such a
record the rule is the documented default: ``torch`` at :func:`~clir_ot.models.loading.resolve_precision`'s
precision (bf16 on CPUs with native bf16), and the log says no guard was measured.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from clir_ot.errors import BackendError, ConfigError, InputFormatError
from clir_ot.formats import read_json_object
from clir_ot.io import PathLike, atomic_open
from clir_ot.models.backends import BACKENDS, InferencePath, backend_available, resolve_path
from clir_ot.models.loading import hardware_id

logger = logging.getLogger(__name__)

__all__ = ["ALPHA", "GUARD_DIR_ENV", "GUARD_TOP", "MIN_ORDER_SHARE", "GuardRecord", "PathQuality", "choose_path",
           "guard_dir", "hardware_id", "judge_path", "read_guard_records", "write_guard_record"]

GUARD_DIR_ENV = "CLIR_OT_GUARD_DIR"
#: The ranking depth whose order must equal fp32's.
GUARD_TOP = 10
#: The least share of questions whose top :data:`GUARD_TOP` order equals fp32's.
MIN_ORDER_SHARE = 0.95
#: A measure's difference to fp32 is noise while the paired randomization test's p is at least this.
ALPHA = 0.05
#: The measures the guard compares with fp32 (ir_measures names).
GUARD_MEASURES = ("P@5", "RR@10")
REFERENCE = InferencePath("torch", "fp32")
_FORMAT = 1


@dataclass(frozen=True)
class PathQuality:
    """One path's guard figures against ``torch/fp32`` on the same pairs.

    Attributes:
        path: ``backend/dtype``.
        pairs_per_s: scoring speed over the guard's pairs (tokenisation included; best of the repeats).
        order_share: share of questions whose top :data:`GUARD_TOP` order equals fp32's.
        deltas: per measure, mean (path - fp32) over the questions.
        p_values: per measure, the paired randomization test's two-sided p of those differences.
        max_abs_error: the largest |score - fp32 score| over the pairs.
        passed: the verdict of :func:`judge_path`.
    """

    path: str
    pairs_per_s: float
    order_share: float
    deltas: dict[str, float]
    p_values: dict[str, float]
    max_abs_error: float
    passed: bool

    @classmethod
    def judged(cls, path: str, pairs_per_s: float, order_share: float, deltas: dict[str, float],
               p_values: dict[str, float], max_abs_error: float) -> "PathQuality":
        """The figures with their verdict."""
        passed, _ = judge_path(order_share, p_values)
        return cls(path, float(pairs_per_s), float(order_share), dict(deltas), dict(p_values), float(max_abs_error),
                   passed)


def judge_path(order_share: float, p_values: dict[str, float]) -> tuple[bool, list[str]]:
    """``(passed, reasons it failed)`` for a path's top-10 order share and the p-values of its measures."""
    reasons = []
    if order_share < MIN_ORDER_SHARE:
        reasons.append(f"top-{GUARD_TOP} order equals fp32's on {order_share:.1%} of questions (< {MIN_ORDER_SHARE:.0%})")
    for measure in GUARD_MEASURES:
        if measure not in p_values:
            reasons.append(f"no paired test of {measure}")
        elif p_values[measure] < ALPHA:
            reasons.append(f"{measure} differs from fp32's (paired randomization p = {p_values[measure]:.3g} < {ALPHA})")
    return not reasons, reasons


@dataclass(frozen=True)
class GuardRecord:
    """The guard's measurement of one model's weights on one hardware at one max length."""

    hardware: str
    model: str
    weights: str
    max_length: int
    batch_size: int
    questions: int
    pairs: int
    paths: tuple[PathQuality, ...]
    measured_at: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, **dataclasses.asdict(self),
                "rule": {"top": GUARD_TOP, "min_order_share": MIN_ORDER_SHARE, "alpha": ALPHA,
                         "measures": list(GUARD_MEASURES), "reference": str(REFERENCE)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> "GuardRecord":
        try:
            if data.get("format") != _FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {_FORMAT}")
            paths = tuple(PathQuality(**p) for p in data["paths"])
            fields = {f.name for f in dataclasses.fields(cls)} - {"paths"}
            return cls(paths=paths, **{k: data[k] for k in fields if k in data})
        except (KeyError, TypeError, ValueError) as err:
            raise InputFormatError(where, None, f"not a quality-guard record ({err})") from None

    def best(self, dtype: str = "auto", installed: bool = True) -> PathQuality | None:
        """The fastest path that passed (of precision ``dtype`` unless ``auto``; installed only, by default)."""
        chosen = [q for q in self.paths if q.passed and (dtype == "auto" or q.path.endswith(f"/{dtype}"))
                  and q.path.partition("/")[0] in BACKENDS
                  and (not installed or backend_available(q.path.partition("/")[0])[0])]
        return max(chosen, key=lambda q: q.pairs_per_s, default=None)


def guard_dir() -> Path:
    """The guard folder: ``$CLIR_OT_GUARD_DIR``, default ``~/.cache/clir_ot/guard``."""
    env = os.environ.get(GUARD_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clir_ot" / "guard"


def _record_name(record: GuardRecord) -> str:
    machine = hashlib.sha256(record.hardware.encode()).hexdigest()[:12]
    return f"guard.{record.weights[:16]}.{machine}.len{record.max_length}.json"


def write_guard_record(record: GuardRecord, folder: PathLike | None = None) -> Path:
    """Write ``record`` (atomically) into ``folder`` (default :func:`guard_dir`), replacing the record of
    the same weights, hardware and max length; return its path."""
    if not record.measured_at:
        record = dataclasses.replace(record, measured_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    target = Path(folder) if folder is not None else guard_dir()
    target.mkdir(parents=True, exist_ok=True)
    path = target / _record_name(record)
    with atomic_open(path) as handle:
        handle.write(json.dumps(record.to_dict(), indent=2) + "\n")
    return path


def read_guard_records(folder: PathLike | None = None) -> list[GuardRecord]:
    """Every record in ``folder`` (default :func:`guard_dir`; none if it does not exist)."""
    target = Path(folder) if folder is not None else guard_dir()
    if not target.is_dir():
        return []
    records = []
    for path in sorted(target.glob("guard.*.json")):
        records.append(GuardRecord.from_dict(read_json_object(path), str(path)))
    return records


def choose_path(
    weights: str,
    max_length: int,
    dtype: str = "auto",
    device: "torch.device | str | None" = None,
    folder: PathLike | None = None,
    records: Sequence[GuardRecord] | None = None,
) -> tuple[InferencePath, str]:
    """``backend="auto"``: the path to score with, and why (one line for the log).

    Among the records of these ``weights`` on this hardware, the one measured at the max length
    nearest ``max_length`` (the longer on a tie) decides: its fastest installed path that passed the
    guard, of precision ``dtype`` unless ``auto``; if none passed, :class:`~clir_ot.errors.BackendError`
    (a path that failed is never picked). Without a record, the default rule (module docstring).
    """
    if max_length < 1:
        raise ConfigError(f"max_length must be at least 1, got {max_length}")
    hardware = hardware_id(device)
    pool = [r for r in (read_guard_records(folder) if records is None else records)
            if r.weights == weights and r.hardware == hardware]
    if pool:
        record = min(pool, key=lambda r: (abs(r.max_length - max_length), -r.max_length))
        best = record.best(dtype)
        if best is not None:
            path = InferencePath.parse(best.path)
            return resolve_path(path.backend, path.dtype, device), (
                f"fastest installed path that passed the quality guard at max length {record.max_length} "
                f"({best.pairs_per_s:.1f} pairs/s, top-{GUARD_TOP} order = fp32's on {best.order_share:.1%} of "
                f"{record.questions} questions; measured {record.measured_at})")
        failed = ", ".join(q.path for q in record.paths if not q.passed) or "none"
        raise BackendError(f"backend auto: no installed {dtype} path passed the quality guard for these weights at "
                           f"max length {record.max_length} (failed: {failed}); ask for --dtype auto, or name "
                           f"the path yourself (--backend torch --dtype {dtype})")
    else:
        why = ("no quality-guard record for these weights on this hardware "
               "(measure one with tools/bench_rerank.py --guard)")
    path = resolve_path("torch", dtype, device)
    return path, f"{why}; the default rule: torch at {path.dtype}"
