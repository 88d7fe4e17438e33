"""Cross-encoder: a transformer reads query and passage together and a head scores the pair.

The head reads one vector of the pair's last-layer states and produces one relevance logit. The
vector (``pooling``) is the first token's state (``first``: ``[CLS]`` for BERT, ``<s>`` for XLM-R, the
usual cross-encoder) or the mean of all the pair's token states (``mean``: the pooling that
multilingual-e5 and other sentence encoders were trained with, so a reranker built on them starts
from representations the encoder already knows how to make). Queries and passages can carry
prefixes (``query_prefix``, ``passage_prefix``: E5's own ``query: `` / ``passage: `` input format).
Two heads are available:

* ``linear``: dropout, then a linear map to one logit;
* ``mlp``: dropout, dense, tanh, dropout, linear -- the layout of XLM-R's classification head and of
  BERT's pooler + classifier, so trained Hugging Face ``*ForSequenceClassification`` rerankers of
  those two families load with their head (see :meth:`CrossEncoderModel.from_pretrained`).

A folder saved by :meth:`CrossEncoderModel.save_pretrained` is a plain Hugging Face encoder folder
plus ``clir_ot_head.safetensors`` and ``clir_ot.json`` (which names the head and pooling).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from clir_ot.errors import ConfigError, ModelLoadError
from clir_ot.io import PathLike
from clir_ot.models.backends import InferencePath, StateRunner, build_runner
from clir_ot.models.folder import read_settings, save_model_folder
from clir_ot.models.encoder_model import EncoderModel, settings_of_kind
from clir_ot.models.loading import MODEL_INPUTS, LoadedEncoder, load_encoder, run_batched

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

KIND = "cross-encoder"  # one of clir_ot.models.folder.MODEL_KINDS
HEAD_FILE = "clir_ot_head.safetensors"
POOLINGS = ("first", "mean")


class LinearHead(nn.Module):
    """Dropout then a linear map from the first token's state (batch, hidden) to one logit (batch, 1)."""

    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(features))


class MlpHead(nn.Module):
    """Dropout, dense + tanh, dropout, linear: (batch, hidden) -> (batch, 1) (XLM-R's classification head)."""

    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(features)))
        return self.out(self.dropout(x))


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "mlp": MlpHead}


def build_head(name: str, hidden_size: int, dropout: float = 0.1, init_std: float = 0.02) -> nn.Module:
    """A freshly initialised head ``name`` (normal(0, ``init_std``) weights, zero biases)."""
    if name not in HEADS:
        raise ConfigError(f"unknown cross-encoder head {name!r}; valid: {', '.join(HEADS)}")
    head = HEADS[name](hidden_size, dropout)
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=init_std)
            nn.init.zeros_(module.bias)
    return head


@dataclass(frozen=True)
class CrossEncoderConfig:
    """Cross-encoder settings.

    Attributes:
        head: the scoring head (:data:`HEADS`).
        pooling: what the head reads: ``first`` (the [CLS] / <s> state) or ``mean`` (the mean of the
            pair's token states, padding excluded).
        max_length: default truncation length of a query-passage pair, special tokens included.
        query_prefix, passage_prefix: text put before every query and passage (E5: ``"query: "``,
            ``"passage: "``); part of the model, so reranking uses what training used.
    """

    head: str = "linear"
    pooling: str = "first"
    max_length: int = 512
    query_prefix: str = ""
    passage_prefix: str = ""

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"unknown cross-encoder head {self.head!r}; valid: {', '.join(HEADS)}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"unknown cross-encoder pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
        if self.max_length < 3:
            raise ConfigError(f"max_length must be at least 3, got {self.max_length}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "head_file": HEAD_FILE, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "cross-encoder settings") -> "CrossEncoderConfig":
        return settings_of_kind(cls, data, KIND, where, fixed={"head_file": HEAD_FILE})


# --------------------------------------------------------------------------------------------------
# Heads of Hugging Face sequence-classification checkpoints

# model family -> (dense weight prefix or None, output layer prefix)
_HF_HEAD_KEYS = {
    "xlm-roberta": ("classifier.dense", "classifier.out_proj"),
    "roberta": ("classifier.dense", "classifier.out_proj"),
    "bert": ("bert.pooler.dense", "classifier"),
}


def _checkpoint_files(loaded: LoadedEncoder) -> list[Path]:
    """The safetensors files of a loaded model (local folder or hub cache), sharded ones included."""
    from huggingface_hub import try_to_load_from_cache

    def find(name: str) -> Path | None:
        if loaded.folder is not None:
            path = loaded.folder / name
            return path if path.is_file() else None
        found = try_to_load_from_cache(loaded.source.location, name)
        return Path(found) if isinstance(found, str) else None

    single = find("model.safetensors")
    if single is not None:
        return [single]
    index = find("model.safetensors.index.json")
    if index is None:
        return []
    shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    files = [find(s) for s in shards]
    return [f for f in files if f is not None]


def _import_hf_head(loaded: LoadedEncoder) -> nn.Module | None:
    """The trained head of a ``BertForSequenceClassification``/``XLMRobertaForSequenceClassification``
    checkpoint as an ``mlp`` head, or ``None`` if the checkpoint has no such head.

    One label: its logit. Two labels (not relevant, relevant): ``logit[1] - logit[0]``, which ranks
    as the softmax probability of "relevant" does.
    """
    from safetensors import SafetensorError, safe_open

    config = loaded.model.config
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return None
    keys = _HF_HEAD_KEYS.get(config.model_type)
    num_labels = int(getattr(config, "num_labels", 0))
    if keys is None or num_labels not in (1, 2):
        logger.warning(
            "%s is a %s with %d labels; only BERT/RoBERTa/XLM-R heads with 1 or 2 labels are imported",
            loaded.source.location, architectures[0], num_labels,
        )
        return None
    wanted = [f"{prefix}.{p}" for prefix in keys for p in ("weight", "bias")]
    tensors: dict[str, torch.Tensor] = {}
    for file in _checkpoint_files(loaded):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in set(wanted).intersection(handle.keys()):
                    tensors[key] = handle.get_tensor(key)
        except SafetensorError as err:
            raise ModelLoadError(f"{file}: unreadable weights, corrupt or cut off ({err})") from None
    if len(tensors) != len(wanted):
        logger.warning("%s: classification head weights %s not found", loaded.source.location,
                       sorted(set(wanted) - set(tensors)))
        return None
    dense, out = keys
    head = MlpHead(config.hidden_size, getattr(config, "hidden_dropout_prob", 0.1))
    weight, bias = tensors[f"{out}.weight"], tensors[f"{out}.bias"]
    if num_labels == 2:
        weight, bias = weight[1:] - weight[:1], bias[1:] - bias[:1]
        logger.info("two-label reranker: score = logit(label 1) - logit(label 0)")
    state = {"dense.weight": tensors[f"{dense}.weight"], "dense.bias": tensors[f"{dense}.bias"],
             "out.weight": weight, "out.bias": bias}
    head.load_state_dict({k: v.float() for k, v in state.items()})
    return head


def _with_input_settings(
    config: CrossEncoderConfig, trained: bool, where: str, **wanted: str | None
) -> CrossEncoderConfig:
    """``config`` with the pooling/prefix settings asked for; a trained head keeps its own, and asking
    it for others is an error (its scores were learnt on those inputs)."""
    asked = {k: v for k, v in wanted.items() if v is not None}
    if trained:
        differ = {k: v for k, v in asked.items() if getattr(config, k) != v}
        if differ:
            shown = ", ".join(f"{k}={getattr(config, k)!r} (asked {v!r})" for k, v in differ.items())
            raise ConfigError(f"{where} was trained with {shown}; leave these settings unset to use its own")
        return config
    return dataclasses.replace(config, **asked) if asked else config


# --------------------------------------------------------------------------------------------------


class CrossEncoderModel(EncoderModel):
    """A transformer encoder with a scoring head on the first token: (query, passage) -> one logit.

    Args:
        encoder: a Hugging Face encoder (``AutoModel``), e.g. from :func:`load_encoder`.
        tokenizer: its tokenizer.
        config: head and truncation settings (default :class:`CrossEncoderConfig`).
        head: the head module; default a freshly initialised ``config.head``.
        name_or_path: where the encoder came from, for manifests (default: its config's ``_name_or_path``).

    The module starts in the encoder's train/eval mode; :meth:`from_pretrained` gives eval mode.
    """

    def __init__(
        self,
        encoder: "PreTrainedModel",
        tokenizer: "PreTrainedTokenizerBase",
        config: CrossEncoderConfig | None = None,
        head: nn.Module | None = None,
        name_or_path: str | None = None,
    ):
        super().__init__(encoder, tokenizer, config or CrossEncoderConfig(), name_or_path)
        hidden = int(encoder.config.hidden_size)
        if head is None:
            head = build_head(self.config.head, hidden, getattr(encoder.config, "hidden_dropout_prob", 0.1),
                              getattr(encoder.config, "initializer_range", 0.02))
        self.head = head.to(device=next(encoder.parameters()).device, dtype=next(encoder.parameters()).dtype)
        self.train(encoder.training)  # start in the encoder's mode (eval after from_pretrained)

    # ---------------------------------------------------------------------------------------------
    # construction and persistence

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: PathLike | None = None,
        *,
        head: str | None = None,
        max_length: int | None = None,
        pooling: str | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> "CrossEncoderModel":
        """Load a cross-encoder from a folder, a hub name, or ``None`` for the offline default's encoder.

        * A folder saved by :meth:`save_pretrained` gets its trained head back (``head``, if given,
          must match it).
        * A BERT or (XLM-)RoBERTa ``*ForSequenceClassification`` checkpoint with one or two labels
          (a trained reranker) gets its classification head as an ``mlp`` head.
        * Any other encoder gets a freshly initialised ``head`` (default ``linear``), with a warning.

        ``pooling``, ``query_prefix`` and ``passage_prefix`` set up a new head's input (defaults:
        ``first``, no prefixes); for a trained cross-encoder they must match what it was trained with
        (or be left ``None``).
        """
        loaded = load_encoder(name_or_path, device=device, dtype=dtype)
        where = f"{loaded.source.location}/clir_ot.json"
        settings = read_settings(loaded.folder) if loaded.folder is not None else None
        if settings is not None and settings.get("kind") == KIND:
            config = CrossEncoderConfig.from_dict(settings, where)
            if head is not None and head != config.head:
                raise ConfigError(f"{loaded.source.location} has a trained {config.head!r} head, not {head!r}")
            head_path = loaded.folder / HEAD_FILE
            if not head_path.is_file():
                raise ModelLoadError(f"cross-encoder folder {loaded.folder} lacks its head weights {HEAD_FILE}")
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            module = HEADS[config.head](int(loaded.model.config.hidden_size))
            try:
                state = load_file(str(head_path))
            except SafetensorError as err:
                raise ModelLoadError(f"{head_path}: unreadable head weights, corrupt or cut off ({err})") from None
            try:
                module.load_state_dict(state)
            except RuntimeError as err:
                raise ModelLoadError(f"{head_path}: head weights do not fit a {config.head!r} head ({err})") from None
        else:
            imported = _import_hf_head(loaded)
            if imported is not None:
                if head not in (None, "mlp"):
                    raise ConfigError(f"{loaded.source.location} has a trained 'mlp' head, not {head!r}")
                config, module = CrossEncoderConfig(head="mlp"), imported
                logger.info("imported the classification head of %s", loaded.source.location)
            else:
                config, module = CrossEncoderConfig(head=head or "linear"), None
                logger.warning(
                    "%s has no cross-encoder head: the %r scoring head is freshly initialised and must be "
                    "trained before its scores mean anything", loaded.source.location, config.head,
                )
        config = _with_input_settings(config, module is not None, loaded.source.location, pooling=pooling,
                                      query_prefix=query_prefix, passage_prefix=passage_prefix)
        if max_length is not None:
            config = dataclasses.replace(config, max_length=max_length)
        return cls(loaded.model, loaded.tokenizer, config, module, name_or_path=loaded.source.location)

    def save_pretrained(self, folder: PathLike) -> Path:
        """Write encoder (safetensors), config, tokenizer, head and ``clir_ot.json`` to ``folder`` atomically."""
        from safetensors.torch import save_file

        head_state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        return save_model_folder(
            folder, self.encoder, self.tokenizer, self.config.to_dict(),
            extra=lambda tmp: save_file(head_state, str(tmp / HEAD_FILE)),
        )

    # ---------------------------------------------------------------------------------------------
    # computation

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Score a tokenized batch of pairs: (batch, seq) ids and mask -> (batch,) logits (with gradients)."""
        return self.score_states(self.encoder_states(input_ids, attention_mask, token_type_ids), attention_mask)

    def score_states(self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, seq, dim) last-layer states -> (batch,) float32 logits from the pooled state.

        ``first`` pooling reads the first token's state; ``mean`` pooling averages the states of the
        tokens that ``attention_mask`` (batch, seq) marks (required for ``mean``), in float32.

        The head runs in float32 even under bf16/fp16 autocast: a bf16 logit has ~3 significant
        digits, and a reranker's scores for one query's candidates often differ by less than that
        (measured: the XQuAD teacher's top-10 logits span ~0.005 on Thai; bf16 tied all 10 for
        120 of 120 questions); the encoder keeps the low-precision speed. Every scoring path
        (reranking, teacher training, score distillation) goes through here.
        """
        with torch.autocast(last_hidden_state.device.type, enabled=False):
            if self.config.pooling == "first":
                pooled = last_hidden_state[:, 0].float()
            else:
                if attention_mask is None:
                    raise ConfigError("mean pooling needs the attention mask of the pairs")
                mask = attention_mask.to(torch.float32).unsqueeze(-1)
                pooled = (last_hidden_state.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1)

    def pair_texts(self, queries: Sequence[str], passages: Sequence[str]) -> tuple[list[str], list[str]]:
        """The texts the encoder reads for ``(query, passage)`` pairs: each with its prefix, if any."""
        q, p = self.config.query_prefix, self.config.passage_prefix
        return ([q + t for t in queries] if q else list(queries)), ([p + t for t in passages] if p else list(passages))

    def tokenize(
        self, queries: Sequence[str], passages: Sequence[str], *, max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenize query-passage pairs (longest-first truncation, padded) into tensors for :meth:`forward`."""
        if len(queries) != len(passages):
            raise ConfigError(f"{len(queries)} queries but {len(passages)} passages")
        queries, passages = self.pair_texts(queries, passages)
        batch = self.tokenizer(queries, passages, truncation="longest_first",
                               max_length=self.effective_max_length(max_length), padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items() if k in MODEL_INPUTS}

    def predict(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 32,
        max_length: int | None = None,
        show_progress: bool | None = None,
        dtype: str | torch.dtype | None = None,
        runner: StateRunner | None = None,
    ) -> np.ndarray:
        """Score ``(query, passage)`` pairs: a float32 array of logits, one per pair, in input order.

        Pairs are batched by length (dynamic padding) under ``torch.inference_mode`` with dropout off.
        ``dtype`` (``fp32``, ``fp16``, ``bf16``) is the compute precision (autocast). ``runner``, if
        given (:meth:`runner`), computes the encoder's states on its own inference path instead, at its
        own precision (then ``dtype`` must be left unset); pooling and head stay in float32 here.
        """
        pairs = list(pairs)
        limit = self.effective_max_length(max_length)

        def tokenize(positions: Sequence[int]) -> dict[str, list[list[int]]]:
            queries, passages = self.pair_texts([pairs[i][0] for i in positions], [pairs[i][1] for i in positions])
            return self.tokenizer(queries, passages, truncation="longest_first", max_length=limit)

        self.check_runner_precision("predict", runner, dtype)
        forward = None
        if runner is not None:

            def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
                return self.score_states(runner(batch), batch["attention_mask"].to(self.device))

        return run_batched(self, np.zeros(len(pairs), dtype=np.float32), tokenize, batch_size=batch_size,
                           pad_token_id=self.tokenizer.pad_token_id, show_progress=show_progress, dtype=dtype,
                           desc="scoring", forward=forward)

    def runner(self, path: InferencePath) -> StateRunner:
        """A :class:`~clir_ot.models.backends.StateRunner` of this model's encoder on ``path``, for
        :meth:`predict` (``onnx`` / ``openvino`` convert the encoder once, here, tracing a short pair)."""
        return build_runner(self.encoder, path, self.tokenize(["query"], ["a passage to trace the graph with"]))

    def score(self, query: str, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        """Score ``texts`` against one ``query``; keyword arguments as for :meth:`predict`."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        return self.predict([(query, t) for t in texts], **kwargs)
