"""Atomic training checkpoints: a folder per step that is either complete or invisible.

A checkpoint is written into a hidden temporary folder ``checkpoints/.step-NNNNNN.*.tmp`` beside its
target, its files are flushed to disk, and only then is it renamed to ``checkpoints/step-NNNNNN``
(one ``rename``, atomic on a POSIX file system). A process killed while writing leaves only the
hidden folder, which no reader takes for a checkpoint and the next start removes. Old checkpoints
are renamed to a hidden name before they are deleted, for the same reason.

Layout of one checkpoint::

    step-000120/
        model/               the model as a folder the reranker loads (safetensors weights)
        optimizer.pt         optimizer state
        scheduler.pt         learning-rate schedule state
        rng.pt               RNG states (python, numpy, torch, cuda) of every process
        trainer_state.json   data position (epoch, step), best metric, elapsed time, config; written last
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from clir_ot.io import atomic_dir, remove_tree

logger = logging.getLogger(__name__)

PREFIX = "step-"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")

__all__ = ["checkpoint_name", "clean_partial", "latest_checkpoint", "list_checkpoints", "prune_checkpoints",
           "write_checkpoint"]


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:06d}"


def write_checkpoint(root: Path, step: int, write: Callable[[Path], None]) -> Path:
    """Create ``root/step-NNNNNN`` atomically: ``write(tmp)`` fills a hidden folder that is then renamed.

    The folder is flushed to disk before and after the rename (:func:`clir_ot.io.atomic_dir` with
    ``durable=True``); the same step written again (a replay after resuming from an older one)
    replaces the earlier folder.
    """
    target = Path(root) / checkpoint_name(step)
    with atomic_dir(target, durable=True, shared=False) as tmp:
        write(tmp)
        if not (tmp / STATE_FILE).is_file():
            raise RuntimeError(f"checkpoint writer left no {STATE_FILE}")
    return target


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """The complete checkpoints under ``root`` as ``(step, folder)``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir() and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    """The most recent complete checkpoint under ``root``, or ``None``."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune_checkpoints(root: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recent checkpoints; returns the deleted folders."""
    found = list_checkpoints(root)
    doomed = [path for _, path in found[: max(0, len(found) - keep)]]
    for path in doomed:
        remove_tree(path)
    return doomed


def clean_partial(root: Path) -> int:
    """Remove the hidden leftovers of checkpoints whose writing or deletion was interrupted."""
    root = Path(root)
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.iterdir():
        if path.name.startswith(".") and (path.name.endswith(".tmp") or path.name.endswith(".deleting")):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed += 1
    if removed:
        logger.info("removed %d partial checkpoint folder(s) left by an interrupted run in %s", removed, root)
    return removed


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text(encoding="utf-8"))
