"""Distillation from the English teacher to multilingual students with bitext (OPTICAL and baselines).

* :mod:`clir_ot.distill.bitext` -- :class:`BitextPair`; readers for Tatoeba's two-file layout
  (:func:`tatoeba_pairs`, :func:`read_parallel_files`), TSV and JSONL (:func:`read_bitext`); the held-out
  slice (:func:`split_bitext`) and the shuffled-bitext control (:func:`shuffled_control`); XQuAD's
  in-domain bitext (:func:`xquad_paragraph_pairs`, and :func:`xquad_query_bitext` with the training
  folds' questions) and the leakage guard over bitext (:func:`check_bitext_leakage`).
* :mod:`clir_ot.distill.masks` -- :func:`content_token_mask`: special, padding and prefix tokens get no mass.
* :mod:`clir_ot.distill.losses` -- :class:`OTAlignmentLoss` (``ot``), :class:`SentenceMSELoss`
  (``mse-sent``), :class:`TokenMSELoss` (``mse-token``), :class:`ScoreDistillationLoss` (``score-kd``),
  and :class:`CombinedLoss` (explicit weights, every term's magnitude logged).
"""
from clir_ot.distill.bitext import (
    BitextFiles,
    BitextPair,
    check_bitext_leakage,
    discover_bitext,
    find_bitext,
    iter_bitext,
    iter_parallel_files,
    read_bitext,
    read_parallel_files,
    shuffled_control,
    split_bitext,
    take_pairs,
    tatoeba_files,
    tatoeba_pairs,
    write_bitext,
    xquad_paragraph_pairs,
    xquad_query_bitext,
)
from clir_ot.distill.losses import (
    DISTILL_LOSSES,
    CombinedLoss,
    OTAlignmentLoss,
    ScoreDistillationLoss,
    SentenceMSELoss,
    TokenMSELoss,
    build_distill_loss,
)
from clir_ot.distill.masks import content_token_mask

from clir_ot.distill import bitext as _bitext

__all__ = [
    *_bitext.__all__,
    "DISTILL_LOSSES",
    "CombinedLoss",
    "OTAlignmentLoss",
    "ScoreDistillationLoss",
    "SentenceMSELoss",
    "TokenMSELoss",
    "build_distill_loss",
    "content_token_mask",
]
