"""A model folder on disk: the files that make it loadable, its ``clir_ot.json``, writing it atomically.

A clir_ot model folder is a Hugging Face ``save_pretrained`` folder (``config.json``, safetensors
weights, tokenizer files) plus ``clir_ot.json``, the small settings file that names the model's kind,
pooling, head and prefixes. Every model class and the offline default write through
:func:`save_model_folder` / :func:`atomic_output_dir`, and read the settings with
:func:`read_settings`; :func:`check_model_dir` says what a folder lacks.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from clir_ot.errors import ConfigError, ModelLoadError
from clir_ot.io import PathLike, atomic_dir, check_replaceable, sha256_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = [
    "BEST_DIR",
    "SETTINGS_FILE",
    "TOKENIZER_FILES",
    "WEIGHT_FILES",
    "atomic_output_dir",
    "check_output_dir",
    "check_model_dir",
    "describe_model",
    "read_settings",
    "save_model_folder",
    "write_settings",
]

BEST_DIR = "best"
"""Subfolder of a trained model folder holding the model that validation selected."""

SETTINGS_FILE = "clir_ot.json"
"""Name of the small JSON file, next to ``config.json``, that records how clir_ot uses a model."""

SETTINGS_FORMAT = 1

TOKENIZER_FILES = (
    "tokenizer.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "sentencepiece.model",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
)
"""Any one of these makes a folder's tokenizer loadable (``tokenizer.json`` is the fast format)."""

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_dir(folder: PathLike) -> Path:
    """Check that ``folder`` holds a loadable model: ``config.json``, weights and tokenizer files.

    Raises :class:`ModelLoadError` naming the folder and what is missing.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} " + ("is a file, not a folder" if folder.is_file() else "does not exist"))
    names = {p.name for p in folder.iterdir()}
    missing: list[str] = []
    if "config.json" not in names:
        missing.append("config.json (the model configuration)")
    if not names.intersection(WEIGHT_FILES):
        missing.append("weights (model.safetensors)")
    if not names.intersection(TOKENIZER_FILES):
        missing.append(
            "tokenizer files (tokenizer.json, or a vocabulary such as sentencepiece.bpe.model or vocab.txt)"
        )
    if missing:
        best = folder / BEST_DIR
        if names.intersection({"config.json", "training.json"}) and best.is_dir() and \
                {p.name for p in best.iterdir()}.intersection(WEIGHT_FILES):
            raise ModelLoadError(
                f"model folder {folder} lacks its final weights: validation selected {best}, and the final "
                "model's weights were dropped (clir_ot.training.drop_unselected_weights); use that folder"
            )
        raise ModelLoadError(
            f"model folder {folder} lacks {'; '.join(missing)}. Save the model and its tokenizer there "
            "with save_pretrained(), or point to a folder that has them"
        )
    return folder


def describe_model(requested: PathLike | None, location: str) -> dict[str, Any]:
    """What a manifest records about a model a job started from (a base, a teacher).

    ``requested`` is the name or path the user gave (``None``: the offline default), ``location``
    where it was loaded from; for a local folder the SHA-256 of each ``*.safetensors`` file is added,
    so a later job can tell whether the folder was retrained in place.
    """
    info: dict[str, Any] = {"requested": None if requested is None else str(requested), "location": location}
    path = Path(location)
    if path.is_dir():
        weights = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".safetensors")
        info["sha256"] = {p.name: sha256_of(p) for p in weights}
    return info


#: The kinds a ``clir_ot.json`` can name (the ``KIND`` of :mod:`clir_ot.models.bi_encoder` and
#: :mod:`clir_ot.models.cross_encoder`).
MODEL_KINDS = ("bi-encoder", "cross-encoder")


def read_settings(folder: PathLike) -> dict[str, Any] | None:
    """The ``clir_ot.json`` of a model folder, or ``None`` if it has none (a plain HF model)."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: unreadable clir_ot settings ({err})") from None
    if not isinstance(settings, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    version = settings.pop("format", SETTINGS_FORMAT)
    if version != SETTINGS_FORMAT:
        raise ModelLoadError(f"{path}: settings format {version} is not supported (expected {SETTINGS_FORMAT})")
    if "kind" in settings and settings["kind"] not in MODEL_KINDS:
        raise ModelLoadError(f"{path}: unknown model kind {settings['kind']!r}; valid: {', '.join(MODEL_KINDS)}")
    return settings


def write_settings(folder: PathLike, settings: dict[str, Any]) -> Path:
    """Write ``settings`` (with the format version) as ``clir_ot.json`` in ``folder``."""
    path = Path(folder) / SETTINGS_FILE
    path.write_text(json.dumps({"format": SETTINGS_FORMAT, **settings}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def check_output_dir(target: PathLike, *, overwrite: bool = False) -> Path:
    """Raise :class:`~clir_ot.errors.ConfigError` unless a model folder may be written at ``target``
    (see :func:`atomic_output_dir`); return it as an absolute path. Cheap: call it before slow work."""
    target = Path(target).expanduser().absolute()
    if target.exists():
        if not target.is_dir():
            raise ConfigError(f"output {target} exists and is not a folder")
        contents = list(target.iterdir())
        if contents and not overwrite:
            raise ConfigError(f"output folder {target} already exists; choose another or allow overwriting (--force)")
        check_replaceable(target, kind="model folder", is_kind=lambda folder: (folder / "config.json").is_file())
    return target


@contextlib.contextmanager
def atomic_output_dir(target: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target`` that replaces ``target`` on success.

    The folder is built as a hidden sibling (same file system, so the final rename is atomic) and
    renamed to ``target`` only when the ``with`` block ends without an exception; otherwise it is
    removed and ``target`` is left as it was (see :func:`clir_ot.io.atomic_dir`). An existing
    ``target`` is replaced only when ``overwrite`` is true and it is empty or a model folder (has
    ``config.json``), never a folder of other files.
    """
    target = check_output_dir(target, overwrite=overwrite)
    with atomic_dir(target, shared=True) as tmp:  # a model folder is meant to be shared: 0644 files
        yield tmp


def save_model_folder(
    folder: PathLike,
    encoder: "PreTrainedModel",
    tokenizer: "PreTrainedTokenizerBase",
    settings: dict[str, Any],
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Atomically write encoder (safetensors + ``config.json``), tokenizer, ``clir_ot.json`` and ``extra`` files.

    An existing model folder at ``folder`` is replaced as a whole.
    """
    folder = Path(folder)
    with atomic_output_dir(folder, overwrite=True) as tmp:
        encoder.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_settings(tmp, settings)
        if extra is not None:
            extra(tmp)
    logger.info("saved %s", folder)
    return folder
