"""Progress bars: the one place that decides whether they are shown.

Every bar of the toolkit is made by :func:`progress_bar` (a ``tqdm.auto.tqdm``). By default a bar
follows its caller's ``disable`` (``None``: shown only when stderr is a terminal, tqdm's rule);
after :func:`set_progress_bars(False) <set_progress_bars>` (``clir-ot -q``) no bar is shown, those
of transformers and huggingface_hub (model loading and saving) included, in this process and in the
processes it starts (through the environment variable :data:`ENV`, which a process reads when it
imports this module: ``CLIR_OT_PROGRESS_BARS=0`` hides every bar).
"""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["ENV", "progress_bar", "progress_bars_enabled", "set_progress_bars"]

#: ``0`` hides every bar; inherited by child processes (the study's workers, torchrun ranks).
ENV = "CLIR_OT_PROGRESS_BARS"

_enabled = os.environ.get(ENV, "1").strip() != "0"


def set_progress_bars(enabled: bool) -> None:
    """Show (``True``, the default) or hide every progress bar made from now on, in this process."""
    global _enabled
    _enabled = bool(enabled)
    if enabled:
        os.environ.pop(ENV, None)
        os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    else:  # HF_HUB_...: read by huggingface_hub when it is first imported
        os.environ[ENV] = "0"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None:  # already imported: its switch, not the variable, decides
        (hub.enable_progress_bars if enabled else hub.disable_progress_bars)()
    hf_logging = sys.modules.get("transformers.utils.logging")
    if hf_logging is not None:
        (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()


def progress_bars_enabled() -> bool:
    """Whether :func:`set_progress_bars` leaves bars on."""
    return _enabled


def progress_bar(iterable: Any = None, *, disable: bool | None = False, **kwargs: Any) -> tqdm:
    """A ``tqdm`` bar, hidden whatever ``disable`` says when bars are switched off."""
    return tqdm(iterable, disable=True if not _enabled else disable, **kwargs)
