"""One call from files to a distilled student: what ``clir-ot distill`` runs (alone or under torchrun)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from clir_ot.distill.bitext import BitextPair, shuffled_control, split_bitext
from clir_ot.distill.trainer import DistillationConfig, DistillationTrainer, bitext_fingerprint
from clir_ot.errors import ConfigError
from clir_ot.io import PathLike
from clir_ot.models import BiEncoderModel, CrossEncoderModel
from clir_ot.models.folder import describe_model
from clir_ot.training.data import DataSpec, load_training_data
from clir_ot.training.distributed import init_distributed, shutdown_distributed
from clir_ot.training.trainer import TrainingConfig, TrainingResult, seed_everything

logger = logging.getLogger(__name__)

__all__ = ["distill_student", "load_model"]


def load_model(path: PathLike | None, model_type: str, max_length: int | None = None):
    """The teacher (or a fresh student copy of it) as the right model class."""
    if model_type == "cross-encoder":
        return CrossEncoderModel.from_pretrained(path, max_length=max_length)
    if model_type == "bi-encoder":
        return BiEncoderModel.from_pretrained(path, max_length=max_length)
    raise ConfigError(f"unknown model type {model_type!r}; valid: cross-encoder, bi-encoder")


def distill_student(
    teacher: PathLike | None,
    output: PathLike,
    pairs: Sequence[BitextPair],
    config: TrainingConfig,
    distill: DistillationConfig,
    *,
    valid_pairs: Sequence[BitextPair] | None = None,
    rank_data: DataSpec | None = None,
    bitext_files: Sequence[PathLike] = (),
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> TrainingResult:
    """Distil a student from ``teacher`` on the bitext ``pairs`` into ``output``.

    * ``teacher``: the frozen teacher's folder (a cross-encoder from ``clir-ot train``, or a
      bi-encoder such as the dense first stage's; ``None``: the offline default bi-encoder). The
      student starts as a copy of it.
    * ``valid_pairs``: held-out bitext; ``None`` holds out ``distill.valid_fraction`` of ``pairs``.
    * ``distill.shuffle_bitext``: train and validate on the shuffled control of both.
    * ``rank_data``: English relevance data (a collection with ``folds``/``exclude_fold`` for XQuAD
      cross-fitting, or a groups/triples file) for the rank term and for the queries of ``query``
      mode and score distillation. Pairs that carry their own question (``BitextPair.query``, the
      XQuAD query bitext of :func:`~clir_ot.distill.bitext.xquad_query_bitext`) are read with it;
      only pairs without one are given a drawn training query.

    Works in one process or under ``torchrun``. Returns the :class:`TrainingResult`; the student
    selected by the validation loss is in ``output/best`` and the last one in ``output``.
    """
    dist, started = init_distributed()
    try:
        pairs = list(pairs)
        if valid_pairs is None:
            train, valid = split_bitext(pairs, distill.valid_fraction, config.seed)
        else:
            train, valid = pairs, list(valid_pairs)
        if distill.shuffle_bitext:
            train, valid = shuffled_control(train, config.seed), shuffled_control(valid, config.seed + 1)
        queries: list[str] = []
        groups = []
        data_info: dict[str, Any] | None = None
        if rank_data is not None:
            prepared = load_training_data(rank_data, negatives=config.negatives, depth=config.depth, seed=config.seed)
            groups, data_info = prepared.train, prepared.info
            queries = sorted({g.query for g in groups})
        seed_everything(config.seed)
        teacher_model = load_model(teacher, distill.model_type, config.max_length)
        student = load_model(teacher, distill.model_type, config.max_length)
        trainer = DistillationTrainer(
            student, teacher_model, train, config, distill, output, valid_pairs=valid, queries=queries,
            rank_groups=groups if distill.rank_weight > 0 else (), device=device, progress=progress,
        )
        trainer.extra_manifest = {
            "teacher": describe_model(teacher, teacher_model.name_or_path) if dist.is_main else {},
            "distillation": distill.to_dict(),
            "bitext": {
                "files": [str(Path(f).resolve()) for f in bitext_files],
                "train_pairs": len(train), "valid_pairs": len(valid),
                "train_fingerprint": bitext_fingerprint(train), "valid_fingerprint": bitext_fingerprint(valid),
                "shuffled_control": distill.shuffle_bitext,
                "pairs_with_queries": sum(p.query is not None for p in train + valid),
            },
            "rank_data": data_info,
        }
        return trainer.train(resume=resume)
    finally:
        shutdown_distributed(started)
