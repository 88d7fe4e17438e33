"""Shared fixtures. Tests never touch the network: the hub is offline for the whole session."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OPENAI_API_KEY", "unused-placeholder")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
XQUAD_DIR = SHARED_DATA / "xquad"
TATOEBA_DIR = SHARED_DATA / "tatoeba"


@pytest.fixture(scope="session")
def xquad_dir() -> Path:
    """The shared XQuAD copy; tests that need it skip with the reason when it is absent."""
    if not (XQUAD_DIR / "xquad.en.json").is_file():
        pytest.skip(f"real XQuAD data not found at {XQUAD_DIR} (../shared/data/xquad is absent)")
    return XQUAD_DIR


@pytest.fixture(scope="session")
def xquad_collection(xquad_dir, tmp_path_factory) -> Path:
    """XQuAD collections for all shared languages, built once per session."""
    from clir_ot.datasets.xquad import build_xquad_collections

    out = tmp_path_factory.mktemp("xquad")
    build_xquad_collections(xquad_dir, out)
    return out
