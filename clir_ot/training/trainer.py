"""The trainer shared by the teacher cross-encoder and the distilled students.

What one optimizer step does, in every setting:

* **Data order** is a function of ``seed`` and the epoch alone: epoch ``e`` visits the groups in
  ``numpy.random.default_rng([seed, e]).permutation(n)``; step ``s`` of the epoch takes the slice
  ``[s * G, (s + 1) * G)`` of it, where ``G = batch_size * world_size * grad_accum`` is the global
  batch. The slice is cut into ``grad_accum`` micro-batches of ``batch_size * world_size`` groups and
  process ``r`` takes the ``r``-th ``batch_size`` of each, so the processes' shards are disjoint and
  the same groups make up a step whatever the number of processes. The last ``n mod G`` groups of an
  epoch's permutation are left out (each epoch a different few).
* **Loss**: each micro-batch's mean loss over its groups, divided by ``grad_accum``; DDP averages the
  gradients over processes, so the step's gradient is that of the mean loss over the global batch.
* **Update**: gradient clipping (``max_grad_norm``), AdamW (fused kernels where the device has them;
  no weight decay on biases and norms), learning rate warmed up linearly over ``warmup`` steps and
  decayed linearly to zero at the last step.
* **Precision**: ``dtype="auto"`` computes forward passes in bf16 autocast on GPUs and on CPUs with
  native bf16 (AMX / AVX-512 BF16), fp32 elsewhere; weights and optimizer state stay fp32.

Every ``save_every`` steps (and at the end) the main process validates (if given a validation
callback), keeps the best model in ``<out>/best``, and writes an atomic checkpoint (model as
safetensors, optimizer, scheduler, RNG states of every process, data position) under
``<out>/checkpoints``, keeping the last ``keep_last``. ``train(resume=True)`` restarts from the
newest checkpoint and ends with the weights an uninterrupted run ends with.

Output folder ``<out>``: the final model (a folder the reranker loads: ``config.json``,
``model.safetensors``, tokenizer, ``clir_ot.json``, head), ``best/``, ``checkpoints/``, ``log.jsonl``
(one JSON object per logged step or validation) and ``training.json`` (the manifest, written last).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

import clir_ot
from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.formats import read_text
from clir_ot.io import PathLike, atomic_open
from clir_ot.models.folder import BEST_DIR
from clir_ot.models.loading import compute_precision, hardware_id, resolve_precision
from clir_ot.progress import progress_bar
from clir_ot.settings import check_setting_types, settings_from_dict
from clir_ot.training import checkpoints as ckpt
from clir_ot.training.data import TrainingGroup, groups_fingerprint
from clir_ot.training.distributed import DistInfo, current
from clir_ot.training.streaming import StreamedGroups
from clir_ot.training.losses import LOSSES, ListwiseKLLoss, build_loss

logger = logging.getLogger(__name__)

MANIFEST = "training.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_DIR = "checkpoints"

__all__ = ["Trainer", "TrainerState", "TrainingConfig", "TrainingResult", "freeze_word_embeddings"]

#: Settings that may change when a run is resumed: they do not affect the weights.
RESUMABLE_CHANGES = frozenset({"save_every", "keep_last", "log_every", "valid_batch_size"})


#: Settings added with the teacher recipe (soft targets, head input); written only when not at their default.
RECIPE_SETTINGS = ("soft_weight", "soft_temperature", "head", "pooling", "query_prefix", "passage_prefix",
                   "freeze_embeddings")


#: The compute precisions of training (``auto``: bf16 where the hardware has it natively, else fp32);
#: no fp16, which would need loss scaling.
TRAINING_DTYPES = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainingConfig:
    """Every setting of a training run (all of them are written to ``training.json``).

    Attributes:
        epochs: passes over the training groups (ignored when ``max_steps`` is set).
        max_steps: total optimizer steps; ``None``: ``epochs`` epochs.
        batch_size: groups per process per micro-batch (the global batch is
            ``batch_size * processes * grad_accum`` groups).
        grad_accum: micro-batches per optimizer step.
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not applied to biases and norm weights).
        warmup_steps: linear warm-up steps; ``None``: ``warmup_ratio`` of the total.
        warmup_ratio: warm-up as a fraction of the total steps, when ``warmup_steps`` is ``None``.
        max_grad_norm: gradient clipping threshold; ``None``: no clipping.
        adam_beta1, adam_beta2, adam_eps: AdamW's constants.
        fused: fused AdamW kernels: ``None`` uses them where the device supports them.
        loss: ``listwise`` (softmax cross-entropy, LCE) or ``pairwise`` (margin).
        temperature: listwise loss temperature; margin: pairwise loss margin.
        negatives: negatives per group (``None``: 7 from a collection, as given in a file).
        depth: negatives are drawn from the first stage's top ``depth`` documents.
        valid_negatives: negatives of held-out validation groups (the run's top non-relevant ones).
        max_length: tokens per query-passage pair, special tokens included.
        dropout: overrides every dropout probability of the model; ``None`` keeps the model's.
        save_every: checkpoint (and validation) interval in optimizer steps.
        keep_last: checkpoints kept (older ones are deleted; ``best/`` is separate).
        log_every: training-loss log interval in steps.
        valid_batch_size: pairs per forward pass during validation.
        seed: seeds data order, negative sampling, dropout and initialisation.
        dtype: compute precision: ``auto``, ``fp32`` or ``bf16``.
        soft_weight: weight of the soft-target term (:class:`~clir_ot.training.losses.ListwiseKLLoss`
            to the groups' ``target_scores``, e.g. the dense first stage's) added to the relevance
            loss; 0 turns it off.
        soft_temperature: the target scores' softmax temperature.
        head, pooling, query_prefix, passage_prefix: the cross-encoder's input and head for a base
            model without a trained head (see :class:`~clir_ot.models.CrossEncoderConfig`);
            ``None``: the model's own (a fresh ``linear`` head on the first token, no prefixes).
        freeze_embeddings: keep the word-embedding matrix fixed during training (see
            :func:`freeze_word_embeddings`): the vectors of words the English training data never
            shows stay where multilingual pre-training put them, beside those of their translations.
    """

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    fused: bool | None = None
    loss: str = "listwise"
    temperature: float = 1.0
    margin: float = 1.0
    negatives: int | None = None
    depth: int = 100
    valid_negatives: int = 29
    max_length: int = 256
    dropout: float | None = None
    save_every: int = 100
    keep_last: int = 2
    log_every: int = 10
    valid_batch_size: int = 64
    seed: int = 42
    dtype: str = "auto"
    soft_weight: float = 0.0
    soft_temperature: float = 0.05
    head: str | None = None
    pooling: str | None = None
    query_prefix: str | None = None
    passage_prefix: str | None = None
    freeze_embeddings: bool = False

    def __post_init__(self) -> None:
        check_setting_types(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

        def positive(name: str, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

        for name in ("epochs", "batch_size", "grad_accum", "depth", "valid_negatives", "save_every", "keep_last",
                     "log_every", "valid_batch_size"):
            positive(name)
        positive("max_steps", allow_none=True)
        positive("negatives", allow_none=True)
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            raise ConfigError(f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be positive or None, got {self.max_grad_norm}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8, got {self.max_length}")
        if not self.soft_weight >= 0:
            raise ConfigError(f"soft_weight must be non-negative, got {self.soft_weight}")
        if not self.soft_temperature > 0:
            raise ConfigError(f"soft_temperature must be positive, got {self.soft_temperature}")
        if self.dtype not in TRAINING_DTYPES:
            hint = "; fp16 training needs loss scaling, which this trainer does not do: use bf16" if self.dtype == "fp16" else ""
            raise ConfigError(f"unknown training precision {self.dtype!r}; valid: {', '.join(TRAINING_DTYPES)}{hint}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "training config") -> "TrainingConfig":
        """Build from a mapping; an unknown key is a :class:`~clir_ot.errors.ConfigError` listing the known ones."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object of settings, found {type(data).__name__}")
        return settings_from_dict(cls, dict(data), where)

    @classmethod
    def from_json(cls, path: PathLike, overrides: Mapping[str, Any] | None = None) -> "TrainingConfig":
        """Read a JSON object of settings from ``path``; ``overrides`` win over the file."""
        path = Path(path)
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as err:
            raise InputFormatError(path, err.lineno, f"invalid JSON ({err.msg})") from None
        if not isinstance(data, dict):
            raise InputFormatError(path, None, f"expected a JSON object of settings, found {type(data).__name__}")
        return cls.from_dict({**data, **(overrides or {})}, where=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Every setting, except the teacher-recipe ones (:data:`RECIPE_SETTINGS`) left at their defaults:
        a config without them has the dictionary -- and so the study keys and resume checks -- it had
        before they existed."""
        data = dataclasses.asdict(self)
        for name in RECIPE_SETTINGS:
            if data[name] == _DEFAULTS[name]:
                del data[name]
        return data


@dataclass
class TrainerState:
    """Where training stands; what callbacks receive after every optimizer step."""

    step: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 0
    epoch: int = 0
    loss: float = float("nan")
    lr: float = 0.0
    examples: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    best: dict[str, Any] | None = None
    last_validation: dict[str, Any] | None = None
    interval_loss: float = 0.0  # sum of step losses since the last logged step
    interval_steps: int = 0
    interval_parts: dict[str, float] = field(default_factory=dict)  # step_parts summed over the same steps
    stopped_early: int | None = None  # the step at which early stopping ended training


@dataclass
class TrainingResult:
    """What :meth:`Trainer.train` returns."""

    output: Path
    best: Path | None
    steps: int
    metrics: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)


def _split_decay(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def freeze_word_embeddings(model: nn.Module) -> int:
    """Stop training the word-embedding matrix of the first Hugging Face model inside ``model``
    (``get_input_embeddings()``; position and token-type embeddings stay trainable). Returns the
    number of parameters frozen; a model without word embeddings is a :class:`ConfigError`."""
    for module in model.modules():
        get = getattr(module, "get_input_embeddings", None)
        if callable(get) and isinstance(get(), nn.Embedding):
            weight = get().weight
            weight.requires_grad_(False)
            return weight.numel()
    raise ConfigError(f"freeze_embeddings: {type(model).__name__} has no word-embedding matrix (get_input_embeddings)")


def build_optimizer(model: nn.Module, config: TrainingConfig) -> tuple[torch.optim.Optimizer, bool]:
    """AdamW over ``model`` (no decay on biases and norms); fused kernels where supported.

    Returns ``(optimizer, fused)``.
    """
    groups = _split_decay(model, config.weight_decay)
    kwargs = dict(lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps)
    if config.fused is False:
        return torch.optim.AdamW(groups, foreach=None, **kwargs), False
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs), True
    except (RuntimeError, ValueError) as err:
        if config.fused:
            raise ConfigError(f"fused AdamW is not available here ({err}); set fused to null or false") from None
        logger.info("fused AdamW unavailable on this device (%s); using the default implementation", err)
        return torch.optim.AdamW(groups, **kwargs), False


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor of step ``s`` (0-based): ``(s+1)/(warmup+1)`` while warming up, then linear
    decay reaching ``1/(total-warmup)`` at the last step (no step runs at learning rate 0)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _set_dropout(model: nn.Module, p: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def code_version() -> dict[str, Any]:
    """``clir_ot.__version__`` and, when the package sits in a git checkout, its commit and dirty flag."""
    info: dict[str, Any] = {"clir_ot": clir_ot.__version__, "torch": torch.__version__}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    root = Path(clir_ot.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10)
            info["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _fsync_write_torch(obj: Any, path: Path) -> None:
    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def check_finished_recipe(output: PathLike, config: "TrainingConfig") -> None:
    """Raise :class:`ConfigError` when the finished run in ``output`` was trained with other settings.

    A finished run is reused, never retrained; reusing one trained by another recipe (more epochs,
    another learning rate) would report the old model under the new recipe's name. Only the settings in
    :data:`RESUMABLE_CHANGES`, which do not change the model, may differ; a setting the manifest lacks
    (added to the toolkit after that run) counts as its default. No manifest: nothing to check.
    """
    path = Path(output) / MANIFEST
    if not path.is_file():
        return
    manifest = json.loads(path.read_text(encoding="utf-8"))
    saved = {**type(config)().to_dict(), **manifest.get("config", {})}
    diffs = describe_changes(saved, config.to_dict(), ignore=RESUMABLE_CHANGES)
    if diffs:
        raise ConfigError(f"{output} already holds a finished training with other settings ({diffs}); "
                          "move it away to train this recipe, or ask for the settings it was trained with")


def describe_changes(before: Mapping[str, Any], now: Mapping[str, Any], ignore: frozenset[str] = frozenset()) -> str:
    """``"key: old -> new, ..."`` for the keys whose values differ, sorted ('' when none differ)."""
    changed = sorted(k for k in set(before) | set(now) if k not in ignore and before.get(k) != now.get(k))
    return ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)


class Trainer:
    """Train a :class:`~clir_ot.models.CrossEncoderModel` on groups (query, positive, negatives).

    Args:
        model: the model to train (moved to ``device``).
        train_groups: the training groups, all with the same number of negatives.
        config: the settings (:class:`TrainingConfig`).
        output: the output folder (see the module docstring for its layout).
        validate: ``validate(model) -> {metric: value}`` run by the main process every ``save_every``
            steps and at the end (e.g. :class:`~clir_ot.training.validation.MrrValidator`).
        metric: the key of ``validate``'s result that selects the best model (higher is better).
        device: default ``cuda:<local rank>`` when CUDA is available, else the CPU.
        callbacks: ``callback(state)`` after every optimizer step, on every process.
        manifest: extra entries for ``training.json`` (base model, data files, ...).
        progress: show a tqdm bar on the main process (``None``: when stderr is a terminal).
        dist: this process's place among the data-parallel processes (default: the initialised
            process group, or a single process).
        greater_is_better: whether a higher ``metric`` is better (``False`` for a validation loss).
        patience: early stopping: stop when ``patience`` validations in a row brought no improvement
            of ``metric`` (``None``: train to the last step).

    Under ``torchrun`` the process group must be initialised before (see
    :func:`clir_ot.training.distributed.init_distributed`); every process builds its Trainer from the
    same model and groups, and only the main process writes.
    """

    #: ``training.json``'s ``kind``
    kind = "cross-encoder training"
    #: extra arguments of :class:`~torch.nn.parallel.DistributedDataParallel`
    ddp_kwargs: dict[str, Any] = {}

    def __init__(
        self,
        model: nn.Module,
        train_groups: Sequence[TrainingGroup],
        config: TrainingConfig,
        output: PathLike,
        *,
        validate: Callable[[nn.Module], Mapping[str, float]] | None = None,
        metric: str = "MRR@10",
        device: str | torch.device | None = None,
        callbacks: Sequence[Callable[[TrainerState], None]] = (),
        manifest: Mapping[str, Any] | None = None,
        progress: bool | None = None,
        dist: DistInfo | None = None,
        greater_is_better: bool = True,
        patience: int | None = None,
    ):
        self.dist: DistInfo = dist if dist is not None else current()
        self.config = config
        self.output = Path(output).expanduser().absolute()
        self._setup_data(train_groups)
        self.device = torch.device(device) if device is not None else self.dist.default_device()
        self.model = model.to(self.device)
        if config.dropout is not None:
            _set_dropout(self.model, config.dropout)
        if config.freeze_embeddings:
            frozen = freeze_word_embeddings(self.model)
            logger.info("word embeddings frozen: %d parameters not trained", frozen)
        self.precision = resolve_precision(config.dtype, self.device)
        if self.precision == "fp16":
            logger.warning("this GPU has no bf16; training in fp32 (fp16 would need loss scaling)")
            self.precision = "fp32"
        self.loss_fn = build_loss(config.loss, temperature=config.temperature, margin=config.margin)
        self.soft_loss_fn = ListwiseKLLoss(target_temperature=config.soft_temperature) if config.soft_weight else None
        self.validate = validate
        self.metric = metric
        self.callbacks = list(callbacks)
        self.extra_manifest = dict(manifest or {})
        self.progress = progress
        world = self.dist.world_size
        self.global_batch = config.batch_size * world * config.grad_accum
        self.steps_per_epoch = len(self.groups) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{len(self.groups)} training groups do not fill one global batch of {self.global_batch} "
                f"(batch size {config.batch_size} x {world} processes x {config.grad_accum} accumulation); "
                "lower --batch-size or --grad-accum"
            )
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.warmup = (config.warmup_steps if config.warmup_steps is not None
                       else int(round(config.warmup_ratio * self.total_steps)))
        self.greater_is_better = greater_is_better
        self.patience = patience
        self.step_parts: dict[str, float] = {}  # loss terms and timings of the current step; logged as interval means
        self._permutation: tuple[int, np.ndarray] | None = None

    def _setup_data(self, train_groups: Sequence[TrainingGroup]) -> None:
        """Set ``groups`` (the items a step draws from), ``group_size`` (passages per item) and
        ``fingerprint`` (what a resumed run must train on); subclasses train on other items."""
        if isinstance(train_groups, StreamedGroups):  # read on demand: never listed; fingerprinted by its files
            self.groups = train_groups
            self.group_size = 1 + train_groups.negatives
            if self.config.soft_weight and not train_groups.scored:
                raise ConfigError(f"soft_weight > 0 needs target scores on every training group: {train_groups.path} "
                                  "has lines without 'scores'")
            self.fingerprint = train_groups.fingerprint()
            return
        self.groups = list(train_groups)
        if not self.groups:
            raise ConsistencyError("no training groups")
        sizes = sorted({len(g.negatives) for g in self.groups})
        if len(sizes) != 1:
            raise ConsistencyError(f"training groups have between {sizes[0]} and {sizes[-1]} negatives; every group "
                                   "needs the same number (see clir_ot.training.data.cut_negatives)")
        self.group_size = 1 + sizes[0]
        if self.config.soft_weight and any(g.target_scores is None for g in self.groups):
            raise ConfigError("soft_weight > 0 needs target scores on every training group (a soft-target run, "
                              "--soft-run, or 'scores' in JSONL groups)")
        self.fingerprint = groups_fingerprint(self.groups)

    # ---------------------------------------------------------------------------------------------
    # data order

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of the groups that epoch ``epoch`` visits (seeded by ``seed`` and the epoch).

        It is ``default_rng([seed, epoch]).permutation(n)``, shuffled in 32-bit integers where ``n``
        allows (the same order -- the shuffle's draws depend only on ``n`` -- in half the memory:
        40 MB for 10M streamed groups)."""
        if self._permutation is None or self._permutation[0] != epoch:
            n = len(self.groups)
            order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
            np.random.default_rng([self.config.seed, epoch]).shuffle(order)
            self._permutation = (epoch, order)
        return self._permutation[1]

    def micro_batches(self, step: int) -> list[np.ndarray]:
        """The group indices this process trains on at optimizer step ``step`` (0-based), per micro-batch."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)[position * self.global_batch:(position + 1) * self.global_batch]
        b, world, rank = self.config.batch_size, self.dist.world_size, self.dist.rank
        return [order[a * b * world + rank * b: a * b * world + (rank + 1) * b] for a in range(self.config.grad_accum)]

    # ---------------------------------------------------------------------------------------------

    def _inner(self) -> nn.Module:
        return self.model

    def _forward_loss(self, module: nn.Module, indices: np.ndarray) -> torch.Tensor:
        groups = [self.groups[i] for i in indices]
        queries = [g.query for g in groups for _ in range(self.group_size)]
        passages = [p for g in groups for p in g.passages]
        inputs = self.model.tokenize(queries, passages, max_length=self.config.max_length)
        with compute_precision(self.device, self.precision):
            scores = module(**inputs)
        scores = scores.float().view(len(groups), self.group_size)
        loss = self.loss_fn(scores)
        if self.soft_loss_fn is None:
            return loss
        targets = torch.tensor([g.target_scores for g in groups], dtype=torch.float32, device=scores.device)
        soft = self.soft_loss_fn(scores, targets)
        share = 1.0 / self.config.grad_accum  # step_parts hold the step's mean, as the step loss does
        self.step_parts["relevance"] = self.step_parts.get("relevance", 0.0) + float(loss.detach()) * share
        self.step_parts["soft"] = self.step_parts.get("soft", 0.0) + float(soft.detach()) * share
        return loss + self.config.soft_weight * soft

    def _check_output(self, resume: bool) -> Path | None:
        """The checkpoint to resume from (``None``: start fresh); refuses to overwrite another run."""
        checkpoints = self.output / CHECKPOINT_DIR
        latest = ckpt.latest_checkpoint(checkpoints)
        if resume:
            if latest is None:
                logger.info("no checkpoint in %s: starting from the beginning", checkpoints)
            return latest
        taken = [n for n in (CHECKPOINT_DIR, MANIFEST, LOG_FILE, BEST_DIR, "config.json") if (self.output / n).exists()]
        if taken:
            raise ConfigError(f"{self.output} already holds a training run ({', '.join(taken)}); resume it "
                              "(--resume) or choose another output folder")
        return None

    def resume_settings(self) -> dict[str, Any]:
        """Settings beyond :class:`TrainingConfig` that a resumed run must share with its checkpoint
        (JSON values); subclasses add theirs (the distillation trainer: its method and teacher)."""
        return {}

    def _restore(self, checkpoint: Path, optimizer, scheduler, state: TrainerState) -> None:
        saved = ckpt.read_state(checkpoint)
        if saved.get("data_fingerprint") != self.fingerprint:
            raise ConsistencyError(f"{checkpoint} was trained on other data (fingerprint differs); resume with the "
                                   "same training files and settings, or start a new output folder")
        if "settings" in saved:  # checkpoints written before this record was kept have none
            diffs = describe_changes(saved["settings"], self.resume_settings())
            if diffs:
                raise ConfigError(f"cannot resume {checkpoint} with other {self.kind} settings ({diffs}); "
                                  "resume with the same settings, or start a new output folder")
        diffs = describe_changes(saved.get("config", {}), self.config.to_dict(), ignore=RESUMABLE_CHANGES)
        if diffs:
            raise ConfigError(f"cannot resume {checkpoint} with other settings ({diffs}); only "
                              f"{', '.join(sorted(RESUMABLE_CHANGES))} may change")
        if saved.get("world_size") != self.dist.world_size:
            raise ConfigError(f"{checkpoint} was written by {saved.get('world_size')} processes; resume with the same "
                              f"number (now {self.dist.world_size}) for an exact continuation")
        loaded = type(self._inner()).from_pretrained(checkpoint / "model")
        self._inner().load_state_dict(loaded.state_dict())
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location=self.device, weights_only=True))
        scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
        rng = torch.load(checkpoint / "rng.pt", weights_only=True)
        _set_rng_state(rng[self.dist.rank])
        for name in ("step", "epoch", "examples", "train_seconds", "wall_seconds", "best", "last_validation",
                     "interval_loss", "interval_steps"):
            setattr(state, name, saved[name])
        state.stopped_early = saved.get("stopped_early")
        state.interval_parts = dict(saved.get("interval_parts", {}))  # older checkpoints: terms since the resume

    def _write_checkpoint(self, optimizer, scheduler, state: TrainerState) -> None:
        rng = self.dist.gather(_rng_state())
        if not self.dist.is_main:
            return
        payload = {
            "step": state.step, "epoch": state.epoch, "step_in_epoch": state.step - state.epoch * self.steps_per_epoch,
            "examples": state.examples, "train_seconds": state.train_seconds, "wall_seconds": state.wall_seconds,
            "best": state.best, "last_validation": state.last_validation, "interval_loss": state.interval_loss,
            "interval_steps": state.interval_steps, "interval_parts": state.interval_parts, "world_size": self.dist.world_size,
            "stopped_early": state.stopped_early,
            "total_steps": self.total_steps, "data_fingerprint": self.fingerprint, "config": self.config.to_dict(),
            "settings": self.resume_settings(),
        }

        def write(folder: Path) -> None:
            self._inner().save_pretrained(folder / "model")
            _fsync_write_torch(optimizer.state_dict(), folder / "optimizer.pt")
            _fsync_write_torch(scheduler.state_dict(), folder / "scheduler.pt")
            _fsync_write_torch(rng, folder / "rng.pt")
            (folder / ckpt.STATE_FILE).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")

        root = self.output / CHECKPOINT_DIR
        path = ckpt.write_checkpoint(root, state.step, write)
        ckpt.prune_checkpoints(root, self.config.keep_last)
        logger.info("checkpoint %s", path)

    def _log(self, record: Mapping[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.output / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _trim_log(self, step: int) -> None:
        """Keep the log lines of steps up to ``step`` (a resumed run rewrites what came after)."""
        path = self.output / LOG_FILE
        if not self.dist.is_main or not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by the kill
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line + "\n")
        with atomic_open(path) as handle:
            handle.writelines(kept)

    def _should_stop(self, state: TrainerState) -> bool:
        """Early stopping: the last ``patience`` validations brought no improvement (every process agrees)."""
        stop = False
        if self.patience is not None and self.validate is not None and self.dist.is_main and state.best is not None:
            stale = (state.step - state.best["step"]) // self.config.save_every
            stop = stale >= self.patience
        return bool(self.dist.broadcast(stop))

    def _validate(self, state: TrainerState) -> None:
        if self.validate is None or not self.dist.is_main:
            return
        with torch.random.fork_rng(devices=[]):
            metrics = {k: float(v) for k, v in self.validate(self._inner()).items()}
        if self.metric not in metrics:
            raise ConfigError(f"the validation callback returned {sorted(metrics)}, not the metric {self.metric!r}")
        value = metrics[self.metric]
        improved = state.best is None or (value > state.best["value"] if self.greater_is_better
                                          else value < state.best["value"])
        state.last_validation = {"step": state.step, **metrics}
        if improved:
            state.best = {"metric": self.metric, "value": value, "step": state.step}
            self._inner().save_pretrained(self.output / BEST_DIR)
            with atomic_open(self.output / BEST_DIR / "best.json") as handle:
                json.dump(state.best, handle, indent=1)
        self._log({"step": state.step, "epoch": state.epoch, "valid": metrics, "best": improved})
        logger.info("step %d: validation %s = %.4f%s", state.step, self.metric, value, " (best)" if improved else "")

    def _install_final_model(self) -> None:
        """Write the final model's files into the output folder (each file renamed into place)."""
        tmp = self.output / ".final-model.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        self._inner().save_pretrained(tmp)
        for path in sorted(tmp.iterdir()):
            os.replace(path, self.output / path.name)
        tmp.rmdir()

    # ---------------------------------------------------------------------------------------------

    @dataclass
    class _Clock:
        """Wall-clock bookkeeping of one :meth:`train` call (internal)."""

        started: float  # perf_counter at the start of this call
        before: float  # wall seconds of the runs this one resumes
        interval_seconds: float = 0.0  # step seconds since the last log record
        interval_steps: int = 0  # steps this process ran since the last log record

        def wall(self) -> float:
            return self.before + time.perf_counter() - self.started

    def train(self, resume: bool = False) -> TrainingResult:
        """Train to ``total_steps``; with ``resume``, continue from the newest checkpoint in the output folder."""
        finished = self._finished_result() if resume else None
        if finished is not None:
            return finished
        optimizer, scheduler, fused, state, resumed_from = self._set_up(resume)
        module = self._wrapped_module()
        self.model.train()
        logger.info(
            "training %d groups x %d passages: %d steps (%d per epoch), global batch %d (%d x %d processes x %d "
            "accumulation), warm-up %d, %s on %s, %s AdamW", len(self.groups), self.group_size, self.total_steps,
            self.steps_per_epoch, self.global_batch, self.config.batch_size, self.dist.world_size,
            self.config.grad_accum, self.warmup, self.precision, self.device, "fused" if fused else "unfused",
        )
        clock = self._Clock(started=time.perf_counter(), before=state.wall_seconds)
        bar = progress_bar(total=self.total_steps, initial=state.step, desc="training", unit="step",
                           disable=(not self.dist.is_main) or (None if self.progress is None else not self.progress))
        try:
            while state.step < self.total_steps and state.stopped_early is None:
                lr, grad_norm = self._optimizer_step(module, optimizer, scheduler, state, clock)
                bar.update(1)
                bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{lr:.2e}")
                done = state.step == self.total_steps
                if state.step % self.config.log_every == 0 or done:
                    self._log_interval(state, clock, lr, grad_norm)
                state.wall_seconds = clock.wall()
                for callback in self.callbacks:
                    callback(state)
                if (state.step % self.config.save_every == 0 or done) and \
                        self._validate_and_checkpoint(optimizer, scheduler, state, clock, done):
                    break
        finally:
            bar.close()
        self.model.eval()
        state.wall_seconds = clock.wall()
        manifest = self._finish(state, fused, resumed_from)
        self.dist.barrier()
        best = self.output / BEST_DIR
        return TrainingResult(self.output, best if state.best is not None else None, state.step,
                              manifest["metrics"], manifest)

    def _finished_result(self) -> TrainingResult | None:
        """The result of a run that already finished in the output folder (its manifest), else None."""
        if not (self.output / MANIFEST).is_file():
            return None
        check_finished_recipe(self.output, self.config)
        manifest = json.loads((self.output / MANIFEST).read_text(encoding="utf-8"))
        logger.info("%s already finished (%s); nothing to resume", self.output, MANIFEST)
        best = self.output / BEST_DIR
        return TrainingResult(self.output, best if best.is_dir() else None, manifest.get("steps", 0),
                              manifest.get("metrics", {}), manifest)

    def _set_up(self, resume: bool):
        """Check the output folder, build the optimizer and schedule, and restore the newest checkpoint
        (with ``resume``) or seed a fresh run. Returns ``(optimizer, scheduler, fused, state, resumed_from)``."""
        checkpoint = self._check_output(resume) if self.dist.is_main else None
        checkpoint = self.dist.broadcast(None if checkpoint is None else str(checkpoint))
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            ckpt.clean_partial(self.output / CHECKPOINT_DIR)
        self.dist.barrier()

        optimizer, fused = build_optimizer(self._inner(), self.config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(self.warmup, self.total_steps))
        state = TrainerState(total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch)
        if checkpoint is not None:
            self._restore(Path(checkpoint), optimizer, scheduler, state)
            self._trim_log(state.step)
            logger.info("resumed from %s at step %d of %d", checkpoint, state.step, self.total_steps)
        else:
            torch.manual_seed(self.config.seed + self.dist.rank)  # dropout differs between processes, as it should
            if self.dist.is_main:
                (self.output / LOG_FILE).unlink(missing_ok=True)
        resumed_from = state.step if checkpoint is not None else None
        return optimizer, scheduler, fused, state, resumed_from

    def _wrapped_module(self) -> nn.Module:
        """The model, wrapped in DistributedDataParallel when several processes train."""
        if not self.dist.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids, **self.ddp_kwargs)

    def _optimizer_step(self, module: nn.Module, optimizer, scheduler, state: TrainerState,
                        clock: "Trainer._Clock") -> tuple[float, float | None]:
        """One optimizer step over ``grad_accum`` micro-batches (gradients synchronised on the last), then
        the state's step, loss and time accounting. Returns the step's learning rate and gradient norm."""
        config = self.config
        step_started = time.perf_counter()
        state.epoch = state.step // self.steps_per_epoch
        lr = scheduler.get_last_lr()[0]
        batches = self.micro_batches(state.step)
        step_loss = 0.0
        self.step_parts = {}
        for a, indices in enumerate(batches):
            last = a == len(batches) - 1
            sync = contextlib.nullcontext() if last or not self.dist.distributed else module.no_sync()
            with sync:
                loss = self._forward_loss(module, indices)
                (loss / config.grad_accum).backward()
            step_loss += float(loss.detach()) / config.grad_accum
        grad_norm = None
        if config.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = self.dist.mean(step_loss, self.device)
        seconds = time.perf_counter() - step_started
        state.step += 1
        state.examples += self.global_batch
        state.train_seconds += seconds
        state.loss, state.lr = step_loss, lr
        state.interval_loss += step_loss
        state.interval_steps += 1
        for name, value in self.step_parts.items():
            state.interval_parts[name] = state.interval_parts.get(name, 0.0) + value
        clock.interval_seconds += seconds
        clock.interval_steps += 1
        return lr, grad_norm

    def _log_interval(self, state: TrainerState, clock: "Trainer._Clock", lr: float, grad_norm: float | None) -> None:
        """Write one log record for the steps since the last one (mean loss and terms, speed), and reset."""
        examples = clock.interval_steps * self.global_batch  # speed over the steps this process ran
        self._log({
            "step": state.step, "epoch": state.epoch, "loss": state.interval_loss / state.interval_steps,
            "lr": lr, "grad_norm": grad_norm, "examples_per_s": examples / clock.interval_seconds,
            "pairs_per_s": examples * self.group_size / clock.interval_seconds,
            "elapsed_s": clock.wall(),
            **({"terms": {name: value / state.interval_steps for name, value in state.interval_parts.items()}}
               if state.interval_parts else {}),
        })
        state.interval_loss, state.interval_steps = 0.0, 0
        state.interval_parts = {}
        clock.interval_seconds, clock.interval_steps = 0.0, 0

    def _validate_and_checkpoint(self, optimizer, scheduler, state: TrainerState, clock: "Trainer._Clock",
                                 done: bool) -> bool:
        """Validate, decide on early stopping, write a checkpoint; return whether training stops here."""
        self._validate(state)
        state.wall_seconds = clock.wall()
        stop = self._should_stop(state)
        if stop and not done:
            logger.info("early stopping at step %d: %s has not improved for %d validations (best %.4f "
                        "at step %d)", state.step, self.metric, self.patience, state.best["value"],
                        state.best["step"])
            state.stopped_early = state.step
        self._write_checkpoint(optimizer, scheduler, state)
        self.dist.barrier()
        return stop

    def _finish(self, state: TrainerState, fused: bool, resumed_from: int | None) -> dict[str, Any]:
        metrics = {
            "train_loss": state.loss,
            "final": state.last_validation,
            "best": state.best,
        }
        examples_per_s = state.examples / state.train_seconds if state.train_seconds else None
        manifest = {
            "format": 1,
            "kind": self.kind,
            **self.extra_manifest,
            "output": {"model": str(self.output), "best": str(self.output / BEST_DIR) if state.best else None,
                       "log": str(self.output / LOG_FILE)},
            "config": self.config.to_dict(),
            "resolved": {
                "train_groups": len(self.groups), "passages_per_group": self.group_size,
                "data_fingerprint": self.fingerprint, "world_size": self.dist.world_size,
                "global_batch": self.global_batch, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps, "epochs": self.total_steps / self.steps_per_epoch,
                "warmup_steps": self.warmup, "precision": self.precision, "device": str(self.device),
                "hardware": hardware_id(self.device), "threads": torch.get_num_threads(),
                "fused_adamw": fused, "backend": self.dist.backend, "validation_metric": self.metric,
            },
            "code": code_version(),
            "metrics": metrics,
            "steps": state.step,
            "stopped_early": state.stopped_early,
            "time": {
                "wall_s": state.wall_seconds, "train_s": state.train_seconds, "examples": state.examples,
                "examples_per_s": examples_per_s,
                "pairs_per_s": examples_per_s * self.group_size if examples_per_s else None,
                "resumed_from_step": resumed_from,
                "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "note": "times add up the work kept across resumed runs; steps replayed after a kill are not counted twice",
            },
        }
        if self.dist.is_main:
            self._install_final_model()
            with atomic_open(self.output / MANIFEST) as handle:
                json.dump(manifest, handle, indent=2, ensure_ascii=False)
                handle.write("\n")
            logger.info("trained %d steps in %.0f s (%.2f examples/s); model in %s", state.step, state.wall_seconds,
                        examples_per_s or 0.0, self.output)
        return manifest


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainingConfig)}
