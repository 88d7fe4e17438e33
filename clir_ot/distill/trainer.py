"""Distillation training: a student initialised from the teacher learns, from bitext alone, to
represent a foreign text as the frozen teacher represents its English original.

One optimizer step, for a micro-batch of bitext pairs :math:`(e_b, f_b)`:

* the frozen teacher T encodes the English sides, the student S the foreign sides (``passage``
  mode: each text alone as the passage segment; ``query`` mode: an English training query q
  before both, T sees (q, e), S sees (q, f), and only the passage tokens take part);
* the distillation term ``L_distill`` is one of :data:`DISTILL_METHODS`: ``ot`` (OPTICAL: the Frobenius
  product of the entropic transport plan and the cosine cost between T's and S's content tokens),
  ``mse-sent``, ``mse-token`` or ``score-kd`` (see :mod:`clir_ot.distill.losses`), on the layers in
  ``layers`` (per-layer losses summed);
* with ``rank_weight > 0`` (cross-encoders) the student keeps training on ``rank_batch_size``
  English relevance groups per step with the listwise loss, so it does not forget matching;
* the total is ``distill_weight * L_distill + rank_weight * L_rank (+ score_weight * L_score)``
  with explicit weights; every term's magnitude and the time spent in the distillation loss are
  logged (``log.jsonl``, key ``terms``);
* with ``distill_weight`` and ``score_weight`` 0 (:attr:`DistillationConfig.rank_only`, a study's
  no-bitext control) a step is the rank term alone: the bitext batches only set how many steps there
  are, no distillation term is computed, and there is no held-out bitext loss to select by (the
  final model is the student).

All sequences of a step go through the student in one forward pass (one DDP forward per backward).
Held-out bitext gives the validation loss (lower is better) that picks ``best/`` and stops early.
Checkpoints, exact ``--resume``, torchrun and the manifest are :class:`~clir_ot.training.Trainer`'s.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from clir_ot.distill.bitext import BitextPair
from clir_ot.distill.losses import CombinedLoss, build_distill_loss
from clir_ot.distill.masks import content_token_mask
from clir_ot.errors import ConfigError, ConsistencyError
from clir_ot.models.bi_encoder import pool
from clir_ot.models.loading import compute_precision, parameters_digest
from clir_ot.settings import check_setting_types, derived_rng, settings_from_dict
from clir_ot.training.data import TrainingGroup
from clir_ot.training.losses import build_loss
from clir_ot.training.trainer import Trainer, TrainingConfig, freeze_word_embeddings

logger = logging.getLogger(__name__)

__all__ = ["DistillationConfig", "DistillationTrainer", "DISTILL_METHODS", "MODEL_TYPES", "ENCODING_MODES"]

#: Distillation objectives (``none``, the zero-shot teacher, needs no training).
DISTILL_METHODS = ("ot", "mse-sent", "mse-token", "score-kd")
MODEL_TYPES = ("cross-encoder", "bi-encoder")
ENCODING_MODES = ("passage", "query")


@dataclass(frozen=True)
class DistillationConfig:
    """The distillation settings (the optimizer, batch, steps, precision... are a :class:`TrainingConfig`).

    Attributes:
        method: the distillation objective, one of :data:`DISTILL_METHODS`.
        model_type: ``cross-encoder`` (the reranker) or ``bi-encoder`` (the dense first stage).
        mode: ``passage`` or ``query`` (an English training query before both sides; ``score-kd``
            always uses it, since a score needs a query).
        layers: hidden layers whose token states are aligned (``-1``: the last; 0 is the embeddings).
        epsilon, epsilon_mode, marginal_penalty, ot_max_iter, ot_tol, centre: the OT problem
            (:class:`~clir_ot.distill.OTAlignmentLoss`); ``marginal_penalty`` null is balanced OT.
        distill_weight, rank_weight, score_weight: the weights of the terms (explicit, see
            :class:`~clir_ot.distill.CombinedLoss`); ``score_weight`` adds score distillation to
            another method.
        rank_batch_size: English relevance groups per step for the rank term.
        freeze_embeddings: keep the word-embedding matrix fixed (most of a multilingual model's
            parameters; freezing saves optimizer time and memory and keeps unseen words where they were).
        shuffle_bitext: train on the shuffled-bitext control (deliberately misaligned pairs).
        valid_fraction: bitext held out for the validation loss (by English text).
        patience: stop after this many validations without improvement (``null``: never).
    """

    method: str = "ot"
    model_type: str = "cross-encoder"
    mode: str = "passage"
    layers: tuple[int, ...] = (-1,)
    epsilon: float = 0.1
    epsilon_mode: str = "relative"
    marginal_penalty: float | None = None
    ot_max_iter: int = 500
    ot_tol: float | None = 1e-3
    centre: bool = False
    distill_weight: float = 1.0
    rank_weight: float = 0.0
    score_weight: float = 0.0
    rank_batch_size: int = 2
    freeze_embeddings: bool = True
    shuffle_bitext: bool = False
    valid_fraction: float = 0.1
    patience: int | None = None

    def __post_init__(self) -> None:
        check_setting_types(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if self.method not in DISTILL_METHODS:
            hint = " ('none' is the teacher itself: nothing to train)" if self.method == "none" else ""
            raise ConfigError(f"unknown distillation method {self.method!r}; valid: {', '.join(DISTILL_METHODS)}{hint}")
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(f"unknown model type {self.model_type!r}; valid: {', '.join(MODEL_TYPES)}")
        if self.mode not in ENCODING_MODES:
            raise ConfigError(f"unknown encoding mode {self.mode!r}; valid: {', '.join(ENCODING_MODES)}")
        layers = self.layers
        if isinstance(layers, int) and not isinstance(layers, bool):
            layers = (layers,)
        if not isinstance(layers, (list, tuple)) or not layers or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in layers):
            raise ConfigError(f"layers must be a non-empty list of layer numbers, got {self.layers!r}")
        object.__setattr__(self, "layers", tuple(layers))
        for name in ("distill_weight", "rank_weight", "score_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        if self.distill_weight == 0 and self.rank_weight == 0 and self.score_weight == 0:
            raise ConfigError("all loss weights are 0: nothing to train")
        if not (isinstance(self.epsilon, (int, float)) and self.epsilon > 0):
            raise ConfigError(f"epsilon must be positive, got {self.epsilon!r}")
        if self.marginal_penalty is not None and not self.marginal_penalty > 0:
            raise ConfigError(f"marginal_penalty must be positive or null, got {self.marginal_penalty!r}")
        if not isinstance(self.rank_batch_size, int) or self.rank_batch_size < 1:
            raise ConfigError(f"rank_batch_size must be a positive integer, got {self.rank_batch_size!r}")
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"valid_fraction must be in (0, 1), got {self.valid_fraction!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError(f"patience must be a positive integer or null, got {self.patience!r}")
        if self.model_type == "bi-encoder" and self.mode == "query":
            raise ConfigError("query mode applies to cross-encoders; a dense student encodes passages alone "
                              "(use mode 'passage')")
        if self.model_type == "bi-encoder" and self.rank_weight > 0:
            raise ConfigError("rank_weight applies to cross-encoder students; a dense student keeps the frozen "
                              "query encoder, set rank_weight to 0")

    @property
    def rank_only(self) -> bool:
        """The no-bitext control: ``distill_weight`` and ``score_weight`` 0, so a step is the ranking
        term alone (the bitext only sets the number of steps; no distillation term is computed)."""
        return self.distill_weight == 0 and self.score_weight == 0

    @property
    def uses_queries(self) -> bool:
        """Whether a step needs English queries (query mode, score distillation)."""
        return self.mode == "query" or self.method == "score-kd" or self.score_weight > 0

    @property
    def name(self) -> str:
        """The method's name in tables: ``ot``, ``mse-sent``, ... with ``-shuffled`` for the control."""
        return self.method + ("-shuffled" if self.shuffle_bitext else "")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["layers"] = list(self.layers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "distillation config") -> "DistillationConfig":
        return settings_from_dict(cls, dict(data), where)


def split_settings(data: Mapping[str, Any], where: str) -> tuple[TrainingConfig, DistillationConfig]:
    """Split one flat mapping of settings into the training and the distillation settings.

    A key that neither knows is a :class:`ConfigError` listing both sets of names.
    """
    distill_keys = {f.name for f in dataclasses.fields(DistillationConfig)}
    # a name both know (freeze_embeddings) is the distillation's: a student's training keeps its own
    training_keys = {f.name for f in dataclasses.fields(TrainingConfig)} - distill_keys
    unknown = sorted(set(data) - training_keys - distill_keys)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; training settings: "
                          f"{', '.join(sorted(training_keys))}; distillation settings: {', '.join(sorted(distill_keys))}")
    training = TrainingConfig.from_dict({k: v for k, v in data.items() if k in training_keys}, where)
    distill = DistillationConfig.from_dict({k: v for k, v in data.items() if k in distill_keys}, where)
    return training, distill


def bitext_fingerprint(pairs: Sequence[BitextPair]) -> str:
    """SHA-256 of the pairs' texts in order (a pair's own query too, when it has one)."""
    digest = hashlib.sha256()
    for pair in pairs:
        query = b"" if pair.query is None else pair.query.encode("utf-8") + b"\t"
        digest.update(query + pair.english.encode("utf-8") + b"\t" + pair.foreign.encode("utf-8") + b"\n")
    return digest.hexdigest()


class StudentForDistillation(nn.Module):
    """The student behind one forward call: token states of the chosen layers, and scores.

    ``forward(input_ids, attention_mask)`` returns ``(states, scores)``: ``states`` a list of
    ``(batch, length, dim)`` hidden states, one per layer in ``layers``; ``scores`` the
    cross-encoder's logits ``(batch,)`` or the bi-encoder's pooled embeddings ``(batch, dim)``.
    Wrapping keeps one DDP forward per step; :attr:`student` is the model that gets saved.
    """

    def __init__(self, student: nn.Module, layers: Sequence[int]):
        super().__init__()
        self.student = student
        self.layers = tuple(layers)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return encode_states(self.student, self.layers, input_ids, attention_mask, token_type_ids)


def encode_states(model: nn.Module, layers: Sequence[int], input_ids, attention_mask, token_type_ids=None):
    """``(states per layer, scores or embeddings)`` of a cross-encoder or bi-encoder."""
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        inputs["token_type_ids"] = token_type_ids
    out = model.encoder(**inputs, output_hidden_states=True)
    hidden = out.hidden_states
    for layer in layers:
        if not -len(hidden) <= layer < len(hidden):
            raise ConfigError(f"layer {layer} does not exist: the model has {len(hidden) - 1} layers "
                              f"(hidden states 0..{len(hidden) - 1}, or -1 for the last)")
    states = [hidden[layer] for layer in layers]
    if hasattr(model, "score_states"):
        scores = model.score_states(out.last_hidden_state, attention_mask)
    else:
        scores = pool(out.last_hidden_state, attention_mask, model.config.pooling)
        if model.config.normalize:
            scores = F.normalize(scores, p=2, dim=-1)
    return states, scores


class DistillationTrainer(Trainer):
    """Distil ``student`` from the frozen ``teacher`` on bitext pairs (see the module docstring).

    Args:
        student: a :class:`~clir_ot.models.CrossEncoderModel` or :class:`~clir_ot.models.BiEncoderModel`
            initialised from the teacher (same tokenizer and hidden size).
        teacher: the frozen teacher (same type).
        train_pairs, valid_pairs: bitext (already shuffled for the control).
        config: optimizer, batch (bitext pairs per micro-batch), steps, precision, checkpoints.
        distill: :class:`DistillationConfig`.
        queries: English queries for ``query`` mode and score distillation (training queries only).
        rank_groups: English relevance groups for the rank term (``rank_weight > 0``).
        other keyword arguments: as :class:`~clir_ot.training.Trainer`.
    """

    kind = "distillation"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        train_pairs: Sequence[BitextPair],
        config: TrainingConfig,
        distill: DistillationConfig,
        output,
        *,
        valid_pairs: Sequence[BitextPair] = (),
        queries: Sequence[str] = (),
        rank_groups: Sequence[TrainingGroup] = (),
        **kwargs: Any,
    ):
        self.distill = distill
        self.valid_pairs = list(valid_pairs)
        self.queries = list(queries)
        self.rank_groups = list(rank_groups)
        own = [p.query is not None for p in list(train_pairs) + self.valid_pairs]
        if any(own) and not distill.uses_queries and not distill.rank_only:
            raise ConfigError(f"the bitext pairs carry their own English questions (XQuAD query bitext), which "
                              f"{distill.method} in {distill.mode} mode would ignore: use mode 'query' or method "
                              "'score-kd' (or paragraph pairs without questions for passage mode)")
        if distill.uses_queries and not distill.rank_only and not self.queries and not all(own):
            raise ConfigError(f"{distill.method} in {distill.mode} mode needs English training queries "
                              "(give rank/query data: a collection or groups file)")
        if distill.rank_weight > 0 and not self.rank_groups:
            raise ConfigError("rank_weight > 0 needs English relevance groups (a collection or groups file)")
        if type(student) is not type(teacher):
            raise ConfigError(f"student ({type(student).__name__}) and teacher ({type(teacher).__name__}) must be "
                              "the same kind of model")
        if student.tokenizer.get_vocab() != teacher.tokenizer.get_vocab():
            raise ConsistencyError("student and teacher use different tokenizers; initialise the student from the teacher")
        if config.freeze_embeddings:
            raise ConfigError("a student's embeddings are frozen by the distillation settings' freeze_embeddings "
                              "(DistillationConfig), not by the TrainingConfig's")
        if distill.freeze_embeddings:
            freeze_word_embeddings(student)
        wrapper = StudentForDistillation(student, distill.layers)
        kwargs.setdefault("metric", "valid_loss")
        kwargs.setdefault("greater_is_better", False)
        kwargs.setdefault("patience", distill.patience)
        super().__init__(wrapper, train_pairs, config, output, **kwargs)
        self.teacher = teacher.to(self.device).eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)
        self._teacher_digest = parameters_digest(self.teacher)
        options: dict[str, Any] = {}
        if distill.method == "ot":
            options = dict(epsilon=distill.epsilon, epsilon_mode=distill.epsilon_mode,
                           marginal_penalty=distill.marginal_penalty, max_iter=distill.ot_max_iter,
                           tol=distill.ot_tol, centre=distill.centre)
        self.distill_loss = build_distill_loss(distill.method, **options)
        self.score_loss = build_distill_loss("score-kd")
        self.rank_loss = build_loss(config.loss, temperature=config.temperature, margin=config.margin)
        weights = {} if distill.rank_only else {"distill": distill.distill_weight}
        if distill.rank_weight > 0:
            weights["rank"] = distill.rank_weight
        if distill.score_weight > 0 and distill.method != "score-kd":
            weights["score"] = distill.score_weight
        self.combined = CombinedLoss(weights)
        if self.validate is None and self.valid_pairs and not distill.rank_only:
            # the rank term alone has no held-out bitext loss to select by: its final model is the student
            self.validate = self.validation_loss
        rng = derived_rng(config.seed)
        self._pair_query = rng.integers(len(self.queries), size=len(self.groups)) if self.queries else None
        self._valid_query = rng.integers(len(self.queries), size=len(self.valid_pairs)) if self.queries else None
        tok = student.tokenizer
        self._special = torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)
        prefix = getattr(getattr(student, "config", None), "passage_prefix", "") if distill.model_type == "bi-encoder" else ""
        self._prefix = prefix or ""
        self._prefix_tokens = len(tok(self._prefix.rstrip(), add_special_tokens=False)["input_ids"]) if self._prefix else 0
        self.ddp_kwargs = {"find_unused_parameters": True}
        parameters = sum(p.numel() for p in student.parameters())
        trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
        logger.info("distilling %s (%s, %s mode, layers %s): %d bitext pairs, %d held out; %.1fM of %.1fM "
                    "parameters trainable%s", distill.name, distill.model_type, distill.mode, list(distill.layers),
                    len(self.groups), len(self.valid_pairs), trainable / 1e6, parameters / 1e6,
                    " (word embeddings frozen)" if distill.freeze_embeddings else "")

    # data ------------------------------------------------------------------------------------------

    def _setup_data(self, train_pairs: Sequence[BitextPair]) -> None:
        self.groups = list(train_pairs)
        if not self.groups:
            raise ConsistencyError("no bitext pairs to distil from")
        self.group_size = 1
        self.fingerprint = bitext_fingerprint(self.groups)

    def _inner(self) -> nn.Module:
        return self.model.student

    def resume_settings(self) -> dict[str, Any]:
        """A resumed distillation keeps its method, loss settings and teacher (by its weights' SHA-256)."""
        return {**self.distill.to_dict(), "teacher": self._teacher_digest}

    # encoding --------------------------------------------------------------------------------------

    def _tokenize(self, texts: Sequence[str], queries: Sequence[str] | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Tokenized inputs and the content-token mask (passage tokens only)."""
        tok = self._inner().tokenizer
        limit = self.config.max_length
        if queries is None:
            batch = tok([self._prefix + t for t in texts], truncation=True, max_length=limit, padding=True,
                        return_tensors="pt")
            prefix = torch.full((len(texts),), self._prefix_tokens)
        else:
            if self.distill.model_type == "bi-encoder":
                raise ConfigError("query mode applies to cross-encoders; a bi-encoder encodes passages alone")
            return self._tokenize_pairs(texts, queries)
        mask = content_token_mask(batch["input_ids"], batch["attention_mask"], self._special, prefix)
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return inputs, mask.to(self.device)

    def _tokenize_pairs(self, texts: Sequence[str], queries: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``(query, text)`` pairs as the cross-encoder reads them when it reranks -- with its saved
        ``query_prefix`` / ``passage_prefix`` (:meth:`~clir_ot.models.CrossEncoderModel.pair_texts`) --
        and the mask of the text's own tokens: not the query, not the passage prefix, not special.

        The mask comes from the tokenizer's offsets (a token of the second segment that ends past the
        prefix), not from token counts, so an unknown word in the query or prefix cannot shift it.
        """
        model = self._inner()
        tok = model.tokenizer
        if not tok.is_fast:
            raise ConfigError(f"query-mode distillation needs a fast tokenizer (offsets); "
                              f"{type(tok).__name__} is not one")
        query_texts, passage_texts = model.pair_texts(list(queries), list(texts))
        batch = tok(query_texts, passage_texts, truncation="only_second", max_length=self.config.max_length,
                    padding=True, return_tensors="pt", return_offsets_mapping=True)
        skip = len(model.config.passage_prefix)
        second = torch.tensor([[sid == 1 for sid in batch.sequence_ids(i)] for i in range(len(texts))],
                              dtype=torch.bool).reshape(batch["input_ids"].shape)
        past_prefix = batch["offset_mapping"][..., 1] > skip
        mask = content_token_mask(batch["input_ids"], batch["attention_mask"], self._special) & second & past_prefix
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return inputs, mask.to(self.device)

    def _queries_for(self, positions: np.ndarray, valid: bool) -> list[str] | None:
        """The English query of each pair: its own (XQuAD query bitext), else a training query drawn
        for it (seeded); ``None`` when there are no queries."""
        pairs = self.valid_pairs if valid else self.groups
        drawn = self._valid_query if valid else self._pair_query
        if drawn is None and all(pairs[i].query is None for i in positions):
            return None
        return [pairs[i].query if pairs[i].query is not None else self.queries[drawn[i]] for i in positions]

    @staticmethod
    def _pad_cat(batches: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
        length = max(b["input_ids"].shape[1] for b in batches)
        out: dict[str, list[torch.Tensor]] = {}
        for b in batches:
            extra = length - b["input_ids"].shape[1]
            for key, value in b.items():
                fill = pad_id if key == "input_ids" else 0
                out.setdefault(key, []).append(F.pad(value, (0, extra), value=fill))
        return {k: torch.cat(v) for k, v in out.items()}

    def _rank_term(self, module: nn.Module, rank_groups: Sequence[TrainingGroup]) -> dict[str, torch.Tensor]:
        """The no-bitext control's step: the listwise loss on English relevance groups, nothing else."""
        inputs = self._inner().tokenize([g.query for g in rank_groups for _ in g.passages],
                                        [p for g in rank_groups for p in g.passages], max_length=self.config.max_length)
        with compute_precision(self.device, self.precision):
            _, scores = module(**inputs)
        return {"rank": self.rank_loss(scores.float().view(len(rank_groups), -1))}

    def _terms(self, module: nn.Module, pairs: Sequence[BitextPair], queries: list[str] | None,
               rank_groups: Sequence[TrainingGroup] = ()) -> dict[str, torch.Tensor]:
        distill = self.distill
        if distill.rank_only:
            return self._rank_term(module, rank_groups)
        cross = distill.model_type == "cross-encoder"
        query_mode = cross and (distill.mode == "query" or distill.method == "score-kd")
        english = [p.english for p in pairs]
        foreign = [p.foreign for p in pairs]
        t_inputs, t_mask = self._tokenize(english, queries if query_mode else None)
        s_inputs, s_mask = self._tokenize(foreign, queries if query_mode else None)
        need_score_inputs = cross and distill.method != "score-kd" and "score" in self.combined.weights
        batches = [s_inputs]
        if need_score_inputs:
            s_q_inputs, _ = self._tokenize(foreign, queries)
            batches.append(s_q_inputs)
        rank_inputs = None
        if rank_groups:
            rank_inputs = self._inner().tokenize([g.query for g in rank_groups for _ in g.passages],
                                                 [p for g in rank_groups for p in g.passages],
                                                 max_length=self.config.max_length)
            batches.append(rank_inputs)
        pad_id = self._inner().tokenizer.pad_token_id
        inputs = self._pad_cat(batches, pad_id) if len(batches) > 1 else s_inputs
        with torch.no_grad(), compute_precision(self.device, self.precision):
            t_states, t_scores = encode_states(self.teacher, distill.layers, **t_inputs)
            t_q_scores = None
            if need_score_inputs:
                t_q_inputs, _ = self._tokenize(english, queries)
                _, t_q_scores = encode_states(self.teacher, distill.layers, **t_q_inputs)
        with compute_precision(self.device, self.precision):
            states, scores = module(**inputs)
        n, width = len(pairs), s_inputs["input_ids"].shape[1]
        s_states = [h[:n, :width] for h in states]
        started = time.perf_counter()
        terms: dict[str, torch.Tensor] = {}
        if distill.method == "score-kd":
            terms["distill"] = self._score_term(scores[:n], t_scores, queries)
        elif distill.method == "ot":
            terms["distill"] = self.distill_loss(t_states, s_states, t_mask, s_mask)
        else:
            terms["distill"] = torch.stack([self.distill_loss(t.float(), s.float(), t_mask, s_mask)
                                            for t, s in zip(t_states, s_states)]).sum()
        self.step_parts["distill_s"] = self.step_parts.get("distill_s", 0.0) + time.perf_counter() - started
        offset = n
        if need_score_inputs:
            terms["score"] = self._score_term(scores[offset:offset + n], t_q_scores, queries)
            offset += n
        elif "score" in self.combined.weights:  # a bi-encoder scores the passages it already embedded
            terms["score"] = self._score_term(scores[:n], t_scores, queries)
        if rank_inputs is not None:
            rank_scores = scores[offset:].float().view(len(rank_groups), -1)
            terms["rank"] = self.rank_loss(rank_scores)
        return terms

    def _score_term(self, student_scores, teacher_scores, queries) -> torch.Tensor:
        if self.distill.model_type == "bi-encoder":  # similarity of the frozen query embedding to each side
            q_inputs = self.teacher.tokenize(queries, prefix=self.teacher.config.query_prefix,
                                             max_length=self.config.max_length)
            with torch.no_grad(), compute_precision(self.device, self.precision):
                _, q = encode_states(self.teacher, self.distill.layers, **q_inputs)
            student_scores = (q.float() * student_scores.float()).sum(-1)
            teacher_scores = (q.float() * teacher_scores.float()).sum(-1)
        return self.score_loss(student_scores.float(), teacher_scores.float())

    # the trainer's hooks ---------------------------------------------------------------------------

    def _rank_batch(self, indices: np.ndarray) -> list[TrainingGroup]:
        if "rank" not in self.combined.weights:
            return []
        rng = np.random.default_rng([self.config.seed, 31, int(indices[0]) if len(indices) else 0, self.dist.rank])
        chosen = rng.choice(len(self.rank_groups), size=min(self.distill.rank_batch_size, len(self.rank_groups)),
                            replace=False)
        return [self.rank_groups[i] for i in chosen]

    def _forward_loss(self, module: nn.Module, indices: np.ndarray) -> torch.Tensor:
        pairs = [self.groups[i] for i in indices]
        terms = self._terms(module, pairs, self._queries_for(indices, valid=False), self._rank_batch(indices))
        total, parts = self.combined(**terms)
        accum = self.config.grad_accum
        for key, value in parts.items():
            self.step_parts[key] = self.step_parts.get(key, 0.0) + value / accum
        return total

    @torch.no_grad()
    def validation_loss(self, student: nn.Module) -> dict[str, float]:
        """Mean distillation loss on the held-out bitext (no rank term; lower is better)."""
        was_training = self.model.training
        self.model.eval()
        try:
            losses, counts = [], []
            size = self.config.valid_batch_size
            for start in range(0, len(self.valid_pairs), size):
                positions = np.arange(start, min(start + size, len(self.valid_pairs)))
                pairs = [self.valid_pairs[i] for i in positions]
                terms = self._terms(self.model, pairs, self._queries_for(positions, valid=True))
                losses.append(float(terms["distill"]) * len(pairs))
                counts.append(len(pairs))
        finally:
            self.model.train(was_training)
        return {"valid_loss": sum(losses) / sum(counts)}
