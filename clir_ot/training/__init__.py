"""Training rerankers: groups of (query, positive, negatives), ranking losses, and the shared trainer.

* :mod:`clir_ot.training.data` -- :class:`TrainingGroup`; groups with hard negatives from a collection
  and a first-stage run (:func:`build_groups`, :func:`groups_from_files`), triples TSV and JSONL
  groups (:func:`read_triples`, :func:`read_groups`); XQuAD cross-fitting (:func:`xquad_fold_split`,
  :func:`assert_no_leakage`); :class:`DataSpec` + :func:`load_training_data` for the CLI.
* :mod:`clir_ot.training.streaming` -- :class:`StreamedGroups`: groups read from disk on demand (MS
  MARCO text/id triples, ir_datasets docpairs, JSONL groups) with texts from :mod:`clir_ot.store`.
* :mod:`clir_ot.training.losses` -- :class:`ListwiseSoftmaxLoss` (LCE, default),
  :class:`PairwiseMarginLoss`.
* :mod:`clir_ot.training.trainer` -- :class:`Trainer` and :class:`TrainingConfig`: AdamW, warm-up and
  linear decay, accumulation, clipping, bf16 autocast, atomic checkpoints and exact resume,
  validation with best-model selection, DDP under ``torchrun``, ``training.json`` manifest.
* :func:`train_cross_encoder` -- files in, trained model folder out (``clir-ot train``).
"""
from clir_ot.training.data import (
    DataSpec,
    FoldSplit,
    TrainingData,
    TrainingGroup,
    assert_no_leakage,
    build_groups,
    cut_negatives,
    groups_from_files,
    load_training_data,
    read_groups,
    read_triples,
    split_groups,
    write_groups,
    xquad_fold_split,
)
from clir_ot.training.losses import ListwiseSoftmaxLoss, PairwiseMarginLoss, build_loss
from clir_ot.training.pipeline import train_cross_encoder
from clir_ot.training.streaming import StreamedGroups
from clir_ot.training.selection import drop_unselected_weights, selected_model
from clir_ot.training.trainer import (TRAINING_DTYPES, Trainer, TrainerState, TrainingConfig, TrainingResult,
                                     check_finished_recipe)
from clir_ot.training.validation import MrrValidator

__all__ = [
    "TRAINING_DTYPES",
    "DataSpec",
    "FoldSplit",
    "ListwiseSoftmaxLoss",
    "MrrValidator",
    "PairwiseMarginLoss",
    "StreamedGroups",
    "Trainer",
    "TrainerState",
    "TrainingConfig",
    "TrainingData",
    "TrainingGroup",
    "TrainingResult",
    "assert_no_leakage",
    "build_groups",
    "build_loss",
    "check_finished_recipe",
    "cut_negatives",
    "groups_from_files",
    "load_training_data",
    "read_groups",
    "read_triples",
    "drop_unselected_weights",
    "selected_model",
    "split_groups",
    "train_cross_encoder",
    "write_groups",
    "xquad_fold_split",
]
