"""Dense first stage: a bi-encoder embeds the passages into a faiss index; queries search it.

The index folder has Pyserini's ``FaissSearcher`` layout -- ``index`` (a faiss index written by
``faiss.write_index``) and ``docid`` (one docid per line, in index order) -- so
``pyserini.search.faiss.FaissSearcher(folder, encoder)`` reads it as it is; ``clir_ot.json`` records
the encoder, its settings and the corpus hash.

Index types: ``flat`` (exact inner product, the default; with L2-normalised embeddings that is
cosine similarity) and ``hnsw`` (graph search for large corpora; ``--hnsw-m``, ``--ef-search``).

Encoding a large corpus checkpoints: embeddings are saved in shards of ``shard_size`` passages in a
work folder beside the index (``.<name>.encoding``), and a restarted run reuses the finished shards.
The same shards split the work over processes (``torchrun``, a :class:`~clir_ot.parallel.ProcessGroup`):
process ``r`` of ``N`` encodes the shards whose number modulo ``N`` is ``r``, and process 0 builds
the index from all of them once every process is done. Each shard is encoded in the batches one
process would form, so the index equals one process's whenever the encoder gives the same bits for
the same batch in every process (same device and kernels; on CPU, the same number of threads).

    torchrun --nproc-per-node 4 -m clir_ot encode --corpus C --index I ...
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from clir_ot import __version__
from clir_ot.errors import ConfigError, InputFormatError
from clir_ot.formats import Hit, RunWriter, iter_corpus, read_json_object, strictly_decreasing
from clir_ot.io import PathLike, atomic_dir, atomic_open, check_replaceable, sha256_of
from clir_ot.parallel import ProcessGroup
from clir_ot.progress import progress_bar
from clir_ot.retrieval.lucene import MANIFEST

logger = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw")

__all__ = ["DenseSearcher", "INDEX_TYPES", "PyseriniQueryEncoder", "check_faiss_index", "check_index_target",
           "dense_search_to_run", "encode_corpus", "is_faiss_index", "read_dense_manifest"]


def _faiss():
    import faiss  # loaded only where an index is built or read: it picks its SIMD build and logs on import

    return faiss


def _build_faiss(vectors: np.ndarray, index_type: str, hnsw_m: int):
    faiss = _faiss()
    dim = vectors.shape[1]
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
    else:
        raise ConfigError(f"index type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def is_faiss_index(folder: Path) -> bool:
    """Whether ``folder`` holds a dense index: :func:`encode_corpus`'s (or Pyserini's) ``index`` and ``docid``."""
    return (folder / "index").is_file() and (folder / "docid").is_file()


def check_faiss_index(folder: PathLike) -> None:
    """Refuse a folder that is not a dense index (before a query encoder is loaded for it)."""
    for name in ("index", "docid"):
        if not (Path(folder) / name).is_file():
            raise ConfigError(f"{folder} is not a faiss index folder: no {name!r} file (build one with: clir-ot encode)")


def read_dense_manifest(index_dir: PathLike) -> dict:
    """The ``clir_ot.json`` :func:`encode_corpus` writes beside a dense index (``{}`` for one without it,
    e.g. Pyserini's); a damaged one is an error naming the file and line."""
    path = Path(index_dir) / MANIFEST
    return read_json_object(path) if path.is_file() else {}


def check_index_target(index_dir: PathLike, corpus: PathLike) -> None:
    """Refuse an ``index_dir`` that :func:`encode_corpus` would have to delete to write: a folder of other
    files, or one that holds ``corpus`` (:func:`clir_ot.io.check_replaceable`)."""
    check_replaceable(index_dir, kind="faiss index", is_kind=is_faiss_index, inputs=[corpus])


def _read_stamp(path: Path) -> dict | None:
    """The settings stamped in an encoding work folder (``None`` when absent or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def encode_corpus(
    corpus: PathLike,
    index_dir: PathLike,
    model,
    batch_size: int = 32,
    max_length: int | None = None,
    index_type: str = "flat",
    hnsw_m: int = 32,
    shard_size: int = 10_000,
    dtype: str = "fp32",
    runner=None,
    group: ProcessGroup | None = None,
) -> dict | None:
    """Embed every passage of ``corpus`` with ``model`` (a :class:`~clir_ot.models.BiEncoderModel`)
    and write a faiss index to ``index_dir``; returns the manifest. ``runner`` (``model.runner(path)``,
    :mod:`clir_ot.models.backends`), if given, runs the encoder on its inference path instead of torch
    at ``dtype`` (then ``dtype`` must be the path's).

    ``group``: this process's place among the processes that share the job (every process calls this
    with the same arguments and encodes its shards; once all are done, process 0 builds and writes the
    index and returns the manifest, while the others return ``None`` at once: no process waits in a
    collective for an index build, which can outlast a collective's timeout). ``None``: one process
    does it all."""
    rank, processes = (group.rank, group.world_size) if group is not None else (0, 1)
    if index_type not in INDEX_TYPES:
        raise ConfigError(f"index type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
    corpus, index_dir = Path(corpus), Path(index_dir)
    check_index_target(index_dir, corpus)
    docs = list(iter_corpus(corpus))
    if not docs:
        raise InputFormatError(corpus, None, "corpus has no documents")
    corpus_hash = sha256_of(corpus)
    work = index_dir.parent / f".{index_dir.name}.encoding"
    if runner is not None and runner.path.dtype != dtype:
        raise ConfigError(f"encode_corpus: dtype {dtype!r} but the runner computes in {runner.path.dtype}")
    on_backend = {"backend": runner.path.backend} if runner is not None else {}
    stamp = {"corpus_sha256": corpus_hash, "model": str(getattr(model, "name_or_path", "")),
             "weights": model.parameters_digest(),  # a folder retrained in place has other weights
             "max_length": max_length, "shard_size": shard_size, "dtype": dtype, **on_backend}
    stamp_file = work / "stamp.json"
    if rank == 0:
        if work.exists() and _read_stamp(stamp_file) != stamp:
            shutil.rmtree(work)  # left by a different job (or its stamp is unreadable): start afresh
        work.mkdir(parents=True, exist_ok=True)
        with atomic_open(stamp_file) as out:
            out.write(json.dumps(stamp))
    if group is not None:
        group.barrier()  # the work folder is this job's before any process writes a shard into it
    started = time.time()
    num_shards = (len(docs) + shard_size - 1) // shard_size
    shard_paths = [work / f"shard-{s:05d}.npy" for s in range(num_shards)]
    mine = [s for s in range(num_shards) if s % processes == rank]
    encoded: dict[int, np.ndarray] = {}
    for s in progress_bar(mine, desc=f"encoding {corpus.name}", unit="shard", disable=len(mine) <= 1):
        if shard_paths[s].is_file():
            continue  # finished by an earlier, interrupted job
        texts = [d.contents for d in docs[s * shard_size:(s + 1) * shard_size]]
        vectors = model.encode_passages(texts, batch_size=batch_size, max_length=max_length,
                                        dtype=dtype if runner is None else None, runner=runner)
        with atomic_open(shard_paths[s], "wb") as handle:
            np.save(handle, vectors)
        encoded[s] = vectors  # kept: what this process encoded is not read back from disk
    if group is not None:
        group.barrier()  # every shard is written
        if rank != 0:
            return None  # process 0 builds the index
    vectors = np.concatenate([encoded[s] if s in encoded else np.load(path) for s, path in enumerate(shard_paths)])
    index = _build_faiss(vectors, index_type, hnsw_m)
    manifest = {
        "kind": "faiss",
        "index_type": index_type,
        "hnsw_m": hnsw_m if index_type == "hnsw" else None,
        "dim": int(vectors.shape[1]),
        "documents": len(docs),
        "corpus": str(corpus.resolve()),
        "corpus_sha256": corpus_hash,
        "encoder": str(getattr(model, "name_or_path", "")),
        "encoder_settings": model.config.to_dict() if hasattr(model.config, "to_dict") else {},
        "max_length": max_length,
        "dtype": dtype,
        **on_backend,
        "clir_ot": __version__,
        "seconds": round(time.time() - started, 3),
    }
    with atomic_dir(index_dir) as building:  # an existing index is replaced only by a complete one
        _faiss().write_index(index, str(building / "index"))
        with atomic_open(building / "docid") as out:
            out.writelines(f"{d.docid}\n" for d in docs)
        with atomic_open(building / MANIFEST) as out:
            json.dump(manifest, out, indent=2)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("encoded %d passages into %s (%s, dim %d) in %.1fs%s", len(docs), index_dir, index_type,
                manifest["dim"], manifest["seconds"], f" with {processes} processes" if processes > 1 else "")
    return manifest


class DenseSearcher:
    """Inner-product search of a faiss index written by :func:`encode_corpus` (or by Pyserini)."""

    def __init__(self, index_dir: PathLike, model, ef_search: int = 128):
        self.index_dir = Path(index_dir)
        check_faiss_index(self.index_dir)
        self.index = _faiss().read_index(str(self.index_dir / "index"))
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = ef_search
        self.docids = (self.index_dir / "docid").read_text(encoding="utf-8").split("\n")[:-1]
        if len(self.docids) != self.index.ntotal:
            raise ConfigError(f"{self.index_dir}: {len(self.docids)} docids but {self.index.ntotal} vectors")
        self.model = model
        self.info = read_dense_manifest(self.index_dir)

    def search_vectors(self, vectors: np.ndarray, qids: list[str], k: int) -> Iterator[tuple[str, list[Hit]]]:
        k = min(int(k), len(self.docids))
        scores, rows = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        for qid, score_row, id_row in zip(qids, scores, rows):
            hits = (Hit(qid=qid, docid=self.docids[r], score=float(s)) for s, r in zip(score_row, id_row) if r >= 0)
            yield qid, strictly_decreasing(hits)

    def search(self, query: str, k: int = 1000, qid: str = "") -> list[Hit]:
        vectors = self.model.encode_queries([query])
        return next(self.search_vectors(vectors, [qid], k))[1]

    def batch_search(self, topics: Mapping[str, str], k: int = 1000, batch_size: int = 32,
                     max_length: int | None = None, dtype: str = "fp32") -> Iterator[tuple[str, list[Hit]]]:
        qids = list(topics)
        vectors = self.model.encode_queries([topics[q] for q in qids], batch_size=batch_size,
                                            max_length=max_length, dtype=dtype)
        yield from self.search_vectors(vectors, qids, k)


def dense_search_to_run(searcher: DenseSearcher, topics: Mapping[str, str], output: PathLike,
                        k: int = 1000, batch_size: int = 32, max_length: int | None = None,
                        dtype: str = "fp32", tag: str = "dense") -> Path:
    """Search all topics densely and write a TREC run atomically."""
    with RunWriter(output, tag=tag) as writer:
        for qid, hits in searcher.batch_search(topics, k=k, batch_size=batch_size, max_length=max_length,
                                               dtype=dtype):
            writer.write(qid, hits)
    logger.info("wrote %d queries, %d lines to %s", writer.queries, writer.lines, output)
    return Path(output)


class PyseriniQueryEncoder:
    """Adapter that lets Pyserini's ``FaissSearcher`` encode queries with a clir_ot bi-encoder::

        FaissSearcher("indexes/faiss.xquad.th.e5-small", PyseriniQueryEncoder(model)).search("...")
    """

    def __init__(self, model, max_length: int | None = None):
        self.model = model
        self.max_length = max_length

    def encode(self, query: str, **_: object) -> np.ndarray:
        return self.model.encode_queries([query], max_length=self.max_length)[0]
