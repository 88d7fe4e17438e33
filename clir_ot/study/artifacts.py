"""Content-keyed artifacts: every step of a study writes one folder whose key is derived from its inputs.

Key of a step = SHA-256 of the canonical JSON of ``{"kind", "settings", "inputs", "format"}``, where
``inputs`` holds the SHA-256 of every input file and the keys of the upstream artifacts. So a key
changes when any setting, any input file or anything upstream changes, and not otherwise (paths,
times and the order of mapping keys do not enter it). Code changes do not enter the key either: each
artifact records the code version it was built with (``artifact.json``), and ``--force`` rebuilds.

Layout: ``<study>/artifacts/<kind>/<label>-<key[:16]>/`` holding the step's outputs and, written
last and atomically, ``artifact.json`` (key, settings, inputs, code and package versions, wall time,
throughput). A folder without ``artifact.json`` is an unfinished step: it is resumed (training from
its checkpoints, reranking from its journal), never trusted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from clir_ot.io import PathLike, atomic_open, cached_sha256, hash_model_folder  # noqa: F401 (re-exported)
from clir_ot.training.trainer import code_version

__all__ = ["ARTIFACT_FILE", "ArtifactStore", "artifact_key", "hash_model_folder", "package_versions"]

ARTIFACT_FILE = "artifact.json"
KEY_FORMAT = 1


def artifact_key(kind: str, settings: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """The SHA-256 key of a step (see the module docstring)."""
    payload = json.dumps({"format": KEY_FORMAT, "kind": kind, "settings": settings, "inputs": inputs},
                         sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("clir-ot", "torch", "transformers", "pyserini", "faiss-cpu", "POT", "pytrec-eval-terrier", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class Artifact:
    kind: str
    label: str
    key: str
    folder: Path

    @property
    def done(self) -> bool:
        return (self.folder / ARTIFACT_FILE).is_file()

    def record(self) -> dict[str, Any]:
        return json.loads((self.folder / ARTIFACT_FILE).read_text(encoding="utf-8"))


class ArtifactStore:
    """Artifacts of one study (``root``), with read-only lookups in other studies' stores (``reuse``)."""

    def __init__(self, root: PathLike, reuse: Iterable[PathLike] = ()):
        self.root = Path(root)
        self.reuse = [Path(r) for r in reuse]

    @staticmethod
    def _name(label: str, key: str) -> str:
        return f"{label}-{key[:16]}"

    def locate(self, kind: str, label: str, key: str) -> Artifact:
        """The finished artifact with this key (here or in a reused store), else this store's folder for it."""
        own = Artifact(kind, label, key, self.root / "artifacts" / kind / self._name(label, key))
        if own.done and own.record().get("key") == key:
            return own
        for other in self.reuse:
            found = Artifact(kind, label, key, other / "artifacts" / kind / self._name(label, key))
            if found.done and found.record().get("key") == key:
                return found
        return own

    @staticmethod
    def finish(artifact: Artifact, record: Mapping[str, Any]) -> None:
        """Mark ``artifact`` finished: write ``artifact.json`` atomically (last)."""
        payload = {"kind": artifact.kind, "label": artifact.label, "key": artifact.key, **record,
                   "code": code_version(), "packages": package_versions()}
        artifact.folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(artifact.folder / ARTIFACT_FILE) as handle:
            json.dump(payload, handle, indent=1, default=str)
            handle.write("\n")
