"""Bi-encoder: one transformer embeds queries and passages separately into one vector space.

Used for dense first-stage retrieval and as the student/teacher side of OT distillation. A text's
embedding is the mean of its last-layer token states over the attention mask (``pooling="mean"``)
or the first token's state (``"cls"``), optionally L2-normalised so that a dot product is a cosine.
E5 models also need their ``query: `` / ``passage: `` prefixes; they are part of the settings saved in
the folder's ``clir_ot.json`` (the offline default, multilingual-e5-small, has all of that set).

Example::

    model = BiEncoderModel.from_pretrained()          # the prepared offline default
    q = model.encode_queries(["Who wrote Faust?"])    # (1, 384) float32
    p = model.encode_passages(["Goethe schrieb den Faust."])
    score = q @ p.T
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clir_ot.errors import ConfigError
from clir_ot.io import PathLike
from clir_ot.models.backends import InferencePath, StateRunner, build_runner
from clir_ot.models.folder import read_settings, save_model_folder
from clir_ot.models.encoder_model import EncoderModel, settings_of_kind
from clir_ot.models.loading import MODEL_INPUTS, load_encoder, run_batched

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

KIND = "bi-encoder"  # one of clir_ot.models.folder.MODEL_KINDS
POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class BiEncoderConfig:
    """How a bi-encoder turns token states into a text embedding.

    Attributes:
        pooling: ``mean`` (masked mean of the last layer) or ``cls`` (first token).
        normalize: L2-normalise embeddings.
        query_prefix: prepended to every query (E5: ``"query: "``).
        passage_prefix: prepended to every passage (E5: ``"passage: "``).
        max_length: default truncation length in tokens, special tokens included.
    """

    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int = 512

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
        if self.max_length < 2:
            raise ConfigError(f"max_length must be at least 2, got {self.max_length}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "bi-encoder settings") -> "BiEncoderConfig":
        return settings_of_kind(cls, data, KIND, where)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states ``hidden`` (batch, seq, dim) into (batch, dim) with ``mean`` or ``cls`` pooling."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")


class BiEncoderModel(EncoderModel):
    """A transformer encoder with pooling, optional normalisation and query/passage prefixes.

    Args:
        encoder: a Hugging Face encoder (``AutoModel``), e.g. from :func:`load_encoder`.
        tokenizer: its tokenizer.
        config: pooling/normalisation/prefix settings (default :class:`BiEncoderConfig`).
        name_or_path: where the encoder came from, for manifests (default: its config's ``_name_or_path``).

    The module starts in the encoder's train/eval mode; :meth:`from_pretrained` gives eval mode.
    """

    def __init__(
        self,
        encoder: "PreTrainedModel",
        tokenizer: "PreTrainedTokenizerBase",
        config: BiEncoderConfig | None = None,
        name_or_path: str | None = None,
    ):
        super().__init__(encoder, tokenizer, config or BiEncoderConfig(), name_or_path)
        self.train(encoder.training)  # start in the encoder's mode (eval after from_pretrained)

    # ---------------------------------------------------------------------------------------------
    # construction and persistence

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: PathLike | None = None,
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> "BiEncoderModel":
        """Load a bi-encoder from a hub name, a folder, or ``None`` for the offline default.

        Settings come from the folder's ``clir_ot.json`` when it has one (defaults otherwise: mean
        pooling, normalised, no prefixes); keyword arguments that are not ``None`` override them.
        """
        loaded = load_encoder(name_or_path, device=device, dtype=dtype)
        settings = read_settings(loaded.folder) if loaded.folder is not None else None
        if settings is not None and settings.get("kind", KIND) != KIND:
            logger.warning(
                "%s holds a %s; using its encoder as a bi-encoder with default settings",
                loaded.source.location, settings.get("kind"),
            )
            settings = None
        config = BiEncoderConfig.from_dict(settings, f"{loaded.folder}/clir_ot.json") if settings else BiEncoderConfig()
        overrides = dict(pooling=pooling, normalize=normalize, query_prefix=query_prefix,
                         passage_prefix=passage_prefix, max_length=max_length)
        config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
        return cls(loaded.model, loaded.tokenizer, config, name_or_path=loaded.source.location)

    def save_pretrained(self, folder: PathLike) -> Path:
        """Write encoder (safetensors), config, tokenizer and ``clir_ot.json`` to ``folder`` atomically."""
        return save_model_folder(folder, self.encoder, self.tokenizer, self.config.to_dict())

    # ---------------------------------------------------------------------------------------------
    # computation

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.encoder.config.hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embed a tokenized batch: (batch, seq) ids and mask -> (batch, dim) embeddings (with gradients)."""
        embeddings = pool(self.encoder_states(input_ids, attention_mask, token_type_ids), attention_mask,
                          self.config.pooling)
        if self.config.normalize:
            embeddings = F.normalize(embeddings, p=2, dim=-1)
        return embeddings

    def tokenize(self, texts: Sequence[str], *, prefix: str = "", max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenize (with ``prefix``), truncate and pad ``texts`` into tensors for :meth:`forward`."""
        batch = self.tokenizer(
            [prefix + t for t in texts], truncation=True, max_length=self.effective_max_length(max_length),
            padding=True, return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items() if k in MODEL_INPUTS}

    def encode(
        self,
        texts: Sequence[str],
        *,
        prefix: str = "",
        batch_size: int = 32,
        max_length: int | None = None,
        show_progress: bool | None = None,
        dtype: str | torch.dtype | None = None,
        runner: StateRunner | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` (each preceded by ``prefix``) into a float32 array of shape (len(texts), dim).

        Texts are batched by length (dynamic padding) under ``torch.inference_mode`` with dropout off;
        rows come back in the input order. ``dtype`` (``fp32``, ``fp16``, ``bf16``) is the compute
        precision (autocast); the result is float32 in every case. ``runner`` (:meth:`runner`), if
        given, computes the token states on its inference path at its own precision (leave ``dtype``
        unset); pooling and normalisation stay in float32 here.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        limit = self.effective_max_length(max_length)

        def tokenize(positions: Sequence[int]) -> dict[str, list[list[int]]]:
            return self.tokenizer([prefix + texts[i] for i in positions], truncation=True, max_length=limit)

        self.check_runner_precision("encode", runner, dtype)
        forward = None
        if runner is not None:

            def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
                embeddings = pool(runner(batch), batch["attention_mask"].to(self.device), self.config.pooling)
                return F.normalize(embeddings, p=2, dim=-1) if self.config.normalize else embeddings

        return run_batched(self, np.zeros((len(texts), self.dim), dtype=np.float32), tokenize,
                           batch_size=batch_size, pad_token_id=self.tokenizer.pad_token_id,
                           show_progress=show_progress, dtype=dtype, desc="encoding", forward=forward)

    def runner(self, path: InferencePath) -> StateRunner:
        """A :class:`~clir_ot.models.backends.StateRunner` of this model's encoder on ``path``, for
        :meth:`encode` (``onnx`` / ``openvino`` convert the encoder once, here)."""
        return build_runner(self.encoder, path, self.tokenize(["a text to trace the graph with"]))

    def encode_queries(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        """Embed queries (with the query prefix): float32 array (len(texts), dim); ``options`` as :meth:`encode`'s."""
        return self.encode(texts, prefix=self.config.query_prefix, **options)

    def encode_passages(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        """Embed passages (with the passage prefix): float32 array (len(texts), dim); ``options`` as :meth:`encode`'s."""
        return self.encode(texts, prefix=self.config.passage_prefix, **options)
