"""What the bi-encoder and the cross-encoder are both made of: a Hugging Face encoder, its tokenizer
and a settings record (a frozen dataclass with a ``kind`` and a default ``max_length``), saved in a
model folder's ``clir_ot.json``.

:class:`EncoderModel` holds the three, the device, the truncation length and the encoder's forward
pass; :func:`settings_of_kind` reads a settings record back from its JSON, refusing a folder of the
other kind. :class:`~clir_ot.models.BiEncoderModel` pools the token states into an embedding,
:class:`~clir_ot.models.CrossEncoderModel` scores them with a head.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, TypeVar

import torch
from torch import nn

from clir_ot.errors import ConfigError
from clir_ot.models.backends import StateRunner
from clir_ot.models.loading import max_sequence_length, parameters_digest
from clir_ot.settings import settings_from_dict

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["EncoderModel", "settings_of_kind"]

Settings = TypeVar("Settings")


def settings_of_kind(cls: type[Settings], data: Mapping[str, Any], kind: str, where: str,
                     fixed: Mapping[str, str] | None = None) -> Settings:
    """``cls`` from a settings object of ``kind`` (``data["kind"]``, assumed when absent); ``fixed``
    names entries that must hold one value (e.g. the head's file name). Anything else is a
    :class:`~clir_ot.errors.ConfigError` naming ``where``, as unknown keys are."""
    data = dict(data)
    found = data.pop("kind", kind)
    if found != kind:
        raise ConfigError(f"{where}: kind is {found!r}, expected {kind!r}")
    for name, value in (fixed or {}).items():
        given = data.pop(name, value)
        if given != value:
            raise ConfigError(f"{where}: {name} {given!r} is not supported (expected {value})")
    return settings_from_dict(cls, data, where)


class EncoderModel(nn.Module):
    """A Hugging Face encoder, its tokenizer and the model's settings (``config``, with ``max_length``).

    Args:
        encoder: a Hugging Face encoder (``AutoModel``), e.g. from :func:`~clir_ot.models.load_encoder`.
        tokenizer: its tokenizer.
        config: the subclass's settings record.
        name_or_path: where the encoder came from, for manifests (default: its config's ``_name_or_path``).

    Subclasses finish their own construction, then call ``self.train(encoder.training)`` so the
    module starts in the encoder's mode (eval after ``from_pretrained``).
    """

    def __init__(self, encoder: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", config: Any,
                 name_or_path: str | None = None):
        super().__init__()
        self.name_or_path = name_or_path or str(getattr(encoder.config, "_name_or_path", "") or "")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def parameters_digest(self) -> str:
        """SHA-256 of the model's parameters and buffers (:func:`~clir_ot.models.loading.parameters_digest`):
        what a resumed job checks it still has the same model by, since a folder can be retrained in place."""
        return parameters_digest(self)

    def effective_max_length(self, max_length: int | None = None) -> int:
        """The truncation length used for ``max_length`` (default: the settings'), capped at what the
        tokenizer and the position table allow (:func:`~clir_ot.models.loading.max_sequence_length`)."""
        return min(max_length or self.config.max_length, max_sequence_length(self.encoder, self.tokenizer))

    def encoder_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The encoder's last-layer states (batch, seq, dim) of a tokenized batch (with gradients)."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.encoder(**inputs).last_hidden_state

    @staticmethod
    def check_runner_precision(what: str, runner: StateRunner | None, dtype: Any) -> None:
        """A runner (an inference path) computes at its own precision: refuse a ``dtype`` beside it."""
        if runner is not None and dtype is not None:
            raise ConfigError(f"{what}: runner {runner.path} sets the precision; leave dtype unset")
