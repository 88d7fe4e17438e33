"""One call from files to a trained cross-encoder: what ``clir-ot train`` runs (alone or under torchrun)."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch

from clir_ot.io import PathLike
from clir_ot.models import CrossEncoderModel
from clir_ot.models.folder import describe_model
from clir_ot.training.data import DataSpec, load_training_data
from clir_ot.training.distributed import init_distributed, shutdown_distributed
from clir_ot.training.trainer import Trainer, TrainerState, TrainingConfig, TrainingResult, seed_everything
from clir_ot.training.validation import MrrValidator

logger = logging.getLogger(__name__)

__all__ = ["train_cross_encoder"]


def train_cross_encoder(
    base: PathLike | None,
    output: PathLike,
    data: DataSpec,
    config: TrainingConfig,
    *,
    resume: bool = False,
    head: str | None = None,
    device: str | torch.device | None = None,
    callbacks: Sequence[Callable[[TrainerState], None]] = (),
    progress: bool | None = None,
) -> TrainingResult:
    """Train a cross-encoder from ``base`` on the groups that ``data`` describes, into ``output``.

    Works in one process or under ``torchrun`` (it joins the process group the environment
    describes and leaves it at the end). Every process reads the data and loads the model; the
    main process validates and writes. ``base`` is a hub name, a model folder, or ``None`` for the
    offline default (multilingual-e5-small); a base without a trained head gets a fresh ``head``
    (seeded by ``config.seed``). See :class:`~clir_ot.training.trainer.Trainer` for the output.
    """
    dist, started = init_distributed()
    try:
        prepared = load_training_data(data, negatives=config.negatives, depth=config.depth,
                                      valid_negatives=config.valid_negatives, seed=config.seed)
        seed_everything(config.seed)  # a freshly initialised head is the same in every process and run
        model = CrossEncoderModel.from_pretrained(
            base, head=head or config.head, max_length=config.max_length, pooling=config.pooling,
            query_prefix=config.query_prefix, passage_prefix=config.passage_prefix)
        trainer = Trainer(model, prepared.train, config, output, device=device, callbacks=callbacks,
                          progress=progress, manifest={})
        validator = None
        if prepared.valid:
            validator = MrrValidator(prepared.valid, batch_size=config.valid_batch_size, max_length=config.max_length,
                                     dtype=trainer.precision)
        trainer.validate = validator
        trainer.extra_manifest = {
            "base_model": describe_model(base, model.name_or_path) if dist.is_main else {"location": model.name_or_path},
            "head": model.config.head,
            "data": prepared.info,
        }
        return trainer.train(resume=resume)
    finally:
        shutdown_distributed(started)
