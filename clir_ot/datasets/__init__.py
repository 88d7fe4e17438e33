"""Collections built from public data sets (XQuAD), and the XQuAD file layout."""
from clir_ot.datasets.layout import DEFAULT_FIRST_STAGE, EnglishTrainingFiles, TeacherData, XQuADCollection, XQuADLayout
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
    "DEFAULT_FIRST_STAGE",
    "DEFAULT_LANGUAGES",
    "EnglishTrainingFiles",
    "TeacherData",
    "XQUAD_LANGUAGES",
    "XQuAD",
    "XQuADCollection",
    "XQuADLayout",
    "build_xquad_collections",
    "docid",
    "download_xquad",
    "fold_of_articles",
    "load_xquad",
    "read_folds",
]
