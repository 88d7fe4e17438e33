"""On-disk stores: texts by id and lines by position, read on demand so memory does not grow with the data.

* :class:`TextStore` -- ``{id: text}`` over a TSV (``id<TAB>text``: MS MARCO ``collection.tsv`` /
  ``queries.train.tsv``, ``ir_datasets export ... docs|queries``) or JSONL file (Pyserini
  ``{"id", "contents"}``, ir_datasets ``--format jsonl``), or a folder of JSONL files.
* :class:`LuceneTextStore` -- ``{docid: text}`` from a Pyserini/Lucene index's stored raw documents.
* :class:`LineFile` -- the lines of a text file by position (training triples and groups).

Both file-backed stores build an index once (:mod:`clir_ot.store._index`: byte offsets, 8 or 16
bytes per line, in ``$CLIR_OT_STORE_DIR``, default ``~/.cache/clir_ot/stores``), read it with
``pread`` (never loaded whole or memory-mapped), and rebuild it when a source file's size, mtime or
first/last MiB change -- never silently stale. Both are read-only :class:`~collections.abc.Mapping` s,
so they drop in wherever a ``{docid: text}`` dict went (:func:`clir_ot.rerank.rerank_run`).
"""
import logging

from clir_ot.formats import load_corpus
from clir_ot.store._index import STORE_DIR_ENV, content_identity, file_identity, store_dir
from clir_ot.store._lines import LineFile
from clir_ot.store._lucene import LuceneTextStore, raw_text
from clir_ot.store._texts import ID_KEYS, TEXT_KEYS, TextStore


def passage_store(corpus=None, index=None):
    """Passages by id for a reranker, read on demand: a :class:`LuceneTextStore` over the Lucene
    ``index``, or a :class:`TextStore` over ``corpus`` (exactly one of them). A ``.gz`` corpus cannot be
    read at offsets, so it is read into memory (a dict) and the log says so."""
    if (corpus is None) == (index is None):
        raise ValueError("give exactly one of corpus and index")
    if index is not None:
        return LuceneTextStore(index)
    if str(corpus).endswith(".gz"):
        logging.getLogger(__name__).info("%s is compressed: reading it into memory (decompress it to read "
                                         "passages on demand)", corpus)
        return load_corpus(corpus)
    return TextStore(corpus, "passage")

__all__ = [
    "ID_KEYS",
    "LineFile",
    "LuceneTextStore",
    "STORE_DIR_ENV",
    "TEXT_KEYS",
    "TextStore",
    "content_identity",
    "file_identity",
    "passage_store",
    "raw_text",
    "store_dir",
]
