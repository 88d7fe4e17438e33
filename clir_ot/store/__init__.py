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
from clir_ot.store._index import STORE_DIR_ENV, content_identity, file_identity, store_dir
from clir_ot.store._lines import LineFile
from clir_ot.store._lucene import LuceneTextStore, raw_text
from clir_ot.store._texts import ID_KEYS, TEXT_KEYS, TextStore

__all__ = [
    "ID_KEYS",
    "LineFile",
    "LuceneTextStore",
    "STORE_DIR_ENV",
    "TEXT_KEYS",
    "TextStore",
    "content_identity",
    "file_identity",
    "raw_text",
    "store_dir",
]
