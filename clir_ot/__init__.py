"""clir_ot: optimal-transport distillation for low-resource cross-lingual IR, in a Pyserini pipeline.

Dependencies point one way: ``cli`` -> ``study`` / ``pipelines`` -> stages -> ``formats`` / ``io`` /
``settings`` / ``errors``; nothing imports upward and there are no cycles
(``python ../shared/tools/import_graph.py .`` checks both).

At the bottom, used by every stage:

* :mod:`clir_ot.errors` -- the one exception hierarchy (:class:`ClirOtError` and its subclasses)
* :mod:`clir_ot.io` -- atomic files and folders, ``PathLike``, SHA-256 identities, format by file suffix
* :mod:`clir_ot.settings` -- settings dataclasses' type check and unknown-key rejection, the derived seed
* :mod:`clir_ot.formats` -- TREC runs, qrels, topics, JSONL corpora and folds (all TREC I/O) and :class:`Hit`

Stages, one module or package each:

* :mod:`clir_ot.datasets` -- collections built from public data (XQuAD)
* :mod:`clir_ot.java` -- starting the JVM that Pyserini/Anserini need
* :mod:`clir_ot.retrieval` -- first-stage retrieval (BM25 over Lucene, dense faiss search, fusion)
* :mod:`clir_ot.models` -- loading encoders as cross-encoders or bi-encoders; the offline default model
* :mod:`clir_ot.rerank` -- the reranker contract, neural rerankers, reranking run files
* :mod:`clir_ot.evaluation` -- trec_eval measures through pytrec_eval
* :mod:`clir_ot.training` -- training rerankers: groups with hard negatives, losses, the shared trainer
* :mod:`clir_ot.ot` -- batched entropic optimal transport (Sinkhorn)
* :mod:`clir_ot.distill` -- distillation to other languages: bitext, content-token masks, OT and baseline
  losses, the distillation trainer, OT plan inspection
* :mod:`clir_ot.pipelines` -- end-to-end jobs on XQuAD (baselines, the cross-fitted teacher, dense students)
* :mod:`clir_ot.study` -- studies as data: keyed resumable artifacts, statistics, the report
* :mod:`clir_ot.cli` -- the ``clir-ot`` command, a thin layer over the above
"""
from clir_ot.errors import (
    BackendError,
    ClirOtError,
    ConfigError,
    ConsistencyError,
    ExactOrderError,
    InputFormatError,
    JavaError,
    LeakageError,
    ModelLoadError,
)
from clir_ot.formats import Hit
from clir_ot.java import install_pyserini_import_hook

install_pyserini_import_hook()  # `import pyserini` after `import clir_ot` boots the right JVM first

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ClirOtError",
    "ConfigError",
    "ConsistencyError",
    "ExactOrderError",
    "Hit",
    "InputFormatError",
    "JavaError",
    "LeakageError",
    "ModelLoadError",
    "__version__",
]
