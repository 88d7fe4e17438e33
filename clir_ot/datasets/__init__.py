"""Collections built from public data sets (XQuAD)."""
from clir_ot.datasets.xquad import (
    DEFAULT_LANGUAGES,
    XQUAD_LANGUAGES,
    XQuAD,
    build_xquad_collections,
    docid,
    download_xquad,
    fold_of_articles,
    load_xquad,
    read_folds,
)

__all__ = [
    "DEFAULT_LANGUAGES",
    "XQUAD_LANGUAGES",
    "XQuAD",
    "build_xquad_collections",
    "docid",
    "download_xquad",
    "fold_of_articles",
    "load_xquad",
    "read_folds",
]
